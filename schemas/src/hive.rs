//! Partition values as Hive-style path segments (`name=value`): escaped so that any string
//! makes one safe segment, and read back exactly by Hive, Spark, Trino, DuckDB and pyarrow.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{DictionaryArray, StringArray, UInt32Array};
use arrow::datatypes::UInt32Type;

/// The partition path of each row of a batch (`dt=2026-11-25/hour=14/country=NL`, escaped),
/// dictionary-encoded: each distinct path once, and for each row the index of its path. A
/// batch has few distinct paths, so nothing is formatted, stored or compared per row.
pub type PartitionPaths = DictionaryArray<UInt32Type>;

/// `rows` rows all in the partition `path`.
pub fn one_path(path: &str, rows: usize) -> PartitionPaths {
    PartitionPaths::new(
        UInt32Array::from(vec![0; rows]),
        Arc::new(StringArray::from(vec![path])),
    )
}

/// Hive's name for the partition of NULL values; Spark, Trino and DuckDB read it back as NULL.
/// The empty string goes there too: a segment `name=` is not one readers accept.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Appends `value` to `out` escaped the way Hive does: `%XX` for each byte of the characters
/// a path or Hive's own parsing would take for something else (`/`, `=`, `%`, `:`, quotes,
/// control characters and a few more); an empty value as [`NULL_PARTITION`].
pub fn escape_into(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push_str(NULL_PARTITION);
        return;
    }
    for c in value.chars() {
        let escape = c.is_control()
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
            );
        if escape {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                write!(out, "%{b:02X}").expect("writing to a String");
            }
        } else {
            out.push(c);
        }
    }
}

/// The value a segment escaped by [`escape_into`] stands for, as readers decode it: `%XX`
/// sequences back to their bytes. `None` if they do not make UTF-8.
pub fn unescape(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, value);
        out
    }

    #[test]
    fn what_a_path_or_hive_would_misread_is_escaped_once() {
        assert_eq!(escaped("a/b"), "a%2Fb");
        assert_eq!(escaped("100%"), "100%25");
        assert_eq!(escaped("k=v"), "k%3Dv");
        assert_eq!(escaped("Zürich 東京"), "Zürich 東京");
        assert_eq!(escaped(""), NULL_PARTITION);
        for value in ["a/b", "%2F", "12:30", "tab\there", "Zürich"] {
            assert_eq!(unescape(&escaped(value)).as_deref(), Some(value));
        }
    }
}
