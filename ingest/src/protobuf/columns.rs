//! The reader message as Arrow columns: one [`Column`] per field, filled value by value as
//! messages are read, and handed on as arrays.
//!
//! Types follow the message: nested messages are structs, repeated fields lists, maps maps,
//! enums their value names (an unknown number as its decimal text), `google.protobuf.Timestamp`
//! a UTC timestamp (microseconds; milliseconds for the event time) and the wrapper types
//! (`Int64Value`, `StringValue`...) their value, NULL when absent. A field with presence
//! (a message, `optional`, a oneof member, proto2) is NULL when absent; any other takes its
//! type's default, as every Protobuf reader does.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, MapArray, StringArray, StructArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use weir_schemas::metadata::utc_millis;
use weir_schemas::schema::{FieldDef, FieldType};

pub(super) const TIMESTAMP: &str = "google.protobuf.Timestamp";

/// The value type a wrapper message (`google.protobuf.Int64Value`...) holds, if it is one.
pub(super) fn wrapped_kind(message: &MessageDescriptor) -> Option<Kind> {
    const WRAPPERS: [&str; 9] = [
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    ];
    let name = message.full_name().strip_prefix("google.protobuf.")?;
    WRAPPERS
        .contains(&name)
        .then(|| message.get_field(1).map(|f| f.kind()))
        .flatten()
}

/// Messages the columns give a form of their own, not a struct.
pub(super) fn is_special(message: &MessageDescriptor) -> bool {
    message.full_name() == TIMESTAMP || wrapped_kind(message).is_some()
}

/// A message's fields as columns, and the rows read into them.
pub(super) struct Node {
    pub(super) columns: Vec<Column>,
    pub(super) fields: Fields,
    /// What each field's occurrences in the message being read left, until its end.
    pub(super) slots: Vec<Slot>,
    /// The columns of each oneof's members: of those, only the last one sent is set.
    pub(super) oneofs: Vec<Vec<usize>>,
    pub(super) rows: usize,
}

/// One field's column.
pub(super) struct Column {
    pub(super) descriptor: FieldDescriptor,
    /// The field's path from the top message, for messages: `items[].count`.
    pub(super) path: String,
    /// Absent is NULL (else the type's default).
    pub(super) presence: bool,
    pub(super) required: bool,
    /// A list (or a map): `offsets` has a leading 0 and one end per row.
    pub(super) repeated: bool,
    offsets: Vec<i32>,
    pub(super) values: Values,
    /// One per row, when `presence`.
    validity: Vec<bool>,
}

/// What a singular field's occurrences left: the last scalar, or the ranges of a
/// length-delimited value (the last one's for text and bytes, every one's for a message,
/// which the wire format merges).
#[derive(Default)]
pub(super) struct Slot {
    pub(super) state: SlotState,
    pub(super) raw: u64,
    pub(super) ranges: Vec<(usize, usize)>,
    /// When the field was last met in the message, counting fields: the last oneof member
    /// sent is the one set.
    pub(super) seen: usize,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    #[default]
    Unset,
    Raw,
    Ranges,
}

impl Slot {
    pub(super) fn clear(&mut self) {
        self.state = SlotState::Unset;
        self.ranges.clear();
    }
}

/// Variable-length values: offsets (with a leading 0) into one buffer.
pub(super) struct ByteValues {
    offsets: Vec<i32>,
    data: Vec<u8>,
}

impl Default for ByteValues {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            data: Vec::new(),
        }
    }
}

impl ByteValues {
    fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.close();
    }

    fn close(&mut self) {
        let end = i32::try_from(self.data.len()).expect("a batch holds less than 2 GiB of text");
        self.offsets.push(end);
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.data.truncate(self.offsets[len] as usize);
    }

    fn take(&mut self) -> (OffsetBuffer<i32>, Buffer) {
        let taken = std::mem::take(self);
        (
            OffsetBuffer::new(ScalarBuffer::from(taken.offsets)),
            Buffer::from(taken.data),
        )
    }
}

