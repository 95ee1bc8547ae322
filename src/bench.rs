//! `weir bench`: end-to-end throughput of the quickstart pipeline beside the raw consume rate
//! of the same topic on the same embedded cluster, so the cost of weir itself is visible.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::PipelineConfig;
use crate::generate::{Generator, GeneratorOptions, produce};
use crate::pipeline::Pipeline;
use crate::quickstart::{EmbeddedKafka, TOPIC};
use crate::runtime::run;
use crate::telemetry::{Telemetry, TelemetryOptions};

/// What a mock-cluster partition holds safely (it deletes past ~5 MiB).
const PARTITION_CAPACITY: u64 = 4 << 20;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub events: u64,
    pub bytes: u64,
    pub partitions: i32,
    pub produce_events_per_second: f64,
    pub raw_consume: Rate,
    pub pipeline: Rate,
    /// Pipeline throughput as a share of the raw consume rate.
    pub pipeline_vs_raw: f64,
    /// Peak resident memory while the pipeline ran.
    pub pipeline_peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Rate {
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub megabytes_per_second: f64,
}

impl Rate {
    fn new(events: u64, bytes: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Self {
            events,
            seconds,
            events_per_second: events as f64 / seconds,
            megabytes_per_second: bytes as f64 / 1e6 / seconds,
        }
    }
}

pub async fn bench(
    events: u64,
    partitions: i32,
    out: Option<PathBuf>,
) -> anyhow::Result<BenchReport> {
    let generator = Generator::new(GeneratorOptions::default());
    let average = generator.event(0).payload.len() as u64 + 8;
    if events * average > partitions as u64 * PARTITION_CAPACITY {
        bail!(
            "{events} events of ~{average} bytes do not fit the embedded cluster's retention with \
             {partitions} partitions; use --partitions {}",
            (events * average).div_ceil(PARTITION_CAPACITY)
        );
    }
    let kafka = EmbeddedKafka::start(3, TOPIC, partitions)?;
    let bootstrap = kafka.bootstrap_servers();

    let started = Instant::now();
    let produced = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            produce(
                &bootstrap,
                TOPIC,
                &generator,
                Some(events),
                &AtomicBool::new(false),
                &|_| true,
            )
        })
        .await??
    };
    let produce_rate = produced.events as f64 / started.elapsed().as_secs_f64();

    let raw = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || raw_consume(&bootstrap, events)).await??
    };

    let dir = tempfile::tempdir()?;
    let out = out.unwrap_or_else(|| dir.path().to_owned());
    let example = tempfile::tempdir()?;
    let config_path = crate::quickstart::write_example(example.path())?;
    let vars = BTreeMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap),
        ("WEIR_OUT".to_owned(), out.display().to_string()),
    ]);
    let config = PipelineConfig::load(&config_path, &vars)?;
    let pipeline = Pipeline::build(config).await?;
    // Metrics are recorded as in service (their cost is part of the figure), not served.
    let telemetry = Telemetry::start(TelemetryOptions {
        listen: Some("off"),
        ..TelemetryOptions::of(&pipeline)
    })
    .await?;
    let observer = telemetry.observer.clone();
    let progress = observer.source_stats();
    let (stop, shutdown) = watch::channel(false);
    // Rates are measured from the first message, so the consumer group's join (seconds on
    // any cluster) does not dilute them; the raw consumer is measured the same way.
    let watcher = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while progress.messages() == 0 {
                tick.tick().await;
            }
            let first_message = Instant::now();
            while progress.messages() < events {
                tick.tick().await;
            }
            let _ = stop.send(true);
            first_message
        })
    };
    reset_peak_rss();
    let summary = run(pipeline, shutdown, observer).await;
    telemetry.shutdown().await;
    let summary = summary?;
    let elapsed = watcher.await?.elapsed();
    let peak = peak_rss_bytes().unwrap_or(0);
    let pipeline = Rate::new(summary.events_in, summary.bytes_in, elapsed);
    Ok(BenchReport {
        events,
        bytes: produced.bytes,
        partitions,
        produce_events_per_second: produce_rate,
        pipeline_vs_raw: pipeline.events_per_second / raw.events_per_second,
        raw_consume: raw,
        pipeline,
        pipeline_peak_rss_bytes: peak,
    })
}

/// Consumes `events` messages and does nothing with them.
fn raw_consume(bootstrap: &str, events: u64) -> anyhow::Result<Rate> {
    let consumer: BaseConsumer = weir_ingest::client_config(bootstrap, &BTreeMap::new())
        .set("group.id", "weir-bench-raw")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the raw consumer")?;
    consumer.subscribe(&[TOPIC])?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_message = None;
    let (mut count, mut bytes) = (0u64, 0u64);
    while count < events {
        if Instant::now() > deadline {
            bail!("raw consume read only {count} of {events} events in 10 minutes");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first_message.get_or_insert_with(Instant::now);
                count += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "raw consume error"),
            None => {}
        }
    }
    let started = first_message.expect("at least one message was consumed");
    Ok(Rate::new(count, bytes, started.elapsed()))
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets the peak resident set size (Linux 4.0+).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "weir bench: {} events ({:.1} MB) on the embedded 3-broker cluster, {} partitions",
            self.events,
            self.bytes as f64 / 1e6,
            self.partitions
        )?;
        writeln!(
            f,
            "  produce        {:>12.0} events/s",
            self.produce_events_per_second
        )?;
        for (name, r) in [
            ("raw consume", &self.raw_consume),
            ("weir pipeline", &self.pipeline),
        ] {
            writeln!(
                f,
                "  {name:<14} {:>12.0} events/s {:>8.1} MB/s  ({} events in {:.2} s from the first)",
                r.events_per_second, r.megabytes_per_second, r.events, r.seconds
            )?;
        }
        writeln!(
            f,
            "  pipeline / raw {:>11.1} %",
            self.pipeline_vs_raw * 100.0
        )?;
        write!(
            f,
            "  peak memory    {:>10.1} MiB (resident, while the pipeline ran)",
            self.pipeline_peak_rss_bytes as f64 / (1 << 20) as f64
        )
    }
}

