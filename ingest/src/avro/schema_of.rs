//! The Avro schema of a schema file's fields: what a producer of the same events in Avro
//! would register. `weir generate --format avro` and the Avro benchmark write their events
//! with it, so that JSON and Avro topics carry the same content.

use serde_json::{Value, json};
use weir_schemas::schema::{FieldDef, FieldType};

/// The Avro record `name` with `fields`: optional fields are `["null", T]` defaulting to
/// null, timestamps `timestamp-millis`, dates `date`, structs nested records.
pub fn avro_schema_of(name: &str, fields: &[FieldDef]) -> String {
    record(&avro_name(name), fields).to_string()
}

fn record(name: &str, fields: &[FieldDef]) -> Value {
    let fields: Vec<Value> = fields
        .iter()
        .map(|field| {
            let ty = avro_type(&field.ty, &format!("{name}_{}", avro_name(&field.name)));
            if field.required {
                json!({ "name": field.name, "type": ty })
            } else {
                json!({ "name": field.name, "type": ["null", ty], "default": null })
            }
        })
        .collect();
    json!({ "type": "record", "name": name, "fields": fields })
}

fn avro_type(ty: &FieldType, name: &str) -> Value {
    match ty {
        FieldType::String => json!("string"),
        FieldType::Int32 => json!("int"),
        FieldType::Int64 => json!("long"),
        FieldType::Float64 => json!("double"),
        FieldType::Boolean => json!("boolean"),
        FieldType::Timestamp => json!({ "type": "long", "logicalType": "timestamp-millis" }),
        FieldType::Date => json!({ "type": "int", "logicalType": "date" }),
        FieldType::Struct(fields) => record(name, fields),
        // Schema files allow null list elements.
        FieldType::List(item) => {
            json!({ "type": "array", "items": ["null", avro_type(item, name)] })
        }
    }
}

/// `name` as an Avro name: letters, digits and `_`, not starting with a digit.
fn avro_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}
