//! The first implementation of the output seam: a directory of partitioned Parquet files on
//! object storage, with the dataset's commit log under `_weir/`.
//!
//! [`ParquetDataset`] is the dataset unopened: where it is and how its files are written.
//! Opened by a writer it becomes a [`ParquetWriter`] ([`writer`]), which keeps one open file
//! per partition path and rolls files by size, row count and age. Window state files are
//! Arrow IPC ([`window_state`]).

mod dictionary;
mod window_state;
mod writer;

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use weir_schemas::TimeGranularity;

pub use writer::ParquetWriter;

use crate::SinkError;
use crate::commit_log::{CommitLog, LogOptions, LogState, RecordedSchema, under};
use crate::dataset::{Dataset, DatasetWriter};
use crate::store::PathLimits;
use crate::verify::Report;

/// Parquet compression codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    Lz4,
    None,
}

/// When an open file is closed and a new one started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPolicy {
    /// Close a file once it holds about this many bytes.
    pub target_file_bytes: u64,
    /// Close a file once it holds this many rows.
    pub max_file_rows: u64,
    /// Close a file this long after it was opened.
    pub max_file_age: Duration,
}

#[derive(Debug, Clone)]
pub struct DatasetOptions {
    pub compression: Compression,
    pub row_group_rows: usize,
    pub roll: RollPolicy,
    /// Bytes a file's upload buffers before it starts a multipart upload.
    pub upload_buffer_bytes: usize,
    /// Files open at once; opening one more closes the oldest. Bounds file handles and
    /// memory when rows spread over many partitions.
    pub max_open_files: usize,
    /// Distinct partition paths one commit may hold files of: reaching it makes the
    /// pipeline commit before it takes more rows.
    pub max_partitions_per_checkpoint: usize,
    /// The span of event time the leading partition directories hold, if they do: such
    /// partitions get a `_SUCCESS` marker once the committed watermark passes their end.
    pub time_partitions: Option<TimeGranularity>,
    /// How long commit log entries are kept once a snapshot replaces them (`None`: for ever).
    pub log_retention: Option<Duration>,
    /// How long a path the store holds.
    pub path_limits: PathLimits,
    /// Commit log entries between snapshots of its state (`None`: [`SNAPSHOT_EVERY`]).
    ///
    /// [`SNAPSHOT_EVERY`]: crate::commit_log::SNAPSHOT_EVERY
    pub snapshot_every: Option<NonZeroU64>,
    /// Where the rows' columns come from (a registry subject's version, a schema file): named
    /// in the commit log with each change of the dataset's schema.
    pub schema_source: String,
    /// For a Delta table: each commit is published to it as well.
    pub delta: Option<DeltaOptions>,
}

/// Where a Delta dataset's table is and how its commits are named.
#[derive(Debug, Clone)]
pub struct DeltaOptions {
    /// The dataset's URL and its storage options, as configured.
    pub url: String,
    pub storage: std::collections::BTreeMap<String, String>,
    /// Names the application transactions (`<app>-<topic>-<partition>`): the pipeline.
    pub app: String,
    /// The partition path's segment names, outermost first.
    pub partition_columns: Vec<String>,
}

/// Room kept in a key for the name of a file under its partition
/// (`/part-<writer>-<number>.parquet`, under 50 bytes).
const FILE_NAME_BYTES: usize = 64;

/// A Parquet dataset under `root` of `store`, not opened for writing.
#[derive(Clone)]
pub struct ParquetDataset {
    name: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The schema of the files, after timestamp normalisation.
    schema: SchemaRef,
    /// The same, as commits record it.
    recorded: RecordedSchema,
    properties: WriterProperties,
    options: DatasetOptions,
}

impl ParquetDataset {
    /// A dataset under `root` of `store` for rows of `schema`.
    pub fn new(
        name: &str,
        store: Arc<dyn ObjectStore>,
        root: Path,
        schema: &SchemaRef,
        options: DatasetOptions,
    ) -> Self {
        let compression = match options.compression {
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::Lz4 => ParquetCompression::LZ4_RAW,
            Compression::None => ParquetCompression::UNCOMPRESSED,
        };
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
            .set_coerce_types(true)
            .set_created_by(format!("weir {}", env!("CARGO_PKG_VERSION")))
            .build();
        let schema = parquet_schema(schema);
        Self {
            name: name.to_owned(),
            store,
            root,
            recorded: RecordedSchema::of(&schema, &options.schema_source),
            schema,
            properties,
            options,
        }
    }

    /// The longest partition path whose files this dataset can store: a key's limit, less the
    /// dataset's prefix and the file name.
    pub fn max_partition_path_bytes(&self) -> usize {
        let limits = self.options.path_limits;
        limits
            .key_bytes
            .saturating_sub(self.root.as_ref().len() + 1 + FILE_NAME_BYTES)
    }

    /// The longest segment of a partition path (`name=value`, escaped) the store holds.
    pub fn max_partition_segment_bytes(&self) -> usize {
        self.options.path_limits.segment_bytes
    }

