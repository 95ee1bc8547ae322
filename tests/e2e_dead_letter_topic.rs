//! Dead letters to a Kafka topic: each rejected message arrives with its raw key and value
//! and its reason and origin in headers.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cli::{Committed, run_until_committed};
use common::fixtures::{orders_config_with, orders_env};
use common::kafka::produce_orders;
use common::process::weir;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;

#[test]
fn rejected_messages_reach_the_dead_letter_topic_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(3).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topic = "orders-dlq-test";
    cluster.create_topic(topic, 2, 3).unwrap();
    cluster.create_topic("orders-dead", 1, 3).unwrap();
    let (expected, messages) = produce_orders(dir.path(), &bootstrap, topic, 2, false);

    // The test pipeline, with dead letters sent to a topic instead of a dataset.
    let config = orders_config_with(
        dir.path(),
        "url = \"${OUT}/dead_letters\"",
        "topic = \"orders-dead\"",
    );

    let out = dir.path().join("out");
    let mut cmd = weir();
    cmd.args(["run", "--config"]).arg(&config).envs(orders_env(
        &bootstrap,
        topic,
        &out,
        out.join("orders").to_str().unwrap(),
    ));
    run_until_committed(
        cmd,
        dir.path().join("weir.log"),
        Committed {
            bootstrap: &bootstrap,
            topic,
            partitions: 2,
            messages,
            properties: &[],
        },
    );

    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    let want: BTreeMap<(i64, i64), (String, Option<String>)> = want["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                (
                    d["partition"].as_i64().unwrap(),
                    d["offset"].as_i64().unwrap(),
                ),
                (
                    d["reason"].as_str().unwrap().to_owned(),
                    d["payload"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["orders-dead"]).unwrap();
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want.len() {
        assert!(
            Instant::now() < deadline,
            "read {} of {} dead letters",
            got.len(),
            want.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let headers: BTreeMap<String, String> = message
            .headers()
            .expect("dead letters carry headers")
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(headers["weir.topic"], topic);
        assert!(!headers["weir.detail"].is_empty());
        let origin = (
            headers["weir.partition"].parse().unwrap(),
            headers["weir.offset"].parse().unwrap(),
        );
        let payload = message
            .payload()
            .map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>());
        got.insert(origin, (headers["weir.reason"].clone(), payload));
    }
    // An empty value and a tombstone both arrive as a message without a value.
    let normalise = |m: BTreeMap<(i64, i64), (String, Option<String>)>| -> BTreeMap<_, _> {
        m.into_iter()
            .map(|(k, (r, p))| (k, (r, p.filter(|p| !p.is_empty()))))
            .collect()
    };
    assert_eq!(normalise(got), normalise(want));
}
