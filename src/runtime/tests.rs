//! The runtime in process, without Kafka: batches replayed through the real stages into real
//! datasets on disk, and read back through their commit logs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use opentelemetry::metrics::MeterProvider;
use weir_schemas::{PartitionKey, RawMessages, SourceBatch};
use weir_sink::Dataset;

use super::{RunError, State};
use crate::config::PipelineConfig;
use crate::pipeline::{DeadLetterTarget, Pipeline};
use crate::telemetry::{HealthLimits, Observer};

/// Orders (`id`, `amount`, `ts`) into `all` (stateless) and `per_minute` (tumbling windows,
/// counted), with a rule that amounts are not negative; datasets under `dir/out`.
fn pipeline_files(dir: &Path) -> std::path::PathBuf {
    pipeline_files_with(dir, "")
}

/// [`pipeline_files`] with more `[[transforms]]` after the two.
fn pipeline_files_with(dir: &Path, more_transforms: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("sql")).unwrap();
    std::fs::write(
        dir.join("schema.toml"),
        r#"
        [[fields]]
        name = "id"
        type = "int64"
        required = true
        [[fields]]
        name = "amount"
        type = "float64"
        [[fields]]
        name = "ts"
        type = "timestamp"
        required = true
        "#,
    )
    .unwrap();
    std::fs::write(dir.join("sql/all.sql"), "SELECT id, amount, ts FROM orders").unwrap();
    std::fs::write(
        dir.join("sql/per_minute.sql"),
        "SELECT window_start, count(*) AS orders FROM orders \
         GROUP BY tumble(ts, INTERVAL '1 minute')",
    )
    .unwrap();
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            r#"
        name = "orders"
        [source]
        bootstrap_servers = "127.0.0.1:1"
        topics = ["orders"]
        group_id = "weir-orders"
        table = "orders"
        schema = "schema.toml"
        event_time = "ts"
        [[validation]]
        name = "no_refunds"
        expr = "amount >= 0"
        [[transforms]]
        name = "all"
        sql = "sql/all.sql"
        [transforms.sink]
        url = "out/all"
        [[transforms]]
        name = "per_minute"
        sql = "sql/per_minute.sql"
        [transforms.sink]
        url = "out/per_minute"
        {more_transforms}
        [dead_letters]
        url = "out/dead_letters"
        [watermarks]
        out_of_orderness = "0s"
        "#
        ),
    )
    .unwrap();
    config
}

async fn pipeline(config: &Path) -> Pipeline {
    let config = PipelineConfig::load(config, &BTreeMap::<String, String>::new()).unwrap();
    Pipeline::build(config).await.unwrap()
}

fn observer(pipeline: &Pipeline) -> Arc<Observer> {
    let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    let limits = HealthLimits {
        wedged_after: std::time::Duration::MAX,
        max_checkpoint_age: std::time::Duration::MAX,
    };
    Observer::new(
        &pipeline.name,
        &meters.meter("weir"),
        limits,
        std::time::Duration::ZERO,
    )
}

