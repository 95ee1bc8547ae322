//! What the datasets hold, read without weir's code (DuckDB, the commit logs' JSON) or
//! through `weir verify`.

use std::collections::BTreeMap;
use std::path::Path;

use super::fixtures::QUICKSTART_DATASETS;
use super::process::{weir, weirtest};

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
    check_exactly_once_as(config, env, out, generated, writers, Format::Parquet);
}

/// What the quickstart's output datasets are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    /// Delta tables, their application transactions named after the pipeline `clickstream`.
    Delta,
}

/// [`check_exactly_once`] of datasets in `format`; Delta tables are also read with Python's
/// deltalake, which must see the committed files and rows, and an application transaction
/// per Kafka partition at the committed offset.
pub fn check_exactly_once_as(
    config: &Path,
    env: &[(&str, &str)],
    out: &str,
    generated: &Path,
    writers: Writers,
    format: Format,
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
    if format == Format::Delta {
        args.extend(["--delta-app", "clickstream"]);
    }
    eprintln!("{}", weirtest(&args));
}
