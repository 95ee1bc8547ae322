//! The decoder seam: the bytes of polled messages in, the batch every stage takes out.
//!
//! A [`Decode`] implementation knows one payload format (JSON today; Avro or Protobuf with a
//! schema registry are further implementations beside it): it turns each message's payload
//! into the declared columns, or into a dead letter saying why it cannot. Everything else a
//! batch needs is the same whatever the format, and done once here by [`SourceTable`]: the
//! Kafka metadata columns, and the latest event time of each partition.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir_schemas::{DeadLetters, EventSchema, Messages, SourceBatch, metadata};

/// Decodes message payloads of one format into rows of the declared schema.
pub trait Decode: Send {
    /// Decodes every message of `messages`: the declared columns of those that fit, in message
    /// order, and a dead letter (with the reason and where in the payload) for each other one.
    /// It never fails as a whole: a message that cannot be decoded is a dead letter.
    fn decode(&mut self, messages: &Messages) -> Decoded;
}

/// What a [`Decode`] makes of one batch of messages.
pub struct Decoded {
    /// The declared columns of the accepted messages, in the event schema's Arrow form.
    pub declared: RecordBatch,
    /// For each row of `declared`, the index of the message it came from.
    pub message_of_row: Vec<u32>,
    /// The rejected messages.
    pub dead_letters: DeadLetters,
}

#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    #[error("cannot build the JSON decoder for the schema: {0}")]
    Json(#[from] arrow::error::ArrowError),
    #[error("the event-time column `{0}` is not a field of the schema")]
    NoEventTime(String),
}

/// The source table that SQL selects from: the declared fields, then the metadata columns;
/// and which of them is the event time.
#[derive(Debug, Clone)]
pub struct SourceTable {
    schema: SchemaRef,
    event_time: usize,
}

impl SourceTable {
    pub fn new(schema: &EventSchema, event_time: &str) -> Result<Self, DecoderError> {
        let schema = schema.table_schema();
        let event_time = schema
            .index_of(event_time)
            .map_err(|_| DecoderError::NoEventTime(event_time.to_owned()))?;
        Ok(Self { schema, event_time })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes `messages` with `decoder` into a batch of this table.
    pub fn decode(&self, decoder: &mut dyn Decode, messages: Messages) -> SourceBatch {
        let decoded = decoder.decode(&messages);
        self.batch(decoded, messages)
    }

    /// The batch of this table that `decoded` (what a decoder made of `messages`) becomes.
    pub fn batch(&self, decoded: Decoded, messages: Messages) -> SourceBatch {
        let Decoded {
            declared,
            message_of_row,
            dead_letters,
        } = decoded;
        let rows = metadata::append(&self.schema, declared, &messages, &message_of_row);
        SourceBatch::new(
            rows,
            message_of_row,
            messages,
            dead_letters,
            self.event_time,
        )
    }
}
