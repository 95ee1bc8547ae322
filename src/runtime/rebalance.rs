//! Partitions coming and going: claimed in every dataset and resumed where the logs say,
//! with their windows and watermarks; committed and forgotten when revoked; everything
//! uncommitted dropped when a commit is refused.

use std::collections::BTreeMap;
use std::time::Instant;

use weir_ingest::StartPosition;
use weir_schemas::{PartitionKey, PartitionWatermark};

use super::{Pending, RunError, State};

impl State {
    /// Claims newly assigned partitions in every dataset and returns where each resumes: the
    /// lowest position over the datasets that committed it, or the group's committed offset
    /// (or the start position) when none did.
    pub(super) async fn assign(
        &mut self,
        partitions: &[PartitionKey],
    ) -> Result<Vec<Option<i64>>, RunError> {
        self.observer.assigned(partitions);
        let mut committed: Vec<Option<i64>> = vec![None; partitions.len()];
        let mut uncommitted: Vec<Vec<String>> = vec![Vec::new(); partitions.len()];
        let observer = self.observer.clone();
        for dataset in self.datasets() {
            let next = dataset.claim(partitions).await?;
            observer.claimed(
                dataset.name(),
                partitions.iter().map(|p| (p, dataset.partition_state(p))),
            );
            observer.schema(dataset.name(), dataset.state().schema.as_ref());
            for ((committed, uncommitted), next) in
                committed.iter_mut().zip(&mut uncommitted).zip(next)
            {
                match next {
                    Some(next) => *committed = Some(committed.map_or(next, |c| c.min(next))),
                    None => uncommitted.push(dataset.name().to_owned()),
                }
            }
        }
        let resume = self.resume(partitions, committed, &uncommitted).await;
        self.restore_windows(partitions).await?;
        let now = Instant::now();
        for partition in partitions {
            let recorded = self.recorded_watermark(partition);
            self.watermarks.assign(partition.clone(), recorded, now);
        }
        for (partition, offset) in partitions.iter().zip(&resume) {
            match offset {
                Some(offset) => {
                    tracing::info!(%partition, offset, "resuming from the commit log");
                    self.resumed_at.insert(partition.clone(), *offset);
                    self.next_offsets.insert(partition.clone(), *offset);
                }
                None => {
                    tracing::info!(%partition, "no commit yet: starting from the group's offset")
                }
            }
            self.owned.insert(partition.clone());
        }
        Ok(resume)
    }

    /// Where each partition resumes, from the lowest position of the datasets that committed
    /// it (`committed`) and the datasets that never did (`uncommitted`). A dataset without a
    /// commit starts from the group's offset, not from the others' position: Kafka holds an
    /// offset only once every dataset committed up to it, while the others may be ahead by a
    /// checkpoint that stopped half-way, whose rows this dataset never got. So where some
    /// datasets committed a partition and others did not, it resumes from the lower of the
    /// group's offset and theirs (a dataset added to a running pipeline thus starts where the
    /// others' last checkpoint ended). Without a group offset it starts from the beginning of
    /// the log if the pipeline reads from the earliest, else from the others' position.
    async fn resume(
        &self,
        partitions: &[PartitionKey],
        committed: Vec<Option<i64>>,
        uncommitted: &[Vec<String>],
    ) -> Vec<Option<i64>> {
        let mixed: Vec<PartitionKey> = partitions
            .iter()
            .zip(&committed)
            .zip(uncommitted)
            .filter(|((_, c), u)| c.is_some() && !u.is_empty())
            .map(|((p, _), _)| p.clone())
            .collect();
        if mixed.is_empty() {
            return committed;
        }
        let (group, start) = match &self.brokers {
            Some(brokers) => (brokers.group_offsets(&mixed).await, brokers.start()),
            None => (None, StartPosition::Earliest),
        };
        partitions
            .iter()
            .zip(committed)
            .zip(uncommitted)
            .map(|((partition, committed), uncommitted)| {
                let committed = committed?;
                if uncommitted.is_empty() {
                    return Some(committed);
                }
                let resume = match group.as_ref().map(|g| g.get(partition)) {
                    Some(Some(&offset)) => Some(offset.min(committed)),
                    Some(None) if start == StartPosition::Latest => Some(committed),
                    // No group offset, or the brokers did not say: the consumer's own rule
                    // (the group's offset, else the start position) cannot skip these rows.
                    _ => None,
                };
                tracing::info!(
                    %partition,
                    datasets = ?uncommitted,
                    others_at = committed,
                    resume = ?resume,
                    "datasets without a commit of the partition start from the group's offset"
                );
                resume
            })
            .collect()
    }

