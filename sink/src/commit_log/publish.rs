//! Moving committed files from their staged names to their final names, and removing staged
//! files and window state that no commit needs.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::paths::{WEIR_DIR, relative_to, under};
use super::{CommitLog, LogError, WrittenFile};

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

    pub(super) async fn publish_unpublished(&mut self) -> Result<(), LogError> {
        if self.unpublished.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.unpublished);
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
                    self.unpublished = files;
                    return Err(e);
                }
                Ok(()) => {}
            }
        }
        Ok(())
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
