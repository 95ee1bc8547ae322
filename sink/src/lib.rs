//! Parquet datasets on object storage for weir.
//!
//! A [`Dataset`] receives batches with the partition path of each row, keeps one open Parquet
//! file per partition, rolls files by size, row count and age, and uploads through
//! object_store (local disk, S3, GCS, Azure). A file becomes visible only when it is complete:
//! object stores publish a multipart upload on completion, and the local store writes to a
//! staging name and renames. [`Dataset::flush`] closes every open file and returns what it
//! made durable, which is what lets the pipeline commit Kafka offsets afterwards.

mod dataset;
mod store;

pub use dataset::{Compression, Dataset, DatasetOptions, RollPolicy, WrittenFile};
pub use store::{StoreError, open_store};

/// Errors of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
