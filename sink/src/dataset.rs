//! One output dataset: partitioned, rolling Parquet files.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use weir_schemas::PartitionKey;

use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};

use crate::commit_log::{
    CommitLog, LogError, LogState, OffsetRange, PartitionState, RecordedWatermark, WEIR_DIR,
    WindowStateRef,
};
use crate::{SinkError, TimeGranularity};

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
    /// The span of event time the leading partition directories hold, if they do: such
    /// partitions get a `_SUCCESS` marker once the committed watermark passes their end.
    pub time_partitions: Option<TimeGranularity>,
    /// How long commit log entries are kept once a snapshot replaces them (`None`: for ever).
    pub log_retention: Option<Duration>,
}

/// A complete file: durable under its staged name, visible under `path` once committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    /// Final path, relative to the dataset root.
    pub path: String,
    /// Where the file is until its commit, relative to the dataset root.
    pub staging: String,
    /// Hive partition path, empty without partitioning.
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
}

struct OpenFile {
    writer: AsyncArrowWriter<BufWriter>,
    /// Staged path in the store.
    path: Path,
    /// Final and staged paths relative to the dataset root.
    relative: String,
    staging: String,
    rows: u64,
    opened: Instant,
}

/// What a commit made visible.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Sequence number of the commit entry, `None` when there was nothing to commit.
    pub seq: Option<u64>,
    pub files: Vec<WrittenFile>,
    /// Rows of these files that went to time partitions already marked complete (written,
    /// not dropped, and logged as late).
    pub late_rows: u64,
}

/// A dataset that files are written to.
pub struct Dataset {
    name: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
    schema: SchemaRef,
    properties: WriterProperties,
    options: DatasetOptions,
    writer: String,
    log: Option<CommitLog>,
    next_file: u64,
    open: HashMap<String, OpenFile>,
    written: Vec<WrittenFile>,
    partitions: BTreeSet<String>,
}

