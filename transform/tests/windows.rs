//! Streaming windows equal batch SQL: for random events arriving out of order within the
//! out-of-orderness bound, in random batches, with checkpoints (and restores from their
//! snapshots, as after a restart) at random moments, the windows a [`WindowState`] emits are
//! exactly what an independent batch query over all events computes.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::array_value_to_string;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_schemas::PartitionKey;
use weir_transform::{SqlEngine, Transform, WindowState};

const OUT_OF_ORDERNESS: i64 = 4_000;
const PARTITIONS: i32 = 3;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// The aggregates every case computes, over events that pass `WHERE`.
const AGGREGATES: &str = "count(*) AS n, sum(v) AS total, min(v) AS lo, max(v) AS hi, \
     avg(v) AS mean, count(DISTINCT user_id) AS users, count(v) FILTER (WHERE v > 50) AS big";

struct Case {
    name: &'static str,
    streaming: String,
    /// The same result in plain SQL over `events` with `t` (event time in ms): columns
    /// window start, window end (ms), key, then the aggregates.
    batch: String,
}

fn cases() -> Vec<Case> {
    let filter = "WHERE v IS NULL OR v <> 13";
    vec![
        Case {
            name: "tumble",
            streaming: format!(
                "SELECT window_start, window_end, key, {AGGREGATES} FROM events {filter} \
                 GROUP BY tumble(ts, INTERVAL '10 seconds'), key"
            ),
            batch: format!(
                "SELECT t - (t % 10000 + 10000) % 10000 AS ws, \
                 t - (t % 10000 + 10000) % 10000 + 10000 AS we, key, {AGGREGATES} \
                 FROM events {filter} GROUP BY 1, 2, key"
            ),
        },
        Case {
            name: "hop",
            streaming: format!(
                "SELECT key, window_end, {AGGREGATES}, window_start FROM events {filter} \
                 GROUP BY key, hop(ts, INTERVAL '5 seconds', INTERVAL '15 seconds')"
            ),
            batch: format!(
                "SELECT t - (t % 5000 + 5000) % 5000 - k * 5000 AS ws, \
                 t - (t % 5000 + 5000) % 5000 - k * 5000 + 15000 AS we, key, {AGGREGATES} \
                 FROM events CROSS JOIN (VALUES (0), (1), (2)) AS o(k) {filter} \
                 GROUP BY 1, 2, key"
            ),
        },
        Case {
            name: "session",
            streaming: format!(
                "SELECT window_start, window_end, key, {AGGREGATES} FROM events {filter} \
                 GROUP BY session(ts, INTERVAL '3 seconds'), key"
            ),
            batch: format!(
                "WITH kept AS (SELECT * FROM events {filter}), \
                 marked AS (SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY key ORDER BY t) \
                   <= 3000 THEN 0 ELSE 1 END AS starts FROM kept), \
                 numbered AS (SELECT *, sum(starts) OVER (PARTITION BY key ORDER BY t \
                   ROWS UNBOUNDED PRECEDING) AS session FROM marked) \
                 SELECT min(t) AS ws, max(t) + 3000 AS we, key, {AGGREGATES} \
                 FROM numbered GROUP BY key, session"
            ),
        },
    ]
}

struct Event {
    key: String,
    user_id: i64,
    v: Option<i64>,
    ts: i64,
}

impl Event {
    /// Sessions are per Kafka partition, so a key keeps to one, as keyed messages do.
    fn partition(&self) -> i32 {
        self.key.bytes().map(i32::from).sum::<i32>() % PARTITIONS
    }
}

fn to_batch(events: &[&Event]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| &e.key))),
            Arc::new(Int64Array::from_iter_values(
                events.iter().map(|e| e.user_id),
            )),
            Arc::new(Int64Array::from_iter(events.iter().map(|e| e.v))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.ts))
                    .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap()
}

