//! Dead letters to a Kafka topic: the raw payload and key as they were, with the reason and
//! origin in headers (`weir.reason`, `weir.detail`, `weir.topic`, `weir.partition`,
//! `weir.offset`), so a consumer can replay them unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_schemas::DeadLetters;

use crate::kafka::{KafkaError, client_config};

pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterTopic {
    pub fn new(
        bootstrap_servers: &str,
        properties: &BTreeMap<String, String>,
        topic: &str,
    ) -> Result<Self, KafkaError> {
        let mut config = client_config(bootstrap_servers, properties);
        config.set("enable.idempotence", "true").set("acks", "all");
        let producer = config.create().map_err(|source| KafkaError::Create {
            role: "dead-letter producer",
            source,
        })?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Produces every letter and waits until each is acknowledged.
    pub async fn send(&self, letters: &DeadLetters) -> Result<(), KafkaError> {
        let mut pending = Vec::with_capacity(letters.len());
        for letter in letters.iter() {
            let reason = letter.reason.to_string();
            let partition = letter.partition.to_string();
            let offset = letter.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(header("weir.reason", &reason))
                .insert(header("weir.detail", &letter.detail))
                .insert(header("weir.topic", &letter.topic))
                .insert(header("weir.partition", &partition))
                .insert(header("weir.offset", &offset));
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
            if let Some(key) = &letter.key {
                record = record.key(key.as_slice());
            }
            if let Some(payload) = &letter.payload {
                record = record.payload(payload.as_slice());
            }
            pending.push(self.producer.send(record, Duration::from_secs(30)));
        }
        for delivery in futures::future::join_all(pending).await {
            delivery.map_err(|(source, _)| KafkaError::Deliver {
                topic: self.topic.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
