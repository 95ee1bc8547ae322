//! The runtime in process, without Kafka: batches replayed through the real stages into real
//! datasets on disk, and read back through their commit logs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
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
        [dead_letters]
        url = "out/dead_letters"
        [watermarks]
        out_of_orderness = "0s"
        "#,
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
    let mut raw = RawMessages::with_capacity((offsets.end - offsets.start) as usize);
    for offset in offsets {
        let payload = payload(offset);
        raw.push("orders", 0, offset, None, None, Some(payload.as_bytes()));
    }
    let decoding = &mut pipeline.decoding;
    decoding
        .table
        .decode(decoding.decoder.as_mut(), raw.finish())
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

/// Replays `offsets` as batches of `size` through a fresh instance, a checkpoint after each.
async fn run(config: &Path, offsets: std::ops::Range<i64>, size: i64) -> Vec<Arc<dyn Dataset>> {
    let mut pipeline = pipeline(config).await;
    let datasets = datasets(&pipeline);
    let batches: Vec<SourceBatch> = offsets
        .clone()
        .step_by(size as usize)
        .map(|from| batch(&mut pipeline, from..(from + size).min(offsets.end)))
        .collect();
    let watching = observer(&pipeline);
    super::replay(
        pipeline,
        &[PartitionKey::new("orders", 0)],
        batches,
        watching,
    )
    .await
    .unwrap();
    datasets
}

/// After a restart the log, not the batch, says what a dataset still needs: an instance that
/// reads offsets again (from a lower position, as after a crash between two datasets'
/// commits) writes each row, window and dead letter once.
#[tokio::test]
async fn rows_read_again_after_a_restart_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_files(dir.path());
    run(&config, 0..130, 50).await;
    let datasets = run(&config, 70..200, 40).await;
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
