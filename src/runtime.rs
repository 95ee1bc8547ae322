//! The supervisor: wires ingest, transforms and sinks, and owns the checkpoint.
//!
//! A reader thread polls and decodes; this task validates, transforms and writes. Every
//! `commit_interval` (or sooner when buffers fill) a checkpoint closes all open files, makes
//! the dead letters durable and only then commits the Kafka offsets those rows came from. A
//! crash between two checkpoints re-reads from the last commit: at least once, never lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arrow::array::{RecordBatch, StringArray};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use weir_ingest::dead_letter_topic::DeadLetterTopic;
use weir_ingest::{KafkaSource, SourceBatch, SourceStats, spawn_reader};
use weir_schemas::{DeadLetters, OffsetRanges, Reason};

use weir_transform::{SqlEngine, Transform, ValidationRules};

use crate::pipeline::{DeadLetterTarget, Output, Pipeline};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kafka(#[from] weir_ingest::KafkaError),
    #[error(transparent)]
    Sink(#[from] weir_sink::SinkError),
    #[error("the Kafka reader thread panicked")]
    ReaderPanicked,
}

/// What a run did; printed by the quickstart and returned to tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub pipeline: String,
    pub events_in: u64,
    pub bytes_in: u64,
    pub datasets: BTreeMap<String, DatasetSummary>,
    pub dead_letters: BTreeMap<String, u64>,
    pub dead_letter_target: String,
    pub checkpoints: u64,
    pub backpressure_pauses: u64,
    pub elapsed_seconds: f64,
    pub events_per_second: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DatasetSummary {
    pub url: String,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub partitions: usize,
}

/// Runs until `shutdown` turns true (or the reader fails), then drains, checkpoints and
/// returns what it did. `progress` counts what was consumed, for whoever watches.
pub async fn run(
    pipeline: Pipeline,
    mut shutdown: watch::Receiver<bool>,
    progress: Arc<SourceStats>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let Pipeline {
        name,
        kafka,
        decoder,
        engine,
        rules,
        outputs,
        dead_letters,
        config,
    } = pipeline;
    let dead_letter_target = match &dead_letters {
        DeadLetterTarget::Dataset { url, .. } => url.clone(),
        DeadLetterTarget::Topic(topic) => format!("kafka topic {topic}"),
    };
    let dead_letters = match dead_letters {
        DeadLetterTarget::Dataset { dataset, .. } => DeadLetterSink::Dataset(dataset),
        DeadLetterTarget::Topic(topic) => DeadLetterSink::Topic(DeadLetterTopic::new(
            &kafka.bootstrap_servers,
            &kafka.properties,
            &topic,
        )?),
    };
    let source = Arc::new(KafkaSource::connect(kafka.clone())?);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel::<SourceBatch>(2);
    let reader = spawn_reader(source.clone(), decoder, tx, stop.clone(), progress.clone());
    tracing::info!(pipeline = %name, topics = ?kafka.topics, "pipeline started");

    let mut state = State {
        engine,
        rules,
        outputs,
        dead_letters,
        source,
        pending: OffsetRanges::default(),
        pending_dead: DeadLetters::default(),
        summary: Summary::default(),
    };
    let interval = config.delivery.commit_interval;
    let max_buffered = config.delivery.max_buffered.as_u64() as usize;
    let mut next_checkpoint = tokio::time::Instant::now() + interval;

    let outcome: Result<(), RunError> = async {
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                batch = rx.recv() => match batch {
                    Some(batch) => {
                        state.process(batch).await?;
                        if state.buffered_bytes() >= max_buffered {
                            tracing::debug!("buffers full, checkpointing early");
                            state.checkpoint().await?;
                            next_checkpoint = tokio::time::Instant::now() + interval;
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(next_checkpoint) => {
                    state.checkpoint().await?;
                    next_checkpoint = tokio::time::Instant::now() + interval;
                }
            }
        }
        Ok(())
    }
    .await;

    // Stop polling, take in what the reader still holds, and make it all durable. After a
    // failure nothing more is written: what is not committed is read again on restart.
    stop.store(true, Ordering::Relaxed);
    if outcome.is_ok() {
        while let Some(batch) = rx.recv().await {
            state.process(batch).await?;
        }
    } else {
        rx.close();
    }
    let reader_result = tokio::task::spawn_blocking(move || reader.join())
        .await
        .map_err(|_| RunError::ReaderPanicked)?
        .map_err(|_| RunError::ReaderPanicked)?;
    outcome?;
    state.checkpoint().await?;
    reader_result?;

    let elapsed = started.elapsed().as_secs_f64();
    let mut summary = state.summary;
    summary.pipeline = name;
    summary.bytes_in = progress.bytes.load(Ordering::Relaxed);
    summary.backpressure_pauses = progress.backpressure_pauses.load(Ordering::Relaxed);
    summary.elapsed_seconds = elapsed;
    summary.events_per_second = if elapsed > 0.0 {
        summary.events_in as f64 / elapsed
    } else {
        0.0
    };
    for output in &state.outputs {
        let entry = summary
            .datasets
            .entry(output.transform.name().to_owned())
            .or_default();
        entry.url = output.url.clone();
        entry.partitions = output.dataset.partitions().len();
    }
    summary.dead_letter_target = dead_letter_target;
    tracing::info!(
        events = summary.events_in,
        elapsed_seconds = elapsed,
        "pipeline stopped"
    );
    Ok(summary)
}

/// Where the run writes dead letters.
enum DeadLetterSink {
    Dataset(Box<weir_sink::Dataset>),
    Topic(DeadLetterTopic),
}

/// The rows of one transform's output with the partition path of each.
type Computed = Vec<Vec<(RecordBatch, Option<StringArray>)>>;

struct State {
    engine: SqlEngine,
    rules: ValidationRules,
    outputs: Vec<Output>,
    dead_letters: DeadLetterSink,
    source: Arc<KafkaSource>,
    pending: OffsetRanges,
    pending_dead: DeadLetters,
    summary: Summary,
}

impl State {
    async fn process(&mut self, batch: SourceBatch) -> Result<(), RunError> {
        let span = tracing::debug_span!("batch", messages = batch.messages.len());
        self.process_batch(batch).instrument(span).await
    }

    async fn process_batch(&mut self, batch: SourceBatch) -> Result<(), RunError> {
        let SourceBatch { decoded, messages } = batch;
        self.pending.merge(&messages.ranges);
        self.pending_dead.extend(decoded.dead_letters);
        if decoded.batch.num_rows() == 0 {
            return Ok(());
        }
        // Compute everything before writing anything: a SQL failure must not leave some
        // datasets written and the batch dead-lettered as well.
        let transform = tracing::debug_span!("transform", rows = decoded.batch.num_rows());
        match self.compute(decoded.batch).instrument(transform).await {
            Ok((computed, failed)) => {
                for (row, rule, detail) in failed {
                    let message = decoded.rows[row] as usize;
                    self.pending_dead.push(messages.dead_letter(
                        message,
                        Reason::Rule(rule),
                        detail,
                    ));
                }
                for (output, parts) in self.outputs.iter_mut().zip(computed) {
                    let span = tracing::debug_span!("write", dataset = output.transform.name());
                    let dataset = &mut output.dataset;
                    async {
                        for (batch, paths) in parts {
                            dataset.write(&batch, paths.as_ref()).await?;
                        }
                        dataset.roll_aged().await
                    }
                    .instrument(span)
                    .await?;
                }
            }
            Err(error) => {
                let detail = error.to_string();
                tracing::warn!(error = %detail, "SQL failed on a batch; dead-lettering its rows");
                for &message in &decoded.rows {
                    self.pending_dead.push(messages.dead_letter(
                        message as usize,
                        Reason::TransformFailed,
                        detail.clone(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Applies the rules, runs every transform and computes partition paths.
    async fn compute(
        &self,
        batch: RecordBatch,
    ) -> Result<(Computed, Vec<(usize, Arc<str>, String)>), weir_transform::TransformError> {
        let execute = |error| weir_transform::TransformError::Execute {
            transform: "validation".into(),
            error,
        };
        let outcome = self.rules.apply(batch).map_err(execute)?;
        if outcome.passed.num_rows() == 0 {
            return Ok((
                self.outputs.iter().map(|_| Vec::new()).collect(),
                outcome.failed,
            ));
        }
        let transforms: Vec<&Transform> = self.outputs.iter().map(|o| &o.transform).collect();
        let results = self.engine.run(outcome.passed, &transforms).await?;
        let mut computed = Vec::with_capacity(results.len());
        for (output, batches) in self.outputs.iter().zip(results) {
            let mut parts = Vec::with_capacity(batches.len());
            for batch in batches {
                let paths = output.partitioner.paths(&batch).map_err(|error| {
                    weir_transform::TransformError::Execute {
                        transform: output.transform.name().to_owned(),
                        error,
                    }
                })?;
                parts.push((batch, paths));
            }
            computed.push(parts);
        }
        Ok((computed, outcome.failed))
    }

    fn buffered_bytes(&self) -> usize {
        self.outputs
            .iter()
            .map(|o| o.dataset.buffered_bytes())
            .sum()
    }

    /// Closes every open file, makes dead letters durable, then commits the offsets.
    async fn checkpoint(&mut self) -> Result<(), RunError> {
        let span = tracing::debug_span!("checkpoint", messages = self.pending.messages());
        self.checkpoint_now().instrument(span).await
    }

    async fn checkpoint_now(&mut self) -> Result<(), RunError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        for output in &mut self.outputs {
            let files = output.dataset.flush().await?;
            let entry = self
                .summary
                .datasets
                .entry(output.transform.name().to_owned())
                .or_default();
            for file in &files {
                entry.rows += file.rows;
                entry.bytes += file.bytes;
                entry.files += 1;
            }
        }
        let dead = self.pending_dead.take();
        if !dead.is_empty() {
            match &mut self.dead_letters {
                DeadLetterSink::Topic(topic) => topic.send(&dead).await?,
                DeadLetterSink::Dataset(dataset) => {
                    // Partitioned by the day they were dead-lettered, so a service running
                    // for months keeps a browsable dataset.
                    let now = chrono::Utc::now();
                    let day = StringArray::from(vec![
                        format!("dt={}", now.format("%Y-%m-%d"));
                        dead.len()
                    ]);
                    dataset
                        .write(&dead.to_batch(now.timestamp_millis()), Some(&day))
                        .await?;
                    dataset.flush().await?;
                }
            }
            for (reason, count) in dead.counts() {
                *self.summary.dead_letters.entry(reason).or_insert(0) += count;
            }
        }
        let ranges = std::mem::take(&mut self.pending);
        let source = self.source.clone();
        let commit = tokio::task::spawn_blocking(move || {
            let result = source.commit(&ranges);
            (ranges, result)
        })
        .await
        .expect("the commit task does not panic");
        let (ranges, result) = commit;
        if let Err(e) = result {
            // The data is durable; a later commit covers these offsets. Only re-reading
            // (and so duplicates on a restart) can follow, never loss.
            tracing::warn!(error = %e, "offset commit failed; the next checkpoint retries");
        }
        self.summary.events_in += ranges.messages();
        self.summary.checkpoints += 1;
        tracing::debug!(
            messages = ranges.messages(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint committed"
        );
        Ok(())
    }
}
