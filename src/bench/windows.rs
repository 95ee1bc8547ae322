//! `weir bench --windows`: the windowed aggregation alone, fed Arrow batches as the pipeline
//! would after decoding, with many groups open at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What `weir bench --windows` measured.
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