    /// Opens the dataset for `writer`, as the concrete type (see [`Dataset::open`]).
    pub async fn open_writer(
        &self,
        writer: &str,
        orphan_grace: Duration,
    ) -> Result<ParquetWriter, SinkError> {
        let table = match &self.options.delta {
            Some(delta) => Some(self.open_table(delta).await?),
            None => None,
        };
        let options = LogOptions {
            time_partitions: self.options.time_partitions,
            retention: self.options.log_retention,
            path_limits: Some(self.options.path_limits),
            snapshot_every: self.options.snapshot_every,
            table,
        };
        let log = CommitLog::open(
            &self.name,
            self.store.clone(),
            self.root.clone(),
            writer,
            options,
        )
        .await?;
        log.remove_orphans(orphan_grace).await?;
        Ok(ParquetWriter::new(self.clone(), writer, log))
    }

    /// The Delta table at the dataset's root, created if it does not exist.
    #[cfg(feature = "delta")]
    async fn open_table(
        &self,
        delta: &DeltaOptions,
    ) -> Result<Arc<dyn crate::commit_log::TablePublication>, SinkError> {
        let (url, store, root) = crate::store::open_rooted_store(&delta.url, &delta.storage)?;
        let state =
            CommitLog::read_state(&self.name, self.store.clone(), self.root.clone()).await?;
        let committed_before = state.partitions.values().any(|p| p.next_offset.is_some());
        let publisher = crate::delta::DeltaPublisher::open(
            &self.name,
            &url,
            store,
            root,
            &delta.app,
            &self.schema,
            &delta.partition_columns,
            committed_before,
        )
        .await
        .map_err(|e| SinkError::Log(crate::LogError::Table(Box::new(e))))?;
        Ok(Arc::new(publisher))
    }

    #[cfg(not(feature = "delta"))]
    async fn open_table(
        &self,
        _: &DeltaOptions,
    ) -> Result<Arc<dyn crate::commit_log::TablePublication>, SinkError> {
        Err(SinkError::Log(crate::LogError::Table(
            format!(
                "dataset `{}`: this weir was built without Delta Lake tables",
                self.name
            )
            .into(),
        )))
    }

    /// `report` with the dataset's Delta table checked against its commit log, if it has one.
    #[cfg(feature = "delta")]
    async fn check_table(&self, mut report: Report) -> Report {
        let Some(delta) = &self.options.delta else {
            return report;
        };
        let committed =
            CommitLog::committed_files(&self.name, self.store.clone(), self.root.clone())
                .await
                .ok()
                .map(|files| files.into_iter().map(|f| f.path).collect());
        let ends: Vec<(weir_schemas::PartitionKey, i64)> = report
            .partitions
            .iter()
            .map(|p| (weir_schemas::PartitionKey::new(&p.topic, p.partition), p.to))
            .collect();
        report.delta = crate::delta::check(
            &self.name,
            delta,
            committed.as_ref(),
            &ends,
            &mut report.problems,
        )
        .await;
        report
    }

    #[cfg(not(feature = "delta"))]
    async fn check_table(&self, report: Report) -> Report {
        report
    }

    /// Best effort: staged files left behind are removed by a later start-up.
    async fn delete_staged(&self, files: &[crate::WrittenFile]) {
        for file in files {
            if let Ok(path) = under(&self.root, &file.staging)
                && let Err(e) = self.store.delete(&path).await
            {
                tracing::debug!(dataset = %self.name, %path, error = %e, "could not delete a staged file");
            }
        }
    }

    pub(super) fn store_error(
        &self,
        action: &'static str,
        path: &Path,
        source: object_store::Error,
    ) -> SinkError {
        SinkError::Log(crate::LogError::Store {
            dataset: self.name.clone(),
            action,
            path: path.to_string(),
            source: Box::new(source),
        })
    }
}

#[async_trait::async_trait]
impl Dataset for ParquetDataset {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> &RecordedSchema {
        &self.recorded
    }

    async fn open(
        &self,
        writer: &str,
        orphan_grace: Duration,
    ) -> Result<Box<dyn DatasetWriter>, SinkError> {
        Ok(Box::new(self.open_writer(writer, orphan_grace).await?))
    }

    async fn verify(&self) -> Result<Report, SinkError> {
        let report = crate::verify::verify(&self.name, self.store.clone(), &self.root).await?;
        Ok(self.check_table(report).await)
    }

    async fn read_log_state(&self) -> Result<LogState, SinkError> {
        Ok(CommitLog::read_state(&self.name, self.store.clone(), self.root.clone()).await?)
    }

    async fn read_committed(&self) -> Result<Vec<(String, RecordBatch)>, SinkError> {
        let mut files =
            CommitLog::committed_files(&self.name, self.store.clone(), self.root.clone()).await?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut rows = Vec::new();
        for file in files {
            let path = under(&self.root, &file.path).map_err(|e| SinkError::Schema {
                dataset: self.name.clone(),
                source: arrow::error::ArrowError::ParseError(e.to_string()),
            })?;
            let bytes = async { self.store.get(&path).await?.bytes().await };
            let bytes = bytes
                .await
                .map_err(|source| self.store_error("read", &path, source))?;
            let read = |source| SinkError::Read {
                dataset: self.name.clone(),
                path: path.to_string(),
                source,
            };
            let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|builder| builder.build())
                .map_err(read)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read(e.into()))?;
            rows.extend(batches.into_iter().map(|b| (file.partition.clone(), b)));
        }
        Ok(rows)
    }
}

/// The schema files are written with: nanosecond timestamps become microseconds, which
/// every Parquet reader (Spark and Athena included) understands.
fn parquet_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, tz) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}
