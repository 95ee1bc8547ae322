//! Confluent-framed Avro: payloads decoded straight into Arrow columns by arrow-avro.
//!
//! Each payload is `0x00`, the writer schema's registry id (4 bytes, big-endian), then the
//! Avro body. Every writer schema is resolved to one reader schema (the subject's version
//! the pipeline started with, or that cut down to a schema file's fields: [`project`]), so a
//! batch has one Arrow form whichever versions wrote it:
//! fields the reader has and a writer lacks take their defaults, fields only a writer has
//! are skipped, and `int` widens to `long` as Avro's resolution rules say.
//!
//! arrow-avro's decoder cannot learn a schema id after it is built, and a body that fails
//! mid-record leaves part of a row in its builders. So each decoder keeps the writer schemas
//! it was built with, rebuilds itself when a new id appears (after handing on the rows it
//! holds), and after a bad message rebuilds and decodes again the good messages not yet
//! handed on: one bad message never costs its neighbours.

mod conform;
mod json;
mod projection;
mod schema_of;

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_avro::codec::Tz;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{Fingerprint, FingerprintAlgorithm, SchemaStore};
use weir_schemas::{DeadLetters, Messages, Reason};

use crate::decode::{Abandoned, Decode, Decoded};
use crate::registry::evolution::fields_beyond;
use crate::registry::{
    FRAMING_BYTES, FetchSchema, ReadAs, RegisteredSchema, RegistryError, WriterSchemas, framed_id,
};
use crate::schema_file;
pub use arrow_avro::schema::AvroSchema;
pub use conform::declared_schema;
pub use json::JsonToAvro;
pub use projection::project;
pub use schema_of::avro_schema_of;

/// Rows arrow-avro collects before a batch is handed over. Messages of one polled batch may
/// need several; they are joined at the end.
const ROWS_PER_FLUSH: usize = 8192;

/// The id arrow-avro's store gives the reader schema when it is decoded on its own, to learn
/// its Arrow form. Never a registry id in practice: registries count up from 1.
const PROBE_ID: u32 = u32::MAX;

/// The Arrow form arrow-avro gives rows of `reader` (no conversions applied).
pub fn arrow_form(reader: &AvroSchema) -> Result<SchemaRef, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(Fingerprint::Id(PROBE_ID), reader.clone())
        .map_err(|e| e.to_string())?;
    Ok(build(&store, reader).map_err(|e| e.to_string())?.schema())
}

fn build(store: &SchemaStore, reader: &AvroSchema) -> Result<Decoder, arrow::error::ArrowError> {
    ReaderBuilder::new()
        .with_batch_size(ROWS_PER_FLUSH)
        .with_tz(Tz::Utc)
        .with_reader_schema(reader.clone())
        .with_writer_schema_store(store.clone())
        .build_decoder()
}

/// Avro writer schemas are read as the reader schema by arrow-avro's resolution.
impl ReadAs for AvroSchema {
    type Writer = AvroSchema;

    /// Whether a writer schema can be read as this one: built on its own, so that one bad
    /// schema never stops the others from being decoded.
    fn read_as(
        &self,
        registered: RegisteredSchema,
        _: &dyn FetchSchema,
    ) -> Result<Result<AvroSchema, String>, RegistryError> {
        if !registered.schema_type.eq_ignore_ascii_case("AVRO") {
            return Ok(Err(format!(
                "it is a {} schema; the pipeline reads Avro",
                registered.schema_type
            )));
        }
        let schema = AvroSchema::new(registered.schema);
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        Ok(store
            .set(Fingerprint::Id(registered.id), schema.clone())
            .map_err(|e| e.to_string())
            .and_then(|_| build(&store, self).map_err(|e| e.to_string()))
            .map(|_| schema))
    }

    fn new_fields(&self, writer: &AvroSchema) -> Vec<String> {
        match (arrow_form(self), arrow_form(writer)) {
            (Ok(reader), Ok(writer)) => fields_beyond(reader.fields(), writer.fields(), ""),
            // Both were read as the reader already: this does not happen.
            _ => Vec::new(),
        }
    }
}

