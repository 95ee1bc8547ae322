//! Rows as a schema file declares them: the columns a registry format's decoder made, cast to
//! the file's types, with the rows that leave a `required` field null set apart (they become
//! `missing_field` dead letters). Avro and Protobuf topics read with a schema file share it.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, MapArray, RecordBatch, StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use weir_schemas::{DeadLetters, Messages, Reason};

/// The metadata key arrow-avro marks logical types with.
const LOGICAL_TYPE: &str = "logicalType";

/// Whether arrow-avro marked `field` as an Avro `uuid` (its Arrow form is 16 bytes).
pub(crate) fn is_uuid(field: &Field) -> bool {
    field
        .metadata()
        .get(LOGICAL_TYPE)
        .is_some_and(|t| t == "uuid")
}

/// Whether a decoded column of type `decoded` can be made the file's `declared` field.
pub fn check_castable(decoded: &Schema, declared: &Schema) -> Result<(), String> {
    for (from, to) in decoded.fields().iter().zip(declared.fields()) {
        castable(from, to.data_type(), to.name())?;
    }
    Ok(())
}

fn castable(from: &Field, to: &DataType, path: &str) -> Result<(), String> {
    let ok = match (from.data_type(), to) {
        (_, DataType::Utf8) if is_uuid(from) => true,
        (DataType::Struct(from), DataType::Struct(to)) => {
            for (from, to) in from.iter().zip(to) {
                castable(from, to.data_type(), &format!("{path}.{}", to.name()))?;
            }
            true
        }
        (DataType::List(from), DataType::List(to)) => {
            return castable(from, to.data_type(), &format!("{path}[]"));
        }
        (from, to) => arrow::compute::can_cast_types(from, to),
    };
    match ok {
        true => Ok(()),
        false => Err(format!(
            "field `{path}`: the registry's schema gives {}, which cannot be read as the schema \
             file's {to}",
            from.data_type()
        )),
    }
}

/// `declared` with every field nullable, at every depth: what rows are conformed to first,
/// since which rows lack a required field is only known then.
pub(crate) fn relaxed_schema(declared: &Schema) -> SchemaRef {
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
pub(crate) fn conform_batches(
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

/// Makes the messages of the rows `lacking` a required field (row, field) dead letters and
/// takes those rows out of `message_of_row`.
pub(crate) fn reject_lacking(
    messages: &Messages,
    message_of_row: &mut Vec<u32>,
    lacking: Vec<(usize, String)>,
    dead_letters: &mut DeadLetters,
) {
    if lacking.is_empty() {
        return;
    }
    let mut dropped = vec![false; message_of_row.len()];
    for (row, field) in lacking {
        dropped[row] = true;
        let detail = format!("field `{field}` is null, and the schema file requires it");
        dead_letters.push(messages.dead_letter(
            message_of_row[row] as usize,
            Reason::MissingField,
            detail,
        ));
    }
    let mut row = 0;
    message_of_row.retain(|_| {
        row += 1;
        !dropped[row - 1]
    });
}
