//! The supervisor: wires ingest, transforms and sinks, and owns the checkpoint.
//!
//! A reader thread polls and decodes; this task validates, transforms and writes. Every
//! `commit_interval` (or sooner when buffers fill, or when partitions are revoked) a checkpoint
//! commits each dataset: its files and the offset ranges they hold go into the dataset's commit
//! log, and only then are the Kafka offsets committed, for lag tools. Where a partition resumes
//! is read from the commit logs when it is assigned, after claiming it there: the lowest
//! position over the datasets, each dataset skipping what it already holds. A crash at any
//! point re-reads from there and writes every record exactly once.
//!
//! When a commit is refused because another instance claimed a partition (this one was a
//! zombie), everything uncommitted is dropped and the instance rejoins the group afresh.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int32Type, Int64Type, TimestampMillisecondType};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use weir_ingest::dead_letter_topic::DeadLetterTopic;
use weir_ingest::raw::Messages;
use weir_ingest::{JsonDecoder, KafkaSource, SourceBatch, SourceEvent, SourceStats, spawn_reader};
use weir_schemas::{DeadLetters, EventSchema, OffsetRanges, PartitionKey, Reason, metadata};
use weir_sink::{
    Committed, Dataset, EmittedWatermark, OffsetRange, PartitionWatermark, WindowStateRef,
};

use crate::telemetry::{Observer, Timestamps};
use crate::watermark::Watermarks;
use weir_transform::DataFusionError;
use weir_transform::{SqlEngine, Transform, TransformError, ValidationRules};

