//! `weir sql test|check|run`: golden tests, plans and sample runs of a pipeline's SQL,
//! touching neither Kafka nor the pipeline's storage.

use std::path::{Path, PathBuf};

use crate::config::{Environment, PipelineConfig};
use crate::{golden, sample};

/// `weir sql test`: every golden test next to the SQL files; fails when any does.
pub async fn test(config: &Path) -> anyhow::Result<()> {
    let outcome = golden::run_all(config).await?;
    print!("{}", outcome.report);
    anyhow::ensure!(
        outcome.failed == 0,
        "{} of {} golden tests failed",
        outcome.failed,
        outcome.failed + outcome.passed
    );
    Ok(())
}

/// `weir sql check`: each transform planned and described.
pub async fn check(config: &Path) -> anyhow::Result<()> {
    let config = PipelineConfig::load(config, &Environment)?;
    let (pipeline, _scratch) = sample::in_scratch(config).await?;
    print!("{}", sample::describe(&pipeline));
    Ok(())
}

/// `weir sql run`: the transforms over a sample file, as the service would run them.
pub async fn run(
    config: &Path,
    input: &Path,
    transform: Option<&str>,
    format: sample::Format,
    out: Option<PathBuf>,
    batch: usize,
) -> anyhow::Result<()> {
    let config = PipelineConfig::load(config, &Environment)?;
    let text = sample::read_sample(input)?;
    let mut run = sample::run_sample(config, &text, input, batch).await?;
    if let Some(name) = transform {
        run.only(name)?;
    }
    run.print(format, out.as_deref())
}
