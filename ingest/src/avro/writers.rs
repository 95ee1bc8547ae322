//! The writer schemas met on the topic, shared by the decoding threads: each id asked of the
//! registry once, checked against the reader schema once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

use crate::decode::{Abandoned, DecodeStall};
use crate::registry::{RegisteredSchema, RegistryError};

/// Where schemas come from by id: the registry, or a fixed set in tests and tools. Blocking.
pub trait FetchSchema: Send + Sync {
    fn fetch(&self, id: u32) -> Result<RegisteredSchema, RegistryError>;
}

/// What a writer schema id means for the pipeline.
#[derive(Debug, Clone)]
pub enum WriterSchema {
    /// Resolvable to the reader schema.
    Usable(AvroSchema),
    /// Known, but not resolvable to the reader schema (or not Avro): why.
    Incompatible(String),
    /// The registry says there is no such id.
    Missing(String),
}

/// A missing id is asked again after this long: it may be a registry behind its primary.
const RECHECK_MISSING: Duration = Duration::from_secs(30);
/// Waits between attempts while the registry does not answer: doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(30);

pub struct WriterSchemas {
    fetch: Box<dyn FetchSchema>,
    reader: AvroSchema,
    known: Mutex<HashMap<u32, (WriterSchema, Instant)>>,
    stall: Arc<DecodeStall>,
}

impl WriterSchemas {
    /// Writer schemas from `fetch`, resolved to `reader`; `stall` tells the probes while the
    /// registry does not answer.
    pub fn new(fetch: Box<dyn FetchSchema>, reader: AvroSchema, stall: Arc<DecodeStall>) -> Self {
        Self {
            fetch,
            reader,
            known: Mutex::new(HashMap::new()),
            stall,
        }
    }

    pub fn reader(&self) -> &AvroSchema {
        &self.reader
    }

    /// What `id` means. While the registry cannot answer this waits and asks again, for as
    /// long as it takes (or until the session is abandoned): a message is never a dead
    /// letter because the registry was down.
    pub fn get(&self, id: u32) -> Result<WriterSchema, Abandoned> {
        if let Some((schema, at)) = self.known.lock().expect("not poisoned").get(&id) {
            let recheck =
                matches!(schema, WriterSchema::Missing(_)) && at.elapsed() >= RECHECK_MISSING;
            if !recheck {
                return Ok(schema.clone());
            }
        }
        let schema = match self.fetch_patiently(id)? {
            Ok(registered) => self.check(registered),
            Err(why) => WriterSchema::Missing(why),
        };
        self.known
            .lock()
            .expect("not poisoned")
            .insert(id, (schema.clone(), Instant::now()));
        Ok(schema)
    }

    /// The schema, or why the registry says there is none.
    fn fetch_patiently(&self, id: u32) -> Result<Result<RegisteredSchema, String>, Abandoned> {
        let mut wait = FIRST_RETRY;
        loop {
            match self.fetch.fetch(id) {
                Ok(schema) => {
                    self.stall.clear();
                    return Ok(Ok(schema));
                }
                Err(RegistryError::NotFound { code, message, .. }) => {
                    self.stall.clear();
                    return Ok(Err(format!("error {code}: {message}")));
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

    /// Whether a fetched schema can be read as the reader schema: built on its own, so that
    /// one bad schema never stops the others from being decoded.
    fn check(&self, registered: RegisteredSchema) -> WriterSchema {
        if !registered.schema_type.eq_ignore_ascii_case("AVRO") {
            return WriterSchema::Incompatible(format!(
                "it is a {} schema; the pipeline reads Avro",
                registered.schema_type
            ));
        }
        let schema = AvroSchema::new(registered.schema);
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let built = store
            .set(Fingerprint::Id(registered.id), schema.clone())
            .map_err(|e| e.to_string())
            .and_then(|_| super::build(&store, &self.reader).map_err(|e| e.to_string()));
        match built {
            Ok(_) => WriterSchema::Usable(schema),
            Err(why) => WriterSchema::Incompatible(why),
        }
    }
}