impl Dataset {
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
        Self {
            name: name.to_owned(),
            store,
            root,
            schema: parquet_schema(schema),
            properties,
            options,
            writer: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            log: None,
            next_file: 0,
            open: HashMap::new(),
            written: Vec::new(),
            partitions: BTreeSet::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the dataset's commit log as `writer` (unique to this process; it names the
    /// files), publishes what earlier writers committed but did not publish, and deletes
    /// staged files older than `orphan_grace` that no commit will ever publish.
    pub async fn open_log(
        &mut self,
        writer: &str,
        orphan_grace: Duration,
    ) -> Result<(), SinkError> {
        let log = CommitLog::open(
            &self.name,
            self.store.clone(),
            self.root.clone(),
            writer,
            self.options.time_partitions,
            self.options.log_retention,
        )
        .await?;
        log.remove_orphans(orphan_grace).await?;
        self.writer = writer.to_owned();
        self.log = Some(log);
        Ok(())
    }

    fn log(&mut self) -> &mut CommitLog {
        self.log
            .as_mut()
            .expect("the commit log is opened before the dataset is used")
    }

    /// Claims Kafka partitions for this writer (see [`CommitLog::claim`]); returns where the
    /// dataset continues in each.
    pub async fn claim(
        &mut self,
        partitions: &[PartitionKey],
    ) -> Result<Vec<Option<i64>>, SinkError> {
        Ok(self.log().claim(partitions).await?)
    }

    /// Gives up the claims on revoked partitions.
    pub fn release(&mut self, partitions: &[PartitionKey]) {
        self.log().release(partitions);
    }

    /// Checks the dataset against its commit log (see [`crate::verify`]).
    pub async fn verify(&self) -> Result<crate::verify::Report, LogError> {
        crate::verify::verify(&self.name, self.store.clone(), &self.root).await
    }

    /// What the dataset's commit log says about `partition`.
    pub fn partition_state(&self, partition: &PartitionKey) -> Option<&PartitionState> {
        self.log.as_ref()?.state().partitions.get(partition)
    }

    /// The state of the dataset's commit log, read without writing anything (for tools that
    /// run beside the service or while it is down).
    pub async fn read_log_state(&self) -> Result<LogState, LogError> {
        CommitLog::read_state(&self.name, self.store.clone(), self.root.clone()).await
    }

    /// The state of the dataset's commit log, as far as this writer has read it.
    pub fn log_state(&self) -> Option<&LogState> {
        self.log.as_ref().map(CommitLog::state)
    }

    /// Where the dataset continues in `partition`, if it ever committed it.
    pub fn next_offset(&self, partition: &PartitionKey) -> Option<i64> {
        self.log.as_ref().and_then(|l| l.next_offset(partition))
    }

    /// Closes every open file, commits them as covering `ranges`, then publishes them under
    /// their final names. After a refused commit ([`LogError::Fenced`]) the files are deleted.
    pub async fn commit(
        &mut self,
        ranges: Vec<OffsetRange>,
        watermarks: Vec<RecordedWatermark>,
        window_state: Option<WindowStateRef>,
    ) -> Result<Committed, SinkError> {
        let files = self.flush().await?;
        if ranges.is_empty() {
            debug_assert!(files.is_empty(), "rows come with offsets");
            return Ok(Committed::default());
        }
        let log = self
            .log
            .as_mut()
            .expect("the commit log is opened before the dataset is used");
        let late_before = log.late_rows();
        match log
            .commit(ranges, files.clone(), watermarks, window_state)
            .await
        {
            Ok(seq) => Ok(Committed {
                seq: Some(seq),
                files,
                late_rows: log.late_rows() - late_before,
            }),
            Err(error) => {
                if matches!(error, LogError::Fenced { .. }) {
                    self.delete_staged(&files).await;
                }
                Err(error.into())
            }
        }
    }

    /// Writes the open windows' partial aggregates as an Arrow IPC file for the next commit to
    /// reference; returns its path relative to the dataset root.
    pub async fn write_window_state(&mut self, state: &RecordBatch) -> Result<String, SinkError> {
        let mut bytes = Vec::new();
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .and_then(|options| {
                let mut writer =
                    FileWriter::try_new_with_options(&mut bytes, &state.schema(), options)?;
                writer.write(state)?;
                writer.finish()
            });
        options.map_err(|source| SinkError::Schema {
            dataset: self.name.clone(),
            source,
        })?;
        self.next_file += 1;
        let relative = format!(
            "{WEIR_DIR}/state/{}-{:06}.arrow",
            self.writer, self.next_file
        );
        let path = crate::commit_log::under(&self.root, &relative).expect("a valid path");
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|source| self.store_error("write", &path, source))?;
        Ok(relative)
    }

    fn store_error(
        &self,
        action: &'static str,
        path: &Path,
        source: object_store::Error,
    ) -> SinkError {
        SinkError::Log(LogError::Store {
            dataset: self.name.clone(),
            action,
            path: path.to_string(),
            source: Box::new(source),
        })
    }

