use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMillisecondType;
use base64::Engine;
use weir_schemas::RawMessages;

use super::*;
use crate::decode::DecodeStall;
use crate::registry::{ReaderEvolution, RegisteredSchema, RegistryError, SchemaReference};

const V1: &str = include_str!("../../../examples/protobuf/click-v1.proto");
const V2: &str = include_str!("../../../examples/protobuf/click-v2.proto");
/// `id` is an int64 here: no reader with a string `id` can read it.
const CLASHING: &str = r#"syntax = "proto3"; package shop; message Click { int64 id = 1; }"#;
/// A click whose user is imported from another subject.
const IMPORTING: &str = r#"syntax = "proto3"; package shop;
import "google/protobuf/timestamp.proto";
import "shop/user.proto";
message Click { string id = 1; google.protobuf.Timestamp ts = 2; User user = 3; }"#;
const USER: &str = r#"syntax = "proto3"; package shop;
message User { int64 id = 1; string name = 2; }"#;

/// A registry: schemas by id, and subject versions for references.
struct Fixed(HashMap<u32, RegisteredSchema>);

fn registered(id: u32, schema: &str, references: Vec<SchemaReference>) -> RegisteredSchema {
    RegisteredSchema {
        id,
        schema_type: "PROTOBUF".into(),
        schema: schema.into(),
        version: None,
        references,
    }
}

impl FetchSchema for Fixed {
    fn fetch(&self, id: u32) -> Result<RegisteredSchema, RegistryError> {
        self.0.get(&id).cloned().ok_or(RegistryError::NotFound {
            what: format!("schema id {id}"),
            code: 40403,
            message: "Schema not found".into(),
        })
    }

    fn fetch_version(
        &self,
        subject: &str,
        version: i64,
    ) -> Result<RegisteredSchema, RegistryError> {
        match (subject, version) {
            ("user", 1) => Ok(registered(20, USER, Vec::new())),
            _ => Err(RegistryError::NotFound {
                what: format!("version {version} of subject `{subject}`"),
                code: 40401,
                message: "Subject not found".into(),
            }),
        }
    }
}

/// Version 2 as a base64 FileDescriptorProto, the form some clients register.
fn v2_descriptor() -> String {
    let file = compile_schema(&registered(2, V2, Vec::new()), &Fixed(HashMap::new()))
        .unwrap()
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(file.encode_to_vec())
}

fn registry() -> Fixed {
    let import = SchemaReference {
        name: "shop/user.proto".into(),
        subject: "user".into(),
        version: 1,
    };
    let missing = SchemaReference {
        subject: "nobody".into(),
        ..import.clone()
    };
    Fixed(HashMap::from([
        (1, registered(1, V1, Vec::new())),
        (2, registered(2, &v2_descriptor(), Vec::new())),
        (3, registered(3, CLASHING, Vec::new())),
        (4, registered(4, IMPORTING, vec![import])),
        (5, registered(5, IMPORTING, vec![missing])),
        (
            6,
            RegisteredSchema {
                schema_type: "AVRO".into(),
                ..registered(6, r#"{"type":"string"}"#, Vec::new())
            },
        ),
    ]))
}

fn reader(id: u32) -> ProtobufReader {
    let fixed = registry();
    let schema = fixed.fetch(id).unwrap();
    let file = compile_schema(&schema, &fixed).unwrap().unwrap();
    ProtobufReader::new(&file, Some("shop.Click"), "ts").unwrap()
}

fn decoder(reader_id: u32) -> ProtobufDecoder {
    let writers = WriterSchemas::new(
        Box::new(registry()),
        reader(reader_id),
        Arc::new(DecodeStall::default()),
    );
    ProtobufDecoder::new(Arc::new(writers))
}

/// A JSON click as the framed message schema `id` writes.
fn framed(id: u32, json: &str) -> Vec<u8> {
    JsonToProtobuf::new(reader(id).message(), id)
        .encode(json)
        .unwrap()
}

/// The framing of a click written with schema `id`: Click is the file's third message.
fn framing(id: u32) -> Vec<u8> {
    let mut payload = vec![0];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&[0x02, 0x04]);
    payload
}

fn with_body(id: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = framing(id);
    payload.extend_from_slice(body);
    payload
}

fn messages(payloads: &[Vec<u8>]) -> weir_schemas::Messages {
    let mut raw = RawMessages::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        raw.push("clicks", 0, i as i64, None, None, Some(payload));
    }
    raw.finish()
}

