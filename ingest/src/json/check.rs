//! Checks a JSON payload against the declared schema without materialising it.
//!
//! serde_json drives visitors that only look at each value's kind (and parse timestamps and
//! dates), so a message is accepted or rejected with a precise reason before arrow-json
//! decodes it. Accepted messages are exactly those arrow-json can decode into the schema.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use weir_schemas::Reason;
use weir_schemas::schema::{FieldDef, FieldType};

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

/// The schema compiled for checking.
pub struct Checker {
    root: StructCheck,
}

enum Check {
    String,
    Int32,
    Int64,
    Float64,
    Boolean,
    Timestamp,
    Date,
    Struct(StructCheck),
    List(Box<Check>),
}

struct StructCheck {
    names: Vec<String>,
    checks: Vec<Check>,
    required: Vec<bool>,
    /// Built only for wide structs, where a scan per key would cost more than a hash.
    index: Option<HashMap<String, usize>>,
}

const SCAN_LIMIT: usize = 12;

impl StructCheck {
    fn new(fields: &[FieldDef]) -> Self {
        let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
        let index = (names.len() > SCAN_LIMIT).then(|| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect()
        });
        Self {
            checks: fields.iter().map(|f| Check::new(&f.ty)).collect(),
            required: fields.iter().map(|f| f.required).collect(),
            names,
            index,
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.names.iter().position(|n| n == key),
        }
    }
}

impl Check {
    fn new(ty: &FieldType) -> Self {
        match ty {
            FieldType::String => Check::String,
            FieldType::Int32 => Check::Int32,
            FieldType::Int64 => Check::Int64,
            FieldType::Float64 => Check::Float64,
            FieldType::Boolean => Check::Boolean,
            FieldType::Timestamp => Check::Timestamp,
            FieldType::Date => Check::Date,
            FieldType::Struct(fields) => Check::Struct(StructCheck::new(fields)),
            FieldType::List(item) => Check::List(Box::new(Check::new(item))),
        }
    }

    fn expected(&self) -> &'static str {
        match self {
            Check::String => "a string",
            Check::Int32 => "a 32-bit integer",
            Check::Int64 => "a 64-bit integer",
            Check::Float64 => "a number",
            Check::Boolean => "true or false",
            Check::Timestamp => "an RFC 3339 timestamp string or epoch milliseconds",
            Check::Date => "a date string YYYY-MM-DD",
            Check::Struct(_) => "an object",
            Check::List(_) => "an array",
        }
    }
}

impl Checker {
    pub fn new(fields: &[FieldDef]) -> Self {
        Self {
            root: StructCheck::new(fields),
        }
    }

    /// Accepts the payload, or says why not.
    pub fn check(&self, payload: &[u8]) -> Result<(), Rejection> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err(Rejection {
                reason: Reason::EmptyMessage,
                detail: "the message value is empty".into(),
            });
        }
        if let Err(e) = std::str::from_utf8(payload) {
            return Err(Rejection {
                reason: Reason::NotUtf8,
                detail: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            });
        }
        let failure = RefCell::new(None);
        let mut de = serde_json::Deserializer::from_slice(payload);
        let seed = ValueSeed {
            check: CheckRef::Root(&self.root),
            required: true,
            path: &Path::Root,
            failure: &failure,
        };
        match seed.deserialize(&mut de).and_then(|()| de.end()) {
            Ok(()) => Ok(()),
            Err(e) => Err(match failure.into_inner() {
                Some(rejection) => rejection,
                None => Rejection {
                    reason: Reason::InvalidJson,
                    detail: e.to_string(),
                },
            }),
        }
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

#[derive(Clone, Copy)]
enum CheckRef<'a> {
    /// The top level: must be an object, a non-object is `not_an_object`.
    Root(&'a StructCheck),
    Value(&'a Check),
}

struct ValueSeed<'a> {
    check: CheckRef<'a>,
    required: bool,
    path: &'a Path<'a>,
    failure: &'a RefCell<Option<Rejection>>,
}

