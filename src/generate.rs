//! Realistic click-stream events, with a chosen share of malformed ones and bounded
//! out-of-order event times, for the quickstart, demos and benchmarks.
//!
//! Every event is decided by the seed and its index, and the generator knows which
//! dead-letter reason each malformed one must get, so a run can be checked exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::Serialize;

const PAGES: &[&str] = &[
    "/",
    "/search",
    "/product/1",
    "/product/2",
    "/product/3",
    "/cart",
    "/checkout",
    "/account",
    "/help",
    "/blog",
    "/blog/launch",
    "/pricing",
];
const COUNTRIES: &[&str] = &["DE", "US", "FR", "GB", "BR", "IN", "JP", "NG"];
const BROWSERS: &[&str] = &["firefox", "chrome", "safari", "edge"];
const OSES: &[&str] = &["linux", "macos", "windows", "android", "ios"];
const TAGS: &[&str] = &["promo", "returning", "mobile-web", "ab:b", "beta"];

/// How the events are made.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    pub seed: u64,
    /// Share of messages that are malformed in one of several ways (0.0 to 1.0).
    pub malformed_ratio: f64,
    /// Event times run up to this far behind the clock of the stream.
    pub max_disorder: Duration,
    /// Event time of the first event, epoch milliseconds.
    pub start_ms: i64,
    /// Event time advances this much per event.
    pub step_ms: i64,
    /// Valid events of about this many bytes, for measuring how cost grows with size: the
    /// required fields and a `referrer` of random letters that fills the rest.
    pub event_bytes: Option<usize>,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            malformed_ratio: 0.01,
            max_disorder: Duration::from_secs(30),
            start_ms: chrono::Utc::now().timestamp_millis() - 3_600_000,
            step_ms: 10,
            event_bytes: None,
        }
    }
}

/// One generated message and what weir must do with it.
pub struct GeneratedEvent {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// `None` for a valid event; the dead-letter reason otherwise.
    pub expected_reason: Option<&'static str>,
}

/// Counts of what was generated.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Generated {
    pub events: u64,
    pub valid: u64,
    pub bytes: u64,
    pub malformed: BTreeMap<String, u64>,
}

impl Generated {
    pub fn count(&mut self, event: &GeneratedEvent) {
        self.events += 1;
        self.bytes += event.payload.len() as u64;
        match event.expected_reason {
            None => self.valid += 1,
            Some(reason) => *self.malformed.entry(reason.to_owned()).or_insert(0) += 1,
        }
    }
}

pub struct Generator {
    options: GeneratorOptions,
    /// Events as Confluent-framed messages of a registered schema instead of JSON.
    framed: Option<Framed>,
}

/// How the generator's JSON events are written in a registry format.
enum Framed {
    Avro(weir_ingest::avro::JsonToAvro),
    Protobuf(weir_ingest::protobuf::JsonToProtobuf),
}

impl Framed {
    /// `body` framed as a message of a schema id no registry has.
    fn unregistered(&self, body: &[u8]) -> Vec<u8> {
        let mut payload = vec![0];
        payload.extend_from_slice(&UNREGISTERED_ID.to_be_bytes());
        if let Framed::Protobuf(_) = self {
            // The message indexes: the file's first message.
            payload.push(0);
        }
        payload.extend_from_slice(body);
        payload
    }

    fn encode(&self, event: &str) -> Result<Vec<u8>, String> {
        match self {
            Framed::Avro(encoder) => encoder.encode(event),
            Framed::Protobuf(encoder) => {
                // Protobuf's JSON mapping takes Timestamps as RFC 3339 text only.
                let mut value: serde_json::Value =
                    serde_json::from_str(event).map_err(|e| e.to_string())?;
                if let Some(ts) = value.get_mut("ts").filter(|ts| ts.is_i64()) {
                    let ms = ts.as_i64().expect("checked");
                    let time =
                        chrono::DateTime::from_timestamp_millis(ms).ok_or("ts out of range")?;
                    *ts = time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string().into();
                }
                encoder.encode(&value.to_string())
            }
        }
    }
}

/// A schema id no registry gives: framed with it, a message is `unknown_schema_id`.
const UNREGISTERED_ID: u32 = u32::MAX - 1;

/// The quickstart's schema file, which the generated events follow.
pub fn quickstart_schema() -> weir_schemas::EventSchema {
    weir_schemas::EventSchema::parse(
        include_str!("../examples/quickstart/schema.toml"),
        std::path::Path::new("schema.toml"),
    )
    .expect("the quickstart's schema parses")
}