/// An enum's value names by number, sorted: a binary search per value, no hashing.
pub(super) struct EnumNames {
    names: Vec<(i32, String)>,
    default: String,
}

impl EnumNames {
    fn new(descriptor: &EnumDescriptor) -> Self {
        let mut names: Vec<(i32, String)> = descriptor
            .values()
            .map(|v| (v.number(), v.name().to_owned()))
            .collect();
        // Aliases (allow_alias) share a number: the first declared name stands for it.
        names.sort_by_key(|(number, _)| *number);
        names.dedup_by_key(|(number, _)| *number);
        Self {
            names,
            default: descriptor.default_value().name().to_owned(),
        }
    }

    fn name(&self, number: i32) -> Option<&str> {
        self.names
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .map(|i| self.names[i].1.as_str())
    }
}

/// A column's values, in the reader's types.
pub(super) enum Values {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    UInt32(Vec<u32>),
    UInt64(Vec<u64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    Text(ByteValues),
    Binary(ByteValues),
    Enum(ByteValues, Arc<EnumNames>),
    /// Since the epoch, in microseconds (or milliseconds when `millis`).
    Timestamp {
        values: Vec<i64>,
        millis: bool,
    },
    /// Epoch milliseconds from an integer field: the event time.
    EpochMillis(Vec<i64>),
    Message(Box<Node>),
}

/// How a writer's scalar is laid out and what it means, for conversions into the reader's
/// column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    Enum,
}

impl Scalar {
    pub(super) fn of(kind: &Kind) -> Option<Scalar> {
        Some(match kind {
            Kind::Double => Scalar::Double,
            Kind::Float => Scalar::Float,
            Kind::Int32 => Scalar::Int32,
            Kind::Int64 => Scalar::Int64,
            Kind::Uint32 => Scalar::Uint32,
            Kind::Uint64 => Scalar::Uint64,
            Kind::Sint32 => Scalar::Sint32,
            Kind::Sint64 => Scalar::Sint64,
            Kind::Fixed32 => Scalar::Fixed32,
            Kind::Fixed64 => Scalar::Fixed64,
            Kind::Sfixed32 => Scalar::Sfixed32,
            Kind::Sfixed64 => Scalar::Sfixed64,
            Kind::Bool => Scalar::Bool,
            Kind::Enum(_) => Scalar::Enum,
            Kind::String | Kind::Bytes | Kind::Message(_) => return None,
        })
    }

    pub(super) fn wire(self) -> super::wire::Wire {
        use super::wire::Wire;
        match self {
            Scalar::Double | Scalar::Fixed64 | Scalar::Sfixed64 => Wire::Fixed64,
            Scalar::Float | Scalar::Fixed32 | Scalar::Sfixed32 => Wire::Fixed32,
            _ => Wire::Varint,
        }
    }

