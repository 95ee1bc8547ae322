//! What the running pipeline reports about itself, in one place.
//!
//! The runtime tells the [`Observer`] what happened (a batch consumed, partitions assigned, a
//! dataset committed); everything that reads the state of the pipeline works from the same
//! view: the OpenTelemetry instruments (gauges read it when metrics are collected), the health
//! probes and the status page's history. Counters and histograms are recorded as things happen;
//! levels (offsets, watermarks, ages) are gauges observed at collection, so a scrape always
//! sees the present. Each of those readers lives in a module of its own: [`super::instruments`],
//! [`super::health`] and [`super::status`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use weir_ingest::{DecodeStall, SourceStats};
use weir_schemas::{OffsetRanges, PartitionKey};
use weir_sink::{PartitionState, SchemaRecord};

use super::freshness::Timestamps;
use super::health::HealthLimits;
use super::instruments::{Instruments, register_gauges};
use super::scrub;
use super::status::Sample;

/// The pipeline's state as the observer last heard it.
#[derive(Default)]
pub(super) struct View {
    /// The partitions this instance owns, by the pipeline's consumer.
    pub(super) partitions: BTreeMap<PartitionKey, PartitionView>,
    pub(super) datasets: BTreeMap<String, DatasetView>,
    pub(super) dead_letters: BTreeMap<String, u64>,
    pub(super) buffered_bytes: u64,
    /// The process's resident memory not backed by files, when the system tells it.
    pub(super) memory_bytes: Option<u64>,
    pub(super) last_beat: Option<Instant>,
    /// Every dataset's log opened and written to at start.
    pub(super) storage_checked: bool,
    pub(super) checkpoint_running_since: Option<Instant>,
    pub(super) last_checkpoint: Option<Instant>,
    pub(super) last_checkpoint_error: Option<String>,
}

#[derive(Default, Clone)]
pub(super) struct PartitionView {
    /// The offset the pipeline reads next.
    pub(super) consumed_offset: Option<i64>,
    /// The partition's high watermark, asked of the brokers every `log_end_interval`.
    log_end_offset: Option<i64>,
    /// The oldest offset the brokers still hold: where a dataset that never committed the
    /// partition would start.
    pub(super) log_start_offset: Option<i64>,
    /// The partition's event-time watermark in the pipeline, epoch milliseconds.
    pub(super) watermark_ms: Option<i64>,
}

#[derive(Default)]
pub(super) struct DatasetView {
    pub(super) url: String,
    /// What the dataset's commit log holds for each owned partition.
    pub(super) partitions: BTreeMap<PartitionKey, DatasetPartition>,
    pub(super) last_commit: Option<chrono::DateTime<chrono::Utc>>,
    pub(super) rows: u64,
    pub(super) files: u64,
    pub(super) bytes: u64,
    /// The columns its commit log recorded last.
    pub(super) schema: Option<SchemaRecord>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct DatasetPartition {
    pub(super) committed_offset: Option<i64>,
    pub(super) committed_watermark_ms: Option<i64>,
}

pub struct Observer {
    pub(super) pipeline: String,
    pub(super) attributes: Vec<KeyValue>,
    pub(super) started: Instant,
    pub(super) source: Arc<SourceStats>,
    /// Why decoding waits, while it does.
    pub(super) decode_stall: Mutex<Arc<DecodeStall>>,
    pub(super) limits: HealthLimits,
    view: Mutex<View>,
    pub(super) history: Mutex<VecDeque<Sample>>,
    pub(super) history_span: Duration,
    instruments: Instruments,
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
            decode_stall: Mutex::default(),
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

    /// Shows, while decoding waits (for a schema registry), why.
    pub fn watch_decoding(&self, stall: Arc<DecodeStall>) {
        *self.decode_stall.lock().expect("not poisoned") = stall;
    }

    pub(super) fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().expect("not poisoned")
    }

    pub(super) fn attributes(&self, extra: &[(&'static str, String)]) -> Vec<KeyValue> {
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
            view.datasets.entry(name).or_default().url = scrub::urls(&url);
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
        for range in ranges.iter() {
            if let Some(p) = view.partitions.get_mut(&range.partition) {
                p.consumed_offset = Some(range.to);
            }
        }
    }

    /// Rows held in memory until the next checkpoint, and all the memory the process holds.
    pub fn buffered(&self, bytes: usize, memory: Option<usize>) {
        let mut view = self.view();
        view.buffered_bytes = bytes as u64;
        view.memory_bytes = memory.map(|m| m as u64);
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
    pub(super) fn log_end(p: &PartitionView) -> Option<i64> {
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
        // The log has the whole error; probes and the status page show it without values.
        view.last_checkpoint_error = error.as_deref().map(scrub::error);
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

    /// The columns a dataset's commit log recorded last, as its writer read it.
    pub fn schema(&self, dataset: &str, schema: Option<&SchemaRecord>) {
        let mut view = self.view();
        view.datasets.entry(dataset.to_owned()).or_default().schema = schema.cloned();
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
}

/// An observer with these limits on a meter of its own, for the tests of each reader.
#[cfg(test)]
pub(super) fn observer_for_tests(
    wedged_after: Duration,
    max_checkpoint_age: Duration,
) -> Arc<Observer> {
    use opentelemetry::metrics::MeterProvider;

    let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    let limits = HealthLimits {
        wedged_after,
        max_checkpoint_age,
    };
    Observer::new("p", &meters.meter("test"), limits, Duration::from_secs(60))
}
