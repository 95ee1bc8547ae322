//! Writing through `s3://` to a real S3 API server (moto) on loopback, consuming from the
//! embedded Kafka cluster; credentials come from the environment.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::mocking::MockCluster;

#[test]
fn dataset_on_s3_holds_every_row_and_only_finished_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto(dir.path());
    weirtest(&[
        "create-bucket",
        "--endpoint",
        &endpoint,
        "--bucket",
        "weir-test",
    ]);

    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topic = "orders-s3";
    cluster
        .create_topic(topic, 2, 1)
        .expect("creating the topic");
    let (expected, messages) = produce_orders(dir.path(), &bootstrap, topic, 2, false);

    let cmd = weir_on_s3(
        dir.path(),
        &bootstrap,
        topic,
        "s3://weir-test/datasets/orders",
        &endpoint,
    );
    let log = run_until_committed(
        cmd,
        dir.path().join("weir.log"),
        &bootstrap,
        topic,
        2,
        messages,
        &[],
    );
    assert!(
        !log.contains("weir-test-secret"),
        "the secret key leaked into the log"
    );

    weirtest(&[
        "verify-s3",
        "--expected",
        expected.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--bucket",
        "weir-test",
        "--prefix",
        "datasets/orders",
    ]);
}

#[test]
fn a_persistent_storage_error_stops_weir_with_the_error_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto(dir.path());
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topic = "orders-no-bucket";
    cluster
        .create_topic(topic, 1, 1)
        .expect("creating the topic");
    produce_orders(dir.path(), &bootstrap, topic, 1, false);

    let cmd = weir_on_s3(
        dir.path(),
        &bootstrap,
        topic,
        "s3://no-such-bucket/orders",
        &endpoint,
    );
    let mut weir = Process::start("weir", cmd, dir.path().join("weir.log"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = weir.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "weir kept running:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = weir.log_text();
    assert!(!status.success(), "weir must fail:\n{log}");
    assert!(
        log.contains("dataset `orders`") && log.contains("no-such-bucket"),
        "{log}"
    );
    assert!(
        !log.contains("weir-test-secret"),
        "the secret key leaked into the log"
    );
    let committed = committed_total(&bootstrap, &format!("weir-test-{topic}"), topic, 1);
    assert!(
        committed <= 0,
        "offsets of unwritten rows were committed: {committed}"
    );
}

/// `weir run` of the orders pipeline writing its main dataset to `url` on the S3 server at
/// `endpoint`, with the credentials in the environment as a deployment would have them.
fn weir_on_s3(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    url: &str,
    endpoint: &str,
) -> std::process::Command {
    let mut cmd = weir();
    cmd.args(["run", "--config"])
        .arg(repo().join("tests/fixtures/orders/pipeline.toml"))
        .envs(orders_env(bootstrap, topic, &dir.join("out"), url))
        .env("S3_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", "weir-test")
        .env("AWS_SECRET_ACCESS_KEY", "weir-test-secret");
    cmd
}

/// A moto S3 server on a free loopback port, and its endpoint URL.
fn start_moto(dir: &Path) -> (Process, String) {
    let port = free_port();
    let mut command = std::process::Command::new(tool("WEIR_TEST_PYTHON"));
    command.args([
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    let mut moto = Process::start("moto", command, dir.join("moto.log"));
    wait_for_listener(&mut moto, port);
    (moto, format!("http://127.0.0.1:{port}"))
}
