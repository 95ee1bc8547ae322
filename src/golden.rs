//! `weir sql test`: golden tests for transforms, runnable in the analysts' own CI.
//!
//! A golden test is a `*.test.toml` file next to a transform's SQL: a sample (inline or a
//! JSON Lines file beside it) and the rows the transform must produce from it, and
//! optionally the dead letters. The sample goes through `weir sql run`'s path, which is the
//! service's own, so a passing test says what production will write. Rows are compared as a
//! multiset over the columns the expected rows name; a mismatch prints what is missing and
//! what is unexpected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::config::{Environment, PipelineConfig};
use crate::sample::{DEAD_LETTERS, run_sample};

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
    let sample = tempfile::NamedTempFile::new()?;
    let input = match (&test.input, &test.input_file) {
        (Some(text), None) => text.clone(),
        (None, Some(file)) => {
            let file = path.parent().unwrap_or(Path::new(".")).join(file);
            std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the sample {}", file.display()))?
        }
        _ => anyhow::bail!("give the sample as either `input` or `input_file`"),
    };
    std::fs::write(sample.path(), input)?;
    let mut run = run_sample(config, sample.path(), test.batch).await?;
    run.only(&name)?;
    let mut differences = String::new();
    let actual = json_rows(&run.outputs[0].1)?;
    compare(
        &format!("rows of `{name}`"),
        &test.rows,
        &actual,
        &mut differences,
    );
    if let Some(expected) = &test.dead_letters {
        let actual = json_rows(&run.dead_letters)?;
        compare(DEAD_LETTERS, expected, &actual, &mut differences);
    }
    Ok(differences)
}

fn json_rows(batches: &[arrow::array::RecordBatch]) -> anyhow::Result<Vec<serde_json::Value>> {
    match crate::sample::json_rows(batches)? {
        serde_json::Value::Array(rows) => Ok(rows),
        other => anyhow::bail!("rows as JSON are an array, not {other}"),
    }
}

/// Compares `expected` rows with `actual` ones as multisets over the expected columns; adds
/// what differs to `out`.
fn compare(what: &str, expected: &[toml::Table], actual: &[serde_json::Value], out: &mut String) {
    let columns: BTreeSet<&str> = expected
        .iter()
        .flat_map(|row| row.keys().map(String::as_str))
        .collect();
    // A column some expected row names and another leaves out is expected NULL in the latter.
    let expected: Vec<serde_json::Value> = expected
        .iter()
        .map(|row| {
            let mut row = toml_to_json(row);
            if let serde_json::Value::Object(values) = &mut row {
                for column in &columns {
                    values
                        .entry(column.to_string())
                        .or_insert(serde_json::Value::Null);
                }
            }
            row
        })
        .collect();
    let expected_rows = expected.len();
    let mut unmatched: Vec<serde_json::Value> = actual
        .iter()
        .map(|row| {
            let projected = columns
                .iter()
                .map(|c| {
                    let value = row.get(*c).cloned().unwrap_or(serde_json::Value::Null);
                    (c.to_string(), value)
                })
                .collect();
            serde_json::Value::Object(projected)
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
        return;
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
}

/// Equal as JSON: integers exactly, other numbers by value (1 equals 1.0), absent equal to
/// null.
fn same(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value;
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

fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    fn value(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Float(f) => serde_json::Value::from(*f),
            toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
            // Timestamps are compared as the RFC 3339 text the rows print.
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(value).collect())
            }
            toml::Value::Table(t) => toml_to_json(t),
        }
    }
    serde_json::Value::Object(table.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}
