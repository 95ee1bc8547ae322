//! A Parquet dataset opened by one writer: one open file per partition path, rolled by size,
//! row count and age, staged until the commit that makes it visible.
//!
//! Longer than 600 lines only by its tests (about 230), which write through the writer's
//! whole surface and belong beside it.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Encoding, PageType};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use tracing::Instrument;
use weir_schemas::hive::PartitionPaths;
use weir_schemas::{Checkpoint, PartitionKey};

use super::{ParquetDataset, dictionary};
use crate::SinkError;
use crate::commit_log::{CommitLog, LogError, LogState, WEIR_DIR, WindowStateRef, WrittenFile};
use crate::dataset::{Committed, DatasetWriter};

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

/// A [`ParquetDataset`] opened by one writer, with its commit log.
pub struct ParquetWriter {
    dataset: ParquetDataset,
    /// Unique to this process: it owns the claims and names the files.
    writer: String,
    log: CommitLog,
    /// Numbers the files (data and window state) this writer writes.
    next_file: u64,
    open: HashMap<String, OpenFile>,
    /// Files closed since the last commit.
    written: Vec<WrittenFile>,
    /// The partition paths written to since the last commit.
    paths_since_commit: HashSet<String>,
    /// Partition paths a file was written to, counted up to [`PATHS_COUNTED`].
    paths_counted: HashSet<String>,
    /// Files closed since the last flush only to make room under `max_open_files`.
    closed_for_room: usize,
    /// The properties new files are written with: the dataset's, less the dictionaries that
    /// did not pay.
    properties: WriterProperties,
    /// Columns written without a dictionary from now on: their values in the first rows
    /// barely repeated ([`dictionary`]), or in a file closed earlier they outgrew the
    /// dictionary and the writer fell back to plain encoding. Hashing every value into a
    /// dictionary that does not pay was a fifth of the CPU a stateless pipeline spent
    /// (unique ids, event times, offsets).
    plain: HashSet<ColumnPath>,
    /// Columns whose dictionary is not judged yet: the rows seen so far held too few values.
    undecided: HashSet<ColumnPath>,
}

/// Distinct partition paths counted for the run's summary; past it the count stops, so that
/// a high-cardinality path never makes the writer remember without bound.
const PATHS_COUNTED: usize = 10_000;

/// Files closed (encoded, uploaded) at once at a checkpoint, or when too many are open.
const CLOSE_CONCURRENCY: usize = 16;

impl ParquetWriter {
    pub(super) fn new(dataset: ParquetDataset, writer: &str, log: CommitLog) -> Self {
        Self {
            writer: writer.to_owned(),
            log,
            next_file: 0,
            open: HashMap::new(),
            written: Vec::new(),
            paths_since_commit: HashSet::new(),
            paths_counted: HashSet::new(),
            closed_for_room: 0,
            properties: dataset.properties.clone(),
            plain: HashSet::new(),
            undecided: dictionary::judged_columns(&dataset.schema),
            dataset,
        }
    }

    /// The window state a commit records: its snapshot written as a file of its own, and
    /// how far each partition's windows were emitted.
    async fn window_state(
        &mut self,
        state: weir_schemas::WindowCheckpoint,
    ) -> Result<WindowStateRef, SinkError> {
        let path = match &state.snapshot {
            Some(snapshot) => {
                self.next_file += 1;
                let relative = format!(
                    "{WEIR_DIR}/state/{}-{:06}.arrow",
                    self.writer, self.next_file
                );
                self.dataset.write_window_state(&relative, snapshot).await?;
                Some(relative)
            }
            None => None,
        };
        Ok(WindowStateRef {
            path,
            partitions: state.emitted,
        })
    }

