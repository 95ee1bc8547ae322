//! What the brokers say at a checkpoint about where partitions end, for the two questions
//! event time cannot answer alone: which quiet partitions were read to their log end (only
//! those are idle), and whether a dataset's watermarks speak for every partition of its
//! topics (only then is a time partition complete).
//!
//! Asked with a client of weir's own (a ListOffsets answers whatever the consumer is doing),
//! only at checkpoints that commit, and only about the partitions in question: in a steady
//! stream every partition has a watermark and none is quiet, and a checkpoint asks for the
//! topics' metadata alone. Whatever the brokers do not answer counts against completeness:
//! a partition of unknown end is neither idle nor done.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_ingest::StartPosition;
use weir_ingest::offsets::{LogBounds, OffsetClient};
use weir_schemas::{OffsetRange, PartitionKey, RecordedWatermark, WatermarkCoverage};
use weir_sink::LogState;

/// How long a checkpoint waits for the brokers' answers, in all.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The brokers of the pipeline's topics, as a checkpoint asks them.
pub(super) struct Brokers {
    client: Arc<OffsetClient>,
    topics: Vec<String>,
    start: StartPosition,
}

impl Brokers {
    pub(super) fn new(client: OffsetClient, topics: Vec<String>, start: StartPosition) -> Self {
        Self {
            client: Arc::new(client),
            topics,
            start,
        }
    }

    /// Where the pipeline starts a partition nothing else places.
    pub(super) fn start(&self) -> StartPosition {
        self.start
    }

    /// The consumer group's committed offsets of `partitions` (those it has), within
    /// [`ANSWER_WITHIN`]; `None` if the brokers did not answer.
    pub(super) async fn group_offsets(
        &self,
        partitions: &[PartitionKey],
    ) -> Option<BTreeMap<PartitionKey, i64>> {
        let client = self.client.clone();
        let partitions = partitions.to_vec();
        tokio::task::spawn_blocking(move || {
            client
                .group_offsets(&partitions.iter().collect(), ANSWER_WITHIN)
                .inspect_err(|e| tracing::warn!(error = %e, "cannot read the group's offsets"))
                .ok()
        })
        .await
        .ok()
        .flatten()
    }
}

/// What one checkpoint knows of the partitions' logs.
pub(super) struct LogView {
    /// Every partition of the topics; `None` when the brokers did not say.
    partitions: Option<Vec<PartitionKey>>,
    bounds: BTreeMap<PartitionKey, LogBounds>,
    /// The consumer group's offsets of partitions nothing else says where reading starts.
    group: BTreeMap<PartitionKey, i64>,
    start: StartPosition,
}

/// What a checkpoint needs to know about, from the pipeline's state.
pub(super) struct Questions<'a> {
    /// Owned partitions without a message for the idle timeout.
    pub quiet: &'a [PartitionKey],
    /// Where reading of each owned partition stands.
    pub positions: &'a HashMap<PartitionKey, i64>,
    /// The logs of every dataset, as their writers know them.
    pub logs: Vec<&'a LogState>,
    /// The partitions this checkpoint records a watermark for.
    pub recorded: HashSet<PartitionKey>,
}

impl Questions<'_> {
    /// Partitions every dataset has a watermark for, in its log or in this checkpoint.
    fn watermarked_everywhere(&self) -> HashSet<PartitionKey> {
        let in_log = |log: &LogState, p: &PartitionKey| {
            log.partitions
                .get(p)
                .is_some_and(|s| s.watermark_ms.is_some())
        };
        let mut watermarked = self.recorded.clone();
        if let Some((first, rest)) = self.logs.split_first() {
            watermarked.extend(
                first
                    .partitions
                    .keys()
                    .filter(|p| in_log(first, p) && rest.iter().all(|log| in_log(log, p)))
                    .cloned(),
            );
        }
        watermarked
    }

    /// Partitions whose reading position this instance or a commit knows.
    fn placed(&self) -> HashSet<PartitionKey> {
        let committed = self.logs.iter().flat_map(|log| {
            log.partitions
                .iter()
                .filter(|(_, s)| s.next_offset.is_some())
                .map(|(p, _)| p.clone())
        });
        self.positions.keys().cloned().chain(committed).collect()
    }
}

