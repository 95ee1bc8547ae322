//! End to end against an external Kafka-compatible broker (Tansu, SQLite storage), with
//! events produced by an independent client (Python confluent-kafka) and read back by an
//! independent reader (DuckDB): exact rows, partition paths and dead letters.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::{Committed, lag_column, run_until_committed, weir_lag};
use common::datasets::{Writers, check_exactly_once, committed_in_logs, verify_orders};
use common::fixtures::{QUICKSTART_DATASETS, orders_env, quickstart_config};
use common::kafka::{broker_log_end, produce_orders, start_tansu};
use common::net::{free_port, wait_until};
use common::process::{Process, weir, weirtest};
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

/// `_SUCCESS` on a time partition promises every row of it. Started on a backlog of several
/// hours in four partitions of a real broker, weir reads one partition's messages before the
/// next's: a checkpoint holding only some partitions must mark no hour the others still have
/// rows for, with one instance or two side by side. Checked from the files alone: no data file
/// of a marked hour appeared after its marker, and every hour the final watermark passed is
/// marked.
#[test]
fn a_backlog_in_several_partitions_marks_no_hour_complete_before_all_its_rows_are_in() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start_tansu(dir.path(), port, false, "tansu.log");
    let bootstrap = format!("127.0.0.1:{port}");
    let topic = "clickstream";
    weirtest(&[
        "create-topic",
        "--bootstrap",
        &bootstrap,
        "--topic",
        topic,
        "--partitions",
        "4",
    ]);
    let events = 40_000;
    let generated = dir.path().join("generated.json");
    let produced = weir()
        .args([
            "generate",
            "--bootstrap-servers",
            &bootstrap,
            "--topic",
            topic,
        ])
        .args(["--events", &events.to_string(), "--event-time-span", "4h"])
        .args(["--malformed-ratio", "0.03", "--seed", "7"])
        .stdout(std::fs::File::create(&generated).unwrap())
        .status()
        .unwrap();
    assert!(produced.success(), "weir generate failed");
    assert_eq!(
        broker_log_end(&bootstrap, topic, 4).iter().sum::<i64>(),
        events
    );

    // Small batches and a short interval: many checkpoints, most with a part of the topic.
    let config = quickstart_config(dir.path(), "max_batch_messages = 500", &[], "100ms");
    for instances in [1, 2] {
        let out = dir.path().join(format!("out-{instances}"));
        let out_text = out.display().to_string();
        let group = format!("backlog-{instances}");
        let env = [
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("WEIR_OUT", out_text.as_str()),
            ("GROUP", group.as_str()),
        ];
        let mut running: Vec<Process> = (0..instances)
            .map(|n| {
                let mut command = weir();
                command.args(["run", "--config"]).arg(&config).envs(env);
                let log = dir.path().join(format!("weir-{instances}-{n}.log"));
                Process::start("weir", command, log)
            })
            .collect();
        wait_until(
            "every dataset to commit every offset",
            Duration::from_secs(180),
            || {
                running.iter_mut().for_each(Process::assert_running);
                committed_in_logs(&out, &QUICKSTART_DATASETS)
                    .iter()
                    .all(|&c| c == events)
            },
        );
        for process in &mut running {
            let status = process.terminate(Duration::from_secs(30));
            assert!(status.success(), "{}", process.log_text());
            let log = process.log_text();
            assert!(
                !log.contains("already marked complete"),
                "{instances} instance(s): rows came after their hour was marked:\n{log}"
            );
        }
        broker.assert_running();
        let marked = check_markers(&out.join("clicks"));
        assert!(
            marked >= 2,
            "{instances} instance(s): {marked} hours marked"
        );
        check_markers(&out.join("page_views_per_minute"));
        let writers = match instances {
            1 => Writers::OneAtATime,
            _ => Writers::SideBySide,
        };
        check_exactly_once(&config, &env, &out_text, &generated, writers);
    }
}

/// Checks the `dt=…/hour=…` directories of an hourly dataset against its markers: a marked
/// hour has no data file that appeared (was moved to its name) after the marker, and an hour
/// is marked exactly when the dataset's committed watermark (the lowest over the partitions
/// in its log) has passed its end; the published one never claims more. Returns how many
/// hours are marked.
fn check_markers(dataset: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let appeared = |path: &Path| {
        let meta = std::fs::metadata(path).unwrap();
        (meta.ctime(), meta.ctime_nsec())
    };
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dataset.join("_weir/watermark.json")).unwrap())
            .unwrap();
    let watermark = committed_watermark(dataset);
    assert!(
        record["watermark_ms"].as_i64().expect("a watermark") <= watermark,
        "{record} claims more than the log's {watermark}"
    );
    let mut marked = 0;
    for day in std::fs::read_dir(dataset)
        .unwrap()
        .map(|e| e.unwrap().path())
    {
        let Some(date) = day
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_prefix("dt=")
        else {
            continue;
        };
        for hour in std::fs::read_dir(&day).unwrap().map(|e| e.unwrap().path()) {
            let name = hour.file_name().unwrap().to_str().unwrap().to_owned();
            let h: i64 = name.strip_prefix("hour=").unwrap().parse().unwrap();
            let start = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis();
            let end = start + (h + 1) * 3_600_000;
            let marker = hour.join("_SUCCESS");
            assert_eq!(
                marker.exists(),
                end <= watermark,
                "{}: marked complete, or not, against the committed watermark {watermark}",
                hour.display()
            );
            if !marker.exists() {
                continue;
            }
            marked += 1;
            let marked_at = appeared(&marker);
            for file in std::fs::read_dir(&hour).unwrap().map(|e| e.unwrap().path()) {
                if file.extension().is_some_and(|e| e == "parquet") {
                    assert!(
                        appeared(&file) <= marked_at,
                        "{} appeared after {}",
                        file.display(),
                        marker.display()
                    );
                }
            }
        }
    }
    marked
}

/// The committed watermark of the dataset at `path`, from its commit log.
fn committed_watermark(path: &Path) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, root) = weir_sink::open_store(path.to_str().unwrap(), &Default::default()).unwrap();
    let state = runtime
        .block_on(weir_sink::CommitLog::read_state("test", store, root))
        .unwrap();
    state.watermark_ms().expect("a committed watermark")
}
