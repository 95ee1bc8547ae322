//! The Protobuf schema of a schema file's fields: what a producer of the same events in
//! Protobuf would register. `weir generate --format protobuf` writes its events with it, so
//! that JSON and Protobuf topics carry the same content.

use std::fmt::Write;

use weir_schemas::schema::{FieldDef, FieldType};

/// `.proto` source of message `name` with `fields`, numbered in order: optional scalars are
/// `optional` (NULL when absent), timestamps `google.protobuf.Timestamp`, dates an `int32` of
/// days since the epoch, structs nested messages, lists repeated fields. `Err` names a field
/// Protobuf cannot declare (a list of lists).
pub fn proto_schema_of(name: &str, fields: &[FieldDef]) -> Result<String, String> {
    let mut text =
        String::from("syntax = \"proto3\";\n\nimport \"google/protobuf/timestamp.proto\";\n\n");
    message(&mut text, &message_name(name), fields, 0)?;
    Ok(text)
}

fn message(out: &mut String, name: &str, fields: &[FieldDef], depth: usize) -> Result<(), String> {
    let indent = "  ".repeat(depth);
    writeln!(out, "{indent}message {name} {{").expect("writing to a String");
    for (number, field) in fields.iter().enumerate() {
        let (repeated, ty) = match &field.ty {
            FieldType::List(item) if matches!(item.as_ref(), FieldType::List(_)) => {
                return Err(format!(
                    "field `{}`: a list of lists has no Protobuf form",
                    field.name
                ));
            }
            FieldType::List(item) => (true, item.as_ref()),
            other => (false, other),
        };
        let type_name = match ty {
            FieldType::String => "string".to_owned(),
            FieldType::Int32 | FieldType::Date => "int32".to_owned(),
            FieldType::Int64 => "int64".to_owned(),
            FieldType::Float64 => "double".to_owned(),
            FieldType::Boolean => "bool".to_owned(),
            FieldType::Timestamp => "google.protobuf.Timestamp".to_owned(),
            FieldType::Struct(inner) => {
                let nested = message_name(&field.name);
                message(out, &nested, inner, depth + 1)?;
                nested
            }
            FieldType::List(_) => unreachable!("lists of lists are refused above"),
        };
        let scalar = !matches!(ty, FieldType::Timestamp | FieldType::Struct(_));
        let label = match (repeated, scalar && !field.required) {
            (true, _) => "repeated ",
            (false, true) => "optional ",
            (false, false) => "",
        };
        writeln!(
            out,
            "{indent}  {label}{type_name} {} = {};",
            field_name(&field.name),
            number + 1
        )
        .expect("writing to a String");
    }
    writeln!(out, "{indent}}}").expect("writing to a String");
    Ok(())
}

/// `name` as a Protobuf identifier: letters, digits and `_`, starting with a letter.
fn field_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'f');
    }
    out
}

/// `name` in UpperCamelCase, as messages are named.
fn message_name(name: &str) -> String {
    field_name(name)
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().expect("not empty").to_ascii_uppercase();
            std::iter::once(first).chain(chars).collect::<String>()
        })
        .collect()
}