    /// The value as a signed integer, for the kinds that have one.
    fn signed(self, raw: u64) -> i64 {
        match self {
            Scalar::Int32 | Scalar::Enum => i64::from(raw as i32),
            Scalar::Sfixed32 => i64::from(raw as u32 as i32),
            Scalar::Sint32 => i64::from(super::wire::zigzag32(raw)),
            Scalar::Sint64 => super::wire::zigzag64(raw),
            Scalar::Uint32 | Scalar::Fixed32 => i64::from(raw as u32),
            _ => raw as i64,
        }
    }
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::Int32(v) => v.len(),
            Values::Int64(v) | Values::EpochMillis(v) => v.len(),
            Values::UInt32(v) => v.len(),
            Values::UInt64(v) => v.len(),
            Values::Float32(v) => v.len(),
            Values::Float64(v) => v.len(),
            Values::Text(v) | Values::Binary(v) | Values::Enum(v, _) => v.len(),
            Values::Timestamp { values, .. } => values.len(),
            Values::Message(node) => node.rows,
        }
    }

    /// A scalar the writer wrote as `writer` (checked convertible when the plan was made).
    pub(super) fn push_scalar(&mut self, writer: Scalar, raw: u64) {
        match self {
            Values::Bool(v) => v.push(raw != 0),
            Values::Int32(v) => v.push(writer.signed(raw) as i32),
            Values::Int64(v) | Values::EpochMillis(v) => v.push(writer.signed(raw)),
            Values::UInt32(v) => v.push(raw as u32),
            Values::UInt64(v) => v.push(match writer {
                Scalar::Uint32 | Scalar::Fixed32 => u64::from(raw as u32),
                _ => raw,
            }),
            Values::Float32(v) => v.push(f32::from_bits(raw as u32)),
            Values::Float64(v) => v.push(match writer {
                Scalar::Float => f64::from(f32::from_bits(raw as u32)),
                _ => f64::from_bits(raw),
            }),
            Values::Enum(v, names) => {
                let number = writer.signed(raw) as i32;
                match names.name(number) {
                    Some(name) => v.push(name.as_bytes()),
                    None => {
                        write!(v.data, "{number}").expect("writing to memory");
                        v.close();
                    }
                }
            }
            Values::Text(_) | Values::Binary(_) | Values::Timestamp { .. } | Values::Message(_) => {
                unreachable!("plans read scalars into scalar columns")
            }
        }
    }

    /// Text or bytes; text is checked to be UTF-8.
    pub(super) fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Values::Text(v) => {
                if let Err(e) = std::str::from_utf8(bytes) {
                    return Err(format!("the text is not UTF-8: {e}"));
                }
                v.push(bytes);
            }
            Values::Binary(v) => v.push(bytes),
            _ => unreachable!("plans read text and bytes into text and bytes columns"),
        }
        Ok(())
    }

    /// A `google.protobuf.Timestamp`'s seconds and nanoseconds.
    pub(super) fn push_timestamp(&mut self, seconds: i64, nanos: i32) -> Result<(), String> {
        // What RFC 3339 can write: years 1 to 9999.
        const SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;
        if !SECONDS.contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
            return Err(format!(
                "a google.protobuf.Timestamp of {seconds} s and {nanos} ns is outside years \
                 1 to 9999"
            ));
        }
        let Values::Timestamp { values, millis } = self else {
            unreachable!("plans read timestamps into timestamp columns")
        };
        values.push(match millis {
            true => seconds * 1_000 + i64::from(nanos) / 1_000_000,
            false => seconds * 1_000_000 + i64::from(nanos) / 1_000,
        });
        Ok(())
    }

    /// The value an absent field without presence has, or the placeholder under a NULL.
    fn push_default(&mut self) {
        match self {
            Values::Bool(v) => v.push(false),
            Values::Int32(v) => v.push(0),
            Values::Int64(v) | Values::EpochMillis(v) => v.push(0),
            Values::UInt32(v) => v.push(0),
            Values::UInt64(v) => v.push(0),
            Values::Float32(v) => v.push(0.0),
            Values::Float64(v) => v.push(0.0),
            Values::Text(v) | Values::Binary(v) => v.close(),
            Values::Enum(v, names) => v.push(names.default.as_bytes()),
            Values::Timestamp { values, .. } => values.push(0),
            Values::Message(node) => node.push_absent(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Values::Bool(v) => v.truncate(len),
            Values::Int32(v) => v.truncate(len),
            Values::Int64(v) | Values::EpochMillis(v) => v.truncate(len),
            Values::UInt32(v) => v.truncate(len),
            Values::UInt64(v) => v.truncate(len),
            Values::Float32(v) => v.truncate(len),
            Values::Float64(v) => v.truncate(len),
            Values::Text(v) | Values::Binary(v) | Values::Enum(v, _) => v.truncate(len),
            Values::Timestamp { values, .. } => values.truncate(len),
            Values::Message(node) => node.truncate(len),
        }
    }

    /// The values as an array of `data_type`, with `nulls`; empties the column.
    fn finish(&mut self, data_type: &DataType, nulls: Option<NullBuffer>) -> ArrayRef {
        fn take<T>(v: &mut Vec<T>) -> ScalarBuffer<T>
        where
            T: arrow::datatypes::ArrowNativeType,
        {
            ScalarBuffer::from(std::mem::take(v))
        }
        match self {
            Values::Bool(v) => Arc::new(BooleanArray::new(
                BooleanBuffer::from(std::mem::take(v)),
                nulls,
            )),
            Values::Int32(v) => Arc::new(Int32Array::new(take(v), nulls)),
            Values::Int64(v) => Arc::new(Int64Array::new(take(v), nulls)),
            Values::UInt32(v) => Arc::new(UInt32Array::new(take(v), nulls)),
            Values::UInt64(v) => Arc::new(UInt64Array::new(take(v), nulls)),
            Values::Float32(v) => Arc::new(Float32Array::new(take(v), nulls)),
            Values::Float64(v) => Arc::new(Float64Array::new(take(v), nulls)),
            Values::Text(v) | Values::Enum(v, _) => {
                let (offsets, data) = v.take();
                Arc::new(
                    StringArray::try_new(offsets, data, nulls)
                        .expect("each value was checked to be UTF-8"),
                )
            }
            Values::Binary(v) => {
                let (offsets, data) = v.take();
                Arc::new(BinaryArray::new(offsets, data, nulls))
            }
            Values::Timestamp {
                values,
                millis: false,
            } => Arc::new(TimestampMicrosecondArray::new(take(values), nulls).with_timezone("UTC")),
            Values::Timestamp {
                values,
                millis: true,
            }
            | Values::EpochMillis(values) => {
                Arc::new(TimestampMillisecondArray::new(take(values), nulls).with_timezone("UTC"))
            }
            Values::Message(node) => {
                let DataType::Struct(fields) = data_type else {
                    unreachable!("message columns are structs")
                };
                let columns = node.finish_columns();
                Arc::new(
                    StructArray::try_new(fields.clone(), columns, nulls)
                        .expect("the columns match the struct's fields"),
                )
            }
        }
    }
}

