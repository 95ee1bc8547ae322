//! Confluent-framed Protobuf: payloads read straight into Arrow columns.
//!
//! Each payload is `0x00`, the writer schema's registry id (4 bytes, big-endian), the
//! message indexes (which message of the schema's file wrote it: a zigzag varint count, then
//! that many zigzag varint indexes, the first into the file's messages and each next into the
//! nested ones; a lone `0` stands for the first message), then the Protobuf body.
//!
//! Schemas come from the registry and are compiled at run time ([`compile_schema`]). The
//! reader is one message of the subject's version the pipeline started with; its fields are
//! the columns ([`columns`]). Every writer schema met on the topic is matched with the
//! reader field by field number once ([`plan`]), and the bodies are then walked on the wire,
//! each value going straight into its column: no message objects are built per record.
//! A body that fails half-way is cut back out of the columns, so one bad message never costs
//! its neighbours.

mod columns;
mod compile;
mod json;
mod plan;
mod schema_of;
mod walk;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use prost_reflect::{FileDescriptor, Kind, MessageDescriptor};
use weir_schemas::{DeadLetters, EventSchema, Messages, Reason};

use crate::decode::{Abandoned, Decode, Decoded};
use crate::registry::{
    FRAMING_BYTES, FetchSchema, ReadAs, RegisteredSchema, RegistryError, WriterSchemas, framed_id,
};
use crate::schema_file::{check_castable, conform_batches, reject_lacking, relaxed_schema};
use columns::Node;
pub use json::JsonToProtobuf;
use plan::Plan;
pub use schema_of::proto_schema_of;

/// A registered Protobuf schema and its imports compiled: `Ok(Err(why))` if it is not valid
/// Protobuf or an import is missing from the registry, `Err` if the registry did not answer.
pub fn compile_schema(
    schema: &RegisteredSchema,
    fetch: &dyn FetchSchema,
) -> Result<Result<FileDescriptor, String>, RegistryError> {
    compile::compile(schema, fetch)
}

/// The message rows are read as.
#[derive(Clone)]
pub struct ProtobufReader {
    message: MessageDescriptor,
    event_time: String,
    /// The schema file rows are cut down and cast to, if there is one.
    schema_file: Option<EventSchema>,
}

impl ProtobufReader {
    /// Message `name` of `file` (its first message when `None`), with `event_time` its
    /// event-time field; `Err` says what is wrong.
    pub fn new(
        file: &FileDescriptor,
        name: Option<&str>,
        event_time: &str,
    ) -> Result<Self, String> {
        let message = match name {
            Some(name) => file
                .parent_pool()
                .get_message_by_name(name.trim_start_matches('.'))
                .filter(|m| m.parent_file() == *file)
                .ok_or_else(|| {
                    format!(
                        "it has no message `{name}`; its messages are {}",
                        message_names(file)
                    )
                })?,
            None => file.messages().next().ok_or("it declares no message")?,
        };
        let reader = Self {
            message,
            event_time: event_time.to_owned(),
            schema_file: None,
        };
        reader.columns()?;
        Ok(reader)
    }

    /// The reader with a schema file: rows get the file's fields (nested ones too), in its
    /// order and types, and a message leaving one of its `required` fields null is a
    /// `missing_field` dead letter. `Err` names a field the message lacks or whose type
    /// cannot be converted to the file's.
    pub fn with_schema_file(mut self, schema: EventSchema) -> Result<Self, String> {
        let declared = schema.arrow_schema();
        self.schema_file = Some(schema);
        let decoded = self.columns()?;
        check_castable(&Schema::new(decoded.fields.clone()), &declared)?;
        Ok(self)
    }

    pub fn message(&self) -> &MessageDescriptor {
        &self.message
    }

    /// The columns rows are handed on in: the schema file's, or the message's own.
    pub fn declared_schema(&self) -> SchemaRef {
        match &self.schema_file {
            Some(schema) => schema.arrow_schema(),
            None => Arc::new(Schema::new(
                self.columns()
                    .expect("checked when the reader was made")
                    .fields
                    .clone(),
            )),
        }
    }

