//! Event-time watermarks: how far event time has certainly progressed.
//!
//! Per Kafka partition the watermark is the highest event time read from it minus the
//! configured out-of-orderness. The pipeline's watermark is the lowest over its partitions
//! that are not idle, and a partition without an event yet holds it back too: reading a
//! backlog, one partition's messages may all come before another's first. A partition is idle
//! when it had no message for `idle_timeout` and the brokers say it was read to its log end
//! (a partition quiet only because the consumer has not got to it is not idle); it then stops
//! holding the watermark back, and when every partition is idle the highest of them counts
//! (nothing known is still coming). Watermarks only move forward,
//! across restarts too: each commit records every owned partition's watermark, and an assigned
//! partition starts from what the commit logs recorded.
//!
//! Because they never go back, a watermark is never believed past the wall clock: a
//! partition's own watermark is at most the wall clock minus the out-of-orderness, however far
//! ahead its event times are. Events ahead of the clock (within the bound ingest dead-letters
//! beyond) wait for the clock to reach them instead of closing every window before them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use weir_schemas::{PartitionKey, PartitionWatermark, RecordedWatermark, SourceBatch};

/// The watermarks of the partitions this instance owns, and of the pipeline.
pub struct Watermarks {
    out_of_orderness_ms: i64,
    idle_timeout: Duration,
    partitions: HashMap<PartitionKey, PartitionTime>,
    /// The pipeline watermark last reported; it is never reported lower.
    current: Option<i64>,
}

/// One reading of both clocks: the monotonic one says how long a partition has been quiet,
/// the wall clock how far its watermark may go.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    /// Epoch milliseconds.
    pub wall_ms: i64,
}

