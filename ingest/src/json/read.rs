//! Reads one JSON payload into the declared columns in a single pass, or says precisely why
//! it does not fit.
//!
//! serde_json drives visitors that check each value against its field's declared type and
//! append it to that field's column; nothing is materialised in between. A payload that
//! fails half-way is cut back out of the columns by the caller. What is accepted, and the
//! values written, are what arrow-json would make of the payload: timestamps and dates go
//! through the same parsers, a repeated key's last value counts.

use std::cell::RefCell;
use std::fmt;

use arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
use arrow::datatypes::Date32Type;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use weir_schemas::Reason;

use super::columns::{Column, Struct};

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

/// Reads `payload` as one row appended to `root`'s columns. On `Err` the columns may hold
/// part of the row: the caller cuts them back to where they were.
pub(super) fn read_row(root: &mut Struct, payload: &[u8]) -> Result<(), Rejection> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection {
            reason: Reason::EmptyMessage,
            detail: "the message value is empty".into(),
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| Rejection {
        reason: Reason::NotUtf8,
        detail: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
    })?;
    let failure = RefCell::new(None);
    // From a `str` checked once: strings need no second UTF-8 check.
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = ValueSeed {
        target: Target::Root(root),
        required: true,
        path: &Path::Root,
        failure: &failure,
    };
    match seed.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        Err(e) => Err(failure.into_inner().unwrap_or_else(|| Rejection {
            reason: Reason::InvalidJson,
            detail: e.to_string(),
        })),
    }
}

/// Where in the message a value sits; rendered only when something is wrong.
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// The column a value goes to.
enum Target<'a> {
    /// The top level: must be an object, a non-object is `not_an_object`.
    Root(&'a mut Struct),
    Value(&'a mut Column),
}

struct ValueSeed<'a, 'p> {
    target: Target<'a>,
    required: bool,
    path: &'p Path<'p>,
    failure: &'p RefCell<Option<Rejection>>,
}

fn expected(column: &Column) -> &'static str {
    match column {
        Column::String(_) => "a string",
        Column::Int32(_) => "a 32-bit integer",
        Column::Int64(_) => "a 64-bit integer",
        Column::Float64(_) => "a number",
        Column::Boolean(_) => "true or false",
        Column::Timestamp(_) => "an RFC 3339 timestamp string or epoch milliseconds",
        Column::Date(_) => "a date string YYYY-MM-DD",
        Column::Struct(_) => "an object",
        Column::List(_) => "an array",
    }
}

/// How to say that a value does not fit, kept apart from the column it was meant for so
/// that the column can be written to meanwhile.
#[derive(Clone, Copy)]
struct Fail<'p> {
    path: &'p Path<'p>,
    failure: &'p RefCell<Option<Rejection>>,
    /// What the value should have been; `None` at the top level, which must be an object.
    expected: Option<&'static str>,
}

impl Fail<'_> {
    fn reject<E: de::Error>(self, reason: Reason, detail: String) -> E {
        let error = E::custom(&detail);
        self.failure
            .borrow_mut()
            .get_or_insert(Rejection { reason, detail });
        error
    }

    fn wrong<E: de::Error>(self, found: &str) -> E {
        match self.expected {
            None => self.reject(
                Reason::NotAnObject,
                format!("expected a JSON object, found {found}"),
            ),
            Some(expected) => self.reject(
                Reason::WrongType,
                format!("field `{}`: expected {expected}, found {found}", self.path),
            ),
        }
    }
}

