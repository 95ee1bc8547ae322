//! `weir check`: a pipeline file, its schema, SQL and object-store URLs checked without
//! connecting to anything.

use std::path::Path;

use anyhow::Context;
use weir_schemas::Settings;
use weir_transform::TransformKind;

use crate::config::{Environment, PipelineConfig};
use crate::sample;

pub async fn run(config: &Path) -> anyhow::Result<()> {
    let config = PipelineConfig::load(config, &Environment)?;
    // The URLs as configured, though the datasets are planned in a scratch directory:
    // checking creates nothing.
    let urls: Vec<String> = config
        .transforms
        .iter()
        .map(|t| config.resolve_url(&t.sink.url))
        .collect();
    // Object-store URLs and their options are checked (building a client does no I/O);
    // local directories would be created, so they are not opened.
    let mut stores: Vec<(String, &String, &Settings)> = config
        .transforms
        .iter()
        .zip(&urls)
        .map(|(t, url)| (format!("transform `{}`", t.name), url, &t.sink.storage))
        .collect();
    let dead_letter_url = config
        .dead_letters
        .url
        .as_ref()
        .map(|u| config.resolve_url(u));
    if let Some(url) = &dead_letter_url {
        stores.push(("the dead letters".into(), url, &config.dead_letters.storage));
    }
    for (what, url, options) in stores {
        if url.contains("://") && !url.starts_with("file://") {
            weir_sink::open_store(url, options).with_context(|| what.clone())?;
        }
    }
    let (pipeline, _scratch) = sample::in_scratch(config).await?;
    for (output, url) in pipeline.transforms.outputs().iter().zip(urls) {
        let kind = match output.transform().kind() {
            TransformKind::Stateless => "stateless".to_owned(),
            TransformKind::Windowed(window) => format!("windowed: {}", window.describe()),
        };
        println!("transform `{}` ({kind}) → {url}", output.name());
        print!("{}", sample::fields(&output.transform().schema(), "  "));
    }
    println!("ok");
    Ok(())
}