impl Now {
    pub fn read() -> Self {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            instant: Instant::now(),
            wall_ms: i64::try_from(wall.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

struct PartitionTime {
    /// Highest event time read (or recorded by a commit before an assignment).
    max_event_ms: Option<i64>,
    /// The recorded watermark the partition was assigned with: its watermark never goes
    /// below it, whatever the out-of-orderness is now.
    floor_ms: Option<i64>,
    last_message: Instant,
    /// The brokers said, since its last message, that it was read to its log end.
    at_log_end: bool,
}

impl PartitionTime {
    /// Its highest event time minus the out-of-orderness, but never past the wall clock
    /// minus it; never below what it was assigned with.
    fn watermark(&self, out_of_orderness_ms: i64, wall_ms: i64) -> Option<i64> {
        let own = self
            .max_event_ms
            .map(|max| max.min(wall_ms).saturating_sub(out_of_orderness_ms));
        own.max(self.floor_ms)
    }
}

impl Watermarks {
    pub fn new(out_of_orderness: Duration, idle_timeout: Duration) -> Self {
        Self {
            out_of_orderness_ms: out_of_orderness.as_millis() as i64,
            idle_timeout,
            partitions: HashMap::new(),
            current: None,
        }
    }

    /// Starts tracking an assigned partition from what the commit logs recorded for it.
    pub fn assign(
        &mut self,
        partition: PartitionKey,
        recorded: Option<PartitionWatermark>,
        now: Instant,
    ) {
        self.partitions.insert(
            partition,
            PartitionTime {
                max_event_ms: recorded.map(|r| r.max_event_ms),
                floor_ms: recorded.map(|r| r.watermark_ms),
                last_message: now,
                at_log_end: false,
            },
        );
    }

    /// Stops tracking a revoked partition.
    pub fn revoke(&mut self, partition: &PartitionKey) {
        self.partitions.remove(partition);
    }

    /// Records that the messages of `batch` arrived, with the latest event time of each
    /// partition among its rows.
    pub fn observe_batch(&mut self, batch: &SourceBatch, now: Instant) {
        for partition in batch.offsets().partitions() {
            self.observe(partition, batch.event_times().get(partition), now);
        }
    }

    /// Records that messages of `partition` arrived, the latest event time among them being
    /// `max_event_ms` (`None` when none of them had a usable event time).
    pub fn observe(&mut self, partition: &PartitionKey, max_event_ms: Option<i64>, now: Instant) {
        if let Some(time) = self.partitions.get_mut(partition) {
            time.last_message = now;
            time.max_event_ms = time.max_event_ms.max(max_event_ms);
            time.at_log_end = false;
        }
    }

    /// The partitions without a message for `idle_timeout`: idle if they were read to their
    /// log end, which only the brokers can say.
    pub fn quiet(&self, now: Instant) -> Vec<PartitionKey> {
        let mut quiet: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, time)| self.is_quiet(time, now))
            .map(|(partition, _)| partition.clone())
            .collect();
        quiet.sort();
        quiet
    }

    /// The partitions a commit records a watermark for: those with an event time.
    pub fn timed(&self) -> impl Iterator<Item = &PartitionKey> {
        self.partitions
            .iter()
            .filter(|(_, time)| time.max_event_ms.is_some())
            .map(|(partition, _)| partition)
    }

    /// Takes in which partitions the brokers just said were read to their log end: those
    /// of them that stay quiet are idle; every other partition is not.
    pub fn read_to_log_end(&mut self, at_log_end: &HashSet<PartitionKey>) {
        for (partition, time) in &mut self.partitions {
            time.at_log_end = at_log_end.contains(partition);
        }
    }

    fn is_quiet(&self, time: &PartitionTime, now: Instant) -> bool {
        now.saturating_duration_since(time.last_message) >= self.idle_timeout
    }

    fn is_idle(&self, time: &PartitionTime, now: Instant) -> bool {
        time.at_log_end && self.is_quiet(time, now)
    }

    /// The pipeline watermark at `now`, epoch milliseconds; `None` before any event.
    pub fn watermark(&mut self, now: Now) -> Option<i64> {
        let ooo = self.out_of_orderness_ms;
        // `None` when every partition is idle; `Some(None)` when one that is not has no
        // watermark yet (`None` is the least of options).
        let active = self
            .partitions
            .values()
            .filter(|t| !self.is_idle(t, now.instant))
            .map(|t| t.watermark(ooo, now.wall_ms))
            .min();
        let candidate = match active {
            Some(lowest) => lowest,
            None => self
                .partitions
                .values()
                .filter_map(|t| t.watermark(ooo, now.wall_ms))
                .max(),
        };
        self.current = self.current.max(candidate);
        self.current
    }

    /// Every tracked partition's watermark, for a commit. An idle partition is recorded at
    /// the pipeline watermark if that is higher, so that a quiet partition does not hold back
    /// the dataset's watermark (the lowest over partitions) for ever.
    pub fn recorded(&mut self, now: Now) -> Vec<RecordedWatermark> {
        let pipeline = self.watermark(now);
        let ooo = self.out_of_orderness_ms;
        let mut recorded: Vec<RecordedWatermark> = self
            .partitions
            .iter()
            .filter_map(|(partition, time)| {
                let max_event_ms = time.max_event_ms?;
                let mut watermark_ms = time.watermark(ooo, now.wall_ms)?;
                if self.is_idle(time, now.instant) {
                    watermark_ms = watermark_ms.max(pipeline.unwrap_or(watermark_ms));
                }
                Some(RecordedWatermark {
                    partition: partition.clone(),
                    watermark: PartitionWatermark {
                        watermark_ms,
                        max_event_ms,
                    },
                })
            })
            .collect();
        recorded.sort_by(|a, b| a.partition.cmp(&b.partition));
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> PartitionKey {
        PartitionKey::new("t", n)
    }

    /// A wall clock far past every event time of these tests.
    const WALL_MS: i64 = 1_000_000_000;

    fn at(instant: Instant) -> Now {
        Now {
            instant,
            wall_ms: WALL_MS,
        }
    }

    fn read_to_end(partitions: &[i32]) -> HashSet<PartitionKey> {
        partitions.iter().map(|&n| p(n)).collect()
    }

    #[test]
    fn the_slowest_active_partition_holds_the_watermark_and_it_never_goes_back() {
        let start = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(10), Duration::from_secs(60));
        assert_eq!(w.watermark(at(start)), None);
        w.assign(p(0), None, start);
        w.assign(p(1), None, start);
        w.observe(&p(0), Some(100_000), start);
        // Partition 1 has no event yet: a backlog's first messages may all come from
        // partition 0, and partition 1's may be older.
        assert_eq!(w.watermark(at(start)), None);
        w.observe(&p(1), Some(50_000), start);
        assert_eq!(w.watermark(at(start)), Some(40_000));
        w.observe(&p(1), Some(120_000), start);
        w.observe(&p(0), Some(95_000), start);
        assert_eq!(w.watermark(at(start)), Some(90_000));
        // A newly assigned partition is far behind; the reported watermark does not move back.
        w.assign(p(2), None, start);
        w.observe(&p(2), Some(30_000), start);
        assert_eq!(w.watermark(at(start)), Some(90_000));
        w.observe(&p(0), Some(130_000), start);
        w.observe(&p(2), Some(140_000), start);
        assert_eq!(w.watermark(at(start)), Some(110_000));
    }

    #[test]
    fn an_idle_partition_stops_holding_the_watermark_back() {
        let start = Instant::now();
        let mut w = Watermarks::new(Duration::ZERO, Duration::from_secs(60));
        w.assign(p(0), None, start);
        w.assign(p(1), None, start);
        w.assign(p(2), None, start);
        w.observe(&p(0), Some(1_000), start);
        w.observe(&p(1), Some(5_000), start);
        let later = start + Duration::from_secs(61);
        w.observe(&p(1), Some(8_000), later);
        // Quiet is not idle: partitions 0 and 2 may have messages the consumer has not got
        // to yet. Only the brokers can say they were read to their log end.
        assert_eq!(w.quiet(later), vec![p(0), p(2)]);
        assert_eq!(w.watermark(at(later)), None);
        w.read_to_log_end(&read_to_end(&[0]));
        assert_eq!(w.watermark(at(later)), None, "partition 2 has no event yet");
        w.read_to_log_end(&read_to_end(&[0, 2]));
        assert_eq!(w.watermark(at(later)), Some(8_000));
        // Recorded for a commit, the idle partition takes the pipeline's watermark.
        let recorded: Vec<(i32, i64, i64)> = w
            .recorded(at(later))
            .iter()
            .map(|r| {
                (
                    r.partition.partition,
                    r.watermark.watermark_ms,
                    r.watermark.max_event_ms,
                )
            })
            .collect();
        assert_eq!(recorded, vec![(0, 8_000, 1_000), (1, 8_000, 8_000)]);
        // A message makes a partition active again, whatever the brokers said before.
        w.observe(&p(0), Some(2_000), later);
        w.observe(&p(1), Some(9_000), later);
        assert_eq!(w.watermark(at(later)), Some(8_000));
        // When every partition is idle, the highest counts.
        let much_later = later + Duration::from_secs(61);
        w.read_to_log_end(&read_to_end(&[0, 1, 2]));
        assert_eq!(w.watermark(at(much_later)), Some(9_000));
    }

    #[test]
    fn an_assigned_partition_starts_from_its_recorded_watermark() {
        let start = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30), Duration::from_secs(60));
        let recorded = PartitionWatermark {
            watermark_ms: 70_000,
            max_event_ms: 90_000,
        };
        w.assign(p(0), Some(recorded), start);
        // The out-of-orderness grew since (30 s now, 20 s then): the floor holds.
        assert_eq!(w.watermark(at(start)), Some(70_000));
        w.observe(&p(0), Some(110_000), start);
        assert_eq!(w.watermark(at(start)), Some(80_000));
        w.revoke(&p(0));
        assert!(w.recorded(at(start)).is_empty());
        assert_eq!(w.watermark(at(start)), Some(80_000), "never reported lower");
    }

    #[test]
    fn event_times_ahead_of_the_wall_clock_never_lift_the_watermark_past_it() {
        let start = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(30), Duration::from_secs(60));
        w.assign(p(0), None, start);
        w.assign(p(1), None, start);
        w.observe(&p(0), Some(500_000), start);
        w.observe(&p(1), Some(i64::MAX), start);
        let clock = |instant, wall_ms| Now { instant, wall_ms };
        // Both active: the slower partition holds the watermark.
        assert_eq!(w.watermark(clock(start, 900_000)), Some(470_000));
        // Both idle: the far-future partition counts, but only up to the clock.
        let idle = start + Duration::from_secs(61);
        w.read_to_log_end(&read_to_end(&[0, 1]));
        assert_eq!(w.watermark(clock(idle, 900_000)), Some(870_000));
        let recorded: Vec<i64> = w
            .recorded(clock(idle, 900_000))
            .iter()
            .map(|r| r.watermark.watermark_ms)
            .collect();
        assert_eq!(recorded, vec![870_000, 870_000]);
        // It follows the clock, as far as the events go.
        assert_eq!(w.watermark(clock(idle, 950_000)), Some(920_000));
        // On its own, an active far-future partition is held at the clock too.
        let mut alone = Watermarks::new(Duration::ZERO, Duration::from_secs(60));
        alone.assign(p(0), None, start);
        alone.observe(&p(0), Some(i64::MAX), start);
        assert_eq!(alone.watermark(clock(start, 900_000)), Some(900_000));
    }
}
