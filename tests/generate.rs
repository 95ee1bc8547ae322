//! `weir generate` produces exactly the events it reports into any cluster.

mod common;

use std::time::Duration;

use common::process::{output_ok, weir};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

#[test]
fn generate_reports_what_reached_the_topic() {
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("clicks", 2, 1).unwrap();
    let stdout = output_ok(
        weir()
            .args([
                "generate",
                "--bootstrap-servers",
                &bootstrap,
                "--topic",
                "clicks",
            ])
            .args([
                "--events",
                "5000",
                "--malformed-ratio",
                "0.1",
                "--seed",
                "7",
            ]),
    );
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["events"], 5000);
    let malformed: u64 = report["malformed"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(report["valid"].as_u64().unwrap() + malformed, 5000);
    assert!(
        (300..700).contains(&malformed),
        "about 10% malformed, got {malformed}"
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let total: i64 = (0..2)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks("clicks", p, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum();
    assert_eq!(total, 5000);
}
