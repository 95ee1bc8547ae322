//! Partition values that need escaping in a Hive path (`/`, `%`, `:`, `=`, spaces,
//! non-ASCII, long ones) are read back exactly by independent readers, on local disk and on a
//! real S3 API server.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::{Committed, run_until_committed};
use common::process::{weir, weirtest};
use common::s3::{BUCKET, start_moto_with_bucket};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The values, each of which a path segment cannot hold as it is, or which a reader could
/// mistake for something else.
fn hostile_values() -> Vec<String> {
    vec![
        "a/b".into(),
        "100%".into(),
        "%2F".into(),
        "12:30".into(),
        "k=v".into(),
        "with space".into(),
        "Zürich 東京".into(),
        "quote\"hash#star*".into(),
        "x".repeat(200),
    ]
}

/// A pipeline that writes every event into `url`, partitioned by its value `c`; on the S3
/// server at `endpoint` when there is one.
fn pipeline(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    url: &str,
    endpoint: Option<&str>,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("sql")).unwrap();
    std::fs::write(
        dir.join("schema.toml"),
        r#"
        [[fields]]
        name = "id"
        type = "int64"
        required = true
        [[fields]]
        name = "c"
        type = "string"
        required = true
        [[fields]]
        name = "ts"
        type = "timestamp"
        required = true
        "#,
    )
    .unwrap();
    std::fs::write(
        dir.join("sql/by_value.sql"),
        "SELECT id, c AS value, ts FROM events",
    )
    .unwrap();
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            name = "values"
            [source]
            bootstrap_servers = "{bootstrap}"
            topics = ["{topic}"]
            group_id = "weir-test-{topic}"
            table = "events"
            schema = "schema.toml"
            event_time = "ts"
            max_batch_wait = "50ms"
            [[transforms]]
            name = "by_value"
            sql = "sql/by_value.sql"
            [transforms.sink]
            url = "{url}"
            partition_by = [{{ name = "c", expr = "value" }}]
            {storage}
            [dead_letters]
            url = "{dead}"
            [delivery]
            commit_interval = "200ms"
            "#,
            dead = dir.join("out/dead_letters").display(),
            storage = endpoint.map_or(String::new(), |endpoint| format!(
                "[transforms.sink.storage]\naws_endpoint = \"{endpoint}\"\n\
                 aws_allow_http = \"true\"\naws_region = \"us-east-1\""
            )),
        ),
    )
    .unwrap();
    config
}

/// An embedded cluster whose topic holds one event per value, `id` its index.
fn cluster_with(
    topic: &str,
    values: &[String],
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    cluster
        .create_topic(topic, 1, 1)
        .expect("creating the topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("a producer");
    for (id, value) in values.iter().enumerate() {
        let payload =
            serde_json::json!({"id": id, "c": value, "ts": "2026-11-25T10:00:00Z"}).to_string();
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(&payload))
            .expect("queueing an event");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("delivering the events");
    cluster
}

/// Runs the pipeline over `values` and returns what weirtest's `hive-values` prints for the
/// dataset, with `reader_args` saying where it is.
fn written_and_read(
    dir: &Path,
    values: &[String],
    url: &str,
    endpoint: Option<&str>,
    reader_args: &[&str],
) -> serde_json::Value {
    let topic = "values";
    let cluster = cluster_with(topic, values);
    let bootstrap = cluster.bootstrap_servers();
    let config = pipeline(dir, &bootstrap, topic, url, endpoint);
    let mut command = weir();
    command
        .args(["run", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "weir-test")
        .env("AWS_SECRET_ACCESS_KEY", "weir-test-secret");
    run_until_committed(
        command,
        dir.join("weir.log"),
        Committed {
            bootstrap: &bootstrap,
            topic,
            partitions: 1,
            messages: values.len() as i64,
            properties: &[],
        },
    );
    let mut args = vec!["hive-values", "--column", "c"];
    args.extend_from_slice(reader_args);
    serde_json::from_str(&weirtest(&args)).expect("JSON from hive-values")
}

fn expected(values: &[String]) -> serde_json::Value {
    let mut rows: Vec<serde_json::Value> = values
        .iter()
        .enumerate()
        .map(|(id, value)| serde_json::json!([id, value]))
        .collect();
    rows.sort_by_key(|r| r[0].as_i64());
    serde_json::Value::Array(rows)
}

#[test]
fn partition_values_read_back_exactly_from_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let values = hostile_values();
    let dataset = dir.path().join("out/by_value");
    let url = dataset.display().to_string();
    let seen = written_and_read(dir.path(), &values, &url, None, &["--dataset", &url]);
    assert_eq!(seen["duckdb"], expected(&values), "DuckDB");
    assert_eq!(seen["pyarrow"], expected(&values), "pyarrow");
    // One directory per value, escaped once: `a/b` is `c=a%2Fb`, not `c=a%252Fb`.
    assert!(dataset.join("c=a%2Fb").is_dir());
    assert!(dataset.join("c=100%25").is_dir());
}

#[test]
fn partition_values_read_back_exactly_from_s3() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto_with_bucket(dir.path());
    let mut values = hostile_values();
    // Longer than a file name may be on local disk; an S3 key holds it.
    values.push("y".repeat(300));
    let url = format!("s3://{BUCKET}/by_value");
    let seen = written_and_read(
        dir.path(),
        &values,
        &url,
        Some(&endpoint),
        &[
            "--dataset",
            "by_value",
            "--endpoint",
            &endpoint,
            "--bucket",
            BUCKET,
        ],
    );
    assert_eq!(seen["pyarrow"], expected(&values), "pyarrow over S3");
}

