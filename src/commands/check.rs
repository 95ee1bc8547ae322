//! `weir check`: a pipeline file, its schema, SQL and object-store URLs checked without
//! writing anything; with `--datasets`, each dataset's planned columns compared with those
//! its commit log recorded last.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use weir_schemas::Settings;
use weir_sink::{CommitLog, RecordedSchema, SchemaRecord};
use weir_transform::TransformKind;

use crate::config::{Environment, PipelineConfig};
use crate::sample;

pub async fn run(config: &Path, datasets: bool) -> anyhow::Result<()> {
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
    let storage: Vec<Settings> = config
        .transforms
        .iter()
        .map(|t| t.sink.storage.clone())
        .collect();
    let (pipeline, _scratch) = sample::in_scratch(config).await?;
    let outputs = pipeline.transforms.outputs().iter().zip(&pipeline.outputs);
    for ((output, planned), (url, storage)) in outputs.zip(urls.iter().zip(&storage)) {
        let kind = match output.transform().kind() {
            TransformKind::Stateless => "stateless".to_owned(),
            TransformKind::Windowed(window) => format!("windowed: {}", window.describe()),
        };
        println!("transform `{}` ({kind}) → {url}", output.name());
        print!("{}", sample::fields(&output.transform().schema(), "  "));
        if datasets {
            let recorded = recorded_schema(output.name(), url, storage).await;
            println!("  {}", against_recorded(planned.dataset.schema(), recorded));
        }
    }
    println!("ok");
    Ok(())
}

/// How long reading a dataset's recorded columns may take before the check goes on without.
const READ_RECORDED_TIMEOUT: Duration = Duration::from_secs(15);

/// The columns the commit log of the dataset at `url` recorded last: `Ok(None)` when it has
/// none (no commit yet), `Err` when it cannot be read. A local directory that does not exist
/// is not created.
async fn recorded_schema(
    name: &str,
    url: &str,
    storage: &Settings,
) -> Result<Option<SchemaRecord>, String> {
    let local = !url.contains("://") || url.starts_with("file://");
    if local {
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if !Path::new(dir).is_dir() {
            return Ok(None);
        }
    }
    let (store, root) = weir_sink::open_store(url, storage).map_err(|e| e.to_string())?;
    let read = CommitLog::read_state(name, store, root);
    match tokio::time::timeout(READ_RECORDED_TIMEOUT, read).await {
        Ok(Ok(state)) => Ok(state.schema),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}s",
            READ_RECORDED_TIMEOUT.as_secs()
        )),
    }
}

/// What the planned columns change against those recorded, in a sentence.
fn against_recorded(
    planned: &RecordedSchema,
    recorded: Result<Option<SchemaRecord>, String>,
) -> String {
    let recorded = match recorded {
        Ok(Some(recorded)) => recorded,
        Ok(None) => return "the dataset has recorded no columns yet".into(),
        Err(e) => return format!("the dataset's recorded columns could not be read: {e}"),
    };
    let since = format!(
        "the columns recorded at entry {} ({})",
        recorded.seq, recorded.schema.source
    );
    let changes = planned.changes_from(&recorded.schema);
    if changes.is_empty() {
        return format!("the same columns as {since}");
    }
    let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    format!(
        "against {since}, the next commit records: {}",
        changes.join("; ")
    )
}
