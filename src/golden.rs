//! `weir sql test`: golden tests for transforms, runnable in the analysts' own CI.
//!
//! A golden test is a `*.test.toml` file next to a transform's SQL: a sample (inline or a
//! JSON Lines file beside it) and the rows the transform must produce from it, and
//! optionally the dead letters. The sample goes through `weir sql run`'s path, which is the
//! service's own, so a passing test says what production will write. Rows are compared as a
//! multiset over the columns the expected rows name (or over every column, when the test asks
//! for it); timestamps as instants; a mismatch prints what is missing and what is unexpected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Environment, PipelineConfig};
use crate::sample::{DEAD_LETTERS, PARTITION_COLUMN, read_sample, run_sample};

/// One `*.test.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenTest {
    /// The transform whose rows are checked; by default the file's name before `.test.toml`.
    transform: Option<String>,
    /// The sample: JSON Lines text.
    input: Option<String>,
    /// Or a JSON Lines file, relative to the test file.
    input_file: Option<PathBuf>,
    /// Messages between checkpoints (see `weir sql run --batch`).
    #[serde(default = "default_batch")]
    batch: usize,
    /// The rows the transform must produce, in any order; each names the columns compared.
    #[serde(default)]
    rows: Vec<toml::Table>,
    /// When given, exactly these dead letters (by `line` and `reason`) must come out.
    dead_letters: Option<Vec<toml::Table>>,
    /// Compare every output column, not only those the expected rows name: a column a row
    /// leaves out is expected NULL, so a column the transform gains fails the test.
    #[serde(default)]
    all_columns: bool,
}

fn default_batch() -> usize {
    100
}

/// How a run of golden tests went.
pub struct Outcome {
    pub passed: usize,
    pub failed: usize,
    /// A report for a person: one line per test, and the differences of the failed ones.
    pub report: String,
}

/// The golden tests next to the pipeline's SQL files, in path order.
fn discover(config: &PipelineConfig) -> Vec<PathBuf> {
    let dirs: BTreeSet<PathBuf> = config
        .transforms
        .iter()
        .filter_map(|t| config.resolve(&t.sql).parent().map(Path::to_path_buf))
        .collect();
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.toml"))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Runs every golden test of the pipeline at `config_path`.
pub async fn run_all(config_path: &Path) -> anyhow::Result<Outcome> {
    let config = PipelineConfig::load(config_path, &Environment)?;
    let tests = discover(&config);
    anyhow::ensure!(
        !tests.is_empty(),
        "no *.test.toml next to the SQL files of {}",
        config_path.display()
    );
    let mut outcome = Outcome {
        passed: 0,
        failed: 0,
        report: String::new(),
    };
    for path in tests {
        // Each test gets a fresh pipeline: no state carries over from another test.
        let config = PipelineConfig::load(config_path, &Environment)?;
        let shown = path.display();
        match run_one(config, &path).await {
            Ok(differences) if differences.is_empty() => {
                outcome.passed += 1;
                outcome.report.push_str(&format!("ok    {shown}\n"));
            }
            Ok(differences) => {
                outcome.failed += 1;
                outcome
                    .report
                    .push_str(&format!("FAIL  {shown}\n{differences}"));
            }
            Err(e) => {
                outcome.failed += 1;
                outcome
                    .report
                    .push_str(&format!("FAIL  {shown}\n  {e:#}\n"));
            }
        }
    }
    outcome.report.push_str(&format!(
        "{} passed, {} failed\n",
        outcome.passed, outcome.failed
    ));
    Ok(outcome)
}

/// The differences between what the test expects and what the transform produced; empty
/// when it passes.
async fn run_one(config: PipelineConfig, path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let test: GoldenTest =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let name = match &test.transform {
        Some(name) => name.clone(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".test.toml"))
            .unwrap_or_default()
            .to_owned(),
    };
    let (input, origin) = match (&test.input, &test.input_file) {
        (Some(text), None) => (text.clone(), path.to_owned()),
        (None, Some(file)) => {
            let file = path.parent().unwrap_or(Path::new(".")).join(file);
            (read_sample(&file)?, file)
        }
        _ => anyhow::bail!("give the sample as either `input` or `input_file`"),
    };
    let mut run = run_sample(config, &input, &origin, test.batch).await?;
    run.only(&name)?;
    let mut differences = String::new();
    let output = &run.outputs[0];
    compare(
        &format!("rows of `{name}`"),
        &test.rows,
        &Produced {
            schema: Some(&output.schema),
            rows: &output.rows,
            all_columns: test.all_columns,
        },
        &mut differences,
    )?;
    if let Some(expected) = &test.dead_letters {
        let schema = run.dead_letters.first().map(RecordBatch::schema);
        let produced = Produced {
            schema: schema.as_deref(),
            rows: &run.dead_letters,
            all_columns: false,
        };
        compare(DEAD_LETTERS, expected, &produced, &mut differences)?;
    }
    Ok(differences)
}

