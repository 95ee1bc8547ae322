//! Dead letters to a Kafka topic: the raw payload and key as they were, with the reason and
//! origin in headers (`weir.reason`, `weir.detail`, `weir.topic`, `weir.partition`,
//! `weir.offset`), so a consumer can replay them unchanged. A payload too large for the topic
//! is left out, flagged (`weir.payload_dropped`: its size in bytes).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use weir_schemas::{DeadLetter, DeadLetters};

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
        let producer = config
            .create()
            .map_err(|source| KafkaError::create("dead-letter producer", source))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Produces every letter and waits until each is acknowledged. A letter the producer or
    /// the broker refuses as too large (`message.max.bytes`) is sent again without its
    /// payload, with the payload's size in a `weir.payload_dropped` header: one oversized
    /// message must not fail every checkpoint, and its origin headers say where to read it
    /// while the source topic keeps it.
    pub async fn send(&self, letters: &DeadLetters) -> Result<(), KafkaError> {
        let letters: Vec<&DeadLetter> = letters.iter().collect();
        let sent =
            futures::future::join_all(letters.iter().map(|letter| self.produce(letter, true)))
                .await;
        let mut too_large = Vec::new();
        for (letter, result) in letters.into_iter().zip(sent) {
            match result {
                Ok(()) => {}
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                    too_large.push(letter)
                }
                Err(source) => return Err(self.not_delivered(source)),
            }
        }
        if too_large.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            topic = %self.topic,
            letters = too_large.len(),
            "dead letters too large for the topic are sent without their payloads"
        );
        let resent =
            futures::future::join_all(too_large.iter().map(|letter| self.produce(letter, false)))
                .await;
        for result in resent {
            result.map_err(|source| self.not_delivered(source))?;
        }
        Ok(())
    }

    async fn produce(
        &self,
        letter: &DeadLetter,
        with_payload: bool,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let reason = letter.reason.to_string();
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let dropped = letter.payload.as_ref().map_or(0, Vec::len).to_string();
        let mut headers = OwnedHeaders::new()
            .insert(header("weir.reason", &reason))
            .insert(header("weir.detail", &letter.detail))
            .insert(header("weir.topic", &letter.topic))
            .insert(header("weir.partition", &partition))
            .insert(header("weir.offset", &offset));
        if !with_payload {
            headers = headers.insert(header("weir.payload_dropped", &dropped));
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = letter.payload.as_ref().filter(|_| with_payload) {
            record = record.payload(payload.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(source, _)| source)
    }

    fn not_delivered(&self, source: rdkafka::error::KafkaError) -> KafkaError {
        KafkaError::Deliver {
            topic: self.topic.clone(),
            source,
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rdkafka::ClientConfig;
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;
    use weir_schemas::Reason;

    fn letter(offset: i64, payload: Vec<u8>) -> DeadLetter {
        DeadLetter {
            reason: Reason::InvalidJson,
            detail: "expected a JSON object".into(),
            topic: Arc::from("orders"),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: Some(b"k".to_vec()),
            payload: Some(payload),
        }
    }

    /// (offset header, payload, `weir.payload_dropped` header) of each message of `topic`.
    fn read_back(
        bootstrap: &str,
        topic: &str,
        count: usize,
    ) -> Vec<(String, Vec<u8>, Option<String>)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "read-back")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {count} dead letters arrived",
                seen.len()
            );
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.unwrap();
            let headers = message.headers().unwrap();
            let value = |name: &str| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .map(|h| String::from_utf8(h.value.unwrap().to_vec()).unwrap())
            };
            seen.push((
                value("weir.offset").unwrap(),
                message.payload().unwrap_or_default().to_vec(),
                value("weir.payload_dropped"),
            ));
        }
        seen.sort();
        seen
    }

    #[tokio::test]
    async fn a_letter_too_large_for_the_topic_goes_without_its_payload() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("dead", 1, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let properties = BTreeMap::from([("message.max.bytes".into(), "20000".into())]);
        let topic = DeadLetterTopic::new(&bootstrap, &properties, "dead").unwrap();
        let mut letters = DeadLetters::default();
        letters.push(letter(1, b"not json".to_vec()));
        letters.push(letter(2, vec![b'x'; 50_000]));
        topic.send(&letters).await.unwrap();

        assert_eq!(
            read_back(&bootstrap, "dead", 2),
            [
                ("1".to_owned(), b"not json".to_vec(), None),
                ("2".to_owned(), Vec::new(), Some("50000".to_owned())),
            ]
        );
    }
}