/// Order `offset` of partition 0: amount `offset`, one order a second from 00:00:00, except
/// offset 3, a refund (negative amount), and offset 5, which is not JSON.
fn payload(offset: i64) -> String {
    match offset {
        3 => format!(r#"{{"id":3,"amount":-1,"ts":{}}}"#, offset * 1000),
        5 => "not json".to_owned(),
        _ => format!(
            r#"{{"id":{offset},"amount":{offset},"ts":{}}}"#,
            offset * 1000
        ),
    }
}

/// The messages at `offsets` of orders/0, decoded by the pipeline's own decoder.
fn batch(pipeline: &mut Pipeline, offsets: std::ops::Range<i64>) -> SourceBatch {
    batch_of(pipeline, offsets, payload)
}

/// The messages at `offsets` of orders/0 with the payloads `payload` gives them.
fn batch_of(
    pipeline: &mut Pipeline,
    offsets: std::ops::Range<i64>,
    payload: impl Fn(i64) -> String,
) -> SourceBatch {
    let mut raw = RawMessages::with_capacity((offsets.end - offsets.start) as usize);
    for offset in offsets {
        let payload = payload(offset);
        raw.push("orders", 0, offset, None, None, Some(payload.as_bytes()));
    }
    pipeline.decoding.decode(raw.finish()).unwrap()
}

/// Every dataset of the pipeline, to read back what the runs committed.
fn datasets(pipeline: &Pipeline) -> Vec<Arc<dyn Dataset>> {
    let mut all: Vec<Arc<dyn Dataset>> =
        pipeline.outputs.iter().map(|o| o.dataset.clone()).collect();
    if let DeadLetterTarget::Dataset { dataset, .. } = &pipeline.dead_letters {
        all.push(dataset.clone());
    }
    all
}

/// The values of an Int64 column over every committed row of `dataset`, sorted.
async fn committed(dataset: &dyn Dataset, column: &str) -> Vec<i64> {
    let rows: Vec<RecordBatch> = dataset
        .read_committed()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, batch)| batch)
        .collect();
    let mut values: Vec<i64> = rows
        .iter()
        .flat_map(|b| {
            let column = arrow::compute::cast(
                b.column_by_name(column).unwrap(),
                &arrow::datatypes::DataType::Int64,
            )
            .unwrap();
            column.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect();
    values.sort();
    values
}

/// The (offset, reason) of every committed dead letter, by offset.
async fn dead_letters(dataset: &dyn Dataset) -> Vec<(i64, String)> {
    dead_letters_in_full(dataset)
        .await
        .into_iter()
        .map(|(offset, reason, _)| (offset, reason))
        .collect()
}

/// The (offset, reason, detail) of every committed dead letter, by offset.
async fn dead_letters_in_full(dataset: &dyn Dataset) -> Vec<(i64, String, String)> {
    let mut letters = Vec::new();
    for (_, batch) in dataset.read_committed().await.unwrap() {
        let column = |name| batch.column_by_name(name).unwrap().as_string::<i32>();
        let (reasons, details) = (column("reason"), column("detail"));
        let offsets = batch
            .column_by_name("offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            letters.push((
                offsets.value(row),
                reasons.value(row).to_owned(),
                details.value(row).to_owned(),
            ));
        }
    }
    letters.sort();
    letters
}

/// Replays `offsets` as batches of `size` through a fresh instance, a checkpoint after each.
async fn run(config: &Path, offsets: std::ops::Range<i64>, size: i64) -> Vec<Arc<dyn Dataset>> {
    let (datasets, result) = try_run(config, offsets, size).await;
    result.unwrap();
    datasets
}

/// [`run`], returning how the run ended.
async fn try_run(
    config: &Path,
    offsets: std::ops::Range<i64>,
    size: i64,
) -> (Vec<Arc<dyn Dataset>>, Result<(), RunError>) {
    let mut pipeline = pipeline(config).await;
    let datasets = datasets(&pipeline);
    let batches: Vec<SourceBatch> = offsets
        .clone()
        .step_by(size as usize)
        .map(|from| batch(&mut pipeline, from..(from + size).min(offsets.end)))
        .collect();
    let watching = observer(&pipeline);
    let result = super::replay(
        pipeline,
        &[PartitionKey::new("orders", 0)],
        batches,
        watching,
    )
    .await;
    (datasets, result.map(|_| ()))
}

/// A restarted instance continues where the commit logs say, windows included: each row,
/// window and dead letter is written once.
#[tokio::test]
async fn a_restarted_instance_continues_where_the_logs_say() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files(dir.path());
    run(&config, 0..130, 50).await;
    let datasets = run(&config, 130..200, 40).await;
    let valid: Vec<i64> = (0..200).filter(|o| ![3, 5].contains(o)).collect();
    assert_eq!(committed(datasets[0].as_ref(), "id").await, valid);
    // Dead letters once each: the refund by its rule, the bad message as invalid JSON.
    assert_eq!(committed(datasets[2].as_ref(), "offset").await, vec![3, 5]);
    // Minutes that the watermark (the latest event time, 199 s) passed, each counted once:
    // 00:00 without the refund and the bad message, 00:01 and 00:02 whole.
    assert_eq!(
        committed(datasets[1].as_ref(), "orders").await,
        vec![58, 60, 60]
    );
    for dataset in &datasets {
        let report = dataset.verify().await.unwrap();
        assert!(report.ok(), "{report}");
    }
}