    /// The columns messages are read into (before a schema file's casts).
    fn columns(&self) -> Result<Node, String> {
        let selected = self.schema_file.as_ref().map(|s| s.fields.as_slice());
        Node::new(&self.message, Some(&self.event_time), selected)
    }
}

fn message_names(file: &FileDescriptor) -> String {
    let mut names = Vec::new();
    let mut pending: Vec<MessageDescriptor> = file.messages().collect();
    while let Some(message) = pending.pop() {
        if !message.is_map_entry() {
            names.push(format!("`{}`", message.full_name()));
        }
        pending.extend(message.child_messages());
    }
    names.sort();
    names.join(", ")
}

impl ReadAs for ProtobufReader {
    type Writer = FileDescriptor;

    fn read_as(
        &self,
        registered: RegisteredSchema,
        fetch: &dyn FetchSchema,
    ) -> Result<Result<FileDescriptor, String>, RegistryError> {
        if !registered.schema_type.eq_ignore_ascii_case("PROTOBUF") {
            return Ok(Err(format!(
                "it is a {} schema; the pipeline reads Protobuf",
                registered.schema_type
            )));
        }
        compile::compile(&registered, fetch)
    }

    fn new_fields(&self, writer: &FileDescriptor) -> Vec<String> {
        // A writer of another message is not read at all (`incompatible_schema`).
        match writer
            .parent_pool()
            .get_message_by_name(self.message.full_name())
        {
            Some(written) => numbers_beyond(&self.message, &written, ""),
            None => Vec::new(),
        }
    }
}

/// The paths of the fields of `writer` whose numbers `reader` lacks, looking inside messages
/// (also in repeated fields and map values). Bounded by the reader's depth: readers are not
/// recursive.
fn numbers_beyond(
    reader: &MessageDescriptor,
    writer: &MessageDescriptor,
    prefix: &str,
) -> Vec<String> {
    let mut beyond = Vec::new();
    for field in writer.fields() {
        let path = format!("{prefix}{}", field.name());
        let Some(known) = reader.get_field(field.number()) else {
            beyond.push(path);
            continue;
        };
        let (Kind::Message(inner_reader), Kind::Message(inner_writer)) =
            (known.kind(), field.kind())
        else {
            continue;
        };
        // Well-known types are values, not structs of their own fields.
        if inner_reader.full_name().starts_with("google.protobuf.") {
            continue;
        }
        let inner = if field.is_map() {
            format!("{path}{{}}")
        } else if field.is_list() {
            format!("{path}[]")
        } else {
            path
        };
        match (field.is_map(), known.is_map()) {
            (true, true) => {
                let (r, w) = (
                    inner_reader.map_entry_value_field(),
                    inner_writer.map_entry_value_field(),
                );
                if let (Kind::Message(r), Kind::Message(w)) = (r.kind(), w.kind())
                    && !r.full_name().starts_with("google.protobuf.")
                {
                    beyond.extend(numbers_beyond(&r, &w, &format!("{inner}.")));
                }
            }
            (false, false) => beyond.extend(numbers_beyond(
                &inner_reader,
                &inner_writer,
                &format!("{inner}."),
            )),
            _ => {}
        }
    }
    beyond
}

/// Message indexes nested deeper than this are refused (as framing no producer writes).
const MAX_DEPTH: usize = 8;

/// Which message of a schema's file: the indexes of the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MessagePath {
    len: u8,
    indexes: [u32; MAX_DEPTH],
}

impl MessagePath {
    fn indexes(&self) -> &[u32] {
        &self.indexes[..usize::from(self.len)]
    }

