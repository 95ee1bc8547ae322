//! Writing through `s3://` to a real S3 API server (moto) on loopback, consuming from the
//! embedded Kafka cluster; credentials come from the environment.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::cli::{Committed, run_until_committed};
use common::fixtures::{orders_config_edited, orders_config_with, orders_env};
use common::kafka::{committed_total, orders_on_embedded_cluster, produce_orders};
use common::net::{free_port, wait_for_listener};
use common::process::{Process, output_ok, weir, weirtest};
use common::s3::{start_moto, start_moto_with_bucket};
use common::{repo, tool};
use rdkafka::mocking::MockCluster;

#[test]
fn dataset_on_s3_holds_every_row_and_only_finished_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto_with_bucket(dir.path());
    let topic = "orders-s3";
    let (_cluster, bootstrap, expected, messages) = orders_on_embedded_cluster(dir.path(), topic);

    let url = "s3://weir-test/datasets/orders";
    let cmd = weir_on_s3("run", dir.path(), &bootstrap, topic, url, &endpoint);
    let log = orders_until_committed(cmd, dir.path(), &bootstrap, topic, messages);
    assert!(
        !log.contains("weir-test-secret"),
        "the secret key leaked into the log"
    );

    check_orders_on_s3(dir.path(), &expected, &bootstrap, topic, &endpoint);
}

/// A Delta table on S3: weir's Delta commits are created with conditional puts like its own
/// log's, and Python's deltalake reads every row from the S3 server.
#[test]
fn a_delta_table_on_s3_holds_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto_with_bucket(dir.path());
    let topic = "orders-delta";
    let (_cluster, bootstrap, expected, messages) = orders_on_embedded_cluster(dir.path(), topic);
    let config = orders_config_with(
        dir.path(),
        "url = \"${ORDERS_URL}\"",
        "url = \"${ORDERS_URL}\"\nformat = \"delta\"",
    );
    let url = "s3://weir-test/datasets/orders";
    let cmd = weir_on_s3_with(
        &config,
        "run",
        dir.path(),
        &bootstrap,
        topic,
        url,
        &endpoint,
    );
    orders_until_committed(cmd, dir.path(), &bootstrap, topic, messages);
    check_orders_on_s3(dir.path(), &expected, &bootstrap, topic, &endpoint);
    weirtest(&[
        "verify-delta",
        "--expected",
        expected.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--bucket",
        "weir-test",
        "--prefix",
        "datasets/orders",
    ]);
    let report = output_ok(&mut weir_on_s3_with(
        &config,
        "verify",
        dir.path(),
        &bootstrap,
        topic,
        url,
        &endpoint,
    ));
    let report = String::from_utf8(report).unwrap();
    assert!(
        report.contains("Delta table at version")
            && report.contains("0 committed files not published"),
        "{report}"
    );
}

/// Between weir and the S3 server, a proxy fails or delays a quarter of the requests: errors
/// before the request reaches the server, errors after it took effect (the answer lost, so a
/// retried conditional put of the commit log finds its own entry) and slow answers. Retried
/// with backoff, every row still lands exactly once.
#[test]
fn transient_storage_faults_lose_nothing_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto_with_bucket(dir.path());
    let (proxy, faulty) = fault_proxy(dir.path(), &endpoint, &["--seed", "7", "--rate", "0.25"]);

    let topic = "orders-faults";
    let (_cluster, bootstrap, expected, messages) = orders_on_embedded_cluster(dir.path(), topic);
    let url = "s3://weir-test/datasets/orders";
    let cmd = weir_on_s3("run", dir.path(), &bootstrap, topic, url, &faulty);
    orders_until_committed(cmd, dir.path(), &bootstrap, topic, messages);
    let injected = proxy.log_text().matches("injected").count();
    eprintln!("the proxy injected {injected} faults");
    assert!(
        injected >= 5,
        "too few faults to prove anything:\n{}",
        proxy.log_text()
    );

    check_orders_on_s3(dir.path(), &expected, &bootstrap, topic, &endpoint);
}

