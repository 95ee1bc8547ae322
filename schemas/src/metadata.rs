//! Kafka metadata columns appended to every decoded event, visible to SQL.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

pub const TOPIC: &str = "_topic";
pub const PARTITION: &str = "_partition";
pub const OFFSET: &str = "_offset";
pub const TIMESTAMP: &str = "_timestamp";
pub const KEY: &str = "_key";

/// The metadata columns, in the order ingest appends them after the declared fields.
pub fn fields() -> Vec<Field> {
    vec![
        Field::new(TOPIC, DataType::Utf8, false),
        Field::new(PARTITION, DataType::Int32, false),
        Field::new(OFFSET, DataType::Int64, false),
        Field::new(TIMESTAMP, utc_millis(), true),
        Field::new(KEY, DataType::Utf8, true),
    ]
}

/// Millisecond timestamps, adjusted to UTC: the one timestamp type weir decodes into. Every
/// Parquet reader (Spark and Athena included) understands it, unlike nanoseconds.
pub fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC")))
}

pub fn is_metadata(name: &str) -> bool {
    matches!(name, TOPIC | PARTITION | OFFSET | TIMESTAMP | KEY)
}
