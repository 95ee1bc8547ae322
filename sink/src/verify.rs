//! Checking a dataset against its commit log: what `weir verify` runs.
//!
//! The invariants: the log's entries are numbered without a gap; every commit came from the
//! writer holding the latest claim of each of its partitions; per partition the committed
//! offset ranges follow each other with no gap and no overlap; every committed file exists
//! with the recorded size and row count and is committed once; no visible Parquet file is
//! outside the log.
//!
//! A log whose oldest entries were pruned (`delivery.log_retention`) is replayed from the
//! snapshot just before the entries kept (entries an interrupted pruning left below it are
//! skipped). Files the pruned entries committed were all published before that snapshot was
//! written, so a visible file no kept entry lists is taken as theirs when it is older than
//! the snapshot, and reported when it is newer. A pruning that runs while the log is read
//! makes the check start over.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use weir_schemas::PartitionKey;

use crate::commit_log::{
    Action, ColumnChange, Entry, LogError, LogState, RecordedSchema, SchemaRecord, WEIR_DIR,
    WrittenFile, entry_path, list_numbered, quarantine_path, snapshot_dir, snapshot_state, under,
};
use crate::footer::read_metadata;

/// Files checked at once.
const CONCURRENCY: usize = 16;
/// Times the check starts over when a pruning deletes what it was reading.
const ATTEMPTS: usize = 3;

/// What verification found in one dataset.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub dataset: String,
    pub entries: u64,
    pub claims: u64,
    pub commits: u64,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Per Kafka partition, in partition order.
    pub partitions: Vec<PartitionReport>,
    /// Staged files no commit refers to: left by attempts that never committed, invisible to
    /// readers, removed at a later start-up.
    pub orphaned_staged_files: u64,
    /// The committed event-time watermark, epoch milliseconds.
    pub watermark_ms: Option<i64>,
    /// Entries before the first one replayed: pruned after their retention (or left by an
    /// interrupted pruning), covered by the snapshot the replay starts from.
    pub pruned_entries: u64,
    /// Visible files no kept entry lists that are older than that snapshot: committed by the
    /// pruned entries, not checked.
    pub files_of_pruned_entries: u64,
    /// The columns of the files as last recorded, with the entry that recorded them.
    pub schema: Option<SchemaRecord>,
    /// Each change of the dataset's schema in the entries replayed, oldest first.
    pub schema_changes: Vec<SchemaChange>,
    /// For a Delta dataset, what its Delta table holds.
    #[cfg(feature = "delta")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::delta::DeltaReport>,
    /// Every invariant that does not hold; empty when the dataset is sound.
    pub problems: Vec<String>,
}

/// A commit that recorded other columns than the one before it.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaChange {
    pub seq: u64,
    pub written_at: String,
    /// The source schema the new columns follow.
    pub source: String,
    pub changes: Vec<ColumnChange>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: i32,
    /// The first committed offset and the end of the last committed range.
    pub from: i64,
    pub to: i64,
    pub commits: u64,
    pub owner: Option<String>,
    pub watermark_ms: Option<i64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.ok() { "OK" } else { "FAILED" };
        writeln!(f, "dataset `{}`: {verdict}", self.dataset)?;
        writeln!(
            f,
            "  {} log entries ({} commits, {} claims), {} files, {} rows, {} bytes",
            self.entries, self.commits, self.claims, self.files, self.rows, self.bytes
        )?;
        if let Some(watermark) = self.watermark_ms {
            writeln!(
                f,
                "  committed watermark {}",
                weir_schemas::rfc3339_ms(watermark)
            )?;
        }
        for p in &self.partitions {
            writeln!(
                f,
                "  {}/{}: offsets {}..{} in {} commits",
                p.topic, p.partition, p.from, p.to, p.commits
            )?;
        }
        if let Some(schema) = &self.schema {
            writeln!(
                f,
                "  {} columns since entry {} ({}), from {}",
                schema.schema.columns.len(),
                schema.seq,
                schema.written_at,
                schema.schema.source
            )?;
        }
        for change in &self.schema_changes {
            let changes: Vec<String> = change.changes.iter().map(|c| c.to_string()).collect();
            writeln!(
                f,
                "  schema changed at entry {} ({}), to {}: {}",
                change.seq,
                change.written_at,
                change.source,
                changes.join("; ")
            )?;
        }
        if self.pruned_entries > 0 {
            writeln!(
                f,
                "  entries 0..{} pruned after their retention: the replay starts from the \
                 snapshot that includes them; {} visible files no kept entry lists are \
                 taken as theirs (not checked)",
                self.pruned_entries, self.files_of_pruned_entries
            )?;
        }
        #[cfg(feature = "delta")]
        if let Some(delta) = &self.delta {
            writeln!(
                f,
                "  Delta table at version {}: {} files, {} committed files not published to it yet",
                delta.version, delta.files, delta.unpublished_files
            )?;
        }
        if self.orphaned_staged_files > 0 {
            writeln!(
                f,
                "  {} staged files of uncommitted attempts (invisible; removed at a later start)",
                self.orphaned_staged_files
            )?;
        }
        for problem in &self.problems {
            writeln!(f, "  problem: {problem}")?;
        }
        Ok(())
    }
}

