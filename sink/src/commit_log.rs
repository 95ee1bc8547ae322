//! The commit log of one dataset: which files are data, and which Kafka offsets they hold.
//!
//! Everything lives next to the data, under the dataset root:
//!
//! ```text
//! _weir/log/00000000000000000042.json        one entry per claim or commit
//! _weir/snapshots/00000000000000000100.json  the state after an entry, so start-up reads little
//! _weir/staging/<writer>-000007.parquet.pending   written, not yet committed
//! _weir/state/<writer>-000003.arrow          open windows' partial aggregates (windowed datasets)
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use weir_schemas::PartitionKey;

use crate::WrittenFile;
use crate::time_partitions::TimeGranularity;

/// Directory under the dataset root that holds weir's own objects.
pub const WEIR_DIR: &str = "_weir";
const FORMAT_VERSION: u32 = 1;
/// A snapshot of the state is written after every this many entries.
pub const SNAPSHOT_EVERY: u64 = 100;
/// Entries one pruning deletes at most, so that a log with a long history (kept by an earlier
/// version, or a retention just shortened) is trimmed over many commits, none of them slow.
const PRUNE_AT_MOST: usize = 1000;
/// Files moved (or checked) at once when publishing.
const PUBLISH_CONCURRENCY: usize = 16;
/// Attempts at one storage call of the log before its error is returned. HTTP stores retry
/// transient errors themselves first (object_store's retry with backoff and jitter).
const ATTEMPTS: u32 = 4;

/// Kafka offsets `from..to` (end exclusive) of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    #[serde(flatten)]
    pub partition: PartitionKey,
    pub from: i64,
    pub to: i64,
}

/// A partition's event-time watermark as the committing instance saw it, and the highest
/// event time it had read from the partition (epoch milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWatermark {
    pub watermark_ms: i64,
    pub max_event_ms: i64,
}

/// [`PartitionWatermark`] of one partition, as recorded in a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedWatermark {
    #[serde(flatten)]
    pub partition: PartitionKey,
    #[serde(flatten)]
    pub watermark: PartitionWatermark,
}

/// The window state a commit of a windowed dataset leaves: it replaces the state of every
/// listed partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStateRef {
    /// The Arrow IPC file of the open windows' partial aggregates, relative to the dataset
    /// root; `None` when no window was open.
    pub path: Option<String>,
    pub partitions: Vec<EmittedWatermark>,
}

/// Up to which watermark the windows holding a partition's events were emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmittedWatermark {
    #[serde(flatten)]
    pub partition: PartitionKey,
    pub emitted_ms: Option<i64>,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    pub seq: u64,
    /// Unique per entry, so a writer whose put timed out can tell whether it landed.
    pub id: String,
    pub writer: String,
    pub written_at: String,
    #[serde(flatten)]
    pub action: Action,
}

impl Entry {
    /// The partitions a commit writes for (its ranges and watermarks): only their owner may.
    pub fn touched_partitions(&self) -> std::collections::BTreeSet<&PartitionKey> {
        match &self.action {
            Action::Claim { .. } => Default::default(),
            Action::Commit {
                ranges,
                watermarks,
                window_state,
                ..
            } => ranges
                .iter()
                .map(|r| &r.partition)
                .chain(watermarks.iter().map(|w| &w.partition))
                .chain(
                    window_state
                        .iter()
                        .flat_map(|s| s.partitions.iter().map(|p| &p.partition)),
                )
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The writer owns these partitions from now on.
    Claim { partitions: Vec<PartitionKey> },
    /// The files hold exactly the rows derived from these offset ranges.
    Commit {
        ranges: Vec<OffsetRange>,
        files: Vec<WrittenFile>,
        /// The event-time watermarks the commit covers, for the writer's partitions.
        #[serde(default)]
        watermarks: Vec<RecordedWatermark>,
        /// Windowed datasets: the open windows after this commit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_state: Option<WindowStateRef>,
    },
}

/// What the log says about one Kafka partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Where the next commit continues: the end of the last committed range.
    pub next_offset: Option<i64>,
    /// Writer of the latest claim.
    pub owner: Option<String>,
    /// Sequence number of the latest claim.
    pub claimed_at: Option<u64>,
    /// Sequence number and time of the latest commit.
    pub last_commit: Option<u64>,
    pub committed_at: Option<String>,
    /// The committed event-time watermark, epoch milliseconds; only moves forward.
    pub watermark_ms: Option<i64>,
    /// The highest event time committed.
    pub max_event_ms: Option<i64>,
    /// Windowed datasets: the file holding the partition's open windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_state: Option<String>,
    /// Windowed datasets: the watermark up to which the partition's windows were emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_ms: Option<i64>,
}

/// Why an entry may not follow the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The committing writer does not hold the partition's latest claim.
    NotOwner {
        partition: PartitionKey,
        owner: Option<String>,
        claimed_at: Option<u64>,
    },
    /// The range does not start where the previous one ended (a gap or an overlap).
    Discontinuous {
        partition: PartitionKey,
        from: i64,
        expected: i64,
    },
    /// An empty or reversed range.
    EmptyRange {
        partition: PartitionKey,
        from: i64,
        to: i64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotOwner {
                partition,
                owner: Some(owner),
                claimed_at: Some(seq),
            } => write!(f, "{partition} was claimed by {owner} at entry {seq}"),
            Violation::NotOwner { partition, .. } => write!(f, "{partition} was never claimed"),
            Violation::Discontinuous {
                partition,
                from,
                expected,
            } => {
                let what = if from < expected { "overlap" } else { "gap" };
                write!(
                    f,
                    "{partition}: range starts at offset {from} but the previous one ended at {expected} ({what})"
                )
            }
            Violation::EmptyRange {
                partition,
                from,
                to,
            } => write!(f, "{partition}: empty range {from}..{to}"),
        }
    }
}

/// The state the log's entries add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    /// The sequence number the next entry gets.
    pub next_seq: u64,
    pub partitions: BTreeMap<PartitionKey, PartitionState>,
}

