//! From arrow-avro's Arrow form to the columns a pipeline hands on.
//!
//! Most Avro types keep the form arrow-avro gives them (decimals, maps, bytes, nested
//! records, micro- and nanosecond timestamps). A few are turned into what readers of the
//! datasets expect: enum symbols and UUIDs become strings, the event-time field becomes a
//! UTC millisecond timestamp (every event time in weir is), and Avro's field metadata is
//! dropped so that two writer versions give one Arrow schema. Types Parquet has no form for
//! are refused when the pipeline is built, naming the field.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use weir_schemas::metadata::utc_millis;

use crate::schema_file::is_uuid;

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
