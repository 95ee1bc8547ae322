//! Kafka coordinates: which partition, and which offsets of it.
//!
//! One convention everywhere: a range is `from..to` with `to` exclusive, the way the commit
//! log records it and the way Kafka names a consumer's position (the next offset to read).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A Kafka topic-partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionKey {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl PartitionKey {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: Arc::from(topic),
            partition,
        }
    }

    /// Whether this is `partition` of `topic`, without building a key.
    pub fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && &*self.topic == topic
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Offsets `from..to` (end exclusive) of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    #[serde(flatten)]
    pub partition: PartitionKey,
    pub from: i64,
    pub to: i64,
}

/// The offset ranges a batch (or everything consumed since a checkpoint) covers, one per
/// partition, and how many messages they hold.
///
/// Ranges of one partition are merged as batches arrive in offset order, so a checkpoint
/// knows exactly which offsets every row it made durable came from. A range is the hull of
/// the offsets seen: offsets Kafka never delivered inside it (compaction, transaction
/// markers) belong to it too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetRanges {
    /// Per partition, `from..to`.
    ranges: BTreeMap<PartitionKey, (i64, i64)>,
    messages: u64,
}

impl OffsetRanges {
    /// Records that `offset` of `key` was consumed.
    pub fn record(&mut self, key: &PartitionKey, offset: i64) {
        self.record_run(key, offset, offset + 1, 1);
    }

    /// Records that `messages` messages of `key` within `from..to` were consumed.
    pub fn record_run(&mut self, key: &PartitionKey, from: i64, to: i64, messages: u64) {
        self.messages += messages;
        match self.ranges.get_mut(key) {
            Some(range) => {
                range.0 = range.0.min(from);
                range.1 = range.1.max(to);
            }
            None => {
                self.ranges.insert(key.clone(), (from, to));
            }
        }
    }

    /// Adds every range of `other` to this one.
    pub fn merge(&mut self, other: &OffsetRanges) {
        self.messages += other.messages;
        for (key, &(from, to)) in &other.ranges {
            let entry = self.ranges.entry(key.clone()).or_insert((from, to));
            entry.0 = entry.0.min(from);
            entry.1 = entry.1.max(to);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of messages recorded.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The ranges, in partition order.
    pub fn iter(&self) -> impl Iterator<Item = OffsetRange> + '_ {
        self.ranges
            .iter()
            .map(|(partition, &(from, to))| OffsetRange {
                partition: partition.clone(),
                from,
                to,
            })
    }

    /// The partitions covered, in order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionKey> {
        self.ranges.keys()
    }

    /// What is left of each range once the offsets before `next(partition)` are taken away:
    /// what a dataset that continues at `next` still has to commit.
    pub fn after(&self, next: impl Fn(&PartitionKey) -> Option<i64>) -> Vec<OffsetRange> {
        self.iter()
            .filter_map(|mut range| {
                range.from = next(&range.partition).unwrap_or(range.from);
                (range.to > range.from).then_some(range)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        PartitionKey {
            topic: Arc::from("t"),
            partition: p,
        }
    }

    #[test]
    fn records_and_merges_inclusive_ranges() {
        let mut a = OffsetRanges::default();
        a.record(&key(0), 5);
        a.record(&key(0), 6);
        a.record(&key(1), 0);
        let mut b = OffsetRanges::default();
        b.record(&key(0), 7);
        b.record(&key(2), 3);
        a.merge(&b);
        // The last offset of each range, inclusive: one before its end.
        let got: Vec<_> = a
            .iter()
            .map(|r| (r.partition.partition, r.from, r.to - 1))
            .collect();
        assert_eq!(got, vec![(0, 5, 7), (1, 0, 0), (2, 3, 3)]);
        assert_eq!(a.messages(), 5);
    }

    #[test]
    fn what_is_left_after_a_dataset_position() {
        let mut ranges = OffsetRanges::default();
        for offset in [10, 11, 12] {
            ranges.record(&key(0), offset);
        }
        ranges.record(&key(1), 4);
        let next = |p: &PartitionKey| match p.partition {
            0 => Some(12),
            _ => Some(5),
        };
        assert_eq!(
            ranges.after(next),
            vec![OffsetRange {
                partition: key(0),
                from: 12,
                to: 13
            }]
        );
        assert_eq!(ranges.after(|_| None), ranges.iter().collect::<Vec<_>>());
    }
}
