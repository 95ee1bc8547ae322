//! The commit log of one dataset: which files are data, and which Kafka offsets they hold.
//!
//! Everything lives next to the data, under the dataset root:
//!
//! ```text
//! _weir/log/00000000000000000042.json        one entry per claim or commit
//! _weir/snapshots/00000000000000000100.json  the state after an entry, so start-up reads little
//! _weir/staging/<writer>-000007.parquet.pending   written, not yet committed
//! _weir/state/<writer>-000003.arrow          open windows' partial aggregates (windowed datasets)
//! _weir/quarantine/<writer>-000007.parquet.pending   committed, but its final name cannot be stored
//! ```
//!
//! Entries are numbered densely from 0 and each is created with a conditional put (create only
//! if absent: `If-None-Match: *` on S3, generation 0 on GCS, `If-None-Match` on Azure, a
//! no-replace link on local disk). Of two writers racing for the same number one wins; the other
//! reads the winner's entry and tries the next number. A writer has read every entry before the
//! one it creates, so the checks it makes (who owns a partition, where its offsets continue)
//! hold against exactly the state its entry follows.
//!
//! **Claims fence zombies.** An instance that is assigned a Kafka partition first appends a
//! claim for it. A commit for a partition is accepted only from the writer of the partition's
//! latest claim, so an instance that lost the partition (paused past its session timeout, cut
//! off from the group) has its commit refused, however late it wakes up.
//!
//! **Files become visible only after their commit.** Files are written under `_weir/staging/`
//! with a name no glob for `*.parquet` matches; a commit entry lists each file's staged and
//! final name, and only after the entry exists are files moved to their final names. The entry
//! is the commit point: if the writer dies before moving every file, whoever next opens the
//! log or claims partitions finishes the moves, which are idempotent. On S3 a move is a
//! server-side copy and a delete; a copy repeated after a crash writes the same bytes again, so
//! a glob reader can see a committed file early or twice-written, but never an uncommitted one
//! and never two copies under two names.
//!
//! **Old entries go after a retention period.** A service that commits every few seconds for
//! months would keep millions of entries. When a writer writes a snapshot it deletes the
//! entries up to the newest snapshot older than the retention (a bounded number at a time),
//! and the snapshots before that one: nobody starts before the latest snapshot, so snapshots
//! are part of the log, not a cache. Before a writer creates entry `n` it checks that no
//! snapshot at or after `n` exists: one would mean `n` was pruned while the writer was not
//! looking (paused, say), and the writer starts again from the latest snapshot instead of
//! reusing the number. No clock is trusted for it; only a pause longer than the retention
//! between that check and the create could still reuse a number, which `weir verify` reports.

mod append;
mod completeness;
mod entry;
mod error;
mod paths;
mod prune;
mod publish;
mod snapshot;
mod state;
#[cfg(test)]
mod tests;

pub use entry::{
    Action, ColumnChange, Entry, RecordedColumn, RecordedSchema, WindowStateRef, WrittenFile,
};
pub use error::LogError;
pub(crate) use paths::snapshot_dir;
pub use paths::{WEIR_DIR, entry_path, quarantine_path, under};
pub(crate) use prune::list_numbered;
pub use snapshot::SNAPSHOT_EVERY;
pub(crate) use snapshot::snapshot_state;
pub use state::{LogState, PartitionState, SchemaRecord, Violation};

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use weir_schemas::{
    OffsetRange, PartitionKey, RecordedWatermark, TimeGranularity, WatermarkCoverage,
};

use crate::store::PathLimits;

/// A dataset's commit log, as one writer sees and appends to it.
pub struct CommitLog {
    dataset: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
    writer: String,
    state: LogState,
    /// The claim entry this writer made for each partition it owns.
    claims: HashMap<PartitionKey, u64>,
    /// Other writers' commits read from the log that may not be published (files moved to
    /// their final names, the Delta commit made): of each writer, its latest commit only,
    /// since a writer appends an entry only after publishing its previous one.
    unpublished: HashMap<String, Unpublished>,
    /// The table format commits are published to as well (Delta datasets).
    table: Option<Arc<dyn TablePublication>>,
    /// The dataset's time partitions, if it has them.
    time_partitions: Option<TimeGranularity>,
    /// Time partitions with committed files whose `_SUCCESS` marker is not written yet.
    incomplete: std::collections::BTreeSet<String>,
    /// The committed watermark last published in `_weir/watermark.json`.
    published_watermark: Option<i64>,
    /// Rows this writer committed to time partitions already marked complete.
    late_rows: u64,
    /// How long entries are kept once a newer snapshot replaces them; `None`: for ever.
    retention: Option<Duration>,
    /// How long a path the store holds; a committed file whose final name breaks it is
    /// quarantined rather than published.
    path_limits: Option<PathLimits>,
    /// A snapshot is written after every this many entries.
    snapshot_every: NonZeroU64,
}

/// A commit read from the log, to publish.
#[derive(Debug, Clone)]
pub(super) struct Unpublished {
    pub(super) seq: u64,
    pub(super) ranges: Vec<OffsetRange>,
    pub(super) files: Vec<WrittenFile>,
}

