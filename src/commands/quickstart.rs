//! `weir quickstart`: the example pipeline on an embedded Kafka cluster.

use crate::cli::shutdown_signal;
use crate::quickstart::{QuickstartOptions, quickstart};

pub async fn run(options: QuickstartOptions, json: bool) -> anyhow::Result<()> {
    let report = quickstart(options, shutdown_signal()?).await?;
    super::print_report(&report, json)
}