#[test]
fn a_persistent_storage_error_stops_weir_with_the_error_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto(dir.path());
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topic = "orders-no-bucket";
    cluster
        .create_topic(topic, 1, 1)
        .expect("creating the topic");
    produce_orders(dir.path(), &bootstrap, topic, 1, false);

    let url = "s3://no-such-bucket/orders";
    let cmd = weir_on_s3("run", dir.path(), &bootstrap, topic, url, &endpoint);
    let mut weir = Process::start("weir", cmd, dir.path().join("weir.log"));
    let status = weir.wait_for_exit("its start", Duration::from_secs(120));
    let log = weir.log_text();
    assert!(!status.success(), "weir must fail:\n{log}");
    assert!(
        log.contains("dataset `orders`") && log.contains("no-such-bucket"),
        "{log}"
    );
    assert!(
        !log.contains("weir-test-secret"),
        "the secret key leaked into the log"
    );
    let committed = committed_total(&bootstrap, &format!("weir-test-{topic}"), topic, 1);
    assert!(
        committed <= 0,
        "offsets of unwritten rows were committed: {committed}"
    );
}

// Deterministic crash points of the commit protocol on S3: the fault proxy kills weir (SIGKILL)
// at one request of its first commit after the claim, before the request reaches the server or
// after the server acted on it. A restart, straight to the server, must recover: every row
// exactly once and a passing `weir verify`.

/// Files staged, their entry not yet appended (the claim is the first entry). The pipeline's
/// other datasets, on local disk, have committed the checkpoint already: the restart must
/// not start this dataset, which has no commit yet, where they are.
#[test]
fn a_crash_after_staging_before_the_entry_recovers_exactly() {
    crash_and_recover(
        "staged",
        r"^PUT /weir-test/datasets/orders/_weir/log/",
        2,
        "before",
    );
}

/// The entry appended, none of its files moved to their final names yet.
#[test]
fn a_crash_after_the_entry_before_any_copy_recovers_exactly() {
    crash_and_recover(
        "entry",
        r"^PUT /weir-test/datasets/orders/_weir/log/",
        2,
        "after",
    );
}

/// One committed file copied to its final name, the others (copied concurrently) maybe not.
#[test]
fn a_crash_in_the_middle_of_the_copies_recovers_exactly() {
    crash_and_recover("copy", r"^COPY /weir-test/datasets/orders/", 1, "after");
}

/// A file copied to its final name, its staged copy not yet deleted.
#[test]
fn a_crash_after_a_copy_before_its_delete_recovers_exactly() {
    let staged = r"^DELETE /weir-test/datasets/orders/_weir/staging/";
    crash_and_recover("delete", staged, 1, "before");
}

/// The entry a snapshot is due after appended and published, the snapshot not written.
#[test]
fn a_crash_before_a_snapshot_recovers_exactly() {
    let snapshot = r"^PUT /weir-test/datasets/orders/_weir/snapshots/";
    crash_and_recover("snapshot", snapshot, 1, "before");
}

/// The snapshot written, the entries and offsets after it not yet.
#[test]
fn a_crash_right_after_a_snapshot_recovers_exactly() {
    let snapshot = r"^PUT /weir-test/datasets/orders/_weir/snapshots/";
    crash_and_recover("snapshotted", snapshot, 1, "after");
}

/// Runs the orders pipeline through a proxy that kills weir at the `nth` request matching
/// `request` (`METHOD /bucket/key`, a copy as `COPY`), `when` "before" or "after" the server
/// acts on it; then runs it again until every offset is committed and checks the dataset.
fn crash_and_recover(name: &str, request: &str, nth: u32, when: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto_with_bucket(dir.path());
    let pid_file = dir.path().join("weir.pid");
    let crash = [
        "--rate",
        "0",
        "--crash",
        request,
        "--crash-nth",
        &nth.to_string(),
        "--crash-when",
        when,
        "--pid-file",
        pid_file.to_str().unwrap(),
    ];
    let (proxy, crashing) = fault_proxy(dir.path(), &endpoint, &crash);
    let topic = format!("orders-crash-{name}");
    let (_cluster, bootstrap, expected, messages) = orders_on_embedded_cluster(dir.path(), &topic);
    // A snapshot after every entry but the first (the claim, entry 0): the first commit of
    // data is followed by one, however few commits reading the data takes. The killed
    // member's session ends soon, so that the restart gets the partitions without a long wait.
    let config = orders_config_edited(
        dir.path(),
        &[
            (
                "commit_interval = \"500ms\"",
                "commit_interval = \"100ms\"\nsnapshot_every = 1",
            ),
            (
                "max_batch_wait = \"50ms\"\n",
                "max_batch_wait = \"50ms\"\n\n[source.properties]\n\
                 \"session.timeout.ms\" = \"6000\"\n\
                 \"heartbeat.interval.ms\" = \"1000\"\n",
            ),
        ],
    );
    let url = "s3://weir-test/datasets/orders";

    let cmd = weir_on_s3_with(
        &config,
        "run",
        dir.path(),
        &bootstrap,
        &topic,
        url,
        &crashing,
    );
    let mut crashed = Process::start("weir", cmd, dir.path().join("crashed.log"));
    // Written whole, then renamed: the proxy never reads half a pid.
    let partial = dir.path().join("weir.pid.partial");
    std::fs::write(&partial, crashed.child.id().to_string()).unwrap();
    std::fs::rename(&partial, &pid_file).unwrap();
    let status = crashed.wait_for_exit("its crash point", Duration::from_secs(120));
    assert_eq!(
        status.signal(),
        Some(9),
        "weir was to be killed at {request} ({status}):\n{}\nproxy:\n{}",
        crashed.log_text(),
        proxy.log_text()
    );
    assert!(proxy.log_text().contains("crashed"), "{}", proxy.log_text());

    let cmd = weir_on_s3_with(
        &config,
        "run",
        dir.path(),
        &bootstrap,
        &topic,
        url,
        &endpoint,
    );
    run_until_committed(
        cmd,
        dir.path().join("weir.log"),
        Committed {
            bootstrap: &bootstrap,
            topic: &topic,
            partitions: 2,
            messages,
            properties: &[],
        },
    );
    let crashed = ["--crashed"];
    check_orders_on_s3_after(
        dir.path(),
        &expected,
        &bootstrap,
        &topic,
        &endpoint,
        &crashed,
    );
}