impl LogState {
    /// The dataset's committed watermark: the lowest over its partitions.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter_map(|p| p.watermark_ms)
            .min()
    }

    /// The window state files some partition still needs.
    pub fn window_state_files(&self) -> std::collections::BTreeSet<&str> {
        self.partitions
            .values()
            .filter_map(|p| p.window_state.as_deref())
            .collect()
    }

    /// Whether `entry` may follow this state.
    pub fn check(&self, entry: &Entry) -> Result<(), Vec<Violation>> {
        let Action::Commit { ranges, .. } = &entry.action else {
            return Ok(());
        };
        let mut violations = Vec::new();
        for partition in entry.touched_partitions() {
            let state = self.partitions.get(partition);
            let owner = state.and_then(|s| s.owner.clone());
            if owner.as_deref() != Some(entry.writer.as_str()) {
                violations.push(Violation::NotOwner {
                    partition: partition.clone(),
                    owner,
                    claimed_at: state.and_then(|s| s.claimed_at),
                });
            }
        }
        for range in ranges {
            let state = self.partitions.get(&range.partition);
            if range.to <= range.from {
                violations.push(Violation::EmptyRange {
                    partition: range.partition.clone(),
                    from: range.from,
                    to: range.to,
                });
            }
            if let Some(expected) = state.and_then(|s| s.next_offset)
                && expected != range.from
            {
                violations.push(Violation::Discontinuous {
                    partition: range.partition.clone(),
                    from: range.from,
                    expected,
                });
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Adds `entry` to the state.
    pub fn apply(&mut self, entry: &Entry) {
        self.next_seq = entry.seq + 1;
        match &entry.action {
            Action::Claim { partitions } => {
                for partition in partitions {
                    let state = self.partitions.entry(partition.clone()).or_default();
                    state.owner = Some(entry.writer.clone());
                    state.claimed_at = Some(entry.seq);
                }
            }
            Action::Commit {
                ranges,
                watermarks,
                window_state,
                ..
            } => {
                for emitted in window_state.iter().flat_map(|s| &s.partitions) {
                    let state = self
                        .partitions
                        .entry(emitted.partition.clone())
                        .or_default();
                    state.window_state = window_state.as_ref().and_then(|s| s.path.clone());
                    state.emitted_ms = state.emitted_ms.max(emitted.emitted_ms);
                }
                for range in ranges {
                    let state = self.partitions.entry(range.partition.clone()).or_default();
                    state.next_offset = Some(range.to);
                    state.last_commit = Some(entry.seq);
                    state.committed_at = Some(entry.written_at.clone());
                }
                for recorded in watermarks {
                    let state = self
                        .partitions
                        .entry(recorded.partition.clone())
                        .or_default();
                    let w = recorded.watermark;
                    state.watermark_ms = state.watermark_ms.max(Some(w.watermark_ms));
                    state.max_event_ms = state.max_event_ms.max(Some(w.max_event_ms));
                }
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// The last entry the snapshot includes.
    seq: u64,
    partitions: Vec<SnapshotPartition>,
    /// Time partitions with committed files, not yet marked complete.
    #[serde(default)]
    incomplete: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPartition {
    #[serde(flatten)]
    partition: PartitionKey,
    #[serde(flatten)]
    state: PartitionState,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("dataset `{dataset}`: cannot {action} {path}: {source}")]
    Store {
        dataset: String,
        action: &'static str,
        path: String,
        source: Box<object_store::Error>,
    },
    #[error("dataset `{dataset}`: {path} is not a valid commit log object: {reason}")]
    Corrupt {
        dataset: String,
        path: String,
        reason: String,
    },
    #[error(
        "dataset `{dataset}`: commit refused, this instance no longer owns its partitions: {}; \
         its uncommitted rows are dropped and read again by the owner",
        join(violations)
    )]
    Fenced {
        dataset: String,
        violations: Vec<Violation>,
    },
    #[error(
        "dataset `{dataset}`: commit would break the log: {}",
        join(violations)
    )]
    Invalid {
        dataset: String,
        violations: Vec<Violation>,
    },
    #[error(
        "dataset `{dataset}`: the object store let an object be created twice; weir's commit \
         log needs conditional writes (create only if absent: If-None-Match on S3) to order and \
         fence commits"
    )]
    NoConditionalPut { dataset: String },
    #[error(
        "dataset `{dataset}`: committed file {path} is missing, and so is its staged copy {staging}"
    )]
    MissingFile {
        dataset: String,
        path: String,
        staging: String,
    },
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A dataset's commit log, as one writer sees and appends to it.
pub struct CommitLog {
    dataset: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
    writer: String,
    state: LogState,
    /// The claim entry this writer made for each partition it owns.
    claims: HashMap<PartitionKey, u64>,
    /// Files of entries read from the log that may not have been moved to their final name.
    unpublished: Vec<WrittenFile>,
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
}

impl CommitLog {
    /// Rows this writer committed to time partitions already marked complete, since it opened
    /// the log.
    pub fn late_rows(&self) -> u64 {
        self.late_rows
    }

    /// Opens the log of the dataset at `root` for `writer`, a name unique to this process,
    /// and finishes publishing the files of commits whose writer stopped half-way.
    /// Entries older than `retention` that a snapshot replaces are deleted as snapshots are
    /// written (`None`: never).
    pub async fn open(
        dataset: &str,
        store: Arc<dyn ObjectStore>,
        root: Path,
        writer: &str,
        time_partitions: Option<TimeGranularity>,
        retention: Option<Duration>,
    ) -> Result<Self, LogError> {
        let mut log = Self::unread(dataset, store, root, writer);
        log.time_partitions = time_partitions;
        log.retention = retention;
        log.check_conditional_put().await?;
        log.load_snapshot().await?;
        log.refresh().await?;
        log.check_start().await?;
        log.publish_unpublished().await?;
        log.mark_complete().await;
        Ok(log)
    }