/// A partition column with a distinct value in every event (2,000 of them), a commit interval
/// of 10 s: the pipeline checkpoints whenever a dataset has written to
/// `max_partitions_per_checkpoint` paths, so no checkpoint's files grow with the values (the
/// first tick used to commit them all at once). Every row lands once.
#[test]
fn many_distinct_partition_values_make_checkpoints_of_bounded_size() {
    const CAP: usize = 100;
    const BATCH: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<String> = (0..2000).map(|i| format!("v-{i:04}")).collect();
    let topic = "many-values";
    let cluster = cluster_with(topic, &values);
    let bootstrap = cluster.bootstrap_servers();
    let dataset = dir.path().join("out/by_value");
    let url = dataset.display().to_string();
    let config = pipeline(dir.path(), &bootstrap, topic, &url, None);
    let text = std::fs::read_to_string(&config).unwrap();
    let edits = [
        (
            "commit_interval = \"200ms\"",
            "commit_interval = \"10s\"".to_owned(),
        ),
        (
            "max_batch_wait = \"50ms\"",
            format!("max_batch_wait = \"50ms\"\nmax_batch_messages = {BATCH}"),
        ),
        (
            "partition_by = [{ name = \"c\", expr = \"value\" }]",
            format!(
                "partition_by = [{{ name = \"c\", expr = \"value\" }}]\n\
                 max_partitions_per_checkpoint = {CAP}\nmax_open_files = 16"
            ),
        ),
    ];
    let text = edits.iter().fold(text, |text, (from, to)| {
        assert!(text.contains(from), "no `{from}` in the pipeline");
        text.replace(from, to)
    });
    std::fs::write(&config, text).unwrap();

    let mut command = weir();
    command.args(["run", "--config"]).arg(&config);
    run_until_committed(
        command,
        dir.path().join("weir.log"),
        Committed {
            bootstrap: &bootstrap,
            topic,
            partitions: 1,
            messages: values.len() as i64,
            properties: &[],
        },
    );

    let mut entries = 0;
    for entry in std::fs::read_dir(dataset.join("_weir/log")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let entry: serde_json::Value = serde_json::from_str(&text).unwrap();
        let Some(files) = entry["files"].as_array() else {
            continue;
        };
        let paths: std::collections::HashSet<&str> = files
            .iter()
            .map(|f| f["partition"].as_str().unwrap())
            .collect();
        // The batch that reaches the cap is written whole.
        assert!(
            paths.len() < CAP + BATCH,
            "a commit of {} paths",
            paths.len()
        );
        entries += 1;
    }
    assert!(entries >= values.len() / (CAP + BATCH), "{entries} commits");
    let seen: serde_json::Value = serde_json::from_str(&weirtest(&[
        "hive-values",
        "--column",
        "c",
        "--dataset",
        &url,
    ]))
    .unwrap();
    assert_eq!(seen["duckdb"], expected(&values), "DuckDB");
    assert_eq!(seen["pyarrow"], expected(&values), "pyarrow");
}
