//! `weir sql run`: a pipeline's transforms over a sample file, exactly as the service would
//! run them, without Kafka or the real storage.
//!
//! Each line of the sample is one message's payload, as if consumed from partition 0 of the
//! pipeline's first topic at offset (line − 1). The messages go through the service's own
//! code: the decoder, the validation rules, the transforms, the windows and the event-time
//! watermarks, into datasets in a temporary directory that replace the configured sinks. A
//! checkpoint follows every `batch` messages, as one follows each commit interval in the
//! service, so windows are emitted once the sample's watermark passes them and an event
//! arriving after its window was emitted is late. The rows are then read back from the
//! datasets' committed files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use opentelemetry::metrics::MeterProvider;
use serde::Serialize;
use weir_schemas::{PartitionKey, RawMessages};
use weir_sink::Dataset;

use crate::config::PipelineConfig;
use crate::pipeline::Pipeline;
use crate::runtime::{Summary, replay};
use crate::telemetry::{HealthLimits, Observer};

/// The dead-letter dataset of a sample run.
pub const DEAD_LETTERS: &str = "dead_letters";
/// The column that holds each row's partition path (`dt=2026-11-25/hour=10`).
pub const PARTITION_COLUMN: &str = "_partition_path";

/// What a sample run wrote.
pub struct SampleRun {
    /// Per transform, in the pipeline's order.
    pub outputs: Vec<SampleOutput>,
    /// The sample's dead letters, with `line` instead of Kafka coordinates.
    pub dead_letters: Vec<RecordBatch>,
    pub summary: Summary,
    /// Lines read (blank lines are skipped).
    pub messages: u64,
}

/// What one transform made of a sample.
pub struct SampleOutput {
    pub name: String,
    /// The transform's output columns (without the partition path), also when no row came.
    pub schema: SchemaRef,
    /// Its rows, each with its partition path as a last column.
    pub rows: Vec<RecordBatch>,
}

/// The pipeline of `config` with every dataset (dead letters included) in a scratch
/// directory instead of where the file says: planning and trying it touch no real storage.
pub async fn in_scratch(
    mut config: PipelineConfig,
) -> anyhow::Result<(Pipeline, tempfile::TempDir)> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let dataset_dir = |name: &str| scratch.path().join(name).display().to_string();
    for transform in &mut config.transforms {
        transform.sink.url = dataset_dir(&transform.name);
        transform.sink.storage.clear();
    }
    config.dead_letters.url = Some(dataset_dir(DEAD_LETTERS));
    config.dead_letters.topic = None;
    config.dead_letters.storage.clear();
    Ok((Pipeline::build(config).await?, scratch))
}

/// Reads the JSON Lines sample at `path`.
pub fn read_sample(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the sample {}", path.display()))
}

/// Runs the JSON Lines `text` (the sample of `origin`) through the pipeline of `config`,
/// `batch` messages between checkpoints.
pub async fn run_sample(
    mut config: PipelineConfig,
    text: &str,
    origin: &Path,
    batch: usize,
) -> anyhow::Result<SampleRun> {
    let topic = config.source.topics[0].clone();
    // The sample is decoded in batches of its own size, by the pipeline's decoder.
    config.source.max_batch_messages = batch.max(1);
    let (mut pipeline, _scratch) = in_scratch(config).await?;
    // The datasets, kept to read back once the run has committed into them.
    let transforms: Vec<(String, SchemaRef, std::sync::Arc<dyn Dataset>)> = pipeline
        .transforms
        .outputs()
        .iter()
        .zip(&pipeline.outputs)
        .map(|(o, d)| {
            (
                o.name().to_owned(),
                o.transform().schema(),
                d.dataset.clone(),
            )
        })
        .collect();
    let dead_letters = match &pipeline.dead_letters {
        crate::pipeline::DeadLetterTarget::Dataset { dataset, .. } => dataset.clone(),
        crate::pipeline::DeadLetterTarget::Topic(_) => {
            unreachable!("a sample's dead letters go to a scratch dataset")
        }
    };

    let mut batches = Vec::new();
    let mut raw = RawMessages::with_capacity(batch.max(1));
    let mut messages = 0;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let payload = pipeline
            .samples
            .payload(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", origin.display(), index + 1))?;
        raw.push(&topic, 0, index as i64, None, None, Some(&payload));
        messages += 1;
        if raw.len() >= batch.max(1) {
            let full = std::mem::replace(&mut raw, RawMessages::with_capacity(batch.max(1)));
            batches.push(pipeline.decoding.decode(full.finish())?);
        }
    }
    if !raw.is_empty() {
        batches.push(pipeline.decoding.decode(raw.finish())?);
    }
    if messages == 0 {
        bail!("the sample {} holds no message", origin.display());
    }

    // Metrics are recorded nowhere: a meter without readers.
    let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    let limits = HealthLimits {
        wedged_after: std::time::Duration::MAX,
        max_checkpoint_age: std::time::Duration::MAX,
    };
    let observer = Observer::new(
        &pipeline.name,
        &meters.meter("weir"),
        limits,
        std::time::Duration::ZERO,
    );
    let summary = replay(pipeline, &[PartitionKey::new(&topic, 0)], batches, observer).await?;

    let mut outputs = Vec::new();
    for (name, schema, dataset) in transforms {
        let rows = read_committed(dataset.as_ref())
            .await
            .with_context(|| format!("reading back the rows of `{name}`"))?;
        outputs.push(SampleOutput { name, schema, rows });
    }
    let dead_letters = read_committed(dead_letters.as_ref())
        .await?
        .iter()
        .map(dead_letter_view)
        .collect::<Result<Vec<_>, _>>()?;
    let dead_letters = by_line(dead_letters)?;
    Ok(SampleRun {
        outputs,
        dead_letters,
        summary,
        messages,
    })
}

