//! The data contracts of weir and the types every stage shares.
//!
//! A pipeline's events are described by a schema file ([`schema`]) that loads into an Arrow
//! schema; ingest decodes Kafka messages straight into it. What crosses a stage boundary is
//! one type, [`SourceBatch`] ([`batch`]): the rows as an Arrow `RecordBatch` with the Kafka
//! metadata columns ([`metadata`]), the offsets they cover ([`offsets`]), the latest event
//! time of each partition ([`watermark`]) and the messages that could not be used
//! ([`dead_letter`]). What a dataset commits is a [`Checkpoint`]. Stage crates depend on this
//! one and never on each other.

pub mod batch;
pub mod checkpoint;
pub mod dead_letter;
pub mod hive;
pub mod messages;
pub mod metadata;
pub mod offsets;
pub mod schema;
pub mod settings;
pub mod time;
pub mod watermark;

pub use batch::SourceBatch;
pub use checkpoint::{Checkpoint, WindowCheckpoint};
pub use dead_letter::{DeadLetter, DeadLetters, PayloadPolicy, Reason};
pub use messages::{Messages, RawMessages};
pub use offsets::{OffsetRange, OffsetRanges, PartitionKey};
pub use schema::{EventSchema, SchemaError};
pub use settings::Settings;
pub use time::{TimeGranularity, rfc3339_ms};
pub use watermark::{
    EmittedWatermark, EventTimes, PartitionWatermark, RecordedWatermark, WatermarkCoverage,
};