impl Column {
    /// Ends a row's list.
    pub(super) fn close_list(&mut self) {
        let end = i32::try_from(self.values.len()).expect("a batch holds less than 2^31 items");
        self.offsets.push(end);
    }

    /// The field was absent from the row: NULL, or the default.
    pub(super) fn push_absent(&mut self) {
        if self.repeated {
            self.close_list();
            return;
        }
        self.values.push_default();
        if self.presence {
            self.validity.push(false);
        }
    }

    /// A present singular value was pushed into `values`.
    pub(super) fn mark_present(&mut self) {
        if self.presence {
            self.validity.push(true);
        }
    }

    fn truncate(&mut self, rows: usize) {
        if self.repeated {
            self.offsets.truncate(rows + 1);
            let items = self.offsets[rows] as usize;
            self.values.truncate(items);
        } else {
            self.values.truncate(rows);
            self.validity.truncate(rows);
        }
    }

    fn finish(&mut self, field: &Field) -> ArrayRef {
        if !self.repeated {
            let nulls = self
                .presence
                .then(|| NullBuffer::from(std::mem::take(&mut self.validity)));
            return self.values.finish(field.data_type(), nulls);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(
            &mut self.offsets,
            vec![0],
        )));
        match field.data_type() {
            DataType::List(item) => {
                let items = self.values.finish(item.data_type(), None);
                Arc::new(
                    ListArray::try_new(item.clone(), offsets, items, None)
                        .expect("offsets end at the items' length"),
                )
            }
            DataType::Map(entries, sorted) => {
                let items = self.values.finish(entries.data_type(), None);
                let entries_array = items
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .expect("map entries are a struct")
                    .clone();
                Arc::new(
                    MapArray::try_new(entries.clone(), offsets, entries_array, None, *sorted)
                        .expect("offsets end at the entries' length"),
                )
            }
            other => unreachable!("a repeated field's column is a list or a map, not {other}"),
        }
    }
}

