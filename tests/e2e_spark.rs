//! Spark (pyspark, local) reads weir's datasets as DuckDB does: a plain dataset with Hive
//! partitions, and the Parquet files of Delta tables, with the same rows, the same partition
//! values and weir's timestamps as Spark TIMESTAMPs (tests/py/sparktest.py).

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::generate;
use common::datasets::committed_in_logs;
use common::fixtures::{QUICKSTART_DATASETS, as_delta, quickstart_config};
use common::net::wait_until;
use common::process::{Process, output_ok, weir};
use common::{repo, tool};
use rdkafka::mocking::MockCluster;

/// The output datasets of the quickstart pipeline under `out`, compared by Spark and DuckDB.
/// The clicks and product views must have rows (the windowed dataset has none when all its
/// windows are still open), and Spark must read the event time as a TIMESTAMP.
fn compared_by_spark(out: &Path) {
    let mut command = std::process::Command::new(tool("WEIR_TEST_PYTHON"));
    command
        .arg(repo().join("tests/py/sparktest.py"))
        .arg("compare");
    for dataset in &QUICKSTART_DATASETS[..3] {
        command.arg("--dataset").arg(out.join(dataset));
    }
    let report = String::from_utf8(output_ok(&mut command)).unwrap();
    let compared: Vec<serde_json::Value> = report
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(compared.len(), 3, "{report}");
    for dataset in &compared[..2] {
        assert!(dataset["rows"].as_u64().unwrap() > 0, "{report}");
    }
    assert_eq!(compared[0]["spark_types"]["ts"], "timestamp", "{report}");
}

#[test]
fn spark_reads_a_hive_partitioned_dataset_as_duckdb_does() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    output_ok(
        weir()
            .args(["quickstart", "--events", "5000", "--out"])
            .arg(&out),
    );
    compared_by_spark(&out);
}

#[test]
fn spark_reads_the_files_of_delta_tables_as_duckdb_does() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("clickstream", 2, 1).unwrap();
    let config = quickstart_config(dir.path(), "", &[], "1s");
    as_delta(&config);
    let out = dir.path().join("out");
    let events = 3_000;
    let generated = dir.path().join("generated.json");
    let mut generator = generate(&bootstrap, "clickstream", events, 3_000, 5, &generated);
    let mut command = weir();
    command
        .args(["run", "--config"])
        .arg(&config)
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("WEIR_OUT", &out)
        .env("GROUP", "spark");
    let mut running = Process::start("weir", command, dir.path().join("weir.log"));
    assert!(generator.wait().unwrap().success(), "weir generate failed");
    wait_until(
        "every event to be committed",
        Duration::from_secs(120),
        || {
            running.assert_running();
            committed_in_logs(&out, &QUICKSTART_DATASETS)
                .iter()
                .all(|&c| c == events as i64)
        },
    );
    assert!(running.terminate(Duration::from_secs(30)).success());
    assert!(out.join("clicks/_delta_log").is_dir());
    compared_by_spark(&out);
}
