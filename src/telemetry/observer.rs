//! What the running pipeline reports about itself, in one place.
//!
//! The runtime tells the [`Observer`] what happened (a batch consumed, partitions assigned, a
//! dataset committed); everything that reads the state of the pipeline works from the same
//! view: the OpenTelemetry instruments (gauges read it when metrics are collected), the health
//! probes and the status page's history. Counters and histograms are recorded as things happen;
//! levels (offsets, watermarks, ages) are gauges observed at collection, so a scrape always
//! sees the present.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use serde::Serialize;
use weir_ingest::SourceStats;
use weir_schemas::{OffsetRanges, PartitionKey};
use weir_sink::PartitionState;

/// Boundaries of the commit-duration histogram, seconds.
const COMMIT_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Boundaries of the freshness histogram, seconds: from sub-second to an hour behind.
/// Points of the status page's history kept at most, over every series: about 30 MB.
const HISTORY_POINTS: usize = 250_000;
const FRESHNESS_SECONDS: &[f64] = &[
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// When the probes call the pipeline unhealthy or not ready.
#[derive(Debug, Clone, Copy)]
pub struct HealthLimits {
    /// `/healthz` fails when the pipeline loop has not moved for this long.
    pub wedged_after: Duration,
    /// `/readyz` fails when the last checkpoint (or one still running) is older than this.
    pub max_checkpoint_age: Duration,
}

/// The pipeline's state as the observer last heard it.
#[derive(Default)]
struct View {
    /// The partitions this instance owns, by the pipeline's consumer.
    partitions: BTreeMap<PartitionKey, PartitionView>,
    datasets: BTreeMap<String, DatasetView>,
    dead_letters: BTreeMap<String, u64>,
    buffered_bytes: u64,
    last_beat: Option<Instant>,
    /// Every dataset's log opened and written to at start.
    storage_checked: bool,
    checkpoint_running_since: Option<Instant>,
    last_checkpoint: Option<Instant>,
    last_checkpoint_error: Option<String>,
}

#[derive(Default, Clone)]
struct PartitionView {
    /// The offset the pipeline reads next.
    consumed_offset: Option<i64>,
    /// The partition's high watermark, asked of the brokers every `log_end_interval`.
    log_end_offset: Option<i64>,
    /// The oldest offset the brokers still hold: where a dataset that never committed the
    /// partition would start.
    log_start_offset: Option<i64>,
    /// The partition's event-time watermark in the pipeline, epoch milliseconds.
    watermark_ms: Option<i64>,
}

#[derive(Default)]
struct DatasetView {
    url: String,
    /// What the dataset's commit log holds for each owned partition.
    partitions: BTreeMap<PartitionKey, DatasetPartition>,
    last_commit: Option<chrono::DateTime<chrono::Utc>>,
    rows: u64,
    files: u64,
    bytes: u64,
}

#[derive(Default, Clone, Copy)]
struct DatasetPartition {
    committed_offset: Option<i64>,
    committed_watermark_ms: Option<i64>,
}

/// The synchronous instruments; the observable ones live in the meter's callbacks.
struct Instruments {
    rows: Counter<u64>,
    bytes: Counter<u64>,
    files: Counter<u64>,
    commit_duration: Histogram<f64>,
    freshness: Histogram<f64>,
    dead_letters: Counter<u64>,
    late: Counter<u64>,
    rebalances: Counter<u64>,
    checkpoints: Counter<u64>,
}

/// A point of the status page's charts.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_ms: i64,
    /// `(dataset, topic/partition) → (offset lag, watermark lag seconds)`
    pub lag: Vec<SeriesPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    pub dataset: String,
    pub partition: String,
    pub offset_lag: Option<i64>,
    pub watermark_lag_seconds: Option<f64>,
}

pub struct Observer {
    pipeline: String,
    attributes: Vec<KeyValue>,
    started: Instant,
    source: Arc<SourceStats>,
    limits: HealthLimits,
    view: Mutex<View>,
    history: Mutex<VecDeque<Sample>>,
    history_span: Duration,
    instruments: Instruments,
}

