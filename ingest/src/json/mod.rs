//! JSON payloads to Arrow: the schema check picks the messages that fit, arrow-json decodes
//! them into builders.

pub mod check;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::json::reader::{Decoder, ReaderBuilder};
use weir_schemas::{DeadLetters, EventSchema, Messages, Reason};

use crate::decode::{Decode, Decoded, DecoderError};
use check::Checker;

/// Decodes batches of JSON messages of one schema.
pub struct JsonDecoder {
    checker: Checker,
    declared: SchemaRef,
    decoder: Decoder,
    batch_size: usize,
}

impl JsonDecoder {
    /// A decoder for batches of at most `batch_size` messages.
    pub fn new(schema: &EventSchema, batch_size: usize) -> Result<Self, DecoderError> {
        let declared = schema.arrow_schema();
        Ok(Self {
            checker: Checker::new(&schema.fields),
            decoder: build(&declared, batch_size)?,
            declared,
            batch_size,
        })
    }
}

impl Decode for JsonDecoder {
    fn decode(&mut self, messages: &Messages) -> Decoded {
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
            match self.checker.check(payload) {
                Ok(()) => rows.push(i as u32),
                Err(r) => dead_letters.push(messages.dead_letter(i, r.reason, r.detail)),
            }
        }
        let declared = match self.decode_accepted(messages, &rows) {
            Ok(batch) => batch,
            // The check accepts only what arrow-json decodes, so this is a safety net: find
            // the offending messages one by one rather than lose the whole batch.
            Err(_) => self.decode_one_by_one(messages, &mut rows, &mut dead_letters),
        };
        Decoded {
            declared,
            message_of_row: rows,
            dead_letters,
        }
    }
}

impl JsonDecoder {
    fn decode_accepted(
        &mut self,
        messages: &Messages,
        rows: &[u32],
    ) -> Result<RecordBatch, ArrowError> {
        for chunk in rows.chunks(self.batch_size) {
            for &i in chunk {
                let payload = messages.payload(i as usize).unwrap_or_default();
                if let Err(e) = feed(&mut self.decoder, payload) {
                    self.decoder = build(&self.declared, self.batch_size)?;
                    return Err(e);
                }
            }
        }
        match self.decoder.flush() {
            Ok(batch) => Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.declared.clone()))),
            Err(e) => {
                self.decoder = build(&self.declared, self.batch_size)?;
                Err(e)
            }
        }
    }

    fn decode_one_by_one(
        &mut self,
        messages: &Messages,
        rows: &mut Vec<u32>,
        dead_letters: &mut DeadLetters,
    ) -> RecordBatch {
        let mut batches = Vec::with_capacity(rows.len());
        rows.retain(|&i| {
            let payload = messages.payload(i as usize).unwrap_or_default();
            let decoded = feed(&mut self.decoder, payload).and_then(|()| self.decoder.flush());
            match decoded {
                Ok(Some(batch)) => {
                    batches.push(batch);
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    if let Ok(fresh) = build(&self.declared, self.batch_size) {
                        self.decoder = fresh;
                    }
                    dead_letters.push(messages.dead_letter(
                        i as usize,
                        Reason::WrongType,
                        e.to_string(),
                    ));
                    false
                }
            }
        });
        concat_batches(&self.declared, &batches).expect("batches share the declared schema")
    }
}

fn build(schema: &SchemaRef, batch_size: usize) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size.max(1))
        .build_decoder()
}

fn feed(decoder: &mut Decoder, payload: &[u8]) -> Result<(), ArrowError> {
    let consumed = decoder.decode(payload)?;
    if consumed != payload.len() {
        return Err(ArrowError::JsonError(format!(
            "decoder stopped at byte {consumed} of {}",
            payload.len()
        )));
    }
    Ok(())
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
        let mut decoder = JsonDecoder::new(&schema(), 4).unwrap();
        let decoded = decoder.decode(&messages);
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
        let mut decoder = JsonDecoder::new(&schema(), 16).unwrap();
        let decoded = decoder.decode(&messages);
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
        let mut decoder = JsonDecoder::new(&schema(), 16).unwrap();
        for round in 0..3 {
            let mut raw = RawMessages::with_capacity(2);
            raw.push("t", 0, round, None, None, Some(br#"{"id":"x"}"#));
            raw.push("t", 0, round + 1, None, None, Some(b"{"));
            let out = decoder.decode(&raw.finish());
            assert_eq!(out.declared.num_rows(), 1);
            assert_eq!(out.dead_letters.len(), 1);
        }
    }

    /// Random payloads around one schema: whatever the check accepts, arrow-json must decode,
    /// so the one-by-one fallback never has to find a culprit.
    #[test]
    fn what_the_check_accepts_arrow_json_decodes() {
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
        let checker = check::Checker::new(&schema.fields);
        let mut rng = SmallRng::seed_from_u64(7);
        // Per field, values of the declared type (edge cases included); any value otherwise.
        let good: &[(&str, &[&str])] = &[
            ("s", &["\"\"", "\"text\"", "\"\\u00e9\\n\"", "null"]),
            ("i32", &["0", "-2147483648", "2147483647", "null"]),
            ("i64", &["0", "-9223372036854775808", "9223372036854775807"]),
            (
                "f",
                &["0", "1.5", "-0.0", "1e3", "18446744073709551615", "null"],
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
                &["\"2026-11-25\"", "\"2024-02-29\"", "\"0001-01-01\"", "null"],
            ),
            (
                "st",
                &[
                    "{\"x\": 1}",
                    "{\"x\": 1, \"l\": [\"2026-11-25T10:00:00Z\", 5, null]}",
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
            "[\"a\", null]",
        ];
        let values: Vec<&str> = good
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .chain(out_of_range)
            .collect();
        let mut raw = RawMessages::with_capacity(5000);
        let mut accepted = 0;
        for offset in 0..5000 {
            let mut payload = String::from("{");
            for (name, valid) in good {
                if rng.random_bool(0.1) {
                    continue;
                }
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
            payload.push('}');
            if checker.check(payload.as_bytes()).is_ok() {
                accepted += 1;
            }
            raw.push("t", 0, offset, None, None, Some(payload.as_bytes()));
        }
        let messages = raw.finish();
        let mut decoder = JsonDecoder::new(&schema, 5000).unwrap();
        let out = decoder.decode(&messages);
        assert!(
            accepted > 100,
            "the generator should produce valid rows too: {accepted}"
        );
        let fallback: Vec<_> = out
            .dead_letters
            .iter()
            .filter(|d| checker.check(d.payload.as_deref().unwrap()).is_ok())
            .map(|d| {
                (
                    String::from_utf8_lossy(d.payload.as_deref().unwrap()).into_owned(),
                    d.detail.clone(),
                )
            })
            .take(3)
            .collect();
        assert!(
            fallback.is_empty(),
            "accepted by the check, rejected by arrow-json: {fallback:#?}"
        );
        assert_eq!(out.declared.num_rows(), accepted);
    }
}