/// Decodes Confluent-framed Avro payloads into the pipeline's declared columns.
pub struct AvroDecoder {
    writers: Arc<WriterSchemas<AvroSchema>>,
    /// The columns rows are handed on in.
    declared: SchemaRef,
    /// `declared` with every field nullable, what rows are conformed to first.
    relaxed: SchemaRef,
    /// The writer schemas `decoder` was built with.
    store: SchemaStore,
    ids: HashSet<u32>,
    /// None until the first usable writer schema arrives (a store cannot be empty).
    decoder: Option<Decoder>,
}

/// One call's progress: rows arrow-avro handed over, the messages in the decoder not yet
/// handed over, and the dead letters.
struct Call<'a> {
    messages: &'a Messages,
    batches: Vec<RecordBatch>,
    rows: Vec<u32>,
    in_decoder: Vec<u32>,
    dead_letters: DeadLetters,
}

impl Call<'_> {
    fn reject(&mut self, i: u32, reason: Reason, detail: String) {
        self.dead_letters
            .push(self.messages.dead_letter(i as usize, reason, detail));
    }
}

impl AvroDecoder {
    /// A decoder that resolves every writer schema to `writers`' reader schema and hands rows
    /// on in `declared` (see [`declared_schema`]).
    pub fn new(writers: Arc<WriterSchemas<AvroSchema>>, declared: SchemaRef) -> Self {
        Self {
            writers,
            relaxed: schema_file::relaxed_schema(&declared),
            declared,
            store: SchemaStore::new_with_type(FingerprintAlgorithm::Id),
            ids: HashSet::new(),
            decoder: None,
        }
    }

    /// Makes sure the decoder knows schema `id`; otherwise why the message is a dead letter
    /// (`Ok(Err(..))`), or that the batch was given up.
    fn learn(
        &mut self,
        id: u32,
        call: &mut Call,
    ) -> Result<Result<(), (Reason, String)>, Abandoned> {
        if self.ids.contains(&id) {
            return Ok(Ok(()));
        }
        let schema = match self.writers.get(id)?.usable(id) {
            Ok(schema) => schema,
            Err(why) => return Ok(Err(why)),
        };
        // Rebuilding drops what the decoder holds: hand it over first.
        self.flush(call);
        if let Err(e) = self.store.set(Fingerprint::Id(id), schema) {
            return Ok(Err((
                Reason::IncompatibleSchema,
                format!("schema id {id}: {e}"),
            )));
        }
        self.ids.insert(id);
        self.rebuild();
        Ok(Ok(()))
    }

    fn rebuild(&mut self) {
        // Every schema in the store was built on its own against the reader before it was
        // handed out (read_as), so building them together cannot fail.
        self.decoder = Some(
            build(&self.store, self.writers.reader())
                .expect("writer schemas checked one by one against the reader"),
        );
    }

    /// Hands the rows the decoder holds over to `call`.
    fn flush(&mut self, call: &mut Call) {
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        match decoder.flush() {
            Ok(Some(batch)) => {
                call.batches.push(batch);
                call.rows.append(&mut call.in_decoder);
            }
            Ok(None) => {}
            // Rows that decoded one by one failed to become arrays: a fault of the decoder,
            // not of one message. The messages are kept, with the reason.
            Err(e) => {
                for i in std::mem::take(&mut call.in_decoder) {
                    call.reject(
                        i,
                        Reason::AvroDecodeError,
                        format!("decoded, but its rows could not be assembled: {e}"),
                    );
                }
                self.rebuild();
            }
        }
    }

