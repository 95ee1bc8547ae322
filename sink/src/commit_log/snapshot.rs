//! Snapshots of the state after every so many entries (by default `SNAPSHOT_EVERY`): where readers start, so that
//! start-up reads little and older entries can be pruned.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use weir_schemas::PartitionKey;

use super::entry::FORMAT_VERSION;
use super::paths::{snapshot_dir, snapshot_path};
use super::prune::list_numbered;
use super::{CommitLog, LogError, LogState, PartitionState, SchemaRecord};

/// A snapshot of the state is written after every this many entries, unless the dataset
/// says otherwise.
pub const SNAPSHOT_EVERY: u64 = 100;

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// The last entry the snapshot includes.
    seq: u64,
    partitions: Vec<SnapshotPartition>,
    /// Time partitions with committed files, not yet marked complete.
    #[serde(default)]
    incomplete: Vec<String>,
    /// The dataset's schema as last recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<SchemaRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPartition {
    #[serde(flatten)]
    partition: PartitionKey,
    #[serde(flatten)]
    state: PartitionState,
}

impl CommitLog {
    /// The snapshots, by the last entry each includes.
    pub(super) async fn snapshots(
        &self,
    ) -> Result<BTreeMap<u64, object_store::ObjectMeta>, LogError> {
        let dir = snapshot_dir(&self.root);
        list_numbered(self.store.as_ref(), &dir)
            .await
            .map_err(|source| self.store_error("list", &dir, source))
    }

    /// Starts from the latest snapshot, if it is ahead of what this writer has read.
    pub(super) async fn load_snapshot(&mut self) -> Result<(), LogError> {
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

    /// Writes the state after entry `seq`, this writer's latest, every `snapshot_every`
    /// entries. Every file committed up to it must be published first (this writer's own
    /// included), since a reader starting from the snapshot does not look at older entries.
    /// Failing to write one is only logged: the entries it would replace stay until a later
    /// snapshot does.
    pub(super) async fn snapshot_if_due(&mut self, seq: u64) {
        if seq == 0
            || !seq.is_multiple_of(self.snapshot_every.get())
            || self.state.next_seq != seq + 1
        {
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
            schema: self.state.schema.clone(),
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
        schema: snapshot.schema,
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