/// Verifies the dataset `name` at `root` of `store`.
pub async fn verify(
    name: &str,
    store: Arc<dyn ObjectStore>,
    root: &Path,
) -> Result<Report, LogError> {
    let mut attempt = 1;
    loop {
        match verify_once(name, store.clone(), root).await? {
            Checked::Done(report) => return Ok(report),
            Checked::Pruned(mut report) if attempt == ATTEMPTS => {
                report.problems.push(format!(
                    "the log was pruned while being read, {ATTEMPTS} times: its files were not \
                     checked; run weir verify again"
                ));
                return Ok(report);
            }
            Checked::Pruned(_) => attempt += 1,
        }
    }
}

enum Checked {
    Done(Report),
    /// A pruning deleted an entry or snapshot while it was being read.
    Pruned(Report),
}

async fn verify_once(
    name: &str,
    store: Arc<dyn ObjectStore>,
    root: &Path,
) -> Result<Checked, LogError> {
    let store_error = |action, path: &Path, source| LogError::Store {
        dataset: name.to_owned(),
        action,
        path: path.to_string(),
        source: Box::new(source),
    };
    let mut report = Report {
        dataset: name.to_owned(),
        ..Report::default()
    };
    let weir_dir = root.clone().join(WEIR_DIR);
    let log_dir = weir_dir.clone().join("log");
    let listed = list_numbered(store.as_ref(), &log_dir)
        .await
        .map_err(|e| store_error("list", &log_dir, e))?;
    let entries: Vec<u64> = listed.keys().copied().collect();
    if entries.is_empty() {
        report
            .problems
            .push(format!("no commit log under {log_dir}"));
    }
    let snapshot_dir = snapshot_dir(root);
    let snapshots = list_numbered(store.as_ref(), &snapshot_dir)
        .await
        .map_err(|e| store_error("list", &snapshot_dir, e))?;

    // The replay starts at the first entry of the last run without a gap, or after the first
    // snapshot within that run when nothing covers the entries before it; before it,
    // everything must be covered by the snapshot it starts from.
    let dense_from = entries
        .iter()
        .rev()
        .zip(entries.iter().rev().skip(1))
        .find(|(later, earlier)| **later != **earlier + 1)
        .map_or(entries.first().copied().unwrap_or(0), |(later, _)| *later);
    let last = entries.last().copied().unwrap_or(0);
    let first = if dense_from == 0 || snapshots.contains_key(&(dense_from - 1)) {
        Some(dense_from)
    } else {
        snapshots
            .range(dense_from..=last)
            .next()
            .map(|(seq, _)| seq + 1)
    };
    // An entry is always older than the snapshots that include it; one below the start that
    // is newer took a number pruning had freed, and no reader will ever see it.
    for (seq, entry) in listed.range(..first.unwrap_or(0)) {
        if let Some((covering, snapshot)) = snapshots.range(seq..).next()
            && entry.last_modified > snapshot.last_modified
        {
            report.problems.push(format!(
                "log entry {seq} was written after snapshot {covering}, which includes it: a \
                 writer reused a number pruning had freed, and its commit is lost to readers"
            ));
        }
    }
    let mut replay = Replay::default();
    let mut pruned_before = None;
    let first = match first {
        Some(0) => 0,
        Some(first) => match snapshot_state(name, store.clone(), root, first - 1).await? {
            Some(state) => {
                replay.schema = state.schema.as_ref().map(|r| Arc::new(r.schema.clone()));
                replay.state = state;
                report.pruned_entries = first;
                pruned_before = snapshots.get(&(first - 1)).map(|s| s.last_modified);
                first
            }
            None => return Ok(Checked::Pruned(report)),
        },
        None => {
            report.problems.push(format!(
                "log entry {} is missing, and no snapshot covers the entries before {dense_from}",
                dense_from - 1
            ));
            // What can be checked: the entries from 0 up to the gap.
            0
        }
    };
    for seq in entries.iter().copied().filter(|seq| *seq >= first) {
        if seq != replay.state.next_seq {
            break;
        }
        match read_entry(store.as_ref(), &entry_path(root, seq)).await {
            Ok(Some(entry)) => replay.entry(&entry, &mut report),
            Ok(None) => return Ok(Checked::Pruned(report)),
            Err(problem) => {
                report.problems.push(format!("log entry {seq} {problem}"));
                break;
            }
        }
    }
    // The data is listed after the log was read; entries a running pipeline appends
    // meanwhile are read after the listing too, so that their files count as committed,
    // without expecting them in the (older) listing.
    let objects: Vec<object_store::ObjectMeta> = store
        .list(Some(root))
        .try_collect()
        .await
        .map_err(|e| store_error("list", root, e))?;
    let listed_up_to = replay.state.next_seq;
    if replay.state.next_seq == last + 1 {
        while let Ok(Some(entry)) =
            read_entry(store.as_ref(), &entry_path(root, replay.state.next_seq)).await
        {
            replay.entry(&entry, &mut report);
        }
    }
    report.watermark_ms = replay.state.watermark_ms();
    report.schema = replay.state.schema.clone();
    let Replay {
        state,
        partitions,
        committed,
        schema: _,
    } = replay;
    for (partition, mut p) in partitions {
        if let Some(s) = state.partitions.get(&partition) {
            p.to = s.next_offset.unwrap_or(p.from);
            p.owner = s.owner.clone();
            p.watermark_ms = s.watermark_ms;
        }
        p.topic = partition.topic.to_string();
        p.partition = partition.partition;
        report.partitions.push(p);
    }

    // Every committed file is there, whole; nothing visible is outside the log.
    let sizes: HashMap<&Path, u64> = objects.iter().map(|o| (&o.location, o.size)).collect();
    let (store_ref, sizes_ref) = (store.as_ref(), &sizes);
    // The checks are made up front, not by the stream: a stream's closure over borrowed
    // files would make this future not provably `Send` (a limit of the compiler).
    let checks: Vec<_> = committed
        .values()
        .map(|committed| async move {
            let problem = if committed.seq >= listed_up_to {
                None
            } else {
                check_file(store_ref, root, committed, sizes_ref).await
            };
            (problem, &committed.file)
        })
        .collect();
    let checks = futures::stream::iter(checks)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for (problem, file) in checks {
        match problem {
            Some(problem) => report.problems.push(problem),
            None => {
                report.files += 1;
                report.rows += file.rows;
                report.bytes += file.bytes;
            }
        }
    }
    let referenced_staging: std::collections::HashSet<&str> = committed
        .values()
        .map(|c| c.file.staging.as_str())
        .collect();
    let staging_dir = weir_dir.clone().join("staging");
    for object in &objects {
        let location = &object.location;
        if location.prefix_matches(&staging_dir) {
            let relative: Path = location.prefix_match(root).into_iter().flatten().collect();
            if !referenced_staging.contains(relative.as_ref()) {
                report.orphaned_staged_files += 1;
            }
            continue;
        }
        if location.prefix_matches(&weir_dir) || location.extension() != Some("parquet") {
            continue;
        }
        let relative: Path = location.prefix_match(root).into_iter().flatten().collect();
        if committed.contains_key(relative.as_ref()) {
            continue;
        }
        if pruned_before.is_some_and(|snapshot| object.last_modified <= snapshot) {
            report.files_of_pruned_entries += 1;
        } else {
            report.problems.push(format!(
                "{relative} is visible to readers but no commit lists it"
            ));
        }
    }
    report.problems.sort();
    Ok(Checked::Done(report))
}