    /// Reads a window state file a commit references.
    pub async fn read_window_state(&self, relative: &str) -> Result<Vec<RecordBatch>, SinkError> {
        let corrupt = |source| SinkError::Schema {
            dataset: self.name.clone(),
            source,
        };
        let path = crate::commit_log::under(&self.root, relative)
            .map_err(|e| corrupt(arrow::error::ArrowError::ParseError(e.to_string())))?;
        let read = async { self.store.get(&path).await?.bytes().await };
        let bytes = read
            .await
            .map_err(|source| self.store_error("read", &path, source))?;
        FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(corrupt)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)
    }

    /// Drops everything not committed: open files and files closed since the last commit.
    pub async fn abort(&mut self) {
        self.open.clear();
        let written = std::mem::take(&mut self.written);
        self.delete_staged(&written).await;
    }

    /// Best effort: staged files left behind are removed by a later start-up.
    async fn delete_staged(&self, files: &[WrittenFile]) {
        for file in files {
            if let Ok(path) = crate::commit_log::under(&self.root, &file.staging)
                && let Err(e) = self.store.delete(&path).await
            {
                tracing::debug!(dataset = %self.name, %path, error = %e, "could not delete a staged file");
            }
        }
    }

    /// The schema of the files, after timestamp normalisation.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Writes rows; `paths` gives each row's partition path (all rows in the root without).
    pub async fn write(
        &mut self,
        batch: &RecordBatch,
        paths: Option<&StringArray>,
    ) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(batch)?;
        let Some(paths) = paths else {
            return self.write_partition("", &batch).await;
        };
        let first = paths.value(0);
        if paths.null_count() == 0 && (1..paths.len()).all(|i| paths.value(i) == first) {
            return self.write_partition(first, &batch).await;
        }
        let mut groups: HashMap<&str, Vec<u32>> = HashMap::new();
        for (row, path) in paths.iter().enumerate() {
            groups
                .entry(path.unwrap_or(""))
                .or_default()
                .push(row as u32);
        }
        for (partition, rows) in groups {
            let part = take_record_batch(&batch, &UInt32Array::from(rows)).map_err(|source| {
                SinkError::Schema {
                    dataset: self.name.clone(),
                    source,
                }
            })?;
            self.write_partition(partition, &part).await?;
        }
        Ok(())
    }

    async fn write_partition(
        &mut self,
        partition: &str,
        batch: &RecordBatch,
    ) -> Result<(), SinkError> {
        if !self.open.contains_key(partition) {
            if self.open.len() >= self.options.max_open_files.max(1) {
                self.close_oldest().await?;
            }
            let file = self.open_file(partition)?;
            self.open.insert(partition.to_owned(), file);
        }
        let file = self.open.get_mut(partition).expect("just opened");
        file.writer
            .write(batch)
            .await
            .map_err(|source| SinkError::Write {
                dataset: self.name.clone(),
                path: file.path.to_string(),
                source,
            })?;
        file.rows += batch.num_rows() as u64;
        let roll = &self.options.roll;
        let size = file.writer.bytes_written() as u64 + file.writer.in_progress_size() as u64;
        if file.rows >= roll.max_file_rows || size >= roll.target_file_bytes {
            let file = self.open.remove(partition).expect("present");
            self.close(partition.to_owned(), file).await?;
        }
        Ok(())
    }

    fn open_file(&mut self, partition: &str) -> Result<OpenFile, SinkError> {
        self.next_file += 1;
        let relative: Path = partition
            .split('/')
            .filter(|s| !s.is_empty())
            .map(object_store::path::PathPart::from)
            .chain(std::iter::once(
                format!("part-{}-{:06}.parquet", self.writer, self.next_file).into(),
            ))
            .collect();
        // Staged under a name no `*.parquet` glob matches, in a directory readers skip.
        let staging = Path::from_iter([
            WEIR_DIR,
            "staging",
            &format!("{}-{:06}.parquet.pending", self.writer, self.next_file),
        ]);
        let path: Path = self.root.parts().chain(staging.parts()).collect();
        let upload = BufWriter::with_capacity(
            self.store.clone(),
            path.clone(),
            self.options.upload_buffer_bytes,
        );
        let writer =
            AsyncArrowWriter::try_new(upload, self.schema.clone(), Some(self.properties.clone()))
                .map_err(|source| SinkError::Write {
                dataset: self.name.clone(),
                path: path.to_string(),
                source,
            })?;
        Ok(OpenFile {
            writer,
            path,
            relative: relative.to_string(),
            staging: staging.to_string(),
            rows: 0,
            opened: Instant::now(),
        })
    }

    async fn close(&mut self, partition: String, file: OpenFile) -> Result<(), SinkError> {
        let OpenFile {
            mut writer,
            path,
            relative,
            staging,
            rows,
            ..
        } = file;
        let span = tracing::debug_span!("close_file", dataset = %self.name, %path, rows);
        let metadata =
            writer
                .finish()
                .instrument(span)
                .await
                .map_err(|source| SinkError::Write {
                    dataset: self.name.clone(),
                    path: path.to_string(),
                    source,
                })?;
        debug_assert_eq!(metadata.file_metadata().num_rows() as u64, rows);
        self.partitions.insert(partition.clone());
        self.written.push(WrittenFile {
            path: relative,
            staging,
            partition,
            rows,
            bytes: writer.bytes_written() as u64,
        });
        Ok(())
    }

    async fn close_oldest(&mut self) -> Result<(), SinkError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.opened)
            .map(|(p, _)| p.clone());
        if let Some(partition) = oldest {
            let file = self.open.remove(&partition).expect("present");
            self.close(partition, file).await?;
        }
        Ok(())
    }

    /// Closes files that have been open longer than the roll policy's maximum age.
    pub async fn roll_aged(&mut self) -> Result<(), SinkError> {
        let max_age = self.options.roll.max_file_age;
        let aged: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= max_age)
            .map(|(p, _)| p.clone())
            .collect();
        for partition in aged {
            let file = self.open.remove(&partition).expect("present");
            self.close(partition, file).await?;
        }
        Ok(())
    }

    /// Closes every open file and returns the files made durable (staged) since the last flush.
    async fn flush(&mut self) -> Result<Vec<WrittenFile>, SinkError> {
        let open: Vec<(String, OpenFile)> = self.open.drain().collect();
        for (partition, file) in open {
            self.close(partition, file).await?;
        }
        Ok(std::mem::take(&mut self.written))
    }

    /// When the oldest open file was opened.
    pub fn oldest_open(&self) -> Option<Instant> {
        self.open.values().map(|f| f.opened).min()
    }

    /// Memory held by open files: encoded row groups in progress and upload buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.open
            .values()
            .map(|f| {
                let unflushed = f
                    .writer
                    .bytes_written()
                    .min(self.options.upload_buffer_bytes);
                f.writer.memory_size() + unflushed
            })
            .sum()
    }

    /// Every partition path a file was written to.
    pub fn partitions(&self) -> &BTreeSet<String> {
        &self.partitions
    }

    /// Casts columns to the file schema (nanosecond timestamps to microseconds) and adopts
    /// its field metadata.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, SinkError> {
        let schema_error = |source| SinkError::Schema {
            dataset: self.name.clone(),
            source,
        };
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(schema_error)?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(schema_error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn options(max_rows: u64) -> DatasetOptions {
        DatasetOptions {
            max_open_files: 16,
            compression: Compression::Zstd,
            row_group_rows: 1000,
            roll: RollPolicy {
                target_file_bytes: 64 << 20,
                max_file_rows: max_rows,
                max_file_age: Duration::from_secs(3600),
            },
            upload_buffer_bytes: 1 << 20,
            time_partitions: None,
            log_retention: None,
        }
    }

    fn batch(ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_000_000_000i64; ids.len()])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap()
    }

    async fn open_and_claim(dataset: &mut Dataset) {
        dataset
            .open_log("w1", Duration::from_secs(3600))
            .await
            .unwrap();
        dataset.claim(&[PartitionKey::new("t", 0)]).await.unwrap();
    }

    fn range(from: i64, to: i64) -> Vec<OffsetRange> {
        vec![OffsetRange {
            partition: PartitionKey::new("t", 0),
            from,
            to,
        }]
    }

    fn read(dir: &std::path::Path, file: &WrittenFile) -> Vec<RecordBatch> {
        let f = std::fs::File::open(dir.join(&file.path)).unwrap();
        ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test]
    async fn partitions_rows_rolls_by_row_count_and_writes_micros() {
        let dir = tempfile::tempdir().unwrap();
        let (store, root) =
            crate::open_store(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let input = batch(&[1, 2, 3, 4, 5]);
        let mut dataset = Dataset::new("t", store, root, &input.schema(), options(2));
        open_and_claim(&mut dataset).await;
        let paths = StringArray::from(vec!["p=a", "p=b", "p=a", "p=a", "p=b"]);
        dataset.write(&input, Some(&paths)).await.unwrap();
        assert_eq!(
            dataset.buffered_bytes() > 0,
            dataset.oldest_open().is_some()
        );
        let committed = dataset.commit(range(0, 5), vec![], None).await.unwrap();
        assert_eq!(committed.seq, Some(1));
        assert_eq!(dataset.next_offset(&PartitionKey::new("t", 0)), Some(5));
        let mut files = committed.files;
        files.sort_by(|a, b| (&a.partition, a.rows).cmp(&(&b.partition, b.rows)));
        let summary: Vec<_> = files
            .iter()
            .map(|f| (f.partition.as_str(), f.rows))
            .collect();
        // p=a got three rows in one write: the file is closed when it passes two.
        assert_eq!(summary, vec![("p=a", 3), ("p=b", 2)]);
        assert!(dataset.oldest_open().is_none());
        let batches = read(dir.path(), &files[0]);
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, vec![1, 3, 4]);
        assert_eq!(
            batches[0].schema().field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert!(files[0].path.starts_with("p=a/part-") && files[0].path.ends_with(".parquet"));
        assert_eq!(dataset.partitions().len(), 2);
        assert!(dataset.flush().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn opening_past_the_limit_closes_the_oldest_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, root) =
            crate::open_store(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let input = batch(&[1, 2, 3]);
        let options = DatasetOptions {
            max_open_files: 2,
            ..options(100)
        };
        let mut dataset = Dataset::new("t", store, root, &input.schema(), options);
        for part in ["p=a", "p=b", "p=c", "p=a"] {
            let paths = StringArray::from(vec![part; 3]);
            dataset.write(&input, Some(&paths)).await.unwrap();
            assert!(dataset.open.len() <= 2);
        }
        let mut files: Vec<_> = dataset
            .flush()
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.partition, f.rows))
            .collect();
        files.sort();
        // p=a was closed to make room for p=c, then opened again.
        let expected = [("p=a", 3), ("p=a", 3), ("p=b", 3), ("p=c", 3)];
        let expected: Vec<_> = expected.iter().map(|(p, r)| (p.to_string(), *r)).collect();
        assert_eq!(files, expected);
    }

    #[tokio::test]
    async fn files_are_invisible_until_committed_and_dropped_on_abort() {
        let dir = tempfile::tempdir().unwrap();
        let (store, root) =
            crate::open_store(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let input = batch(&[1]);
        // One row per file: a write closes its file at once.
        let mut dataset = Dataset::new("t", store, root, &input.schema(), options(1));
        open_and_claim(&mut dataset).await;
        let staged =
            || std::fs::read_dir(dir.path().join("_weir/staging")).map_or(0, |d| d.count());
        // An aborted attempt leaves nothing behind.
        dataset.write(&input, None).await.unwrap();
        assert_eq!(staged(), 1);
        dataset.abort().await;
        assert_eq!(staged(), 0);
        dataset.write(&input, None).await.unwrap();
        let visible = |dir: &std::path::Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "parquet")
                })
                .count()
        };
        assert_eq!(visible(dir.path()), 0, "closed but not committed");
        let files = dataset
            .commit(range(0, 1), vec![], None)
            .await
            .unwrap()
            .files;
        assert_eq!(visible(dir.path()), 1);
        assert_eq!(staged(), 0);
        assert_eq!(files[0].rows, 1);
        let report = dataset.verify().await.unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!((report.files, report.rows), (1, 1));
    }
}
