//! A schema file as the reader of an Avro topic: the datasets get the file's columns, in its
//! order and types, whatever versions the producers register.
//!
//! The registry's schema is cut down to the fields the file declares (nested records too),
//! in the file's order, each keeping its Avro type and the record names Avro's resolution
//! matches writers by. arrow-avro reads every writer version as that cut-down schema, and
//! each column is then cast to the file's type (a `long` of epoch milliseconds to a
//! `timestamp`, an enum or a UUID to a `string`, micros to millis).

use std::collections::HashMap;

use serde_json::{Map, Value};
use weir_schemas::schema::{FieldDef, FieldType};

use super::json::{collect_named, full_name};

/// `avro` (the registry's record schema, JSON text) cut down to `fields`, as JSON text;
/// `Err` names a declared field the schema lacks or cannot give.
pub fn project(avro: &str, fields: &[FieldDef]) -> Result<String, String> {
    let schema: Value =
        serde_json::from_str(avro).map_err(|e| format!("the Avro schema is not JSON: {e}"))?;
    let mut named = HashMap::new();
    collect_named(&schema, "", &mut named);
    let projected = Projection { named: &named }.record(&schema, "", fields, "")?;
    Ok(projected.to_string())
}

struct Projection<'a> {
    named: &'a HashMap<String, Value>,
}

impl Projection<'_> {
    /// `schema` as a record with only `fields`.
    fn record(
        &self,
        schema: &Value,
        namespace: &str,
        fields: &[FieldDef],
        path: &str,
    ) -> Result<Value, String> {
        let schema = self.resolve(schema, namespace);
        let Some(record) = schema
            .as_object()
            .filter(|o| o.get("type").and_then(Value::as_str) == Some("record"))
        else {
            return Err(format!(
                "{}: the registry's schema has {schema} where the schema file declares a struct",
                at(path)
            ));
        };
        let namespace = record
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        let avro_fields = record
            .get("fields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut projected = Vec::with_capacity(fields.len());
        for field in fields {
            let field_path = join(path, &field.name);
            let Some(avro_field) = avro_fields
                .iter()
                .find(|f| f["name"].as_str() == Some(field.name.as_str()))
            else {
                return Err(format!(
                    "field `{field_path}` is in the schema file but not in the registry's schema"
                ));
            };
            let mut avro_field = avro_field.clone();
            let ty = self.field_type(&avro_field["type"], namespace, &field.ty, &field_path)?;
            avro_field["type"] = ty;
            projected.push(avro_field);
        }
        // Names and namespaces as written: arrow-avro matches writers' records by them.
        let mut out: Map<String, Value> = record.clone();
        out.insert("fields".into(), Value::Array(projected));
        Ok(Value::Object(out))
    }

    /// The Avro type of a field the file declares as `declared`: nested records and arrays
    /// of records are cut down too; unions keep their other branches.
    fn field_type(
        &self,
        avro: &Value,
        namespace: &str,
        declared: &FieldType,
        path: &str,
    ) -> Result<Value, String> {
        if let Value::Array(branches) = avro {
            return branches
                .iter()
                .map(|branch| match branch.as_str() {
                    Some("null") => Ok(branch.clone()),
                    _ => self.field_type(branch, namespace, declared, path),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
        match declared {
            FieldType::Struct(fields) => self.record(avro, namespace, fields, path),
            FieldType::List(item) if matches!(**item, FieldType::Struct(_)) => {
                let array = avro
                    .as_object()
                    .filter(|o| o.get("type").and_then(Value::as_str) == Some("array"));
                match array {
                    Some(array) => {
                        let mut array = array.clone();
                        let items = self.field_type(&array["items"], namespace, item, path)?;
                        array.insert("items".into(), items);
                        Ok(Value::Object(array))
                    }
                    // Not an array: the type check after says what it is instead.
                    None => Ok(avro.clone()),
                }
            }
            _ => Ok(avro.clone()),
        }
    }

    /// A named type's definition, for a reference to it.
    fn resolve(&self, schema: &Value, namespace: &str) -> Value {
        match schema.as_str() {
            Some(name) => self
                .named
                .get(&full_name(name, namespace))
                .or_else(|| self.named.get(name))
                .cloned()
                .unwrap_or_else(|| schema.clone()),
            None => schema.clone(),
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("field `{path}`")
    }
}
