//! What a run did: printed by the quickstart, logged by `weir run`, returned to tests.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;
use weir_transform::Now;

use super::State;

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
    /// Times the reader schema followed a newer version of the subject
    /// (`evolution = "add_columns"`).
    pub reader_schema_changes: u64,
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

impl State {
    /// What the run did.
    pub(super) fn finish(mut self, started: Instant) -> Summary {
        let elapsed = started.elapsed().as_secs_f64();
        let progress = self.observer.source_stats();
        let mut summary = std::mem::take(&mut self.summary);
        summary.watermark_ms = self.watermarks.watermark(Now::read());
        summary.pipeline = self.name;
        summary.bytes_in = progress.bytes.load(Ordering::Relaxed);
        summary.backpressure_pauses = progress.backpressure_pauses.load(Ordering::Relaxed);
        summary.elapsed_seconds = elapsed;
        summary.events_per_second = if elapsed > 0.0 {
            summary.events_in as f64 / elapsed
        } else {
            0.0
        };
        for (output, dataset) in self.transforms.outputs().iter().zip(&self.outputs) {
            let entry = summary
                .datasets
                .entry(output.name().to_owned())
                .or_default();
            entry.url = dataset.url.clone();
            entry.partitions = dataset.writer.partitions_written();
            entry.open_window_groups = output.windows().map(|w| w.open_groups());
            entry.watermark_ms = dataset.writer.state().watermark_ms();
        }
        summary.dead_letter_target = self.dead_letters.target();
        summary
    }
}
