//! Kafka through independent clients: producing the known orders, reading offsets, a
//! Tansu broker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::net::wait_for_listener;
use super::process::{Process, weirtest};
use super::tool;

/// The sum over the topic's partitions of the group's committed offsets.
pub fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    committed_total_with(bootstrap, group, topic, partitions, &[])
}

/// [`committed_total`] with extra client properties (e.g. SASL).
pub fn committed_total_with(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    properties: &[(&str, &str)],
) -> i64 {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("log_level", "3");
    for (key, value) in properties {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("creating a consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(offsets) => offsets
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum(),
        Err(_) => -1,
    }
}

/// Produces the known orders (good and malformed) with Python's confluent-kafka, creating
/// the topic unless the harness did. Returns the expectation file and the message count.
pub fn produce_orders(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    create_topic: bool,
) -> (PathBuf, i64) {
    produce_orders_with(dir, bootstrap, topic, partitions, create_topic, &[])
}

/// [`produce_orders`] with more arguments for weirtest.py (e.g. SASL credentials).
pub fn produce_orders_with(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    create_topic: bool,
    extra: &[&str],
) -> (PathBuf, i64) {
    let expected = dir.join(format!("{topic}.expected.json"));
    let partitions = partitions.to_string();
    let mut args = vec![
        "produce",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--partitions",
        &partitions,
        "--expected",
        expected.to_str().expect("a UTF-8 path"),
    ];
    if !create_topic {
        args.push("--topic-exists");
    }
    args.extend_from_slice(extra);
    weirtest(&args);
    let text = std::fs::read_to_string(&expected).expect("reading the expectation file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("expectation JSON");
    let messages = value["messages"].as_i64().expect("a message count");
    (expected, messages)
}

/// Each partition's log-end offset as the broker itself reports it.
pub fn broker_log_end(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a Kafka client");
    (0..partitions)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("the partition's offsets")
                .1
        })
        .collect()
}

/// A Tansu broker on `port` with SQLite storage in `dir`, listening when this returns.
pub fn start_tansu(dir: &Path, port: u16, authentication: bool, log: &str) -> Process {
    start_tansu_with(dir, port, &format!("127.0.0.1:{port}"), authentication, log)
}

/// [`start_tansu`], telling clients to connect to `advertised` (`host:port`) instead, e.g.
/// a TLS endpoint in front of it.
pub fn start_tansu_with(
    dir: &Path,
    port: u16,
    advertised: &str,
    authentication: bool,
    log: &str,
) -> Process {
    let listener = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://{advertised}");
    let mut command = Command::new(tool("WEIR_TEST_TANSU"));
    command
        .arg("broker")
        .args([
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &advertised,
        ])
        // Tansu resolves the SQLite path against its working directory.
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir);
    if authentication {
        command.arg("--authentication");
    }
    let mut broker = Process::start("tansu", command, dir.join(log));
    wait_for_listener(&mut broker, port);
    broker
}

/// Creates the SCRAM-SHA-512 user `user` with `password` on the Tansu broker listening on
/// `port` (while it still accepts anyone).
pub fn create_tansu_user(port: u16, user: &str, password: &str) {
    let created = Command::new(tool("WEIR_TEST_TANSU"))
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args(["--mechanism", "scram512", user, password])
        .output()
        .expect("running tansu user create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
}

/// An embedded cluster with the known orders produced into `topic` (two partitions): the
/// cluster, its bootstrap servers, the expectation file and the message count.
pub fn orders_on_embedded_cluster(
    dir: &Path,
    topic: &str,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    PathBuf,
    i64,
) {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster
        .create_topic(topic, 2, 1)
        .expect("creating the topic");
    let (expected, messages) = produce_orders(dir, &bootstrap, topic, 2, false);
    (cluster, bootstrap, expected, messages)
}
