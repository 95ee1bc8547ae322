//! `weir sql run` is the service on a sample: for the same events it writes the same rows,
//! partition paths and dead letters as `weir run` against a Kafka broker.

mod common;

use std::time::Duration;

use common::datasets::committed_in_logs;
use common::fixtures::{QUICKSTART_DATASETS, quickstart_config};
use common::net::wait_until;
use common::process::{Process, output_ok, weir, weirtest};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "clickstream";

/// Click events, one a second, up to 20 s out of order (within the example's 30 s
/// out-of-orderness, so no event is late whichever moments checkpoints happen at), with bad
/// lines of several kinds among them.
fn sample(events: u64) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start_ms: i64 = 1_795_600_800_000;
    let pages = ["/home", "/search", "/product/1", "/product/2", "/cart"];
    let mut lines = Vec::new();
    for i in 0..events {
        let r = next();
        let line = match r % 40 {
            0 => "{\"event_id\": \"broken".to_owned(),
            1 => format!(
                "{{\"event_id\":\"e{i}\",\"user_id\":\"not a number\",\"ts\":{start_ms},\"page\":\"/home\"}}"
            ),
            2 => format!("{{\"event_id\":\"e{i}\",\"ts\":{start_ms},\"page\":\"/home\"}}"),
            _ => {
                let ts = start_ms + i as i64 * 1000 - (r >> 8) as i64 % 20_000;
                let duration = if r % 40 == 3 {
                    -5.0
                } else {
                    ((r >> 16) % 5000) as f64 / 10.0
                };
                format!(
                    "{{\"event_id\":\"e{i}\",\"user_id\":{},\"session_id\":\"s{}\",\"ts\":{ts},\
                     \"page\":\"{}\",\"referrer\":null,\"device\":{{\"os\":\"linux\",\
                     \"browser\":\"firefox\",\"mobile\":{}}},\"tags\":[\"t{}\"],\
                     \"duration_ms\":{duration},\"country\":\"{}\"}}",
                    (r >> 20) % 50,
                    (r >> 24) % 80,
                    pages[((r >> 28) % 5) as usize],
                    (r >> 32) % 2 == 0,
                    (r >> 36) % 3,
                    ["FR", "DE", "US"][((r >> 40) % 3) as usize],
                )
            }
        };
        lines.push(line);
    }
    lines.join("\n") + "\n"
}

#[test]
fn a_sample_run_writes_what_the_service_writes_for_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let events = 1_500;
    let text = sample(events);
    let sample_path = dir.path().join("sample.jsonl");
    std::fs::write(&sample_path, &text).unwrap();

    // The service, on a one-partition topic holding the sample's lines in order.
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for line in text.lines() {
        producer
            .send(BaseRecord::<(), str>::to(TOPIC).payload(line).partition(0))
            .expect("queued");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let config = quickstart_config(dir.path(), "", &[], "300ms");
    let out = dir.path().join("service");
    let out_text = out.display().to_string();
    let mut command = weir();
    command.args(["run", "--config"]).arg(&config).envs([
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("WEIR_OUT", out_text.as_str()),
        ("GROUP", "sample"),
    ]);
    let mut service = Process::start("weir", command, dir.path().join("weir.log"));
    wait_until("every dataset to commit", Duration::from_secs(120), || {
        service.assert_running();
        committed_in_logs(&out, &QUICKSTART_DATASETS)
            .iter()
            .all(|&c| c == events as i64)
    });
    assert!(service.terminate(Duration::from_secs(60)).success());

    // The same lines through `weir sql run`, in checkpoints of another size.
    let sample_out = dir.path().join("sample-out");
    let said = output_ok(
        weir()
            .args([
                "sql", "run", "--format", "parquet", "--batch", "37", "--config",
            ])
            .arg(&config)
            .arg("--input")
            .arg(&sample_path)
            .arg("--out")
            .arg(&sample_out)
            .envs([
                ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9"),
                ("GROUP", "sample"),
            ]),
    );
    assert!(said.is_empty(), "{}", String::from_utf8_lossy(&said));
    let service_text = out.display().to_string();
    let sample_text = sample_out.display().to_string();
    let mut args = vec![
        "same-as-sample",
        "--service",
        &service_text,
        "--sample",
        &sample_text,
    ];
    for dataset in ["clicks", "product_views", "page_views_per_minute"] {
        args.extend(["--dataset", dataset]);
    }
    weirtest(&args);
}
