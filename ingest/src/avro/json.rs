//! JSON objects written as Confluent-framed Avro of a given schema: how `weir sql run` and
//! `weir sql test` take their readable samples and golden-test rows for an Avro pipeline.
//!
//! A tool, not the data path: one JSON value tree per line is fine here. Values are what a
//! person writes: timestamps as RFC 3339 text or epoch numbers in the logical type's unit,
//! dates as `YYYY-MM-DD`, decimals as text or numbers, enum symbols and UUIDs as text,
//! bytes as text (each character one byte, as Avro's JSON encoding has it). A field left
//! out takes the schema's default; a union takes its first branch the value fits.

use std::collections::HashMap;

use serde_json::Value;

/// Writes JSON objects as framed Avro of one schema.
pub struct JsonToAvro {
    schema: Value,
    id: u32,
    /// Named types (records, enums, fixed) by full name.
    named: HashMap<String, Value>,
}

impl JsonToAvro {
    /// An encoder for `schema` (Avro schema JSON), framing messages with schema `id`.
    pub fn new(schema: &str, id: u32) -> Result<Self, String> {
        let schema: Value = serde_json::from_str(schema)
            .map_err(|e| format!("the Avro schema is not JSON: {e}"))?;
        let mut named = HashMap::new();
        collect_named(&schema, "", &mut named);
        Ok(Self { schema, id, named })
    }