/// What a golden test's expected rows are compared with.
struct Produced<'a> {
    /// The columns, when known (a sample without dead letters has no dead-letter schema).
    schema: Option<&'a Schema>,
    /// The rows; an output's carry their partition path as a last column.
    rows: &'a [RecordBatch],
    /// Compare every column, not only the named ones.
    all_columns: bool,
}

/// Compares `expected` rows with the `produced` ones as multisets over the expected columns;
/// adds what differs to `out`.
fn compare(
    what: &str,
    expected: &[toml::Table],
    produced: &Produced,
    out: &mut String,
) -> anyhow::Result<()> {
    let mut columns: BTreeSet<&str> = expected
        .iter()
        .flat_map(|row| row.keys().map(String::as_str))
        .collect();
    let mut timestamps = Vec::new();
    if let Some(schema) = produced.schema {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for column in &columns {
            if *column != PARTITION_COLUMN && !names.contains(column) {
                out.push_str(&format!(
                    "  {what}: no column `{column}`; the columns are {}\n",
                    names.join(", ")
                ));
            }
        }
        if produced.all_columns {
            columns.extend(&names);
        }
        for field in schema.fields() {
            if let DataType::Timestamp(_, zone) = field.data_type()
                && columns.contains(field.name().as_str())
            {
                timestamps.push((field.name().as_str(), zone.is_some()));
            }
        }
    }
    // Timestamps as one text per instant, whatever offset and precision they were written in.
    let canonical = |row: &mut Value| {
        for &(column, zoned) in &timestamps {
            if let Some(value) = row.get_mut(column)
                && let Some(instant) = canonical_timestamp(value, zoned)
            {
                *value = instant;
            }
        }
    };
    // A column some expected row names and another leaves out is expected NULL in the latter.
    let expected: Vec<Value> = expected
        .iter()
        .map(|row| {
            let mut row = toml_to_json(row);
            if let Value::Object(values) = &mut row {
                for column in &columns {
                    values.entry(column.to_string()).or_insert(Value::Null);
                }
            }
            canonical(&mut row);
            row
        })
        .collect();
    let expected_rows = expected.len();
    let actual = match crate::sample::json_rows(produced.rows)? {
        Value::Array(rows) => rows,
        other => anyhow::bail!("rows as JSON are an array, not {other}"),
    };
    let mut unmatched: Vec<Value> = actual
        .iter()
        .map(|row| {
            let mut projected = Value::Object(
                columns
                    .iter()
                    .map(|c| (c.to_string(), row.get(*c).cloned().unwrap_or(Value::Null)))
                    .collect(),
            );
            canonical(&mut projected);
            projected
        })
        .collect();
    let mut missing = Vec::new();
    for row in expected {
        match unmatched.iter().position(|a| same(a, &row)) {
            Some(found) => {
                unmatched.swap_remove(found);
            }
            None => missing.push(row),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return Ok(());
    }
    out.push_str(&format!(
        "  {what}: {expected_rows} expected, {} produced\n",
        actual.len()
    ));
    for row in &missing {
        out.push_str(&format!("  - missing    {row}\n"));
    }
    for row in &unmatched {
        out.push_str(&format!("  + unexpected {row}\n"));
    }
    Ok(())
}

/// The RFC 3339 text of the instant `value` writes (UTC, digits of the second as needed), or
/// the date and time of a timestamp without a zone; `None` when it is not one.
fn canonical_timestamp(value: &Value, zoned: bool) -> Option<Value> {
    let text = value.as_str()?;
    let canonical = if zoned {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()?
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    } else {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .format("%Y-%m-%dT%H:%M:%S%.f")
            .to_string()
    };
    Some(Value::String(canonical))
}

/// Equal as JSON: integers exactly, other numbers by value (1 equals 1.0), absent equal to
/// null.
fn same(actual: &Value, expected: &Value) -> bool {
    use Value;
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        },
        (Value::Object(a), Value::Object(b)) => b
            .iter()
            .all(|(k, v)| same(a.get(k).unwrap_or(&Value::Null), v)),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (a, b) => a == b,
    }
}

