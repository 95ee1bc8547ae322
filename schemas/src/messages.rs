//! Messages as polled, stored column by column: what every row and dead letter came from.

use std::sync::Arc;

use arrow::array::{Array, BinaryArray, BinaryBuilder};

use crate::{DeadLetter, OffsetRanges, PartitionKey, Reason};

/// A batch of polled Kafka messages being copied into contiguous buffers.
pub struct RawMessages {
    topics: Vec<Arc<str>>,
    topic_index: Vec<u16>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: BinaryBuilder,
    payloads: BinaryBuilder,
    payload_bytes: usize,
}

/// The finished, read-only form of [`RawMessages`]: message `i` of a batch, whether it became
/// a row or a dead letter.
pub struct Messages {
    topics: Vec<Arc<str>>,
    topic_index: Vec<u16>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: BinaryArray,
    payloads: BinaryArray,
    ranges: OffsetRanges,
}

impl RawMessages {
    pub fn with_capacity(messages: usize) -> Self {
        Self::for_batch(messages, usize::MAX)
    }

    /// Room for a batch of up to `messages` messages and about `payload_bytes` of payloads
    /// (a batch ends at the message that reaches it): reserving 256 bytes for each of
    /// 10,000 messages would hold megabytes per batch that a limit of less never uses.
    pub fn for_batch(messages: usize, payload_bytes: usize) -> Self {
        Self {
            topics: Vec::new(),
            topic_index: Vec::with_capacity(messages),
            partitions: Vec::with_capacity(messages),
            offsets: Vec::with_capacity(messages),
            timestamps: Vec::with_capacity(messages),
            keys: BinaryBuilder::with_capacity(messages, messages * 16),
            payloads: BinaryBuilder::with_capacity(
                messages,
                messages.saturating_mul(256).min(payload_bytes),
            ),
            payload_bytes: 0,
        }
    }

    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        // Messages come in runs of one partition: the previous message's topic first.
        let last = self.topic_index.last().map_or(0, |&i| usize::from(i));
        let index = match self.topics.get(last) {
            Some(t) if t.as_ref() == topic => last,
            _ => match self.topics.iter().position(|t| t.as_ref() == topic) {
                Some(i) => i,
                None => {
                    self.topics.push(Arc::from(topic));
                    self.topics.len() - 1
                }
            },
        };
        self.topic_index.push(index as u16);
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.timestamps.push(timestamp_ms);
        self.keys.append_option(key);
        self.payloads.append_option(payload);
        self.payload_bytes += payload.map_or(0, <[u8]>::len);
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Payload bytes held.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    pub fn finish(mut self) -> Messages {
        let ranges = self.offset_ranges();
        Messages {
            topics: self.topics,
            topic_index: self.topic_index,
            partitions: self.partitions,
            offsets: self.offsets,
            timestamps: self.timestamps,
            keys: self.keys.finish(),
            payloads: self.payloads.finish(),
            ranges,
        }
    }

    /// The offsets held, per partition: recorded once per run of one partition's messages
    /// rather than once per message.
    fn offset_ranges(&self) -> OffsetRanges {
        let mut ranges = OffsetRanges::default();
        let mut start = 0;
        for end in 1..=self.offsets.len() {
            let same = end < self.offsets.len()
                && self.topic_index[end] == self.topic_index[start]
                && self.partitions[end] == self.partitions[start];
            if same {
                continue;
            }
            let run = &self.offsets[start..end];
            let key = PartitionKey {
                topic: self.topics[usize::from(self.topic_index[start])].clone(),
                partition: self.partitions[start],
            };
            let from = run.iter().copied().min().expect("a run has a message");
            let to = run.iter().copied().max().expect("a run has a message") + 1;
            ranges.record_run(&key, from, to, run.len() as u64);
            start = end;
        }
        ranges
    }
}

impl Messages {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn topic(&self, i: usize) -> &Arc<str> {
        &self.topics[self.topic_index[i] as usize]
    }

    pub fn partition(&self, i: usize) -> i32 {
        self.partitions[i]
    }

    pub fn offset(&self, i: usize) -> i64 {
        self.offsets[i]
    }

    /// The Kafka message timestamp, epoch milliseconds.
    pub fn timestamp(&self, i: usize) -> Option<i64> {
        self.timestamps[i]
    }

    pub fn payload(&self, i: usize) -> Option<&[u8]> {
        self.payloads.is_valid(i).then(|| self.payloads.value(i))
    }

    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.keys.is_valid(i).then(|| self.keys.value(i))
    }

    pub fn payload_bytes(&self) -> usize {
        self.payloads.values().len()
    }

    /// The offsets the messages cover.
    pub fn ranges(&self) -> &OffsetRanges {
        &self.ranges
    }

    /// The Kafka timestamps of the messages that have one.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        self.timestamps.iter().flatten().copied()
    }

    /// A dead letter for message `i`.
    pub fn dead_letter(&self, i: usize, reason: Reason, detail: String) -> DeadLetter {
        DeadLetter {
            reason,
            detail,
            topic: self.topic(i).clone(),
            partition: self.partitions[i],
            offset: self.offsets[i],
            timestamp_ms: self.timestamps[i],
            key: self.key(i).map(<[u8]>::to_vec),
            payload: self.payload(i).map(<[u8]>::to_vec),
        }
    }
}