impl Node {
    /// The columns of `message`; `event_time` names the top-level field read as weir's
    /// event time, and `selected` (a schema file's fields) which fields are columns, in what
    /// order, when not all of them. `Err` names a field that has no column form.
    pub(super) fn new(
        message: &MessageDescriptor,
        event_time: Option<&str>,
        selected: Option<&[FieldDef]>,
    ) -> Result<Self, String> {
        Self::nested(message, "", &mut Vec::new(), event_time, selected)
    }

    fn nested(
        message: &MessageDescriptor,
        prefix: &str,
        enclosing: &mut Vec<String>,
        event_time: Option<&str>,
        selected: Option<&[FieldDef]>,
    ) -> Result<Self, String> {
        enclosing.push(message.full_name().to_owned());
        let fields: Vec<(FieldDescriptor, Option<&[FieldDef]>)> = match selected {
            None => message.fields().map(|field| (field, None)).collect(),
            Some(defs) => defs
                .iter()
                .map(|def| {
                    let field = message.get_field_by_name(&def.name).ok_or_else(|| {
                        format!(
                            "field `{prefix}{}`: message `{}` has no such field",
                            def.name,
                            message.full_name()
                        )
                    })?;
                    Ok((field, nested_fields(&def.ty)))
                })
                .collect::<Result<_, String>>()?,
        };
        let mut columns = Vec::new();
        let mut arrow_fields = Vec::new();
        for (field, selected) in fields {
            let path = format!("{prefix}{}", field.name());
            let is_event_time = event_time == Some(field.name());
            let (column, arrow) = column(field, path, enclosing, is_event_time, selected)?;
            columns.push(column);
            arrow_fields.push(arrow);
        }
        enclosing.pop();
        if columns.is_empty() {
            return Err(format!(
                "message `{}` has no fields: Parquet cannot hold an empty struct",
                message.full_name()
            ));
        }
        // Each oneof's members among the columns.
        let oneofs = message
            .oneofs()
            .filter(|oneof| !oneof.is_synthetic())
            .map(|oneof| {
                oneof
                    .fields()
                    .filter_map(|member| {
                        columns
                            .iter()
                            .position(|c: &Column| c.descriptor.number() == member.number())
                    })
                    .collect()
            })
            .collect();
        Ok(Self {
            oneofs,
            slots: columns.iter().map(|_| Slot::default()).collect(),
            columns,
            fields: Fields::from(arrow_fields),
            rows: 0,
        })
    }

    /// A row with every field absent.
    fn push_absent(&mut self) {
        for column in &mut self.columns {
            column.push_absent();
        }
        self.rows += 1;
    }

    /// Back to `rows` rows: what a message that failed half-way left is dropped.
    pub(super) fn truncate(&mut self, rows: usize) {
        for column in &mut self.columns {
            column.truncate(rows);
        }
        self.rows = rows;
    }

    /// The rows as arrays, one per field; empties the node.
    pub(super) fn finish_columns(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        self.columns
            .iter_mut()
            .zip(self.fields.iter())
            .map(|(column, field)| column.finish(field))
            .collect()
    }
}

/// The fields a schema file selects inside a field of type `ty`: a struct's, or the items'
/// of a list of structs.
fn nested_fields(ty: &FieldType) -> Option<&[FieldDef]> {
    match ty {
        FieldType::Struct(fields) => Some(fields),
        FieldType::List(item) => nested_fields(item),
        _ => None,
    }
}