/// A problem with one committed file, if any.
async fn check_file(
    store: &dyn ObjectStore,
    root: &Path,
    committed: &Committed,
    sizes: &HashMap<&Path, u64>,
) -> Option<String> {
    let Committed { seq, file, schema } = committed;
    let (seq, schema) = (*seq, schema.as_deref());
    let path = match under(root, &file.path) {
        Ok(path) => path,
        Err(e) => return Some(format!("entry {seq}: bad file path {}: {e}", file.path)),
    };
    let Some(&size) = sizes.get(&path) else {
        let staged = under(root, &file.staging).is_ok_and(|p| sizes.contains_key(&p));
        let quarantine = quarantine_path(root, &file.staging);
        if sizes.contains_key(&quarantine) {
            return Some(format!(
                "{} (entry {seq}) is committed but quarantined as {quarantine}: the store cannot \
                 hold its final name, so readers do not see its rows",
                file.path
            ));
        }
        return Some(if staged {
            format!(
                "{} (entry {seq}) is committed but still under its staged name {} (its writer \
                 stopped before moving it; the next start of weir on this dataset moves it)",
                file.path, file.staging
            )
        } else {
            format!("{} (entry {seq}) is committed but missing", file.path)
        });
    };
    if size != file.bytes {
        return Some(format!(
            "{} (entry {seq}) has {size} bytes, the commit says {}",
            file.path, file.bytes
        ));
    }
    match read_footer(store, &path, size).await {
        Ok((rows, _)) if rows != file.rows => Some(format!(
            "{} (entry {seq}) has {rows} rows, the commit says {}",
            file.path, file.rows
        )),
        Ok((_, columns)) => match schema {
            Some(schema) if !columns.same_columns(schema) => {
                let differences: Vec<String> = columns
                    .changes_from(schema)
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                Some(format!(
                    "{} (entry {seq}) does not hold the columns recorded for it: against them \
                     it has {}",
                    file.path,
                    differences.join("; ")
                ))
            }
            _ => None,
        },
        Err(e) => Some(format!(
            "{} (entry {seq}) is not a readable Parquet file: {e}",
            file.path
        )),
    }
}