/// What the probes and the status page say about the pipeline now.
#[derive(Debug, Serialize)]
pub struct Status {
    pub pipeline: String,
    pub now_ms: i64,
    pub uptime_seconds: f64,
    pub healthy: Verdict,
    pub ready: Verdict,
    pub consumed_messages: u64,
    pub consumed_bytes: u64,
    pub backpressure_pauses: u64,
    pub buffered_bytes: u64,
    pub dead_letters: BTreeMap<String, u64>,
    pub datasets: Vec<DatasetStatus>,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// Why not, or what was checked.
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DatasetStatus {
    pub dataset: String,
    pub url: String,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub last_commit: Option<String>,
    pub commit_age_seconds: Option<f64>,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub log_end_offset: Option<i64>,
    pub consumed_offset: Option<i64>,
    pub committed_offset: Option<i64>,
    pub offset_lag: Option<i64>,
    pub watermark_ms: Option<i64>,
    pub committed_watermark_ms: Option<i64>,
    pub watermark_lag_seconds: Option<f64>,
}

impl Observer {
    /// An observer whose instruments come from `meter`.
    pub fn new(
        pipeline: &str,
        meter: &Meter,
        limits: HealthLimits,
        history_span: Duration,
    ) -> Arc<Self> {
        let observer = Arc::new(Self {
            pipeline: pipeline.to_owned(),
            attributes: vec![KeyValue::new("pipeline", pipeline.to_owned())],
            started: Instant::now(),
            source: Arc::new(SourceStats::default()),
            limits,
            view: Mutex::default(),
            history: Mutex::default(),
            history_span,
            instruments: Instruments::new(meter),
        });
        register_gauges(meter, Arc::downgrade(&observer));
        observer
    }

    /// What the Kafka reader counts as it consumes.
    pub fn source_stats(&self) -> Arc<SourceStats> {
        self.source.clone()
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().expect("not poisoned")
    }