    /// The path of `message` in its file.
    fn of(message: &MessageDescriptor) -> Self {
        // A descriptor path alternates a field of the parent (4: a file's messages, 3: a
        // message's nested ones) with an index into it.
        let indexes: Vec<u32> = message
            .path()
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&i| i as u32)
            .collect();
        let mut path = MessagePath {
            len: indexes.len().min(MAX_DEPTH) as u8,
            indexes: [0; MAX_DEPTH],
        };
        for (slot, index) in path.indexes.iter_mut().zip(indexes) {
            *slot = index;
        }
        path
    }

    /// The framing bytes that name this path.
    fn encode(&self, out: &mut Vec<u8>) {
        if self.indexes() == [0] {
            out.push(0);
            return;
        }
        varint(u64::from(self.len) << 1, out);
        for &index in self.indexes() {
            varint(u64::from(index) << 1, out);
        }
    }

    /// The message of `file` this path names.
    fn message(&self, file: &FileDescriptor) -> Option<MessageDescriptor> {
        let (first, rest) = self.indexes().split_first()?;
        let mut message = file.messages().nth(*first as usize)?;
        for &index in rest {
            let child = message.child_messages().nth(index as usize)?;
            message = child;
        }
        Some(message)
    }
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

impl std::fmt::Display for MessagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.indexes())
    }
}

/// A payload's schema id, message path and where its body starts; `Err` says what is wrong
/// with the framing.
fn framing(payload: &[u8]) -> Result<(u32, MessagePath, usize), String> {
    let id = framed_id(payload)?;
    let mut wire = wire::WireReader::new(payload, (FRAMING_BYTES, payload.len()));
    if wire.at_end() {
        return Err(format!(
            "schema id {id}, then no message indexes: Protobuf framing has them before the body"
        ));
    }
    let bad = |e: String| format!("schema id {id}, then message indexes that do not read: {e}");
    let count = wire::zigzag64(wire.varint().map_err(bad)?);
    let mut path = MessagePath {
        len: 1,
        indexes: [0; MAX_DEPTH],
    };
    if count != 0 {
        if !(1..=MAX_DEPTH as i64).contains(&count) {
            return Err(bad(format!(
                "a count of {count} (1 to {MAX_DEPTH} expected)"
            )));
        }
        path.len = count as u8;
        for slot in &mut path.indexes[..count as usize] {
            let index = wire::zigzag64(wire.varint().map_err(bad)?);
            *slot = u32::try_from(index).map_err(|_| bad(format!("an index of {index}")))?;
        }
    }
    let start = payload.len() - wire.remaining();
    Ok((id, path, start))
}

/// Decodes Confluent-framed Protobuf payloads into the reader message's columns.
pub struct ProtobufDecoder {
    writers: Arc<WriterSchemas<ProtobufReader>>,
    columns: Node,
    /// The columns' schema.
    decoded: SchemaRef,
    /// What rows are handed on in: `decoded`, or a schema file's with its relaxed form,
    /// which `decoded` is cast to.
    declared: SchemaRef,
    relaxed: Option<SchemaRef>,
    /// How each writer schema's message is read, or why it cannot be.
    plans: HashMap<(u32, MessagePath), PlanOrWhy>,
    /// The plan the last message took, found without hashing.
    last_plan: Option<((u32, MessagePath), Arc<Plan>)>,
}

/// How a writer message is read, or the reason and detail of its messages' dead letters.
type PlanOrWhy = Result<Arc<Plan>, (Reason, String)>;

impl ProtobufDecoder {
    pub fn new(writers: Arc<WriterSchemas<ProtobufReader>>) -> Self {
        let reader = writers.reader();
        let columns = reader.columns().expect("checked when the reader was made");
        let decoded = Arc::new(Schema::new(columns.fields.clone()));
        let (declared, relaxed) = match &reader.schema_file {
            Some(schema) => {
                let declared = schema.arrow_schema();
                let relaxed = relaxed_schema(&declared);
                (declared, Some(relaxed))
            }
            None => (decoded.clone(), None),
        };
        Self {
            relaxed,
            declared,
            decoded,
            columns,
            writers,
            plans: HashMap::new(),
            last_plan: None,
        }
    }

