use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, TimestampMillisecondType};
use weir_schemas::RawMessages;

use super::*;
use crate::decode::DecodeStall;
use crate::registry::{RegisteredSchema, RegistryError};

const V1: &str = r#"{"type":"record","name":"Click","namespace":"shop","fields":[
  {"name":"id","type":"string"},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":["null","double"],"default":null},
  {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["VIEW","BUY"]}},
  {"name":"session","type":{"type":"string","logicalType":"uuid"}},
  {"name":"count","type":"int"}
]}"#;

/// V1 with an optional field more and `count` widened to long.
const V2: &str = r#"{"type":"record","name":"Click","namespace":"shop","fields":[
  {"name":"id","type":"string"},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":["null","double"],"default":null},
  {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["VIEW","BUY"]}},
  {"name":"session","type":{"type":"string","logicalType":"uuid"}},
  {"name":"count","type":"long"},
  {"name":"referrer","type":["null","string"],"default":null}
]}"#;

/// `id` is a long here: no reader with a string `id` can read it.
const CLASHING: &str = r#"{"type":"record","name":"Click","namespace":"shop","fields":[
  {"name":"id","type":"long"}
]}"#;

const SESSION: &str = "6f1c2a7e-90b4-4e0a-8d1e-3c5b7a9f0d12";

/// Schemas by id, as a registry would serve them; ids in `down` fail as unavailable that
/// many times first.
struct Fixed {
    schemas: HashMap<u32, &'static str>,
    down: AtomicUsize,
}

impl FetchSchema for Fixed {
    fn fetch(&self, id: u32) -> Result<RegisteredSchema, RegistryError> {
        if self
            .down
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(RegistryError::Unavailable {
                url: "http://127.0.0.1:1/".into(),
                why: "connection refused".into(),
            });
        }
        match self.schemas.get(&id) {
            Some(schema) => Ok(RegisteredSchema {
                id,
                schema_type: "AVRO".into(),
                schema: (*schema).into(),
                version: None,
                references: Vec::new(),
            }),
            None => Err(RegistryError::NotFound {
                what: format!("schema id {id}"),
                code: 40403,
                message: "Schema not found".into(),
            }),
        }
    }
}

fn decoder(reader: &str, down: usize) -> (AvroDecoder, Arc<DecodeStall>) {
    let fetch = Fixed {
        schemas: HashMap::from([(1, V1), (2, V2), (3, CLASHING)]),
        down: AtomicUsize::new(down),
    };
    let reader = AvroSchema::new(reader.into());
    let declared = declared_schema(&arrow_form(&reader).unwrap(), "ts").unwrap();
    let stall = Arc::new(DecodeStall::default());
    let writers = WriterSchemas::new(Box::new(fetch), reader, stall.clone());
    (AvroDecoder::new(Arc::new(writers), declared), stall)
}

// Avro's binary encoding, enough for the schemas above.
fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

struct Click {
    id: &'static str,
    ts: i64,
    amount: Option<f64>,
    buy: bool,
    count: i64,
}

