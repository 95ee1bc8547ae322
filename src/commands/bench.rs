//! `weir bench`: weir's own cost per event for each pipeline shape beside the raw consume
//! rate, or the windowed aggregation alone.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::bench::{BenchOptions, bench, bench_decoders, bench_windows};

/// The pipelines measured as `options` say; with `check`, a missed target fails the command.
pub async fn pipelines(options: BenchOptions, check: bool, json: bool) -> anyhow::Result<()> {
    let report = bench(options).await.context("benchmark")?;
    super::print_report(&report, json)?;
    if check && !report.targets_met() {
        bail!("the benchmark missed a target");
    }
    Ok(())
}

/// `LABEL=PATH` arguments as labelled binaries, this one first as `weir`.
pub fn labelled_binaries(arguments: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if arguments.is_empty() {
        return Ok(Vec::new());
    }
    let this = std::env::current_exe().context("finding weir's own binary")?;
    let mut binaries = vec![("weir".to_owned(), this)];
    for argument in arguments {
        let Some((label, path)) = argument.split_once('=') else {
            bail!("--weir takes LABEL=PATH, as in old=/usr/local/bin/weir");
        };
        binaries.push((label.to_owned(), PathBuf::from(path)));
    }
    Ok(binaries)
}

/// The windowed aggregation alone, with `groups` groups open.
pub async fn windows(events: u64, groups: u64, json: bool) -> anyhow::Result<()> {
    let report = bench_windows(events, groups)
        .await
        .context("windowed benchmark")?;
    super::print_report(&report, json)
}

/// The decoders alone, on the same events in each payload format.
pub async fn decoders(events: u64, runs: usize, json: bool) -> anyhow::Result<()> {
    let report = tokio::task::spawn_blocking(move || bench_decoders(events, runs))
        .await?
        .context("decoder benchmark")?;
    super::print_report(&report, json)
}