    /// Writes rows; `paths` gives each row's partition path (all rows in the root without).
    async fn write_rows(
        &mut self,
        batch: &RecordBatch,
        paths: Option<&PartitionPaths>,
    ) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(batch)?;
        if !self.undecided.is_empty() {
            self.judge_dictionaries(&batch);
        }
        let Some(paths) = paths else {
            return self.write_partition("", &batch).await;
        };
        let names = paths.values().as_string::<i32>();
        let keys = paths.keys().values();
        if keys.iter().all(|&key| key == keys[0]) {
            return self
                .write_partition(names.value(keys[0] as usize), &batch)
                .await;
        }
        // The rows of each path, by the path's index: no path is hashed or compared.
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
        for (row, &key) in keys.iter().enumerate() {
            rows[key as usize].push(row as u32);
        }
        for (key, rows) in rows.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = take_record_batch(&batch, &UInt32Array::from(rows)).map_err(|source| {
                SinkError::Schema {
                    dataset: self.dataset.name.clone(),
                    source,
                }
            })?;
            self.write_partition(names.value(key), &part).await?;
        }
        Ok(())
    }

    /// Turns off the dictionaries that `batch` shows would not pay, for files opened from now
    /// on.
    fn judge_dictionaries(&mut self, batch: &RecordBatch) {
        let judged = dictionary::judge(batch, &self.undecided);
        for (column, _) in &judged {
            self.undecided.remove(column);
        }
        let plain = judged
            .into_iter()
            .filter_map(|(column, pays)| (!pays).then_some(column));
        self.write_plain(plain, "its values barely repeat");
    }

    /// Writes `columns` without a dictionary in the files opened from now on.
    fn write_plain(&mut self, columns: impl IntoIterator<Item = ColumnPath>, why: &str) {
        let mut properties = None;
        for column in columns {
            if self.plain.insert(column.clone()) {
                tracing::debug!(dataset = %self.dataset.name, %column, why, "writing the column without a dictionary from now on");
                let builder = properties.unwrap_or_else(|| self.properties.clone().into_builder());
                properties = Some(builder.set_column_dictionary_enabled(column, false));
            }
        }
        if let Some(properties) = properties {
            self.properties = properties.build();
        }
    }

    async fn write_partition(
        &mut self,
        partition: &str,
        batch: &RecordBatch,
    ) -> Result<(), SinkError> {
        if !self.open.contains_key(partition) {
            if self.open.len() >= self.dataset.options.max_open_files.max(1) {
                self.close_oldest().await?;
            }
            let file = self.open_file(partition)?;
            self.open.insert(partition.to_owned(), file);
            self.paths_since_commit.insert(partition.to_owned());
        }
        let file = self.open.get_mut(partition).expect("just opened");
        file.writer
            .write(batch)
            .await
            .map_err(|source| SinkError::Write {
                dataset: self.dataset.name.clone(),
                path: file.path.to_string(),
                source,
            })?;
        file.rows += batch.num_rows() as u64;
        let roll = &self.dataset.options.roll;
        let size = file.writer.bytes_written() as u64 + file.writer.in_progress_size() as u64;
        if file.rows >= roll.max_file_rows || size >= roll.target_file_bytes {
            let file = self.open.remove(partition).expect("present");
            self.close(vec![(partition.to_owned(), file)]).await?;
        }
        Ok(())
    }

    fn open_file(&mut self, partition: &str) -> Result<OpenFile, SinkError> {
        // The path is already escaped the way Hive readers unescape it (`a/b` as `a%2Fb`):
        // taken as it is, not encoded a second time. Checked before anything is written, so
        // that no commit can list a file its store cannot hold.
        let refuse = |reason: String| SinkError::PartitionPath {
            dataset: self.dataset.name.clone(),
            reason,
        };
        let directory =
            Path::parse(partition).map_err(|_| refuse("it is not a valid object path".into()))?;
        let max = self.dataset.max_partition_path_bytes();
        if partition.len() > max {
            return Err(refuse(format!(
                "it is {} bytes; the store holds at most {max} under this dataset",
                partition.len()
            )));
        }
        let max_segment = self.dataset.max_partition_segment_bytes();
        if let Some(segment) = directory
            .parts()
            .find(|part| part.as_ref().len() > max_segment)
        {
            return Err(refuse(format!(
                "a segment is {} bytes; the store holds at most {max_segment}",
                segment.as_ref().len()
            )));
        }
        self.next_file += 1;
        let relative: Path = directory
            .parts()
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
        let path: Path = self.dataset.root.parts().chain(staging.parts()).collect();
        let upload = BufWriter::with_capacity(
            self.dataset.store.clone(),
            path.clone(),
            self.dataset.options.upload_buffer_bytes,
        );
        let writer = AsyncArrowWriter::try_new(
            upload,
            self.dataset.schema.clone(),
            Some(self.properties.clone()),
        )
        .map_err(|source| SinkError::Write {
            dataset: self.dataset.name.clone(),
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

    /// Closes `files` (at most [`CLOSE_CONCURRENCY`] at once) and records them as written.
    async fn close(&mut self, files: Vec<(String, OpenFile)>) -> Result<(), SinkError> {
        let dataset = self.dataset.name.as_str();
        let closed: Vec<(WrittenFile, Vec<ColumnPath>)> = futures::stream::iter(files)
            .map(|(partition, file)| finish(dataset, partition, file))
            .buffer_unordered(CLOSE_CONCURRENCY)
            .try_collect()
            .await?;
        let fell_back: Vec<ColumnPath> = closed
            .iter()
            .flat_map(|(_, plain)| plain.iter().cloned())
            .collect();
        self.write_plain(fell_back, "it outgrew its dictionary in a file closed");
        for (file, _) in closed {
            if self.paths_counted.len() < PATHS_COUNTED {
                self.paths_counted.insert(file.partition.clone());
            }
            self.written.push(file);
        }
        Ok(())
    }

    /// Closes the oldest open files to make room for a new one: an eighth of the limit at
    /// once, so that rows spread over many more paths than files may be open do not close
    /// one file per row group, one upload after another.
    async fn close_oldest(&mut self) -> Result<(), SinkError> {
        let room = (self.dataset.options.max_open_files / 8).max(1);
        let mut by_age: Vec<(&String, Instant)> =
            self.open.iter().map(|(p, f)| (p, f.opened)).collect();
        by_age.sort_by_key(|&(_, opened)| opened);
        let oldest: Vec<String> = by_age
            .into_iter()
            .take(room)
            .map(|(p, _)| p.clone())
            .collect();
        let files = self.take_open(oldest);
        self.closed_for_room += files.len();
        self.close(files).await
    }

    /// Takes the open files of `partitions` out of the open set.
    fn take_open(&mut self, partitions: Vec<String>) -> Vec<(String, OpenFile)> {
        partitions
            .into_iter()
            .map(|partition| {
                let file = self.open.remove(&partition).expect("present");
                (partition, file)
            })
            .collect()
    }

    /// Closes files that have been open longer than the roll policy's maximum age.
    async fn roll_aged_files(&mut self) -> Result<(), SinkError> {
        let max_age = self.dataset.options.roll.max_file_age;
        let aged: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= max_age)
            .map(|(p, _)| p.clone())
            .collect();
        let files = self.take_open(aged);
        self.close(files).await
    }

    /// Closes every open file and returns the files made durable (staged) since the last flush.
    async fn flush(&mut self) -> Result<Vec<WrittenFile>, SinkError> {
        let open: Vec<(String, OpenFile)> = self.open.drain().collect();
        self.close(open).await?;
        if self.closed_for_room > 0 {
            // Rows spread over more paths than may be open make a small file per path and
            // batch, and cost many times the CPU per row: worth an operator's look.
            tracing::warn!(
                dataset = %self.dataset.name,
                paths = self.paths_since_commit.len(),
                max_open_files = self.dataset.options.max_open_files,
                files_closed_early = self.closed_for_room,
                "rows went to more partition paths than files may be open: files were closed \
                 early, small; raise the sink's max_open_files or partition more coarsely"
            );
        }
        self.closed_for_room = 0;
        self.paths_since_commit.clear();
        Ok(std::mem::take(&mut self.written))
    }

    /// When the oldest open file was opened.
    #[cfg(test)]
    fn oldest_open(&self) -> Option<Instant> {
        self.open.values().map(|f| f.opened).min()
    }

    /// Memory held by open files: encoded row groups in progress and upload buffers.
    fn buffered(&self) -> usize {
        self.open
            .values()
            .map(|f| {
                let unflushed = f
                    .writer
                    .bytes_written()
                    .min(self.dataset.options.upload_buffer_bytes);
                f.writer.memory_size() + unflushed
            })
            .sum()
    }

    /// Casts columns to the file schema (nanosecond timestamps to microseconds) and adopts
    /// its field metadata.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, SinkError> {
        let schema_error = |source| SinkError::Schema {
            dataset: self.dataset.name.clone(),
            source,
        };
        let columns = batch
            .columns()
            .iter()
            .zip(self.dataset.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(schema_error)?;
        RecordBatch::try_new(self.dataset.schema.clone(), columns).map_err(schema_error)
    }
}

#[async_trait::async_trait]
impl DatasetWriter for ParquetWriter {
    fn name(&self) -> &str {
        &self.dataset.name
    }

    async fn claim(&mut self, partitions: &[PartitionKey]) -> Result<Vec<Option<i64>>, SinkError> {
        Ok(self.log.claim(partitions).await?)
    }

    fn release(&mut self, partitions: &[PartitionKey]) {
        self.log.release(partitions);
    }

    fn state(&self) -> &LogState {
        self.log.state()
    }

    async fn write(
        &mut self,
        batch: &RecordBatch,
        paths: Option<&PartitionPaths>,
    ) -> Result<(), SinkError> {
        self.write_rows(batch, paths).await
    }

    async fn roll_aged(&mut self) -> Result<(), SinkError> {
        self.roll_aged_files().await
    }

    fn buffered_bytes(&self) -> usize {
        self.buffered()
    }

    fn partitions_written(&self) -> usize {
        self.paths_counted.len()
    }

    fn partition_paths_full(&self) -> bool {
        self.paths_since_commit.len() >= self.dataset.options.max_partitions_per_checkpoint
    }

    /// Closes every open file, commits them with the checkpoint's offsets, watermarks and
    /// window state, then publishes them under their final names. After a refused commit
    /// ([`LogError::Fenced`]) the files are deleted.
    async fn commit(&mut self, checkpoint: Checkpoint) -> Result<Committed, SinkError> {
        let Checkpoint {
            ranges,
            watermarks,
            window_state,
            coverage,
        } = checkpoint;
        let window_state = match window_state {
            Some(state) => Some(self.window_state(state).await?),
            None => None,
        };
        let files = self.flush().await?;
        if ranges.is_empty() {
            debug_assert!(files.is_empty(), "rows come with offsets");
            return Ok(Committed::default());
        }
        let late_before = self.log.late_rows();
        match self
            .log
            .commit(
                ranges,
                files.clone(),
                watermarks,
                window_state,
                &self.dataset.recorded,
                &coverage,
            )
            .await
        {
            Ok(seq) => Ok(Committed {
                seq: Some(seq),
                files,
                late_rows: self.log.late_rows() - late_before,
            }),
            Err(error) => {
                if matches!(error, LogError::Fenced { .. }) {
                    self.dataset.delete_staged(&files).await;
                }
                Err(error.into())
            }
        }
    }

    async fn abort(&mut self) {
        self.open.clear();
        self.paths_since_commit.clear();
        let written = std::mem::take(&mut self.written);
        self.dataset.delete_staged(&written).await;
    }

    async fn read_window_state(&mut self, path: &str) -> Result<Vec<RecordBatch>, SinkError> {
        self.dataset.read_window_state(path).await
    }
}

/// Finishes `file` (its last row group and footer, the end of its upload): the file as
/// the log records it.
/// Finishes `file`, and says which of its columns outgrew their dictionary.
async fn finish(
    dataset: &str,
    partition: String,
    file: OpenFile,
) -> Result<(WrittenFile, Vec<ColumnPath>), SinkError> {
    let OpenFile {
        mut writer,
        path,
        relative,
        staging,
        rows,
        ..
    } = file;
    let span = tracing::debug_span!("close_file", dataset, %path, rows);
    let metadata = writer
        .finish()
        .instrument(span)
        .await
        .map_err(|source| SinkError::Write {
            dataset: dataset.to_owned(),
            path: path.to_string(),
            source,
        })?;
    debug_assert_eq!(metadata.file_metadata().num_rows() as u64, rows);
    let file = WrittenFile {
        path: relative,
        staging,
        partition,
        rows,
        bytes: writer.bytes_written() as u64,
    };
    Ok((file, dictionaries_dropped(&metadata)))
}

/// The columns of a file whose dictionary was dropped part-way: some of their data pages
/// are plain-encoded after a dictionary page.
fn dictionaries_dropped(metadata: &ParquetMetaData) -> Vec<ColumnPath> {
    let mut dropped = Vec::new();
    for row_group in metadata.row_groups() {
        for column in row_group.columns() {
            if column.dictionary_page_offset().is_none() {
                continue;
            }
            let plain_pages = match column.page_encoding_stats() {
                Some(stats) => stats.iter().any(|s| {
                    matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2)
                        && s.encoding == Encoding::PLAIN
                }),
                None => column
                    .page_encoding_stats_mask()
                    .is_some_and(|mask| mask.is_set(Encoding::PLAIN)),
            };
            if plain_pages && !dropped.contains(column.column_path()) {
                dropped.push(column.column_path().clone());
            }
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::DatasetOptions;
    use crate::dataset::Dataset;
    use crate::testing::{checkpoint as range, dataset_options as options};
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use weir_schemas::hive::one_path;

    #[tokio::test]
    async fn a_path_the_store_cannot_hold_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let input = batch(&[1]);
        let mut dataset = open_and_claim(dir.path(), &input, options(100)).await;
        let too_long = [
            format!("p={}", "x".repeat(254)),
            // Four segments of 251 bytes: each fits, together they do not.
            (0..4)
                .map(|i| format!("s{i}={}", "x".repeat(248)))
                .collect::<Vec<_>>()
                .join("/"),
            "p=a//b".to_owned(),
        ];
        for path in too_long {
            let paths = one_path(&path, 1);
            let err = dataset.write(&input, Some(&paths)).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains("cannot be stored"), "{text}");
            assert!(
                !text.contains("xxxx"),
                "the path stays out of the error: {text}"
            );
        }
        assert!(dataset.flush().await.unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("_weir/staging")).map_or(0, |d| d.count()),
            0
        );
    }

    /// A column whose first values barely repeat is written without a dictionary; one whose
    /// values outgrow its dictionary later is written without one in the files that follow;
    /// one whose values fit keeps it; the rows stay the same.
    #[tokio::test]
    async fn a_dictionary_that_does_not_pay_is_not_built() {
        use super::super::dictionary::SAMPLE_ROWS;
        use arrow::array::StringArray;
        let dir = tempfile::tempdir().unwrap();
        let rows = 60_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("unique", DataType::Utf8, false),
            Field::new("grows", DataType::Utf8, false),
            Field::new("few", DataType::Utf8, false),
        ]));
        let input = |from: usize| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        (from..from + rows).map(|i| format!("event-{i:018}")),
                    )),
                    // Repeated in the rows sampled, then distinct: 24-byte values, more
                    // than a 1 MiB dictionary holds.
                    Arc::new(StringArray::from_iter_values((0..rows).map(|i| {
                        let value = if i < SAMPLE_ROWS { i % 100 } else { from + i };
                        format!("event-{value:018}")
                    }))),
                    Arc::new(StringArray::from_iter_values(
                        (0..rows).map(|i| ["a", "b", "c"][i % 3]),
                    )),
                ],
            )
            .unwrap()
        };
        let options = DatasetOptions {
            row_group_rows: rows,
            ..options(u64::MAX)
        };
        let mut dataset = open_and_claim(dir.path(), &input(0), options).await;
        let mut files = Vec::new();
        for round in 0..2 {
            dataset.write(&input(round * rows), None).await.unwrap();
            files.extend(dataset.flush().await.unwrap());
        }
        let dictionary = |file: &WrittenFile, column: usize| {
            let f = std::fs::File::open(dir.path().join(&file.staging)).unwrap();
            let reader = parquet::file::serialized_reader::SerializedFileReader::new(f).unwrap();
            parquet::file::reader::FileReader::metadata(&reader)
                .row_group(0)
                .column(column)
                .dictionary_page_offset()
                .is_some()
        };
        assert!(!dictionary(&files[0], 0) && !dictionary(&files[1], 0));
        assert!(dictionary(&files[0], 1), "the first file tries one");
        assert!(!dictionary(&files[1], 1), "the next does without");
        assert!(dictionary(&files[0], 2) && dictionary(&files[1], 2));
        for (round, file) in files.iter().enumerate() {
            let f = std::fs::File::open(dir.path().join(&file.staging)).unwrap();
            let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let read = arrow::compute::concat_batches(&schema, &read).unwrap();
            assert_eq!(read, input(round * rows));
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

    /// The dataset in `dir` for rows like `input`, opened by writer `w1`, which claims
    /// partition t/0.
    async fn open_and_claim(
        dir: &std::path::Path,
        input: &RecordBatch,
        options: DatasetOptions,
    ) -> ParquetWriter {
        let (store, root) = crate::open_store(dir.to_str().unwrap(), &Default::default()).unwrap();
        let mut dataset = ParquetDataset::new("t", store, root, &input.schema(), options)
            .open_writer("w1", Duration::from_secs(3600))
            .await
            .unwrap();
        dataset.claim(&[PartitionKey::new("t", 0)]).await.unwrap();
        dataset
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
        let input = batch(&[1, 2, 3, 4, 5]);
        let mut dataset = open_and_claim(dir.path(), &input, options(2)).await;
        let paths: PartitionPaths = ["p=a", "p=b", "p=a", "p=a", "p=b"].into_iter().collect();
        dataset.write(&input, Some(&paths)).await.unwrap();
        assert_eq!(
            dataset.buffered_bytes() > 0,
            dataset.oldest_open().is_some()
        );
        let committed = dataset.commit(range(0, 5)).await.unwrap();
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
        assert_eq!(dataset.partitions_written(), 2);
        assert!(dataset.flush().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn opening_past_the_limit_closes_the_oldest_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = batch(&[1, 2, 3]);
        let options = DatasetOptions {
            max_open_files: 2,
            ..options(100)
        };
        let mut dataset = open_and_claim(dir.path(), &input, options).await;
        for part in ["p=a", "p=b", "p=c", "p=a"] {
            let paths = one_path(part, 3);
            dataset.write(&input, Some(&paths)).await.unwrap();
            assert!(dataset.open.len() <= 2);
        }
        assert_eq!(
            dataset.closed_for_room, 2,
            "p=a closed for p=c, then p=b for p=a"
        );
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

    /// The first commit records the dataset's columns, later ones only when they change (a
    /// writer of another schema); `weir verify` lists the change and finds a file whose
    /// footer does not have the columns recorded for it.
    #[tokio::test]
    async fn each_change_of_columns_is_recorded_once_and_verified() {
        use arrow::array::StringArray;
        let dir = tempfile::tempdir().unwrap();
        let input = batch(&[1]);
        let mut first = open_and_claim(dir.path(), &input, options(100)).await;
        for offset in 0..2 {
            first.write(&input, None).await.unwrap();
            first.commit(range(offset, offset + 1)).await.unwrap();
        }
        let recorded = first.state().schema.clone().unwrap();
        assert_eq!(recorded.seq, 1, "recorded by the first commit only");
        assert_eq!(recorded.schema.source, "a test");
        let columns: Vec<String> = recorded
            .schema
            .columns
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            columns,
            ["`id` Int64 NOT NULL", "`at` Timestamp(Microsecond, UTC)"]
        );

        // A writer whose rows have one more column.
        let mut fields = input.schema().fields().to_vec();
        fields.push(Arc::new(Field::new("extra", DataType::Utf8, true)));
        let wider = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            input
                .columns()
                .iter()
                .cloned()
                .chain([Arc::new(StringArray::from(vec![Some("x")])) as _])
                .collect(),
        )
        .unwrap();
        let (store, root) =
            crate::open_store(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let options = DatasetOptions {
            schema_source: "version 2".into(),
            ..options(100)
        };
        let mut second = ParquetDataset::new("t", store, root, &wider.schema(), options)
            .open_writer("w2", Duration::from_secs(3600))
            .await
            .unwrap();
        second.claim(&[PartitionKey::new("t", 0)]).await.unwrap();
        second.write(&wider, None).await.unwrap();
        let seq = second.commit(range(2, 3)).await.unwrap().seq.unwrap();
        assert_eq!(second.state().schema.as_ref().unwrap().seq, seq);

        let report = second.dataset.verify().await.unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.schema_changes.len(), 1, "{report}");
        let change = report.schema_changes[0]
            .changes
            .iter()
            .map(|c| c.to_string());
        assert_eq!(change.collect::<Vec<_>>(), ["added `extra` Utf8"]);
        assert!(
            report
                .to_string()
                .contains(&format!("schema changed at entry {seq} ("))
        );

        // An entry whose recorded columns are not its file's.
        let entry = dir.path().join("_weir/log/00000000000000000001.json");
        let text = std::fs::read_to_string(&entry).unwrap();
        std::fs::write(&entry, text.replace("\"Int64\"", "\"Int32\"")).unwrap();
        let report = second.dataset.verify().await.unwrap();
        let problems = report.problems.join("\n");
        assert!(
            problems.contains("(entry 1) does not hold the columns recorded for it: against them it has changed `id` from Int32 NOT NULL to Int64 NOT NULL"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn files_are_invisible_until_committed_and_dropped_on_abort() {
        let dir = tempfile::tempdir().unwrap();
        let input = batch(&[1]);
        // One row per file: a write closes its file at once.
        let mut dataset = open_and_claim(dir.path(), &input, options(1)).await;
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
        let files = dataset.commit(range(0, 1)).await.unwrap().files;
        assert_eq!(visible(dir.path()), 1);
        assert_eq!(staged(), 0);
        assert_eq!(files[0].rows, 1);
        let report = dataset.dataset.verify().await.unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!((report.files, report.rows), (1, 1));
    }
}
