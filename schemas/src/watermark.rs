//! Event-time facts that travel between stages: what a batch says about event time, and what
//! a commit records of it.
//!
//! Ingest finds the latest event time of each partition in a batch ([`EventTimes`]); the
//! watermark tracker turns them into a [`PartitionWatermark`] per partition; a commit records
//! those ([`RecordedWatermark`]) and, for a windowed dataset, how far each partition's windows
//! were emitted ([`EmittedWatermark`]). All times are epoch milliseconds.

use serde::{Deserialize, Serialize};

use crate::PartitionKey;

/// The latest event time of each partition among a batch's rows (rows without one do not
/// count), in the order partitions first appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTimes(Vec<(PartitionKey, i64)>);

impl EventTimes {
    /// Takes in the event time of one row of `topic`/`partition`.
    pub fn observe(&mut self, topic: &str, partition: i32, time: i64) {
        // Rows of one partition mostly come together: the last entry is the likely one.
        let found = match self.0.last() {
            Some((key, _)) if key.is(topic, partition) => Some(self.0.len() - 1),
            _ => self.0.iter().position(|(key, _)| key.is(topic, partition)),
        };
        match found {
            Some(i) => self.0[i].1 = self.0[i].1.max(time),
            None => self.0.push((PartitionKey::new(topic, partition), time)),
        }
    }

    /// The latest event time of `partition`, if one of its rows had one.
    pub fn get(&self, partition: &PartitionKey) -> Option<i64> {
        self.0.iter().find(|(p, _)| p == partition).map(|(_, t)| *t)
    }

    /// Keeps the partitions `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&PartitionKey) -> bool) {
        self.0.retain(|(p, _)| keep(p));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PartitionKey, i64)> {
        self.0.iter().map(|(p, t)| (p, *t))
    }
}

/// A partition's event-time watermark as the committing instance saw it, and the highest
/// event time it had read from the partition.
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

/// Up to which watermark the windows holding a partition's events were emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmittedWatermark {
    #[serde(flatten)]
    pub partition: PartitionKey,
    pub emitted_ms: Option<i64>,
}

/// Whether a dataset's committed watermark speaks for every partition of its topics.
///
/// The committed watermark is the lowest over the partitions the log has a watermark for. A
/// partition it has none for, whose log holds messages not committed yet (a backlog read one
/// partition after another, an instance that has not committed yet), may still bring rows of
/// any time; until none is left, no time partition is marked complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WatermarkCoverage {
    /// Every partition of the topics has a watermark recorded, or nothing left to commit.
    Complete,
    /// These partitions hold messages that no recorded watermark speaks for.
    Missing(Vec<PartitionKey>),
    /// The brokers did not say which partitions the topics have, or where they end.
    #[default]
    Unknown,
}

impl WatermarkCoverage {
    pub fn is_complete(&self) -> bool {
        matches!(self, WatermarkCoverage::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_event_time_of_each_partition() {
        let mut times = EventTimes::default();
        for (partition, time) in [(0, 5), (0, 9), (1, 3), (0, 7), (1, 4)] {
            times.observe("t", partition, time);
        }
        let got: Vec<_> = times.iter().map(|(p, t)| (p.partition, t)).collect();
        assert_eq!(got, vec![(0, 9), (1, 4)]);
        assert_eq!(times.get(&PartitionKey::new("t", 1)), Some(4));
        times.retain(|p| p.partition == 1);
        assert_eq!(times.get(&PartitionKey::new("t", 0)), None);
    }
}