impl<'p> ValueSeed<'_, 'p> {
    fn fail(&self) -> Fail<'p> {
        Fail {
            path: self.path,
            failure: self.failure,
            expected: match &self.target {
                Target::Root(_) => None,
                Target::Value(column) => Some(expected(column)),
            },
        }
    }

    fn integer<E: de::Error>(self, v: i128) -> Result<(), E> {
        let fail = self.fail();
        let out_of_range = || fail.wrong(&format!("{v}, which is out of range"));
        match self.target {
            Target::Value(Column::Int64(c)) => i64::try_from(v)
                .map(|v| c.push(v))
                .map_err(|_| out_of_range()),
            // Epoch milliseconds.
            Target::Value(Column::Timestamp(c)) => i64::try_from(v)
                .map(|v| c.push(v))
                .map_err(|_| out_of_range()),
            Target::Value(Column::Int32(c)) => i32::try_from(v)
                .map(|v| c.push(v))
                .map_err(|_| out_of_range()),
            // As arrow-json converts it: the nearest float.
            Target::Value(Column::Float64(c)) => {
                c.push(v as f64);
                Ok(())
            }
            _ => Err(fail.wrong("a number")),
        }
    }

    fn string<E: de::Error>(self, v: &str) -> Result<(), E> {
        let fail = self.fail();
        let unparsed = |e: &dyn fmt::Display| fail.wrong(&format!("\"{}\" ({e})", truncate(v)));
        match self.target {
            Target::Value(Column::String(c)) => c.push(v).map_err(|_| {
                fail.reject(
                    Reason::WrongType,
                    format!(
                        "field `{}`: the batch's values of this field exceed 2 GiB",
                        fail.path
                    ),
                )
            }),
            // RFC 3339 as chrono reads it decides what is accepted; the value is what arrow
            // makes of the text, as arrow-json would.
            Target::Value(Column::Timestamp(c)) => {
                if let Err(e) = chrono::DateTime::parse_from_rfc3339(v) {
                    return Err(unparsed(&e));
                }
                let time = string_to_datetime(&chrono::Utc, v).map_err(|e| unparsed(&e))?;
                c.push(time.timestamp_millis());
                Ok(())
            }
            Target::Value(Column::Date(c)) => {
                if let Err(e) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
                    return Err(unparsed(&e));
                }
                let days = Date32Type::parse(v).ok_or_else(|| unparsed(&"not a date"))?;
                c.push(days);
                Ok(())
            }
            _ => Err(fail.wrong(&format!("the string \"{}\"", truncate(v)))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value of the declared type")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        let fail = self.fail();
        match self.target {
            Target::Root(_) => Err(fail.wrong("null")),
            Target::Value(_) if self.required => Err(fail.reject(
                Reason::MissingField,
                format!("field `{}` is required but null", self.path),
            )),
            Target::Value(column) => {
                column.push_null();
                Ok(())
            }
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        let fail = self.fail();
        match self.target {
            Target::Value(Column::Boolean(c)) => {
                c.push(v);
                Ok(())
            }
            _ => Err(fail.wrong("a boolean")),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.integer(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.integer(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let fail = self.fail();
        match self.target {
            Target::Value(Column::Float64(c)) => {
                c.push(v);
                Ok(())
            }
            _ => Err(fail.wrong(&format!("the fractional number {v}"))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.string(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let fail = self.fail();
        let Target::Value(Column::List(list)) = self.target else {
            return Err(fail.wrong("an array"));
        };
        let mut i = 0;
        loop {
            let path = Path::Index(self.path, i);
            let seed = ValueSeed {
                target: Target::Value(&mut list.items),
                required: false,
                path: &path,
                failure: self.failure,
            };
            if seq.next_element_seed(seed)?.is_none() {
                list.push_valid();
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fail = self.fail();
        let fields = match self.target {
            Target::Root(fields) | Target::Value(Column::Struct(fields)) => fields,
            _ => return Err(fail.wrong("an object")),
        };
        let row = fields.len();
        let mut seen = vec![false; fields.names.len()];
        while let Some(position) = map.next_key_seed(KeySeed(fields))? {
            let Some(i) = position else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let column = &mut fields.columns[i];
            if seen[i] {
                // A repeated key: its last value counts, as in arrow-json.
                column.truncate(row);
            }
            seen[i] = true;
            let path = Path::Field(self.path, &fields.names[i]);
            map.next_value_seed(ValueSeed {
                target: Target::Value(column),
                required: fields.required[i],
                path: &path,
                failure: self.failure,
            })?;
        }
        for (i, seen) in seen.into_iter().enumerate() {
            if seen {
                continue;
            }
            if fields.required[i] {
                let path = Path::Field(self.path, &fields.names[i]);
                return Err(fail.reject(
                    Reason::MissingField,
                    format!("required field `{path}` is missing"),
                ));
            }
            fields.columns[i].push_null();
        }
        fields.push_valid();
        Ok(())
    }
}

/// Maps an object key to the index of the declared field, or `None` for undeclared keys.
struct KeySeed<'a>(&'a Struct);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.position(v))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path as FsPath;
    use weir_schemas::EventSchema;

    fn columns() -> Struct {
        let schema = EventSchema::parse(
            r#"
            [[fields]]
            name = "id"
            type = "string"
            required = true
            [[fields]]
            name = "n"
            type = "int32"
            [[fields]]
            name = "ts"
            type = "timestamp"
            required = true
            [[fields]]
            name = "user"
            type = "struct"
            fields = [ { name = "id", type = "int64", required = true }, { name = "vip", type = "boolean" } ]
            [[fields]]
            name = "tags"
            type = "list"
            items = { type = "string" }
            [[fields]]
            name = "day"
            type = "date"
            [[fields]]
            name = "price"
            type = "float64"
            "#,
            FsPath::new("s.toml"),
        )
        .unwrap();
        Struct::new(&schema.fields, schema.arrow_schema().fields())
    }

    fn reject(payload: &[u8]) -> Rejection {
        read_row(&mut columns(), payload).expect_err("should be rejected")
    }

    #[test]
    fn accepts_valid_and_ignores_undeclared_keys() {
        let mut c = columns();
        for ok in [
            r#"{"id":"a","ts":"2026-11-25T10:00:00Z"}"#,
            r#"{"id":"a","ts":1764064800000,"n":-5,"price":3,"extra":{"x":[1,2]}}"#,
            r#"{"id":"\u00e9","ts":"2026-11-25T10:00:00.123+02:00","user":{"id":7,"vip":null},"tags":["x",null],"day":"2026-11-25"}"#,
            r#"  {"id":"a","ts":0,"user":null,"tags":null}  "#,
        ] {
            read_row(&mut c, ok.as_bytes()).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
    }

    #[test]
    fn names_reason_and_field_of_every_kind_of_bad_input() {
        let cases: &[(&[u8], Reason, &str)] = &[
            (b"", Reason::EmptyMessage, "empty"),
            (b"{\"id\":\"\xff\"}", Reason::NotUtf8, "byte 7"),
            (b"{\"id\":\"a\",", Reason::InvalidJson, "EOF"),
            (
                b"{\"id\":\"a\",\"ts\":1} trailing",
                Reason::InvalidJson,
                "trailing",
            ),
            (b"[1,2]", Reason::NotAnObject, "found an array"),
            (b"null", Reason::NotAnObject, "found null"),
            (
                b"{\"ts\":1}",
                Reason::MissingField,
                "required field `id` is missing",
            ),
            (
                b"{\"id\":null,\"ts\":1}",
                Reason::MissingField,
                "field `id` is required but null",
            ),
            (
                b"{\"id\":1,\"ts\":1}",
                Reason::WrongType,
                "field `id`: expected a string, found a number",
            ),
            (
                b"{\"id\":\"a\",\"ts\":\"yesterday\"}",
                Reason::WrongType,
                "field `ts`: expected an RFC 3339",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"n\":3000000000}",
                Reason::WrongType,
                "out of range",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"n\":1.5}",
                Reason::WrongType,
                "fractional",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"user\":{\"vip\":true}}",
                Reason::MissingField,
                "`user.id` is missing",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"user\":{\"id\":\"x\"}}",
                Reason::WrongType,
                "field `user.id`",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"tags\":[\"x\",2]}",
                Reason::WrongType,
                "field `tags[1]`",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"tags\":\"x\"}",
                Reason::WrongType,
                "expected an array",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"day\":\"2026-13-01\"}",
                Reason::WrongType,
                "field `day`",
            ),
            (
                b"{\"id\":\"a\",\"ts\":1,\"price\":\"3\"}",
                Reason::WrongType,
                "expected a number",
            ),
        ];
        for (payload, reason, detail) in cases {
            let r = reject(payload);
            assert_eq!(&r.reason, reason, "{}", String::from_utf8_lossy(payload));
            assert!(r.detail.contains(detail), "{:?} lacks {detail:?}", r.detail);
        }
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        let depth = 100_000;
        let mut ignored = String::from("{\"id\":\"a\",\"ts\":1,\"x\":");
        ignored.push_str(&"[".repeat(depth));
        ignored.push_str(&"]".repeat(depth));
        ignored.push('}');
        read_row(&mut columns(), ignored.as_bytes()).expect("undeclared keys are skipped");

        let mut declared = String::from("{\"id\":\"a\",\"ts\":1,\"tags\":");
        declared.push_str(&"[".repeat(depth));
        assert_eq!(reject(declared.as_bytes()).reason, Reason::WrongType);

        let unclosed = format!("{{\"id\":\"a\",\"ts\":1,\"x\":{}", "{\"a\":".repeat(depth));
        assert_eq!(reject(unclosed.as_bytes()).reason, Reason::InvalidJson);
    }
}