    /// Takes in the open windows that the commit logs hold for newly assigned partitions.
    async fn restore_windows(&mut self, partitions: &[PartitionKey]) -> Result<(), RunError> {
        for (output, dataset) in self
            .transforms
            .outputs_mut()
            .iter_mut()
            .zip(&mut self.outputs)
        {
            if output.windows().is_none() {
                continue;
            }
            let mut files: BTreeMap<String, Vec<&PartitionKey>> = BTreeMap::new();
            for partition in partitions {
                let state = dataset.writer.partition_state(partition);
                output.assign(partition, state.and_then(|s| s.emitted_ms));
                if let Some(path) = state.and_then(|s| s.window_state.clone()) {
                    files.entry(path).or_default().push(partition);
                }
            }
            for (path, wanted) in files {
                // The file holds its writer's partitions; take only the ones assigned here.
                for state in dataset.writer.read_window_state(&path).await? {
                    output.restore(&state, &wanted)?;
                }
                let groups = output.windows().map_or(0, |w| w.open_groups());
                tracing::info!(dataset = output.name(), %path, groups, "restored open windows");
            }
        }
        Ok(())
    }

    /// The highest watermark and event time any dataset committed for `partition`.
    fn recorded_watermark(&mut self, partition: &PartitionKey) -> Option<PartitionWatermark> {
        self.datasets()
            .filter_map(|d| {
                let state = d.partition_state(partition)?;
                Some(PartitionWatermark {
                    watermark_ms: state.watermark_ms?,
                    max_event_ms: state.max_event_ms?,
                })
            })
            .max_by_key(|w| (w.watermark_ms, w.max_event_ms))
    }

    /// Commits what was read from revoked partitions while they are still ours, then forgets
    /// them. If they were lost to another instance that claimed them already, the commit is
    /// refused.
    pub(super) async fn revoke(
        &mut self,
        partitions: &[PartitionKey],
        lost: bool,
    ) -> Result<(), RunError> {
        let mut result = self.checkpoint(false).await;
        self.observer.revoked(partitions, lost);
        if lost {
            tracing::warn!(
                partitions = partitions.len(),
                "partitions lost without a handover"
            );
        }
        for partition in partitions {
            self.owned.remove(partition);
            self.resumed_at.remove(partition);
            self.next_offsets.remove(partition);
            self.watermarks.revoke(partition);
        }
        for dataset in self.datasets() {
            dataset.release(partitions);
        }
        for output in self.transforms.outputs_mut() {
            if let Err(e) = output.release(partitions) {
                result = result.and(Err(e.into()));
            }
        }
        result
    }

    /// Drops everything not committed, after a refused commit.
    pub(super) async fn abort(&mut self) {
        self.resumed_at.clear();
        self.next_offsets.clear();
        let owned: Vec<PartitionKey> = self.owned.drain().collect();
        for partition in &owned {
            self.watermarks.revoke(partition);
        }
        for dataset in self.datasets() {
            dataset.abort().await;
            dataset.release(&owned);
        }
        for output in self.transforms.outputs_mut() {
            if let Err(e) = output.clear() {
                tracing::warn!(error = %e, "could not reset window state");
            }
        }
        self.pending = Pending::default();
        self.observer.released_all();
    }
}
