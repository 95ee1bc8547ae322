//! Messages that could not become rows, kept with the reason and everything needed to
//! replay them: the raw payload, its key and where it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::metadata::utc_millis;

/// Why a message was dead-lettered. The string form is what appears in the `reason` column,
/// in Kafka headers and in counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The message had no value (a tombstone) or an empty one.
    EmptyMessage,
    /// The bytes are not valid UTF-8.
    NotUtf8,
    /// The bytes are not one JSON value.
    InvalidJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A field holds a value of another type than the schema declares.
    WrongType,
    /// Avro or Protobuf topics: the payload does not start with the Confluent wire format's
    /// magic byte and schema id.
    NotConfluentFramed,
    /// The schema id in the payload's framing is not in the schema registry.
    UnknownSchemaId,
    /// The schema the payload was written with cannot be read as the pipeline's schema.
    IncompatibleSchema,
    /// The Avro body does not match the schema its framing names.
    AvroDecodeError,
    /// The Protobuf body does not match the schema its framing names (a truncated value, a
    /// wrong wire type, text that is not UTF-8) or its message indexes name no message.
    ProtobufDecodeError,
    /// A required field is absent or null.
    MissingField,
    /// The event time cannot be right: outside what RFC 3339 can write, or further ahead of
    /// the wall clock than the pipeline allows.
    EventTimeOutOfRange,
    /// The row failed the named validation rule.
    Rule(Arc<str>),
    /// A transform's SQL failed on the message (e.g. a failed cast); the detail names the
    /// transform, whose dataset alone lacks the row.
    TransformFailed,
    /// The row's partition path (of the transform named in the detail) is longer than a store
    /// can hold; that dataset alone lacks the row.
    BadPartitionValue,
    /// Every window the event falls in (of the transform named in the detail) was emitted.
    Late,
    /// A windowed transform's SQL failed on a closed window's results (the detail names the
    /// transform, the window and the error); the payload holds the window's rows as the
    /// aggregation yielded them, as JSON lines. Its events are not dead letters themselves.
    WindowFailed,
}

impl Reason {
    pub fn as_str(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Reason::EmptyMessage => "empty_message".into(),
            Reason::NotUtf8 => "not_utf8".into(),
            Reason::InvalidJson => "invalid_json".into(),
            Reason::NotAnObject => "not_an_object".into(),
            Reason::WrongType => "wrong_type".into(),
            Reason::NotConfluentFramed => "not_confluent_framed".into(),
            Reason::UnknownSchemaId => "unknown_schema_id".into(),
            Reason::IncompatibleSchema => "incompatible_schema".into(),
            Reason::AvroDecodeError => "avro_decode_error".into(),
            Reason::ProtobufDecodeError => "protobuf_decode_error".into(),
            Reason::MissingField => "missing_field".into(),
            Reason::EventTimeOutOfRange => "event_time_out_of_range".into(),
            Reason::Rule(name) => format!("rule:{name}").into(),
            Reason::TransformFailed => "transform_failed".into(),
            Reason::BadPartitionValue => "bad_partition_value".into(),
            Reason::Late => "late".into(),
            Reason::WindowFailed => "window_failed".into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// One dead-lettered message.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub reason: Reason,
    /// Human-readable detail: what was expected, where in the message.
    pub detail: String,
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The Kafka message timestamp, epoch milliseconds.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// What the dead-letter output keeps of a message's payload and key. Dead letters are written
/// before any transform runs, so they hold what transforms would mask (e-mail addresses,
/// names); `drop` and `hash` keep that out of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadPolicy {
    /// Payload and key exactly as consumed: a dead letter can be replayed.
    #[default]
    Keep,
    /// Neither: the origin (topic, partition, offset) still says where to read them.
    Drop,
    /// `sha256:<hex>` of each: equal payloads (keys) are recognisable, their content is not.
    Hash,
}

impl PayloadPolicy {
    /// `bytes` (a payload or a key) as this policy keeps them.
    fn apply(self, bytes: Option<Vec<u8>>) -> Option<Vec<u8>> {
        use sha2::Digest;
        use std::fmt::Write;
        match self {
            PayloadPolicy::Keep => bytes,
            PayloadPolicy::Drop => None,
            PayloadPolicy::Hash => bytes.map(|bytes| {
                let mut text = String::from("sha256:");
                for byte in sha2::Sha256::digest(&bytes) {
                    let _ = write!(text, "{byte:02x}");
                }
                text.into_bytes()
            }),
        }
    }
}

/// The most bytes of keys, of payloads or of details in one batch of dead letters: well under
/// what 32-bit Arrow offsets address (2 GiB).
pub const BATCH_BYTES: usize = 1 << 30;

/// Dead letters collected between two checkpoints.
#[derive(Debug, Default)]
pub struct DeadLetters {
    letters: Vec<DeadLetter>,
}

impl DeadLetters {
    pub fn push(&mut self, letter: DeadLetter) {
        self.letters.push(letter);
    }