    fn attributes(&self, extra: &[(&'static str, String)]) -> Vec<KeyValue> {
        let mut attributes = self.attributes.clone();
        attributes.extend(extra.iter().map(|(k, v)| KeyValue::new(*k, v.clone())));
        attributes
    }

    /// The pipeline loop went round once: it is not wedged.
    pub fn beat(&self) {
        self.view().last_beat = Some(Instant::now());
    }

    /// Every dataset's commit log was opened (and written) at start.
    pub fn storage_checked(&self, datasets: impl IntoIterator<Item = (String, String)>) {
        let mut view = self.view();
        for (name, url) in datasets {
            // Counters that may stay at zero for long are exported from the start, so that
            // rate() and alerts over them have a series.
            for action in ["dead_lettered", "written"] {
                self.instruments.late.add(
                    0,
                    &self.attributes(&[("dataset", name.clone()), ("action", action.into())]),
                );
            }
            view.datasets.entry(name).or_default().url = url;
        }
        view.storage_checked = true;
    }

    pub fn assigned(&self, partitions: &[PartitionKey]) {
        self.instruments
            .rebalances
            .add(1, &self.attributes(&[("event", "assigned".into())]));
        let mut view = self.view();
        for partition in partitions {
            view.partitions.entry(partition.clone()).or_default();
        }
    }

    pub fn revoked(&self, partitions: &[PartitionKey], lost: bool) {
        let event = if lost { "lost" } else { "revoked" };
        self.instruments
            .rebalances
            .add(1, &self.attributes(&[("event", event.into())]));
        let mut view = self.view();
        for partition in partitions {
            view.partitions.remove(partition);
            for dataset in view.datasets.values_mut() {
                dataset.partitions.remove(partition);
            }
        }
    }

    /// Everything owned was dropped after a refused commit.
    pub fn released_all(&self) {
        let mut view = self.view();
        view.partitions.clear();
        for dataset in view.datasets.values_mut() {
            dataset.partitions.clear();
        }
    }

    /// Messages up to the end of `ranges` were read.
    pub fn consumed(&self, ranges: &OffsetRanges) {
        let mut view = self.view();
        for (partition, _, last) in ranges.iter() {
            if let Some(p) = view.partitions.get_mut(partition) {
                p.consumed_offset = Some(last + 1);
            }
        }
    }

    /// Rows held in memory until the next checkpoint.
    pub fn buffered(&self, bytes: usize) {
        self.view().buffered_bytes = bytes as u64;
    }

    /// The partitions' event-time watermarks in the pipeline.
    pub fn watermarks(&self, watermarks: impl IntoIterator<Item = (PartitionKey, i64)>) {
        let mut view = self.view();
        for (partition, watermark_ms) in watermarks {
            if let Some(p) = view.partitions.get_mut(&partition) {
                p.watermark_ms = Some(watermark_ms);
            }
        }
    }

    /// Log start and end offsets just read from the brokers.
    pub fn log_ends(&self, ends: &[(PartitionKey, i64, i64)]) {
        let mut view = self.view();
        for (partition, start, end) in ends {
            if let Some(p) = view.partitions.get_mut(partition) {
                p.log_start_offset = Some(*start);
                p.log_end_offset = Some(*end);
            }
        }
    }

    /// Between two questions to the brokers, what was consumed since shows the log end
    /// moved at least that far.
    fn log_end(p: &PartitionView) -> Option<i64> {
        match (p.log_end_offset, p.consumed_offset) {
            (Some(end), Some(consumed)) => Some(end.max(consumed)),
            (end, _) => end,
        }
    }

    /// The partitions whose log ends are wanted.
    pub fn owned(&self) -> Vec<PartitionKey> {
        self.view().partitions.keys().cloned().collect()
    }

    pub fn checkpoint_started(&self) {
        self.view().checkpoint_running_since = Some(Instant::now());
    }

    /// A checkpoint ended, with its error if it failed, and the bytes still buffered after it.
    pub fn checkpoint_finished(
        &self,
        error: Option<String>,
        committed_anything: bool,
        buffered_bytes: usize,
    ) {
        let mut view = self.view();
        view.checkpoint_running_since = None;
        view.buffered_bytes = buffered_bytes as u64;
        if error.is_none() {
            view.last_checkpoint = Some(Instant::now());
        }
        view.last_checkpoint_error = error;
        drop(view);
        if committed_anything {
            self.instruments.checkpoints.add(1, &self.attributes);
        }
    }

    /// A dataset's commit went through: its files, how long it took and what its log holds
    /// now for the owned partitions.
    pub fn committed<'a>(
        &self,
        dataset: &str,
        files: impl IntoIterator<Item = (u64, u64)>,
        took: Duration,
        partitions: impl IntoIterator<Item = (&'a PartitionKey, &'a PartitionState)>,
    ) {
        let attributes = self.attributes(&[("dataset", dataset.to_owned())]);
        let (mut rows, mut bytes, mut count) = (0, 0, 0);
        for (file_rows, file_bytes) in files {
            rows += file_rows;
            bytes += file_bytes;
            count += 1;
        }
        let i = &self.instruments;
        i.rows.add(rows, &attributes);
        i.bytes.add(bytes, &attributes);
        i.files.add(count, &attributes);
        i.commit_duration.record(took.as_secs_f64(), &attributes);
        let mut view = self.view();
        let View {
            partitions: owned,
            datasets,
            ..
        } = &mut *view;
        let entry = datasets.entry(dataset.to_owned()).or_default();
        entry.rows += rows;
        entry.bytes += bytes;
        entry.files += count;
        entry.last_commit = Some(chrono::Utc::now());
        for (partition, state) in partitions {
            if owned.contains_key(partition) {
                entry.partitions.insert(
                    partition.clone(),
                    DatasetPartition {
                        committed_offset: state.next_offset,
                        committed_watermark_ms: state.watermark_ms,
                    },
                );
            }
        }
    }

    /// What a dataset's commit log holds for newly claimed partitions, before any commit.
    pub fn claimed<'a>(
        &self,
        dataset: &str,
        partitions: impl IntoIterator<Item = (&'a PartitionKey, Option<&'a PartitionState>)>,
    ) {
        let mut view = self.view();
        let entry = view.datasets.entry(dataset.to_owned()).or_default();
        for (partition, state) in partitions {
            entry.partitions.insert(
                partition.clone(),
                DatasetPartition {
                    committed_offset: state.and_then(|s| s.next_offset),
                    committed_watermark_ms: state.and_then(|s| s.watermark_ms),
                },
            );
        }
    }

