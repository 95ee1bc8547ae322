//! `weir verify`: datasets checked against their commit logs; fails on any problem.

use std::path::Path;

use crate::config::{Environment, PipelineConfig};
use crate::pipeline::Pipeline;

/// Verifies every dataset of the pipeline at `config`, if given, and the datasets at `urls`
/// (opened with the object-store `storage` options).
pub async fn run(
    config: Option<&Path>,
    urls: &[String],
    storage: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    let options = storage
        .iter()
        .enumerate()
        .map(|(n, option)| {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "--storage option {} is not KEY=VALUE (its text is not shown: it may hold \
                     a secret)",
                    n + 1
                )
            })?;
            Ok((key.to_owned(), value.to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut reports = Vec::new();
    if let Some(config) = config {
        let config = PipelineConfig::load(config, &Environment)?;
        let pipeline = Pipeline::build(config).await?;
        for dataset in pipeline.datasets() {
            reports.push(dataset.verify().await?);
        }
    }
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
