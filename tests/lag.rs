//! `weir lag` while the service is down: log-end offsets exactly as the broker reports them,
//! each dataset's position and watermark from its commit log, and thresholds that set the
//! exit code.

mod common;

use std::time::Duration;

use common::cli::{generate, lag_column, weir_lag};
use common::datasets::committed_in_logs;
use common::fixtures::{QUICKSTART_DATASETS, quickstart_config};
use common::kafka::broker_log_end;
use common::net::wait_until;
use common::process::{Process, weir};
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

    let lag = |args: &[&str]| weir_lag(&config, env, args);
    let output = lag(&["--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // The broker's own answer, asked independently.
    let log_end = broker_log_end(&bootstrap, TOPIC, PARTITIONS);
    assert_eq!(log_end.iter().sum::<i64>(), (consumed + waiting) as i64);
    let datasets = report["datasets"].as_array().unwrap();
    let ends = lag_column(&report, "log_end_offset");
    let committed = lag_column(&report, "committed_offset");
    let groups = lag_column(&report, "group_offset");
    let names: Vec<&str> = ends.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.len(), QUICKSTART_DATASETS.len());
    let in_logs = committed_in_logs(&out, &names);
    for (i, dataset) in datasets.iter().enumerate() {
        assert_eq!(ends[i].1, log_end, "{dataset}");
        assert_eq!(committed[i].1.iter().sum::<i64>(), in_logs[i]);
        assert_eq!(in_logs[i], consumed as i64);
        assert_eq!(dataset["offset_lag"], waiting, "{dataset}");
        assert_eq!(
            groups[i].1, committed[i].1,
            "the group's offsets follow the logs"
        );
        let watermark_lag = dataset["watermark_lag_seconds"].as_f64().unwrap();
        assert!(watermark_lag >= 0.0, "{dataset}");
        assert!(
            dataset["partitions"]
                .as_array()
                .unwrap()
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
