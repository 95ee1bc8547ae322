//! Schema files: the declared shape of a pipeline's events.
//!
//! A schema file is TOML. Each `[[fields]]` entry has a `name`, a `type` and optionally
//! `required = true` (absent or null values are then dead-lettered). Types: `string`, `int32`,
//! `int64`, `float64`, `boolean`, `timestamp` (RFC 3339 string or epoch milliseconds),
//! `date` (`YYYY-MM-DD`), `struct` (with its own `fields`) and `list` (with `items`, a type).
//! See docs/schemas.md.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde::Deserialize;

use crate::metadata::{self, utc_millis};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("schema file {path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// A declared field type.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    String,
    Int32,
    Int64,
    Float64,
    Boolean,
    /// Millisecond precision, UTC.
    Timestamp,
    Date,
    Struct(Vec<FieldDef>),
    List(Box<FieldType>),
}

/// A declared field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    pub name: String,
    pub ty: FieldType,
    /// A required field must be present and not null.
    pub required: bool,
}

/// A loaded schema: the declared fields and their Arrow form.
#[derive(Debug, Clone)]
pub struct EventSchema {
    pub name: String,
    /// The fields as a schema file declares them; empty for a schema that came as Arrow
    /// (from a schema registry), whose [`EventSchema::arrow_schema`] is all there is.
    pub fields: Vec<FieldDef>,
    arrow: SchemaRef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: Option<String>,
    fields: Vec<FieldSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: Option<String>,
    #[serde(rename = "type")]
    ty: TypeName,
    #[serde(default)]
    required: bool,
    fields: Option<Vec<FieldSpec>>,
    items: Option<Box<FieldSpec>>,
    /// Free text for people; weir ignores it.
    #[serde(rename = "doc")]
    _doc: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum TypeName {
    String,
    Int32,
    #[serde(alias = "int", alias = "long")]
    Int64,
    #[serde(alias = "float", alias = "double")]
    Float64,
    #[serde(alias = "bool")]
    Boolean,
    Timestamp,
    Date,
    Struct,
    List,
}

impl EventSchema {
    /// Loads and checks a schema file.
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses schema text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SchemaError> {
        let file: SchemaFile = toml::from_str(text).map_err(|e| SchemaError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let fields = convert_fields(file.fields, path, "")?;
        if fields.is_empty() {
            return Err(SchemaError::Parse {
                path: path.to_owned(),
                message: "declares no fields".into(),
            });
        }
        for field in &fields {
            if metadata::is_metadata(&field.name) {
                return Err(SchemaError::Invalid {
                    path: path.to_owned(),
                    field: field.name.clone(),
                    message: "this name is reserved for the Kafka metadata column".into(),
                });
            }
        }
        let arrow = Arc::new(Schema::new(
            fields.iter().map(arrow_field).collect::<Vec<_>>(),
        ));
        let name = file.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Ok(Self {
            name,
            fields,
            arrow,
        })
    }

    /// A schema given in its Arrow form, e.g. derived from a registry's Avro schema.
    pub fn from_arrow(name: &str, arrow: SchemaRef) -> Result<Self, SchemaError> {
        if let Some(field) = arrow
            .fields()
            .iter()
            .find(|f| metadata::is_metadata(f.name()))
        {
            return Err(SchemaError::Invalid {
                path: PathBuf::from(name),
                field: field.name().clone(),
                message: "this name is reserved for the Kafka metadata column".into(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            fields: Vec::new(),
            arrow,
        })
    }

    /// The declared fields as an Arrow schema (without the metadata columns).
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow.clone()
    }

    /// The declared fields followed by the Kafka metadata columns: the source table of SQL.
    pub fn table_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .arrow
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(metadata::fields());
        Arc::new(Schema::new(fields))
    }

    /// The top-level field with this name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn convert_fields(
    specs: Vec<FieldSpec>,
    path: &Path,
    parent: &str,
) -> Result<Vec<FieldDef>, SchemaError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let Some(name) = spec.name.clone().filter(|n| !n.is_empty()) else {
            return Err(SchemaError::Invalid {
                path: path.to_owned(),
                field: format!("{parent}#{}", i + 1),
                message: "every field needs a non-empty `name`".into(),
            });
        };
        let full = if parent.is_empty() {
            name.clone()
        } else {
            format!("{parent}.{name}")
        };
        if !seen.insert(name.clone()) {
            return Err(invalid(path, &full, "declared twice"));
        }
        let required = spec.required;
        let ty = convert_type(spec, path, &full)?;
        out.push(FieldDef { name, ty, required });
    }
    Ok(out)
}

