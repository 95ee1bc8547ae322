//! weir's commands as tests drive them: `weir run` until everything is committed, `weir lag`
//! and its report, `weir generate`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::datasets::verify_orders;
use super::fixtures::{orders_config_with, orders_env};
use super::kafka::{committed_total_with, produce_orders_with};
use super::net::wait_until;
use super::process::{Process, weir};

/// What [`run_until_committed`] waits for: the group of `weir run` has committed all
/// `messages` of `topic`.
pub struct Committed<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub partitions: i32,
    pub messages: i64,
    /// What a client needs to reach the broker (e.g. SASL).
    pub properties: &'a [(&'a str, &'a str)],
}

/// Runs `weir run` (as `command`, logging to `log`) until its group has committed all
/// `messages` of `topic`, then stops it with SIGTERM and checks that it exited cleanly.
/// Returns its log.
pub fn run_until_committed(command: Command, log: PathBuf, until: Committed) -> String {
    let Committed {
        bootstrap,
        topic,
        partitions,
        messages,
        properties,
    } = until;
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

/// How the test's clients and `weir run` reach a broker.
pub struct Connection<'a> {
    pub bootstrap: &'a str,
    /// Arguments for weirtest.py's producer (SASL credentials, a CA).
    pub produce_args: &'a [&'a str],
    /// librdkafka properties as the pipeline file has them, `${VAR}` standing for what comes
    /// from the environment (`vars`): a password, a CA file.
    pub properties: &'a [(&'a str, &'a str)],
    pub vars: &'a [(&'a str, &'a str)],
}

/// The orders fixture end to end over `connection`: produced by weirtest.py into `topic`
/// (2 partitions), consumed by `weir run` (debug log) until its group committed everything,
/// then read back by DuckDB. Returns weir's log and the pipeline file.
pub fn orders_round_trip(dir: &Path, topic: &str, connection: &Connection) -> (String, PathBuf) {
    let Connection {
        bootstrap,
        produce_args,
        properties,
        vars,
    } = connection;
    let (expected, messages) = produce_orders_with(dir, bootstrap, topic, 2, true, produce_args);
    let mut table = String::from("max_batch_wait = \"50ms\"\n\n[source.properties]\n");
    for (key, value) in properties.iter() {
        table.push_str(&format!("\"{key}\" = \"{value}\"\n"));
    }
    let config = orders_config_with(dir, "max_batch_wait = \"50ms\"\n", &table);
    let out = dir.join("out");
    let orders = out.join("orders");
    let mut command = weir();
    command
        .args(["run", "--config"])
        .arg(&config)
        .envs(orders_env(bootstrap, topic, &out, orders.to_str().unwrap()))
        .envs(vars.iter().copied())
        .env("WEIR_LOG", "debug");
    let expanded: Vec<(&str, String)> = properties
        .iter()
        .map(|(key, value)| {
            let value = vars.iter().fold(value.to_string(), |value, (var, set)| {
                value.replace(&format!("${{{var}}}"), set)
            });
            (*key, value)
        })
        .collect();
    let client: Vec<(&str, &str)> = expanded.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let log = run_until_committed(
        command,
        dir.join("weir.log"),
        Committed {
            bootstrap,
            topic,
            partitions: 2,
            messages,
            properties: &client,
        },
    );
    eprintln!("{}", verify_orders(&expected, &orders, &out));
    (log, config)
}
