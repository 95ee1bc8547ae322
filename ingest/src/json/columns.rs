//! Column buffers of the declared fields, filled value by value as payloads are read, cut
//! back when a payload turns out not to fit, and handed to Arrow without copying.
//!
//! arrow's own builders cannot be cut back, which is what reading each payload once needs: a
//! payload is only known to fit when its last byte is read, and by then its first fields are
//! written.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, ListArray, PrimitiveArray, StringArray,
    StructArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Field, Fields, Float64Type, Int32Type, Int64Type,
    TimestampMillisecondType,
};
use weir_schemas::schema::{FieldDef, FieldType};

/// The values of one field, for every row read so far.
pub(super) enum Column {
    String(Strings),
    Int32(Values<Int32Type>),
    Int64(Values<Int64Type>),
    Float64(Values<Float64Type>),
    Boolean(Booleans),
    /// Epoch milliseconds, UTC.
    Timestamp(Values<TimestampMillisecondType>),
    /// Days since the epoch.
    Date(Values<Date32Type>),
    Struct(Struct),
    List(List),
}

/// Which rows hold a value, one bit each.
pub(super) struct Validity(BooleanBufferBuilder);

impl Validity {
    fn new() -> Self {
        Self(BooleanBufferBuilder::new(0))
    }

    fn push(&mut self, valid: bool) {
        self.0.append(valid);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// The null buffer, or none when every row holds a value.
    fn finish(&mut self) -> Option<NullBuffer> {
        let nulls = NullBuffer::new(self.0.finish());
        (nulls.null_count() > 0).then_some(nulls)
    }
}

pub(super) struct Values<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    valid: Validity,
}

impl<T: ArrowPrimitiveType> Values<T> {
    fn new() -> Self {
        Self {
            values: Vec::new(),
            valid: Validity::new(),
        }
    }

    pub(super) fn push(&mut self, value: T::Native) {
        self.values.push(value);
        self.valid.push(true);
    }

    fn push_null(&mut self) {
        self.values.push(T::Native::default());
        self.valid.push(false);
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.valid.truncate(len);
    }

    fn finish(&mut self, data_type: &DataType) -> ArrayRef {
        let values = ScalarBuffer::from(std::mem::take(&mut self.values));
        Arc::new(
            PrimitiveArray::<T>::new(values, self.valid.finish()).with_data_type(data_type.clone()),
        )
    }
}

pub(super) struct Strings {
    /// Where each row's bytes end in `bytes`, after a leading 0.
    ends: Vec<i32>,
    bytes: Vec<u8>,
    valid: Validity,
}

/// A batch's strings of one column exceed what 32-bit offsets reach (2 GiB).
#[derive(Debug)]
pub(super) struct StringsFull;

impl Strings {
    fn new() -> Self {
        Self {
            ends: vec![0],
            bytes: Vec::new(),
            valid: Validity::new(),
        }
    }

    pub(super) fn push(&mut self, value: &str) -> Result<(), StringsFull> {
        let end = i32::try_from(self.bytes.len() + value.len()).map_err(|_| StringsFull)?;
        self.bytes.extend_from_slice(value.as_bytes());
        self.ends.push(end);
        self.valid.push(true);
        Ok(())
    }

    fn push_null(&mut self) {
        self.ends.push(*self.ends.last().expect("a leading 0"));
        self.valid.push(false);
    }

    fn truncate(&mut self, len: usize) {
        self.ends.truncate(len + 1);
        self.bytes.truncate(self.ends[len] as usize);
        self.valid.truncate(len);
    }

    fn finish(&mut self) -> ArrayRef {
        let ends = std::mem::replace(&mut self.ends, vec![0]);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(ends));
        let bytes = Buffer::from_vec(std::mem::take(&mut self.bytes));
        // SAFETY: every value pushed was a `&str`, so the bytes are UTF-8 and each offset
        // falls between two of its characters; offsets start at 0 and never decrease.
        Arc::new(unsafe { StringArray::new_unchecked(offsets, bytes, self.valid.finish()) })
    }
}

pub(super) struct Booleans {
    values: BooleanBufferBuilder,
    valid: Validity,
}

impl Booleans {
    pub(super) fn push(&mut self, value: bool) {
        self.values.append(value);
        self.valid.push(true);
    }
}

/// An object's declared fields, one column each.
pub(super) struct Struct {
    pub(super) names: Vec<String>,
    pub(super) required: Vec<bool>,
    pub(super) columns: Vec<Column>,
    valid: Validity,
    fields: Fields,
    /// Built only for wide objects, where comparing each name would cost more than a hash.
    index: Option<HashMap<String, usize>>,
}

/// More fields than this are found by hash rather than by comparing each name.
const SCAN_LIMIT: usize = 12;

impl Struct {
    pub(super) fn new(defs: &[FieldDef], fields: &Fields) -> Self {
        Self {
            names: defs.iter().map(|d| d.name.clone()).collect(),
            required: defs.iter().map(|d| d.required).collect(),
            columns: defs
                .iter()
                .zip(fields.iter())
                .map(|(def, field)| Column::new(&def.ty, field.data_type()))
                .collect(),
            valid: Validity::new(),
            fields: fields.clone(),
            index: (defs.len() > SCAN_LIMIT).then(|| {
                defs.iter()
                    .enumerate()
                    .map(|(i, d)| (d.name.clone(), i))
                    .collect()
            }),
        }
    }