    /// Dead letters just committed, by reason.
    pub fn dead_lettered(&self, counts: impl IntoIterator<Item = (String, u64)>) {
        let mut view = self.view();
        for (reason, count) in counts {
            self.instruments
                .dead_letters
                .add(count, &self.attributes(&[("reason", reason.clone())]));
            *view.dead_letters.entry(reason).or_insert(0) += count;
        }
    }

    /// Records that came after their time: dead-lettered by a windowed dataset, or written to
    /// a time partition already marked complete.
    pub fn late(&self, dataset: &str, action: &'static str, records: u64) {
        if records > 0 {
            self.instruments.late.add(
                records,
                &self.attributes(&[("dataset", dataset.to_owned()), ("action", action.into())]),
            );
        }
    }

    /// The messages with these Kafka timestamps became visible in the datasets at `now_ms`.
    pub fn visible(&self, timestamps: &Timestamps, now_ms: i64) {
        let histogram = &self.instruments.freshness;
        for &(timestamp, messages) in &timestamps.runs {
            let freshness = (now_ms - timestamp).max(0) as f64 / 1000.0;
            for _ in 0..messages {
                histogram.record(freshness, &self.attributes);
            }
        }
    }

    /// Adds a point to the status page's history and forgets points older than its span.
    pub fn sample(&self) {
        let status = self.status();
        let lag: Vec<SeriesPoint> = status
            .datasets
            .iter()
            .flat_map(|d| {
                d.partitions.iter().map(|p| SeriesPoint {
                    dataset: d.dataset.clone(),
                    partition: format!("{}/{}", p.topic, p.partition),
                    offset_lag: p.offset_lag,
                    watermark_lag_seconds: p.watermark_lag_seconds,
                })
            })
            .collect();
        // With many partitions the history covers less time rather than growing.
        let kept = (HISTORY_POINTS / lag.len().max(1)).max(10);
        let mut history = self.history.lock().expect("not poisoned");
        history.push_back(Sample {
            at_ms: status.now_ms,
            lag,
        });
        let oldest = status.now_ms - self.history_span.as_millis() as i64;
        while history.front().is_some_and(|s| s.at_ms < oldest) || history.len() > kept {
            history.pop_front();
        }
    }

    /// The history's points taken after `since_ms`.
    pub fn history(&self, since_ms: i64) -> Vec<Sample> {
        let history = self.history.lock().expect("not poisoned");
        history
            .iter()
            .filter(|s| s.at_ms > since_ms)
            .cloned()
            .collect()
    }