/// Two instances claim the same partition: the one that claimed first is fenced at its next
/// commit, drops what it had not committed, and only the owner's rows become visible.
#[tokio::test]
async fn an_instance_whose_partition_was_claimed_since_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files(dir.path());
    let partition = [PartitionKey::new("orders", 0)];
    let mut zombie_pipeline = pipeline(&config).await;
    let datasets = datasets(&zombie_pipeline);
    let early = batch(&mut zombie_pipeline, 0..10);
    let watching = observer(&zombie_pipeline);
    let mut zombie = State::open(zombie_pipeline, watching).await.unwrap();
    zombie.assign(&partition).await.unwrap();

    let mut owner_pipeline = pipeline(&config).await;
    let owned = batch(&mut owner_pipeline, 0..20);
    let watching = observer(&owner_pipeline);
    let mut owner = State::open(owner_pipeline, watching).await.unwrap();
    assert_eq!(owner.assign(&partition).await.unwrap(), vec![None]);

    zombie.process(early).await.unwrap();
    match zombie.checkpoint(false).await {
        Err(RunError::Sink(e)) if e.is_fenced() => {}
        other => panic!("expected the zombie to be fenced, got {other:?}"),
    }
    zombie.abort().await;
    assert!(zombie.owned.is_empty() && zombie.pending.offsets.is_empty());

    owner.process(owned).await.unwrap();
    owner.checkpoint(false).await.unwrap();
    let valid: Vec<i64> = (0..20).filter(|o| ![3, 5].contains(o)).collect();
    assert_eq!(committed(datasets[0].as_ref(), "id").await, valid);
    for dataset in &datasets {
        let report = dataset.verify().await.unwrap();
        assert!(report.ok(), "{report}");
    }
}

/// One event with a time no clock could reach does not move event time: it is a dead letter,
/// and the windows after it are counted as if it never came, instead of every later event
/// being late.
#[tokio::test]
async fn an_event_time_far_in_the_future_is_a_dead_letter_and_moves_no_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files(dir.path());
    let mut pipeline = pipeline(&config).await;
    let datasets = datasets(&pipeline);
    let with_far_future = |offset| match offset {
        10 => r#"{"id":10,"amount":10,"ts":"9999-12-31T23:59:59Z"}"#.to_owned(),
        20 => format!(r#"{{"id":20,"amount":20,"ts":{}}}"#, i64::MAX),
        _ => payload(offset),
    };
    let batches = vec![
        batch_of(&mut pipeline, 0..50, with_far_future),
        batch_of(&mut pipeline, 50..130, with_far_future),
    ];
    let watching = observer(&pipeline);
    super::replay(
        pipeline,
        &[PartitionKey::new("orders", 0)],
        batches,
        watching,
    )
    .await
    .unwrap();

    let valid: Vec<i64> = (0..130).filter(|o| ![3, 5, 10, 20].contains(o)).collect();
    assert_eq!(committed(datasets[0].as_ref(), "id").await, valid);
    let out_of_range = "event_time_out_of_range".to_owned();
    assert_eq!(
        dead_letters(datasets[2].as_ref()).await,
        vec![
            (3, "rule:no_refunds".to_owned()),
            (5, "invalid_json".to_owned()),
            (10, out_of_range.clone()),
            (20, out_of_range),
        ]
    );
    // The watermark is the latest real event time, 129 s: minutes 00:00 (without the four
    // dead letters) and 00:01 are complete, nothing was late.
    assert_eq!(
        committed(datasets[1].as_ref(), "orders").await,
        vec![56, 60]
    );
}

