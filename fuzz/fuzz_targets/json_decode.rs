//! The JSON decoder against arrow-json: fed any payload between two that fit, it accounts
//! for each as one row or one dead letter, and its rows are exactly what arrow-json reads
//! from the payloads it accepted.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::json::reader::ReaderBuilder;
use libfuzzer_sys::fuzz_target;
use weir_ingest::{Decode, JsonDecoder};
use weir_schemas::{EventSchema, RawMessages};

/// Every kind of field the schema language has, nested ones included.
static SCHEMA: LazyLock<EventSchema> = LazyLock::new(|| {
    EventSchema::parse(
        r#"
        [[fields]]
        name = "id"
        type = "string"
        required = true
        [[fields]]
        name = "n32"
        type = "int32"
        [[fields]]
        name = "n64"
        type = "int64"
        [[fields]]
        name = "x"
        type = "float64"
        [[fields]]
        name = "ok"
        type = "bool"
        [[fields]]
        name = "ts"
        type = "timestamp"
        [[fields]]
        name = "day"
        type = "date"
        [[fields]]
        name = "user"
        type = "struct"
        fields = [ { name = "id", type = "int64", required = true }, { name = "name", type = "string" } ]
        [[fields]]
        name = "tags"
        type = "list"
        items = { type = "string" }
        [[fields]]
        name = "points"
        type = "list"
        items = { type = "struct", fields = [ { name = "at", type = "timestamp" } ] }
        "#,
        Path::new("fuzz.toml"),
    )
    .expect("the fuzz schema parses")
});

/// arrow-json's reading of one payload, if it makes one row of it.
fn arrow_json(payload: &[u8]) -> Option<RecordBatch> {
    let mut decoder = ReaderBuilder::new(SCHEMA.arrow_schema())
        .build_decoder()
        .expect("a decoder for the schema");
    let consumed = decoder.decode(payload).ok()?;
    let batch = decoder.flush().ok()??;
    (consumed == payload.len() && batch.num_rows() == 1).then_some(batch)
}

/// A payload that fits, read before and after the fuzzed one: a payload rejected half-way
/// must leave nothing behind in the columns.
const GOOD: &[u8] = br#"{"id":"a","n64":1,"tags":["x"],"user":{"id":2},"points":[{"at":3}]}"#;

fuzz_target!(|payload: &[u8]| {
    let mut messages = RawMessages::with_capacity(3);
    for (offset, bytes) in [GOOD, payload, GOOD].into_iter().enumerate() {
        messages.push("t", 0, offset as i64, None, None, Some(bytes));
    }
    let decoded = JsonDecoder::new(&SCHEMA)
        .decode(&messages.finish())
        .expect("JSON never waits");
    assert_eq!(decoded.declared.num_rows() + decoded.dead_letters.len(), 3);
    let expected: Vec<RecordBatch> = decoded
        .message_of_row
        .iter()
        .map(|&i| {
            let bytes = [GOOD, payload, GOOD][i as usize];
            arrow_json(bytes).unwrap_or_else(|| {
                panic!("accepted, but arrow-json does not read {:?}", String::from_utf8_lossy(bytes))
            })
        })
        .collect();
    let expected = concat_batches(&SCHEMA.arrow_schema(), &expected).expect("one schema");
    assert_eq!(decoded.declared, expected, "rows differ from arrow-json's");
});
