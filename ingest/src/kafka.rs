//! Client configuration shared by the consumer, the offset client and the dead-letter
//! producer, and their errors.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot create the Kafka {role}: {source}")]
    Create {
        role: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: rdkafka::error::KafkaError,
    },
    #[error("fatal Kafka error: {0}")]
    Fatal(rdkafka::error::KafkaError),
    #[error("partition assignment failed: {0}")]
    Rebalance(String),
    #[error("offset commit failed after {attempts} attempts: {source}")]
    Commit {
        attempts: u32,
        source: rdkafka::error::KafkaError,
    },
    #[error("reading the metadata of topic `{topic}`: {source}")]
    Metadata {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("topic `{0}` does not exist")]
    NoTopic(String),
    #[error("reading the offsets of {partition}: {source}")]
    Offsets {
        partition: weir_schemas::PartitionKey,
        source: rdkafka::error::KafkaError,
    },
    #[error("reading the group's committed offsets: {0}")]
    GroupOffsets(rdkafka::error::KafkaError),
    #[error("dead letter to topic {topic} not delivered: {source}")]
    Deliver {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
}

/// librdkafka properties weir sets itself; a pipeline may not override them.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

/// A client configuration from the bootstrap servers and pass-through librdkafka properties.
pub fn client_config(
    bootstrap_servers: &str,
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    // Errors and broker state go through the ConsumerContext to tracing; keep librdkafka's own
    // log quiet unless asked.
    config.set("log_level", "3");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}
