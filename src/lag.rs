//! `weir lag`: how far each dataset trails the log, per Kafka partition.
//!
//! Everything comes from two places the service does not have to be running for: the brokers
//! (log-end offsets, the group's committed offsets) and each dataset's commit log (where the
//! dataset continues, its committed watermark, when it last committed). So the same command
//! serves an SRE at a terminal and an alert probe (`--max-*` thresholds set the exit code).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use weir_ingest::offsets::{LogBounds, OffsetClient};
use weir_schemas::PartitionKey;
use weir_sink::LogState;

use crate::pipeline::Pipeline;

const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct LagReport {
    pub pipeline: String,
    pub group_id: String,
    pub datasets: Vec<DatasetLag>,
    /// The thresholds the lag is past, in words; empty when all is well.
    pub breaches: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DatasetLag {
    pub dataset: String,
    /// The lowest over partitions, epoch milliseconds.
    pub committed_watermark_ms: Option<i64>,
    pub watermark_lag_seconds: Option<f64>,
    pub offset_lag: i64,
    pub partitions: Vec<PartitionLag>,
}

#[derive(Debug, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The offset the next produced message gets (the high watermark).
    pub log_end_offset: i64,
    /// Where the dataset continues, from its commit log; `None` before its first commit.
    pub committed_offset: Option<i64>,
    /// Messages in the log the dataset does not hold yet (all retained ones before a commit).
    pub offset_lag: i64,
    /// The consumer group's committed offset (what Kafka lag tools show).
    pub group_offset: Option<i64>,
    pub committed_watermark_ms: Option<i64>,
    pub watermark_lag_seconds: Option<f64>,
    /// Seconds since the dataset last committed this partition.
    pub commit_age_seconds: Option<f64>,
}

/// Lag past which `weir lag` exits non-zero.
#[derive(Debug, Default, Clone, Copy)]
pub struct Thresholds {
    pub max_offset_lag: Option<i64>,
    pub max_watermark_lag: Option<Duration>,
    pub max_commit_age: Option<Duration>,
}

/// One partition of a topic as the brokers see it.
struct BrokerPartition {
    log: LogBounds,
    group_offset: Option<i64>,
}

pub async fn lag(pipeline: &Pipeline, thresholds: Thresholds) -> anyhow::Result<LagReport> {
    let kafka = pipeline.kafka.clone();
    let broker = tokio::task::spawn_blocking(move || read_brokers(&kafka))
        .await
        .context("the broker query panicked")??;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut report = LagReport {
        pipeline: pipeline.name.clone(),
        group_id: pipeline.kafka.group_id.clone(),
        datasets: Vec::new(),
        breaches: Vec::new(),
    };
    for dataset in pipeline.datasets() {
        let state = dataset
            .read_log_state()
            .await
            .with_context(|| format!("reading the commit log of dataset `{}`", dataset.name()))?;
        let lag = dataset_lag(dataset.name(), &state, &broker, now_ms);
        report.breaches.extend(breaches(&lag, thresholds));
        report.datasets.push(lag);
    }
    Ok(report)
}

fn dataset_lag(
    name: &str,
    state: &LogState,
    broker: &BTreeMap<PartitionKey, BrokerPartition>,
    now_ms: i64,
) -> DatasetLag {
    let seconds_since = |ms: i64| (now_ms - ms) as f64 / 1000.0;
    let partitions: Vec<PartitionLag> = broker
        .iter()
        .map(|(key, b)| {
            let logged = state.partitions.get(key);
            let committed = logged.and_then(|p| p.next_offset);
            let watermark = logged.and_then(|p| p.watermark_ms);
            let committed_at = logged
                .and_then(|p| p.committed_at.as_deref())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            PartitionLag {
                topic: key.topic.to_string(),
                partition: key.partition,
                log_end_offset: b.log.end,
                committed_offset: committed,
                offset_lag: (b.log.end - committed.unwrap_or(b.log.start).max(b.log.start)).max(0),
                group_offset: b.group_offset,
                committed_watermark_ms: watermark,
                watermark_lag_seconds: watermark.map(seconds_since),
                commit_age_seconds: committed_at.map(seconds_since),
            }
        })
        .collect();
    let committed_watermark_ms = state.watermark_ms();
    DatasetLag {
        dataset: name.to_owned(),
        committed_watermark_ms,
        watermark_lag_seconds: committed_watermark_ms.map(seconds_since),
        offset_lag: partitions.iter().map(|p| p.offset_lag).sum(),
        partitions,
    }
}