/// The Avro schema of the generated click stream: the quickstart's schema file, as Avro.
pub fn avro_schema() -> String {
    weir_ingest::avro::avro_schema_of("click", &quickstart_schema().fields)
}

/// The generated click stream's schema in one registry format, as a registry holding it
/// alone under one id would serve it: for decoders in tests and benchmarks.
pub struct RegisteredSchemaOf {
    id: u32,
    schema_type: &'static str,
    schema: String,
}

impl RegisteredSchemaOf {
    pub fn avro(id: u32) -> Self {
        Self {
            id,
            schema_type: "AVRO",
            schema: avro_schema(),
        }
    }

    pub fn protobuf(id: u32) -> Self {
        Self {
            id,
            schema_type: "PROTOBUF",
            schema: protobuf_schema(),
        }
    }
}

impl weir_ingest::registry::FetchSchema for RegisteredSchemaOf {
    fn fetch(
        &self,
        id: u32,
    ) -> Result<weir_ingest::registry::RegisteredSchema, weir_ingest::registry::RegistryError> {
        if id != self.id {
            return Err(weir_ingest::registry::RegistryError::NotFound {
                what: format!("schema id {id}"),
                code: 40403,
                message: "Schema not found".into(),
            });
        }
        Ok(weir_ingest::registry::RegisteredSchema {
            id,
            schema_type: self.schema_type.into(),
            schema: self.schema.clone(),
            version: None,
            references: Vec::new(),
        })
    }
}

/// The Protobuf schema of the generated click stream: the quickstart's schema file, as
/// `.proto` source of the message `Click`.
pub fn protobuf_schema() -> String {
    weir_ingest::protobuf::proto_schema_of("click", &quickstart_schema().fields)
        .expect("the quickstart's schema has a Protobuf form")
}

impl Generator {
    pub fn new(options: GeneratorOptions) -> Self {
        Self {
            options,
            framed: None,
        }
    }

    /// Makes the events Confluent-framed Avro of [`avro_schema`], registered as `schema_id`.
    /// The same events as in JSON; of the malformed ones, those with a wrong type name a
    /// schema id no registry has (`unknown_schema_id`), and the others stay the JSON they
    /// were (`not_confluent_framed`); rule violations are valid Avro.
    pub fn with_avro(mut self, schema_id: u32) -> Self {
        let encoder = weir_ingest::avro::JsonToAvro::new(&avro_schema(), schema_id)
            .expect("the generated schema is Avro");
        self.framed = Some(Framed::Avro(encoder));
        self
    }

    /// Makes the events Confluent-framed Protobuf of [`protobuf_schema`], registered as
    /// `schema_id`; the malformed ones as [`Generator::with_avro`] says.
    pub fn with_protobuf(mut self, schema_id: u32) -> Self {
        use weir_ingest::protobuf::{JsonToProtobuf, ProtobufReader, compile_schema};
        use weir_ingest::registry::FetchSchema;
        let schema = RegisteredSchemaOf::protobuf(schema_id);
        let file = compile_schema(&schema.fetch(schema_id).expect("its own id"), &schema)
            .expect("nothing is fetched")
            .expect("the generated schema compiles");
        let reader = ProtobufReader::new(&file, None, "ts").expect("the schema has a message");
        self.framed = Some(Framed::Protobuf(JsonToProtobuf::new(
            reader.message(),
            schema_id,
        )));
        self
    }

    /// Event number `index`: the same for the same seed and index.
    pub fn event(&self, index: u64) -> GeneratedEvent {
        let event = self.json_event(index);
        let Some(framed) = &self.framed else {
            return event;
        };
        let (payload, expected_reason) = match event.expected_reason {
            None | Some("rule:non_negative_duration") => {
                let text = std::str::from_utf8(&event.payload).expect("valid events are UTF-8");
                let payload = framed
                    .encode(text)
                    .unwrap_or_else(|e| panic!("a generated event does not fit its schema: {e}"));
                (payload, event.expected_reason)
            }
            Some("wrong_type") => (
                framed.unregistered(&event.payload),
                Some("unknown_schema_id"),
            ),
            Some(_) => (event.payload, Some("not_confluent_framed")),
        };
        GeneratedEvent {
            payload,
            expected_reason,
            ..event
        }
    }