/// Offsets below where a partition resumed (its log replaced: the topic recreated, an
/// unclean leader election) stop the run with the reason, instead of their messages being
/// dropped as rows the datasets hold; nothing of them is committed.
#[tokio::test]
async fn offsets_that_go_back_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files(dir.path());
    run(&config, 0..130, 50).await;
    let (datasets, result) = try_run(&config, 0..60, 60).await;
    match result {
        Err(RunError::OffsetsWentBack {
            partition,
            expected: 130,
            first: 0,
        }) if partition == PartitionKey::new("orders", 0) => {}
        other => panic!("expected the run to stop on offsets going back, got {other:?}"),
    }
    let valid: Vec<i64> = (0..130).filter(|o| ![3, 5].contains(o)).collect();
    assert_eq!(committed(datasets[0].as_ref(), "id").await, valid);

    // Within one run too: a batch that starts below where the last one ended.
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files(dir.path());
    let mut pipeline = pipeline(&config).await;
    let batches = vec![batch(&mut pipeline, 0..50), batch(&mut pipeline, 40..60)];
    let watching = observer(&pipeline);
    let result = super::replay(
        pipeline,
        &[PartitionKey::new("orders", 0)],
        batches,
        watching,
    )
    .await;
    assert!(
        matches!(
            result,
            Err(RunError::OffsetsWentBack {
                expected: 50,
                first: 40,
                ..
            })
        ),
        "{:?}",
        result.err()
    );
}

/// A transform whose SQL fails on some rows (a division by zero), and one whose partition
/// value for a row is longer than a path can hold: only those rows are dead letters, each
/// for its transform alone; every other dataset gets every row, and the datasets open again.
/// On a multi-threaded runtime, as the service runs it: each batch's datasets are written at
/// once, on threads of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_a_transform_fails_on_are_dead_letters_for_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files_with(
        dir.path(),
        r#"
        [[transforms]]
        name = "ratio"
        sql = "sql/ratio.sql"
        [transforms.sink]
        url = "out/ratio"
        [[transforms]]
        name = "by_label"
        sql = "sql/by_label.sql"
        [transforms.sink]
        url = "out/by_label"
        partition_by = [{ name = "label", expr = "tag" }]
        "#,
    );
    std::fs::write(
        dir.path().join("sql/ratio.sql"),
        "SELECT id, 1000 / (id % 40 - 7) AS ratio, ts FROM orders",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sql/by_label.sql"),
        "SELECT id, CASE WHEN id = 11 THEN repeat('x', 300) ELSE 'ok' END AS tag, ts \
         FROM orders",
    )
    .unwrap();
    let datasets = run(&config, 0..130, 50).await;

    let valid: Vec<i64> = (0..130).filter(|o| ![3, 5].contains(o)).collect();
    assert_eq!(committed(datasets[0].as_ref(), "id").await, valid);
    let without = |failing: &[i64]| -> Vec<i64> {
        valid
            .iter()
            .copied()
            .filter(|o| !failing.contains(o))
            .collect()
    };
    // 7, 47, 87 and 127 divide by zero.
    assert_eq!(
        committed(datasets[2].as_ref(), "id").await,
        without(&[7, 47, 87, 127])
    );
    assert_eq!(committed(datasets[3].as_ref(), "id").await, without(&[11]));
    // The windows count every valid order.
    assert_eq!(
        committed(datasets[1].as_ref(), "orders").await,
        vec![58, 60]
    );
    let dead = dead_letters(datasets[4].as_ref()).await;
    let failed = "transform_failed".to_owned();
    assert_eq!(
        dead,
        vec![
            (3, "rule:no_refunds".to_owned()),
            (5, "invalid_json".to_owned()),
            (7, failed.clone()),
            (11, "bad_partition_value".to_owned()),
            (47, failed.clone()),
            (87, failed.clone()),
            (127, failed),
        ]
    );
    let details: std::collections::HashMap<i64, String> =
        dead_letters_in_full(datasets[4].as_ref())
            .await
            .into_iter()
            .map(|(offset, _, detail)| (offset, detail))
            .collect();
    assert!(
        details[&7].starts_with("transform `ratio` failed") && details[&7].contains("zero"),
        "{}",
        details[&7]
    );
    assert!(
        details[&11].starts_with("transform `by_label`: partition `label` is 306 bytes"),
        "{}",
        details[&11]
    );
    assert!(
        !details[&11].contains("xxx"),
        "no value in {}",
        details[&11]
    );

    // Nothing was committed that the store cannot hold: the datasets open and verify again.
    for dataset in &datasets {
        let report = dataset.verify().await.unwrap();
        assert!(report.ok(), "{report}");
    }
    run(&config, 130..140, 10).await;
}

