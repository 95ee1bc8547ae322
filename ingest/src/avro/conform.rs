//! From arrow-avro's Arrow form to the columns a pipeline hands on.
//!
//! Most Avro types keep the form arrow-avro gives them (decimals, maps, bytes, nested
//! records, micro- and nanosecond timestamps). A few are turned into what readers of the
//! datasets expect: enum symbols and UUIDs become strings, the event-time field becomes a
//! UTC millisecond timestamp (every event time in weir is), and Avro's field metadata is
//! dropped so that two writer versions give one Arrow schema. Types Parquet has no form for
//! are refused when the pipeline is built, naming the field.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, MapArray, RecordBatch, StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use weir_schemas::metadata::utc_millis;

/// The metadata key arrow-avro marks logical types with.
const LOGICAL_TYPE: &str = "logicalType";

/// The columns rows of `avro` (the reader schema's Arrow form) are handed on in, with
/// `event_time` as weir's event-time type; `Err` names a field that cannot be written.
pub fn declared_schema(avro: &Schema, event_time: &str) -> Result<SchemaRef, String> {
    let mut fields = Vec::with_capacity(avro.fields().len());
    for field in avro.fields() {
        let mut declared = declared_field(field, field.name())?;
        if field.name() == event_time {
            let ty = match field.data_type() {
                DataType::Timestamp(_, Some(_)) | DataType::Int64 => utc_millis(),
                other => {
                    return Err(format!(
                        "the event-time field `{event_time}` is Avro {}: expected a \
                         timestamp-millis or timestamp-micros (or a long of epoch \
                         milliseconds)",
                        avro_name(other)
                    ));
                }
            };
            declared = declared.with_data_type(ty);
        }
        fields.push(declared);
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn declared_field(field: &Field, path: &str) -> Result<Field, String> {
    let ty = if is_uuid(field) {
        DataType::Utf8
    } else {
        declared_type(field.data_type(), path)?
    };
    Ok(Field::new(field.name(), ty, field.is_nullable()))
}

fn declared_type(ty: &DataType, path: &str) -> Result<DataType, String> {
    Ok(match ty {
        DataType::Dictionary(_, values) if values.as_ref() == &DataType::Utf8 => DataType::Utf8,
        DataType::Struct(fields) => DataType::Struct(declared_fields(fields, path)?),
        DataType::List(item) => {
            DataType::List(Arc::new(declared_field(item, &format!("{path}[]"))?))
        }
        DataType::Map(entries, sorted) => {
            DataType::Map(Arc::new(declared_field(entries, path)?), *sorted)
        }
        DataType::Union(..) => {
            return Err(format!(
                "field `{path}`: a union of several non-null types has no Parquet form; \
                 declare it as [\"null\", T] or as a record with one optional field per type"
            ));
        }
        DataType::Interval(_) => {
            return Err(format!(
                "field `{path}`: Avro's duration type has no Parquet form weir writes; \
                 declare it as a long of milliseconds or as fixed(12) bytes"
            ));
        }
        other => other.clone(),
    })
}

fn declared_fields(fields: &Fields, path: &str) -> Result<Fields, String> {
    fields
        .iter()
        .map(|f| declared_field(f, &format!("{path}.{}", f.name())))
        .collect::<Result<Vec<_>, _>>()
        .map(Fields::from)
}

/// How an Arrow type arrow-avro made is spelled in Avro, for messages.
fn avro_name(ty: &DataType) -> String {
    match ty {
        DataType::Utf8 | DataType::Utf8View => "string".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "long".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Binary => "bytes".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Millisecond, None) => "local-timestamp-millis".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "local-timestamp-micros".into(),
        DataType::Struct(_) => "record".into(),
        DataType::List(_) => "array".into(),
        DataType::Map(..) => "map".into(),
        other => other.to_string(),
    }
}

/// Whether arrow-avro marked `field` as an Avro `uuid` (its Arrow form is 16 bytes).
pub(super) fn is_uuid(field: &Field) -> bool {
    field
        .metadata()
        .get(LOGICAL_TYPE)
        .is_some_and(|t| t == "uuid")
}

/// `declared` with every field nullable, at every depth: what rows are conformed to first,
/// since which rows lack a required field is only known then.
pub(super) fn relaxed_schema(declared: &Schema) -> SchemaRef {
    let fields: Vec<Field> = declared
        .fields()
        .iter()
        .map(|f| relax(f).with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batches` (arrow-avro's form) as one batch of `declared` (by way of `relaxed`, its
/// [`relaxed_schema`]), without the rows that lack a field `declared` requires: those are
/// returned apart, each with the first such field.
pub(super) fn conform_batches(
    declared: &SchemaRef,
    relaxed: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(RecordBatch, Vec<(usize, String)>), ArrowError> {
    let conformed = batches
        .iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(relaxed.fields())
                .map(|(column, field)| conform(column, field.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(relaxed.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = match conformed.len() {
        0 => RecordBatch::new_empty(relaxed.clone()),
        1 => conformed.into_iter().next().expect("one"),
        _ => arrow::compute::concat_batches(relaxed, &conformed)?,
    };
    let mut missing = vec![None; rows.num_rows()];
    for (column, field) in rows.columns().iter().zip(declared.fields()) {
        find_missing(column, field, None, field.name(), &mut missing);
    }
    let lacking: Vec<(usize, String)> = missing
        .iter()
        .enumerate()
        .filter_map(|(row, field)| field.clone().map(|f| (row, f)))
        .collect();
    if !lacking.is_empty() {
        let keep: arrow::array::BooleanArray = missing.iter().map(|m| Some(m.is_none())).collect();
        rows = arrow::compute::filter_record_batch(&rows, &keep)?;
    }
    let columns = rows
        .columns()
        .iter()
        .zip(declared.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((RecordBatch::try_new(declared.clone(), columns)?, lacking))
}

/// `field` with every field inside it nullable too.
fn relax(field: &Field) -> Field {
    let ty = match field.data_type() {
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| relax(f).with_nullable(true))
                .collect::<Vec<_>>()
                .into(),
        ),
        DataType::List(item) => DataType::List(Arc::new(relax(item).with_nullable(true))),
        other => other.clone(),
    };
    field.clone().with_data_type(ty)
}

/// Marks in `missing` each row (valid where `present` says, if given) whose value of the
/// non-nullable `field` is null, with the field's path; recurses into structs.
fn find_missing(
    column: &ArrayRef,
    field: &Field,
    present: Option<&arrow::buffer::NullBuffer>,
    path: &str,
    missing: &mut [Option<String>],
) {
    if !field.is_nullable() && column.null_count() > 0 {
        for (row, slot) in missing.iter_mut().enumerate() {
            let parent_valid = present.is_none_or(|p| p.is_valid(row));
            if slot.is_none() && parent_valid && column.is_null(row) {
                *slot = Some(path.to_owned());
            }
        }
    }
    if let DataType::Struct(fields) = field.data_type() {
        let array = column.as_struct();
        // Present where the parent is and the struct itself is.
        let valid = arrow::buffer::NullBuffer::union(present, array.nulls());
        for (child, child_field) in array.columns().iter().zip(fields) {
            let child_path = format!("{path}.{}", child_field.name());
            find_missing(child, child_field, valid.as_ref(), &child_path, missing);
        }
    }
}

fn conform(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    Ok(match (array.data_type(), to) {
        (DataType::FixedSizeBinary(16), DataType::Utf8) => uuid_text(array),
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let array = array.as_struct();
            let columns = array
                .columns()
                .iter()
                .zip(fields)
                .map(|(column, field)| conform(column, field.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                array.nulls().cloned(),
            )?)
        }
        (DataType::List(_), DataType::List(item)) => {
            let array = array.as_list::<i32>();
            Arc::new(ListArray::try_new(
                item.clone(),
                array.offsets().clone(),
                conform(array.values(), item.data_type())?,
                array.nulls().cloned(),
            )?)
        }
        (DataType::Map(_, _), DataType::Map(entries, sorted)) => {
            let array = array.as_map();
            let entries_array: ArrayRef = Arc::new(array.entries().clone());
            let conformed = conform(&entries_array, entries.data_type())?;
            Arc::new(MapArray::try_new(
                entries.clone() as FieldRef,
                array.offsets().clone(),
                conformed.as_struct().clone(),
                array.nulls().cloned(),
                *sorted,
            )?)
        }
        _ => arrow::compute::cast(array, to)?,
    })
}

/// 16-byte UUIDs as their canonical text, `8-4-4-4-12` lowercase hex.
fn uuid_text(array: &ArrayRef) -> ArrayRef {
    let bytes = array.as_fixed_size_binary();
    let mut text = StringBuilder::with_capacity(bytes.len(), bytes.len() * 36);
    for value in bytes.iter() {
        match value {
            Some(value) => {
                let uuid = uuid::Uuid::from_slice(value).expect("16 bytes");
                text.append_value(
                    uuid.hyphenated()
                        .encode_lower(&mut uuid::Uuid::encode_buffer()),
                );
            }
            None => text.append_null(),
        }
    }
    Arc::new(text.finish())
}
