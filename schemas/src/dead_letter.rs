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
}

impl Reason {
    pub fn as_str(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Reason::EmptyMessage => "empty_message".into(),
            Reason::NotUtf8 => "not_utf8".into(),
            Reason::InvalidJson => "invalid_json".into(),
            Reason::NotAnObject => "not_an_object".into(),
            Reason::WrongType => "wrong_type".into(),
            Reason::MissingField => "missing_field".into(),
            Reason::EventTimeOutOfRange => "event_time_out_of_range".into(),
            Reason::Rule(name) => format!("rule:{name}").into(),
            Reason::TransformFailed => "transform_failed".into(),
            Reason::BadPartitionValue => "bad_partition_value".into(),
            Reason::Late => "late".into(),
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

    /// The letters as one batch of [`DeadLetters::schema`], stamped with `now_ms`.
    pub fn to_batch(&self, now_ms: i64) -> RecordBatch {
        let n = self.letters.len();
        let mut reason = StringBuilder::with_capacity(n, n * 16);
        let mut detail = StringBuilder::with_capacity(n, n * 64);
        let mut topic = StringBuilder::with_capacity(n, n * 16);
        let mut partition = Int32Builder::with_capacity(n);
        let mut offset = Int64Builder::with_capacity(n);
        let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut key = BinaryBuilder::with_capacity(n, 0);
        let mut payload = BinaryBuilder::with_capacity(n, 0);
        let mut dead_at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        for l in &self.letters {
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
        let batch = letters.to_batch(1_000);
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
}
