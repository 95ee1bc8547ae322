//! Client configuration shared by the consumer and the dead-letter producer.

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

/// Whether a librdkafka property holds a secret and must never be printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "private.key",
        "token",
        "sasl.jaas.config",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// The value as it may appear in logs and errors.
pub fn redact<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) { "<redacted>" } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("sasl.password", "hunter2"), "<redacted>");
        assert_eq!(redact("ssl.key.password", "x"), "<redacted>");
        assert_eq!(redact("sasl.oauthbearer.client.secret", "x"), "<redacted>");
        assert_eq!(redact("security.protocol", "SASL_SSL"), "SASL_SSL");
    }
}