    /// The index of the declared field `name`.
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.names.iter().position(|n| n == name),
        }
    }

    /// Rows read so far.
    pub(super) fn len(&self) -> usize {
        self.valid.len()
    }

    /// A row (an object) whose fields were all pushed.
    pub(super) fn push_valid(&mut self) {
        self.valid.push(true);
    }

    fn push_null(&mut self) {
        for column in &mut self.columns {
            column.push_null();
        }
        self.valid.push(false);
    }

    pub(super) fn truncate(&mut self, len: usize) {
        for column in &mut self.columns {
            column.truncate(len);
        }
        self.valid.truncate(len);
    }

    /// The columns read so far, leaving this empty for the next batch.
    pub(super) fn finish_columns(&mut self) -> Vec<ArrayRef> {
        self.valid.truncate(0);
        self.columns
            .iter_mut()
            .zip(self.fields.iter())
            .map(|(column, field)| column.finish(field.data_type()))
            .collect()
    }
}

pub(super) struct List {
    /// Where each row's items end, after a leading 0.
    ends: Vec<i32>,
    pub(super) items: Box<Column>,
    valid: Validity,
    field: Arc<Field>,
}

impl List {
    /// A row whose items were all pushed.
    pub(super) fn push_valid(&mut self) {
        // Item counts are bounded by the batch's bytes, which `Strings` keeps under 2 GiB.
        self.ends.push(self.items.len() as i32);
        self.valid.push(true);
    }
}

impl Column {
    fn new(ty: &FieldType, data_type: &DataType) -> Self {
        match (ty, data_type) {
            (FieldType::String, _) => Column::String(Strings::new()),
            (FieldType::Int32, _) => Column::Int32(Values::new()),
            (FieldType::Int64, _) => Column::Int64(Values::new()),
            (FieldType::Float64, _) => Column::Float64(Values::new()),
            (FieldType::Boolean, _) => Column::Boolean(Booleans {
                values: BooleanBufferBuilder::new(0),
                valid: Validity::new(),
            }),
            (FieldType::Timestamp, _) => Column::Timestamp(Values::new()),
            (FieldType::Date, _) => Column::Date(Values::new()),
            (FieldType::Struct(defs), DataType::Struct(fields)) => {
                Column::Struct(Struct::new(defs, fields))
            }
            (FieldType::List(item), DataType::List(field)) => Column::List(List {
                ends: vec![0],
                items: Box::new(Column::new(item, field.data_type())),
                valid: Validity::new(),
                field: field.clone(),
            }),
            (ty, data_type) => unreachable!("{ty:?} is declared as {data_type}"),
        }
    }

    /// Rows read so far.
    pub(super) fn len(&self) -> usize {
        match self {
            Column::String(c) => c.valid.len(),
            Column::Int32(c) => c.valid.len(),
            Column::Int64(c) => c.valid.len(),
            Column::Timestamp(c) => c.valid.len(),
            Column::Float64(c) => c.valid.len(),
            Column::Boolean(c) => c.valid.len(),
            Column::Date(c) => c.valid.len(),
            Column::Struct(c) => c.valid.len(),
            Column::List(c) => c.valid.len(),
        }
    }

    pub(super) fn push_null(&mut self) {
        match self {
            Column::String(c) => c.push_null(),
            Column::Int32(c) => c.push_null(),
            Column::Int64(c) => c.push_null(),
            Column::Timestamp(c) => c.push_null(),
            Column::Float64(c) => c.push_null(),
            Column::Boolean(c) => {
                c.values.append(false);
                c.valid.push(false);
            }
            Column::Date(c) => c.push_null(),
            Column::Struct(c) => c.push_null(),
            Column::List(c) => {
                c.ends.push(*c.ends.last().expect("a leading 0"));
                c.valid.push(false);
            }
        }
    }

    /// Keeps the first `len` rows.
    pub(super) fn truncate(&mut self, len: usize) {
        match self {
            Column::String(c) => c.truncate(len),
            Column::Int32(c) => c.truncate(len),
            Column::Int64(c) => c.truncate(len),
            Column::Timestamp(c) => c.truncate(len),
            Column::Float64(c) => c.truncate(len),
            Column::Boolean(c) => {
                c.values.truncate(len);
                c.valid.truncate(len);
            }
            Column::Date(c) => c.truncate(len),
            Column::Struct(c) => c.truncate(len),
            Column::List(c) => {
                c.ends.truncate(len + 1);
                c.items.truncate(c.ends[len] as usize);
                c.valid.truncate(len);
            }
        }
    }

    /// The rows read so far as an array of `data_type`, leaving the column empty.
    fn finish(&mut self, data_type: &DataType) -> ArrayRef {
        match self {
            Column::String(c) => c.finish(),
            Column::Int32(c) => c.finish(data_type),
            Column::Int64(c) => c.finish(data_type),
            Column::Timestamp(c) => c.finish(data_type),
            Column::Float64(c) => c.finish(data_type),
            Column::Date(c) => c.finish(data_type),
            Column::Boolean(c) => {
                let values = c.values.finish();
                Arc::new(BooleanArray::new(values, c.valid.finish()))
            }
            Column::Struct(c) => {
                let nulls = c.valid.finish();
                let columns = c
                    .columns
                    .iter_mut()
                    .zip(c.fields.iter())
                    .map(|(column, field)| column.finish(field.data_type()))
                    .collect();
                Arc::new(StructArray::new(c.fields.clone(), columns, nulls))
            }
            Column::List(c) => {
                let ends = std::mem::replace(&mut c.ends, vec![0]);
                let items = c.items.finish(c.field.data_type());
                Arc::new(ListArray::new(
                    c.field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(ends)),
                    items,
                    c.valid.finish(),
                ))
            }
        }
    }
}
