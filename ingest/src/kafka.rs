//! Client configuration shared by the consumer, the offset client and the dead-letter
//! producer, and their errors.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// `reason` leaves out the value of a property librdkafka refused: it may be a secret.
    #[error("cannot create the Kafka {role}: {reason}")]
    Create { role: &'static str, reason: String },
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

impl KafkaError {
    /// A client `role` that librdkafka would not create.
    pub fn create(role: &'static str, source: rdkafka::error::KafkaError) -> Self {
        let reason = match source {
            // librdkafka's own description quotes the value too.
            rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
                let description = match value.is_empty() {
                    true => description,
                    false => description.replace(&value, "<hidden>"),
                };
                format!("property `{key}`: {description}")
            }
            other => other.to_string(),
        };
        KafkaError::Create { role, reason }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;

    #[test]
    fn a_refused_property_is_named_without_its_value() {
        let properties =
            BTreeMap::from([("security.protocol".to_owned(), "hunter2-secret".to_owned())]);
        let refused = client_config("127.0.0.1:1", &properties)
            .create::<BaseConsumer>()
            .err()
            .expect("librdkafka refuses an unknown protocol");
        assert!(refused.to_string().contains("hunter2-secret"), "{refused}");
        let error = KafkaError::create("consumer", refused).to_string();
        assert!(error.contains("security.protocol"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
