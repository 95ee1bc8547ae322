//! Datasets on object storage for weir, committed exactly once.
//!
//! The pipeline speaks to its outputs through one seam, [`Dataset`] and the
//! [`DatasetWriter`] it opens: claim Kafka partitions, write rows with their partition
//! paths, commit a checkpoint. Today's implementation is [`ParquetDataset`]: it keeps one
//! open Parquet file per partition, rolls files by size, row count and age, and uploads
//! through object_store (local disk, S3, GCS, Azure). Files are written under a staging name;
//! a commit appends an entry to the dataset's [`commit_log`] naming the files and the Kafka
//! offsets they hold, and only then moves them to their visible names. The log, not the
//! consumer group, says where each Kafka partition continues, and its claims fence instances
//! that lost a partition. [`verify`] checks a dataset against its log.

pub mod commit_log;
mod dataset;
#[cfg(feature = "delta")]
pub mod delta;
mod footer;
mod parquet_dataset;
mod store;
#[cfg(test)]
mod testing;
pub mod verify;

pub use commit_log::{
    ColumnChange, CommitLog, LogError, LogOptions, LogState, PartitionState, RecordedColumn,
    RecordedSchema, SchemaRecord, TablePublication, WrittenFile,
};
pub use dataset::{Committed, Dataset, DatasetWriter};
pub use parquet_dataset::{
    Compression, DatasetOptions, DeltaOptions, ParquetDataset, ParquetWriter, RollPolicy,
};
pub use store::{PathLimits, StoreError, open_rooted_store, open_store};

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
    #[error("dataset `{dataset}`: cannot read {path}: {source}")]
    Read {
        dataset: String,
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("dataset `{dataset}`: rows do not fit the dataset schema: {source}")]
    Schema {
        dataset: String,
        source: arrow::error::ArrowError,
    },
    /// The path is left out: it holds row values, and this text reaches logs.
    #[error("dataset `{dataset}`: a partition path cannot be stored: {reason}")]
    PartitionPath { dataset: String, reason: String },
}

impl SinkError {
    /// Whether a commit was refused because another instance claimed a partition.
    pub fn is_fenced(&self) -> bool {
        matches!(self, SinkError::Log(LogError::Fenced { .. }))
    }
}