impl ValueSeed<'_> {
    fn reject<E: de::Error>(&self, reason: Reason, detail: String) -> E {
        let error = E::custom(&detail);
        self.failure
            .borrow_mut()
            .get_or_insert(Rejection { reason, detail });
        error
    }

    fn wrong<E: de::Error>(&self, found: &str) -> E {
        match self.check {
            CheckRef::Root(_) => self.reject(
                Reason::NotAnObject,
                format!("expected a JSON object, found {found}"),
            ),
            CheckRef::Value(check) => self.reject(
                Reason::WrongType,
                format!(
                    "field `{}`: expected {}, found {found}",
                    self.path,
                    check.expected()
                ),
            ),
        }
    }

    fn integer<E: de::Error>(&self, v: i128) -> Result<(), E> {
        match self.check {
            CheckRef::Value(Check::Int64 | Check::Timestamp) if i64::try_from(v).is_ok() => Ok(()),
            CheckRef::Value(Check::Int32) if i32::try_from(v).is_ok() => Ok(()),
            CheckRef::Value(Check::Float64) => Ok(()),
            CheckRef::Value(Check::Int32 | Check::Int64 | Check::Timestamp) => {
                Err(self.wrong(&format!("{v}, which is out of range")))
            }
            _ => Err(self.wrong("a number")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value of the declared type")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.required {
            return Err(match self.check {
                CheckRef::Root(_) => self.wrong("null"),
                CheckRef::Value(_) => self.reject(
                    Reason::MissingField,
                    format!("field `{}` is required but null", self.path),
                ),
            });
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        match self.check {
            CheckRef::Value(Check::Boolean) => Ok(()),
            _ => Err(self.wrong("a boolean")),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.integer(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.integer(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.check {
            CheckRef::Value(Check::Float64) => Ok(()),
            _ => Err(self.wrong(&format!("the fractional number {v}"))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.check {
            CheckRef::Value(Check::String) => Ok(()),
            CheckRef::Value(Check::Timestamp) => chrono::DateTime::parse_from_rfc3339(v)
                .map(drop)
                .map_err(|e| self.wrong(&format!("\"{}\" ({e})", truncate(v)))),
            CheckRef::Value(Check::Date) => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(drop)
                .map_err(|e| self.wrong(&format!("\"{}\" ({e})", truncate(v)))),
            _ => Err(self.wrong(&format!("the string \"{}\"", truncate(v)))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let CheckRef::Value(Check::List(item)) = self.check else {
            return Err(self.wrong("an array"));
        };
        let mut i = 0;
        loop {
            let path = Path::Index(self.path, i);
            let seed = ValueSeed {
                check: CheckRef::Value(item),
                required: false,
                path: &path,
                failure: self.failure,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fields = match self.check {
            CheckRef::Root(fields) | CheckRef::Value(Check::Struct(fields)) => fields,
            _ => return Err(self.wrong("an object")),
        };
        let mut seen = vec![false; fields.names.len()];
        while let Some(position) = map.next_key_seed(KeySeed(fields))? {
            match position {
                Some(i) => {
                    seen[i] = true;
                    let path = Path::Field(self.path, &fields.names[i]);
                    map.next_value_seed(ValueSeed {
                        check: CheckRef::Value(&fields.checks[i]),
                        required: fields.required[i],
                        path: &path,
                        failure: self.failure,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let Some(missing) = (0..seen.len()).find(|&i| fields.required[i] && !seen[i]) {
            let path = Path::Field(self.path, &fields.names[missing]);
            return Err(self.reject(
                Reason::MissingField,
                format!("required field `{path}` is missing"),
            ));
        }
        Ok(())
    }
}

/// Maps an object key to the index of the declared field, or `None` for undeclared keys.
struct KeySeed<'a>(&'a StructCheck);

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

    fn checker() -> Checker {
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
        Checker::new(&schema.fields)
    }

    fn reject(payload: &[u8]) -> Rejection {
        checker().check(payload).expect_err("should be rejected")
    }

    #[test]
    fn accepts_valid_and_ignores_undeclared_keys() {
        let c = checker();
        for ok in [
            r#"{"id":"a","ts":"2026-11-25T10:00:00Z"}"#,
            r#"{"id":"a","ts":1764064800000,"n":-5,"price":3,"extra":{"x":[1,2]}}"#,
            r#"{"id":"\u00e9","ts":"2026-11-25T10:00:00.123+02:00","user":{"id":7,"vip":null},"tags":["x",null],"day":"2026-11-25"}"#,
            r#"  {"id":"a","ts":0,"user":null,"tags":null}  "#,
        ] {
            c.check(ok.as_bytes())
                .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
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
        checker()
            .check(ignored.as_bytes())
            .expect("undeclared keys are skipped");

        let mut declared = String::from("{\"id\":\"a\",\"ts\":1,\"tags\":");
        declared.push_str(&"[".repeat(depth));
        assert_eq!(reject(declared.as_bytes()).reason, Reason::WrongType);

        let unclosed = format!("{{\"id\":\"a\",\"ts\":1,\"x\":{}", "{\"a\":".repeat(depth));
        assert_eq!(reject(unclosed.as_bytes()).reason, Reason::InvalidJson);
    }
}
