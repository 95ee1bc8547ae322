//! What weir tells the people who run it.
//!
//! Metrics go through OpenTelemetry: one meter provider, read as Prometheus text at
//! `/metrics` and, when a collector is configured, pushed over OTLP/HTTP as well. Spans from
//! `tracing` go to the same collector. The HTTP server (see [`server`]) also answers the
//! health probes and serves the status page. The pipeline reports to an [`Observer`], which
//! every one of these reads.

mod freshness;
mod health;
mod instruments;
mod log_end;
pub mod observer;
pub(crate) mod scrub;
pub mod server;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::sync::watch;

pub use freshness::Timestamps;
pub use health::HealthLimits;
pub use observer::Observer;

use crate::config::TelemetryConfig;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the Prometheus exporter: {0}")]
    Prometheus(String),
    #[error("cannot set up OTLP export to {endpoint}: {message}")]
    Otlp { endpoint: String, message: String },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("`{0}` is not an address to listen on (expected host:port, or \"off\")")]
    Address(String),
}

/// Where metrics and probes are served, and what is pushed where.
pub struct TelemetryOptions<'a> {
    pub pipeline: &'a str,
    pub config: &'a TelemetryConfig,
    pub commit_interval: Duration,
    /// Overrides `config.listen`.
    pub listen: Option<&'a str>,
    /// Listen on another free port when the one asked for is taken.
    pub any_port_if_taken: bool,
    pub kafka: &'a weir_ingest::ConsumerConfig,
}

impl<'a> TelemetryOptions<'a> {
    /// What the pipeline's configuration says.
    pub fn of(pipeline: &'a crate::pipeline::Pipeline) -> Self {
        Self {
            pipeline: &pipeline.name,
            config: &pipeline.config.telemetry,
            commit_interval: pipeline.config.delivery.commit_interval,
            listen: None,
            any_port_if_taken: false,
            kafka: &pipeline.kafka,
        }
    }
}

/// The running telemetry of one pipeline; [`Telemetry::shutdown`] flushes what is pushed.
pub struct Telemetry {
    pub observer: Arc<Observer>,
    /// Where the status page, metrics and probes are served, if anywhere.
    pub address: Option<SocketAddr>,
    meters: SdkMeterProvider,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Telemetry {
    /// Sets up the metrics, starts the HTTP server and the log-end prober. Must be called
    /// inside the Tokio runtime.
    pub async fn start(options: TelemetryOptions<'_>) -> Result<Self, TelemetryError> {
        let config = options.config;
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
        let mut meters = SdkMeterProvider::builder()
            .with_resource(resource(options.pipeline))
            .with_reader(prometheus);
        if let Some(endpoint) = &config.otlp_endpoint {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(signal_endpoint(endpoint, "metrics"))
                .with_http_client(OnTokio::new())
                .build()
                .map_err(|e| otlp_failed(endpoint, e))?;
            meters = meters.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(config.otlp_interval)
                    .build(),
            );
        }
        let meters = meters.build();
        let meter = meters.meter("weir");
        let limits = HealthLimits {
            // An idle pipeline's loop turns once a commit interval.
            wedged_after: config
                .wedged_after
                .unwrap_or((options.commit_interval * 3).max(Duration::from_secs(300))),
            max_checkpoint_age: config
                .ready_max_checkpoint_age
                .unwrap_or((options.commit_interval * 3).max(Duration::from_secs(30))),
        };
        let observer = Observer::new(options.pipeline, &meter, limits, config.history);
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![log_end::spawn(
            observer.clone(),
            options.kafka.clone(),
            config.log_end_interval,
            stopped.clone(),
        )];
        tasks.push(sample_history(
            observer.clone(),
            config.history,
            stopped.clone(),
        ));
        let listen = options.listen.unwrap_or(&config.listen);
        let address = if listen == "off" {
            None
        } else {
            let address: SocketAddr = listen
                .parse()
                .map_err(|_| TelemetryError::Address(listen.to_owned()))?;
            let listener = match tokio::net::TcpListener::bind(address).await {
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && options.any_port_if_taken =>
                {
                    tokio::net::TcpListener::bind(SocketAddr::new(address.ip(), 0)).await
                }
                bound => bound,
            }
            .map_err(|source| TelemetryError::Listen {
                address: listen.to_owned(),
                source,
            })?;
            let bound = listener
                .local_addr()
                .map_err(|source| TelemetryError::Listen {
                    address: listen.to_owned(),
                    source,
                })?;
            tasks.push(server::spawn(listener, observer.clone(), registry, stopped));
            tracing::info!(
                status_page = %format!("http://{bound}/"),
                metrics = %format!("http://{bound}/metrics"),
                "serving the status page, metrics and health probes"
            );
            Some(bound)
        };
        Ok(Self {
            observer,
            address,
            meters,
            stop,
            tasks,
        })
    }

    /// Stops serving and pushes the last metrics.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let meters = self.meters;
        let flushed = tokio::task::spawn_blocking(move || meters.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "could not push the last metrics");
        }
    }
}

/// Spans of `tracing`, exported over OTLP/HTTP to `endpoint` in batches. Must be called inside
/// the Tokio runtime.
pub fn otlp_tracer(pipeline: &str, endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(signal_endpoint(endpoint, "traces"))
        .with_http_client(OnTokio::new())
        .build()
        .map_err(|e| otlp_failed(endpoint, e))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource(pipeline))
        .with_batch_exporter(exporter)
        .build())
}

fn otlp_failed(endpoint: &str, error: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Otlp {
        endpoint: scrub::urls(endpoint),
        message: scrub::error(&error.to_string()),
    }
}

fn resource(pipeline: &str) -> Resource {
    Resource::builder()
        .with_service_name("weir")
        .with_attribute(opentelemetry::KeyValue::new(
            "weir.pipeline",
            pipeline.to_owned(),
        ))
        .build()
}

/// The OTLP/HTTP path of one signal under a collector's base address.
fn signal_endpoint(endpoint: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", endpoint.trim_end_matches('/'))
}

/// Adds a point to the status page's history every second.
fn sample_history(
    observer: Arc<Observer>,
    span: Duration,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // About 900 points over the span, at least one a second.
    let every = (span / 900).max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = ticks.tick() => observer.sample(),
            }
        }
    })
}

/// OpenTelemetry's exporters run on threads of their own; the hyper client they send with
/// needs Tokio, so each request is sent on the runtime that was current when this was made.
#[derive(Debug, Clone)]
struct OnTokio {
    client: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

impl OnTokio {
    fn new() -> Self {
        Self {
            client: opentelemetry_http::hyper::HyperClient::with_default_connector(
                Duration::from_secs(10),
                None,
            ),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnTokio {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