    /// Creates a probe object twice: a store that lets the second create overwrite the first
    /// (some S3-compatible servers ignore `If-None-Match`) cannot order or fence commits.
    async fn check_conditional_put(&self) -> Result<(), LogError> {
        let probe = self
            .root
            .clone()
            .join(WEIR_DIR)
            .join("probes")
            .join(format!("{}.json", uuid::Uuid::new_v4().simple()));
        let create = || PutOptions::from(PutMode::Create);
        self.store
            .put_opts(&probe, PutPayload::from_static(b"{}"), create())
            .await
            .map_err(|source| self.store_error("create", &probe, source))?;
        let second = self
            .store
            .put_opts(&probe, PutPayload::from_static(b"{}"), create())
            .await;
        if let Err(e) = self.store.delete(&probe).await {
            tracing::debug!(path = %probe, error = %e, "could not delete the probe object");
        }
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
                Err(LogError::NoConditionalPut {
                    dataset: self.dataset.clone(),
                })
            }
            Err(source) => Err(self.store_error("create", &probe, source)),
        }
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
            unpublished: Vec::new(),
            time_partitions: None,
            incomplete: Default::default(),
            published_watermark: None,
            late_rows: 0,
            retention: None,
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
    /// names. Refused with [`LogError::Fenced`] when another writer claimed one of the
    /// partitions since this writer did.
    pub async fn commit(
        &mut self,
        ranges: Vec<OffsetRange>,
        files: Vec<WrittenFile>,
        watermarks: Vec<RecordedWatermark>,
        window_state: Option<WindowStateRef>,
    ) -> Result<u64, LogError> {
        let needed: Vec<String> = self
            .state
            .window_state_files()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let seq = self
            .append(Action::Commit {
                ranges,
                files: files.clone(),
                watermarks,
                window_state,
            })
            .await?;
        self.publish(&files).await?;
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
        self.mark_complete().await;
        self.snapshot_if_due(seq).await;
        Ok(seq)
    }

    /// Moves committed files from their staged names to their final names.
    async fn publish(&self, files: &[WrittenFile]) -> Result<(), LogError> {
        futures::stream::iter(files)
            .map(|file| self.publish_file(file))
            .buffer_unordered(PUBLISH_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Deletes staged files older than `grace` whose writer owns no partition any more:
    /// written by an attempt that never committed (a crash, or a refused zombie). A writer
    /// that still owns partitions may be paused, not dead, and commit its files on waking.
    /// Call after [`CommitLog::open`] has published what was committed.
    pub async fn remove_orphans(&self, grace: Duration) -> Result<usize, LogError> {
        let staging = self.root.clone().join(WEIR_DIR).join("staging");
        let cutoff = chrono::Utc::now() - grace;
        let owners: std::collections::HashSet<&str> = self
            .state
            .partitions
            .values()
            .filter_map(|p| p.owner.as_deref())
            .collect();
        let owners = &owners;
        let old: Vec<Path> = self
            .store
            .list(Some(&staging))
            .try_filter_map(|meta| async move {
                // Staged names are `<writer>-<sequence>.parquet.pending`.
                let writer = meta
                    .location
                    .filename()
                    .and_then(|name| name.rsplit_once('-'))
                    .map(|(writer, _)| writer);
                let orphan = meta.last_modified < cutoff
                    && writer.is_none_or(|writer| !owners.contains(writer));
                Ok(orphan.then_some(meta.location))
            })
            .try_collect()
            .await
            .map_err(|source| self.store_error("list", &staging, source))?;
        self.delete_all(&old).await?;
        if !old.is_empty() {
            tracing::info!(dataset = %self.dataset, files = old.len(), "removed uncommitted staged files");
        }
        // Window state files no partition needs: of a commit that failed, or replaced.
        let state_dir = self.root.clone().join(WEIR_DIR).join("state");
        let needed = self.state.window_state_files();
        let needed = &needed;
        let root = &self.root;
        let unneeded: Vec<Path> = self
            .store
            .list(Some(&state_dir))
            .try_filter_map(|meta| async move {
                let relative = relative_to(root, &meta.location);
                let unneeded = meta.last_modified < cutoff && !needed.contains(relative.as_str());
                Ok(unneeded.then_some(meta.location))
            })
            .try_collect()
            .await
            .map_err(|source| self.store_error("list", &state_dir, source))?;
        self.delete_all(&unneeded).await?;
        Ok(old.len())
    }

    async fn delete_all(&self, paths: &[Path]) -> Result<(), LogError> {
        for path in paths {
            match self.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(self.store_error("delete", path, source)),
            }
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
        if let Action::Commit { files, .. } = &entry.action {
            if entry.writer != self.writer {
                self.unpublished.extend(files.iter().cloned());
            }
            self.note_time_partitions(files, false);
        }
        self.state.apply(&entry);
    }

    /// Remembers the time partitions `files` went to, to mark them complete later. Files of
    /// this writer's commit that went to a partition already marked complete are late: that
    /// is said, not done silently.
    fn note_time_partitions(&mut self, files: &[WrittenFile], own: bool) {
        let Some(granularity) = self.time_partitions else {
            return;
        };
        for file in files {
            let Some(bucket) = granularity.bucket(&file.partition) else {
                continue;
            };
            let end = granularity.end_ms(&bucket);
            if own && end.is_some() && end <= self.published_watermark {
                self.late_rows += file.rows;
                tracing::warn!(
                    dataset = %self.dataset,
                    partition = %bucket,
                    rows = file.rows,
                    "late rows written to a time partition already marked complete"
                );
            }
            self.incomplete.insert(bucket);
        }
    }

    /// Writes `_SUCCESS` into every time partition the committed watermark has passed the
    /// end of, and the watermark itself to `_weir/watermark.json`, for schedulers to wait on.
    /// A failed write is retried at the next commit.
    async fn mark_complete(&mut self) {
        let Some(watermark) = self.state.watermark_ms() else {
            return;
        };
        if let Some(granularity) = self.time_partitions {
            let complete: Vec<String> = self
                .incomplete
                .iter()
                .filter(|b| granularity.end_ms(b).is_some_and(|end| end <= watermark))
                .cloned()
                .collect();
            for bucket in complete {
                let marker = match under(&self.root, &bucket) {
                    Ok(dir) => dir.join("_SUCCESS"),
                    Err(_) => {
                        self.incomplete.remove(&bucket);
                        continue;
                    }
                };
                match self.store.put(&marker, PutPayload::default()).await {
                    Ok(_) => {
                        self.incomplete.remove(&bucket);
                        tracing::debug!(dataset = %self.dataset, partition = %bucket, "time partition complete");
                    }
                    Err(e) => {
                        tracing::warn!(dataset = %self.dataset, %marker, error = %e, "cannot write a completeness marker; retrying at the next commit");
                        return;
                    }
                }
            }
        }
        if self.published_watermark < Some(watermark) {
            let path = self.root.clone().join(WEIR_DIR).join("watermark.json");
            let body = serde_json::json!({
                "watermark_ms": watermark,
                "watermark": chrono::DateTime::from_timestamp_millis(watermark)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                "log_entry": self.state.next_seq.saturating_sub(1),
            });
            match self
                .store
                .put(&path, PutPayload::from(body.to_string()))
                .await
            {
                Ok(_) => self.published_watermark = Some(watermark),
                Err(e) => {
                    tracing::warn!(dataset = %self.dataset, error = %e, "cannot write the watermark record")
                }
            }
        }
    }

    async fn read_entry(&self, seq: u64) -> Result<Option<Entry>, LogError> {
        let path = entry_path(&self.root, seq);
        let Some(bytes) = self.get(&path).await? else {
            return Ok(None);
        };
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
            dataset: self.dataset.clone(),
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        if entry.seq != seq {
            return Err(LogError::Corrupt {
                dataset: self.dataset.clone(),
                path: path.to_string(),
                reason: format!("it says it is entry {}", entry.seq),
            });
        }
        Ok(Some(entry))
    }

    /// Appends an entry with `action` at the next free sequence number.
    async fn append(&mut self, action: Action) -> Result<u64, LogError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut failures = 0;
        loop {
            // Read what others appended; a put of ours that failed ambiguously may be there.
            while let Some(entry) = self.read_entry(self.state.next_seq).await? {
                let ours = entry.id == id;
                let seq = entry.seq;
                self.take_in(entry);
                if ours {
                    return Ok(seq);
                }
            }
            if self.pruned_past(self.state.next_seq).await? {
                // The entries after what this writer read were pruned while it was not
                // looking: their numbers only look free.
                let behind = self.state.next_seq;
                self.load_snapshot().await?;
                if self.state.next_seq == behind {
                    return Err(LogError::Corrupt {
                        dataset: self.dataset.clone(),
                        path: snapshot_dir(&self.root).to_string(),
                        reason: format!(
                            "a snapshot after entry {behind} is listed but not the latest"
                        ),
                    });
                }
                continue;
            }
            let entry = Entry {
                version: FORMAT_VERSION,
                seq: self.state.next_seq,
                id: id.clone(),
                writer: self.writer.clone(),
                written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                action: action.clone(),
            };
            self.check_own(&entry)?;
            let path = entry_path(&self.root, entry.seq);
            let body = serde_json::to_vec_pretty(&entry).expect("entries serialize");
            let put = self
                .store
                .put_opts(
                    &path,
                    PutPayload::from(body),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => {
                    self.state.apply(&entry);
                    return Ok(entry.seq);
                }
                // Another writer took this number: read it and try the next one.
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(source) => {
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(self.store_error("create", &path, source));
                    }
                    tracing::warn!(dataset = %self.dataset, %path, error = %source, "commit log write failed, retrying");
                    backoff(failures).await;
                }
            }
        }
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

    async fn publish_file(&self, file: &WrittenFile) -> Result<(), LogError> {
        let corrupt = |e: object_store::path::Error| LogError::Corrupt {
            dataset: self.dataset.clone(),
            path: file.path.clone(),
            reason: e.to_string(),
        };
        let staging = under(&self.root, &file.staging).map_err(corrupt)?;
        let target = under(&self.root, &file.path).map_err(corrupt)?;
        let moved = self
            .retrying("publish", &target, || async {
                match self.store.rename(&staging, &target).await {
                    Ok(()) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        if moved {
            return Ok(());
        }
        // Moved already, by an earlier attempt or another instance recovering.
        match self.store.head(&target).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(LogError::MissingFile {
                dataset: self.dataset.clone(),
                path: file.path.clone(),
                staging: file.staging.clone(),
            }),
            Err(source) => Err(self.store_error("check", &target, source)),
        }
    }

    async fn publish_unpublished(&mut self) -> Result<(), LogError> {
        if self.unpublished.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.unpublished);
        let results: Vec<Result<(), LogError>> = futures::stream::iter(&files)
            .map(|file| self.publish_file(file))
            .buffer_unordered(PUBLISH_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            match result {
                // Lost for good: say so loudly (`weir verify` reports it too), but do not
                // stop every later start of the dataset for it.
                Err(e @ LogError::MissingFile { .. }) => {
                    tracing::error!(error = %e, "committed file lost")
                }
                Err(e) => {
                    self.unpublished = files;
                    return Err(e);
                }
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// The snapshots, by the last entry each includes.
    async fn snapshots(&self) -> Result<BTreeMap<u64, object_store::ObjectMeta>, LogError> {
        let dir = snapshot_dir(&self.root);
        list_numbered(self.store.as_ref(), &dir)
            .await
            .map_err(|source| self.store_error("list", &dir, source))
    }

    /// Whether a snapshot at or after entry `seq` exists, which means that `seq` was pruned.
    async fn pruned_past(&self, seq: u64) -> Result<bool, LogError> {
        let dir = snapshot_dir(&self.root);
        let found: Vec<u64> = self
            .retrying("list", &dir, || {
                let listed = match seq.checked_sub(1) {
                    Some(before) => self
                        .store
                        .list_with_offset(Some(&dir), &snapshot_path(&self.root, before)),
                    None => self.store.list(Some(&dir)),
                };
                listed
                    .try_filter_map(|meta| async move { Ok(seq_of(&meta.location)) })
                    .try_collect()
            })
            .await?;
        Ok(found.into_iter().any(|s| s >= seq))
    }

    /// Fails when the log has entries but neither its first entry nor a snapshot: its start
    /// was deleted (by hand, or a lifecycle rule), and nothing says what it held.
    async fn check_start(&mut self) -> Result<(), LogError> {
        if self.state.next_seq > 0 {
            return Ok(());
        }
        let dir = self.root.clone().join(WEIR_DIR).join("log");
        if let Some(found) = self.store.list(Some(&dir)).next().await {
            let found = found.map_err(|source| self.store_error("list", &dir, source))?;
            // Another instance may have just written the first entry of a new log.
            self.load_snapshot().await?;
            self.refresh().await?;
            if self.state.next_seq > 0 {
                return Ok(());
            }
            return Err(LogError::Corrupt {
                dataset: self.dataset.clone(),
                path: found.location.to_string(),
                reason: "the log's first entry and every snapshot are missing; entries and \
                         snapshots under _weir/ must not be deleted by hand or by lifecycle rules"
                    .into(),
            });
        }
        Ok(())
    }

    /// Starts from the latest snapshot, if it is ahead of what this writer has read.
    async fn load_snapshot(&mut self) -> Result<(), LogError> {
        let Some(latest) = self.snapshots().await?.into_keys().next_back() else {
            return Ok(());
        };
        if latest < self.state.next_seq {
            return Ok(());
        }
        let path = snapshot_path(&self.root, latest);
        // Pruning never deletes the latest snapshot.
        let Some(bytes) = self.get(&path).await? else {
            return Err(LogError::Corrupt {
                dataset: self.dataset.clone(),
                path: path.to_string(),
                reason: "it was listed, then it was gone".into(),
            });
        };
        let (state, incomplete) = parse_snapshot(&self.dataset, &path, &bytes)?;
        self.state = state;
        self.incomplete = incomplete.into_iter().collect();
        Ok(())
    }

    /// Writes the state after entry `seq`, this writer's latest, every `SNAPSHOT_EVERY`
    /// entries. Every file committed up to it must be published first (this writer's own
    /// included), since a reader starting from the snapshot does not look at older entries.
    /// Failing to write one is only logged: the entries it would replace stay until a later
    /// snapshot does.
    async fn snapshot_if_due(&mut self, seq: u64) {
        if seq == 0 || !seq.is_multiple_of(SNAPSHOT_EVERY) || self.state.next_seq != seq + 1 {
            return;
        }
        if let Err(e) = self.write_snapshot(seq).await {
            tracing::warn!(dataset = %self.dataset, error = %e, "could not write a commit log snapshot");
            return;
        }
        if let Some(retention) = self.retention
            && let Err(e) = self.prune(retention).await
        {
            tracing::warn!(dataset = %self.dataset, error = %e, "could not prune the commit log");
        }
    }

    /// Deletes the entries up to the newest snapshot older than `retention` (measured on the
    /// store's clock, against the snapshot just written), at most [`PRUNE_AT_MOST`] of them,
    /// up to a snapshot; then the snapshots before it. Entries first: a crash half-way leaves
    /// a snapshot to start from, and the next pruning lists what is left.
    async fn prune(&self, retention: Duration) -> Result<(), LogError> {
        let snapshots = self.snapshots().await?;
        let Some(cutoff) = snapshots.values().next_back().and_then(|latest| {
            let retention = chrono::TimeDelta::from_std(retention).ok()?;
            latest.last_modified.checked_sub_signed(retention)
        }) else {
            return Ok(());
        };
        let candidates: Vec<u64> = snapshots
            .iter()
            .filter(|(_, meta)| meta.last_modified <= cutoff)
            .map(|(seq, _)| *seq)
            .collect();
        let Some(&first_candidate) = candidates.first() else {
            return Ok(());
        };
        let dir = self.root.clone().join(WEIR_DIR).join("log");
        let entries = list_numbered(self.store.as_ref(), &dir)
            .await
            .map_err(|source| self.store_error("list", &dir, source))?;
        let up_to = |cut: u64| entries.range(..=cut).count();
        // Up to the latest snapshot within the bound; when even the first is beyond it, the
        // oldest entries within the bound, and no snapshot yet.
        let cut = candidates
            .iter()
            .rev()
            .find(|cut| up_to(**cut) <= PRUNE_AT_MOST)
            .copied();
        let count = match cut {
            Some(cut) => up_to(cut),
            None => up_to(first_candidate).min(PRUNE_AT_MOST),
        };
        let pruned: Vec<Path> = entries
            .values()
            .take(count)
            .map(|meta| meta.location.clone())
            .collect();
        self.delete_many(pruned).await?;
        if let Some(cut) = cut {
            let replaced: Vec<Path> = snapshots
                .range(..cut)
                .map(|(_, meta)| meta.location.clone())
                .collect();
            self.delete_many(replaced).await?;
        }
        if count > 0 {
            tracing::debug!(dataset = %self.dataset, entries = count, "pruned the commit log");
        }
        Ok(())
    }

    /// Deletes `paths`, in batches where the store has them (S3's DeleteObjects).
    async fn delete_many(&self, paths: Vec<Path>) -> Result<(), LogError> {
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    let dir = self.root.clone().join(WEIR_DIR);
                    return Err(self.store_error("delete under", &dir, source));
                }
            }
        }
        Ok(())
    }

    async fn write_snapshot(&mut self, seq: u64) -> Result<(), LogError> {
        self.publish_unpublished().await?;
        let snapshot = Snapshot {
            version: FORMAT_VERSION,
            seq,
            partitions: self
                .state
                .partitions
                .iter()
                .map(|(partition, state)| SnapshotPartition {
                    partition: partition.clone(),
                    state: state.clone(),
                })
                .collect(),
            incomplete: self.incomplete.iter().cloned().collect(),
        };
        let path = snapshot_path(&self.root, seq);
        let body = serde_json::to_vec(&snapshot).expect("snapshots serialize");
        // Created, never replaced: a snapshot describes the entries it follows, and one
        // written already (by a retry whose answer was lost) says the same.
        let create = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(&path, PutPayload::from(body), create)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(source) => Err(self.store_error("write", &path, source)),
        }
    }

    /// Reads an object, retrying transient errors; `None` if it does not exist.
    async fn get(&self, path: &Path) -> Result<Option<bytes::Bytes>, LogError> {
        self.retrying("read", path, || async {
            let read = match self.store.get(path).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(bytes) => Ok(Some(bytes)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Runs a storage call, again after a transient error, [`ATTEMPTS`] times at most.
    async fn retrying<T, Call>(
        &self,
        action: &'static str,
        path: &Path,
        mut call: impl FnMut() -> Call,
    ) -> Result<T, LogError>
    where
        Call: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        let mut failures = 0;
        loop {
            match call().await {
                Ok(done) => return Ok(done),
                Err(source) => {
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(self.store_error(action, path, source));
                    }
                    backoff(failures).await;
                }
            }
        }
    }

    fn store_error(
        &self,
        action: &'static str,
        path: &Path,
        source: object_store::Error,
    ) -> LogError {
        LogError::Store {
            dataset: self.dataset.clone(),
            action,
            path: path.to_string(),
            source: Box::new(source),
        }
    }
}

/// The entry number a log entry or a snapshot is named after (`<20 digits>.json`).
fn seq_of(path: &Path) -> Option<u64> {
    let digits = path.filename()?.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn snapshot_dir(root: &Path) -> Path {
    root.clone().join(WEIR_DIR).join("snapshots")
}

fn snapshot_path(root: &Path, seq: u64) -> Path {
    snapshot_dir(root).join(format!("{seq:020}.json"))
}

/// A snapshot's state, and its time partitions not marked complete yet.
fn parse_snapshot(
    dataset: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<(LogState, Vec<String>), LogError> {
    let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(|e| LogError::Corrupt {
        dataset: dataset.to_owned(),
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let state = LogState {
        next_seq: snapshot.seq + 1,
        partitions: snapshot
            .partitions
            .into_iter()
            .map(|p| (p.partition, p.state))
            .collect(),
    };
    Ok((state, snapshot.incomplete))
}

/// The state the snapshot that includes entry `seq` holds, if there is one.
pub(crate) async fn snapshot_state(
    dataset: &str,
    store: Arc<dyn ObjectStore>,
    root: &Path,
    seq: u64,
) -> Result<Option<LogState>, LogError> {
    let path = snapshot_path(root, seq);
    let reader = CommitLog::unread(dataset, store, root.clone(), "");
    let Some(bytes) = reader.get(&path).await? else {
        return Ok(None);
    };
    Ok(Some(parse_snapshot(dataset, &path, &bytes)?.0))
}

/// The objects under `dir` named after an entry number (log entries, snapshots), by number.
pub(crate) async fn list_numbered(
    store: &dyn ObjectStore,
    dir: &Path,
) -> Result<BTreeMap<u64, object_store::ObjectMeta>, object_store::Error> {
    store
        .list(Some(dir))
        .try_filter_map(|meta| async move { Ok(seq_of(&meta.location).map(|seq| (seq, meta))) })
        .try_collect()
        .await
}

/// The path of entry `seq` under a dataset root.
pub fn entry_path(root: &Path, seq: u64) -> Path {
    root.clone()
        .join(WEIR_DIR)
        .join("log")
        .join(format!("{seq:020}.json"))
}

/// Waits before retry number `failures`: exponential, with full jitter so that instances
/// failing together do not retry together.
async fn backoff(failures: u32) {
    let ceiling = Duration::from_millis(100 << failures.min(6));
    tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
}

/// `relative` (an encoded path as recorded in the log) under `root`.
pub fn under(root: &Path, relative: &str) -> Result<Path, object_store::path::Error> {
    let relative = Path::parse(relative)?;
    Ok(root.parts().chain(relative.parts()).collect())
}

/// `path` relative to `root`, as the log records paths.
fn relative_to(root: &Path, path: &Path) -> String {
    path.parts()
        .skip(root.parts().count())
        .map(|part| part.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimeGranularity;
    use crate::testing::{Fault, FaultyStore};
    use object_store::local::LocalFileSystem;

    fn p(n: i32) -> PartitionKey {
        PartitionKey::new("t", n)
    }

    fn range(n: i32, from: i64, to: i64) -> OffsetRange {
        OffsetRange {
            partition: p(n),
            from,
            to,
        }
    }

    fn local(dir: &tempfile::TempDir) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap())
    }

    async fn open(store: &Arc<dyn ObjectStore>, writer: &str) -> CommitLog {
        CommitLog::open("t", store.clone(), Path::default(), writer, None, None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_claim_fences_the_previous_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut zombie = open(&store, "zombie").await;
        assert_eq!(zombie.claim(&[p(0), p(1)]).await.unwrap(), vec![None, None]);
        zombie
            .commit(vec![range(0, 0, 10)], vec![], vec![], None)
            .await
            .unwrap();
        // The group moved partition 0 to another instance while the zombie was paused.
        let mut owner = open(&store, "owner").await;
        assert_eq!(owner.claim(&[p(0)]).await.unwrap(), vec![Some(10)]);
        let refused = zombie
            .commit(vec![range(0, 10, 20), range(1, 0, 5)], vec![], vec![], None)
            .await
            .unwrap_err();
        assert!(matches!(refused, LogError::Fenced { .. }), "{refused}");
        assert!(
            refused
                .to_string()
                .contains("t/0 was claimed by owner at entry 2"),
            "{refused}"
        );
        owner
            .commit(vec![range(0, 10, 20)], vec![], vec![], None)
            .await
            .unwrap();
        // Partition 1 is still the zombie's; a commit for it alone goes through.
        zombie
            .commit(vec![range(1, 0, 5)], vec![], vec![], None)
            .await
            .unwrap();
        let fresh = open(&store, "reader").await;
        assert_eq!(fresh.next_offset(&p(0)), Some(20));
        assert_eq!(fresh.next_offset(&p(1)), Some(5));
        assert_eq!(fresh.state().next_seq, 5);
    }

    #[tokio::test]
    async fn a_claim_belongs_to_its_entry_not_only_to_the_writer_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut first = open(&store, "a").await;
        first.claim(&[p(0)]).await.unwrap();
        // Another log object under the same name claims again: the first one's claim is gone.
        let mut second = open(&store, "a").await;
        second.claim(&[p(0)]).await.unwrap();
        let refused = first
            .commit(vec![range(0, 0, 1)], vec![], vec![], None)
            .await;
        assert!(
            matches!(refused, Err(LogError::Fenced { .. })),
            "{refused:?}"
        );
        second
            .commit(vec![range(0, 0, 1)], vec![], vec![], None)
            .await
            .unwrap();
    }

    fn watermark(n: i32, watermark_ms: i64) -> RecordedWatermark {
        RecordedWatermark {
            partition: p(n),
            watermark: PartitionWatermark {
                watermark_ms,
                max_event_ms: watermark_ms + 30_000,
            },
        }
    }

    #[tokio::test]
    async fn the_dataset_watermark_is_the_lowest_partition_one_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut log = open(&store, "w").await;
        log.claim(&[p(0), p(1)]).await.unwrap();
        let both = vec![watermark(0, 5_000), watermark(1, 2_000)];
        log.commit(vec![range(0, 0, 1)], vec![], both, None)
            .await
            .unwrap();
        assert_eq!(log.state().watermark_ms(), Some(2_000));
        // A lower value (an instance with a larger out-of-orderness) does not move it back.
        let lower = vec![watermark(0, 9_000), watermark(1, 1_000)];
        log.commit(vec![range(0, 1, 2)], vec![], lower, None)
            .await
            .unwrap();
        let state = open(&store, "reader").await.state().clone();
        assert_eq!(state.watermark_ms(), Some(2_000));
        assert_eq!(state.partitions[&p(0)].watermark_ms, Some(9_000));
        assert_eq!(state.partitions[&p(0)].max_event_ms, Some(39_000));
        // Only the owner may move a partition's watermark.
        let mut other = open(&store, "other").await;
        other.claim(&[p(2)]).await.unwrap();
        let refused = other
            .commit(
                vec![range(2, 0, 1)],
                vec![],
                vec![watermark(1, 50_000)],
                None,
            )
            .await;
        assert!(
            matches!(refused, Err(LogError::Fenced { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn time_partitions_are_marked_complete_once_the_watermark_passes_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let hour = Some(TimeGranularity::Hour);
        let mut log = CommitLog::open("t", store.clone(), Path::default(), "w", hour, None)
            .await
            .unwrap();
        log.claim(&[p(0)]).await.unwrap();
        let file = |n: u32, partition: &str| {
            let staging = format!("_weir/staging/w-{n:06}.parquet.pending");
            std::fs::create_dir_all(dir.path().join("_weir/staging")).unwrap();
            std::fs::write(dir.path().join(&staging), b"x").unwrap();
            WrittenFile {
                path: format!("{partition}/part-w-{n:06}.parquet"),
                staging,
                partition: partition.into(),
                rows: 1,
                bytes: 1,
            }
        };
        let ten = "dt=2026-11-25/hour=10";
        let eleven = "dt=2026-11-25/hour=11";
        let at = |h: i64, m: i64| 1_795_564_800_000 + (h * 60 + m) * 60_000; // 2026-11-25
        let marker = |bucket: &str| dir.path().join(bucket).join("_SUCCESS").exists();
        let files = vec![file(1, ten), file(2, &format!("{eleven}/country=NL"))];
        let wm = vec![watermark(0, at(10, 59))];
        log.commit(vec![range(0, 0, 2)], files, wm, None)
            .await
            .unwrap();
        assert!(!marker(ten) && !marker(eleven));
        // The watermark reaches the end of hour 10 exactly: hour 10 is complete.
        let wm = vec![watermark(0, at(11, 0))];
        log.commit(vec![range(0, 2, 3)], vec![], wm, None)
            .await
            .unwrap();
        assert!(marker(ten) && !marker(eleven));
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("_weir/watermark.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record["watermark_ms"], at(11, 0));
        assert_eq!(record["watermark"], "2026-11-25T11:00:00.000Z");
        // A new writer finds hour 11 still to be marked in the log and marks it when due.
        let mut next = CommitLog::open("t", store, Path::default(), "next", hour, None)
            .await
            .unwrap();
        next.claim(&[p(0)]).await.unwrap();
        assert!(!marker(eleven));
        let wm = vec![watermark(0, at(12, 5))];
        next.commit(vec![range(0, 3, 4)], vec![], wm, None)
            .await
            .unwrap();
        assert!(marker(eleven));
    }

    #[tokio::test]
    async fn racing_writers_get_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut a = open(&store, "a").await;
        let mut b = open(&store, "b").await;
        a.claim(&[p(0)]).await.unwrap();
        b.claim(&[p(1)]).await.unwrap();
        let mut seqs = Vec::new();
        for round in 0..20 {
            let (x, y) = tokio::join!(
                a.commit(vec![range(0, round, round + 1)], vec![], vec![], None),
                b.commit(vec![range(1, round, round + 1)], vec![], vec![], None),
            );
            seqs.push(x.unwrap());
            seqs.push(y.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (2..42).collect::<Vec<u64>>());
        let report = crate::verify::verify("t", store, &Path::default())
            .await
            .unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.commits, 40);
    }

    #[tokio::test]
    async fn a_put_whose_answer_was_lost_is_found_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStore::new(local(&dir)));
        let store: Arc<dyn ObjectStore> = faulty.clone();
        let mut log = open(&store, "w").await;
        // The claim lands but its writer hears an error; then a plain failure.
        faulty.inject(vec![Fault::After("put"), Fault::Before("put")]);
        log.claim(&[p(0)]).await.unwrap_or_else(|e| panic!("{e}"));
        log.commit(vec![range(0, 0, 3)], vec![], vec![], None)
            .await
            .unwrap();
        let fresh = open(&store, "reader").await;
        assert_eq!(
            fresh.state().next_seq,
            2,
            "one claim and one commit, no repeat"
        );
        assert_eq!(fresh.next_offset(&p(0)), Some(3));
    }

    #[tokio::test]
    async fn a_persistent_storage_failure_is_an_error_naming_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStore::new(local(&dir)));
        let store: Arc<dyn ObjectStore> = faulty.clone();
        let mut log = open(&store, "w").await;
        faulty.inject(vec![Fault::Before("put"); 10]);
        let error = log.claim(&[p(0)]).await.unwrap_err().to_string();
        assert!(
            error.contains("cannot create _weir/log/00000000000000000000.json"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_store_that_overwrites_on_create_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStore::new(local(&dir)));
        faulty.ignore_conditional_puts();
        let store: Arc<dyn ObjectStore> = faulty;
        let error = CommitLog::open("t", store, Path::default(), "w", None, None)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(error, LogError::NoConditionalPut { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("If-None-Match"), "{error}");
    }

    #[tokio::test]
    async fn snapshots_let_a_reader_start_late_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut log = open(&store, "w").await;
        log.claim(&[p(0)]).await.unwrap();
        for i in 0..SNAPSHOT_EVERY as i64 + 5 {
            log.commit(vec![range(0, i, i + 1)], vec![], vec![], None)
                .await
                .unwrap();
        }
        // Without the early entries, the snapshot alone says where partition 0 continues.
        for seq in 0..SNAPSHOT_EVERY {
            store
                .delete(&entry_path(&Path::default(), seq))
                .await
                .unwrap();
        }
        let fresh = open(&store, "reader").await;
        assert_eq!(fresh.next_offset(&p(0)), Some(SNAPSHOT_EVERY as i64 + 5));
        assert_eq!(fresh.state().next_seq, SNAPSHOT_EVERY + 6);
    }

    #[tokio::test]
    async fn window_state_follows_its_partitions_and_replaced_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut log = open(&store, "a").await;
        log.claim(&[p(0), p(1)]).await.unwrap();
        let state = |path: &str, emitted: i64| {
            let path = format!("_weir/state/{path}");
            let file = Path::from(path.as_str());
            (file, path, emitted)
        };
        let commit_state = async |log: &mut CommitLog, (file, path, emitted), from: i64| {
            store
                .put(&file, PutPayload::from_static(b"state"))
                .await
                .unwrap();
            let partitions = [p(0), p(1)]
                .into_iter()
                .map(|partition| EmittedWatermark {
                    partition,
                    emitted_ms: Some(emitted),
                })
                .collect();
            let window_state = WindowStateRef {
                path: Some(path),
                partitions,
            };
            log.commit(
                vec![range(0, from, from + 1)],
                vec![],
                vec![],
                Some(window_state),
            )
            .await
            .unwrap();
        };
        let first = state("a-1.arrow", 1_000);
        let first_file = first.0.clone();
        commit_state(&mut log, first, 0).await;
        let second = state("a-2.arrow", 2_000);
        commit_state(&mut log, second, 1).await;
        // Partition 1 had no offsets in either commit, yet its state moved on with them.
        for partition in [p(0), p(1)] {
            let s = &log.state().partitions[&partition];
            assert_eq!(s.window_state.as_deref(), Some("_weir/state/a-2.arrow"));
            assert_eq!(s.emitted_ms, Some(2_000));
        }
        assert!(matches!(
            store.head(&first_file).await,
            Err(object_store::Error::NotFound { .. })
        ));
        // Another instance takes partition 1 over: the reference stays until it commits.
        let mut b = open(&store, "b").await;
        b.claim(&[p(1)]).await.unwrap();
        b.commit(
            vec![range(1, 0, 1)],
            vec![],
            vec![],
            Some(WindowStateRef {
                path: None,
                partitions: vec![EmittedWatermark {
                    partition: p(1),
                    emitted_ms: Some(3_000),
                }],
            }),
        )
        .await
        .unwrap();
        let s = &b.state().partitions[&p(1)];
        assert_eq!(
            (s.window_state.as_deref(), s.emitted_ms),
            (None, Some(3_000))
        );
        assert_eq!(
            b.state()
                .window_state_files()
                .into_iter()
                .collect::<Vec<_>>(),
            ["_weir/state/a-2.arrow"],
            "partition 0 still needs it"
        );
        // The zombie's state commit for partition 1 is refused.
        let refused = log
            .commit(
                vec![range(0, 2, 3)],
                vec![],
                vec![],
                Some(WindowStateRef {
                    path: None,
                    partitions: vec![EmittedWatermark {
                        partition: p(1),
                        emitted_ms: Some(4_000),
                    }],
                }),
            )
            .await;
        assert!(
            matches!(refused, Err(LogError::Fenced { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn opening_the_log_publishes_files_a_dead_writer_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let staged = Path::from("_weir/staging/dead-000001.parquet.pending");
        store
            .put(&staged, PutPayload::from_static(b"data"))
            .await
            .unwrap();
        let file = WrittenFile {
            path: "dt=2026-11-25/part-dead-000001.parquet".into(),
            staging: staged.to_string(),
            partition: "dt=2026-11-25".into(),
            rows: 1,
            bytes: 4,
        };
        let mut dead = open(&store, "dead").await;
        dead.claim(&[p(0)]).await.unwrap();
        // The writer dies after its commit entry, before moving the file.
        dead.commit(vec![range(0, 0, 1)], vec![file.clone()], vec![], None)
            .await
            .unwrap();
        let orphan = Path::from("_weir/staging/dead-000002.parquet.pending");
        store
            .put(&orphan, PutPayload::from_static(b"uncommitted"))
            .await
            .unwrap();
        let mut next = open(&store, "next").await;
        let published = dir.path().join(&file.path);
        assert_eq!(std::fs::read(&published).unwrap(), b"data");
        assert!(!dir.path().join(staged.as_ref()).exists());
        // The uncommitted file stays invisible. It is kept while its writer owns a partition
        // (it may only be paused), and removed once the writer owns none and it is old.
        assert_eq!(next.remove_orphans(Duration::ZERO).await.unwrap(), 0);
        next.claim(&[p(0)]).await.unwrap();
        assert_eq!(
            next.remove_orphans(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(next.remove_orphans(Duration::ZERO).await.unwrap(), 1);
        assert!(!dir.path().join(orphan.as_ref()).exists());
    }

    /// The names of the objects under `dir` (relative to the store's root), in order.
    fn names(dir: &tempfile::TempDir, under: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join(under))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    async fn open_pruning(store: &Arc<dyn ObjectStore>, writer: &str) -> CommitLog {
        let retention = Some(Duration::ZERO);
        CommitLog::open("t", store.clone(), Path::default(), writer, None, retention)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn entries_past_their_retention_go_and_the_log_still_reads_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut log = open_pruning(&store, "w").await;
        log.claim(&[p(0)]).await.unwrap();
        // A file committed by an entry that is pruned later.
        let staged = Path::from("_weir/staging/w-000001.parquet.pending");
        store
            .put(&staged, PutPayload::from_static(b"data"))
            .await
            .unwrap();
        let file = WrittenFile {
            path: "part-w-000001.parquet".into(),
            staging: staged.to_string(),
            partition: String::new(),
            rows: 1,
            bytes: 4,
        };
        log.commit(vec![range(0, 0, 1)], vec![file], vec![], None)
            .await
            .unwrap();
        // Entries 2..=204; snapshots after 100 and 200 each prune up to themselves.
        let last = 2 * SNAPSHOT_EVERY + 4;
        for offset in 1..last as i64 {
            log.commit(vec![range(0, offset, offset + 1)], vec![], vec![], None)
                .await
                .unwrap();
        }
        let kept: Vec<String> = (2 * SNAPSHOT_EVERY + 1..=last)
            .map(|seq| format!("{seq:020}.json"))
            .collect();
        assert_eq!(names(&dir, "_weir/log"), kept);
        assert_eq!(
            names(&dir, "_weir/snapshots"),
            [format!("{:020}.json", 2 * SNAPSHOT_EVERY)]
        );
        let reader = open(&store, "reader").await;
        assert_eq!(reader.next_offset(&p(0)), Some(last as i64));
        // The writer goes on.
        log.commit(
            vec![range(0, last as i64, last as i64 + 1)],
            vec![],
            vec![],
            None,
        )
        .await
        .unwrap();

        let report = crate::verify::verify("t", store.clone(), &Path::default())
            .await
            .unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.pruned_entries, 2 * SNAPSHOT_EVERY + 1);
        assert_eq!(report.entries, 5);
        assert_eq!(report.files_of_pruned_entries, 1);
        assert_eq!(report.partitions[0].to, last as i64 + 1);

        // An entry an interrupted pruning left behind (older than the snapshot including it)
        // is skipped; a visible file newer than the snapshot the replay starts from is not
        // taken for a pruned entry's.
        let kept = entry_path(&Path::default(), last);
        let leftover = store.get(&kept).await.unwrap().bytes().await.unwrap();
        let leftover_path = entry_path(&Path::default(), 5);
        store.put(&leftover_path, leftover.into()).await.unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(leftover_path.as_ref()))
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        let stray = Path::from("part-stray.parquet");
        store
            .put(&stray, PutPayload::from_static(b"data"))
            .await
            .unwrap();
        let root = Path::default();
        let verified = || crate::verify::verify("t", store.clone(), &root);
        let report = verified().await.unwrap();
        assert_eq!(report.pruned_entries, 2 * SNAPSHOT_EVERY + 1);
        assert_eq!(
            report.problems,
            ["part-stray.parquet is visible to readers but no commit lists it"]
        );
        // One newer than that snapshot took a number pruning had freed.
        let leftover = store.get(&kept).await.unwrap().bytes().await.unwrap();
        store.put(&leftover_path, leftover.into()).await.unwrap();
        let report = verified().await.unwrap();
        assert!(
            report.problems[0].starts_with("log entry 5 was written after snapshot 200"),
            "{report}"
        );

        // Without its snapshots, the log's start is gone: nothing may open it as empty.
        std::fs::remove_dir_all(dir.path().join("_weir/snapshots")).unwrap();
        store.delete(&leftover_path).await.unwrap();
        let error = CommitLog::open("t", store.clone(), Path::default(), "late", None, None)
            .await
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("the log's first entry and every snapshot are missing"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_writer_behind_a_pruned_log_starts_from_the_snapshot_and_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        let mut paused = open_pruning(&store, "paused").await;
        paused.claim(&[p(0)]).await.unwrap();
        paused
            .commit(vec![range(0, 0, 1)], vec![], vec![], None)
            .await
            .unwrap();
        // Another writer takes the partition and commits past a snapshot, which prunes
        // every entry the paused writer has not read, entry 2 (the owner's claim) included.
        let mut owner = open_pruning(&store, "owner").await;
        owner.claim(&[p(0)]).await.unwrap();
        for offset in 1..SNAPSHOT_EVERY as i64 + 2 {
            owner
                .commit(vec![range(0, offset, offset + 1)], vec![], vec![], None)
                .await
                .unwrap();
        }
        assert!(
            !dir.path()
                .join("_weir/log")
                .join(format!("{:020}.json", 2))
                .exists()
        );
        // Entry 2 is free again, but the paused writer reads from the snapshot on.
        let error = paused
            .commit(vec![range(0, 1, 2)], vec![], vec![], None)
            .await
            .unwrap_err();
        assert!(matches!(error, LogError::Fenced { .. }), "{error}");
        assert!(
            !dir.path()
                .join("_weir/log")
                .join(format!("{:020}.json", 2))
                .exists()
        );
    }
}