    /// `line`, a JSON object, as a framed message; `Err` names the field and what it expected.
    pub fn encode(&self, line: &str) -> Result<Vec<u8>, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("not one JSON object: {e}"))?;
        let mut out = vec![0];
        out.extend_from_slice(&self.id.to_be_bytes());
        self.write(&self.schema, "", &value, "", &mut out)?;
        Ok(out)
    }

    fn write(
        &self,
        schema: &Value,
        namespace: &str,
        value: &Value,
        path: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let expected = |what: &str| {
            let at = if path.is_empty() { "the event" } else { path };
            format!("`{at}`: expected {what}, found {value}")
        };
        match schema {
            Value::Array(branches) => {
                for (index, branch) in branches.iter().enumerate() {
                    let mut attempt = Vec::new();
                    if self
                        .write(branch, namespace, value, path, &mut attempt)
                        .is_ok()
                    {
                        write_long(out, index as i64);
                        out.extend(attempt);
                        return Ok(());
                    }
                }
                Err(expected(&format!("one of the union's types {schema}")))
            }
            Value::String(name) => match name.as_str() {
                "null" => value
                    .is_null()
                    .then_some(())
                    .ok_or_else(|| expected("null")),
                "boolean" => {
                    let b = value.as_bool().ok_or_else(|| expected("true or false"))?;
                    out.push(u8::from(b));
                    Ok(())
                }
                "int" | "long" => {
                    let n = value.as_i64().ok_or_else(|| expected("an integer"))?;
                    if name == "int" && i32::try_from(n).is_err() {
                        return Err(expected("a 32-bit integer"));
                    }
                    write_long(out, n);
                    Ok(())
                }
                "float" => {
                    let n = value.as_f64().ok_or_else(|| expected("a number"))?;
                    out.extend_from_slice(&(n as f32).to_le_bytes());
                    Ok(())
                }
                "double" => {
                    let n = value.as_f64().ok_or_else(|| expected("a number"))?;
                    out.extend_from_slice(&n.to_le_bytes());
                    Ok(())
                }
                "string" => {
                    let s = value.as_str().ok_or_else(|| expected("a string"))?;
                    write_bytes(out, s.as_bytes());
                    Ok(())
                }
                "bytes" => {
                    let bytes = latin1(value).ok_or_else(|| expected("a string of bytes"))?;
                    write_bytes(out, &bytes);
                    Ok(())
                }
                reference => {
                    let full = full_name(reference, namespace);
                    let named = self
                        .named
                        .get(&full)
                        .or_else(|| self.named.get(reference))
                        .ok_or_else(|| format!("the schema names an unknown type `{reference}`"))?;
                    self.write(named, namespace, value, path, out)
                }
            },
            Value::Object(object) => {
                let ty = object.get("type").cloned().unwrap_or(Value::Null);
                if let Some(logical) = object.get("logicalType").and_then(Value::as_str)
                    && let Some(written) = logical_value(logical, object, value)
                {
                    let written = written.map_err(|what| expected(&what))?;
                    // A fixed is its own schema: written as the fixed, without the logical type.
                    let underlying = match ty.as_str() {
                        Some("fixed") => {
                            let mut fixed = object.clone();
                            fixed.remove("logicalType");
                            Value::Object(fixed)
                        }
                        _ => ty,
                    };
                    return self.write(&underlying, namespace, &written, path, out);
                }
                let inner_namespace = object
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(namespace);
                match ty.as_str() {
                    Some("record") => {
                        let fields = value.as_object().ok_or_else(|| expected("an object"))?;
                        let declared = object.get("fields").and_then(Value::as_array);
                        for field in declared.into_iter().flatten() {
                            let name = field["name"].as_str().unwrap_or_default();
                            let field_path = if path.is_empty() {
                                name.to_owned()
                            } else {
                                format!("{path}.{name}")
                            };
                            let given = match fields.get(name) {
                                Some(v) => v,
                                None => field.get("default").ok_or_else(|| {
                                    format!(
                                        "`{field_path}`: missing, and the schema gives no default"
                                    )
                                })?,
                            };
                            self.write(&field["type"], inner_namespace, given, &field_path, out)?;
                        }
                        Ok(())
                    }
                    Some("enum") => {
                        let symbol = value.as_str().ok_or_else(|| expected("a symbol"))?;
                        let symbols = object.get("symbols").and_then(Value::as_array);
                        let index = symbols
                            .into_iter()
                            .flatten()
                            .position(|s| s.as_str() == Some(symbol))
                            .ok_or_else(|| expected(&format!("one of {}", object["symbols"])))?;
                        write_long(out, index as i64);
                        Ok(())
                    }
                    Some("array") => {
                        let items = value.as_array().ok_or_else(|| expected("an array"))?;
                        if !items.is_empty() {
                            write_long(out, items.len() as i64);
                            for (i, item) in items.iter().enumerate() {
                                let item_path = format!("{path}[{i}]");
                                self.write(&object["items"], namespace, item, &item_path, out)?;
                            }
                        }
                        write_long(out, 0);
                        Ok(())
                    }
                    Some("map") => {
                        let entries = value.as_object().ok_or_else(|| expected("an object"))?;
                        if !entries.is_empty() {
                            write_long(out, entries.len() as i64);
                            for (key, item) in entries {
                                write_bytes(out, key.as_bytes());
                                let item_path = format!("{path}.{key}");
                                self.write(&object["values"], namespace, item, &item_path, out)?;
                            }
                        }
                        write_long(out, 0);
                        Ok(())
                    }
                    Some("fixed") => {
                        let bytes = latin1(value).ok_or_else(|| expected("a string of bytes"))?;
                        let size = object.get("size").and_then(Value::as_u64).unwrap_or(0);
                        if bytes.len() as u64 != size {
                            return Err(expected(&format!("exactly {size} bytes")));
                        }
                        out.extend_from_slice(&bytes);
                        Ok(())
                    }
                    _ => self.write(&ty, namespace, value, path, out),
                }
            }
            _ => Err(format!("the schema has an unknown type {schema}")),
        }
    }
}