use crate::pipeline::{DeadLetterTarget, Output, Pipeline};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kafka(#[from] weir_ingest::KafkaError),
    #[error(transparent)]
    Sink(#[from] weir_sink::SinkError),
    #[error(transparent)]
    Transform(#[from] TransformError),
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
    /// The pipeline's event-time watermark at the end, epoch milliseconds.
    pub watermark_ms: Option<i64>,
    /// Times a commit was refused because another instance had claimed a partition.
    pub fenced: u64,
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
    /// The dataset's committed watermark (the lowest over its Kafka partitions).
    pub watermark_ms: Option<i64>,
    /// Windowed datasets: the (partition, window, key) groups still open at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_window_groups: Option<usize>,
}

/// Runs until `shutdown` turns true (or the reader fails), then drains, checkpoints and
/// returns what it did. What happens is reported to `observer` as it happens.
pub async fn run(
    pipeline: Pipeline,
    mut shutdown: watch::Receiver<bool>,
    observer: Arc<Observer>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let progress = observer.source_stats();
    let (mut state, opened) = State::open(pipeline, observer).await?;
    let Opened {
        name,
        kafka,
        schema,
        config,
        writer,
        ..
    } = &opened;
    tracing::info!(pipeline = %name, topics = ?kafka.topics, %writer, "pipeline started");
    let session = Session {
        kafka,
        schema,
        interval: config.delivery.commit_interval,
        max_buffered: config.delivery.max_buffered.as_u64() as usize,
        progress: &progress,
    };
    loop {
        match state.consume(&session, &mut shutdown).await {
            Ok(()) => break,
            Err(RunError::Sink(e)) if e.is_fenced() => {
                tracing::warn!(error = %e, "rejoining the consumer group without the lost partitions' uncommitted work");
                state.abort().await;
                state.summary.fenced += 1;
            }
            Err(e) => return Err(e),
        }
    }
    let summary = state.finish(opened, started);
    tracing::info!(
        events = summary.events_in,
        elapsed_seconds = summary.elapsed_seconds,
        "pipeline stopped"
    );
    Ok(summary)
}

/// Runs already-consumed batches through the pipeline exactly as the service would, without
/// Kafka: `partitions` are assigned first (resuming wherever the datasets' logs say), and a
/// checkpoint follows every batch. For trying transforms on a sample.
pub async fn replay(
    pipeline: Pipeline,
    partitions: &[PartitionKey],
    batches: impl IntoIterator<Item = SourceBatch>,
    observer: Arc<Observer>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let (mut state, opened) = State::open(pipeline, observer).await?;
    state.assign(partitions).await?;
    for batch in batches {
        state.process(batch).await?;
        state.checkpoint().await?;
    }
    Ok(state.finish(opened, started))
}

/// What [`State::open`] keeps aside of the state for the sessions and the summary.
struct Opened {
    name: String,
    kafka: weir_ingest::SourceConfig,
    schema: EventSchema,
    config: crate::config::PipelineConfig,
    dead_letter_target: String,
    /// Unique to this process: it owns claims in the commit logs and names the files.
    writer: String,
}

/// What one consumer session needs besides the state.
struct Session<'a> {
    kafka: &'a weir_ingest::SourceConfig,
    schema: &'a EventSchema,
    interval: Duration,
    max_buffered: usize,
    progress: &'a Arc<SourceStats>,
}

/// Where the run writes dead letters.
enum DeadLetterSink {
    /// A dataset, committed exactly once like the others.
    Dataset(Box<weir_sink::Dataset>),
    /// A Kafka topic: at least once (a crash between send and commit sends again).
    Topic(DeadLetterTopic),
}

/// The rows of one transform's output with the partition path of each.
type Computed = Vec<Vec<(RecordBatch, Option<StringArray>)>>;

/// What [`State::compute`] yields for one batch.
struct BatchResult {
    /// Per output, in order; empty for windowed outputs.
    computed: Computed,
    /// Rows that failed a validation rule: `(row, rule, detail)`.
    failed: Vec<(usize, Arc<str>, String)>,
    event_times: Vec<(PartitionKey, i64)>,
    /// The valid rows each windowed output still needs, by output index.
    windowed: Vec<(usize, RecordBatch)>,
}

struct State {
    engine: SqlEngine,
    rules: ValidationRules,
    outputs: Vec<Output>,
    dead_letters: DeadLetterSink,
    /// The consumer of the current session.
    source: Option<Arc<KafkaSource>>,
    /// Partitions assigned to this instance and claimed in every dataset.
    owned: HashSet<PartitionKey>,
    /// Where newly assigned partitions resume, until their first message arrives.
    resumed_at: HashMap<PartitionKey, i64>,
    watermarks: Watermarks,
    /// The event-time column of the source table.
    event_time: String,
    /// Offsets consumed since the last checkpoint.
    pending: OffsetRanges,
    pending_dead: DeadLetters,
    /// Kafka timestamps of the messages consumed since the last checkpoint.
    pending_timestamps: Timestamps,
    /// Late events dead-lettered since the last checkpoint, by windowed dataset.
    pending_late: BTreeMap<String, u64>,
    summary: Summary,
    observer: Arc<Observer>,
}

impl State {
    /// The state of a new run: dead letters wired, every dataset's log opened.
    async fn open(pipeline: Pipeline, observer: Arc<Observer>) -> Result<(Self, Opened), RunError> {
        let Pipeline {
            name,
            kafka,
            schema,
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
        let mut state = State {
            engine,
            rules,
            outputs,
            dead_letters,
            source: None,
            owned: HashSet::new(),
            resumed_at: HashMap::new(),
            watermarks: Watermarks::new(
                config.watermarks.out_of_orderness,
                config.watermarks.idle_timeout,
            ),
            event_time: config.source.event_time.clone(),
            pending: OffsetRanges::default(),
            pending_dead: DeadLetters::default(),
            pending_timestamps: Timestamps::default(),
            pending_late: BTreeMap::new(),
            summary: Summary::default(),
            observer,
        };
        let writer = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let orphan_grace = (config.delivery.commit_interval * 10).max(Duration::from_secs(3600));
        for dataset in state.datasets() {
            dataset.open_log(&writer, orphan_grace).await?;
        }
        let mut opened: Vec<(String, String)> = state
            .outputs
            .iter()
            .map(|o| (o.dataset.name().to_owned(), o.url.clone()))
            .collect();
        if let DeadLetterSink::Dataset(dataset) = &state.dead_letters {
            opened.push((dataset.name().to_owned(), dead_letter_target.clone()));
        }
        state.observer.storage_checked(opened);
        let opened = Opened {
            name,
            kafka,
            schema,
            config,
            dead_letter_target,
            writer,
        };
        Ok((state, opened))
    }

    /// What the run did.
    fn finish(mut self, opened: Opened, started: Instant) -> Summary {
        let elapsed = started.elapsed().as_secs_f64();
        let progress = self.observer.source_stats();
        let mut summary = self.summary;
        summary.watermark_ms = self.watermarks.watermark(Instant::now());
        summary.pipeline = opened.name;
        summary.bytes_in = progress.bytes.load(Ordering::Relaxed);
        summary.backpressure_pauses = progress.backpressure_pauses.load(Ordering::Relaxed);
        summary.elapsed_seconds = elapsed;
        summary.events_per_second = if elapsed > 0.0 {
            summary.events_in as f64 / elapsed
        } else {
            0.0
        };
        for output in &self.outputs {
            let entry = summary
                .datasets
                .entry(output.transform.name().to_owned())
                .or_default();
            entry.url = output.url.clone();
            entry.partitions = output.dataset.partitions().len();
            entry.open_window_groups = output.windows.as_ref().map(|w| w.open_groups());
            entry.watermark_ms = output
                .dataset
                .log_state()
                .and_then(|state| state.watermark_ms());
        }
        summary.dead_letter_target = opened.dead_letter_target;
        summary
    }

    /// Every dataset with a commit log: the outputs and the dead-letter dataset.
    fn datasets(&mut self) -> impl Iterator<Item = &mut Dataset> {
        let dead = match &mut self.dead_letters {
            DeadLetterSink::Dataset(dataset) => Some(dataset.as_mut()),
            DeadLetterSink::Topic(_) => None,
        };
        self.outputs.iter_mut().map(|o| &mut o.dataset).chain(dead)
    }

    /// One consumer-group membership: consumes until shutdown or an error, then stops the
    /// reader and closes the consumer. On success everything read is committed.
    async fn consume(
        &mut self,
        session: &Session<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        let source = Arc::new(KafkaSource::connect(session.kafka.clone())?);
        self.source = Some(source.clone());
        let decoder = JsonDecoder::new(session.schema, session.kafka.max_batch_messages)
            .expect("the decoder was built once when the pipeline was");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(2);
        let reader = spawn_reader(
            source.clone(),
            decoder,
            tx,
            stop.clone(),
            session.progress.clone(),
        );
        let mut next_checkpoint = tokio::time::Instant::now() + session.interval;
        let outcome: Result<(), RunError> = async {
            loop {
                self.observer.beat();
                tokio::select! {
                    biased;
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                    // Before events: with a backlog there is always an event ready, and the
                    // checkpoint must still come on time.
                    () = tokio::time::sleep_until(next_checkpoint) => {
                        self.checkpoint().await?;
                        next_checkpoint = tokio::time::Instant::now() + session.interval;
                    }
                    event = rx.recv() => match event {
                        Some(event) => {
                            self.handle(event).await?;
                            let buffered = self.buffered_bytes();
                            self.observer.buffered(buffered);
                            if buffered >= session.max_buffered {
                                tracing::debug!("buffers full, checkpointing early");
                                self.checkpoint().await?;
                                next_checkpoint = tokio::time::Instant::now() + session.interval;
                            }
                        }
                        None => break,
                    },
                }
            }
            Ok(())
        }
        .await;

        // Stop polling and take in what the reader still holds. After a failure nothing more
        // is written: dropping the events answers the reader's pending questions with "no".
        stop.store(true, Ordering::Relaxed);
        let mut outcome = outcome;
        if outcome.is_ok() {
            while let Some(event) = rx.recv().await {
                if let Err(e) = self.handle(event).await {
                    outcome = Err(e);
                    break;
                }
            }
        }
        rx.close();
        while rx.recv().await.is_some() {}
        let reader_result = tokio::task::spawn_blocking(move || reader.join())
            .await
            .map_err(|_| RunError::ReaderPanicked)?
            .map_err(|_| RunError::ReaderPanicked)?;
        if outcome.is_ok() {
            outcome = self.final_checkpoint().await;
        }
        // Closing the consumer leaves the group, which can take a moment.
        self.source = None;
        tokio::task::spawn_blocking(move || drop(source))
            .await
            .map_err(|_| RunError::ReaderPanicked)?;
        outcome?;
        Ok(reader_result?)
    }

    async fn handle(&mut self, event: SourceEvent) -> Result<(), RunError> {
        match event {
            SourceEvent::Batch(batch) => self.process(*batch).await,
            SourceEvent::Assigned { partitions, resume } => match self.assign(&partitions).await {
                Ok(offsets) => {
                    let _ = resume.send(Ok(offsets));
                    Ok(())
                }
                Err(e) => {
                    let _ = resume.send(Err(e.to_string()));
                    Err(e)
                }
            },
            SourceEvent::Revoked {
                partitions,
                lost,
                done,
            } => {
                // Commit what was read from them while they are still ours. If they were lost
                // to another instance that claimed them already, the commit is refused.
                let result = self.checkpoint().await;
                self.observer.revoked(&partitions, lost);
                if lost {
                    tracing::warn!(
                        partitions = partitions.len(),
                        "partitions lost without a handover"
                    );
                }
                for partition in &partitions {
                    self.owned.remove(partition);
                    self.resumed_at.remove(partition);
                    self.watermarks.revoke(partition);
                }
                for dataset in self.datasets() {
                    dataset.release(&partitions);
                }
                let released: Vec<(String, i32)> = partitions
                    .iter()
                    .map(|p| (p.topic.to_string(), p.partition))
                    .collect();
                let mut result = result;
                for output in &mut self.outputs {
                    if let Some(windows) = &mut output.windows
                        && let Err(error) = windows.release(&released)
                    {
                        result = result.and(Err(TransformError::Execute {
                            transform: output.transform.name().to_owned(),
                            error,
                        }
                        .into()));
                    }
                }
                let _ = done.send(());
                result
            }
        }
    }

    /// Claims newly assigned partitions in every dataset and returns where each resumes: the
    /// lowest position over the datasets that committed it, or the group's committed offset
    /// when none did. A dataset added to a running pipeline starts where the others are.
    async fn assign(&mut self, partitions: &[PartitionKey]) -> Result<Vec<Option<i64>>, RunError> {
        self.observer.assigned(partitions);
        let mut resume: Vec<Option<i64>> = vec![None; partitions.len()];
        let observer = self.observer.clone();
        for dataset in self.datasets() {
            let next = dataset.claim(partitions).await?;
            observer.claimed(
                dataset.name(),
                partitions.iter().map(|p| (p, dataset.partition_state(p))),
            );
            for (resume, next) in resume.iter_mut().zip(next) {
                *resume = match (*resume, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        self.restore_windows(partitions).await?;
        let now = Instant::now();
        for partition in partitions {
            let recorded = self.recorded_watermark(partition);
            self.watermarks.assign(partition.clone(), recorded, now);
        }
        for (partition, offset) in partitions.iter().zip(&resume) {
            match offset {
                Some(offset) => {
                    tracing::info!(%partition, offset, "resuming from the commit log");
                    self.resumed_at.insert(partition.clone(), *offset);
                }
                None => {
                    tracing::info!(%partition, "no commit yet: starting from the group's offset")
                }
            }
            self.owned.insert(partition.clone());
        }
        Ok(resume)
    }

    /// Takes in the open windows that the commit logs hold for newly assigned partitions.
    async fn restore_windows(&mut self, partitions: &[PartitionKey]) -> Result<(), RunError> {
        for output in &mut self.outputs {
            let Some(windows) = &mut output.windows else {
                continue;
            };
            let mut files: BTreeMap<String, Vec<&PartitionKey>> = BTreeMap::new();
            for partition in partitions {
                let state = output.dataset.partition_state(partition);
                windows.assign(
                    &partition.topic,
                    partition.partition,
                    state.and_then(|s| s.emitted_ms),
                );
                if let Some(path) = state.and_then(|s| s.window_state.clone()) {
                    files.entry(path).or_default().push(partition);
                }
            }
            for (path, wanted) in files {
                // The file holds its writer's partitions; take only the ones assigned here.
                let mut restore = |batch: &RecordBatch| -> Result<(), DataFusionError> {
                    let mut keep = vec![false; batch.num_rows()];
                    for (partition, rows) in rows_by_partition(batch)? {
                        if wanted.contains(&&partition) {
                            rows.values()
                                .iter()
                                .for_each(|&row| keep[row as usize] = true);
                        }
                    }
                    windows.restore(&filter_record_batch(batch, &BooleanArray::from(keep))?)
                };
                for batch in output.dataset.read_window_state(&path).await? {
                    restore(&batch).map_err(|error| TransformError::Execute {
                        transform: output.transform.name().to_owned(),
                        error,
                    })?;
                }
                tracing::info!(dataset = output.transform.name(), %path, groups = windows.open_groups(), "restored open windows");
            }
        }
        Ok(())
    }

    /// The highest watermark and event time any dataset committed for `partition`.
    fn recorded_watermark(&mut self, partition: &PartitionKey) -> Option<PartitionWatermark> {
        self.datasets()
            .filter_map(|d| {
                let state = d.partition_state(partition)?;
                Some(PartitionWatermark {
                    watermark_ms: state.watermark_ms?,
                    max_event_ms: state.max_event_ms?,
                })
            })
            .max_by_key(|w| (w.watermark_ms, w.max_event_ms))
    }

    /// Drops everything not committed, after a refused commit.
    async fn abort(&mut self) {
        self.resumed_at.clear();
        let owned: Vec<PartitionKey> = self.owned.drain().collect();
        for partition in &owned {
            self.watermarks.revoke(partition);
        }
        for dataset in self.datasets() {
            dataset.abort().await;
            dataset.release(&owned);
        }
        for output in &mut self.outputs {
            if let Some(windows) = &mut output.windows
                && let Err(e) = windows.clear()
            {
                tracing::warn!(error = %e, "could not reset window state");
            }
        }
        self.pending = OffsetRanges::default();
        self.pending_dead = DeadLetters::default();
        self.pending_timestamps.clear();
        self.pending_late.clear();
        self.observer.released_all();
    }

    async fn process(&mut self, batch: SourceBatch) -> Result<(), RunError> {
        let span = tracing::info_span!("batch", messages = batch.messages.len());
        self.process_batch(batch).instrument(span).await
    }

    async fn process_batch(&mut self, mut batch: SourceBatch) -> Result<(), RunError> {
        // Messages polled just before their partition was revoked are someone else's now.
        if batch
            .ranges()
            .iter()
            .any(|(p, _, _)| !self.owned.contains(p))
        {
            batch.retain(|p| self.owned.contains(p));
        }
        if !self.resumed_at.is_empty() {
            self.check_resumed(batch.ranges());
        }
        let SourceBatch { decoded, messages } = batch;
        self.pending.merge(&messages.ranges);
        self.observer.consumed(&messages.ranges);
        self.pending_dead.extend(decoded.dead_letters);
        self.pending_timestamps
            .extend(messages.timestamps.iter().flatten().copied());
        if decoded.batch.num_rows() == 0 {
            self.observe(&messages.ranges, &[]);
            return Ok(());
        }
        // Compute everything before writing anything: a SQL failure must not leave some
        // datasets written and the batch dead-lettered as well.
        let transform = tracing::info_span!("transform", rows = decoded.batch.num_rows());
        match self
            .compute(decoded.batch, &messages.ranges)
            .instrument(transform)
            .await
        {
            Ok(BatchResult {
                computed,
                failed,
                event_times,
                windowed,
            }) => {
                self.observe(&messages.ranges, &event_times);
                for (index, input) in windowed {
                    self.add_to_windows(index, input, &messages).await;
                }
                for (row, rule, detail) in failed {
                    let message = decoded.rows[row] as usize;
                    self.pending_dead.push(messages.dead_letter(
                        message,
                        Reason::Rule(rule),
                        detail,
                    ));
                }
                for (output, parts) in self.outputs.iter_mut().zip(computed) {
                    let span = tracing::info_span!("write", dataset = output.transform.name());
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
                self.observe(&messages.ranges, &[]);
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

    /// Adds valid rows to a windowed output's open windows, one Kafka partition at a time.
    /// Rows too late for every window they fall in are dead-lettered as `late`; the rows of a
    /// partition the SQL fails on, as `transform_failed`.
    async fn add_to_windows(&mut self, index: usize, input: RecordBatch, messages: &Messages) {
        let output = &mut self.outputs[index];
        let windows = output.windows.as_mut().expect("a windowed output");
        let name = output.transform.name();
        let by_partition = match rows_by_partition(&input) {
            Ok(rows) => rows,
            Err(e) => unreachable!("the source table has its metadata columns: {e}"),
        };
        let mut message_of: Option<HashMap<(&str, i32, i64), usize>> = None;
        for (partition, rows) in by_partition {
            let batch = match arrow::compute::take_record_batch(&input, &rows) {
                Ok(batch) => batch,
                Err(e) => unreachable!("row indices come from the batch: {e}"),
            };
            let outcome = windows
                .add(
                    &self.engine,
                    &output.transform,
                    &partition.topic,
                    partition.partition,
                    batch.clone(),
                )
                .await;
            let (rows, reason, detail): (Vec<usize>, _, Box<dyn Fn(usize) -> String>) =
                match outcome {
                    Ok(late) if late.is_empty() => continue,
                    Ok(late) => {
                        *self.pending_late.entry(name.to_owned()).or_insert(0) += late.len() as u64;
                        let emitted = windows.emitted(&partition.topic, partition.partition);
                        let times = arrow::compute::cast(
                            batch
                                .column_by_name(&self.event_time)
                                .expect("checked at start"),
                            &metadata::utc_millis(),
                        )
                        .expect("a timestamp casts to milliseconds");
                        let detail = move |row: usize| {
                            let times = times.as_primitive::<TimestampMillisecondType>();
                            format!(
                                "late for transform `{name}`: event time {} falls only in windows                                  emitted at watermark {} (plus the allowed lateness)",
                                rfc3339(times.value(row)),
                                emitted.map_or_else(|| "-".into(), rfc3339)
                            )
                        };
                        (late, Reason::Late, Box::new(detail))
                    }
                    Err(error) => {
                        let detail = error.to_string();
                        tracing::warn!(error = %detail, "windowed SQL failed on a batch; dead-lettering its rows");
                        (
                            (0..batch.num_rows()).collect(),
                            Reason::TransformFailed,
                            Box::new(move |_| detail.clone()),
                        )
                    }
                };
            let message_of = message_of.get_or_insert_with(|| {
                (0..messages.len())
                    .map(|i| {
                        let key = (
                            messages.topic(i).as_ref(),
                            messages.partitions[i],
                            messages.offsets[i],
                        );
                        (key, i)
                    })
                    .collect()
            });
            let offsets = metadata_column::<Int64Type>(&batch, metadata::OFFSET)
                .expect("the source table has its metadata columns");
            for row in rows {
                let key = (
                    partition.topic.as_ref(),
                    partition.partition,
                    offsets.value(row),
                );
                if let Some(&message) = message_of.get(&key) {
                    self.pending_dead.push(messages.dead_letter(
                        message,
                        reason.clone(),
                        detail(row),
                    ));
                }
            }
        }
    }

    /// Warns when a partition's first message after an assignment comes later than where it
    /// resumed: the offsets between were not there to read (deleted by retention, or
    /// transaction markers), and the next commit's range covers them.
    fn check_resumed(&mut self, ranges: &OffsetRanges) {
        for (partition, first, _) in ranges.iter() {
            if let Some(resumed) = self.resumed_at.remove(partition)
                && first > resumed
            {
                tracing::warn!(
                    %partition,
                    resumed,
                    first,
                    "offsets between the resume position and the first message were not readable \
                     (retention, compaction or transaction markers)"
                );
            }
        }
    }

    /// Tells the watermarks that messages of every partition in `ranges` arrived, with the
    /// latest event time of each among the valid rows.
    fn observe(&mut self, ranges: &OffsetRanges, event_times: &[(PartitionKey, i64)]) {
        let now = Instant::now();
        for (partition, _, _) in ranges.iter() {
            let max = event_times
                .iter()
                .find(|(p, _)| p == partition)
                .map(|(_, t)| *t);
            self.watermarks.observe(partition, max, now);
        }
    }

    /// Applies the rules, runs every transform and computes partition paths. A dataset that
    /// already holds some of the batch's offsets (it committed further than another before a
    /// restart) gets only the rest.
    async fn compute(
        &self,
        batch: RecordBatch,
        ranges: &OffsetRanges,
    ) -> Result<BatchResult, TransformError> {
        let execute = |transform: &str, error| TransformError::Execute {
            transform: transform.to_owned(),
            error,
        };
        let outcome = self
            .rules
            .apply(batch)
            .map_err(|e| execute("validation", e))?;
        if outcome.passed.num_rows() == 0 {
            return Ok(BatchResult {
                computed: self.outputs.iter().map(|_| Vec::new()).collect(),
                failed: outcome.failed,
                event_times: Vec::new(),
                windowed: Vec::new(),
            });
        }
        // Only valid events move event time: a rule can keep a bogus far-future time out.
        let event_times = latest_event_times(&outcome.passed, &self.event_time)
            .map_err(|e| execute("validation", e))?;
        let replayed: Vec<Option<BooleanArray>> = self
            .outputs
            .iter()
            .map(|o| not_yet_committed(&o.dataset, ranges, &outcome.passed))
            .collect::<Result<_, _>>()
            .map_err(|e| execute("validation", e))?;
        let mut windowed = Vec::new();
        let results = if replayed.iter().all(Option::is_none) {
            let stateless: Vec<&Transform> = self
                .outputs
                .iter()
                .filter(|o| o.windows.is_none())
                .map(|o| &o.transform)
                .collect();
            let mut results = self
                .engine
                .run(outcome.passed.clone(), &stateless)
                .await?
                .into_iter();
            let mut all = Vec::with_capacity(self.outputs.len());
            for (index, output) in self.outputs.iter().enumerate() {
                if output.windows.is_some() {
                    windowed.push((index, outcome.passed.clone()));
                    all.push(Vec::new());
                } else {
                    all.push(results.next().expect("one result per stateless transform"));
                }
            }
            all
        } else {
            let mut results = Vec::with_capacity(self.outputs.len());
            for (index, (output, keep)) in self.outputs.iter().zip(&replayed).enumerate() {
                let input = match keep {
                    None => outcome.passed.clone(),
                    Some(keep) => filter_record_batch(&outcome.passed, keep)
                        .map_err(|e| execute(output.transform.name(), e.into()))?,
                };
                // The dataset holds all of these rows already: nothing to compute (an
                // aggregate over no rows would still yield one).
                if input.num_rows() == 0 {
                    results.push(Vec::new());
                    continue;
                }
                if output.windows.is_some() {
                    windowed.push((index, input));
                    results.push(Vec::new());
                    continue;
                }
                let mut result = self.engine.run(input, &[&output.transform]).await?;
                results.push(result.pop().unwrap_or_default());
            }
            results
        };
        let mut computed = Vec::with_capacity(results.len());
        for (output, batches) in self.outputs.iter().zip(results) {
            let mut parts = Vec::with_capacity(batches.len());
            for batch in batches {
                let paths = output
                    .partitioner
                    .paths(&batch)
                    .map_err(|e| execute(output.transform.name(), e))?;
                parts.push((batch, paths));
            }
            computed.push(parts);
        }
        Ok(BatchResult {
            computed,
            failed: outcome.failed,
            event_times,
            windowed,
        })
    }

    fn buffered_bytes(&self) -> usize {
        self.outputs
            .iter()
            .map(|o| o.dataset.buffered_bytes())
            .sum()
    }

    /// Commits every dataset, then the Kafka offsets.
    async fn checkpoint(&mut self) -> Result<(), RunError> {
        self.checkpoint_reported(false).await
    }

    /// The last checkpoint before the consumer closes.
    async fn final_checkpoint(&mut self) -> Result<(), RunError> {
        self.checkpoint_reported(true).await
    }

    async fn checkpoint_reported(&mut self, closing: bool) -> Result<(), RunError> {
        let messages = self.pending.messages();
        let span = tracing::info_span!("checkpoint", messages);
        self.observer.checkpoint_started();
        let result = self.checkpoint_now(closing).instrument(span).await;
        let error = result.as_ref().err().map(ToString::to_string);
        self.observer
            .checkpoint_finished(error, messages > 0, self.buffered_bytes());
        // Freshness is told last: once a scrape counts a message as visible, the scrapes
        // after it see all the rest of the checkpoint that made it so.
        if result.is_ok() {
            self.observer.visible(
                &std::mem::take(&mut self.pending_timestamps),
                chrono::Utc::now().timestamp_millis(),
            );
        }
        result
    }

    async fn checkpoint_now(&mut self, closing: bool) -> Result<(), RunError> {
        let started = Instant::now();
        let watermarks = self.watermarks.recorded(started);
        self.observer.watermarks(
            watermarks
                .iter()
                .map(|r| (r.partition.clone(), r.watermark.watermark_ms)),
        );
        if self.pending.is_empty() {
            if let Some(source) = &self.source {
                source.commit_again();
            }
            return Ok(());
        }
        let watermark = self.watermarks.watermark(started);
        // Dead letters first: a windowed dataset that committed skips its rows on replay,
        // so the `late` letters they made must already be committed.
        let mut dead = self.pending_dead.take();
        match &mut self.dead_letters {
            DeadLetterSink::Topic(topic) => {
                if !dead.is_empty() {
                    topic.send(&dead).await?;
                }
            }
            DeadLetterSink::Dataset(dataset) => {
                dead.retain(|letter| {
                    let partition = PartitionKey {
                        topic: letter.topic.clone(),
                        partition: letter.partition,
                    };
                    dataset
                        .next_offset(&partition)
                        .is_none_or(|next| letter.offset >= next)
                });
                if !dead.is_empty() {
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
                }
                let ranges = uncommitted(dataset, &self.pending);
                let began = Instant::now();
                let committed = dataset.commit(ranges, watermarks.clone(), None).await?;
                report_commit(&self.observer, dataset, &committed, began);
            }
        }
        for output in &mut self.outputs {
            let began = Instant::now();
            let ranges = uncommitted(&output.dataset, &self.pending);
            let (recorded, window_state) = match &mut output.windows {
                // Windows are emitted and their state saved only with offsets to commit: the
                // state must always match the offsets committed beside it.
                Some(windows) if !ranges.is_empty() => {
                    // A partition's windows close at the pipeline watermark, or at its own when
                    // it lags behind (taken over with a backlog).
                    let done = windows
                        .checkpoint(&output.transform, &self.engine, |topic, partition| {
                            let own = watermarks
                                .iter()
                                .find(|r| {
                                    r.partition.partition == partition
                                        && &*r.partition.topic == topic
                                })
                                .map(|r| r.watermark.watermark_ms);
                            // A partition without an event time yet closes nothing.
                            Some(watermark?.min(own?))
                        })
                        .await?;
                    for batch in &done.output {
                        let paths = output.partitioner.paths(batch).map_err(|error| {
                            TransformError::Execute {
                                transform: output.transform.name().to_owned(),
                                error,
                            }
                        })?;
                        output.dataset.write(batch, paths.as_ref()).await?;
                    }
                    let path = match &done.snapshot {
                        Some(snapshot) => Some(output.dataset.write_window_state(snapshot).await?),
                        None => None,
                    };
                    let partitions = self
                        .owned
                        .iter()
                        .map(|p| EmittedWatermark {
                            partition: p.clone(),
                            emitted_ms: windows.emitted(&p.topic, p.partition),
                        })
                        .collect();
                    // A windowed dataset is complete up to the windows it emitted.
                    let recorded = watermarks
                        .iter()
                        .filter_map(|r| {
                            let until = windows
                                .complete_until(&r.partition.topic, r.partition.partition)?;
                            let mut r = r.clone();
                            r.watermark.watermark_ms = r.watermark.watermark_ms.min(until);
                            Some(r)
                        })
                        .collect();
                    (recorded, Some(WindowStateRef { path, partitions }))
                }
                _ => (watermarks.clone(), None),
            };
            let committed = output
                .dataset
                .commit(ranges, recorded, window_state)
                .await?;
            report_commit(&self.observer, &output.dataset, &committed, began);
            let entry = self
                .summary
                .datasets
                .entry(output.transform.name().to_owned())
                .or_default();
            for file in &committed.files {
                entry.rows += file.rows;
                entry.bytes += file.bytes;
                entry.files += 1;
            }
        }
        for (reason, count) in dead.counts() {
            *self.summary.dead_letters.entry(reason).or_insert(0) += count;
        }
        self.observer.dead_lettered(dead.counts());
        for (dataset, late) in std::mem::take(&mut self.pending_late) {
            self.observer.late(&dataset, "dead_lettered", late);
        }
        let ranges = std::mem::take(&mut self.pending);
        self.summary.events_in += ranges.messages();
        self.summary.checkpoints += 1;
        // The datasets' logs are the truth; group offsets only feed lag tools. The last
        // commit before the consumer closes is waited for, the others are not.
        match (self.source.clone(), closing) {
            (Some(source), false) => source.commit_in_background(&ranges),
            (Some(source), true) => {
                let result = tokio::task::spawn_blocking(move || source.commit(&ranges))
                    .await
                    .expect("the commit task does not panic");
                if let Err(e) = result {
                    tracing::warn!(error = %e, "the last Kafka offset commit failed");
                }
            }
            (None, _) => {}
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint committed"
        );
        Ok(())
    }
}

/// Tells the observer what a dataset's commit did.
fn report_commit(observer: &Observer, dataset: &Dataset, committed: &Committed, began: Instant) {
    if committed.seq.is_none() {
        return;
    }
    let partitions = dataset
        .log_state()
        .into_iter()
        .flat_map(|state| state.partitions.iter());
    observer.committed(
        dataset.name(),
        committed.files.iter().map(|f| (f.rows, f.bytes)),
        began.elapsed(),
        partitions,
    );
    observer.late(dataset.name(), "written", committed.late_rows);
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, DataFusionError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("the batch has no column {name}")))
}

fn metadata_column<'a, T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::PrimitiveArray<T>, DataFusionError> {
    Ok(column(batch, name)?.as_primitive::<T>())
}

/// The rows of `batch` per Kafka partition, in order.
fn rows_by_partition(
    batch: &RecordBatch,
) -> Result<Vec<(PartitionKey, UInt32Array)>, DataFusionError> {
    let topics = column(batch, metadata::TOPIC)?.as_string::<i32>();
    let partitions = metadata_column::<Int32Type>(batch, metadata::PARTITION)?;
    let mut rows: Vec<(PartitionKey, Vec<u32>)> = Vec::new();
    for row in 0..batch.num_rows() {
        let (topic, partition) = (topics.value(row), partitions.value(row));
        let is =
            |(p, _): &&mut (PartitionKey, Vec<u32>)| p.partition == partition && &*p.topic == topic;
        match rows.iter_mut().rev().find(is) {
            Some((_, list)) => list.push(row as u32),
            None => rows.push((PartitionKey::new(topic, partition), vec![row as u32])),
        }
    }
    Ok(rows
        .into_iter()
        .map(|(p, r)| (p, UInt32Array::from(r)))
        .collect())
}

/// The latest event time per Kafka partition among the rows of `batch`.
fn latest_event_times(
    batch: &RecordBatch,
    event_time: &str,
) -> Result<Vec<(PartitionKey, i64)>, DataFusionError> {
    let times = arrow::compute::cast(column(batch, event_time)?, &metadata::utc_millis())?;
    let times = times.as_primitive::<TimestampMillisecondType>();
    let topics = column(batch, metadata::TOPIC)?.as_string::<i32>();
    let partitions = metadata_column::<Int32Type>(batch, metadata::PARTITION)?;
    let mut latest: Vec<(PartitionKey, i64)> = Vec::new();
    // Rows of one partition mostly come together: look at the last one's entry first.
    let mut last = 0;
    for row in 0..batch.num_rows() {
        if times.is_null(row) {
            continue;
        }
        let (topic, partition, time) = (topics.value(row), partitions.value(row), times.value(row));
        let is = |(p, _): &(PartitionKey, i64)| p.partition == partition && &*p.topic == topic;
        if !latest.get(last).is_some_and(is) {
            last = match latest.iter().position(is) {
                Some(found) => found,
                None => {
                    latest.push((PartitionKey::new(topic, partition), time));
                    latest.len() - 1
                }
            };
        }
        latest[last].1 = latest[last].1.max(time);
    }
    Ok(latest)
}

/// The ranges of `pending` that `dataset` has not committed yet.
fn uncommitted(dataset: &Dataset, pending: &OffsetRanges) -> Vec<OffsetRange> {
    pending
        .iter()
        .filter_map(|(partition, first, last)| {
            let from = dataset.next_offset(partition).unwrap_or(first);
            (last + 1 > from).then(|| OffsetRange {
                partition: partition.clone(),
                from,
                to: last + 1,
            })
        })
        .collect()
}

/// Which rows of `batch` (from the offsets in `ranges`) `dataset` does not hold yet; `None`
/// when that is all of them, as it is except just after a restart.
fn not_yet_committed(
    dataset: &Dataset,
    ranges: &OffsetRanges,
    batch: &RecordBatch,
) -> Result<Option<BooleanArray>, DataFusionError> {
    let replayed = ranges.iter().any(|(partition, first, _)| {
        dataset
            .next_offset(partition)
            .is_some_and(|next| first < next)
    });
    if !replayed {
        return Ok(None);
    }
    let topics = column(batch, metadata::TOPIC)?.as_string::<i32>();
    let partitions = metadata_column::<Int32Type>(batch, metadata::PARTITION)?;
    let offsets = metadata_column::<Int64Type>(batch, metadata::OFFSET)?;
    let keep = (0..batch.num_rows())
        .map(|row| {
            let partition = PartitionKey::new(topics.value(row), partitions.value(row));
            Some(
                dataset
                    .next_offset(&partition)
                    .is_none_or(|next| offsets.value(row) >= next),
            )
        })
        .collect();
    Ok(Some(keep))
}
