//! Kafka metadata columns appended to every decoded event, visible to SQL, and the one place
//! that reads them back: which partition and offset each row came from.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, SchemaRef, TimeUnit};

use crate::{Messages, PartitionKey};

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

/// A batch lacks a metadata column it must have.
#[derive(Debug, thiserror::Error)]
#[error("the batch has no {column} column of type {expected}")]
pub struct MissingColumn {
    pub column: &'static str,
    pub expected: DataType,
}

/// `declared` (the declared columns of the rows, one per entry of `rows`) with the metadata
/// columns of the messages each row came from appended, in the table's schema.
pub fn append(
    table: &SchemaRef,
    declared: RecordBatch,
    messages: &Messages,
    rows: &[u32],
) -> RecordBatch {
    let n = rows.len();
    let mut topic = StringBuilder::with_capacity(n, n * 8);
    let mut key = StringBuilder::with_capacity(n, n * 8);
    for &i in rows {
        let i = i as usize;
        topic.append_value(messages.topic(i));
        key.append_option(messages.key(i).map(String::from_utf8_lossy));
    }
    let partition: Int32Array = rows
        .iter()
        .map(|&i| messages.partition(i as usize))
        .collect();
    let offset: Int64Array = rows.iter().map(|&i| messages.offset(i as usize)).collect();
    let timestamp: TimestampMillisecondArray = rows
        .iter()
        .map(|&i| messages.timestamp(i as usize))
        .collect::<TimestampMillisecondArray>()
        .with_timezone("UTC");
    let mut columns: Vec<ArrayRef> = declared.columns().to_vec();
    columns.push(Arc::new(topic.finish()));
    columns.push(Arc::new(partition));
    columns.push(Arc::new(offset));
    columns.push(Arc::new(timestamp));
    columns.push(Arc::new(key.finish()));
    RecordBatch::try_new(table.clone(), columns).expect("columns follow the table schema")
}

/// The Kafka partition of each row of a batch that carries `_topic` and `_partition` (source
/// rows, window state): read once, asked per row.
pub struct Partitions<'a> {
    topics: &'a StringArray,
    partitions: &'a Int32Array,
}

impl<'a> Partitions<'a> {
    pub fn of(batch: &'a RecordBatch) -> Result<Self, MissingColumn> {
        Ok(Self {
            topics: string_column(batch, TOPIC)?,
            partitions: primitive_column::<Int32Type>(batch, PARTITION, DataType::Int32)?,
        })
    }

    /// The topic and partition of `row`.
    pub fn of_row(&self, row: usize) -> (&'a str, i32) {
        (self.topics.value(row), self.partitions.value(row))
    }

    /// The rows `selected` per partition, in their order, partitions in the order they first
    /// appear.
    pub fn group(
        &self,
        selected: impl IntoIterator<Item = u32>,
    ) -> Vec<(PartitionKey, UInt32Array)> {
        let mut rows: Vec<(PartitionKey, Vec<u32>)> = Vec::new();
        for row in selected {
            let (topic, partition) = self.of_row(row as usize);
            match rows.iter_mut().rev().find(|(p, _)| p.is(topic, partition)) {
                Some((_, list)) => list.push(row),
                None => rows.push((PartitionKey::new(topic, partition), vec![row])),
            }
        }
        rows.into_iter()
            .map(|(p, r)| (p, UInt32Array::from(r)))
            .collect()
    }
}

/// Which rows of `batch` (source rows) come at or after `next(partition)`, the position a
/// dataset continues from: the rows it does not hold yet.
pub fn not_held(
    batch: &RecordBatch,
    next: impl Fn(&PartitionKey) -> Option<i64>,
) -> Result<BooleanArray, MissingColumn> {
    let partitions = Partitions::of(batch)?;
    let offsets = primitive_column::<Int64Type>(batch, OFFSET, DataType::Int64)?;
    // Rows of one partition mostly come together: ask once per run of them.
    let mut last: Option<(PartitionKey, Option<i64>)> = None;
    Ok((0..batch.num_rows())
        .map(|row| {
            let (topic, partition) = partitions.of_row(row);
            let next = match &last {
                Some((key, next)) if key.is(topic, partition) => *next,
                _ => {
                    let key = PartitionKey::new(topic, partition);
                    let found = next(&key);
                    last = Some((key, found));
                    found
                }
            };
            Some(next.is_none_or(|next| offsets.value(row) >= next))
        })
        .collect())
}

fn string_column<'a>(
    batch: &'a RecordBatch,
    column: &'static str,
) -> Result<&'a StringArray, MissingColumn> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or(MissingColumn {
            column,
            expected: DataType::Utf8,
        })
}

fn primitive_column<'a, T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    column: &'static str,
    expected: DataType,
) -> Result<&'a arrow::array::PrimitiveArray<T>, MissingColumn> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_primitive_opt::<T>())
        .ok_or(MissingColumn { column, expected })
}
