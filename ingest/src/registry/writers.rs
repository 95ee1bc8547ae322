//! The writer schemas met on a topic, shared by the decoding threads: each id asked of the
//! registry once, and made ready for the reader once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_schemas::Reason;

use super::evolution::{ReaderEvolution, WriterAhead};
use super::{FetchSchema, RegisteredSchema, RegistryError};
use crate::decode::{Abandoned, DecodeStall};

/// How a format reads a writer schema: what its decoders need of it, or why they cannot read
/// its messages. Implemented by the reader schema of each format.
pub trait ReadAs: Send + Sync {
    /// A writer schema as the decoders use it.
    type Writer: Clone + Send + Sync;

    /// `registered` made ready to be read as `self`: `Ok(Err(why))` if it cannot be, `Err` if
    /// the registry did not answer for something it refers to.
    fn read_as(
        &self,
        registered: RegisteredSchema,
        fetch: &dyn FetchSchema,
    ) -> Result<Result<Self::Writer, String>, RegistryError>;

    /// The paths of the fields `writer` has and this reader lacks (see
    /// [`super::evolution`]).
    fn new_fields(&self, writer: &Self::Writer) -> Vec<String>;
}

/// What a writer schema id means for the pipeline.
#[derive(Debug, Clone)]
pub enum WriterSchema<W> {
    /// Readable as the reader schema.
    Usable(W),
    /// Known, but not readable as the reader schema (or not of the topic's format): why.
    Incompatible(String),
    /// The registry says there is no such id.
    Missing(String),
}

impl<W> WriterSchema<W> {
    /// The schema, or the reason and detail of the dead letter of a message naming `id`.
    pub fn usable(self, id: u32) -> Result<W, (Reason, String)> {
        match self {
            WriterSchema::Usable(schema) => Ok(schema),
            WriterSchema::Incompatible(why) => Err((
                Reason::IncompatibleSchema,
                format!("schema id {id} cannot be read as the pipeline's schema: {why}"),
            )),
            WriterSchema::Missing(why) => Err((
                Reason::UnknownSchemaId,
                format!("schema id {id} is not in the schema registry: {why}"),
            )),
        }
    }
}

/// A missing id is asked again after this long: it may be a registry behind its primary.
const RECHECK_MISSING: Duration = Duration::from_secs(30);
/// Waits between attempts while the registry does not answer: doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(30);

type Known<W> = (WriterSchema<W>, Instant);

pub struct WriterSchemas<R: ReadAs> {
    fetch: Box<dyn FetchSchema>,
    reader: R,
    /// Each id met, with when it was asked for.
    known: Mutex<HashMap<u32, Known<R::Writer>>>,
    stall: Arc<DecodeStall>,
    /// Where writer schemas with new fields are reported, when the pipeline follows them.
    evolution: Option<Arc<ReaderEvolution>>,
}

impl<R: ReadAs> WriterSchemas<R> {
    /// Writer schemas from `fetch`, read as `reader`; `stall` tells the probes while the
    /// registry does not answer.
    pub fn new(fetch: Box<dyn FetchSchema>, reader: R, stall: Arc<DecodeStall>) -> Self {
        Self {
            fetch,
            reader,
            known: Mutex::new(HashMap::new()),
            stall,
            evolution: None,
        }
    }

    /// Reports to `evolution` each writer schema with fields the reader lacks, the first
    /// time it is met, giving up the batch that met it.
    pub fn with_evolution(mut self, evolution: Arc<ReaderEvolution>) -> Self {
        self.evolution = Some(evolution);
        self
    }

    pub fn reader(&self) -> &R {
        &self.reader
    }

    /// What `id` means. While the registry cannot answer this waits and asks again, for as
    /// long as it takes (or until the session is abandoned): a message is never a dead
    /// letter because the registry was down.
    pub fn get(&self, id: u32) -> Result<WriterSchema<R::Writer>, Abandoned> {
        if let Some((schema, at)) = self.known.lock().expect("not poisoned").get(&id) {
            let recheck =
                matches!(schema, WriterSchema::Missing(_)) && at.elapsed() >= RECHECK_MISSING;
            if !recheck {
                return Ok(schema.clone());
            }
        }
        let schema = self.fetch_patiently(id)?;
        let first = self
            .known
            .lock()
            .expect("not poisoned")
            .insert(id, (schema.clone(), Instant::now()))
            .is_none();
        if !first {
            return Ok(schema);
        }
        match (&self.evolution, &schema) {
            (Some(evolution), _) => {
                if let Some(change) = self.ahead(&schema) {
                    tracing::info!(
                        schema_id = id,
                        "schema id {id} {change}; the pipeline commits what it read and looks at the subject's latest version"
                    );
                    evolution.meet(WriterAhead {
                        schema_id: id,
                        change,
                    });
                    return Err(Abandoned);
                }
            }
            // Fields the reader schema does not read are left out by choice, never unseen.
            (None, WriterSchema::Usable(writer)) => {
                let fields = self.reader.new_fields(writer);
                if !fields.is_empty() {
                    tracing::warn!(
                        schema_id = id,
                        "schema id {id} adds {}, which the reader schema lacks: they are not read (evolution = \"reader_schema\"; with \"add_columns\" the datasets would take them)",
                        fields.join(", ")
                    );
                }
            }
            (None, _) => {}
        }
        Ok(schema)
    }

    /// How `schema` is ahead of the reader, if it is: it adds fields, or the reader cannot
    /// read it.
    fn ahead(&self, schema: &WriterSchema<R::Writer>) -> Option<String> {
        match schema {
            WriterSchema::Usable(writer) => {
                let fields = self.reader.new_fields(writer);
                (!fields.is_empty()).then(|| format!("adds {}", fields.join(", ")))
            }
            WriterSchema::Incompatible(why) => Some(format!("cannot be read as the reader: {why}")),
            WriterSchema::Missing(_) => None,
        }
    }

    /// The schema read as the reader, or why it cannot be: asked until the registry answers.
    fn fetch_patiently(&self, id: u32) -> Result<WriterSchema<R::Writer>, Abandoned> {
        let mut wait = FIRST_RETRY;
        loop {
            let answer = self.fetch.fetch(id).and_then(|registered| {
                self.reader
                    .read_as(registered, self.fetch.as_ref())
                    .map(|read| match read {
                        Ok(writer) => WriterSchema::Usable(writer),
                        Err(why) => WriterSchema::Incompatible(why),
                    })
            });
            match answer {
                Ok(schema) => {
                    self.stall.clear();
                    return Ok(schema);
                }
                Err(RegistryError::NotFound { code, message, .. }) => {
                    self.stall.clear();
                    return Ok(WriterSchema::Missing(format!("error {code}: {message}")));
                }
                Err(e) => {
                    let why = format!("decoding waits for schema id {id}: {e}");
                    if self.stall.set(&why) {
                        tracing::warn!("{why}; asking again until it answers");
                    }
                    self.stall.pause(wait).inspect_err(|_| self.stall.clear())?;
                    wait = (wait * 2).min(LAST_RETRY);
                }
            }
        }
    }
}