    /// How messages at `path` of schema `id` are read; `Ok(Err(..))` why they cannot be.
    fn plan(&mut self, id: u32, path: MessagePath) -> Result<PlanOrWhy, Abandoned> {
        // Nearly every message names the writer message the one before it did.
        if let Some((last, plan)) = &self.last_plan
            && *last == (id, path)
        {
            return Ok(Ok(plan.clone()));
        }
        let plan = match self.plans.get(&(id, path)) {
            Some(plan) => plan.clone(),
            None => {
                let plan = self
                    .writers
                    .get(id)?
                    .usable(id)
                    .and_then(|file| self.plan_for(id, path, &file));
                self.plans.insert((id, path), plan.clone());
                plan
            }
        };
        if let Ok(usable) = &plan {
            self.last_plan = Some(((id, path), usable.clone()));
        }
        Ok(plan)
    }

    fn plan_for(&self, id: u32, path: MessagePath, file: &FileDescriptor) -> PlanOrWhy {
        let Some(writer) = path.message(file) else {
            return Err((
                Reason::ProtobufDecodeError,
                format!("schema id {id}: the message index {path} names no message of it"),
            ));
        };
        let reader = &self.writers.reader().message;
        if writer.full_name() != reader.full_name() {
            return Err((
                Reason::IncompatibleSchema,
                format!(
                    "schema id {id}: the message is a `{}`, and the pipeline reads `{}`",
                    writer.full_name(),
                    reader.full_name()
                ),
            ));
        }
        plan::plan(&self.columns, &writer)
            .map(Arc::new)
            .map_err(|why| {
                (
                    Reason::IncompatibleSchema,
                    format!("schema id {id} cannot be read as the pipeline's schema: {why}"),
                )
            })
    }
}

impl Decode for ProtobufDecoder {
    fn decode(&mut self, messages: &Messages) -> Result<Decoded, Abandoned> {
        let mut message_of_row = Vec::with_capacity(messages.len());
        let mut dead_letters = DeadLetters::default();
        for i in 0..messages.len() {
            let mut reject = |reason, detail| {
                dead_letters.push(messages.dead_letter(i, reason, detail));
            };
            let payload = match messages.payload(i) {
                Some(payload) if !payload.is_empty() => payload,
                _ => {
                    reject(Reason::EmptyMessage, "no payload".into());
                    continue;
                }
            };
            let (id, path, body) = match framing(payload) {
                Ok(framing) => framing,
                Err(why) => {
                    reject(Reason::NotConfluentFramed, why);
                    continue;
                }
            };
            let plan = match self.plan(id, path)? {
                Ok(plan) => plan,
                Err((reason, why)) => {
                    reject(reason, why);
                    continue;
                }
            };
            let rows = self.columns.rows;
            match walk::read_message(&mut self.columns, &plan, payload, &[(body, payload.len())]) {
                Ok(()) => message_of_row.push(i as u32),
                Err(why) => {
                    self.columns.truncate(rows);
                    reject(
                        Reason::ProtobufDecodeError,
                        format!("schema id {id}: {why}"),
                    );
                }
            }
        }
        let columns = self.columns.finish_columns();
        let decoded = RecordBatch::try_new_with_options(
            self.decoded.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(message_of_row.len())),
        )
        .expect("the columns are their schema's");
        let declared = match &self.relaxed {
            None => decoded,
            Some(relaxed) => {
                let (declared, lacking) = conform_batches(&self.declared, relaxed, &[decoded])
                    .expect("the columns were checked castable to the schema file's at start");
                reject_lacking(messages, &mut message_of_row, lacking, &mut dead_letters);
                declared
            }
        };
        Ok(Decoded {
            declared,
            message_of_row,
            dead_letters,
        })
    }
}

#[cfg(test)]
mod tests;
