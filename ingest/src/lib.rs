//! Kafka ingest for weir: consume in batches, decode payloads into Arrow, dead-letter the rest.
//!
//! Messages are copied out of librdkafka into columnar [`RawMessages`] as they are polled.
//! A [`Decode`] implementation ([`JsonDecoder`], or [`AvroDecoder`] and [`ProtobufDecoder`]
//! with the schema registry client of [`registry`]) turns their payloads into the declared
//! columns without building any per-record value tree, and [`SourceTable`] makes the result
//! the batch every later stage takes ([`weir_schemas::SourceBatch`]): the rows with their
//! Kafka metadata, the offsets they cover, the latest event time per partition. A message
//! that cannot become a row becomes a [`weir_schemas::DeadLetter`] with the reason; nothing
//! is dropped and nothing stops the service. [`offsets`] asks the brokers where partitions
//! begin and end, for lag.

pub mod avro;
#[cfg(feature = "kafka")]
pub mod dead_letter_topic;
pub mod decode;
#[cfg(feature = "kafka")]
mod decoders;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod offsets;
pub mod protobuf;
pub mod registry;
pub mod schema_file;
#[cfg(feature = "kafka")]
pub mod source;

pub use avro::AvroDecoder;
pub use decode::{
    Abandoned, Decode, DecodeStall, Decoded, DecoderError, EventTimeBounds, SourceTable,
};
pub use json::JsonDecoder;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaError, RESERVED_PROPERTIES, client_config};
pub use protobuf::ProtobufDecoder;
#[cfg(feature = "kafka")]
pub use source::{
    ClientErrors, ConsumerConfig, Decoding, KafkaSource, SourceEvent, SourceStats, StartPosition,
    spawn_reader,
};