/// For a logical type, the value its underlying type takes: `None` when the logical type is
/// not one this knows (the value is then written as the underlying type), `Some(Err(what))`
/// when the value does not fit.
fn logical_value(
    logical: &str,
    schema: &serde_json::Map<String, Value>,
    value: &Value,
) -> Option<Result<Value, String>> {
    let unit = match logical {
        "timestamp-millis" | "local-timestamp-millis" => 1_000,
        "timestamp-micros" | "local-timestamp-micros" => 1_000_000,
        "timestamp-nanos" | "local-timestamp-nanos" => 1_000_000_000,
        "date" => {
            return Some(match value {
                Value::String(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map(|d| {
                        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
                        Value::from((d - epoch).num_days())
                    })
                    .map_err(|_| "a date as YYYY-MM-DD".to_owned()),
                other => Ok(other.clone()),
            });
        }
        "decimal" => return Some(decimal(schema, value)),
        _ => return None,
    };
    Some(match value {
        Value::String(text) => {
            let local = logical.starts_with("local-");
            let parsed = if local {
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|t| t.and_utc())
                    .ok()
            } else {
                chrono::DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|t| t.to_utc())
            };
            parsed
                .and_then(|t| {
                    let nanos = t.timestamp_nanos_opt()?;
                    Some(Value::from(nanos / (1_000_000_000 / unit)))
                })
                .ok_or_else(|| {
                    format!(
                        "a {logical} as {} text or a number",
                        if local {
                            "YYYY-MM-DDTHH:MM:SS"
                        } else {
                            "RFC 3339"
                        }
                    )
                })
        }
        other => Ok(other.clone()),
    })
}

/// A decimal's value (text or number) as the bytes of its unscaled two's-complement integer,
/// as a string of Latin-1 characters (how `bytes` and `fixed` take bytes here).
fn decimal(schema: &serde_json::Map<String, Value>, value: &Value) -> Result<Value, String> {
    let scale = schema.get("scale").and_then(Value::as_u64).unwrap_or(0) as usize;
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("a decimal as text or a number".into()),
    };
    let wrong = || format!("a decimal with at most {scale} digits after the point");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if fraction.len() > scale || whole.is_empty() && fraction.is_empty() {
        return Err(wrong());
    }
    let unscaled = format!("{whole}{fraction:0<scale$}");
    let mut n: i128 = unscaled.parse().map_err(|_| wrong())?;
    if negative {
        n = -n;
    }
    let bytes = n.to_be_bytes();
    // The shortest form that keeps the sign.
    let mut start = 0;
    while start < 15
        && ((bytes[start] == 0 && bytes[start + 1] < 0x80)
            || (bytes[start] == 0xff && bytes[start + 1] >= 0x80))
    {
        start += 1;
    }
    let mut unscaled_bytes = bytes[start..].to_vec();
    if let Some(size) = schema.get("size").and_then(Value::as_u64) {
        let fill = if negative { 0xff } else { 0 };
        while (unscaled_bytes.len() as u64) < size {
            unscaled_bytes.insert(0, fill);
        }
    }
    Ok(Value::String(
        unscaled_bytes.iter().map(|&b| char::from(b)).collect(),
    ))
}

/// A string whose characters are all below U+0100, as the bytes they stand for.
fn latin1(value: &Value) -> Option<Vec<u8>> {
    value
        .as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

pub(super) fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

pub(super) fn collect_named(schema: &Value, namespace: &str, named: &mut HashMap<String, Value>) {
    match schema {
        Value::Array(branches) => {
            for branch in branches {
                collect_named(branch, namespace, named);
            }
        }
        Value::Object(object) => {
            let namespace = object
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            if let (Some("record" | "enum" | "fixed"), Some(name)) = (
                object.get("type").and_then(Value::as_str),
                object.get("name").and_then(Value::as_str),
            ) {
                named.insert(full_name(name, namespace), schema.clone());
            }
            let nested = object
                .get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|f| &f["type"])
                .chain(
                    ["items", "values", "type"]
                        .iter()
                        .filter_map(|k| object.get(*k).filter(|v| !v.is_string())),
                );
            for inner in nested {
                collect_named(inner, namespace, named);
            }
        }
        _ => {}
    }
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut zigzag = ((v << 1) ^ (v >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}
