//! How the messages of one writer schema are read into the reader's columns: for each field
//! number, the column it fills and how its value is laid out as the writer wrote it.
//!
//! Fields are matched by number, as Protobuf readers do. A field the writer declares in a
//! type the reader's column cannot hold every value of (a narrowing, text from bytes, a
//! scalar from a message) makes the writer schema incompatible; a widening (int32 to int64,
//! uint32 to uint64 or int64, float to double) is read as the wider type. Fields the writer
//! lacks are read as the reader declares them, fields only the writer has are skipped.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::columns::{Node, Scalar, TIMESTAMP, Values, is_special, kind_name, wrapped_kind};

/// How one field's values are read off the wire.
pub(super) enum Read {
    Scalar(Scalar),
    Text,
    Binary,
    Timestamp,
    /// A wrapper message (`google.protobuf.Int64Value`...) around a value read so.
    Wrapped(Box<Read>),
    Message(Box<Plan>),
}

/// Field numbers up to this are looked up by index; larger ones (rare) by search.
const DENSE_NUMBERS: usize = 1024;

pub(super) struct Plan {
    /// Column index + 1 by field number, 0 for none.
    dense: Vec<u16>,
    /// (number, column index) for numbers past `DENSE_NUMBERS`, sorted.
    sparse: Vec<(u32, usize)>,
    /// How each of the node's columns is read, by column index.
    pub(super) reads: Vec<Read>,
}

impl Plan {
    /// The column field `number` fills, if the reader has one.
    #[inline]
    pub(super) fn column_of(&self, number: u32) -> Option<usize> {
        match self.dense.get(number as usize) {
            Some(0) => None,
            Some(&i) => Some(usize::from(i) - 1),
            None => self
                .sparse
                .binary_search_by_key(&number, |(n, _)| *n)
                .ok()
                .map(|k| self.sparse[k].1),
        }
    }
}

/// The plan for reading messages `writer` wrote into `node` (the reader's columns); `Err`
/// names the first field whose writer type the reader cannot hold.
pub(super) fn plan(node: &Node, writer: &MessageDescriptor) -> Result<Plan, String> {
    let mut dense = vec![0u16; 0];
    let mut sparse = Vec::new();
    let mut reads = Vec::with_capacity(node.columns.len());
    for (i, column) in node.columns.iter().enumerate() {
        let number = column.descriptor.number();
        let read = match writer.get_field(number) {
            Some(written) => read_for(column, &written)?,
            None => read_for(column, &column.descriptor)?,
        };
        reads.push(read);
        if (number as usize) < DENSE_NUMBERS {
            if dense.len() <= number as usize {
                dense.resize(number as usize + 1, 0);
            }
            dense[number as usize] = u16::try_from(i + 1).expect("fewer than 65535 fields");
        } else {
            sparse.push((number, i));
        }
    }
    sparse.sort_unstable();
    Ok(Plan {
        dense,
        sparse,
        reads,
    })
}

fn read_for(column: &super::columns::Column, written: &FieldDescriptor) -> Result<Read, String> {
    let reader = &column.descriptor;
    let path = &column.path;
    let incompatible = || {
        format!(
            "field `{path}` (number {}) is written as {}{} and read as {}{}",
            reader.number(),
            cardinality(written),
            kind_name(&written.kind()),
            cardinality(reader),
            kind_name(&reader.kind()),
        )
    };
    if reader.is_map() != written.is_map() || reader.is_list() != written.is_list() {
        return Err(incompatible());
    }
    if written.is_group() {
        return Err(format!(
            "field `{path}` (number {}) is written as a proto2 group",
            reader.number()
        ));
    }
    match (reader.kind(), written.kind()) {
        (Kind::Message(r), Kind::Message(w)) => {
            if r.full_name() == TIMESTAMP {
                return match w.full_name() == TIMESTAMP {
                    true => Ok(Read::Timestamp),
                    false => Err(incompatible()),
                };
            }
            if let Some(inner) = wrapped_kind(&r) {
                return match (r.full_name() == w.full_name(), wrapped_kind(&w)) {
                    (true, Some(_)) => Ok(Read::Wrapped(Box::new(
                        scalar_read(&inner, &inner).expect("a wrapper's value is a scalar"),
                    ))),
                    _ => Err(incompatible()),
                };
            }
            if is_special(&w) {
                return Err(incompatible());
            }
            let Values::Message(child) = &column.values else {
                unreachable!("a message field's column holds a message")
            };
            Ok(Read::Message(Box::new(plan(child, &w)?)))
        }
        (r, w) => scalar_read(&r, &w).ok_or_else(incompatible),
    }
}

/// How a scalar the writer declares as `written` is read into a column of `reader`'s type,
/// if every value fits.
fn scalar_read(reader: &Kind, written: &Kind) -> Option<Read> {
    match (reader, written) {
        (Kind::String, Kind::String) => return Some(Read::Text),
        (Kind::Bytes, Kind::String | Kind::Bytes) => return Some(Read::Binary),
        (Kind::Enum(_), Kind::Enum(_)) => return Some(Read::Scalar(Scalar::Enum)),
        (Kind::Enum(_), _) | (_, Kind::Enum(_)) => return None,
        _ => {}
    }
    let r = Scalar::of(reader)?;
    let w = Scalar::of(written)?;
    let holds = match (range(r), range(w)) {
        (a, b) if a == b => true,
        (Range::I64, Range::I32 | Range::U32) | (Range::U64, Range::U32) => true,
        (Range::F64, Range::F32) => true,
        _ => false,
    };
    holds.then_some(Read::Scalar(w))
}

/// The values a scalar type can hold.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Range {
    Bool,
    I32,
    I64,
    U32,
    U64,
    F32,
    F64,
}

fn range(scalar: Scalar) -> Range {
    match scalar {
        Scalar::Bool => Range::Bool,
        Scalar::Int32 | Scalar::Sint32 | Scalar::Sfixed32 | Scalar::Enum => Range::I32,
        Scalar::Int64 | Scalar::Sint64 | Scalar::Sfixed64 => Range::I64,
        Scalar::Uint32 | Scalar::Fixed32 => Range::U32,
        Scalar::Uint64 | Scalar::Fixed64 => Range::U64,
        Scalar::Float => Range::F32,
        Scalar::Double => Range::F64,
    }
}

fn cardinality(field: &FieldDescriptor) -> &'static str {
    if field.is_map() {
        "a map of "
    } else if field.is_list() {
        "repeated "
    } else {
        ""
    }
}