    pub fn extend(&mut self, other: DeadLetters) {
        self.letters.extend(other.letters);
    }

    /// Keeps only the letters `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&DeadLetter) -> bool) {
        self.letters.retain(keep);
    }

    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    pub fn len(&self) -> usize {
        self.letters.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &DeadLetter> {
        self.letters.iter()
    }

    pub fn take(&mut self) -> DeadLetters {
        std::mem::take(self)
    }

    /// Memory the letters hold: their payloads, keys and details, and the letters themselves.
    pub fn memory_bytes(&self) -> usize {
        let held = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(0, Vec::capacity);
        self.letters.capacity() * std::mem::size_of::<DeadLetter>()
            + self
                .letters
                .iter()
                .map(|l| l.detail.capacity() + held(&l.payload) + held(&l.key))
                .sum::<usize>()
    }

    /// Keeps of every payload and key what `policy` says.
    pub fn apply(&mut self, policy: PayloadPolicy) {
        if policy == PayloadPolicy::Keep {
            return;
        }
        for letter in &mut self.letters {
            letter.payload = policy.apply(letter.payload.take());
            letter.key = policy.apply(letter.key.take());
        }
    }

    /// Counts per reason.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for letter in &self.letters {
            *counts.entry(letter.reason.to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// The Arrow schema of the dead-letter dataset.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("reason", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, false),
            Field::new("kafka_timestamp", utc_millis(), true),
            Field::new("key", DataType::Binary, true),
            Field::new("payload", DataType::Binary, true),
            Field::new("dead_lettered_at", utc_millis(), false),
        ]))
    }

    /// The letters as batches of [`DeadLetters::schema`], stamped with `now_ms`. A batch's
    /// keys, payloads and details each stay under [`BATCH_BYTES`]: an Arrow array of them
    /// addresses its bytes with 32-bit offsets, and a flood of large bad messages between
    /// two checkpoints may hold more than 2 GiB.
    pub fn to_batches(&self, now_ms: i64) -> Vec<RecordBatch> {
        self.batches_of_at_most(BATCH_BYTES, now_ms)
    }

    fn batches_of_at_most(&self, max_bytes: usize, now_ms: i64) -> Vec<RecordBatch> {
        let mut batches = Vec::new();
        let mut start = 0;
        let mut bytes = [0usize; 3];
        for (i, letter) in self.letters.iter().enumerate() {
            let sizes = [
                letter.key.as_ref().map_or(0, Vec::len),
                letter.payload.as_ref().map_or(0, Vec::len),
                letter.detail.len(),
            ];
            let over = bytes.iter().zip(sizes).any(|(b, s)| b + s > max_bytes);
            if over && i > start {
                batches.push(Self::batch(&self.letters[start..i], now_ms));
                start = i;
                bytes = [0; 3];
            }
            for (b, s) in bytes.iter_mut().zip(sizes) {
                *b += s;
            }
        }
        if start < self.letters.len() {
            batches.push(Self::batch(&self.letters[start..], now_ms));
        }
        batches
    }

    fn batch(letters: &[DeadLetter], now_ms: i64) -> RecordBatch {
        let n = letters.len();
        let mut reason = StringBuilder::with_capacity(n, n * 16);
        let mut detail = StringBuilder::with_capacity(n, n * 64);
        let mut topic = StringBuilder::with_capacity(n, n * 16);
        let mut partition = Int32Builder::with_capacity(n);
        let mut offset = Int64Builder::with_capacity(n);
        let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut key = BinaryBuilder::with_capacity(n, 0);
        let mut payload = BinaryBuilder::with_capacity(n, 0);
        let mut dead_at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        for l in letters {
            reason.append_value(l.reason.as_str());
            detail.append_value(&l.detail);
            topic.append_value(&l.topic);
            partition.append_value(l.partition);
            offset.append_value(l.offset);
            ts.append_option(l.timestamp_ms);
            key.append_option(l.key.as_deref());
            payload.append_option(l.payload.as_deref());
            dead_at.append_value(now_ms);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(reason.finish()),
            Arc::new(detail.finish()),
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(ts.finish()),
            Arc::new(key.finish()),
            Arc::new(payload.finish()),
            Arc::new(dead_at.finish()),
        ];
        RecordBatch::try_new(Self::schema(), columns).expect("columns match the dead-letter schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn batch_keeps_payload_and_reason() {
        let mut letters = DeadLetters::default();
        letters.push(DeadLetter {
            reason: Reason::Rule(Arc::from("positive_amount")),
            detail: "amount > 0 is false".into(),
            topic: Arc::from("orders"),
            partition: 2,
            offset: 41,
            timestamp_ms: None,
            key: Some(b"k".to_vec()),
            payload: Some(b"{\"amount\":-1}".to_vec()),
        });
        let batches = letters.to_batches(1_000);
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(
            batch.column(0).as_string::<i32>().value(0),
            "rule:positive_amount"
        );
        assert_eq!(
            batch.column(7).as_binary::<i32>().value(0),
            b"{\"amount\":-1}"
        );
        assert!(batch.column(5).is_null(0));
        assert_eq!(letters.counts().get("rule:positive_amount"), Some(&1));
    }

    fn letter(offset: i64, payload: Vec<u8>) -> DeadLetter {
        DeadLetter {
            reason: Reason::InvalidJson,
            detail: "expected a JSON object".into(),
            topic: Arc::from("orders"),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            payload: Some(payload),
        }
    }

    fn offsets_and_sizes(batches: &[RecordBatch]) -> Vec<Vec<(i64, usize)>> {
        batches
            .iter()
            .map(|b| {
                let offsets = b.column(4).as_primitive::<arrow::datatypes::Int64Type>();
                let payloads = b.column(7).as_binary::<i32>();
                (0..b.num_rows())
                    .map(|row| (offsets.value(row), payloads.value(row).len()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn batches_are_cut_before_their_bytes_outgrow_an_array() {
        let mut letters = DeadLetters::default();
        for (offset, size) in [(0, 40), (1, 50), (2, 10), (3, 100), (4, 1)] {
            letters.push(letter(offset, vec![b'x'; size]));
        }
        // At most 100 bytes of payload per batch; a letter larger alone is a batch alone.
        assert_eq!(
            offsets_and_sizes(&letters.batches_of_at_most(100, 0)),
            [
                vec![(0, 40), (1, 50), (2, 10)],
                vec![(3, 100)],
                vec![(4, 1)]
            ]
        );
        assert_eq!(
            offsets_and_sizes(&letters.batches_of_at_most(usize::MAX, 0)),
            [vec![(0, 40), (1, 50), (2, 10), (3, 100), (4, 1)]]
        );
        assert!(DeadLetters::default().to_batches(0).is_empty());
    }

    #[test]
    fn payloads_and_keys_are_kept_dropped_or_hashed() {
        let text = r#"{"email":"jane@example.com"}"#;
        // (payload, key) of a letter with both, then of one with neither.
        let kept = |policy| {
            let mut letters = DeadLetters::default();
            letters.push(DeadLetter {
                key: Some(text.as_bytes().to_vec()),
                ..letter(0, text.as_bytes().to_vec())
            });
            letters.push(DeadLetter {
                payload: None,
                ..letter(1, Vec::new())
            });
            letters.apply(policy);
            let string = |b: &Option<Vec<u8>>| b.clone().map(|b| String::from_utf8(b).unwrap());
            letters
                .iter()
                .map(|l| (string(&l.payload), string(&l.key)))
                .collect::<Vec<_>>()
        };
        let both = |s: &str| (Some(s.to_owned()), Some(s.to_owned()));
        assert_eq!(kept(PayloadPolicy::Keep), [both(text), (None, None)]);
        assert_eq!(kept(PayloadPolicy::Drop), [(None, None), (None, None)]);
        // sha256 of the text, as `sha256sum` prints it.
        let hash = "sha256:9cf5eed506e72645a52347c2e0946261d0d0d6f322c7028fe1180dbd607ba76f";
        assert_eq!(kept(PayloadPolicy::Hash), [both(hash), (None, None)]);
    }

    /// More than 2 GiB of payloads between two checkpoints: every byte is kept.
    #[test]
    fn more_payload_than_one_array_holds_is_kept_whole() {
        let size = 800 << 20;
        let mut letters = DeadLetters::default();
        for offset in 0..3 {
            letters.push(letter(offset, vec![0; size]));
        }
        let batches = letters.to_batches(0);
        let rows: Vec<(i64, usize)> = offsets_and_sizes(&batches).concat();
        assert_eq!(rows, [(0, size), (1, size), (2, size)]);
    }
}
