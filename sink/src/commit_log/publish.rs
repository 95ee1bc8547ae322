//! Moving committed files from their staged names to their final names, and removing staged
//! files and window state that no commit needs.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::paths::{WEIR_DIR, quarantine_path, relative_to, under};
use super::{CommitLog, LogError, Unpublished, WrittenFile};

/// Files moved (or checked) at once when publishing.
const PUBLISH_CONCURRENCY: usize = 16;

impl CommitLog {
    /// Moves committed files from their staged names to their final names.
    pub(super) async fn publish(&self, files: &[WrittenFile]) -> Result<(), LogError> {
        futures::stream::iter(self.publishing(files))
            .buffer_unordered(PUBLISH_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// One move per file, made up front: a stream whose closure borrows each file would make
    /// the caller's future not provably `Send` (a limit of the compiler's lifetime checks).
    fn publishing<'a>(
        &'a self,
        files: &'a [WrittenFile],
    ) -> Vec<impl Future<Output = Result<(), LogError>> + Send + 'a> {
        files.iter().map(|file| self.publish_file(file)).collect()
    }

    async fn publish_file(&self, file: &WrittenFile) -> Result<(), LogError> {
        let corrupt = |e: object_store::path::Error| LogError::Corrupt {
            dataset: self.dataset.clone(),
            path: file.path.clone(),
            reason: e.to_string(),
        };
        let staging = under(&self.root, &file.staging).map_err(corrupt)?;
        let target = under(&self.root, &file.path).map_err(corrupt)?;
        let moved = self.rename("publish", &staging, &target).await?;
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

    /// Publishes the commits read from the log as writers that stopped half-way left them:
    /// their files moved, then their Delta commits made. A file whose final name the store
    /// cannot hold (an entry written before weir checked partition paths) is quarantined
    /// instead, so that no start is stuck on it.
    pub(super) async fn publish_unpublished(&mut self) -> Result<(), LogError> {
        if self.unpublished.is_empty() {
            return Ok(());
        }
        let unpublished = std::mem::take(&mut self.unpublished);
        let (files, unstorable): (Vec<WrittenFile>, Vec<WrittenFile>) = unpublished
            .values()
            .flat_map(|u| u.files.iter())
            .cloned()
            .partition(|file| self.unstorable(file).is_none());
        for file in &unstorable {
            let reason = self.unstorable(file).unwrap_or_default();
            self.quarantine(file, &reason).await?;
        }
        let results: Vec<Result<(), LogError>> = futures::stream::iter(self.publishing(&files))
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
                    self.unpublished = unpublished;
                    return Err(e);
                }
                Ok(()) => {}
            }
        }
        let mut commits: Vec<&Unpublished> = unpublished.values().collect();
        commits.sort_by_key(|u| u.seq);
        for commit in commits {
            let published = self
                .publish_to_table(commit.seq, &commit.ranges, &commit.files)
                .await;
            if let Err(e) = published {
                self.unpublished = unpublished;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Publishes commit `seq` to the dataset's table format, if it has one; files the store
    /// could not hold (quarantined) are left out.
    pub(super) async fn publish_to_table(
        &self,
        seq: u64,
        ranges: &[weir_schemas::OffsetRange],
        files: &[WrittenFile],
    ) -> Result<(), LogError> {
        let Some(table) = &self.table else {
            return Ok(());
        };
        let stored: Vec<WrittenFile> = files
            .iter()
            .filter(|file| self.unstorable(file).is_none())
            .cloned()
            .collect();
        table
            .publish(seq, ranges, &stored, self.state.watermark_ms())
            .await
            .map_err(LogError::Table)
    }

    /// Moves `from` to `to`, retrying transient failures; `false` if `from` is not there (moved
    /// already, by an earlier attempt or another instance recovering).
    async fn rename(&self, what: &'static str, from: &Path, to: &Path) -> Result<bool, LogError> {
        self.retrying(what, to, || async {
            match self.store.rename(from, to).await {
                Ok(()) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                // A store whose copies refuse an existing target (object_store 0.13's GCS
                // client makes every copy "create only": apache/arrow-rs-object-store#712)
                // after an attempt that copied and failed before deleting. Final names are
                // unique to their staged file, so the target is that copy.
                Err(object_store::Error::AlreadyExists { .. }) => {
                    match self.store.delete(from).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Why the store cannot hold `file`'s final name, if it cannot.
    fn unstorable(&self, file: &WrittenFile) -> Option<String> {
        let limits = self.path_limits?;
        let Ok(target) = under(&self.root, &file.path) else {
            return Some("it is not a valid object path".into());
        };
        let key = target.as_ref().len();
        if key > limits.key_bytes {
            return Some(format!(
                "its name is {key} bytes; the store holds {}",
                limits.key_bytes
            ));
        }
        target
            .parts()
            .map(|part| part.as_ref().len())
            .find(|&bytes| bytes > limits.segment_bytes)
            .map(|bytes| {
                format!(
                    "a segment of its name is {bytes} bytes; the store holds {}",
                    limits.segment_bytes
                )
            })
    }

    /// Moves a committed file whose final name cannot be stored from its staged name to
    /// `_weir/quarantine/`, where `weir verify` reports it and no clean-up deletes it.
    async fn quarantine(&self, file: &WrittenFile, reason: &str) -> Result<(), LogError> {
        let staging = under(&self.root, &file.staging).map_err(|e| LogError::Corrupt {
            dataset: self.dataset.clone(),
            path: file.staging.clone(),
            reason: e.to_string(),
        })?;
        let target = quarantine_path(&self.root, &file.staging);
        let moved = self.rename("quarantine", &staging, &target).await?;
        // The final name holds row values: it stays out of the log lines.
        if moved {
            tracing::error!(
                dataset = %self.dataset,
                staged = %file.staging,
                quarantined = %target,
                reason,
                "a committed file cannot be stored under its final name; it is quarantined \
                 (see `weir verify`)"
            );
            return Ok(());
        }
        match self.store.head(&target).await {
            Ok(_) => {
                tracing::warn!(dataset = %self.dataset, quarantined = %target, "a committed file is still quarantined");
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => {
                let lost = LogError::MissingFile {
                    dataset: self.dataset.clone(),
                    path: file.path.clone(),
                    staging: file.staging.clone(),
                };
                tracing::error!(error = %lost, "committed file lost");
                Ok(())
            }
            Err(source) => Err(self.store_error("check", &target, source)),
        }
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
}
