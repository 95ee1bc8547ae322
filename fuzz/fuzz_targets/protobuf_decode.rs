//! The Protobuf decoder fed any message indexes and body between two messages that fit: it
//! accounts for each message as one row or one dead letter, its good neighbours come out as
//! they would alone, and a body it accepts decodes to the same row on its own.
#![no_main]

use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::RecordBatch;
use libfuzzer_sys::fuzz_target;
use weir_ingest::protobuf::{JsonToProtobuf, ProtobufReader, compile_schema};
use weir_ingest::registry::{FetchSchema, RegisteredSchema, RegistryError, WriterSchemas};
use weir_ingest::{Decode, ProtobufDecoder};
use weir_schemas::RawMessages;

const V1: &str = include_str!("../../examples/protobuf/click-v1.proto");
const V2: &str = include_str!("../../examples/protobuf/click-v2.proto");

/// The two versions of the example's click, as ids 1 and 2.
struct Versions;

impl FetchSchema for Versions {
    fn fetch(&self, id: u32) -> Result<RegisteredSchema, RegistryError> {
        let schema = match id {
            1 => V1,
            2 => V2,
            _ => {
                return Err(RegistryError::NotFound {
                    what: format!("schema id {id}"),
                    code: 40403,
                    message: "Schema not found".into(),
                });
            }
        };
        Ok(RegisteredSchema {
            id,
            schema_type: "PROTOBUF".into(),
            schema: schema.into(),
            version: None,
            references: Vec::new(),
        })
    }
}

fn reader(id: u32) -> ProtobufReader {
    let schema = Versions.fetch(id).expect("a version");
    let file = compile_schema(&schema, &Versions)
        .expect("nothing to fetch")
        .expect("the example compiles");
    ProtobufReader::new(&file, Some("shop.Click"), "ts").expect("a click reader")
}

fn decoder() -> ProtobufDecoder {
    let writers = WriterSchemas::new(Box::new(Versions), reader(2), Arc::default());
    ProtobufDecoder::new(Arc::new(writers))
}

/// A click of version 1 that fits, sent before and after the fuzzed one.
static GOOD: LazyLock<Vec<u8>> = LazyLock::new(|| {
    JsonToProtobuf::new(reader(1).message(), 1)
        .encode(
            r#"{"id":"g","ts":"2026-12-07T09:00:00.5Z","user":{"id":"2","name":"n"},
                "kind":"BUY","quantity":-3,"tags":["a"],"attrs":{"k":"v"},"raw":"eA==",
                "items":[{"sku":"s","count":1,"sizes":[-1,2]}],"note":"","app":0}"#,
        )
        .expect("the good click encodes")
});

/// One decoder for the whole run, as the service keeps one per thread: whatever a bad body
/// did to it must not show in later batches.
static DECODER: LazyLock<Mutex<ProtobufDecoder>> = LazyLock::new(|| Mutex::new(decoder()));

/// The good click's row, decoded on its own by a decoder of its own.
static GOOD_ROW: LazyLock<RecordBatch> = LazyLock::new(|| {
    let mut messages = RawMessages::with_capacity(1);
    messages.push("t", 0, 0, None, None, Some(&GOOD));
    decoder().decode(&messages.finish()).expect("nothing to wait for").declared
});

fn decode(payloads: &[&[u8]]) -> (RecordBatch, Vec<u32>, usize) {
    let mut messages = RawMessages::with_capacity(payloads.len());
    for (offset, bytes) in payloads.iter().enumerate() {
        messages.push("t", 0, offset as i64, None, None, Some(bytes));
    }
    let decoded = DECODER
        .lock()
        .expect("not poisoned")
        .decode(&messages.finish())
        .expect("nothing to wait for");
    (decoded.declared, decoded.message_of_row, decoded.dead_letters.len())
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the framing: writer id 1, 2 or one the registry lacks; the rest
    // is the message indexes and the body.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut fuzzed = vec![0, 0, 0, 0, [1, 2, 3][pick as usize % 3]];
    fuzzed.extend_from_slice(rest);
    let good: &[u8] = &GOOD;
    let (rows, message_of_row, dead) = decode(&[good, &fuzzed, good]);
    assert_eq!(rows.num_rows() + dead, 3);
    let alone = &*GOOD_ROW;
    let rows_of = |batch: &RecordBatch, row: usize| batch.slice(row, 1);
    assert_eq!(&rows_of(&rows, 0), alone, "the first good click changed");
    assert_eq!(&rows_of(&rows, rows.num_rows() - 1), alone, "the last good click changed");
    if message_of_row.contains(&1) {
        let (fuzzed_alone, _, _) = decode(&[&fuzzed]);
        assert_eq!(rows_of(&rows, 1), fuzzed_alone, "accepted, but not the same row alone");
    }
});
