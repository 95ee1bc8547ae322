//! End to end against an external Kafka-compatible broker (Tansu, SQLite storage), with
//! events produced by an independent client (Python confluent-kafka) and read back by an
//! independent reader (DuckDB): exact rows, partition paths and dead letters.

mod common;

use common::cli::{Committed, lag_column, run_until_committed, weir_lag};
use common::datasets::verify_orders;
use common::fixtures::orders_env;
use common::kafka::{broker_log_end, produce_orders, start_tansu};
use common::net::free_port;
use common::process::weir;
use common::repo;

#[test]
fn tansu_events_land_exactly_once_in_parquet_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start_tansu(dir.path(), port, false, "tansu.log");
    let bootstrap = format!("127.0.0.1:{port}");

    let topic = "orders";
    let (expected, messages) = produce_orders(dir.path(), &bootstrap, topic, 3, true);

    let out = dir.path().join("out");
    let orders = out.join("orders");
    let mut cmd = weir();
    cmd.args(["--log-format", "json", "run", "--config"])
        .arg(repo().join("tests/fixtures/orders/pipeline.toml"))
        .envs(orders_env(
            &bootstrap,
            topic,
            &out,
            orders.to_str().unwrap(),
        ))
        // Any buffered row exceeds this: every batch forces a checkpoint of its own.
        .env("MAX_BUFFERED", "1B");
    let log = run_until_committed(
        cmd,
        dir.path().join("weir.log"),
        Committed {
            bootstrap: &bootstrap,
            topic,
            partitions: 3,
            messages,
            properties: &[],
        },
    );
    broker.assert_running();

    // The JSON log's last word: every batch (of at most 16 messages) was checkpointed.
    let stopped: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "committed everything consumed; exiting")
        .unwrap_or_else(|| panic!("no final log line:\n{log}"));
    let checkpoints = stopped["fields"]["checkpoints"].as_u64().unwrap();
    assert!(checkpoints >= messages as u64 / 16, "{stopped}");
    assert_eq!(
        stopped["fields"]["events"].as_i64(),
        Some(messages),
        "{stopped}"
    );

    let report = verify_orders(&expected, &orders, &out);
    eprintln!("{report}");

    // `weir lag` reads Tansu's log-end offsets exactly as the broker reports them, and finds
    // every dataset caught up with them.
    let env = orders_env(&bootstrap, topic, &out, orders.to_str().unwrap());
    let config = repo().join("tests/fixtures/orders/pipeline.toml");
    let output = weir_lag(&config, &env, &["--json", "--max-offset-lag", "0"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lag: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let log_end = broker_log_end(&bootstrap, topic, 3);
    assert_eq!(log_end.iter().sum::<i64>(), messages);
    for ((dataset, ends), (_, committed)) in lag_column(&lag, "log_end_offset")
        .into_iter()
        .zip(lag_column(&lag, "committed_offset"))
    {
        assert_eq!(ends, log_end, "{dataset}");
        assert_eq!(committed, log_end, "{dataset}");
    }
}