impl LogView {
    /// Asks the brokers what `questions` need, within [`ANSWER_WITHIN`].
    pub(super) async fn ask(brokers: &Brokers, questions: &Questions<'_>) -> Self {
        let client = brokers.client.clone();
        let topics = brokers.topics.clone();
        let start = brokers.start;
        let quiet = questions.quiet.to_vec();
        let watermarked = questions.watermarked_everywhere();
        let placed = questions.placed();
        let answered = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + ANSWER_WITHIN;
            let partitions = client
                .topic_partitions(&topics, ANSWER_WITHIN)
                .inspect_err(|e| tracing::debug!(error = %e, "cannot list the topics' partitions"))
                .ok();
            let mut asked: BTreeSet<PartitionKey> = quiet.into_iter().collect();
            let unwatermarked = partitions.iter().flatten();
            asked.extend(unwatermarked.filter(|p| !watermarked.contains(*p)).cloned());
            let unplaced: BTreeSet<&PartitionKey> =
                asked.iter().filter(|p| !placed.contains(*p)).collect();
            let group = match unplaced.is_empty() {
                true => BTreeMap::new(),
                false => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    client
                        .group_offsets(&unplaced, left)
                        .inspect_err(
                            |e| tracing::debug!(error = %e, "cannot read the group's offsets"),
                        )
                        .unwrap_or_default()
                }
            };
            let bounds = client.bounds_until(asked, deadline).into_iter().collect();
            LogView {
                partitions,
                bounds,
                group,
                start,
            }
        })
        .await;
        answered.unwrap_or_else(|_| Self::unanswered(start))
    }

    /// A view without brokers: of `partitions` (replaying batches), nothing is known to end.
    pub(super) fn without_brokers(partitions: impl IntoIterator<Item = PartitionKey>) -> Self {
        Self {
            partitions: Some(partitions.into_iter().collect()),
            ..Self::unanswered(StartPosition::Earliest)
        }
    }

    fn unanswered(start: StartPosition) -> Self {
        Self {
            partitions: None,
            bounds: BTreeMap::new(),
            group: BTreeMap::new(),
            start,
        }
    }

    /// Whether `partition`'s log holds messages at or after `position` (where reading
    /// stands; `None` when nothing read or committed places it, and it starts where the
    /// group's offset or the start position says). A partition of unknown bounds does.
    fn holds_messages(&self, partition: &PartitionKey, position: Option<i64>) -> bool {
        let Some(bounds) = self.bounds.get(partition) else {
            return true;
        };
        let position = position
            .or_else(|| self.group.get(partition).copied())
            .unwrap_or(match self.start {
                StartPosition::Earliest => bounds.start,
                StartPosition::Latest => bounds.end,
            });
        bounds.end > position.max(bounds.start)
    }

    /// Of the `quiet` partitions, those read to their log end.
    pub(super) fn read_to_log_end(
        &self,
        quiet: &[PartitionKey],
        positions: &HashMap<PartitionKey, i64>,
    ) -> HashSet<PartitionKey> {
        quiet
            .iter()
            .filter(|p| !self.holds_messages(p, positions.get(*p).copied()))
            .cloned()
            .collect()
    }

    /// Whether a dataset's watermarks speak for every partition of the topics once it
    /// commits `ranges` with `recorded`: every partition has a watermark in its log or in
    /// this commit, or holds no message past what the dataset committed (or, where it never
    /// committed, past where this instance's reading stands: `positions`).
    pub(super) fn coverage(
        &self,
        log: &LogState,
        ranges: &[OffsetRange],
        recorded: &[RecordedWatermark],
        positions: &HashMap<PartitionKey, i64>,
    ) -> WatermarkCoverage {
        let Some(partitions) = &self.partitions else {
            return WatermarkCoverage::Unknown;
        };
        let recorded: HashSet<&PartitionKey> = recorded.iter().map(|r| &r.partition).collect();
        let missing: Vec<PartitionKey> = partitions
            .iter()
            .filter(|p| {
                let state = log.partitions.get(*p);
                let watermarked =
                    state.is_some_and(|s| s.watermark_ms.is_some()) || recorded.contains(*p);
                !watermarked
            })
            .filter(|p| {
                let committed = ranges
                    .iter()
                    .find(|r| &r.partition == *p)
                    .map(|r| r.to)
                    .or_else(|| log.partitions.get(*p).and_then(|s| s.next_offset))
                    .or_else(|| positions.get(*p).copied());
                self.holds_messages(p, committed)
            })
            .cloned()
            .collect();
        match missing.is_empty() {
            true => WatermarkCoverage::Complete,
            false => WatermarkCoverage::Missing(missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_schemas::PartitionWatermark;
    use weir_sink::PartitionState;

    fn p(n: i32) -> PartitionKey {
        PartitionKey::new("t", n)
    }

    fn view(bounds: &[(i32, i64, i64)], group: &[(i32, i64)], start: StartPosition) -> LogView {
        LogView {
            partitions: Some((0..4).map(p).collect()),
            bounds: bounds
                .iter()
                .map(|&(n, start, end)| (p(n), LogBounds { start, end }))
                .collect(),
            group: group.iter().map(|&(n, offset)| (p(n), offset)).collect(),
            start,
        }
    }

    fn recorded(n: i32) -> RecordedWatermark {
        RecordedWatermark {
            partition: p(n),
            watermark: PartitionWatermark {
                watermark_ms: 1_000,
                max_event_ms: 2_000,
            },
        }
    }

    #[test]
    fn a_partition_is_read_to_its_end_only_where_the_brokers_say_so() {
        let view = view(
            &[(0, 0, 10), (1, 0, 10), (2, 5, 5), (3, 0, 7)],
            &[(3, 7)],
            StartPosition::Earliest,
        );
        let positions = HashMap::from([(p(0), 10), (p(1), 4)]);
        let quiet = [p(0), p(1), p(2), p(3)];
        let at_end = view.read_to_log_end(&quiet, &positions);
        // 0: read to 10 of 10; 1: 4 of 10; 2: empty; 3: the group committed all of it.
        assert_eq!(at_end, HashSet::from([p(0), p(2), p(3)]));
        // Unknown bounds are never an end.
        let unanswered = LogView::without_brokers([p(0)]);
        assert!(unanswered.read_to_log_end(&quiet, &positions).is_empty());
        // Starting at the latest offset, what was there before never counts.
        let latest = super::tests::view(&[(1, 0, 10)], &[], StartPosition::Latest);
        assert_eq!(
            latest.read_to_log_end(&[p(1)], &HashMap::new()),
            HashSet::from([p(1)])
        );
    }

    #[test]
    fn a_partition_with_messages_no_watermark_speaks_for_holds_completeness_back() {
        let view = view(
            &[(1, 0, 10), (2, 0, 0), (3, 0, 6)],
            &[],
            StartPosition::Earliest,
        );
        let mut log = LogState::default();
        log.partitions.insert(
            p(0),
            PartitionState {
                watermark_ms: Some(1_000),
                next_offset: Some(3),
                ..PartitionState::default()
            },
        );
        log.partitions.insert(
            p(3),
            PartitionState {
                next_offset: Some(6),
                ..PartitionState::default()
            },
        );
        let none = HashMap::new();
        // 0 has a watermark; 2 is empty; 3 had only rows without event time, all committed.
        // 1 holds 10 messages nobody committed a watermark for.
        assert_eq!(
            view.coverage(&log, &[], &[], &none),
            WatermarkCoverage::Missing(vec![p(1)])
        );
        // This commit records one for it.
        assert_eq!(
            view.coverage(&log, &[], &[recorded(1)], &none),
            WatermarkCoverage::Complete
        );
        // Or commits all its messages, none with an event time.
        let all = OffsetRange {
            partition: p(1),
            from: 0,
            to: 10,
        };
        assert_eq!(
            view.coverage(&log, &[all], &[], &none),
            WatermarkCoverage::Complete
        );
        // Or this instance read all of them and the dataset has nothing of it to commit.
        let read = HashMap::from([(p(1), 10)]);
        assert_eq!(
            view.coverage(&log, &[], &[], &read),
            WatermarkCoverage::Complete
        );
        // Without the brokers' word nothing is complete.
        assert_eq!(
            LogView::unanswered(StartPosition::Earliest).coverage(&log, &[], &[recorded(1)], &none),
            WatermarkCoverage::Unknown
        );
    }
}