    /// Where each dataset stands, per partition this instance owns.
    fn dataset_statuses(&self, view: &View, now_ms: i64) -> Vec<DatasetStatus> {
        view.datasets
            .iter()
            .map(|(name, d)| DatasetStatus {
                dataset: name.clone(),
                url: d.url.clone(),
                rows: d.rows,
                files: d.files,
                bytes: d.bytes,
                last_commit: d
                    .last_commit
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                // Only an owner commits: an instance without partitions has no age to report.
                commit_age_seconds: (!view.partitions.is_empty()).then(|| {
                    d.last_commit
                        .map_or(self.started.elapsed().as_secs_f64(), |t| {
                            (now_ms - t.timestamp_millis()) as f64 / 1000.0
                        })
                }),
                partitions: view
                    .partitions
                    .iter()
                    .map(|(key, p)| {
                        let committed = d.partitions.get(key).copied().unwrap_or_default();
                        let log_end = Self::log_end(p);
                        PartitionStatus {
                            topic: key.topic.to_string(),
                            partition: key.partition,
                            log_end_offset: log_end,
                            consumed_offset: p.consumed_offset,
                            committed_offset: committed.committed_offset,
                            // Before its first commit, a dataset lacks every retained message.
                            offset_lag: log_end.and_then(|end| {
                                let from = match (committed.committed_offset, p.log_start_offset) {
                                    (Some(committed), start) => committed.max(start.unwrap_or(0)),
                                    (None, start) => start?,
                                };
                                Some((end - from).max(0))
                            }),
                            watermark_ms: p.watermark_ms,
                            committed_watermark_ms: committed.committed_watermark_ms,
                            watermark_lag_seconds: committed
                                .committed_watermark_ms
                                .map(|w| (now_ms - w) as f64 / 1000.0),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The datasets' part of [`Observer::status`], for the gauges that read only it.
    fn datasets(&self) -> Vec<DatasetStatus> {
        self.dataset_statuses(&self.view(), chrono::Utc::now().timestamp_millis())
    }

    /// `/healthz`'s verdict.
    pub fn healthy(&self) -> Verdict {
        self.health(&self.view(), Instant::now())
    }

    /// `/readyz`'s verdict.
    pub fn ready(&self) -> Verdict {
        self.readiness(&self.view(), Instant::now())
    }

    pub fn status(&self) -> Status {
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let view = self.view();
        let datasets = self.dataset_statuses(&view, now_ms);
        let healthy = self.health(&view, now);
        let ready = self.readiness(&view, now);
        Status {
            pipeline: self.pipeline.clone(),
            now_ms,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            healthy,
            ready,
            consumed_messages: self.source.messages.load(Ordering::Relaxed),
            consumed_bytes: self.source.bytes.load(Ordering::Relaxed),
            backpressure_pauses: self.source.backpressure_pauses.load(Ordering::Relaxed),
            buffered_bytes: view.buffered_bytes,
            dead_letters: view.dead_letters.clone(),
            datasets,
        }
    }

    fn health(&self, view: &View, now: Instant) -> Verdict {
        let since = view.last_beat.unwrap_or(self.started);
        let still = now.saturating_duration_since(since);
        if still >= self.limits.wedged_after {
            return Verdict {
                ok: false,
                reasons: vec![format!(
                    "the pipeline loop has not moved for {} s (limit {} s)",
                    still.as_secs(),
                    self.limits.wedged_after.as_secs()
                )],
            };
        }
        Verdict {
            ok: true,
            reasons: vec![format!(
                "the pipeline loop moved {:.1} s ago",
                still.as_secs_f64()
            )],
        }
    }

    fn readiness(&self, view: &View, now: Instant) -> Verdict {
        let limit = self.limits.max_checkpoint_age;
        let mut problems = Vec::new();
        if !view.storage_checked {
            problems.push("the datasets' storage has not been checked yet".to_owned());
        }
        if view.partitions.is_empty() {
            problems.push("no Kafka partitions assigned to this instance".to_owned());
        }
        if let Some(since) = view.checkpoint_running_since {
            let running = now.saturating_duration_since(since);
            if running >= limit {
                problems.push(format!(
                    "a checkpoint has been running for {} s (limit {} s): storage slow or unreachable",
                    running.as_secs(),
                    limit.as_secs()
                ));
            }
        }
        let last = view.last_checkpoint.unwrap_or(self.started);
        let age = now.saturating_duration_since(last);
        if age >= limit {
            problems.push(format!(
                "no checkpoint for {} s (limit {} s)",
                age.as_secs(),
                limit.as_secs()
            ));
        }
        if let Some(error) = &view.last_checkpoint_error {
            problems.push(format!("the last checkpoint failed: {error}"));
        }
        if problems.is_empty() {
            Verdict {
                ok: true,
                reasons: vec![format!(
                    "{} partitions assigned, storage writable, last checkpoint {:.1} s ago",
                    view.partitions.len(),
                    age.as_secs_f64()
                )],
            }
        } else {
            Verdict {
                ok: false,
                reasons: problems,
            }
        }
    }
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        Self {
            rows: meter
                .u64_counter("weir.rows_written")
                .with_description("Rows committed to a dataset.")
                .build(),
            bytes: meter
                .u64_counter("weir.written")
                .with_unit("By")
                .with_description("Bytes of Parquet committed to a dataset.")
                .build(),
            files: meter
                .u64_counter("weir.files_written")
                .with_description("Files committed to a dataset.")
                .build(),
            commit_duration: meter
                .f64_histogram("weir.commit.duration")
                .with_unit("s")
                .with_description(
                    "Time to commit a dataset: closing its files and appending to its commit log.",
                )
                .with_boundaries(COMMIT_SECONDS.to_vec())
                .build(),
            freshness: meter
                .f64_histogram("weir.freshness")
                .with_unit("s")
                .with_description(
                    "From a message's Kafka timestamp to the checkpoint that made its rows visible.",
                )
                .with_boundaries(FRESHNESS_SECONDS.to_vec())
                .build(),
            dead_letters: meter
                .u64_counter("weir.dead_letters")
                .with_description("Messages sent to the dead letters, by reason.")
                .build(),
            late: meter
                .u64_counter("weir.late_records")
                .with_description(
                    "Records after their time: dead-lettered by a windowed dataset, or written to \
                     a time partition already marked complete.",
                )
                .build(),
            rebalances: meter
                .u64_counter("weir.rebalances")
                .with_description("Consumer-group rebalance events, by kind.")
                .build(),
            checkpoints: meter
                .u64_counter("weir.checkpoints")
                .with_description("Checkpoints that committed data.")
                .build(),
        }
    }
}

/// Kafka timestamps of messages, one per message, kept as runs of equal ones: messages
/// produced together share a timestamp, so a backlog costs a few bytes per run, not per
/// message.
#[derive(Debug, Default)]
pub struct Timestamps {
    runs: Vec<(i64, u32)>,
}

impl Timestamps {
    pub fn extend(&mut self, timestamps: impl IntoIterator<Item = i64>) {
        for timestamp in timestamps {
            match self.runs.last_mut() {
                Some((last, messages)) if *last == timestamp && *messages < u32::MAX => {
                    *messages += 1;
                }
                _ => self.runs.push((timestamp, 1)),
            }
        }
    }

    pub fn clear(&mut self) {
        self.runs.clear();
    }
}

/// The gauges and observable counters, read from the observer at each collection.
fn register_gauges(meter: &Meter, observer: Weak<Observer>) {
    type Reading = Vec<(f64, Vec<KeyValue>)>;
    let gauge = |name: &'static str,
                 unit: &'static str,
                 description: &'static str,
                 read: fn(&Observer) -> Reading| {
        let observer = observer.clone();
        let builder = meter
            .f64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |instrument| {
                if let Some(observer) = observer.upgrade() {
                    for (value, attributes) in read(&observer) {
                        instrument.observe(value, &attributes);
                    }
                }
            });
        let _ = if unit.is_empty() {
            builder
        } else {
            builder.with_unit(unit)
        }
        .build();
    };
    let counter = |name: &'static str,
                   unit: &'static str,
                   description: &'static str,
                   read: fn(&SourceStats) -> u64| {
        let observer = observer.clone();
        let builder = meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |instrument| {
                if let Some(observer) = observer.upgrade() {
                    instrument.observe(read(&observer.source), &observer.attributes);
                }
            });
        let _ = if unit.is_empty() {
            builder
        } else {
            builder.with_unit(unit)
        }
        .build();
    };
    counter(
        "weir.consumed_messages",
        "",
        "Messages read from Kafka.",
        |s| s.messages.load(Ordering::Relaxed),
    );
    counter(
        "weir.consumed",
        "By",
        "Bytes of message payload read from Kafka.",
        |s| s.bytes.load(Ordering::Relaxed),
    );
    counter(
        "weir.backpressure_pauses",
        "",
        "Times the reader found the pipeline full and waited.",
        |s| s.backpressure_pauses.load(Ordering::Relaxed),
    );
    gauge(
        "weir.consumer.offset",
        "",
        "The offset the pipeline reads next, per owned partition.",
        |o| o.per_partition(|p| p.consumed_offset.map(|v| v as f64)),
    );
    gauge(
        "weir.log_end.offset",
        "",
        "The partition's log-end offset (high watermark) as the brokers last reported it.",
        |o| o.per_partition(|p| Observer::log_end(p).map(|v| v as f64)),
    );
    gauge(
        "weir.consumer.lag",
        "",
        "Messages in the log the pipeline has not read yet.",
        |o| o.per_partition(|p| Some((Observer::log_end(p)? - p.consumed_offset?) as f64)),
    );
    gauge(
        "weir.watermark",
        "s",
        "The partition's event-time watermark in the pipeline, Unix seconds.",
        |o| o.per_partition(|p| p.watermark_ms.map(|w| w as f64 / 1000.0)),
    );
    gauge(
        "weir.committed.offset",
        "",
        "Where the dataset continues in the partition, from its commit log.",
        |o| o.per_dataset_partition(|p| p.committed_offset.map(|v| v as f64)),
    );
    gauge(
        "weir.offset_lag",
        "",
        "Messages in the log the dataset does not hold yet (log end − committed offset).",
        |o| o.per_dataset_partition(|p| p.offset_lag.map(|v| v as f64)),
    );
    gauge(
        "weir.committed_watermark",
        "s",
        "The dataset's committed event-time watermark for the partition, Unix seconds.",
        |o| o.per_dataset_partition(|p| p.committed_watermark_ms.map(|w| w as f64 / 1000.0)),
    );
    gauge(
        "weir.watermark_lag",
        "s",
        "How far the dataset's committed watermark trails the clock.",
        |o| o.per_dataset_partition(|p| p.watermark_lag_seconds),
    );
    gauge(
        "weir.commit_age",
        "s",
        "Seconds since this instance last committed the dataset (since start before that).",
        |o| {
            o.datasets()
                .into_iter()
                .filter_map(|d| {
                    let age = d.commit_age_seconds?;
                    Some((age, o.attributes(&[("dataset", d.dataset)])))
                })
                .collect()
        },
    );
    gauge(
        "weir.buffered",
        "By",
        "Rows buffered in memory, waiting for the next checkpoint.",
        |o| vec![(o.view().buffered_bytes as f64, o.attributes.clone())],
    );
    gauge(
        "weir.assigned_partitions",
        "",
        "Kafka partitions this instance owns.",
        |o| vec![(o.view().partitions.len() as f64, o.attributes.clone())],
    );
    gauge(
        "weir.up",
        "",
        "1 when /healthz says healthy, 0 when the pipeline loop is wedged.",
        |o| {
            let view = o.view();
            let ok = o.health(&view, Instant::now()).ok;
            vec![(if ok { 1.0 } else { 0.0 }, o.attributes.clone())]
        },
    );
}

impl Observer {
    fn per_partition(
        &self,
        value: impl Fn(&PartitionView) -> Option<f64>,
    ) -> Vec<(f64, Vec<KeyValue>)> {
        self.view()
            .partitions
            .iter()
            .filter_map(|(key, p)| {
                Some((
                    value(p)?,
                    self.attributes(&[
                        ("topic", key.topic.to_string()),
                        ("partition", key.partition.to_string()),
                    ]),
                ))
            })
            .collect()
    }

    fn per_dataset_partition(
        &self,
        value: impl Fn(&PartitionStatus) -> Option<f64>,
    ) -> Vec<(f64, Vec<KeyValue>)> {
        self.datasets()
            .into_iter()
            .flat_map(|d| {
                d.partitions
                    .into_iter()
                    .filter_map(|p| {
                        Some((
                            value(&p)?,
                            self.attributes(&[
                                ("dataset", d.dataset.clone()),
                                ("topic", p.topic.clone()),
                                ("partition", p.partition.to_string()),
                            ]),
                        ))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;

    #[test]
    fn timestamps_keep_one_per_message_in_runs() {
        let mut timestamps = Timestamps::default();
        timestamps.extend([5, 5, 5, 7, 5]);
        timestamps.extend([5]);
        assert_eq!(timestamps.runs, [(5, 3), (7, 1), (5, 2)]);
        timestamps.clear();
        assert!(timestamps.runs.is_empty());
    }

    fn observer(wedged_after: Duration, max_checkpoint_age: Duration) -> Arc<Observer> {
        let meters = SdkMeterProvider::builder().build();
        let limits = HealthLimits {
            wedged_after,
            max_checkpoint_age,
        };
        Observer::new("p", &meters.meter("test"), limits, Duration::from_secs(60))
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn reasons(verdict: &Verdict) -> String {
        verdict.reasons.join("; ")
    }

    #[test]
    fn ready_once_storage_is_checked_and_partitions_are_assigned() {
        let o = observer(MINUTE, MINUTE);
        let ready = o.status().ready;
        assert!(!ready.ok);
        let said = reasons(&ready);
        assert!(said.contains("storage has not been checked"), "{said}");
        assert!(said.contains("no Kafka partitions"), "{said}");

        o.storage_checked([("clicks".to_owned(), "s3://b/clicks".to_owned())]);
        let partition = PartitionKey::new("t", 0);
        o.assigned(std::slice::from_ref(&partition));
        let ready = o.status().ready;
        assert!(ready.ok, "{}", reasons(&ready));

        o.revoked(&[partition], false);
        let ready = o.status().ready;
        assert!(!ready.ok);
        assert!(reasons(&ready).contains("no Kafka partitions"));
    }

    #[test]
    fn stale_stuck_or_failed_checkpoints_make_it_unready() {
        let o = observer(MINUTE, Duration::ZERO);
        o.storage_checked([]);
        o.assigned(&[PartitionKey::new("t", 0)]);
        assert!(reasons(&o.status().ready).contains("no checkpoint for"));
        o.checkpoint_started();
        let said = reasons(&o.status().ready);
        assert!(said.contains("a checkpoint has been running"), "{said}");

        let o = observer(MINUTE, MINUTE);
        o.storage_checked([]);
        o.assigned(&[PartitionKey::new("t", 0)]);
        o.checkpoint_started();
        o.checkpoint_finished(Some("storage said no".into()), true, 0);
        let ready = o.status().ready;
        assert!(!ready.ok);
        assert!(reasons(&ready).contains("the last checkpoint failed: storage said no"));
        o.checkpoint_started();
        o.checkpoint_finished(None, true, 0);
        assert!(o.status().ready.ok);
    }

    #[test]
    fn unhealthy_when_the_loop_stops_moving() {
        assert!(observer(MINUTE, MINUTE).status().healthy.ok);
        let o = observer(Duration::ZERO, MINUTE);
        o.beat();
        let healthy = o.status().healthy;
        assert!(!healthy.ok);
        assert!(reasons(&healthy).contains("has not moved"));
    }

    #[test]
    fn offset_lag_is_the_log_end_less_the_committed_offset() {
        let o = observer(MINUTE, MINUTE);
        let partition = PartitionKey::new("t", 0);
        o.assigned(std::slice::from_ref(&partition));
        let state = PartitionState {
            next_offset: Some(5),
            watermark_ms: Some(1_000),
            ..PartitionState::default()
        };
        o.claimed("clicks", [(&partition, Some(&state))]);
        o.log_ends(&[(partition.clone(), 0, 12)]);
        let mut ranges = OffsetRanges::default();
        ranges.record(&partition, 9);
        o.consumed(&ranges);
        let lag = |o: &Observer| {
            let status = o.status();
            let p = &status.datasets[0].partitions[0];
            (p.log_end_offset, p.consumed_offset, p.offset_lag)
        };
        assert_eq!(lag(&o), (Some(12), Some(10), Some(7)));
        // Consumption past a log end asked of the brokers a while ago moves the log end too.
        ranges.record(&partition, 14);
        o.consumed(&ranges);
        assert_eq!(lag(&o), (Some(15), Some(15), Some(10)));
    }

    #[test]
    fn before_its_first_commit_a_dataset_lacks_what_the_log_still_holds() {
        let o = observer(MINUTE, MINUTE);
        let partition = PartitionKey::new("t", 0);
        o.assigned(std::slice::from_ref(&partition));
        o.claimed("clicks", [(&partition, None)]);
        let lag = |o: &Observer| o.status().datasets[0].partitions[0].offset_lag;
        // Nothing known of the log yet: no lag to report.
        assert_eq!(lag(&o), None);
        // Retention deleted everything before offset 50,000,000.
        o.log_ends(&[(partition.clone(), 50_000_000, 50_000_120)]);
        assert_eq!(lag(&o), Some(120));
    }
}