/// A window whose results the SQL fails on closes as a dead letter instead of failing every
/// checkpoint, and every restart after it: the other windows are emitted, the service goes
/// on, and a restart neither fails nor writes the letter again.
#[tokio::test]
async fn a_window_whose_results_fail_is_a_dead_letter_and_the_rest_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files_with(
        dir.path(),
        r#"
        [[transforms]]
        name = "ratio_per_minute"
        sql = "sql/ratio_per_minute.sql"
        [transforms.sink]
        url = "out/ratio_per_minute"
        "#,
    );
    // Minute 0 holds 58 valid orders (3 and 5 are dead letters): a division by zero.
    std::fs::write(
        dir.path().join("sql/ratio_per_minute.sql"),
        "SELECT window_start, 600 / (count(*) - 58) AS ratio FROM orders \
         GROUP BY tumble(ts, INTERVAL '1 minute')",
    )
    .unwrap();
    let datasets = run(&config, 0..190, 50).await;
    assert_eq!(
        committed(datasets[2].as_ref(), "ratio").await,
        vec![300, 300]
    );
    assert_eq!(
        committed(datasets[1].as_ref(), "orders").await,
        vec![58, 60, 60]
    );
    let failed: Vec<(i64, String, String)> = dead_letters_in_full(datasets[3].as_ref())
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason == "window_failed")
        .collect();
    // Placed at the last message of the commit that closed minute 0.
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (offset, _, detail) = &failed[0];
    assert_eq!(*offset, 99);
    assert!(
        detail.starts_with(
            "window [1970-01-01T00:00:00.000Z, 1970-01-01T00:01:00.000Z) failed: transform \
             `ratio_per_minute` failed"
        ) && detail.contains("zero"),
        "{detail}"
    );
    // Its payload holds the window's row, as the aggregation yielded it.
    let payload = failed_window_payload(datasets[3].as_ref()).await;
    let row: serde_json::Value = serde_json::from_str(payload.trim()).unwrap();
    let start = row["window_start"].as_str().unwrap();
    assert!(start.starts_with("1970-01-01T00:00:00"), "{row}");
    assert_eq!(row.as_object().unwrap().len(), 3, "{row}");

    let datasets = run(&config, 190..200, 10).await;
    let letters = dead_letters(datasets[3].as_ref()).await;
    let windows: Vec<&(i64, String)> = letters
        .iter()
        .filter(|(_, reason)| reason == "window_failed")
        .collect();
    assert_eq!(windows.len(), 1, "{letters:?}");
    for dataset in &datasets {
        let report = dataset.verify().await.unwrap();
        assert!(report.ok(), "{report}");
    }
}

/// The payload of the one `window_failed` dead letter in `dataset`.
async fn failed_window_payload(dataset: &dyn Dataset) -> String {
    for (_, batch) in dataset.read_committed().await.unwrap() {
        let reasons = batch.column_by_name("reason").unwrap().as_string::<i32>();
        let payloads = batch.column_by_name("payload").unwrap().as_binary::<i32>();
        for row in 0..batch.num_rows() {
            if reasons.value(row) == "window_failed" {
                return String::from_utf8(payloads.value(row).to_vec()).unwrap();
            }
        }
    }
    panic!("no window_failed dead letter")
}

/// With `payload = "drop"` the dead letters keep where a message came from and why, not
/// what it held.
#[tokio::test]
async fn dead_letters_can_leave_their_payloads_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files(dir.path());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "url = \"out/dead_letters\"",
        "url = \"out/dead_letters\"\n        payload = \"drop\"",
    );
    std::fs::write(&config, text).unwrap();
    let datasets = run(&config, 0..10, 10).await;
    let mut letters = Vec::new();
    for (_, batch) in datasets[2].read_committed().await.unwrap() {
        let offsets = batch
            .column_by_name("offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        let payloads = batch.column_by_name("payload").unwrap();
        for row in 0..batch.num_rows() {
            letters.push((offsets.value(row), payloads.is_null(row)));
        }
    }
    letters.sort();
    assert_eq!(letters, [(3, true), (5, true)]);
    assert_eq!(
        dead_letters(datasets[2].as_ref()).await,
        [
            (3, "rule:no_refunds".to_owned()),
            (5, "invalid_json".to_owned())
        ]
    );
}