fn toml_to_json(table: &toml::Table) -> Value {
    fn value(v: &toml::Value) -> Value {
        match v {
            toml::Value::String(s) => Value::String(s.clone()),
            toml::Value::Integer(i) => Value::from(*i),
            toml::Value::Float(f) => Value::from(*f),
            toml::Value::Boolean(b) => Value::Bool(*b),
            // As RFC 3339 text; a timestamp column compares it as an instant.
            toml::Value::Datetime(d) => Value::String(d.to_string()),
            toml::Value::Array(items) => Value::Array(items.iter().map(value).collect()),
            toml::Value::Table(t) => toml_to_json(t),
        }
    }
    Value::Object(table.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, TimeUnit};

    use super::*;

    /// Two rows: `ts` a UTC timestamp, `text` a string that looks like one.
    fn rows() -> (Arc<Schema>, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("text", DataType::Utf8, false),
        ]));
        let ts = TimestampMillisecondArray::from(vec![1_795_600_805_500, 1_795_600_860_000])
            .with_timezone("UTC");
        let text = StringArray::from(vec!["2026-11-25T10:00:05Z", "b"]);
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ts), Arc::new(text)]).unwrap();
        (schema, batch)
    }

    fn differences(expected: &str, all_columns: bool) -> String {
        let expected: toml::Table = toml::from_str(expected).unwrap();
        let expected: Vec<toml::Table> = expected["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_table().unwrap().clone())
            .collect();
        let (schema, batch) = rows();
        let produced = Produced {
            schema: Some(&schema),
            rows: &[batch],
            all_columns,
        };
        let mut out = String::new();
        compare("rows", &expected, &produced, &mut out).unwrap();
        out
    }

    #[test]
    fn timestamps_compare_as_instants_and_text_as_text() {
        // The same instants, in another offset, another precision, a TOML date-time.
        let same =
            "rows = [{ ts = '2026-11-25T11:00:05.5+01:00' }, { ts = 2026-11-25T10:01:00.000Z }]";
        assert_eq!(differences(same, false), "");
        let later = "rows = [{ ts = '2026-11-25T10:00:05.501Z' }, { ts = 2026-11-25T10:01:00Z }]";
        let said = differences(later, false);
        assert!(
            said.contains(r#"- missing    {"ts":"2026-11-25T10:00:05.501Z"}"#),
            "{said}"
        );
        assert!(
            said.contains(r#"+ unexpected {"ts":"2026-11-25T10:00:05.500Z"}"#),
            "{said}"
        );
        // A string column is text, even when it reads as a timestamp.
        let text = "rows = [{ text = '2026-11-25T10:00:05+00:00' }, { text = 'b' }]";
        assert!(differences(text, false).contains("- missing"));
    }

    #[test]
    fn a_column_the_output_lacks_is_named() {
        let said = differences("rows = [{ tss = 2026-11-25T10:00:05.5Z }]", false);
        assert!(
            said.contains("rows: no column `tss`; the columns are ts, text"),
            "{said}"
        );
        // Where a row was written is a column too.
        let said = differences(
            "rows = [{ _partition_path = 'x' }, { _partition_path = 'x' }]",
            false,
        );
        assert!(!said.contains("no column"), "{said}");
    }

    #[test]
    fn all_columns_compares_the_columns_rows_leave_out() {
        let named = "rows = [{ ts = 2026-11-25T10:00:05.5Z }, { ts = 2026-11-25T10:01:00Z }]";
        assert_eq!(differences(named, false), "");
        let said = differences(named, true);
        assert!(
            said.contains(r#"- missing    {"text":null,"ts":"2026-11-25T10:00:05.500Z"}"#),
            "{said}"
        );
        assert!(
            said.contains(r#"+ unexpected {"text":"b","ts":"2026-11-25T10:01:00Z"}"#),
            "{said}"
        );
        let every = "rows = [{ ts = 2026-11-25T10:00:05.5Z, text = '2026-11-25T10:00:05Z' }, \
                     { ts = 2026-11-25T10:01:00Z, text = 'b' }]";
        assert_eq!(differences(every, true), "");
    }
}
