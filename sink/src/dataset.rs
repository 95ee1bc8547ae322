//! The output seam: what the pipeline needs of a dataset, whatever its format.
//!
//! A [`Dataset`] is where an output's rows go (today a directory of Parquet files with a
//! commit log beside it, [`crate::ParquetDataset`]; a table format such as Iceberg would be a
//! second implementation). Unopened, it can be read and checked by tools that run beside the
//! service or while it is down. Opened by one writer ([`Dataset::open`]), it becomes a
//! [`DatasetWriter`]: it claims Kafka partitions (fencing the instance that had them), takes
//! rows with their partition paths into files, and commits a [`Checkpoint`] (the files, the
//! offsets they cover, the watermarks, the window state) atomically, or refuses to when
//! another writer claimed a partition since.

use std::time::Duration;

use arrow::array::RecordBatch;
use weir_schemas::hive::PartitionPaths;
use weir_schemas::{Checkpoint, PartitionKey};

use crate::SinkError;
use crate::commit_log::{LogState, PartitionState, RecordedSchema, WrittenFile};
use crate::verify::Report;

/// A dataset, not opened for writing.
#[async_trait::async_trait]
pub trait Dataset: Send + Sync {
    fn name(&self) -> &str;

    /// The columns its files get, as its commit log records them.
    fn schema(&self) -> &RecordedSchema;

    /// Opens the dataset for `writer` (unique to this process; it names the files): finishes
    /// what earlier writers committed but did not publish, and deletes staged files older
    /// than `orphan_grace` that no commit will ever publish.
    async fn open(
        &self,
        writer: &str,
        orphan_grace: Duration,
    ) -> Result<Box<dyn DatasetWriter>, SinkError>;

    /// Checks the dataset against its commit log: what `weir verify` runs.
    async fn verify(&self) -> Result<Report, SinkError>;

    /// The state of the commit log, read without writing anything.
    async fn read_log_state(&self) -> Result<LogState, SinkError>;

    /// Every committed row, by the partition path of its file (files in path order), as the
    /// commit log lists them.
    async fn read_committed(&self) -> Result<Vec<(String, RecordBatch)>, SinkError>;
}

/// A dataset opened by one writer.
#[async_trait::async_trait]
pub trait DatasetWriter: Send {
    fn name(&self) -> &str;

    /// Claims Kafka partitions for this writer: from now on nobody else can commit them
    /// until they claim them in turn. Returns where the dataset continues in each.
    async fn claim(&mut self, partitions: &[PartitionKey]) -> Result<Vec<Option<i64>>, SinkError>;

    /// Gives up the claims on revoked partitions: commits for them are no longer tried.
    fn release(&mut self, partitions: &[PartitionKey]);

    /// What the dataset's commit log holds, as far as this writer has read it.
    fn state(&self) -> &LogState;

    /// What the commit log says about `partition`.
    fn partition_state(&self, partition: &PartitionKey) -> Option<&PartitionState> {
        self.state().partitions.get(partition)
    }

    /// Where the dataset continues in `partition`, if it ever committed it.
    fn next_offset(&self, partition: &PartitionKey) -> Option<i64> {
        self.partition_state(partition).and_then(|s| s.next_offset)
    }

    /// Writes rows; `paths` gives each row's partition path (all rows in the root without).
    async fn write(
        &mut self,
        batch: &RecordBatch,
        paths: Option<&PartitionPaths>,
    ) -> Result<(), SinkError>;

    /// Closes files that have been open longer than the roll policy's maximum age.
    async fn roll_aged(&mut self) -> Result<(), SinkError>;

    /// Memory held by open files.
    fn buffered_bytes(&self) -> usize;

    /// How many partition paths this writer wrote files to (counted up to 10,000).
    fn partitions_written(&self) -> usize;

    /// Whether it has written to as many partition paths since the last commit as a commit
    /// may hold: the pipeline then commits before it takes more rows.
    fn partition_paths_full(&self) -> bool;

    /// Closes every open file and commits them with `checkpoint`, then makes them visible.
    /// Refused with [`crate::LogError::Fenced`] when another writer claimed one of the
    /// partitions; what was written is then deleted.
    async fn commit(&mut self, checkpoint: Checkpoint) -> Result<Committed, SinkError>;

    /// Drops everything not committed: open files and files closed since the last commit.
    async fn abort(&mut self);

    /// Reads the window state a commit references (a partition's `window_state`). Takes
    /// `&mut self` only so that the future is `Send` for writers that are not `Sync`.
    async fn read_window_state(&mut self, path: &str) -> Result<Vec<RecordBatch>, SinkError>;
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
