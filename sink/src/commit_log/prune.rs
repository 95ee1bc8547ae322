//! Deleting entries past their retention, and the checks that keep a writer from reusing a
//! pruned entry's number or opening a log whose start is gone.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;

use super::paths::{WEIR_DIR, seq_of, snapshot_dir, snapshot_path};
use super::{CommitLog, LogError};

/// Entries one pruning deletes at most, so that a log with a long history (kept by an earlier
/// version, or a retention just shortened) is trimmed over many commits, none of them slow.
const PRUNE_AT_MOST: usize = 1000;

impl CommitLog {
    /// Deletes the entries up to the newest snapshot older than `retention` (measured on the
    /// store's clock, against the snapshot just written), at most [`PRUNE_AT_MOST`] of them,
    /// up to a snapshot; then the snapshots before it. Entries first: a crash half-way leaves
    /// a snapshot to start from, and the next pruning lists what is left.
    pub(super) async fn prune(&self, retention: Duration) -> Result<(), LogError> {
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

    /// Whether a snapshot at or after entry `seq` exists, which means that `seq` was pruned.
    pub(super) async fn pruned_past(&self, seq: u64) -> Result<bool, LogError> {
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
    pub(super) async fn check_start(&mut self) -> Result<(), LogError> {
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
