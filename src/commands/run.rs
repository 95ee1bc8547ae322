//! `weir run`: the pipeline as a service, with its telemetry, until SIGINT or SIGTERM.

use std::path::Path;

use crate::cli::{LogFormat, init_logging, shutdown_signal};
use crate::config::{Environment, PipelineConfig};
use crate::{pipeline, runtime, telemetry};

pub async fn run(
    config: &Path,
    listen: Option<String>,
    log_format: LogFormat,
    log_level: &str,
) -> anyhow::Result<()> {
    let config = PipelineConfig::load(config, &Environment)?;
    let tracer = match &config.telemetry.otlp_endpoint {
        Some(endpoint) => Some(telemetry::otlp_tracer(&config.name, endpoint)?),
        None => None,
    };
    init_logging(log_format, log_level, tracer.as_ref());
    let result = serve(config, listen).await;
    if let Some(tracer) = tracer {
        let flushed = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("warning: could not export the last spans: {e}");
        }
    }
    result
}

async fn serve(config: PipelineConfig, listen: Option<String>) -> anyhow::Result<()> {
    let pipeline = pipeline::Pipeline::build(config).await?;
    let telemetry = telemetry::Telemetry::start(telemetry::TelemetryOptions {
        listen: listen.as_deref(),
        any_port_if_taken: false,
        ..telemetry::TelemetryOptions::of(&pipeline)
    })
    .await?;
    let observer = telemetry.observer.clone();
    let shutdown = shutdown_signal()?;
    let summary = runtime::run(pipeline, shutdown, observer).await;
    telemetry.shutdown().await;
    let summary = summary?;
    tracing::info!(
        events = summary.events_in,
        checkpoints = summary.checkpoints,
        backpressure_pauses = summary.backpressure_pauses,
        reader_schema_changes = summary.reader_schema_changes,
        dead_letters = ?summary.dead_letters,
        datasets = %serde_json::to_string(&summary.datasets)?,
        "committed everything consumed; exiting"
    );
    Ok(())
}