fn as_json(batch: &RecordBatch) -> Vec<serde_json::Value> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    let text = writer.into_inner();
    if text.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice(&text).unwrap()
}

const FULL: &str = r#"{"id": "c-1", "ts": "2026-12-07T09:00:01.123456789Z",
  "user": {"id": "42", "name": "ann"}, "kind": "CART", "quantity": "3000000001",
  "score": 1.5, "ratio": 0.1, "flagged": true, "big": "18446744073709551615",
  "tags": ["a", "b"], "attrs": {"k": "v"}, "raw": "AAH/",
  "items": [{"sku": "s1", "count": 2, "sizes": [-1, 3]}, {"sku": "s2"}],
  "note": "", "amountCents": "-5", "seenAt": "2026-12-07T09:00:02.000001Z", "app": 0,
  "referrer": "r"}"#;

#[test]
fn every_field_lands_in_its_column() {
    let decoded = decoder(2)
        .decode(&messages(&[framed(2, FULL), framing(2)]))
        .unwrap();
    assert!(
        decoded.dead_letters.is_empty(),
        "{:?}",
        decoded.dead_letters
    );
    let batch = &decoded.declared;
    let types: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{} {} {}", f.name(), f.data_type(), f.is_nullable()))
        .collect();
    insta_like(
        &types.join("\n"),
        "id Utf8 false
ts Timestamp(ms, \"UTC\") true
user Struct(\"id\": non-null Int64, \"name\": Utf8) true
kind Utf8 false
quantity Int64 false
score Float64 false
ratio Float32 false
flagged Boolean false
big UInt64 false
tags List(non-null Utf8) false
attrs Map(\"entries\": non-null Struct(\"key\": non-null Utf8, \"value\": non-null Utf8), unsorted) false
raw Binary false
items List(non-null Struct(\"sku\": non-null Utf8, \"count\": non-null UInt32, \"sizes\": non-null List(non-null Int32))) false
note Utf8 true
amount_cents Int64 true
seen_at Timestamp(µs, \"UTC\") true
web Utf8 true
app Int32 true
referrer Utf8 true",
    );
    let rows = as_json(batch);
    let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        ts.value(0),
        1_796_634_001_123,
        "milliseconds, the nanos cut"
    );
    assert!(ts.is_null(1), "an absent Timestamp is NULL");
    let expected = serde_json::json!({
        "id": "c-1", "ts": "2026-12-07T09:00:01.123Z",
        "user": {"id": 42, "name": "ann"}, "kind": "CART", "quantity": 3_000_000_001i64,
        "score": 1.5, "ratio": 0.1, "flagged": true, "big": u64::MAX,
        "tags": ["a", "b"], "attrs": {"k": "v"}, "raw": "0001ff",
        "items": [{"sku": "s1", "count": 2, "sizes": [-1, 3]}, {"sku": "s2", "count": 0, "sizes": []}],
        "note": "", "amount_cents": -5, "seen_at": "2026-12-07T09:00:02.000001Z", "app": 0,
        "referrer": "r"
    });
    assert_eq!(rows[0], expected);
    // Everything absent: defaults where the field has no presence, NULL (left out) where it has.
    let empty = serde_json::json!({
        "id": "", "kind": "KIND_UNSPECIFIED", "quantity": 0, "score": 0.0, "ratio": 0.0,
        "flagged": false, "big": 0, "tags": [], "attrs": {}, "raw": "", "items": []
    });
    assert_eq!(rows[1], empty);
}

/// Compares text line by line, showing both when they differ.
fn insta_like(got: &str, want: &str) {
    assert_eq!(got, want, "\n--- got\n{got}\n--- want\n{want}");
}

#[test]
fn older_writers_are_read_as_the_reader() {
    let v1 = framed(
        1,
        r#"{"id": "old", "ts": "2026-12-07T09:00:00Z", "quantity": -4, "kind": 9}"#,
    );
    let decoded = decoder(2).decode(&messages(&[v1])).unwrap();
    assert!(
        decoded.dead_letters.is_empty(),
        "{:?}",
        decoded.dead_letters
    );
    let rows = as_json(&decoded.declared);
    assert_eq!(rows[0]["quantity"], -4, "int32 widened to int64, sign kept");
    assert_eq!(
        rows[0]["kind"], "9",
        "an unknown enum number is kept as its number"
    );
    assert!(
        rows[0].get("referrer").is_none(),
        "a field version 1 lacks is NULL"
    );
}

#[test]
fn each_bad_message_is_a_dead_letter_and_its_neighbours_are_kept() {
    let good = |n: u32| {
        framed(
            2,
            &format!(
                r#"{{"id": "g{n}", "ts": "2026-12-07T09:00:0{n}Z", "items": [{{"sku": "x", "sizes": [1, 2, 3]}}]}}"#
            ),
        )
    };
    let mut index_seven = vec![0, 0, 0, 0, 2, 0x02, 0x0e];
    index_seven.extend_from_slice(&good(0)[7..]);
    let mut unknown = framing(99);
    unknown.extend_from_slice(&good(0)[7..]);
    // A good message cut inside its last item: the rows of the items before must go too.
    let cut = good(0)[..good(0).len() - 2].to_vec();
    let payloads = [
        good(1),
        cut,
        with_body(2, b"\x08\x01"),
        with_body(2, b"\x0a\x02\xff\xfe"),
        good(2),
        index_seven,
        unknown,
        b"{\"id\": 1}".to_vec(),
        framing(2)[..5].to_vec(),
        // The clashing schema's only message: index [0], a lone 0.
        vec![0, 0, 0, 0, 3, 0, 0x08, 0x07],
        with_body(6, b""),
        Vec::new(),
        with_body(2, b"\x0a\x05ab"),
        good(3),
    ];
    let decoded = decoder(2).decode(&messages(&payloads)).unwrap();
    let reasons: Vec<(u32, String)> = decoded
        .dead_letters
        .iter()
        .map(|d| (d.offset as u32, d.reason.as_str().into_owned()))
        .collect();
    let expected = [
        (1, "protobuf_decode_error"),
        (2, "protobuf_decode_error"),
        (3, "protobuf_decode_error"),
        (5, "protobuf_decode_error"),
        (6, "unknown_schema_id"),
        (7, "not_confluent_framed"),
        (8, "not_confluent_framed"),
        (9, "incompatible_schema"),
        (10, "incompatible_schema"),
        (11, "empty_message"),
        (12, "protobuf_decode_error"),
    ];
    let expected: Vec<(u32, String)> = expected.iter().map(|(i, r)| (*i, r.to_string())).collect();
    assert_eq!(reasons, expected);
    let details: Vec<&str> = decoded
        .dead_letters
        .iter()
        .map(|d| d.detail.as_str())
        .collect();
    assert!(
        details[1].contains("field `id` (number 1): found a varint"),
        "{}",
        details[1]
    );
    assert!(details[2].contains("not UTF-8"), "{}", details[2]);
    assert!(details[3].contains("message index [7]"), "{}", details[3]);
    assert!(
        details[7].contains("field `id`") && details[7].contains("int64"),
        "{}",
        details[7]
    );
    assert!(details[8].contains("AVRO"), "{}", details[8]);
    for detail in [details[0], details[1], details[4], details[10]] {
        assert!(detail.contains("schema id"), "{detail}");
    }
    assert_eq!(decoded.message_of_row, [0, 4, 13]);
    // The rows are what the good messages give on their own.
    let alone = decoder(2)
        .decode(&messages(&[good(1), good(2), good(3)]))
        .unwrap();
    assert_eq!(as_json(&decoded.declared), as_json(&alone.declared));
}

#[test]
fn repeated_fields_merge_and_packing_is_either_way() {
    // id twice (the last wins), user twice (merged), sizes unpacked then packed.
    let mut body = Vec::new();
    body.extend_from_slice(b"\x0a\x01a\x0a\x01b");
    body.extend_from_slice(b"\x1a\x02\x08\x07"); // user { id: 7 }
    body.extend_from_slice(b"\x1a\x05\x12\x03\x0a\x01n"); // user { name: "n" }
    // items { sizes: -1 (unpacked), sizes: [1, 2] (packed) }
    body.extend_from_slice(b"\x6a\x06\x18\x01\x1a\x02\x02\x04");
    // Both members of the oneof `source`, web then app: the last one sent is the one set.
    body.extend_from_slice(b"\x8a\x01\x01w\x90\x01\x05");
    let decoded = decoder(2)
        .decode(&messages(&[with_body(2, &body)]))
        .unwrap();
    assert!(
        decoded.dead_letters.is_empty(),
        "{:?}",
        decoded.dead_letters
    );
    let row = &as_json(&decoded.declared)[0];
    assert_eq!(row["id"], "b");
    assert_eq!(row["user"], serde_json::json!({"id": 7, "name": "n"}));
    assert_eq!(row["items"][0]["sizes"], serde_json::json!([-1, 1, 2]));
    assert_eq!(row["app"], 5);
    assert!(row.get("web").is_none(), "{row}");
}

#[test]
fn a_narrowed_field_makes_the_writer_incompatible() {
    let v2 = framed(2, r#"{"id": "new", "quantity": "5"}"#);
    let decoded = decoder(1).decode(&messages(&[v2])).unwrap();
    let dead = decoded.dead_letters.iter().next().unwrap();
    assert_eq!(dead.reason.as_str(), "incompatible_schema");
    assert!(
        dead.detail
            .contains("field `quantity` (number 5) is written as int64 and read as int32"),
        "{}",
        dead.detail
    );
}

#[test]
fn imports_are_fetched_through_references() {
    let click = framed(4, r#"{"id": "i", "user": {"id": "3", "name": "bo"}}"#);
    let writers = WriterSchemas::new(
        Box::new(registry()),
        reader(4),
        Arc::new(DecodeStall::default()),
    );
    let decoded = ProtobufDecoder::new(Arc::new(writers))
        .decode(&messages(&[click, with_body(5, b"")]))
        .unwrap();
    let row = &as_json(&decoded.declared)[0];
    assert_eq!(row["user"], serde_json::json!({"id": 3, "name": "bo"}));
    let dead = decoded.dead_letters.iter().next().unwrap();
    assert_eq!(dead.reason.as_str(), "incompatible_schema");
    assert!(
        dead.detail.contains("import `shop/user.proto`"),
        "{}",
        dead.detail
    );
}

#[test]
fn columns_refuse_what_parquet_cannot_hold() {
    let schema = |text: &str| {
        let file = compile_schema(&registered(9, text, Vec::new()), &registry())
            .unwrap()
            .unwrap();
        ProtobufReader::new(&file, None, "ts").map(|r| r.declared_schema())
    };
    let recursive = schema(
        r#"syntax = "proto3"; message Tree { int64 ts = 1; Node root = 2; }
           message Node { string name = 1; repeated Node children = 2; }"#,
    );
    assert!(
        recursive
            .as_ref()
            .unwrap_err()
            .contains("field `root.children[]`: message `Node` contains itself"),
        "{recursive:?}"
    );
    let text_time = schema(r#"syntax = "proto3"; message E { string ts = 1; }"#);
    assert!(
        text_time
            .unwrap_err()
            .contains("event-time field `ts` is Protobuf string")
    );
    let millis = schema(r#"syntax = "proto3"; message E { int64 ts = 1; }"#).unwrap();
    assert_eq!(
        millis.field(0).data_type(),
        &weir_schemas::metadata::utc_millis()
    );
    let broken = compile_schema(
        &registered(9, "syntax = \"proto3\"; message {", Vec::new()),
        &registry(),
    )
    .unwrap();
    assert!(broken.is_err());
}

#[test]
fn an_int64_event_time_is_epoch_milliseconds() {
    let text = r#"syntax = "proto3"; message E { int64 ts = 1; }"#;
    let fixed = Fixed(HashMap::from([(9, registered(9, text, Vec::new()))]));
    let file = compile_schema(&fixed.fetch(9).unwrap(), &fixed)
        .unwrap()
        .unwrap();
    let reader = ProtobufReader::new(&file, None, "ts").unwrap();
    let writers = WriterSchemas::new(Box::new(fixed), reader, Arc::new(DecodeStall::default()));
    // framing: id 9, the first message (a lone 0), then ts = 1796634001123.
    let mut payload = vec![0, 0, 0, 0, 9, 0];
    payload.push(0x08);
    super::varint(1_796_634_001_123, &mut payload);
    let decoded = ProtobufDecoder::new(Arc::new(writers))
        .decode(&messages(&[payload]))
        .unwrap();
    let ts = decoded
        .declared
        .column(0)
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.value(0), 1_796_634_001_123);
}

#[test]
fn a_schema_file_picks_orders_and_types_the_columns() {
    let file = weir_schemas::EventSchema::parse(
        r#"name = "clicks"
[[fields]]
name = "quantity"
type = "float64"
[[fields]]
name = "id"
type = "string"
required = true
[[fields]]
name = "ts"
type = "timestamp"
required = true
[[fields]]
name = "user"
type = "struct"
fields = [{ name = "name", type = "string", required = true }]
[[fields]]
name = "items"
type = "list"
items = { type = "struct", fields = [{ name = "count", type = "int64" }] }
[[fields]]
name = "kind"
type = "string"
"#,
        std::path::Path::new("clicks.toml"),
    )
    .unwrap();
    let reader = reader(2).with_schema_file(file.clone()).unwrap();
    assert_eq!(reader.declared_schema(), file.arrow_schema());
    let writers = WriterSchemas::new(
        Box::new(registry()),
        reader,
        Arc::new(DecodeStall::default()),
    );
    let full = framed(2, FULL);
    // The user's name is required by the file; this click has a user without one.
    let nameless = framed(
        2,
        r#"{"id": "n", "ts": "2026-12-07T09:00:00Z", "user": {"id": "1"}}"#,
    );
    // No user at all: a required field inside an absent struct is not missing.
    let userless = framed(
        1,
        r#"{"id": "u", "ts": "2026-12-07T09:00:00Z", "quantity": 2}"#,
    );
    let decoded = ProtobufDecoder::new(Arc::new(writers))
        .decode(&messages(&[full, nameless, userless]))
        .unwrap();
    assert_eq!(decoded.message_of_row, [0, 2]);
    let dead = decoded.dead_letters.iter().next().unwrap();
    assert_eq!(dead.reason.as_str(), "missing_field");
    assert!(dead.detail.contains("`user.name`"), "{}", dead.detail);
    let rows = as_json(&decoded.declared);
    assert_eq!(
        rows[0],
        serde_json::json!({"quantity": 3_000_000_001.0, "id": "c-1",
            "ts": "2026-12-07T09:00:01.123Z", "user": {"name": "ann"},
            "items": [{"count": 2}, {"count": 0}], "kind": "CART"})
    );
    assert_eq!(
        rows[1],
        serde_json::json!({"quantity": 2.0, "id": "u", "ts": "2026-12-07T09:00:00Z",
            "items": [], "kind": "KIND_UNSPECIFIED"})
    );
}

#[test]
fn a_schema_file_naming_what_the_message_lacks_or_cannot_give_is_refused() {
    let refused = |fields: &str| {
        let file = weir_schemas::EventSchema::parse(
            &format!("name = \"clicks\"\n{fields}"),
            std::path::Path::new("clicks.toml"),
        )
        .unwrap();
        reader(2).with_schema_file(file).err().unwrap()
    };
    let unknown = refused("[[fields]]\nname = \"colour\"\ntype = \"string\"");
    assert!(
        unknown.contains("field `colour`: message `shop.Click` has no such field"),
        "{unknown}"
    );
    let nested = refused(
        "[[fields]]\nname = \"user\"\ntype = \"struct\"\nfields = [{ name = \"age\", type = \"int64\" }]",
    );
    assert!(nested.contains("field `user.age`"), "{nested}");
    let uncastable = refused("[[fields]]\nname = \"user\"\ntype = \"int64\"");
    assert!(uncastable.contains("field `user`"), "{uncastable}");
}

/// Following the registry (`evolution = "add_columns"`): the first batch with a writer whose
/// message has field numbers the reader lacks is given up and the writer reported, once; an
/// older writer is not reported.
#[test]
fn a_writer_with_new_field_numbers_is_reported_once() {
    let evolution = Arc::new(ReaderEvolution::default());
    let writers = |reader_id| {
        WriterSchemas::new(
            Box::new(registry()),
            reader(reader_id),
            Arc::new(DecodeStall::default()),
        )
        .with_evolution(evolution.clone())
    };
    let v2 = framed(
        2,
        r#"{"id": "new", "ts": "2026-12-07T09:00:00Z", "referrer": "r"}"#,
    );
    let mut on_v1 = ProtobufDecoder::new(Arc::new(writers(1)));
    let batch = messages(&[v2]);
    assert!(on_v1.decode(&batch).is_err(), "given up undecided");
    let met = evolution.take().unwrap();
    assert_eq!((met.schema_id, met.change.as_str()), (2, "adds referrer"));
    // Kept as the reader: version 2 widened `quantity`, which version 1 cannot hold.
    let decoded = on_v1.decode(&batch).unwrap();
    let reasons: Vec<_> = decoded
        .dead_letters
        .iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert_eq!(reasons, ["incompatible_schema"]);
    assert_eq!(evolution.take(), None);

    let v1 = framed(1, r#"{"id": "old", "ts": "2026-12-07T09:00:00Z"}"#);
    let mut on_v2 = ProtobufDecoder::new(Arc::new(writers(2)));
    let decoded = on_v2.decode(&messages(&[v1])).unwrap();
    assert_eq!(decoded.declared.num_rows(), 1);
    assert_eq!(evolution.take(), None);
}
