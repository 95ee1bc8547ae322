//! The data contracts of weir and the few types every stage shares.
//!
//! A pipeline's events are described by a schema file ([`schema`]) that loads into an Arrow
//! schema; ingest decodes Kafka messages straight into it. What crosses a stage boundary is an
//! Arrow `RecordBatch` plus a small envelope ([`envelope`]): the Kafka offsets the batch covers
//! and the messages that could not be used ([`dead_letter`]). Stage crates depend on this one
//! and never on each other.

pub mod dead_letter;
pub mod envelope;
pub mod metadata;
pub mod schema;

pub use dead_letter::{DeadLetter, DeadLetters, Reason};
pub use envelope::{OffsetRanges, PartitionKey};
pub use schema::{EventSchema, SchemaError};
