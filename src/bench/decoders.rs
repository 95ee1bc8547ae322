//! `weir bench --decoders`: the decoders alone, on the same generated click stream as JSON,
//! Confluent-framed Avro and Confluent-framed Protobuf, one thread each, in polled-size
//! batches: what a format costs per event before any other stage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_ingest::avro::{AvroSchema, arrow_form, declared_schema};
use weir_ingest::protobuf::{ProtobufReader, compile_schema};
use weir_ingest::registry::{FetchSchema, WriterSchemas};
use weir_ingest::{AvroDecoder, Decode, JsonDecoder, ProtobufDecoder};
use weir_schemas::{Messages, RawMessages};

use crate::generate::{Generator, GeneratorOptions, RegisteredSchemaOf, quickstart_schema};

/// Messages per decoded batch: the default `max_batch_messages`.
const BATCH: u64 = 10_000;
/// The schema id the framed events name.
const SCHEMA_ID: u32 = 1;

/// What `weir bench --decoders` measured.
#[derive(Debug, Serialize)]
pub struct DecoderBenchReport {
    pub events: u64,
    pub formats: Vec<DecoderFigures>,
}

#[derive(Debug, Serialize)]
pub struct DecoderFigures {
    pub format: String,
    pub bytes_per_event: f64,
    pub events_per_second: f64,
    pub nanoseconds_per_event: f64,
    /// Rows decoded: every event, since the stream has no malformed ones.
    pub rows: u64,
}

/// Decodes `events` generated clicks (none malformed) in each format, best of `runs`.
pub fn bench_decoders(events: u64, runs: usize) -> anyhow::Result<DecoderBenchReport> {
    let options = GeneratorOptions {
        malformed_ratio: 0.0,
        ..Default::default()
    };
    let mut formats = Vec::new();
    for format in ["json", "avro", "protobuf"] {
        let generator = match format {
            "avro" => Generator::new(options.clone()).with_avro(SCHEMA_ID),
            "protobuf" => Generator::new(options.clone()).with_protobuf(SCHEMA_ID),
            _ => Generator::new(options.clone()),
        };
        let (batches, bytes) = batches(&generator, events);
        let mut best = Duration::MAX;
        let mut rows = 0;
        for _ in 0..runs.max(1) {
            let mut decoder = decoder(format)?;
            let started = Instant::now();
            rows = 0;
            for batch in &batches {
                let decoded = decoder.decode(batch).map_err(|e| anyhow::anyhow!("{e}"))?;
                anyhow::ensure!(
                    decoded.dead_letters.is_empty(),
                    "a generated {format} event was a dead letter"
                );
                rows += decoded.declared.num_rows() as u64;
            }
            best = best.min(started.elapsed());
        }
        let seconds = best.as_secs_f64().max(1e-9);
        formats.push(DecoderFigures {
            format: format.to_owned(),
            bytes_per_event: bytes as f64 / events.max(1) as f64,
            events_per_second: events as f64 / seconds,
            nanoseconds_per_event: seconds * 1e9 / events.max(1) as f64,
            rows,
        });
    }
    Ok(DecoderBenchReport { events, formats })
}

/// The generator's first `events` events as batches of messages, and their payload bytes.
fn batches(generator: &Generator, events: u64) -> (Vec<Messages>, u64) {
    let mut batches = Vec::new();
    let mut bytes = 0;
    let mut first = 0;
    while first < events {
        let last = (first + BATCH).min(events);
        let mut raw = RawMessages::with_capacity((last - first) as usize);
        for index in first..last {
            let event = generator.event(index);
            bytes += event.payload.len() as u64;
            raw.push("bench", 0, index as i64, None, None, Some(&event.payload));
        }
        batches.push(raw.finish());
        first = last;
    }
    (batches, bytes)
}

fn decoder(format: &str) -> anyhow::Result<Box<dyn Decode>> {
    Ok(match format {
        "avro" => {
            let reader = AvroSchema::new(crate::generate::avro_schema());
            let arrow = arrow_form(&reader).map_err(anyhow::Error::msg)?;
            let declared = declared_schema(&arrow, "ts").map_err(anyhow::Error::msg)?;
            let writers = WriterSchemas::new(
                Box::new(RegisteredSchemaOf::avro(SCHEMA_ID)),
                reader,
                Arc::default(),
            );
            Box::new(AvroDecoder::new(Arc::new(writers), declared))
        }
        "protobuf" => {
            let registered = RegisteredSchemaOf::protobuf(SCHEMA_ID);
            let schema = registered.fetch(SCHEMA_ID)?;
            let file = compile_schema(&schema, &registered)?.map_err(anyhow::Error::msg)?;
            let reader = ProtobufReader::new(&file, None, "ts").map_err(anyhow::Error::msg)?;
            let writers = WriterSchemas::new(Box::new(registered), reader, Arc::default());
            Box::new(ProtobufDecoder::new(Arc::new(writers)))
        }
        _ => Box::new(JsonDecoder::new(&quickstart_schema())),
    })
}

impl std::fmt::Display for DecoderBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "weir bench --decoders: {} generated clicks per format, one thread, batches of {BATCH}",
            self.events
        )?;
        writeln!(
            f,
            "  {:<10} {:>10} {:>14} {:>10} {:>10}",
            "format", "bytes/ev", "events/s", "ns/event", "vs JSON"
        )?;
        let json = self
            .formats
            .iter()
            .find(|r| r.format == "json")
            .map_or(f64::NAN, |r| r.nanoseconds_per_event);
        for (i, r) in self.formats.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "  {:<10} {:>10.0} {:>14.0} {:>10.0} {:>9.0}%",
                r.format,
                r.bytes_per_event,
                r.events_per_second,
                r.nanoseconds_per_event,
                r.nanoseconds_per_event / json * 100.0
            )?;
        }
        Ok(())
    }
}