fn breaches(lag: &DatasetLag, thresholds: Thresholds) -> Vec<String> {
    let mut found = Vec::new();
    for p in &lag.partitions {
        let at = format!("dataset `{}` {}/{}", lag.dataset, p.topic, p.partition);
        if let Some(max) = thresholds.max_offset_lag
            && p.offset_lag > max
        {
            found.push(format!("{at}: offset lag {} > {max}", p.offset_lag));
        }
        if let Some(max) = thresholds.max_commit_age {
            match p.commit_age_seconds {
                Some(age) if age <= max.as_secs_f64() => {}
                Some(age) => found.push(format!(
                    "{at}: last commit {age:.0} s ago > {} s",
                    max.as_secs()
                )),
                None if p.offset_lag > 0 => found.push(format!(
                    "{at}: never committed, {} messages waiting",
                    p.offset_lag
                )),
                None => {}
            }
        }
    }
    if let Some(max) = thresholds.max_watermark_lag
        && let Some(lag_seconds) = lag.watermark_lag_seconds
        && lag_seconds > max.as_secs_f64()
    {
        found.push(format!(
            "dataset `{}`: watermark lag {lag_seconds:.0} s > {} s",
            lag.dataset,
            max.as_secs()
        ));
    }
    found
}

/// Every partition of the pipeline's topics: log start and end, and the group's offset.
fn read_brokers(
    kafka: &weir_ingest::ConsumerConfig,
) -> anyhow::Result<BTreeMap<PartitionKey, BrokerPartition>> {
    let client = OffsetClient::new(kafka, true)?;
    let logs = client.partitions(&kafka.topics, BROKER_TIMEOUT)?;
    let group = client.group_offsets(&logs.keys().collect(), BROKER_TIMEOUT)?;
    Ok(logs
        .into_iter()
        .map(|(partition, log)| {
            let group_offset = group.get(&partition).copied();
            (partition, BrokerPartition { log, group_offset })
        })
        .collect())
}

impl std::fmt::Display for LagReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.0} s"));
        let offset = |o: Option<i64>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
        writeln!(f, "pipeline {} (group {})", self.pipeline, self.group_id)?;
        for d in &self.datasets {
            let watermark = d
                .committed_watermark_ms
                .map_or_else(|| "-".to_owned(), weir_schemas::rfc3339_ms);
            writeln!(
                f,
                "dataset {}: offset lag {}, committed watermark {watermark} (lag {})",
                d.dataset,
                d.offset_lag,
                seconds(d.watermark_lag_seconds)
            )?;
            writeln!(
                f,
                "  {:<24} {:>12} {:>12} {:>10} {:>12} {:>13} {:>10}",
                "partition",
                "log end",
                "committed",
                "lag",
                "group offset",
                "watermark lag",
                "commit age"
            )?;
            for p in &d.partitions {
                writeln!(
                    f,
                    "  {:<24} {:>12} {:>12} {:>10} {:>12} {:>13} {:>10}",
                    format!("{}/{}", p.topic, p.partition),
                    p.log_end_offset,
                    offset(p.committed_offset),
                    p.offset_lag,
                    offset(p.group_offset),
                    seconds(p.watermark_lag_seconds),
                    seconds(p.commit_age_seconds)
                )?;
            }
        }
        for breach in &self.breaches {
            writeln!(f, "PAST THRESHOLD: {breach}")?;
        }
        Ok(())
    }
}
