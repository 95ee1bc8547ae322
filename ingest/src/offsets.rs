//! Where partitions begin and end, and where the consumer group stands, asked of the brokers.
//!
//! A client of its own, apart from the pipeline's consumer: the consumer's cached high
//! watermarks stop moving exactly when lag matters most (consumption paused under
//! backpressure, a stalled pipeline), while a ListOffsets request answers regardless. It
//! serves `weir lag` (every partition of the topics, while the service may be down), the
//! running service's lag metrics (the partitions it owns, every few seconds) and its
//! checkpoints (which partitions are idle at their log end, which hold messages no watermark
//! speaks for).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use weir_schemas::PartitionKey;

use crate::kafka::{KafkaError, client_config};
use crate::source::ConsumerConfig;

/// The offsets a partition's log holds: `start..end`, `end` being the offset the next
/// produced message gets (the high watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    pub start: i64,
    pub end: i64,
}

/// A Kafka client that only asks for offsets.
pub struct OffsetClient {
    client: BaseConsumer,
}

impl OffsetClient {
    /// A client of the pipeline's cluster, as a member of its consumer group when
    /// `as_group` (to read the group's committed offsets; it never joins the group).
    pub fn new(kafka: &ConsumerConfig, as_group: bool) -> Result<Self, KafkaError> {
        let mut config = client_config(&kafka.bootstrap_servers, &kafka.properties);
        if as_group {
            config
                .set("group.id", &kafka.group_id)
                .set("enable.auto.commit", "false");
        }
        let client = config
            .create()
            .map_err(|source| KafkaError::create("offset client", source))?;
        Ok(Self { client })
    }

    /// Every partition of `topics` and the offsets its log holds.
    pub fn partitions(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<BTreeMap<PartitionKey, LogBounds>, KafkaError> {
        let mut partitions = BTreeMap::new();
        for key in self.topic_partitions(topics, timeout)? {
            let bounds = self
                .bounds(&key, timeout)
                .map_err(|source| KafkaError::Offsets {
                    partition: key.clone(),
                    source,
                })?;
            partitions.insert(key, bounds);
        }
        Ok(partitions)
    }

    /// Every partition of `topics`, from the brokers' metadata.
    pub fn topic_partitions(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<Vec<PartitionKey>, KafkaError> {
        let mut partitions = Vec::new();
        for topic in topics {
            let metadata = self
                .client
                .fetch_metadata(Some(topic), timeout)
                .map_err(|source| KafkaError::Metadata {
                    topic: topic.clone(),
                    source,
                })?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .ok_or_else(|| KafkaError::NoTopic(topic.clone()))?;
            partitions.extend(
                found
                    .partitions()
                    .iter()
                    .map(|partition| PartitionKey::new(topic, partition.id())),
            );
        }
        Ok(partitions)
    }

    /// The log bounds of each of `partitions` that answers before `deadline`: with brokers
    /// down, the rest wait for the next round instead of piling up timeouts.
    pub fn bounds_until(
        &self,
        partitions: impl IntoIterator<Item = PartitionKey>,
        deadline: Instant,
    ) -> Vec<(PartitionKey, LogBounds)> {
        let mut found = Vec::new();
        for partition in partitions {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.bounds(&partition, left) {
                Ok(bounds) => found.push((partition, bounds)),
                Err(e) => {
                    tracing::debug!(%partition, error = %e, "cannot read the log-end offset");
                }
            }
        }
        found
    }

    /// The consumer group's committed offset of each of `partitions` that has one.
    pub fn group_offsets(
        &self,
        partitions: &BTreeSet<&PartitionKey>,
        timeout: Duration,
    ) -> Result<BTreeMap<PartitionKey, i64>, KafkaError> {
        let mut asked = TopicPartitionList::new();
        for partition in partitions {
            asked.add_partition(&partition.topic, partition.partition);
        }
        let committed = self
            .client
            .committed_offsets(asked, timeout)
            .map_err(KafkaError::GroupOffsets)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((
                    PartitionKey::new(element.topic(), element.partition()),
                    offset,
                )),
                _ => None,
            })
            .collect())
    }

    fn bounds(
        &self,
        partition: &PartitionKey,
        timeout: Duration,
    ) -> Result<LogBounds, rdkafka::error::KafkaError> {
        let (start, end) =
            self.client
                .fetch_watermarks(&partition.topic, partition.partition, timeout)?;
        Ok(LogBounds { start, end })
    }
}