/// What `weir bench --windows` measured: the windowed aggregation alone, fed Arrow batches
/// as the pipeline would after decoding, with many groups open at once.
#[derive(Debug, Serialize)]
pub struct WindowBenchReport {
    pub sql: String,
    pub events: u64,
    pub open_groups: usize,
    pub add_events_per_second: f64,
    /// Partial aggregates held in memory, as the accumulators count them.
    pub state_bytes: usize,
    pub peak_rss_bytes: u64,
    /// One checkpoint with every group open: compaction and the snapshot it commits.
    pub checkpoint_seconds: f64,
    pub snapshot_bytes: usize,
    /// Emitting every window at once, through the rest of the query.
    pub emit_seconds: f64,
    pub emitted_rows: usize,
}

/// Feeds `events` events over `groups` keys (each key on one of four Kafka partitions, as
/// keyed messages are) into one hour-long tumbling window, so every group stays open.
pub async fn bench_windows(events: u64, groups: u64) -> anyhow::Result<WindowBenchReport> {
    use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use rand::{Rng, SeedableRng};
    use weir_schemas::PartitionKey;
    use weir_transform::{SqlEngine, WindowState};

    const BATCH: u64 = 8192;
    const PARTITIONS: i64 = 4;
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("amount", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    let sql = "SELECT window_start, key, count(*) AS events, sum(amount) AS total, \
               avg(amount) AS mean, max(amount) AS largest \
               FROM events GROUP BY tumble(ts, INTERVAL '1 hour'), key";
    let engine = SqlEngine::new("events", schema.clone())?.with_event_time("ts");
    let transform = engine.transform("bench", sql, "bench.sql").await?;
    let mut state = WindowState::new(&engine, &transform, 0)?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let hour = 1_795_000_000_000 / 3_600_000 * 3_600_000;

    reset_peak_rss();
    let mut adding = Duration::ZERO;
    let mut sent = 0;
    // Keys in order first, so that every group exists, then at random.
    while sent < events {
        let rows = BATCH.min(events - sent);
        let keys: Vec<i64> = (sent..sent + rows)
            .map(|i| {
                if i < groups {
                    i as i64
                } else {
                    rng.random_range(0..groups as i64)
                }
            })
            .collect();
        for partition in 0..PARTITIONS {
            let mine: Vec<i64> = keys
                .iter()
                .copied()
                .filter(|k| k % PARTITIONS == partition)
                .collect();
            let n = mine.len();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(mine)),
                    Arc::new(Int64Array::from_iter_values(
                        (0..n).map(|_| rng.random_range(0..10_000)),
                    )),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            (0..n).map(|_| hour + rng.random_range(0..3_600_000)),
                        )
                        .with_timezone("UTC"),
                    ),
                ],
            )?;
            let started = Instant::now();
            state
                .add(&PartitionKey::new("bench", partition as i32), batch)
                .await?;
            adding += started.elapsed();
        }
        sent += rows;
    }
    let open_groups = state.open_groups();
    let state_bytes = state.memory_bytes();

    let started = Instant::now();
    let checkpoint = state.checkpoint(|_| None).await?;
    let checkpoint_seconds = started.elapsed().as_secs_f64();
    let snapshot_bytes = checkpoint
        .snapshot
        .as_ref()
        .map_or(0, |s| s.get_array_memory_size());

    let started = Instant::now();
    let emitted = state.checkpoint(|_| Some(i64::MAX)).await?;
    let emit_seconds = started.elapsed().as_secs_f64();
    Ok(WindowBenchReport {
        sql: sql.to_owned(),
        events,
        open_groups,
        add_events_per_second: events as f64 / adding.as_secs_f64().max(1e-9),
        state_bytes,
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        checkpoint_seconds,
        snapshot_bytes,
        emit_seconds,
        emitted_rows: emitted.output.iter().map(RecordBatch::num_rows).sum(),
    })
}

impl std::fmt::Display for WindowBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: f64| b / (1 << 20) as f64;
        writeln!(f, "weir bench --windows: {}", self.sql)?;
        writeln!(
            f,
            "  add            {:>12.0} events/s ({} events into {} open groups)",
            self.add_events_per_second, self.events, self.open_groups
        )?;
        writeln!(
            f,
            "  state          {:>10.1} MiB of partial aggregates ({:.0} bytes per group)",
            mib(self.state_bytes as f64),
            self.state_bytes as f64 / self.open_groups.max(1) as f64
        )?;
        writeln!(
            f,
            "  checkpoint     {:>10.3} s with every group open (snapshot {:.1} MiB in memory)",
            self.checkpoint_seconds,
            mib(self.snapshot_bytes as f64)
        )?;
        writeln!(
            f,
            "  emit           {:>10.3} s for {} rows",
            self.emit_seconds, self.emitted_rows
        )?;
        write!(
            f,
            "  peak memory    {:>10.1} MiB (resident)",
            mib(self.peak_rss_bytes as f64)
        )
    }
}
