//! The envelope that travels with batches: which Kafka offsets they cover.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A Kafka topic-partition.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
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
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Inclusive offset ranges per topic-partition, and how many messages they hold.
///
/// Ranges of one partition are merged as batches arrive in offset order, so a checkpoint
/// knows exactly which offsets every row it made durable came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetRanges {
    ranges: BTreeMap<PartitionKey, (i64, i64)>,
    messages: u64,
}

impl OffsetRanges {
    /// Records that `offset` of `key` was consumed.
    pub fn record(&mut self, key: &PartitionKey, offset: i64) {
        self.messages += 1;
        match self.ranges.get_mut(key) {
            Some((first, last)) => {
                *first = (*first).min(offset);
                *last = (*last).max(offset);
            }
            None => {
                self.ranges.insert(key.clone(), (offset, offset));
            }
        }
    }

    /// Adds every range of `other` to this one.
    pub fn merge(&mut self, other: &OffsetRanges) {
        self.messages += other.messages;
        for (key, &(first, last)) in &other.ranges {
            let entry = self.ranges.entry(key.clone()).or_insert((first, last));
            entry.0 = entry.0.min(first);
            entry.1 = entry.1.max(last);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of messages recorded.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// `(partition, first offset, last offset)`, inclusive, in partition order.
    pub fn iter(&self) -> impl Iterator<Item = (&PartitionKey, i64, i64)> {
        self.ranges.iter().map(|(k, &(f, l))| (k, f, l))
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
        let got: Vec<_> = a.iter().map(|(k, f, l)| (k.partition, f, l)).collect();
        assert_eq!(got, vec![(0, 5, 7), (1, 0, 0), (2, 3, 3)]);
        assert_eq!(a.messages(), 5);
    }
}