/// The row count and columns in a Parquet file's footer.
async fn read_footer(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
) -> Result<(u64, RecordedSchema), Box<dyn std::error::Error + Send + Sync>> {
    let metadata = read_metadata(store, path, size).await?;
    let file = metadata.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    Ok((file.num_rows() as u64, RecordedSchema::of(&schema, "")))
}

/// The log replayed so far.
#[derive(Default)]
struct Replay {
    state: LogState,
    partitions: BTreeMap<PartitionKey, PartitionReport>,
    /// Committed files by final path.
    committed: HashMap<String, Committed>,
    /// The columns recorded last, shared by the files committed with them.
    schema: Option<Arc<RecordedSchema>>,
}

/// A committed file, with the entry that committed it and the columns recorded for it.
struct Committed {
    seq: u64,
    file: WrittenFile,
    schema: Option<Arc<RecordedSchema>>,
}

impl Replay {
    fn entry(&mut self, entry: &Entry, report: &mut Report) {
        let seq = entry.seq;
        if let Err(violations) = self.state.check(entry) {
            for violation in violations {
                report
                    .problems
                    .push(format!("log entry {seq}: {violation}"));
            }
        }
        report.entries += 1;
        match &entry.action {
            Action::Claim { .. } => report.claims += 1,
            Action::Commit {
                ranges,
                files,
                schema,
                ..
            } => {
                report.commits += 1;
                if let Some(schema) = schema {
                    // The first schema recorded is where the dataset starts, not a change.
                    if let Some(before) = &self.state.schema {
                        report.schema_changes.push(SchemaChange {
                            seq,
                            written_at: entry.written_at.clone(),
                            source: schema.source.clone(),
                            changes: schema.changes_from(&before.schema),
                        });
                    }
                    self.schema = Some(Arc::new(schema.clone()));
                }
                for range in ranges {
                    let p = self
                        .partitions
                        .entry(range.partition.clone())
                        .or_insert_with(|| PartitionReport {
                            from: range.from,
                            ..PartitionReport::default()
                        });
                    p.commits += 1;
                }
                for file in files {
                    if let Some(other) = self.committed.get(&file.path) {
                        report.problems.push(format!(
                            "{} is committed twice, by entries {} and {seq}",
                            file.path, other.seq
                        ));
                    }
                    let committed = Committed {
                        seq,
                        file: file.clone(),
                        schema: self.schema.clone(),
                    };
                    self.committed.insert(file.path.clone(), committed);
                }
            }
        }
        self.state.apply(entry);
    }
}

/// Entry at `path`; `None` if absent, a readable problem if it cannot be read or parsed.
async fn read_entry(store: &dyn ObjectStore, path: &Path) -> Result<Option<Entry>, String> {
    let bytes = match store.get(path).await {
        Ok(got) => got
            .bytes()
            .await
            .map_err(|e| format!("cannot be read: {e}"))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("is not valid: {e}"))
}