/// Random events, in arrival order: each arrives no more than `OUT_OF_ORDERNESS` after
/// its event time would place it, so none is late.
fn events(rng: &mut StdRng) -> Vec<Event> {
    let count = rng.random_range(1..300);
    let keys = rng.random_range(1..6);
    let mut ts = rng.random_range(-50_000..50_000);
    let mut events: Vec<(i64, Event)> = (0..count)
        .map(|_| {
            ts += rng.random_range(0..1_500);
            let arrival = ts + rng.random_range(0..OUT_OF_ORDERNESS);
            let event = Event {
                key: format!("k{}", rng.random_range(0..keys)),
                user_id: rng.random_range(0..8),
                v: rng.random_bool(0.9).then(|| rng.random_range(0..100)),
                ts,
            };
            (arrival, event)
        })
        .collect();
    events.sort_by_key(|(arrival, _)| *arrival);
    events.into_iter().map(|(_, e)| e).collect()
}

/// Rows as sorted text, window bounds as epoch milliseconds, in the column order of the
/// batch query.
fn rows(batches: &[RecordBatch], order: &[&str]) -> Vec<String> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<_> = order
            .iter()
            .map(|name| {
                let column = batch.column_by_name(name).unwrap();
                match column.data_type() {
                    DataType::Timestamp(..) => cast(
                        &cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None)).unwrap(),
                        &DataType::Int64,
                    )
                    .unwrap(),
                    _ => column.clone(),
                }
            })
            .collect();
        for row in 0..batch.num_rows() {
            let text: Vec<String> = columns
                .iter()
                .map(|c| array_value_to_string(c, row).unwrap())
                .collect();
            rows.push(text.join("|"));
        }
    }
    rows.sort();
    rows
}

async fn batch_result(ctx: &SessionContext, case: &Case, events: &[Event]) -> Vec<String> {
    let all = to_batch(&events.iter().collect::<Vec<_>>());
    let t = cast(
        &cast(
            all.column(3),
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )
        .unwrap(),
        &DataType::Int64,
    )
    .unwrap();
    let mut fields = schema().fields().to_vec();
    fields.push(Arc::new(Field::new("t", DataType::Int64, false)));
    let mut columns = all.columns().to_vec();
    columns.push(t);
    let with_t = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let table = MemTable::try_new(with_t.schema(), vec![vec![with_t]]).unwrap();
    ctx.deregister_table("events").unwrap();
    ctx.register_table("events", Arc::new(table)).unwrap();
    let result = ctx.sql(&case.batch).await.unwrap().collect().await.unwrap();
    let names = [
        "ws", "we", "key", "n", "total", "lo", "hi", "mean", "users", "big",
    ];
    rows(&result, &names)
}

const STREAMED: [&str; 10] = [
    "window_start",
    "window_end",
    "key",
    "n",
    "total",
    "lo",
    "hi",
    "mean",
    "users",
    "big",
];

fn new_state(engine: &SqlEngine, transform: &Transform, lateness: i64) -> WindowState {
    WindowState::new(engine, transform, lateness).unwrap()
}

async fn streaming_result(
    engine: &SqlEngine,
    transform: &Transform,
    events: &[Event],
    rng: &mut StdRng,
) -> Vec<String> {
    let lateness = if rng.random_bool(0.5) { 0 } else { 2_000 };
    let mut state = new_state(engine, transform, lateness);
    let mut emitted = Vec::new();
    let mut max_seen = i64::MIN;
    let mut rest = events;
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(rng.random_range(1..=rest.len().min(40)));
        rest = tail;
        for partition in 0..PARTITIONS {
            let mine: Vec<&Event> = batch
                .iter()
                .filter(|e| e.partition() == partition)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let late = state
                .add(&PartitionKey::new("t", partition), to_batch(&mine))
                .await
                .unwrap();
            assert!(late.is_empty(), "no event is late within the bound");
        }
        max_seen = max_seen.max(batch.iter().map(|e| e.ts).max().unwrap());
        if rng.random_bool(0.3) {
            let watermark = Some(max_seen - OUT_OF_ORDERNESS);
            let done = state.checkpoint(|_| watermark).await.unwrap();
            emitted.extend(done.output);
            if rng.random_bool(0.5) {
                // A restart: a new instance restores the snapshot.
                let mut restored = new_state(engine, transform, lateness);
                for partition in 0..PARTITIONS {
                    let partition = PartitionKey::new("t", partition);
                    restored.assign(&partition, state.emitted(&partition));
                }
                if let Some(snapshot) = &done.snapshot {
                    restored.restore(snapshot).unwrap();
                }
                state = restored;
            }
        }
    }
    // The end of the stream: every window closes.
    let done = state.checkpoint(|_| Some(i64::MAX)).await.unwrap();
    assert!(done.snapshot.is_none(), "nothing stays open");
    emitted.extend(done.output);
    rows(&emitted, &STREAMED)
}