/// The orders dataset on the S3 server at `endpoint` holds exactly the expected rows (read by
/// pyarrow), and `weir verify` finds the pipeline's three datasets sound.
/// Runs `cmd` (weir on the orders fixture) until all `messages` of `topic` are committed;
/// returns its log.
fn orders_until_committed(
    cmd: std::process::Command,
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    messages: i64,
) -> String {
    run_until_committed(
        cmd,
        dir.join("weir.log"),
        Committed {
            bootstrap,
            topic,
            partitions: 2,
            messages,
            properties: &[],
        },
    )
}

fn check_orders_on_s3(dir: &Path, expected: &Path, bootstrap: &str, topic: &str, endpoint: &str) {
    check_orders_on_s3_after(dir, expected, bootstrap, topic, endpoint, &[]);
}

/// [`check_orders_on_s3`] with more arguments for `weirtest.py verify-store`.
fn check_orders_on_s3_after(
    dir: &Path,
    expected: &Path,
    bootstrap: &str,
    topic: &str,
    endpoint: &str,
    extra: &[&str],
) {
    let mut args = vec![
        "verify-store",
        "--expected",
        expected.to_str().unwrap(),
        "--endpoint",
        endpoint,
        "--bucket",
        "weir-test",
        "--prefix",
        "datasets/orders",
    ];
    args.extend_from_slice(extra);
    weirtest(&args);
    let url = "s3://weir-test/datasets/orders";
    let report = output_ok(&mut weir_on_s3(
        "verify", dir, bootstrap, topic, url, endpoint,
    ));
    let report = String::from_utf8(report).unwrap();
    assert_eq!(report.matches(": OK").count(), 3, "{report}");
}

/// `weir <command>` (run or verify) of the orders pipeline writing its main dataset to `url`
/// on the S3 server at `endpoint`, with the credentials in the environment as a deployment
/// would have them.
/// A store slow enough that a checkpoint outlasts `max.poll.interval.ms` (a proxy delays
/// every request by 0.4 s, and a checkpoint makes several) does not cost the instance its
/// place in the group: while the pipeline is full, the consumer pauses its partitions and
/// polls on. The partitions are assigned once and never lost, and every row lands once.
#[test]
fn a_checkpoint_slower_than_the_poll_interval_keeps_the_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto_with_bucket(dir.path());
    let delays = ["--rate", "1", "--kinds", "delay", "--delay", "1"];
    let (_proxy, slow) = fault_proxy(dir.path(), &endpoint, &delays);
    let topic = "orders-slow";
    let (_cluster, bootstrap, expected, messages) = orders_on_embedded_cluster(dir.path(), topic);
    let config = orders_config_with(
        dir.path(),
        "max_batch_messages = 16\nmax_batch_wait = \"50ms\"\n",
        "max_batch_messages = 4\nmax_batch_wait = \"50ms\"\n\n[source.properties]\n\
         \"max.poll.interval.ms\" = \"6000\"\n\
         \"session.timeout.ms\" = \"6000\"\n\
         \"heartbeat.interval.ms\" = \"1000\"\n",
    );
    let url = "s3://weir-test/datasets/orders";
    // Small batches: a few fill the pipeline while a checkpoint waits on the slow store.
    let cmd = weir_on_s3_with(&config, "run", dir.path(), &bootstrap, topic, url, &slow);
    let log = orders_until_committed(cmd, dir.path(), &bootstrap, topic, messages);
    assert!(!log.contains("maximum poll interval"), "{log}");
    assert!(!log.contains("partitions lost"), "{log}");
    assert_eq!(log.matches("partitions assigned").count(), 1, "{log}");
    check_orders_on_s3(dir.path(), &expected, &bootstrap, topic, &endpoint);
}

