//! The payload check against arrow-json: any payload the check accepts, arrow-json decodes
//! into the schema as one row (the check's promise, which keeps a batch from failing whole);
//! and the decoder, fed the payload, accounts for it as one row or one dead letter.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use arrow::json::reader::ReaderBuilder;
use libfuzzer_sys::fuzz_target;
use weir_ingest::json::check::Checker;
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

static CHECKER: LazyLock<Checker> = LazyLock::new(|| Checker::new(&SCHEMA.fields));

fuzz_target!(|payload: &[u8]| {
    if CHECKER.check(payload).is_ok() {
        let mut decoder = ReaderBuilder::new(SCHEMA.arrow_schema())
            .build_decoder()
            .expect("a decoder for the schema");
        let consumed = decoder.decode(payload);
        let batch = decoder.flush();
        match (consumed, batch) {
            (Ok(n), Ok(Some(batch))) if n == payload.len() => assert_eq!(batch.num_rows(), 1),
            other => panic!("accepted, but arrow-json says {other:?}"),
        }
    }

    let mut messages = RawMessages::with_capacity(1);
    messages.push("t", 0, 0, None, None, Some(payload));
    let mut decoder = JsonDecoder::new(&SCHEMA, 16).expect("a decoder for the schema");
    let decoded = decoder.decode(&messages.finish());
    assert_eq!(decoded.declared.num_rows() + decoded.dead_letters.len(), 1);
});