#[tokio::test]
async fn streaming_windows_equal_batch_sql_over_random_disordered_inputs() {
    let cases_per_window: u64 = std::env::var("WEIR_WINDOW_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let engine = SqlEngine::new("events", schema())
        .unwrap()
        .with_event_time("ts");
    let reference = SessionContext::new();
    for case in cases() {
        let started = std::time::Instant::now();
        let transform = engine
            .transform(case.name, &case.streaming, case.name)
            .await
            .unwrap();
        let mut windows = 0;
        for seed in 0..cases_per_window {
            let mut rng = StdRng::seed_from_u64(seed);
            let events = events(&mut rng);
            let expected = batch_result(&reference, &case, &events).await;
            let actual = streaming_result(&engine, &transform, &events, &mut rng).await;
            assert_eq!(
                actual, expected,
                "{} windows differ from batch SQL with seed {seed}",
                case.name
            );
            windows += expected.len();
        }
        println!(
            "{}: {cases_per_window} inputs, {windows} windows equal ({:.1?})",
            case.name,
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn late_events_are_reported_and_left_out() {
    let engine = SqlEngine::new("events", schema())
        .unwrap()
        .with_event_time("ts");
    let transform = engine
        .transform(
            "per_10s",
            "SELECT window_start, key, count(*) AS n FROM events \
             GROUP BY tumble(ts, INTERVAL '10 seconds'), key",
            "per_10s.sql",
        )
        .await
        .unwrap();
    let mut state = WindowState::new(&engine, &transform, 1_000).unwrap();
    let event = |key: &str, ts| Event {
        key: key.into(),
        user_id: 1,
        v: Some(1),
        ts,
    };
    let first = [event("a", 1_000), event("a", 12_000)];
    let late = state
        .add(
            &PartitionKey::new("t", 0),
            to_batch(&first.iter().collect::<Vec<_>>()),
        )
        .await
        .unwrap();
    assert!(late.is_empty());
    // Window [0, 10 s) closes once the watermark reaches 10 s + 1 s of lateness.
    let done = state.checkpoint(|_| Some(10_999)).await.unwrap();
    assert!(done.output.iter().all(|b| b.num_rows() == 0));
    let done = state.checkpoint(|_| Some(11_000)).await.unwrap();
    let out = concat_batches(&done.output[0].schema(), &done.output).unwrap();
    assert_eq!(rows(&[out], &["window_start", "key", "n"]), ["0|a|1"]);
    assert_eq!(done.snapshot.as_ref().map(RecordBatch::num_rows), Some(1));

    let second = [event("a", 9_999), event("b", 10_000), event("a", 2_000)];
    let late = state
        .add(
            &PartitionKey::new("t", 0),
            to_batch(&second.iter().collect::<Vec<_>>()),
        )
        .await
        .unwrap();
    assert_eq!(late, [0, 2], "the rows for the emitted window are late");
    let done = state.checkpoint(|_| Some(i64::MAX)).await.unwrap();
    let out = concat_batches(&done.output[0].schema(), &done.output).unwrap();
    let rows = rows(&[out], &["window_start", "key", "n"]);
    assert_eq!(rows, ["10000|a|1", "10000|b|1"]);
}

#[tokio::test]
async fn released_partitions_take_their_windows_along() {
    let engine = SqlEngine::new("events", schema())
        .unwrap()
        .with_event_time("ts");
    let transform = engine
        .transform(
            "per_10s",
            "SELECT window_start, count(*) AS n, sum(v) AS total FROM events \
             GROUP BY tumble(ts, INTERVAL '10 seconds')",
            "per_10s.sql",
        )
        .await
        .unwrap();
    let event = |ts, v| Event {
        key: "a".into(),
        user_id: 1,
        v: Some(v),
        ts,
    };
    let mut a = WindowState::new(&engine, &transform, 0).unwrap();
    for (partition, v) in [(0, 1), (1, 10), (2, 100)] {
        let batch = [event(1_000, v), event(2_000, v)];
        a.add(
            &PartitionKey::new("t", partition),
            to_batch(&batch.iter().collect::<Vec<_>>()),
        )
        .await
        .unwrap();
    }
    // Partition 1 moves to instance b with its snapshot (as a commit log would hand it on).
    let done = a.checkpoint(|_| Some(5_000)).await.unwrap();
    let snapshot = done.snapshot.unwrap();
    a.release(&[PartitionKey::new("t", 1)]).unwrap();
    let mut b = WindowState::new(&engine, &transform, 0).unwrap();
    let moved = PartitionKey::new("t", 1);
    b.assign(&moved, a.emitted(&moved));
    let partitions = snapshot.column_by_name("_partition").unwrap();
    let keep =
        arrow::compute::kernels::cmp::eq(partitions, &arrow::array::Int32Array::new_scalar(1))
            .unwrap();
    b.restore(&arrow::compute::filter_record_batch(&snapshot, &keep).unwrap())
        .unwrap();
    let out = |done: weir_transform::Checkpointed| {
        let batch = concat_batches(&done.output[0].schema(), &done.output).unwrap();
        rows(&[batch], &["window_start", "n", "total"])
    };
    let from_a = a.checkpoint(|_| Some(20_000)).await.unwrap();
    let from_b = b.checkpoint(|_| Some(20_000)).await.unwrap();
    assert_eq!(out(from_a), ["0|4|202"]);
    assert_eq!(out(from_b), ["0|2|20"]);
}

#[tokio::test]
async fn a_query_failing_on_input_changes_nothing_and_on_a_window_closes_that_window_apart() {
    let engine = SqlEngine::new("events", schema())
        .unwrap()
        .with_event_time("ts");
    // Divides by zero on emission while a window holds one event, and on input for v = 5.
    let transform = engine
        .transform(
            "ratio",
            "SELECT window_start, sum(100 / (v - 5)) / (count(*) - 1) AS r FROM events \
             GROUP BY tumble(ts, INTERVAL '10 seconds')",
            "ratio.sql",
        )
        .await
        .unwrap();
    let mut state = WindowState::new(&engine, &transform, 0).unwrap();
    let partition = PartitionKey::new("t", 0);
    state.assign(&partition, None);
    let event = |ts, v| Event {
        key: "a".into(),
        user_id: 1,
        v: Some(v),
        ts,
    };
    let add = async |state: &mut WindowState, events: &[Event]| {
        let batch = to_batch(&events.iter().collect::<Vec<_>>());
        state.add(&partition, batch).await
    };
    add(&mut state, &[event(1_000, 15)]).await.unwrap();
    // An input error changes nothing.
    assert!(
        add(&mut state, &[event(2_000, 25), event(3_000, 5)])
            .await
            .is_err()
    );
    assert_eq!(state.open_groups(), 1);
    add(&mut state, &[event(11_000, 25), event(12_000, 25)])
        .await
        .unwrap();
    // Emitting fails on the one-event window alone. Left open it would fail every later
    // checkpoint, so it closes, unemitted, with its rows and the error set apart; the other
    // window is emitted.
    let done = state.checkpoint(|_| Some(20_000)).await.unwrap();
    let out = concat_batches(&done.output[0].schema(), &done.output).unwrap();
    assert_eq!(rows(&[out], &["window_start", "r"]), ["10000|10"]);
    assert_eq!(done.failed.len(), 1);
    let failed = &done.failed[0];
    assert_eq!((failed.start_ms, failed.end_ms), (0, 10_000));
    assert_eq!(failed.partitions, std::slice::from_ref(&partition));
    assert_eq!(failed.rows.num_rows(), 1);
    assert!(
        failed.error.to_string().contains("ratio"),
        "{}",
        failed.error
    );
    assert_eq!(state.open_groups(), 0);
    assert_eq!(state.emitted(&partition), Some(20_000));
}