/// The dead letters in the sample's order (the service writes a batch's decoding failures
/// before its rule failures).
fn by_line(letters: Vec<RecordBatch>) -> anyhow::Result<Vec<RecordBatch>> {
    let Some(first) = letters.first() else {
        return Ok(letters);
    };
    let all = arrow::compute::concat_batches(&first.schema(), &letters)?;
    let order = arrow::compute::sort_to_indices(all.column(0), None, None)?;
    Ok(vec![arrow::compute::take_record_batch(&all, &order)?])
}

/// The committed rows of `dataset`, in the order of their files' paths, each batch with its
/// partition path as a last column.
async fn read_committed(dataset: &dyn Dataset) -> anyhow::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for (partition, batch) in dataset.read_committed().await? {
        let paths: ArrayRef = std::sync::Arc::new(StringArray::from(vec![
            partition.as_str();
            batch.num_rows()
        ]));
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
        let mut columns = batch.columns().to_vec();
        columns.push(paths);
        batches.push(RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(fields)),
            columns,
        )?);
    }
    Ok(batches)
}

/// A dead-letter batch as a sample's reader wants it: the line, the reason, the detail and
/// the payload as text.
fn dead_letter_view(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .with_context(|| format!("the dead letters have no column `{name}`"))
    };
    let offsets = arrow::compute::cast(column("offset")?, &DataType::Int64)?;
    let lines: arrow::array::Int64Array = offsets
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .map(|o| o.map(|o| o + 1))
        .collect();
    let payload = column("payload")?;
    let payload: StringArray = payload
        .as_binary::<i32>()
        .iter()
        .map(|p| p.map(|p| String::from_utf8_lossy(p).into_owned()))
        .collect();
    let schema = Schema::new(vec![
        Field::new("line", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, true),
    ]);
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(schema),
        vec![
            std::sync::Arc::new(lines),
            column("reason")?.clone(),
            column("detail")?.clone(),
            std::sync::Arc::new(payload),
        ],
    )?)
}

/// How `weir sql run` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Tables for a person, with the dead letters and the windows still open.
    Table,
    /// One transform's rows as CSV (choose it with --transform).
    Csv,
    /// One JSON object: every transform's rows, the dead letters, the watermark.
    Json,
    /// One Parquet file per transform (and dead_letters.parquet) in --out.
    Parquet,
}

#[derive(Serialize)]
struct JsonReport {
    messages: u64,
    watermark_ms: Option<i64>,
    datasets: BTreeMap<String, serde_json::Value>,
    open_window_groups: BTreeMap<String, usize>,
    dead_letters: serde_json::Value,
}

/// Rows as a JSON array of objects, values as Arrow's JSON writer renders them.
pub fn json_rows(batches: &[RecordBatch]) -> anyhow::Result<serde_json::Value> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    Ok(if bytes.is_empty() {
        serde_json::Value::Array(Vec::new())
    } else {
        serde_json::from_slice(&bytes)?
    })
}

impl SampleRun {
    /// Keeps only the transform called `name`.
    pub fn only(&mut self, name: &str) -> anyhow::Result<()> {
        let known: Vec<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
        self.outputs.retain(|o| o.name == name);
        if self.outputs.is_empty() {
            bail!(
                "no transform `{name}` in the pipeline; it has {}",
                known.join(", ")
            );
        }
        Ok(())
    }

