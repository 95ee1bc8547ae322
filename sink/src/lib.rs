//! Parquet datasets on object storage for weir, committed exactly once.
//!
//! A [`Dataset`] receives batches with the partition path of each row, keeps one open Parquet
//! file per partition, rolls files by size, row count and age, and uploads through
//! object_store (local disk, S3, GCS, Azure). Files are written under a staging name; a commit
//! appends an entry to the dataset's [`commit_log`] naming the files and the Kafka offsets they
//! hold, and only then moves them to their visible names. The log, not the consumer group,
//! says where each Kafka partition continues, and its claims fence instances that lost a
//! partition. [`verify`] checks a dataset against its log.

pub mod commit_log;
mod dataset;
mod store;
#[cfg(test)]
mod testing;
mod time_partitions;
pub mod verify;

pub use commit_log::{
    CommitLog, EmittedWatermark, LogError, LogState, OffsetRange, PartitionState,
    PartitionWatermark, RecordedWatermark, WindowStateRef,
};
pub use dataset::{Committed, Compression, Dataset, DatasetOptions, RollPolicy, WrittenFile};
pub use store::{StoreError, open_store};
pub use time_partitions::TimeGranularity;

/// Errors of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("dataset `{dataset}`: cannot write {path}: {source}")]
    Write {
        dataset: String,
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("dataset `{dataset}`: rows do not fit the dataset schema: {source}")]
    Schema {
        dataset: String,
        source: arrow::error::ArrowError,
    },
}

impl SinkError {
    /// Whether a commit was refused because another instance claimed a partition.
    pub fn is_fenced(&self) -> bool {
        matches!(self, SinkError::Log(LogError::Fenced { .. }))
    }
}