    fn json_event(&self, index: u64) -> GeneratedEvent {
        let o = &self.options;
        let mut rng = SmallRng::seed_from_u64(o.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let user = rng.random_range(1..50_000u64);
        let disorder = rng.random_range(0..=o.max_disorder.as_millis() as i64);
        let ts = o.start_ms + index as i64 * o.step_ms - disorder;
        let mut payload = Vec::with_capacity(320);
        let malformed = rng.random_bool(o.malformed_ratio.clamp(0.0, 1.0));
        let kind = if malformed {
            rng.random_range(0..6u8)
        } else {
            u8::MAX
        };
        let expected_reason = match kind {
            0 => Some("invalid_json"),
            1 => Some("not_utf8"),
            2 => Some("wrong_type"),
            3 => Some("missing_field"),
            4 => Some("rule:non_negative_duration"),
            5 => Some("not_an_object"),
            _ => None,
        };
        if kind == 5 {
            write!(payload, "[\"{index}\",{user}]").expect("writing to a Vec");
        } else if let (Some(bytes), None) = (o.event_bytes, expected_reason) {
            write_sized_event(&mut payload, &mut rng, o.seed, index, user, ts, bytes);
        } else {
            write_event(&mut payload, &mut rng, o.seed, index, user, ts, kind);
        }
        match kind {
            0 => payload.truncate(payload.len() / 2),
            1 => {
                let at = payload.iter().position(|&b| b == b'/').unwrap_or(1);
                payload[at] = 0xff;
            }
            _ => {}
        }
        GeneratedEvent {
            key: format!("u{user}").into_bytes(),
            payload,
            expected_reason,
        }
    }
}

fn write_event(
    out: &mut Vec<u8>,
    rng: &mut SmallRng,
    seed: u64,
    index: u64,
    user: u64,
    ts: i64,
    kind: u8,
) {
    let page = PAGES[rng.random_range(0..PAGES.len())];
    let session = rng.random_range(0..8u32);
    out.extend_from_slice(b"{");
    if kind != 3 {
        write!(out, "\"event_id\":\"{seed:x}-{index:012}\",").expect("writing to a Vec");
    }
    if kind == 2 {
        write!(out, "\"user_id\":\"u{user}\",").expect("writing to a Vec");
    } else {
        write!(out, "\"user_id\":{user},").expect("writing to a Vec");
    }
    write!(out, "\"session_id\":\"s{user:x}-{session}\",").expect("writing to a Vec");
    if rng.random_bool(0.8) {
        let time = chrono::DateTime::from_timestamp_millis(ts).expect("a valid time");
        write!(out, "\"ts\":\"{}\",", time.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
            .expect("writing to a Vec");
    } else {
        write!(out, "\"ts\":{ts},").expect("writing to a Vec");
    }
    write!(out, "\"page\":\"{page}\",").expect("writing to a Vec");
    if rng.random_bool(0.6) {
        let from = PAGES[rng.random_range(0..PAGES.len())];
        write!(out, "\"referrer\":\"https://example.com{from}\",").expect("writing to a Vec");
    } else {
        out.extend_from_slice(b"\"referrer\":null,");
    }
    let os = OSES[rng.random_range(0..OSES.len())];
    let mobile = matches!(os, "android" | "ios");
    write!(
        out,
        "\"device\":{{\"os\":\"{os}\",\"browser\":\"{}\",\"mobile\":{mobile}}},",
        BROWSERS[rng.random_range(0..BROWSERS.len())]
    )
    .expect("writing to a Vec");
    out.extend_from_slice(b"\"tags\":[");
    for t in 0..rng.random_range(0..3usize) {
        if t > 0 {
            out.push(b',');
        }
        write!(out, "\"{}\"", TAGS[rng.random_range(0..TAGS.len())]).expect("writing to a Vec");
    }
    out.extend_from_slice(b"],");
    let duration = if kind == 4 {
        -rng.random_range(1.0..1000.0f64)
    } else {
        rng.random_range(0.0..30_000.0f64)
    };
    write!(
        out,
        "\"duration_ms\":{duration:.1},\"country\":\"{}\"}}",
        COUNTRIES[rng.random_range(0..COUNTRIES.len())]
    )
    .expect("writing to a Vec");
}

/// A valid event of the required fields and a `referrer` of random letters, `bytes` long
/// unless the required fields alone are longer.
fn write_sized_event(
    out: &mut Vec<u8>,
    rng: &mut SmallRng,
    seed: u64,
    index: u64,
    user: u64,
    ts: i64,
    bytes: usize,
) {
    let page = PAGES[rng.random_range(0..PAGES.len())];
    write!(
        out,
        "{{\"event_id\":\"{seed:x}-{index:012}\",\"user_id\":{user},\"ts\":{ts},\"page\":\"{page}\""
    )
    .expect("writing to a Vec");
    const REFERRER: &[u8] = b",\"referrer\":\"\"}";
    let letters = bytes.saturating_sub(out.len() + REFERRER.len());
    if letters == 0 {
        out.push(b'}');
        return;
    }
    out.extend_from_slice(&REFERRER[..REFERRER.len() - 2]);
    out.extend((0..letters).map(|_| rng.random_range(b'a'..=b'z')));
    out.extend_from_slice(b"\"}");
}

/// Counts deliveries and failures reported by librdkafka.
#[derive(Default)]
struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct CountingContext(Arc<DeliveryCounter>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::warn!(error = %e, "event not delivered");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the producer: {0}")]
    Create(KafkaError),
    #[error("{failed} of {events} events were not delivered")]
    Undelivered { failed: u64, events: u64 },
    #[error("producer flush failed: {0}")]
    Flush(KafkaError),
}

/// How long the producer waits to fill a batch: short for a live stream, long to fill a
/// topic in large batches whatever the generator's pace.
pub const LIVE_LINGER: Duration = Duration::from_millis(5);

/// Produces events `0..events` (or until `stop`) to `topic`, batches lingering `linger`.
/// `may_run_ahead` is asked before each event whether the producer may go on; the
/// quickstart uses it to keep the producer within what the embedded cluster retains.
pub fn produce(
    bootstrap_servers: &str,
    topic: &str,
    generator: &Generator,
    events: Option<u64>,
    linger: Duration,
    stop: &std::sync::atomic::AtomicBool,
    may_run_ahead: &dyn Fn(u64) -> bool,
) -> Result<Generated, ProduceError> {
    let counter = Arc::new(DeliveryCounter::default());
    let producer: BaseProducer<CountingContext> =
        weir_ingest::client_config(bootstrap_servers, &BTreeMap::new())
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", linger.as_millis().to_string())
            .set("batch.size", "1000000")
            .create_with_context(CountingContext(counter.clone()))
            .map_err(ProduceError::Create)?;
    let mut generated = Generated::default();
    let mut index = 0u64;
    while events.is_none_or(|n| index < n) && !stop.load(Ordering::Relaxed) {
        if !may_run_ahead(index) {
            producer.poll(Duration::from_millis(5));
            continue;
        }
        let event = generator.event(index);
        let mut record = BaseRecord::to(topic)
            .key(&event.key)
            .payload(&event.payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, "event not produced");
                    counter.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        generated.count(&event);
        index += 1;
        if index.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(ProduceError::Flush)?;
    let failed = counter.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(ProduceError::Undelivered {
            failed,
            events: generated.events,
        });
    }
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_deterministic_and_malformed_ones_say_why() {
        let g = Generator::new(GeneratorOptions {
            malformed_ratio: 0.3,
            start_ms: 1_795_600_800_000,
            ..Default::default()
        });
        let mut counts = Generated::default();
        for i in 0..2000 {
            let a = g.event(i);
            assert_eq!(a.payload, g.event(i).payload);
            let valid_json = serde_json::from_slice::<serde_json::Value>(&a.payload).is_ok();
            match a.expected_reason {
                None | Some("wrong_type" | "missing_field" | "rule:non_negative_duration") => {
                    assert!(valid_json, "{}", String::from_utf8_lossy(&a.payload))
                }
                Some("not_an_object") => assert!(valid_json),
                Some("invalid_json" | "not_utf8") => assert!(!valid_json),
                Some(other) => panic!("unexpected reason {other}"),
            }
            counts.count(&a);
        }
        assert_eq!(counts.malformed.len(), 6, "{counts:?}");
        assert!(counts.valid > 1200 && counts.valid < 1600, "{counts:?}");
    }

    /// The Avro events carry what the JSON ones do: decoded by each format's decoder, the
    /// rows are equal, and the malformed ones are dead letters for the reasons announced.
    #[test]
    fn avro_events_are_the_json_events_in_avro() {
        use std::sync::Arc;

        use weir_ingest::AvroDecoder;
        use weir_ingest::avro::{AvroSchema, arrow_form, declared_schema};
        use weir_ingest::registry::WriterSchemas;

        let reader = AvroSchema::new(avro_schema());
        let declared = declared_schema(&arrow_form(&reader).unwrap(), "ts").unwrap();
        let writers = WriterSchemas::new(
            Box::new(RegisteredSchemaOf::avro(7)),
            reader,
            Arc::default(),
        );
        let mut decoder = AvroDecoder::new(Arc::new(writers), declared);
        framed_events_are_the_json_events(|g| g.with_avro(7), &mut decoder);
    }

    /// The same for the Protobuf events.
    #[test]
    fn protobuf_events_are_the_json_events_in_protobuf() {
        use std::sync::Arc;

        use weir_ingest::ProtobufDecoder;
        use weir_ingest::protobuf::{ProtobufReader, compile_schema};
        use weir_ingest::registry::{FetchSchema, WriterSchemas};

        let registered = RegisteredSchemaOf::protobuf(7);
        let file = compile_schema(&registered.fetch(7).unwrap(), &registered)
            .unwrap()
            .unwrap();
        let reader = ProtobufReader::new(&file, None, "ts").unwrap();
        let writers = WriterSchemas::new(Box::new(registered), reader, Arc::default());
        let mut decoder = ProtobufDecoder::new(Arc::new(writers));
        framed_events_are_the_json_events(|g| g.with_protobuf(7), &mut decoder);
    }

    /// The events `framed` makes of a generator's, decoded by `decoder`, against the JSON
    /// events decoded by the JSON decoder.
    fn framed_events_are_the_json_events(
        framed: impl Fn(Generator) -> Generator,
        decoder: &mut dyn weir_ingest::Decode,
    ) {
        use weir_ingest::{Decode, JsonDecoder};
        use weir_schemas::RawMessages;

        let options = GeneratorOptions {
            malformed_ratio: 0.3,
            start_ms: 1_795_600_800_000,
            ..Default::default()
        };
        let json = Generator::new(options.clone());
        let other = framed(Generator::new(options));
        let (mut json_messages, mut framed_messages) = (
            RawMessages::with_capacity(500),
            RawMessages::with_capacity(500),
        );
        let mut announced = Vec::new();
        for i in 0..500 {
            let (j, f) = (json.event(i), other.event(i));
            json_messages.push("t", 0, i as i64, None, None, Some(&j.payload));
            framed_messages.push("t", 0, i as i64, None, None, Some(&f.payload));
            if let Some(reason) = f.expected_reason.filter(|r| !r.starts_with("rule:")) {
                announced.push((i as i64, reason.to_owned()));
            }
        }
        let from_json = JsonDecoder::new(&quickstart_schema())
            .decode(&json_messages.finish())
            .unwrap();
        let from_framed = decoder.decode(&framed_messages.finish()).unwrap();
        let reasons: Vec<_> = from_framed
            .dead_letters
            .iter()
            .map(|l| (l.offset, l.reason.to_string()))
            .collect();
        assert_eq!(reasons, announced);
        assert!(reasons.iter().any(|(_, r)| r == "unknown_schema_id"));
        assert!(reasons.iter().any(|(_, r)| r == "not_confluent_framed"));
        assert_eq!(from_framed.message_of_row, from_json.message_of_row);
        let as_json = from_framed
            .declared
            .columns()
            .iter()
            .zip(from_json.declared.schema().fields())
            .map(|(column, field)| arrow::compute::cast(column, field.data_type()).unwrap())
            .collect();
        let as_json =
            arrow::array::RecordBatch::try_new(from_json.declared.schema(), as_json).unwrap();
        assert_eq!(as_json, from_json.declared);
    }

    #[test]
    fn sized_events_are_valid_json_of_the_size_asked_for() {
        for bytes in [1, 100, 1000, 10_000] {
            let g = Generator::new(GeneratorOptions {
                malformed_ratio: 0.0,
                event_bytes: Some(bytes),
                ..Default::default()
            });
            for i in 0..50 {
                let event = g.event(i);
                let value: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
                assert!(
                    value["event_id"].is_string() && value["ts"].is_i64(),
                    "{value}"
                );
                let len = event.payload.len();
                // The required fields alone take up to about 110 bytes.
                if bytes >= 120 {
                    assert_eq!(len, bytes);
                } else {
                    assert!(len <= 120, "{bytes}: {len}");
                }
            }
        }
    }
}