fn convert_type(spec: FieldSpec, path: &Path, full: &str) -> Result<FieldType, SchemaError> {
    let nested_only = |what: &str| {
        invalid(
            path,
            full,
            &format!(
                "`{what}` is only for a {}",
                if what == "fields" { "struct" } else { "list" }
            ),
        )
    };
    if !matches!(spec.ty, TypeName::Struct) && spec.fields.is_some() {
        return Err(nested_only("fields"));
    }
    if !matches!(spec.ty, TypeName::List) && spec.items.is_some() {
        return Err(nested_only("items"));
    }
    Ok(match spec.ty {
        TypeName::String => FieldType::String,
        TypeName::Int32 => FieldType::Int32,
        TypeName::Int64 => FieldType::Int64,
        TypeName::Float64 => FieldType::Float64,
        TypeName::Boolean => FieldType::Boolean,
        TypeName::Timestamp => FieldType::Timestamp,
        TypeName::Date => FieldType::Date,
        TypeName::Struct => {
            let fields = spec
                .fields
                .ok_or_else(|| invalid(path, full, "a struct needs `fields`"))?;
            if fields.is_empty() {
                return Err(invalid(path, full, "a struct needs at least one field"));
            }
            FieldType::Struct(convert_fields(fields, path, full)?)
        }
        TypeName::List => {
            let items = spec.items.ok_or_else(|| {
                invalid(
                    path,
                    full,
                    "a list needs `items`, e.g. items = { type = \"string\" }",
                )
            })?;
            let item_path = format!("{full}[]");
            FieldType::List(Box::new(convert_type(*items, path, &item_path)?))
        }
    })
}

fn invalid(path: &Path, field: &str, message: &str) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_owned(),
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn arrow_field(def: &FieldDef) -> Field {
    Field::new(&def.name, arrow_type(&def.ty), !def.required)
}

fn arrow_type(ty: &FieldType) -> DataType {
    match ty {
        FieldType::String => DataType::Utf8,
        FieldType::Int32 => DataType::Int32,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float64 => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Timestamp => utc_millis(),
        FieldType::Date => DataType::Date32,
        FieldType::Struct(fields) => DataType::Struct(Fields::from(
            fields.iter().map(arrow_field).collect::<Vec<_>>(),
        )),
        FieldType::List(item) => {
            DataType::List(Arc::new(Field::new("item", arrow_type(item), true)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EventSchema, SchemaError> {
        EventSchema::parse(text, Path::new("events.toml"))
    }

    #[test]
    fn loads_nested_types() {
        let schema = parse(
            r#"
            name = "clicks"
            [[fields]]
            name = "id"
            type = "string"
            required = true
            [[fields]]
            name = "device"
            type = "struct"
            fields = [ { name = "os", type = "string" }, { name = "mobile", type = "bool" } ]
            [[fields]]
            name = "tags"
            type = "list"
            items = { type = "string" }
            [[fields]]
            name = "ts"
            type = "timestamp"
            "#,
        )
        .unwrap();
        let arrow = schema.arrow_schema();
        assert_eq!(arrow.fields().len(), 4);
        assert!(!arrow.field(0).is_nullable());
        assert!(matches!(arrow.field(1).data_type(), DataType::Struct(f) if f.len() == 2));
        assert!(matches!(arrow.field(2).data_type(), DataType::List(_)));
        assert_eq!(arrow.field(3).data_type(), &utc_millis());
        assert_eq!(schema.table_schema().fields().len(), 9);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[[fields]]\nname = \"a\"\ntype = \"string\"\nnulable = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("events.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("nulable"), "{err}");
    }

    #[test]
    fn unknown_type_lists_the_expected_ones() {
        let err = parse("[[fields]]\nname = \"a\"\ntype = \"varchar\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("varchar") && err.contains("timestamp"),
            "{err}"
        );
    }

    #[test]
    fn rejects_incomplete_nested_types_and_reserved_names() {
        let err = parse("[[fields]]\nname = \"s\"\ntype = \"struct\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("field `s`: a struct needs `fields`"),
            "{err}"
        );
        let err = parse("[[fields]]\nname = \"l\"\ntype = \"list\"\n").unwrap_err();
        assert!(err.to_string().contains("needs `items`"), "{err}");
        let err = parse("[[fields]]\nname = \"_offset\"\ntype = \"int64\"\n").unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        let err = parse(
            "[[fields]]\nname = \"a\"\ntype = \"string\"\n[[fields]]\nname = \"a\"\ntype = \"int64\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("declared twice"), "{err}");
    }
}
