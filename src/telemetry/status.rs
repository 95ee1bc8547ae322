//! What the status page shows: where each dataset stands per owned partition, and the
//! history of lags its charts draw.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use super::health::Verdict;
use super::observer::{Observer, View};

/// Points of the status page's history kept at most, over every series: about 30 MB.
const HISTORY_POINTS: usize = 250_000;

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
    pub memory_bytes: Option<u64>,
    pub dead_letters: BTreeMap<String, u64>,
    pub datasets: Vec<DatasetStatus>,
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
    /// The columns its commit log recorded last: since which entry, from which source.
    pub schema: Option<weir_sink::SchemaRecord>,
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
                schema: d.schema.clone(),
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
    pub(super) fn datasets(&self) -> Vec<DatasetStatus> {
        self.dataset_statuses(&self.view(), chrono::Utc::now().timestamp_millis())
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
            memory_bytes: view.memory_bytes,
            dead_letters: view.dead_letters.clone(),
            datasets,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_schemas::{OffsetRanges, PartitionKey};
    use weir_sink::PartitionState;

    use super::*;
    use crate::telemetry::observer::observer_for_tests as observer;

    const MINUTE: Duration = Duration::from_secs(60);

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