    /// Decodes one framed payload; `Err` says why it is not a row, and leaves the decoder to
    /// be recovered.
    fn decode_one(&mut self, payload: &[u8], call: &mut Call) -> Result<(), String> {
        let mut consumed = 0;
        loop {
            let decoder = self.decoder.as_mut().expect("learn() built it");
            if decoder.batch_is_full() {
                // A full batch, or a switch to another writer schema: hand the rows over.
                self.flush(call);
                continue;
            }
            let n = match decoder.decode(&payload[consumed..]) {
                Ok(n) => n,
                // The record ended before the payload did: arrow-avro read on, expecting the
                // next message's framing.
                Err(_) if ROWS_PER_FLUSH - decoder.capacity() == call.in_decoder.len() + 1 => {
                    return Err("bytes left after the record".into());
                }
                Err(e) => return Err(e.to_string()),
            };
            consumed += n;
            if consumed == payload.len() || n == 0 {
                break;
            }
        }
        // Exactly one more row, and nothing left over.
        let decoder = self.decoder.as_ref().expect("learn() built it");
        let rows_held = ROWS_PER_FLUSH - decoder.capacity();
        if rows_held != call.in_decoder.len() + 1 {
            return Err(format!(
                "the body ends inside a record ({} bytes after the framing)",
                payload.len() - FRAMING_BYTES
            ));
        }
        if consumed != payload.len() {
            return Err(format!(
                "bytes left after the record ({} of {})",
                payload.len() - consumed,
                payload.len()
            ));
        }
        Ok(())
    }

    /// After a bad message: a fresh decoder, and the good messages it held decoded again.
    fn recover(&mut self, call: &mut Call) {
        let mut again = std::mem::take(&mut call.in_decoder);
        'fresh: loop {
            self.rebuild();
            for (k, &i) in again.iter().enumerate() {
                let payload = call.messages.payload(i as usize).unwrap_or_default();
                if let Err(why) = self.decode_one(payload, call) {
                    // It decoded a moment ago with these very schemas; should it not now, it
                    // is kept as a dead letter rather than lost, and the rest start afresh.
                    call.reject(i, Reason::AvroDecodeError, why);
                    let rest = again[k + 1..].to_vec();
                    again = std::mem::take(&mut call.in_decoder);
                    again.extend(rest);
                    continue 'fresh;
                }
                call.in_decoder.push(i);
            }
            break;
        }
        // Handing them over now means each good message is decoded again at most once.
        self.flush(call);
    }
}

impl Decode for AvroDecoder {
    fn decode(&mut self, messages: &Messages) -> Result<Decoded, Abandoned> {
        let mut call = Call {
            messages,
            batches: Vec::new(),
            rows: Vec::with_capacity(messages.len()),
            in_decoder: Vec::new(),
            dead_letters: DeadLetters::default(),
        };
        for i in 0..messages.len() {
            let index = i as u32;
            let payload = match messages.payload(i) {
                Some(payload) if !payload.is_empty() => payload,
                _ => {
                    call.reject(index, Reason::EmptyMessage, "no payload".into());
                    continue;
                }
            };
            let id = match framed_id(payload) {
                Ok(id) => id,
                Err(why) => {
                    call.reject(index, Reason::NotConfluentFramed, why);
                    continue;
                }
            };
            if let Err((reason, why)) = self.learn(id, &mut call)? {
                call.reject(index, reason, why);
                continue;
            }
            match self.decode_one(payload, &mut call) {
                Ok(()) => call.in_decoder.push(index),
                Err(why) => {
                    call.reject(
                        index,
                        Reason::AvroDecodeError,
                        format!("schema id {id}: {why}"),
                    );
                    self.recover(&mut call);
                }
            }
        }
        self.flush(&mut call);
        let (declared, lacking) =
            schema_file::conform_batches(&self.declared, &self.relaxed, &call.batches)
                .expect("the declared columns were checked against the reader schema's at start");
        let mut message_of_row = call.rows;
        schema_file::reject_lacking(
            messages,
            &mut message_of_row,
            lacking,
            &mut call.dead_letters,
        );
        Ok(Decoded {
            declared,
            message_of_row,
            dead_letters: call.dead_letters,
        })
    }
}

#[cfg(test)]
mod tests;