    /// Writes the run in `format` to stdout (or under `out` for Parquet).
    pub fn print(&self, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
        match format {
            Format::Table => print!("{}", self.tables()?),
            Format::Json => {
                let report = JsonReport {
                    messages: self.messages,
                    watermark_ms: self.summary.watermark_ms,
                    datasets: self
                        .outputs
                        .iter()
                        .map(|o| Ok((o.name.clone(), json_rows(&o.rows)?)))
                        .collect::<anyhow::Result<_>>()?,
                    open_window_groups: self
                        .summary
                        .datasets
                        .iter()
                        .filter_map(|(name, d)| Some((name.clone(), d.open_window_groups?)))
                        .collect(),
                    dead_letters: json_rows(&self.dead_letters)?,
                };
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Format::Csv => {
                let [SampleOutput { rows, .. }] = self.outputs.as_slice() else {
                    bail!("--format csv prints one transform: choose it with --transform");
                };
                let mut writer = arrow::csv::Writer::new(std::io::stdout());
                for batch in rows {
                    writer.write(batch)?;
                }
            }
            Format::Parquet => {
                let out = out.context("--format parquet writes files: give --out DIR")?;
                std::fs::create_dir_all(out)?;
                let mut files: Vec<(&str, &[RecordBatch])> = self
                    .outputs
                    .iter()
                    .map(|o| (o.name.as_str(), o.rows.as_slice()))
                    .collect();
                files.push((DEAD_LETTERS, &self.dead_letters));
                for (name, rows) in files {
                    let Some(first) = rows.first() else {
                        continue;
                    };
                    let path: PathBuf = out.join(format!("{name}.parquet"));
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut writer =
                        parquet::arrow::ArrowWriter::try_new(file, first.schema(), None)?;
                    for batch in rows {
                        writer.write(batch)?;
                    }
                    writer.close()?;
                }
            }
        }
        Ok(())
    }

    fn tables(&self) -> anyhow::Result<String> {
        use std::fmt::Write;
        let mut text = String::new();
        let watermark = self.summary.watermark_ms.map_or_else(
            || "none (no valid event time)".to_owned(),
            weir_schemas::rfc3339_ms,
        );
        writeln!(
            text,
            "{} messages; watermark at the end {watermark}",
            self.messages
        )?;
        for SampleOutput { name, rows, .. } in &self.outputs {
            let count: usize = rows.iter().map(RecordBatch::num_rows).sum();
            writeln!(text, "\ntransform `{name}`: {count} rows")?;
            if count > 0 {
                writeln!(
                    text,
                    "{}",
                    arrow::util::pretty::pretty_format_batches(rows)?
                )?;
            }
            if let Some(open) = self
                .summary
                .datasets
                .get(name)
                .and_then(|d| d.open_window_groups)
                .filter(|open| *open > 0)
            {
                let groups = if open == 1 { "group" } else { "groups" };
                writeln!(
                    text,
                    "{open} {groups} in windows the watermark has not closed yet (not emitted)"
                )?;
            }
        }
        let dead: usize = self.dead_letters.iter().map(RecordBatch::num_rows).sum();
        writeln!(text, "\ndead letters: {dead}")?;
        if dead > 0 {
            writeln!(
                text,
                "{}",
                arrow::util::pretty::pretty_format_batches(&self.dead_letters)?
            )?;
        }
        Ok(text)
    }
}

/// A schema's columns, a line each: `name: type`, and `NOT NULL` where it applies.
pub fn fields(schema: &Schema, indent: &str) -> String {
    schema
        .fields()
        .iter()
        .map(|field| {
            let null = if field.is_nullable() { "" } else { " NOT NULL" };
            format!("{indent}{}: {}{null}\n", field.name(), field.data_type())
        })
        .collect()
}

/// What `weir sql check` prints: each transform's kind, window, lateness, state and schema.
pub fn describe(pipeline: &Pipeline) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let config = &pipeline.config;
    for (output, settings) in pipeline.transforms.outputs().iter().zip(&config.transforms) {
        let transform = output.transform();
        let sql = config.resolve(&settings.sql);
        let _ = writeln!(text, "transform `{}` ({})", transform.name(), sql.display());
        match (output.windows(), transform.kind()) {
            (Some(windows), weir_transform::TransformKind::Windowed(window)) => {
                let lateness = humantime::format_duration(settings.allowed_lateness);
                let disorder = humantime::format_duration(config.watermarks.out_of_orderness);
                let _ = writeln!(
                    text,
                    "  windowed: {} over `{}`, allowed lateness {lateness}",
                    window.describe(),
                    config.source.event_time
                );
                let _ = writeln!(
                    text,
                    "  a window is written once the watermark (latest event time − {disorder}) \
                     passes its end + {lateness}; later events are dead letters `late`"
                );
                let _ = writeln!(text, "  state: {}", windows.describe_state());
            }
            _ => {
                let _ = writeln!(text, "  stateless: each batch of events on its own");
            }
        }
        let _ = writeln!(text, "  output:");
        text.push_str(&fields(&transform.schema(), "    "));
    }
    text.push_str("ok\n");
    text
}