fn framed(id: u32, click: &Click, referrer: Option<Option<&str>>) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    string(&mut out, click.id);
    long(&mut out, click.ts);
    match click.amount {
        None => long(&mut out, 0),
        Some(v) => {
            long(&mut out, 1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    long(&mut out, i64::from(click.buy));
    string(&mut out, SESSION);
    long(&mut out, click.count);
    if let Some(referrer) = referrer {
        match referrer {
            None => long(&mut out, 0),
            Some(r) => {
                long(&mut out, 1);
                string(&mut out, r);
            }
        }
    }
    out
}

fn click(n: i64) -> Click {
    Click {
        id: ["a", "b", "c", "d", "e", "f"][n as usize % 6],
        ts: 1_764_000_000_000 + n,
        amount: (n % 2 == 0).then_some(n as f64 * 1.5),
        buy: n % 3 == 0,
        count: n,
    }
}

fn messages(payloads: &[Option<Vec<u8>>]) -> Messages {
    let mut raw = RawMessages::with_capacity(payloads.len());
    for (offset, payload) in payloads.iter().enumerate() {
        raw.push("clicks", 0, offset as i64, None, None, payload.as_deref());
    }
    raw.finish()
}

fn reasons(decoded: &Decoded) -> Vec<(i64, String, String)> {
    decoded
        .dead_letters
        .iter()
        .map(|l| (l.offset, l.reason.to_string(), l.detail.clone()))
        .collect()
}

#[test]
fn framed_messages_become_rows_of_the_declared_columns() {
    let (mut decoder, _) = decoder(V1, 0);
    let payloads: Vec<_> = (0..4).map(|n| Some(framed(1, &click(n), None))).collect();
    let decoded = decoder.decode(&messages(&payloads)).unwrap();
    assert!(decoded.dead_letters.is_empty(), "{:?}", reasons(&decoded));
    assert_eq!(decoded.message_of_row, [0, 1, 2, 3]);
    let rows = &decoded.declared;
    let schema = rows.schema();
    assert_eq!(
        schema.field_with_name("kind").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        schema.field_with_name("session").unwrap().data_type(),
        &DataType::Utf8
    );
    assert!(schema.fields().iter().all(|f| f.metadata().is_empty()));
    let column = |name: &str| rows.column(schema.index_of(name).unwrap()).clone();
    let ids: Vec<_> = column("id")
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    let ts = column("ts");
    let ts = ts.as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        ts.values().to_vec(),
        (0..4).map(|n| 1_764_000_000_000 + n).collect::<Vec<_>>()
    );
    let amount = column("amount");
    let amount: Vec<_> = amount
        .as_primitive::<arrow::datatypes::Float64Type>()
        .iter()
        .collect();
    assert_eq!(amount, [Some(0.0), None, Some(3.0), None]);
    let kind = column("kind");
    let kind: Vec<_> = kind.as_string::<i32>().iter().flatten().collect();
    assert_eq!(kind, ["BUY", "VIEW", "VIEW", "BUY"]);
    assert_eq!(column("session").as_string::<i32>().value(2), SESSION);
    assert_eq!(
        column("count")
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values()
            .to_vec(),
        [0, 1, 2, 3]
    );
}

#[test]
fn each_bad_message_is_a_dead_letter_with_its_reason_and_its_neighbours_are_rows() {
    let (mut decoder, _) = decoder(V1, 0);
    let good = |n| Some(framed(1, &click(n), None));
    let mut truncated = framed(1, &click(9), None);
    truncated.truncate(9);
    let mut trailing = framed(1, &click(9), None);
    trailing.extend_from_slice(&[7, 7, 7]);
    let mut unknown = framed(1, &click(9), None);
    unknown[1..5].copy_from_slice(&42u32.to_be_bytes());
    let mut clashing = vec![0, 0, 0, 0, 3];
    long(&mut clashing, 5);
    let payloads = vec![
        good(0),
        Some(b"{\"id\": \"json\"}".to_vec()),
        good(1),
        Some(truncated),
        good(2),
        Some(vec![0, 0, 1]),
        good(3),
        Some(trailing),
        good(4),
        Some(unknown),
        None,
        Some(clashing),
        good(5),
    ];
    let decoded = decoder.decode(&messages(&payloads)).unwrap();
    let got = reasons(&decoded);
    let offsets_and_reasons: Vec<_> = got.iter().map(|(o, r, _)| (*o, r.as_str())).collect();
    assert_eq!(
        offsets_and_reasons,
        [
            (1, "not_confluent_framed"),
            (3, "avro_decode_error"),
            (5, "not_confluent_framed"),
            (7, "avro_decode_error"),
            (9, "unknown_schema_id"),
            (10, "empty_message"),
            (11, "incompatible_schema"),
        ],
        "{got:#?}"
    );
    assert!(got[0].2.contains("first byte 0x7b"), "{}", got[0].2);
    assert!(got[1].2.contains("schema id 1"), "{}", got[1].2);
    assert!(
        got[3].2.contains("bytes left after the record"),
        "{}",
        got[3].2
    );
    assert!(
        got[4].2.contains("schema id 42") && got[4].2.contains("40403"),
        "{}",
        got[4].2
    );
    assert!(got[6].2.contains("schema id 3"), "{}", got[6].2);
    assert_eq!(decoded.message_of_row, [0, 2, 4, 6, 8, 12]);
    let counts = decoded
        .declared
        .column(5)
        .as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(counts.values().to_vec(), [0, 1, 2, 3, 4, 5]);
    // The decoder is sound for the next batch.
    let next = decoder.decode(&messages(&[good(6)])).unwrap();
    assert_eq!(next.declared.num_rows(), 1);
}

#[test]
fn writer_versions_resolve_to_the_reader_schema_within_one_batch() {
    let (mut decoder, _) = decoder(V2, 0);
    let payloads: Vec<_> = (0..6)
        .map(|n| {
            Some(if n % 2 == 0 {
                framed(1, &click(n), None)
            } else {
                framed(2, &click(n), Some(Some("news")))
            })
        })
        .collect();
    let decoded = decoder.decode(&messages(&payloads)).unwrap();
    assert!(decoded.dead_letters.is_empty(), "{:?}", reasons(&decoded));
    assert_eq!(decoded.message_of_row, [0, 1, 2, 3, 4, 5]);
    let rows = &decoded.declared;
    let count = rows
        .column(5)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(
        count.values().to_vec(),
        [0, 1, 2, 3, 4, 5],
        "int widened to long"
    );
    let referrer: Vec<_> = rows.column(6).as_string::<i32>().iter().collect();
    assert_eq!(
        referrer,
        [None, Some("news"), None, Some("news"), None, Some("news")],
        "the reader's default where the writer had no such field"
    );
}

#[test]
fn decoding_waits_while_the_registry_is_down_and_says_why() {
    let (mut decoder, stall) = decoder(V1, 2);
    let watcher = {
        let stall = stall.clone();
        std::thread::spawn(move || {
            // The decoder must be seen waiting before it can go on.
            loop {
                if let Some((why, _)) = stall.waiting() {
                    return why;
                }
                std::thread::yield_now();
            }
        })
    };
    let decoded = decoder
        .decode(&messages(&[Some(framed(1, &click(0), None))]))
        .unwrap();
    assert_eq!(decoded.declared.num_rows(), 1, "{:?}", reasons(&decoded));
    let why = watcher.join().unwrap();
    assert!(
        why.contains("schema id 1") && why.contains("connection refused"),
        "{why}"
    );
    assert!(
        stall.waiting().is_none(),
        "cleared once the registry answered"
    );
}

#[test]
fn types_parquet_cannot_hold_are_refused_by_name() {
    let union = r#"{"type":"record","name":"R","fields":[
      {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"inner","type":{"type":"record","name":"I","fields":[
        {"name":"v","type":["int","string"]}]}}]}"#;
    let arrow = arrow_form(&AvroSchema::new(union.into())).unwrap();
    let err = declared_schema(&arrow, "ts").unwrap_err();
    assert!(
        err.contains("field `inner.v`") && err.contains("union"),
        "{err}"
    );
    let plain = r#"{"type":"record","name":"R","fields":[
      {"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"v","type":"int"}]}}]}"#;
    let arrow = arrow_form(&AvroSchema::new(plain.into())).unwrap();
    let err = declared_schema(&arrow, "inner").unwrap_err();
    assert!(
        err.contains("event-time field `inner`") && err.contains("record"),
        "{err}"
    );
}

