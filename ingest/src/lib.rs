//! Kafka ingest for weir: consume in batches, decode JSON into Arrow, dead-letter the rest.
//!
//! Messages are copied out of librdkafka into columnar [`RawMessages`] as they are polled;
//! [`JsonDecoder`] checks each payload against the declared schema without building any
//! per-record value tree, then hands the accepted payloads to arrow-json, which fills Arrow
//! builders directly. A message that cannot become a row becomes a
//! [`weir_schemas::DeadLetter`] with the reason; nothing is dropped and nothing stops the
//! service.

mod check;
pub mod dead_letter_topic;
pub mod decode;
pub mod kafka;
pub mod raw;
pub mod source;

pub use decode::{Decoded, JsonDecoder};
pub use kafka::{KafkaError, RESERVED_PROPERTIES, client_config, is_secret, redact};
pub use raw::RawMessages;
pub use source::{
    KafkaSource, SourceBatch, SourceConfig, SourceEvent, SourceStats, StartPosition, spawn_reader,
};
