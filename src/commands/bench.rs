//! `weir bench`: end-to-end throughput beside the raw consume rate, or the windowed
//! aggregation alone.

use std::path::PathBuf;

use anyhow::Context;

use crate::bench::{bench, bench_windows};

/// The pipeline against the raw consume rate of `events` events over `partitions`.
pub async fn pipeline(
    events: u64,
    partitions: i32,
    out: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let report = bench(events, partitions, out).await.context("benchmark")?;
    super::print_report(&report, json)
}

/// The windowed aggregation alone, with `groups` groups open.
pub async fn windows(events: u64, groups: u64, json: bool) -> anyhow::Result<()> {
    let report = bench_windows(events, groups)
        .await
        .context("windowed benchmark")?;
    super::print_report(&report, json)
}