/// The column of `field` (of its `selected` fields, for a message), and its Arrow field.
fn column(
    field: FieldDescriptor,
    path: String,
    enclosing: &mut Vec<String>,
    is_event_time: bool,
    selected: Option<&[FieldDef]>,
) -> Result<(Column, FieldRef), String> {
    if field.is_group() {
        return Err(format!(
            "field `{path}` is a proto2 group: declare it as a message field"
        ));
    }
    let repeated = field.is_list() || field.is_map();
    if is_event_time && repeated {
        return Err(format!("the event-time field `{path}` is repeated"));
    }
    let (values, data_type) = if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map's kind is its entry message")
        };
        let node = Node::nested(&entry, &format!("{path}."), enclosing, None, None)?;
        let entries = Field::new("entries", DataType::Struct(node.fields.clone()), false);
        (
            Values::Message(Box::new(node)),
            DataType::Map(Arc::new(entries), false),
        )
    } else {
        let item_path = if repeated {
            format!("{path}[]")
        } else {
            path.clone()
        };
        let (values, data_type) = values_of(
            &field.kind(),
            &item_path,
            enclosing,
            is_event_time,
            selected,
        )?;
        match repeated {
            true => (
                values,
                DataType::List(Arc::new(Field::new("item", data_type, false))),
            ),
            false => (values, data_type),
        }
    };
    // A map's key is never absent: a missing one is the type's default.
    let is_map_key = field.parent_message().is_map_entry() && field.number() == 1;
    let presence = !repeated && !is_map_key && field.supports_presence();
    let arrow = Arc::new(Field::new(field.name(), data_type, presence));
    let column = Column {
        path,
        presence,
        required: field.is_required(),
        repeated,
        offsets: if repeated { vec![0] } else { Vec::new() },
        values,
        validity: Vec::new(),
        descriptor: field,
    };
    Ok((column, arrow))
}

/// The values of one item of a field of `kind`, and their Arrow type.
fn values_of(
    kind: &Kind,
    path: &str,
    enclosing: &mut Vec<String>,
    is_event_time: bool,
    selected: Option<&[FieldDef]>,
) -> Result<(Values, DataType), String> {
    if is_event_time {
        return match kind {
            Kind::Message(m) if m.full_name() == TIMESTAMP => Ok((
                Values::Timestamp {
                    values: Vec::new(),
                    millis: true,
                },
                utc_millis(),
            )),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                Ok((Values::EpochMillis(Vec::new()), utc_millis()))
            }
            other => Err(format!(
                "the event-time field `{path}` is Protobuf {}: expected a \
                 google.protobuf.Timestamp (or an int64 of epoch milliseconds)",
                kind_name(other)
            )),
        };
    }
    Ok(match kind {
        Kind::Double => (Values::Float64(Vec::new()), DataType::Float64),
        Kind::Float => (Values::Float32(Vec::new()), DataType::Float32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => (Values::Int32(Vec::new()), DataType::Int32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (Values::Int64(Vec::new()), DataType::Int64),
        Kind::Uint32 | Kind::Fixed32 => (Values::UInt32(Vec::new()), DataType::UInt32),
        Kind::Uint64 | Kind::Fixed64 => (Values::UInt64(Vec::new()), DataType::UInt64),
        Kind::Bool => (Values::Bool(Vec::new()), DataType::Boolean),
        Kind::String => (Values::Text(ByteValues::default()), DataType::Utf8),
        Kind::Bytes => (Values::Binary(ByteValues::default()), DataType::Binary),
        Kind::Enum(e) => (
            Values::Enum(ByteValues::default(), Arc::new(EnumNames::new(e))),
            DataType::Utf8,
        ),
        Kind::Message(m) if m.full_name() == TIMESTAMP => (
            Values::Timestamp {
                values: Vec::new(),
                millis: false,
            },
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        Kind::Message(m) => match wrapped_kind(m) {
            Some(inner) => values_of(&inner, path, enclosing, false, None)?,
            None => {
                if enclosing.iter().any(|name| name == m.full_name()) {
                    return Err(format!(
                        "field `{path}`: message `{}` contains itself, and Parquet has no \
                         recursive types",
                        m.full_name()
                    ));
                }
                let node = Node::nested(m, &format!("{path}."), enclosing, None, selected)?;
                let data_type = DataType::Struct(node.fields.clone());
                (Values::Message(Box::new(node)), data_type)
            }
        },
    })
}

/// How a field's type is spelled in a `.proto` file, for messages.
pub(super) fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().into(),
        Kind::Enum(e) => e.full_name().into(),
    }
}
