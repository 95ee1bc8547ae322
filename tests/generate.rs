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

/// `--format avro` and `protobuf`: the schema is registered as `<topic>-value` in the
/// registry given, and every valid event is framed with its id (and, for Protobuf, the
/// message index of the file's first message).
#[test]
fn generate_avro_registers_the_schema_and_frames_every_event_with_it() {
    generates_framed_events("avro", &weir::generate::avro_schema(), &[]);
}

#[test]
fn generate_protobuf_registers_the_schema_and_frames_every_event_with_it() {
    generates_framed_events("protobuf", &weir::generate::protobuf_schema(), &[0]);
}

fn generates_framed_events(format: &str, schema: &str, message_index: &[u8]) {
    let registry = weir::embedded_registry::EmbeddedRegistry::start().unwrap();
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("clicks", 1, 1).unwrap();
    let stdout = output_ok(
        weir()
            .args([
                "generate",
                "--bootstrap-servers",
                &bootstrap,
                "--topic",
                "clicks",
            ])
            .args(["--format", format, "--schema-registry", &registry.url])
            .args([
                "--events",
                "2000",
                "--malformed-ratio",
                "0.1",
                "--seed",
                "7",
            ]),
    );
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["events"], 2000);
    // Registered by the command, over HTTP: registering it again gives its id.
    let id = registry.register("clicks-value", schema);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("generate-{format}-test"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["clicks"]).unwrap();
    let (mut framed, mut other) = (0u64, 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while framed + other < 2000 {
        assert!(
            std::time::Instant::now() < deadline,
            "{framed} + {other} messages read"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let payload = rdkafka::Message::payload(&message.unwrap())
            .unwrap()
            .to_vec();
        let mut header = id.to_be_bytes().to_vec();
        header.insert(0, 0);
        header.extend_from_slice(message_index);
        match payload.starts_with(&header) {
            true => framed += 1,
            false => other += 1,
        }
    }
    let not_framed = report["malformed"]["not_confluent_framed"]
        .as_u64()
        .unwrap()
        + report["malformed"]["unknown_schema_id"].as_u64().unwrap();
    assert_eq!(other, not_framed, "{report}");
    assert_eq!(framed + other, 2000);
}
