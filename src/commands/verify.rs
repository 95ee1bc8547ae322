//! `weir verify`: datasets checked against their commit logs; fails on any problem.

use std::path::Path;

use crate::config::{Environment, PipelineConfig};
use crate::pipeline::Pipeline;

/// Verifies every dataset of the pipeline at `config`, if given, and the datasets at `urls`
/// (opened with the object-store `storage` options).
pub async fn run(
    config: Option<&Path>,
    urls: &[String],
    storage: Vec<(String, String)>,
    json: bool,
) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    if let Some(config) = config {
        let config = PipelineConfig::load(config, &Environment)?;
        let pipeline = Pipeline::build(config).await?;
        for dataset in pipeline.datasets() {
            reports.push(dataset.verify().await?);
        }
    }
    let options = storage.into_iter().collect();
    for url in urls {
        let (store, root) = weir_sink::open_store(url, &options)?;
        reports.push(weir_sink::verify::verify(url, store, &root).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print!("{report}");
        }
    }
    let problems: usize = reports.iter().map(|r| r.problems.len()).sum();
    anyhow::ensure!(problems == 0, "verification failed: {problems} problems");
    Ok(())
}
