//! Harness for end-to-end tests: external tools, child processes and waiting on conditions.
//!
//! The tools (Python with DuckDB, pyarrow, confluent-kafka and moto; the Tansu broker) are
//! installed by `scripts/test`, which passes their paths in `WEIR_TEST_PYTHON` and
//! `WEIR_TEST_TANSU`. A test never skips when one is missing: it fails and says how to get it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by scripts/test.
pub fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if Path::new(&path).exists() => PathBuf::from(path),
        _ => panic!(
            "{var} does not name an installed tool. Run the suite with `scripts/test`, which \
             installs Python's duckdb, pyarrow, confluent-kafka, moto, PyYAML and rotel, the \
             Tansu broker, and Debian's chromium and prometheus."
        ),
    }
}

/// Runs tests/py/weirtest.py with `args`; panics with its output unless it succeeds.
pub fn weirtest(args: &[&str]) -> String {
    let output = Command::new(tool("WEIR_TEST_PYTHON"))
        .arg(repo().join("tests/py/weirtest.py"))
        .args(args)
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "weirtest.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The weir binary. Tests run side by side, so each serves its telemetry on a port of its own.
pub fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.env("WEIR_LISTEN", "127.0.0.1:0");
    command
}

/// Runs `command` to the end; panics with its stderr unless it succeeds. Returns stdout.
pub fn output_ok(command: &mut Command) -> Vec<u8> {
    let output = command.output().expect("running a command");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A child process that is killed when the test ends, whatever happens.
pub struct Process {
    pub child: Child,
    pub name: &'static str,
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr going to `log`.
    pub fn start(name: &'static str, mut command: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("creating a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { child, name, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("polling a child") {
            panic!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM", timeout)
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit.
    pub fn interrupt(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("INT", timeout)
    }

    fn signal(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling a child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} of SIG{signal}:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on loopback that nothing listens on now.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` different ports on loopback that nothing listens on now: each is held until all are
/// picked, so none is handed out twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("binding a loopback port"));
    listeners.map(|l| l.local_addr().expect("a bound address").port())
}

/// An HTTP GET on loopback: the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers and body");
    let status = head.split(' ').nth(1).expect("a status").parse().unwrap();
    (status, body.to_owned())
}

/// Polls `condition` until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for_listener(process: &mut Process, port: u16) {
    wait_until(
        &format!("{} to listen on {port}", process.name),
        Duration::from_secs(60),
        || {
            process.assert_running();
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
    );
}

/// The port a weir service serves its status page on, from its log: with `listen` at port 0
/// it is the one the system picked.
pub fn serving_port(process: &mut Process) -> u16 {
    const SAID: &str = "status_page=http://127.0.0.1:";
    let mut port = None;
    wait_until(
        &format!("{} to say where it serves", process.name),
        Duration::from_secs(60),
        || {
            process.assert_running();
            let log = process.log_text();
            port = log.find(SAID).map(|at| {
                let digits: String = log[at + SAID.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().expect("a port number")
            });
            port.is_some()
        },
    );
    port.expect("waited for")
}

/// The sum over the topic's partitions of the group's committed offsets.
pub fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    committed_total_with(bootstrap, group, topic, partitions, &[])
}

/// [`committed_total`] with extra client properties (e.g. SASL).
pub fn committed_total_with(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    properties: &[(&str, &str)],
) -> i64 {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("log_level", "3");
    for (key, value) in properties {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("creating a consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(offsets) => offsets
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum(),
        Err(_) => -1,
    }
}

/// Environment for the test pipeline in tests/fixtures/orders.
pub fn orders_env(
    bootstrap: &str,
    topic: &str,
    out: &Path,
    orders_url: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.into()),
        ("TOPIC".into(), topic.into()),
        ("GROUP".into(), format!("weir-test-{topic}")),
        ("OUT".into(), out.display().to_string()),
        ("ORDERS_URL".into(), orders_url.into()),
    ])
}

/// Produces the known orders (good and malformed) with Python's confluent-kafka, creating
/// the topic unless the harness did. Returns the expectation file and the message count.
pub fn produce_orders(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    create_topic: bool,
) -> (PathBuf, i64) {
    produce_orders_with(dir, bootstrap, topic, partitions, create_topic, &[])
}

/// [`produce_orders`] with more arguments for weirtest.py (e.g. SASL credentials).
pub fn produce_orders_with(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    create_topic: bool,
    extra: &[&str],
) -> (PathBuf, i64) {
    let expected = dir.join(format!("{topic}.expected.json"));
    let partitions = partitions.to_string();
    let mut args = vec![
        "produce",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--partitions",
        &partitions,
        "--expected",
        expected.to_str().expect("a UTF-8 path"),
    ];
    if !create_topic {
        args.push("--topic-exists");
    }
    args.extend_from_slice(extra);
    weirtest(&args);
    let text = std::fs::read_to_string(&expected).expect("reading the expectation file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("expectation JSON");
    let messages = value["messages"].as_i64().expect("a message count");
    (expected, messages)
}

/// Runs `weir run` (as `command`) until its group has committed all `messages` of `topic`,
/// then stops it with SIGTERM and checks that it exited cleanly. `properties` are what a
/// client needs to reach the broker (e.g. SASL). Returns its log.
pub fn run_until_committed(
    command: Command,
    log: PathBuf,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    messages: i64,
    properties: &[(&str, &str)],
) -> String {
    let mut weir = Process::start("weir", command, log);
    let group = format!("weir-test-{topic}");
    wait_until(
        "every offset to be committed",
        Duration::from_secs(120),
        || {
            weir.assert_running();
            committed_total_with(bootstrap, &group, topic, partitions, properties) == messages
        },
    );
    let status = weir.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "weir exited with {status}:\n{}",
        weir.log_text()
    );
    weir.log_text()
}

/// `weir lag --config <config> <args>` with the environment `env`.
pub fn weir_lag<K, V>(
    config: &Path,
    env: impl IntoIterator<Item = (K, V)>,
    args: &[&str],
) -> std::process::Output
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    weir()
        .args(["lag", "--config"])
        .arg(config)
        .args(args)
        .envs(env)
        .output()
        .expect("running weir lag")
}

/// Each partition's log-end offset as the broker itself reports it.
pub fn broker_log_end(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a Kafka client");
    (0..partitions)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("the partition's offsets")
                .1
        })
        .collect()
}

/// Per dataset of a `weir lag --json` report: its name and the partitions' values of `key`.
pub fn lag_column(report: &serde_json::Value, key: &str) -> Vec<(String, Vec<i64>)> {
    report["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .map(|d| {
            let values = d["partitions"]
                .as_array()
                .expect("partitions")
                .iter()
                .map(|p| p[key].as_i64().unwrap_or_else(|| panic!("{key} in {p}")))
                .collect();
            (d["dataset"].as_str().expect("a name").to_owned(), values)
        })
        .collect()
}

/// A Tansu broker on `port` with SQLite storage in `dir`, listening when this returns.
pub fn start_tansu(dir: &Path, port: u16, authentication: bool, log: &str) -> Process {
    let listener = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(tool("WEIR_TEST_TANSU"));
    command
        .arg("broker")
        .args([
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &listener,
        ])
        // Tansu resolves the SQLite path against its working directory.
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir);
    if authentication {
        command.arg("--authentication");
    }
    let mut broker = Process::start("tansu", command, dir.join(log));
    wait_for_listener(&mut broker, port);
    broker
}

/// A copy of the orders test pipeline in `dir`, its pipeline.toml changed by replacing
/// `from` with `to`. Returns the new pipeline.toml.
pub fn orders_config_with(dir: &Path, from: &str, to: &str) -> PathBuf {
    let fixture = repo().join("tests/fixtures/orders");
    let text = std::fs::read_to_string(fixture.join("pipeline.toml")).expect("the fixture");
    assert!(text.contains(from), "the fixture has no `{from}`");
    let config = dir.join("pipeline.toml");
    std::fs::write(&config, text.replace(from, to)).expect("writing the config");
    std::fs::create_dir_all(dir.join("sql")).expect("creating sql/");
    for file in ["schema.toml", "sql/orders.sql", "sql/big_orders.sql"] {
        std::fs::copy(fixture.join(file), dir.join(file)).expect("copying the fixture");
    }
    config
}

/// Checks with DuckDB that the orders pipeline's datasets under `out` hold exactly what
/// `expected` (from [`produce_orders`]) says.
pub fn verify_orders(expected: &Path, orders: &Path, out: &Path) -> String {
    weirtest(&[
        "verify",
        "--expected",
        expected.to_str().expect("a UTF-8 path"),
        "--orders",
        orders.to_str().expect("a UTF-8 path"),
        "--big-orders",
        out.join("big_orders").to_str().expect("a UTF-8 path"),
        "--dead-letters",
        out.join("dead_letters").to_str().expect("a UTF-8 path"),
    ])
}

/// A copy of the quickstart pipeline in `dir`, reading from `${GROUP}` as its consumer group,
/// with `source_extra` added to its `[source]` table (before `[source.properties]`, given as
/// `properties`) and the commit interval set. Returns the new pipeline.toml.
pub fn quickstart_config(
    dir: &Path,
    source_extra: &str,
    properties: &[(&str, &str)],
    commit_interval: &str,
) -> PathBuf {
    let example = repo().join("examples/quickstart");
    let text = std::fs::read_to_string(example.join("pipeline.toml")).expect("the example");
    let mut source = format!("event_time = \"ts\"\n{source_extra}\n");
    if !properties.is_empty() {
        source.push_str("\n[source.properties]\n");
        for (key, value) in properties {
            source.push_str(&format!("\"{key}\" = \"{value}\"\n"));
        }
    }
    let text = text
        .replace("event_time = \"ts\"\n", &source)
        .replace("group_id = \"weir-clickstream\"", "group_id = \"${GROUP}\"")
        .replace(
            "commit_interval = \"5s\"",
            &format!("commit_interval = \"{commit_interval}\""),
        );
    let config = dir.join("pipeline.toml");
    std::fs::write(&config, text).expect("writing the config");
    std::fs::create_dir_all(dir.join("sql")).expect("creating sql/");
    for file in QUICKSTART_FILES {
        std::fs::copy(example.join(file), dir.join(file)).expect("copying the example");
    }
    config
}

/// The datasets of the quickstart pipeline.
/// The example's files besides its pipeline.toml.
pub const QUICKSTART_FILES: [&str; 4] = [
    "schema.toml",
    "sql/clicks.sql",
    "sql/product_views.sql",
    "sql/page_views_per_minute.sql",
];

pub const QUICKSTART_DATASETS: [&str; 4] = [
    "clicks",
    "product_views",
    "page_views_per_minute",
    "dead_letters",
];

/// For each dataset under `out`, the offsets its commit log says are committed, summed over
/// partitions (0 before the first commit). Read-only: the log is not written.
pub fn committed_in_logs(out: &Path, datasets: &[&str]) -> Vec<i64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    datasets
        .iter()
        .map(|name| {
            let path = out.join(name);
            if !path.join("_weir").exists() {
                return 0;
            }
            let (store, root) =
                weir_sink::open_store(path.to_str().expect("UTF-8"), &BTreeMap::new())
                    .expect("opening the dataset");
            let state = runtime
                .block_on(weir_sink::CommitLog::read_state(name, store, root))
                .expect("reading the commit log");
            state
                .partitions
                .values()
                .filter_map(|p| p.next_offset)
                .sum()
        })
        .collect()
}

/// The writer holding the latest claim of each Kafka partition in `dataset`'s commit log.
pub fn owners_in_log(dataset: &Path) -> BTreeMap<i32, Option<String>> {
    if !dataset.join("_weir").exists() {
        return BTreeMap::new();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let (store, root) = weir_sink::open_store(dataset.to_str().expect("UTF-8"), &BTreeMap::new())
        .expect("opening the dataset");
    let state = runtime
        .block_on(weir_sink::CommitLog::read_state("test", store, root))
        .expect("reading the commit log");
    state
        .partitions
        .into_iter()
        .map(|(key, p)| (key.partition, p.owner))
        .collect()
}

/// Sends `signal` (e.g. "STOP", "CONT") to the process.
pub fn signal(process: &Process, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(process.child.id().to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// `weir generate` of `events` click-stream events into `topic`, at `rate` per second, with
/// the counts it produced written to `generated` (JSON) when it ends.
pub fn generate(
    bootstrap: &str,
    topic: &str,
    events: u64,
    rate: u64,
    seed: u64,
    generated: &Path,
) -> Child {
    weir()
        .args([
            "generate",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
        ])
        .args(["--events", &events.to_string(), "--rate", &rate.to_string()])
        .args(["--malformed-ratio", "0.03", "--seed", &seed.to_string()])
        .stdout(std::fs::File::create(generated).expect("creating the generated file"))
        .spawn()
        .expect("starting weir generate")
}

/// `weir verify --config` with the environment of a run; panics unless every dataset is
/// sound. Returns the report.
pub fn verify_datasets(config: &Path, env: &[(&str, &str)]) -> String {
    let mut command = weir();
    command
        .args(["verify", "--config"])
        .arg(config)
        .envs(env.iter().copied());
    let output = command.output().expect("running weir verify");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "weir verify failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

/// How many instances wrote the datasets at once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    OneAtATime,
    SideBySide,
}

/// `weir verify` passes for every dataset, and DuckDB finds every generated event once and
/// the windows the clicks make.
pub fn check_exactly_once(
    config: &Path,
    env: &[(&str, &str)],
    out: &str,
    generated: &Path,
    writers: Writers,
) {
    let report = verify_datasets(config, env);
    assert_eq!(
        report.matches(": OK").count(),
        QUICKSTART_DATASETS.len(),
        "{report}"
    );
    eprintln!("{report}");
    let generated = generated.to_str().unwrap();
    let mut args = vec!["check-exactly-once", "--out", out, "--generated", generated];
    if writers == Writers::SideBySide {
        args.push("--several-writers");
    }
    eprintln!("{}", weirtest(&args));
}
