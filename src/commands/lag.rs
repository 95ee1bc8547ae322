//! `weir lag`: how far each dataset trails the log; fails past any threshold given.

use std::path::Path;

use crate::config::{Environment, PipelineConfig};
use crate::lag::{Thresholds, lag};
use crate::pipeline::Pipeline;

pub async fn run(config: &Path, thresholds: Thresholds, json: bool) -> anyhow::Result<()> {
    let config = PipelineConfig::load(config, &Environment)?;
    let pipeline = Pipeline::build(config).await?;
    let report = lag(&pipeline, thresholds).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    let breaches = report.breaches.len();
    anyhow::ensure!(
        breaches == 0,
        "lag past its thresholds in {breaches} places"
    );
    Ok(())
}
