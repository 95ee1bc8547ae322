//! `weir lag` while the service is down: log-end offsets exactly as the broker reports them,
//! each dataset's position and watermark from its commit log, and thresholds that set the
//! exit code.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

const TOPIC: &str = "clickstream";
const PARTITIONS: i32 = 3;

fn produce(bootstrap: &str, events: u64, seed: u64, dir: &std::path::Path) {
    let generated = dir.join(format!("generated-{seed}.json"));
    let status = generate(bootstrap, TOPIC, events, 50_000, seed, &generated)
        .wait()
        .unwrap();
    assert!(status.success());
}

#[test]
fn lag_reads_the_broker_and_the_commit_logs_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let config = quickstart_config(dir.path(), "", &[], "300ms");
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("WEIR_OUT", out_text.as_str()),
        ("GROUP", "lag"),
    ];

    let consumed = 3_000;
    produce(&bootstrap, consumed, 1, dir.path());
    let mut command = weir();
    command.args(["run", "--config"]).arg(&config).envs(env);
    let mut service = Process::start("weir", command, dir.path().join("weir.log"));
    wait_until("every dataset to commit", Duration::from_secs(120), || {
        service.assert_running();
        committed_in_logs(&out, &QUICKSTART_DATASETS)
            .iter()
            .all(|&c| c == consumed as i64)
    });
    assert!(service.terminate(Duration::from_secs(30)).success());
    // More events arrive while the service is down.
    let waiting = 700;
    produce(&bootstrap, waiting, 2, dir.path());

    let lag = |args: &[&str]| {
        let mut command = weir();
        command
            .args(["lag", "--config"])
            .arg(&config)
            .args(args)
            .envs(env);
        command.output().unwrap()
    };
    let output = lag(&["--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // The broker's own answer, asked independently.
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let log_end: Vec<i64> = (0..PARTITIONS)
        .map(|p| {
            client
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    assert_eq!(log_end.iter().sum::<i64>(), (consumed + waiting) as i64);
    let datasets = report["datasets"].as_array().unwrap();
    let names: Vec<&str> = datasets
        .iter()
        .map(|d| d["dataset"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), QUICKSTART_DATASETS.len());
    let in_logs = committed_in_logs(&out, &names);
    for (dataset, committed) in datasets.iter().zip(in_logs) {
        let partitions = dataset["partitions"].as_array().unwrap();
        let column = |key: &str| -> Vec<i64> {
            partitions
                .iter()
                .map(|p| p[key].as_i64().unwrap())
                .collect()
        };
        assert_eq!(column("log_end_offset"), log_end, "{dataset}");
        assert_eq!(column("committed_offset").iter().sum::<i64>(), committed);
        assert_eq!(committed, consumed as i64);
        assert_eq!(dataset["offset_lag"], waiting, "{dataset}");
        assert_eq!(column("group_offset"), column("committed_offset"));
        let watermark_lag = dataset["watermark_lag_seconds"].as_f64().unwrap();
        assert!(watermark_lag >= 0.0, "{dataset}");
        assert!(
            partitions
                .iter()
                .all(|p| p["commit_age_seconds"].as_f64().unwrap() >= 0.0)
        );
    }

    // Past a threshold it says where and exits non-zero; at it, it passes.
    let worst = datasets[0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset_lag"].as_i64().unwrap())
        .max()
        .unwrap();
    let past = lag(&["--max-offset-lag", &(worst - 1).to_string()]);
    assert!(!past.status.success());
    let text = String::from_utf8_lossy(&past.stdout);
    assert!(
        text.contains(&format!("offset lag {worst} > {}", worst - 1)),
        "{text}"
    );
    assert!(
        lag(&["--max-offset-lag", &worst.to_string()])
            .status
            .success()
    );
}