/// weirtest.py's fault proxy in front of the S3 server at `endpoint`, with `faults` (its
/// arguments); the proxy's process and its URL.
fn fault_proxy(dir: &Path, endpoint: &str, faults: &[&str]) -> (Process, String) {
    let port = free_port();
    let mut command = std::process::Command::new(tool("WEIR_TEST_PYTHON"));
    command
        .arg(repo().join("tests/py/weirtest.py"))
        .args([
            "fault-proxy",
            "--port",
            &port.to_string(),
            "--target",
            endpoint,
        ])
        .args(faults);
    let mut proxy = Process::start("fault proxy", command, dir.join("proxy.log"));
    wait_for_listener(&mut proxy, port);
    (proxy, format!("http://127.0.0.1:{port}"))
}

fn weir_on_s3(
    command: &str,
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    url: &str,
    endpoint: &str,
) -> std::process::Command {
    let fixture = repo().join("tests/fixtures/orders/pipeline.toml");
    weir_on_s3_with(&fixture, command, dir, bootstrap, topic, url, endpoint)
}

/// [`weir_on_s3`] with the pipeline file `config`.
fn weir_on_s3_with(
    config: &Path,
    command: &str,
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    url: &str,
    endpoint: &str,
) -> std::process::Command {
    let mut cmd = weir();
    cmd.args([command, "--config"])
        .arg(config)
        .envs(orders_env(bootstrap, topic, &dir.join("out"), url))
        .env("S3_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", "weir-test")
        .env("AWS_SECRET_ACCESS_KEY", "weir-test-secret");
    cmd
}

/// On S3 as on disk, a commit log deletes the entries past their retention (in batches, by
/// S3's DeleteObjects), and a reader starts from the snapshot that replaces them.
#[test]
fn commit_log_entries_past_their_retention_are_deleted_on_s3() {
    use futures::TryStreamExt;
    use weir_schemas::OffsetRange;
    use weir_sink::commit_log::SNAPSHOT_EVERY;
    use weir_sink::{CommitLog, LogOptions};

    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto_with_bucket(dir.path());
    let options: std::collections::BTreeMap<String, String> = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "weir-test"),
        ("aws_secret_access_key", "weir-test-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (store, root) = weir_sink::open_store("s3://weir-test/pruned", &options).unwrap();
    let partition = weir_schemas::PartitionKey::new("t", 0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = LogOptions {
            retention: Some(Duration::ZERO),
            ..LogOptions::default()
        };
        let mut log = CommitLog::open("pruned", store.clone(), root.clone(), "w", options)
            .await
            .unwrap();
        log.claim(std::slice::from_ref(&partition)).await.unwrap();
        // Entries 1..=SNAPSHOT_EVERY + 3 after the claim; the snapshot after entry
        // SNAPSHOT_EVERY prunes it and everything before.
        let commits = SNAPSHOT_EVERY as i64 + 3;
        for offset in 0..commits {
            let range = OffsetRange {
                partition: partition.clone(),
                from: offset,
                to: offset + 1,
            };
            let coverage = weir_schemas::WatermarkCoverage::Complete;
            let no_files = weir_sink::RecordedSchema {
                columns: Vec::new(),
                source: String::new(),
            };
            log.commit(vec![range], vec![], vec![], None, &no_files, &coverage)
                .await
                .unwrap();
        }
        let log_dir = root.clone().join("_weir").join("log");
        let mut kept: Vec<String> = store
            .list(Some(&log_dir))
            .map_ok(|meta| meta.location.filename().unwrap().to_owned())
            .try_collect()
            .await
            .unwrap();
        kept.sort();
        let expected: Vec<String> = (SNAPSHOT_EVERY + 1..=SNAPSHOT_EVERY + 3)
            .map(|seq| format!("{seq:020}.json"))
            .collect();
        assert_eq!(kept, expected);
        let state = CommitLog::read_state("pruned", store.clone(), root.clone())
            .await
            .unwrap();
        assert_eq!(state.partitions[&partition].next_offset, Some(commits));
    });
}
