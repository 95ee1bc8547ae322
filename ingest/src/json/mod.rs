//! JSON payloads to Arrow in one pass: each payload is read once, checked against the
//! schema and written into the declared columns as it is read (see [`read`]); a payload that
//! does not fit is cut back out of the columns and becomes a dead letter with the reason.

mod columns;
mod read;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir_schemas::{DeadLetters, EventSchema, Messages, Reason};

use crate::decode::{Abandoned, Decode, Decoded};
use columns::Struct;

/// Decodes batches of JSON messages of one schema.
pub struct JsonDecoder {
    declared: SchemaRef,
    columns: Struct,
}

impl JsonDecoder {
    /// A decoder for messages of `schema`, in batches of any size.
    pub fn new(schema: &EventSchema) -> Self {
        let declared = schema.arrow_schema();
        Self {
            columns: Struct::new(&schema.fields, declared.fields()),
            declared,
        }
    }
}

impl Decode for JsonDecoder {
    fn decode(&mut self, messages: &Messages) -> Result<Decoded, Abandoned> {
        let mut dead_letters = DeadLetters::default();
        let mut rows = Vec::with_capacity(messages.len());
        for i in 0..messages.len() {
            let Some(payload) = messages.payload(i) else {
                dead_letters.push(messages.dead_letter(
                    i,
                    Reason::EmptyMessage,
                    "the message has no value (a tombstone)".into(),
                ));
                continue;
            };
            let before = self.columns.len();
            match read::read_row(&mut self.columns, payload) {
                Ok(()) => rows.push(i as u32),
                Err(rejection) => {
                    self.columns.truncate(before);
                    dead_letters.push(messages.dead_letter(i, rejection.reason, rejection.detail));
                }
            }
        }
        let columns = self.columns.finish_columns();
        let declared = match RecordBatch::try_new(self.declared.clone(), columns) {
            Ok(batch) => batch,
            // The columns are built to the declared schema, so this is a safety net: the
            // batch's rows become dead letters, kept whole, rather than stop the pipeline.
            Err(e) => {
                for &i in &rows {
                    dead_letters.push(messages.dead_letter(
                        i as usize,
                        Reason::WrongType,
                        format!("the decoded rows do not fit the declared schema: {e}"),
                    ));
                }
                rows.clear();
                RecordBatch::new_empty(self.declared.clone())
            }
        };
        // JSON needs nothing outside the messages: it never gives a batch up.
        Ok(Decoded {
            declared,
            message_of_row: rows,
            dead_letters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{EventTimeBounds, SourceTable};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};
    use std::path::Path;
    use weir_schemas::RawMessages;

    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
    /// 2026-11-30T00:53:20Z, the wall clock of these tests.
    const NOW_MS: i64 = 1_796_000_000_000;

    fn table() -> SourceTable {
        SourceTable::new(&schema(), "ts", EventTimeBounds { max_ahead: DAY }).unwrap()
    }

    fn schema() -> EventSchema {
        EventSchema::parse(
            r#"
            [[fields]]
            name = "id"
            type = "string"
            required = true
            [[fields]]
            name = "ts"
            type = "timestamp"
            [[fields]]
            name = "user"
            type = "struct"
            fields = [ { name = "id", type = "int64" } ]
            [[fields]]
            name = "tags"
            type = "list"
            items = { type = "string" }
            "#,
            Path::new("s.toml"),
        )
        .unwrap()
    }

    #[test]
    fn decodes_good_rows_with_metadata_and_dead_letters_the_rest() {
        let mut raw = RawMessages::with_capacity(8);
        let payloads: [Option<&[u8]>; 6] = [
            Some(br#"{"id":"a","ts":"2026-11-25T10:00:00.5Z","user":{"id":7},"tags":["x"]}"#),
            Some(b"not json"),
            None,
            Some(br#"{"id":"b","ts":1795600800000}"#),
            Some(br#"{"ts":1}"#),
            Some(br#"{"id":"c","user":{"id":"seven"}}"#),
        ];
        for (offset, payload) in payloads.iter().enumerate() {
            raw.push(
                "clicks",
                3,
                100 + offset as i64,
                Some(5),
                Some(b"k"),
                *payload,
            );
        }
        let messages = raw.finish();
        let mut decoder = JsonDecoder::new(&schema());
        let decoded = decoder.decode(&messages).unwrap();
        assert_eq!(decoded.message_of_row, vec![0, 3]);
        let out = table().batch(decoded, messages, NOW_MS);

        let b = out.rows();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(1), "b");
        let ts = b.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_795_600_800_500);
        assert_eq!(ts.value(1), 1_795_600_800_000);
        assert!(b.column(2).is_null(1));
        assert_eq!(
            b.column_by_name("_offset")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(1),
            103
        );
        assert_eq!(
            b.column_by_name("_topic")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "clicks"
        );
        assert_eq!(
            b.column_by_name("_key")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "k"
        );

        let dead: Vec<_> = out
            .dead_letters()
            .iter()
            .map(|d| (d.offset, d.reason.to_string()))
            .collect();
        assert_eq!(
            dead,
            vec![
                (101, "invalid_json".to_string()),
                (102, "empty_message".to_string()),
                (104, "missing_field".to_string()),
                (105, "wrong_type".to_string()),
            ]
        );
        let letter = out.dead_letters().iter().next().unwrap();
        assert_eq!(letter.payload.as_deref(), Some(&b"not json"[..]));
        assert_eq!(letter.partition, 3);
    }

    #[test]
    fn event_times_no_one_could_mean_are_dead_letters() {
        let hour_ahead = NOW_MS + 3_600_000;
        let payloads = [
            r#"{"id":"ok","ts":"2026-11-25T10:00:00Z"}"#.to_owned(),
            format!(r#"{{"id":"soon","ts":{hour_ahead}}}"#),
            r#"{"id":"year-9999","ts":"9999-12-31T23:59:59Z"}"#.to_owned(),
            format!(r#"{{"id":"max","ts":{}}}"#, i64::MAX),
            format!(r#"{{"id":"min","ts":{}}}"#, i64::MIN),
            r#"{"id":"year-1","ts":"0001-01-01T00:00:00Z"}"#.to_owned(),
            r#"{"id":"no-time"}"#.to_owned(),
        ];
        let mut raw = RawMessages::with_capacity(payloads.len());
        for (offset, payload) in payloads.iter().enumerate() {
            raw.push("t", 0, offset as i64, None, None, Some(payload.as_bytes()));
        }
        let messages = raw.finish();
        let mut decoder = JsonDecoder::new(&schema());
        let decoded = decoder.decode(&messages).unwrap();
        assert_eq!(decoded.message_of_row.len(), payloads.len(), "all decode");
        let out = table().batch(decoded, messages, NOW_MS);

        let ids: Vec<&str> = out
            .rows()
            .column(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, ["ok", "soon", "year-1", "no-time"]);
        let dead: Vec<(i64, String, String)> = out
            .dead_letters()
            .iter()
            .map(|d| (d.offset, d.reason.to_string(), d.detail.clone()))
            .collect();
        let reason = "event_time_out_of_range".to_owned();
        assert_eq!(
            dead,
            [
                (
                    2,
                    reason.clone(),
                    "event time `ts` is 9999-12-31T23:59:59.000Z, more than 1day ahead of the \
                     clock (2026-11-30T00:53:20.000Z)"
                        .to_owned()
                ),
                (
                    3,
                    reason.clone(),
                    format!(
                        "event time `ts` is {} ms since the epoch, outside years 1 to 9999",
                        i64::MAX
                    )
                ),
                (
                    4,
                    reason,
                    format!(
                        "event time `ts` is {} ms since the epoch, outside years 1 to 9999",
                        i64::MIN
                    )
                ),
            ]
        );
        // The watermark learns only from the rows that are left.
        let partition = weir_schemas::PartitionKey::new("t", 0);
        assert_eq!(out.event_times().get(&partition), Some(hour_ahead));
    }

    #[test]
    fn the_decoder_is_reusable_across_batches() {
        let mut decoder = JsonDecoder::new(&schema());
        for round in 0..3 {
            let mut raw = RawMessages::with_capacity(2);
            raw.push("t", 0, round, None, None, Some(br#"{"id":"x"}"#));
            raw.push("t", 0, round + 1, None, None, Some(b"{"));
            let out = decoder.decode(&raw.finish()).unwrap();
            assert_eq!(out.declared.num_rows(), 1);
            assert_eq!(out.dead_letters.len(), 1);
        }
    }

    /// Random payloads around one schema, decoded as one batch: the rows are exactly what
    /// arrow-json makes of the accepted payloads one by one, whatever failed between them
    /// (so a payload rejected half-way leaves nothing behind), and whatever this decoder
    /// rejects, arrow-json would not take either, or it breaks a rule arrow-json does not
    /// check (required fields, RFC 3339, no fractions for integers, every value of a repeated
    /// key of the right type).
    #[test]
    fn rows_are_what_arrow_json_makes_of_the_accepted_payloads() {
        use arrow::compute::concat_batches;
        use arrow::json::reader::ReaderBuilder;
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};

        let schema = EventSchema::parse(
            r#"
            [[fields]]
            name = "s"
            type = "string"
            [[fields]]
            name = "i32"
            type = "int32"
            [[fields]]
            name = "i64"
            type = "int64"
            required = true
            [[fields]]
            name = "f"
            type = "float64"
            [[fields]]
            name = "b"
            type = "boolean"
            [[fields]]
            name = "ts"
            type = "timestamp"
            [[fields]]
            name = "d"
            type = "date"
            [[fields]]
            name = "st"
            type = "struct"
            fields = [ { name = "x", type = "int64", required = true }, { name = "l", type = "list", items = { type = "timestamp" } } ]
            [[fields]]
            name = "l"
            type = "list"
            items = { type = "list", items = { type = "string" } }
            "#,
            Path::new("s.toml"),
        )
        .unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        // Per field, values of the declared type (edge cases included); any value otherwise.
        let good: &[(&str, &[&str])] = &[
            (
                "s",
                &[
                    "\"\"",
                    "\"text\"",
                    "\"\\u00e9\\n\"",
                    "\"\\ud83d\\ude00\"",
                    "null",
                ],
            ),
            ("i32", &["0", "-2147483648", "2147483647", "null"]),
            ("i64", &["0", "-9223372036854775808", "9223372036854775807"]),
            (
                "f",
                &[
                    "0",
                    "1.5",
                    "-0.0",
                    "1e3",
                    "0.1",
                    "2.2250738585072014e-308",
                    "1.7976931348623157e308",
                    "9007199254740993",
                    "18446744073709551615",
                    "null",
                ],
            ),
            ("b", &["true", "false", "null"]),
            (
                "ts",
                &[
                    "\"2026-11-25T10:00:00Z\"",
                    "\"2026-11-25T10:00:00.123456789+05:30\"",
                    "\"2026-11-25t10:00:00z\"",
                    "\"2026-11-25 10:00:00Z\"",
                    "\"2026-12-31T23:59:60Z\"",
                    "\"1969-07-20T20:17:40-00:00\"",
                    "\"1969-12-31T23:59:59.9995Z\"",
                    "\"0001-01-01T00:00:00Z\"",
                    "\"9999-12-31T23:59:59.999Z\"",
                    "-62135596800000",
                    "0",
                    "1795600800000",
                    "null",
                ],
            ),
            (
                "d",
                &[
                    "\"2026-11-25\"",
                    "\"2024-02-29\"",
                    "\"0001-01-01\"",
                    "\"2026-1-5\"",
                    "null",
                ],
            ),
            (
                "st",
                &[
                    "{\"x\": 1}",
                    "{\"x\": 1, \"l\": [\"2026-11-25T10:00:00Z\", 5, null]}",
                    "{\"x\": 1, \"x\": 2, \"l\": [1], \"l\": [2, 3]}",
                    "null",
                ],
            ),
            (
                "l",
                &[
                    "[]",
                    "[null]",
                    "[[\"a\"], [], null]",
                    "[[\"a\", null]]",
                    "null",
                ],
            ),
            ("extra", &["{\"deep\": [[[1]]]}", "\"x\""]),
        ];
        // Any value: every field's values, plus ones out of every declared range.
        let out_of_range = [
            "2147483648",
            "-2147483649",
            "9223372036854775808",
            "1.5",
            "\"2026-02-30\"",
            "{\"x\": null}",
            "{\"x\": 1, \"l\": [\"2026-11-25T10:00:00Z\", \"never\"]}",
            "[\"a\", null]",
            "[[\"a\"], [1]]",
        ];
        let values: Vec<&str> = good
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .chain(out_of_range)
            .collect();
        let mut raw = RawMessages::with_capacity(5000);
        let mut payloads = Vec::new();
        let mut repeated = Vec::new();
        for offset in 0..5000 {
            let mut payload = String::from("{");
            let mut twice = false;
            for (name, valid) in good {
                // Absent, once, or twice (the last counts).
                let times = [0, 1, 1, 1, 1, 1, 1, 1, 1, 2][rng.random_range(0..10)];
                twice |= times == 2;
                for _ in 0..times {
                    if payload.len() > 1 {
                        payload.push(',');
                    }
                    let value = if rng.random_bool(0.9) {
                        valid[rng.random_range(0..valid.len())]
                    } else {
                        values[rng.random_range(0..values.len())]
                    };
                    payload.push_str(&format!("\"{name}\":{value}"));
                }
            }
            payload.push('}');
            raw.push("t", 0, offset, None, None, Some(payload.as_bytes()));
            payloads.push(payload);
            repeated.push(twice);
        }
        let messages = raw.finish();
        let out = JsonDecoder::new(&schema).decode(&messages).unwrap();

        let arrow_json = |payload: &str| {
            let mut decoder = ReaderBuilder::new(schema.arrow_schema())
                .build_decoder()
                .unwrap();
            let consumed = decoder.decode(payload.as_bytes()).ok()?;
            let batch = decoder.flush().ok()??;
            (consumed == payload.len() && batch.num_rows() == 1).then_some(batch)
        };
        let mut expected = Vec::new();
        for &row in &out.message_of_row {
            let payload = &payloads[row as usize];
            let batch = arrow_json(payload)
                .unwrap_or_else(|| panic!("accepted, but arrow-json does not decode {payload}"));
            expected.push(batch);
        }
        assert!(
            expected.len() > 500,
            "the generator should produce valid rows too: {}",
            expected.len()
        );
        let expected = concat_batches(&schema.arrow_schema(), &expected).unwrap();
        for (column, field) in schema.arrow_schema().fields().iter().enumerate() {
            assert_eq!(
                out.declared.column(column).as_ref(),
                expected.column(column).as_ref(),
                "column {}",
                field.name()
            );
        }
        for letter in out.dead_letters.iter() {
            let payload = String::from_utf8(letter.payload.clone().unwrap()).unwrap();
            // Every value of a repeated key is checked; arrow-json looks at the last alone.
            let strict = repeated[letter.offset as usize]
                || letter.detail.contains("required")
                || letter.detail.contains("fractional")
                || letter.detail.contains("field `ts`")
                || letter.detail.contains("field `st.l[")
                || letter.detail.contains("field `d`");
            assert!(
                strict || arrow_json(&payload).is_none(),
                "rejected ({}), but arrow-json decodes {payload}",
                letter.detail
            );
        }
    }
}