/// How a writer keeps a dataset's log.
#[derive(Clone, Default)]
pub struct LogOptions {
    /// The dataset's time partitions, if it has them: they get `_SUCCESS` markers.
    pub time_partitions: Option<TimeGranularity>,
    /// How long entries are kept once a snapshot replaces them (`None`: for ever).
    pub retention: Option<Duration>,
    /// How long a path the store holds (`None`: not checked).
    pub path_limits: Option<PathLimits>,
    /// A snapshot of the state is written after every this many entries (`None`:
    /// [`SNAPSHOT_EVERY`]).
    pub snapshot_every: Option<NonZeroU64>,
    /// The table format each commit is published to as well, if the dataset has one.
    pub table: Option<Arc<dyn TablePublication>>,
}

/// A table format (Delta Lake; Iceberg would be a second) each commit of the log is also
/// published to, after its files are moved to their final names. Called again for a commit
/// whose writer stopped before or during its publication, possibly by two writers at once:
/// it must publish each commit once.
#[async_trait::async_trait]
pub trait TablePublication: Send + Sync {
    /// Publishes log entry `seq`, which commits `files` for `ranges`, with the dataset's
    /// committed watermark.
    async fn publish(
        &self,
        seq: u64,
        ranges: &[OffsetRange],
        files: &[WrittenFile],
        watermark_ms: Option<i64>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

impl CommitLog {
    /// Rows this writer committed to time partitions already marked complete, since it opened
    /// the log.
    pub fn late_rows(&self) -> u64 {
        self.late_rows
    }

    /// Opens the log of the dataset at `root` for `writer`, a name unique to this process,
    /// and finishes publishing the files of commits whose writer stopped half-way.
    pub async fn open(
        dataset: &str,
        store: Arc<dyn ObjectStore>,
        root: Path,
        writer: &str,
        options: LogOptions,
    ) -> Result<Self, LogError> {
        let mut log = Self::unread(dataset, store, root, writer);
        log.time_partitions = options.time_partitions;
        log.retention = options.retention;
        log.path_limits = options.path_limits;
        if let Some(every) = options.snapshot_every {
            log.snapshot_every = every;
        }
        log.table = options.table;
        log.check_conditional_put().await?;
        log.load_snapshot().await?;
        log.refresh().await?;
        log.check_start().await?;
        log.publish_unpublished().await?;
        Ok(log)
    }

    /// A log of which nothing is read yet.
    fn unread(dataset: &str, store: Arc<dyn ObjectStore>, root: Path, writer: &str) -> Self {
        Self {
            dataset: dataset.to_owned(),
            store,
            root,
            writer: writer.to_owned(),
            state: LogState::default(),
            claims: HashMap::new(),
            unpublished: HashMap::new(),
            table: None,
            time_partitions: None,
            incomplete: Default::default(),
            published_watermark: None,
            late_rows: 0,
            retention: None,
            path_limits: None,
            snapshot_every: NonZeroU64::new(SNAPSHOT_EVERY).expect("a positive interval"),
        }
    }

    /// Reads the state of a dataset's log without writing anything (for lag and tests).
    pub async fn read_state(
        dataset: &str,
        store: Arc<dyn ObjectStore>,
        root: Path,
    ) -> Result<LogState, LogError> {
        let mut log = Self::unread(dataset, store, root, "");
        log.load_snapshot().await?;
        log.refresh().await?;
        log.check_start().await?;
        Ok(log.state)
    }

    /// Every file the log's commits list, in commit order. Refused for a log whose first
    /// entries were pruned: the files they committed are listed nowhere any more.
    pub async fn committed_files(
        dataset: &str,
        store: Arc<dyn ObjectStore>,
        root: Path,
    ) -> Result<Vec<WrittenFile>, LogError> {
        let mut log = Self::unread(dataset, store, root, "");
        if let Some(first) = log.snapshots().await?.into_keys().next()
            && log.read_entry(0).await?.is_none()
        {
            return Err(LogError::Corrupt {
                dataset: dataset.to_owned(),
                path: entry_path(&log.root, 0).to_string(),
                reason: format!(
                    "the entries up to snapshot {first} were pruned after their retention, so                      the files they committed are not listed any more"
                ),
            });
        }
        let mut files = Vec::new();
        while let Some(entry) = log.read_entry(log.state.next_seq).await? {
            if let Action::Commit { files: listed, .. } = &entry.action {
                files.extend(listed.iter().cloned());
            }
            log.state.apply(&entry);
        }
        Ok(files)
    }

    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// Where the next commit for `partition` continues, if it was ever committed.
    pub fn next_offset(&self, partition: &PartitionKey) -> Option<i64> {
        self.state
            .partitions
            .get(partition)
            .and_then(|s| s.next_offset)
    }

    /// Claims `partitions` for this writer; from now on nobody else can commit them until
    /// they claim them in turn. Returns where each continues.
    pub async fn claim(
        &mut self,
        partitions: &[PartitionKey],
    ) -> Result<Vec<Option<i64>>, LogError> {
        // A cooperative rebalance reports rounds that assign nothing.
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let seq = self
            .append(Action::Claim {
                partitions: partitions.to_vec(),
            })
            .await?;
        for partition in partitions {
            self.claims.insert(partition.clone(), seq);
        }
        self.publish_unpublished().await?;
        self.snapshot_if_due(seq).await;
        Ok(partitions.iter().map(|p| self.next_offset(p)).collect())
    }

    /// Forgets the claims on `partitions` (revoked): commits for them are no longer tried.
    pub fn release(&mut self, partitions: &[PartitionKey]) {
        for partition in partitions {
            self.claims.remove(partition);
        }
    }

    /// Appends a commit of `files` covering `ranges`, then moves the files to their final
    /// names, and marks the time partitions complete that the committed watermark passed if
    /// it speaks for every partition (`coverage`). The files' `schema` is recorded with them
    /// when its columns differ from those recorded last. Refused with [`LogError::Fenced`]
    /// when another writer claimed one of the partitions since this writer did.
    pub async fn commit(
        &mut self,
        ranges: Vec<OffsetRange>,
        files: Vec<WrittenFile>,
        watermarks: Vec<RecordedWatermark>,
        window_state: Option<WindowStateRef>,
        schema: &RecordedSchema,
        coverage: &WatermarkCoverage,
    ) -> Result<u64, LogError> {
        let needed: Vec<String> = self
            .state
            .window_state_files()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let changed = self
            .state
            .schema
            .as_ref()
            .is_none_or(|recorded| !recorded.schema.same_columns(schema));
        let schema = (changed && !files.is_empty()).then(|| schema.clone());
        let changes: Option<Vec<String>> =
            schema
                .as_ref()
                .zip(self.state.schema.as_ref())
                .map(|(after, before)| {
                    let changes = after.changes_from(&before.schema);
                    changes.iter().map(|c| c.to_string()).collect()
                });
        let seq = self
            .append(Action::Commit {
                ranges: ranges.clone(),
                files: files.clone(),
                watermarks,
                window_state,
                schema,
            })
            .await?;
        if let Some(changes) = changes {
            tracing::info!(dataset = %self.dataset, entry = seq, "the dataset's columns changed: {}", changes.join("; "));
        }
        self.publish(&files).await?;
        self.publish_to_table(seq, &ranges, &files).await?;
        // State files this commit replaced for good; best effort, orphan removal catches up.
        let still = self.state.window_state_files();
        for path in needed.iter().filter(|p| !still.contains(p.as_str())) {
            if let Ok(path) = under(&self.root, path)
                && let Err(e) = self.store.delete(&path).await
            {
                tracing::debug!(dataset = %self.dataset, %path, error = %e, "could not delete a replaced window state file");
            }
        }
        self.note_time_partitions(&files, true);
        self.mark_complete(coverage).await;
        self.snapshot_if_due(seq).await;
        Ok(seq)
    }

    /// The checks a writer makes before appending: the generic ones, and that each partition's
    /// latest claim is the one this writer made (not one of its own earlier, lost claims).
    fn check_own(&self, entry: &Entry) -> Result<(), LogError> {
        let mut fenced = Vec::new();
        let mut invalid = Vec::new();
        if let Err(violations) = self.state.check(entry) {
            for violation in violations {
                match violation {
                    Violation::NotOwner { .. } => fenced.push(violation),
                    other => invalid.push(other),
                }
            }
        }
        // Owned by this writer's name, but through a claim this object did not make.
        for partition in entry.touched_partitions() {
            let state = self.state.partitions.get(partition);
            let latest = state.and_then(|s| s.claimed_at);
            let owner = state.and_then(|s| s.owner.as_deref());
            if owner == Some(self.writer.as_str()) && latest != self.claims.get(partition).copied()
            {
                fenced.push(Violation::NotOwner {
                    partition: partition.clone(),
                    owner: owner.map(str::to_owned),
                    claimed_at: latest,
                });
            }
        }
        if !fenced.is_empty() {
            return Err(LogError::Fenced {
                dataset: self.dataset.clone(),
                violations: fenced,
            });
        }
        if !invalid.is_empty() {
            return Err(LogError::Invalid {
                dataset: self.dataset.clone(),
                violations: invalid,
            });
        }
        Ok(())
    }

    /// Reads entries after the last one known, until there is none.
    async fn refresh(&mut self) -> Result<(), LogError> {
        while let Some(entry) = self.read_entry(self.state.next_seq).await? {
            self.take_in(entry);
        }
        Ok(())
    }

    fn take_in(&mut self, entry: Entry) {
        if entry.writer != self.writer {
            // Its writer published its previous entry's files before appending this one.
            self.unpublished.remove(&entry.writer);
        }
        if let Action::Commit { files, ranges, .. } = &entry.action {
            let to_publish = !files.is_empty() || (self.table.is_some() && !ranges.is_empty());
            if entry.writer != self.writer && to_publish {
                let unpublished = Unpublished {
                    seq: entry.seq,
                    ranges: ranges.clone(),
                    files: files.clone(),
                };
                self.unpublished.insert(entry.writer.clone(), unpublished);
            }
            self.note_time_partitions(files, false);
        }
        self.state.apply(&entry);
    }
}