#[test]
fn json_samples_are_written_as_the_avro_a_producer_would_send() {
    let encoder = JsonToAvro::new(V2, 2).unwrap();
    let lines = [
        // Every field as a person writes it.
        r#"{"id": "a", "ts": "2025-11-24T16:00:00.004Z", "amount": 1.5, "kind": "BUY",
            "session": "6f1c2a7e-90b4-4e0a-8d1e-3c5b7a9f0d12", "count": 7, "referrer": "news"}"#,
        // Epoch milliseconds, a null, and a field left to its default.
        r#"{"id": "b", "ts": 1764000000001, "amount": null, "kind": "VIEW",
            "session": "6f1c2a7e-90b4-4e0a-8d1e-3c5b7a9f0d12", "count": 8}"#,
    ];
    let payloads: Vec<_> = lines
        .iter()
        .map(|l| Some(encoder.encode(l).unwrap()))
        .collect();
    let (mut decoder, _) = decoder(V2, 0);
    let decoded = decoder.decode(&messages(&payloads)).unwrap();
    assert!(decoded.dead_letters.is_empty(), "{:?}", reasons(&decoded));
    let rows = &decoded.declared;
    let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.values().to_vec(), [1_764_000_000_004, 1_764_000_000_001]);
    let amount: Vec<_> = rows
        .column(2)
        .as_primitive::<arrow::datatypes::Float64Type>()
        .iter()
        .collect();
    assert_eq!(amount, [Some(1.5), None]);
    let referrer: Vec<_> = rows.column(6).as_string::<i32>().iter().collect();
    assert_eq!(referrer, [Some("news"), None]);

    let err = encoder
        .encode(r#"{"id": "c", "ts": "yesterday", "kind": "BUY", "session": "x", "count": 1}"#)
        .unwrap_err();
    assert!(err.contains("`ts`") && err.contains("RFC 3339"), "{err}");
    let err = encoder
        .encode(r#"{"id": "c", "ts": 1, "kind": "SELL", "session": "x", "count": 1}"#)
        .unwrap_err();
    assert!(err.contains("`kind`") && err.contains("VIEW"), "{err}");
    let err = encoder.encode(r#"{"id": "c", "ts": 1}"#).unwrap_err();
    assert!(err.contains("`kind`: missing"), "{err}");
}

#[test]
fn decimals_and_dates_are_written_exactly() {
    let schema = r#"{"type":"record","name":"D","fields":[
      {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
      {"name":"fixed_price","type":{"type":"fixed","name":"F","size":5,"logicalType":"decimal","precision":10,"scale":3}},
      {"name":"day","type":{"type":"int","logicalType":"date"}}]}"#;
    let encoder = JsonToAvro::new(schema, 1).unwrap();
    let reader = AvroSchema::new(schema.into());
    let declared = declared_schema(&arrow_form(&reader).unwrap(), "none").unwrap();
    let fetch = Fixed {
        schemas: HashMap::from([(1, schema)]),
        down: AtomicUsize::new(0),
    };
    let writers = WriterSchemas::new(Box::new(fetch), reader, Arc::default());
    let mut decoder = AvroDecoder::new(Arc::new(writers), declared);
    let lines = [
        r#"{"price": "-1234.5", "fixed_price": -0.001, "day": "2026-12-07"}"#,
        r#"{"price": 99999999.99, "fixed_price": "1234567.891", "day": 0}"#,
        r#"{"price": "0", "fixed_price": "128", "day": "1969-12-31"}"#,
    ];
    let payloads: Vec<_> = lines
        .iter()
        .map(|l| Some(encoder.encode(l).unwrap()))
        .collect();
    let decoded = decoder.decode(&messages(&payloads)).unwrap();
    assert!(decoded.dead_letters.is_empty(), "{:?}", reasons(&decoded));
    let text = |i: usize| {
        let column = arrow::compute::cast(decoded.declared.column(i), &DataType::Utf8).unwrap();
        column
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(text(0), ["-1234.50", "99999999.99", "0.00"]);
    assert_eq!(text(1), ["-0.001", "1234567.891", "128.000"]);
    assert_eq!(text(2), ["2026-12-07", "1970-01-01", "1969-12-31"]);
    let err = encoder
        .encode(r#"{"price": "1.234", "fixed_price": 0, "day": 0}"#)
        .unwrap_err();
    assert!(err.contains("`price`") && err.contains("2 digits"), "{err}");
}

#[test]
fn a_decoder_waiting_for_the_registry_gives_its_batch_up_when_the_session_ends() {
    let (mut decoder, stall) = decoder(V1, usize::MAX);
    let ending = {
        let stall = stall.clone();
        std::thread::spawn(move || {
            // The session ends while the decoder waits.
            while stall.waiting().is_none() {
                std::thread::yield_now();
            }
            stall.abandon();
        })
    };
    let decoded = decoder.decode(&messages(&[Some(framed(1, &click(0), None))]));
    assert_eq!(decoded.err(), Some(crate::decode::Abandoned));
    ending.join().unwrap();
    assert!(stall.waiting().is_none());
}

/// A decoder reading V1 and V2 as the schema file `file`.
fn file_decoder(file: &str) -> Result<AvroDecoder, String> {
    let file = weir_schemas::EventSchema::parse(file, std::path::Path::new("clicks.toml"))
        .map_err(|e| e.to_string())?;
    let reader = AvroSchema::new(project(V2, &file.fields)?);
    let arrow = arrow_form(&reader)?;
    crate::schema_file::check_castable(&arrow, &file.arrow_schema())?;
    let fetch = Fixed {
        schemas: HashMap::from([(1, V1), (2, V2)]),
        down: AtomicUsize::new(0),
    };
    let writers = WriterSchemas::new(Box::new(fetch), reader, Arc::default());
    Ok(AvroDecoder::new(Arc::new(writers), file.arrow_schema()))
}

#[test]
fn a_schema_file_picks_orders_and_types_the_columns_and_its_required_fields_hold() {
    let mut decoder = file_decoder(
        r#"
        [[fields]]
        name = "count"
        type = "int64"
        [[fields]]
        name = "kind"
        type = "string"
        [[fields]]
        name = "ts"
        type = "timestamp"
        required = true
        [[fields]]
        name = "session"
        type = "string"
        [[fields]]
        name = "amount"
        type = "float64"
        required = true
        "#,
    )
    .unwrap();
    let payloads: Vec<_> = (0..4)
        .map(|n| {
            Some(match n % 2 {
                0 => framed(1, &click(n), None),
                _ => framed(2, &click(n), Some(None)),
            })
        })
        .collect();
    let decoded = decoder.decode(&messages(&payloads)).unwrap();
    let rows = &decoded.declared;
    let names: Vec<_> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["count", "kind", "ts", "session", "amount"]);
    // Clicks 1 and 3 have no amount, which the file requires.
    assert_eq!(decoded.message_of_row, [0, 2]);
    let reasons: Vec<_> = reasons(&decoded);
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons
            .iter()
            .all(|(_, r, d)| r == "missing_field" && d.contains("`amount`"))
    );
    assert_eq!(
        rows.column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec(),
        [0, 2],
        "int read as the file's int64"
    );
    let kinds: Vec<_> = rows.column(1).as_string::<i32>().iter().flatten().collect();
    assert_eq!(kinds, ["BUY", "VIEW"]);
    assert_eq!(rows.column(3).as_string::<i32>().value(0), SESSION);

    let err = file_decoder("[[fields]]\nname = \"referer\"\ntype = \"string\"\n")
        .err()
        .unwrap();
    assert!(
        err.contains("`referer`") && err.contains("not in the registry"),
        "{err}"
    );
    let err = file_decoder("[[fields]]\nname = \"id\"\ntype = \"struct\"\nfields = [{ name = \"a\", type = \"string\" }]\n")
        .err()
        .unwrap();
    assert!(err.contains("`id`") && err.contains("struct"), "{err}");
}
