//! `weir quickstart`: the example pipeline on an embedded Kafka cluster, end to end.
//!
//! librdkafka's mock cluster (three brokers on loopback, real Kafka protocol) stands in for
//! Kafka; the generator produces click-stream events into it, paced by what the pipeline has
//! consumed so that the mock cluster's small retention never drops an event; the pipeline
//! from examples/quickstart writes Parquet under `--out`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{PayloadFormat, PipelineConfig};
use crate::embedded_registry::EmbeddedRegistry;
use crate::generate::{Generated, Generator, GeneratorOptions, LIVE_LINGER, produce};
use crate::pipeline::Pipeline;
use crate::runtime::{Summary, run};
use crate::telemetry::{Telemetry, TelemetryOptions};

pub const TOPIC: &str = "clickstream";

/// The example pipeline, compiled in so the quickstart runs from any directory.
const FILES: &[(&str, &str)] = &[
    (
        "pipeline.toml",
        include_str!("../examples/quickstart/pipeline.toml"),
    ),
    (
        "schema.toml",
        include_str!("../examples/quickstart/schema.toml"),
    ),
    (
        "sql/clicks.sql",
        include_str!("../examples/quickstart/sql/clicks.sql"),
    ),
    (
        "sql/product_views.sql",
        include_str!("../examples/quickstart/sql/product_views.sql"),
    ),
    (
        "sql/page_views_per_minute.sql",
        include_str!("../examples/quickstart/sql/page_views_per_minute.sql"),
    ),
];

/// Bytes per partition the producer may run ahead of the consumer: well inside the
/// ~5 MiB a mock-cluster partition keeps before it deletes old data.
const AHEAD_BYTES_PER_PARTITION: u64 = 2 << 20;

pub struct QuickstartOptions {
    pub events: Option<u64>,
    pub out: PathBuf,
    pub partitions: i32,
    pub generator: GeneratorOptions,
    /// Where the status page and metrics are served ("off" for nowhere).
    pub listen: String,
    /// Events per second when running until Ctrl-C (at most 1,000).
    pub rate: u64,
    /// JSON events, or the same in Confluent-framed Avro with a registry inside weir.
    pub format: PayloadFormat,
}

#[derive(Debug, Serialize)]
pub struct QuickstartReport {
    pub out: PathBuf,
    pub generated: Generated,
    /// The status page and metrics the run served.
    pub status_page: Option<String>,
    pub metrics: Option<String>,
    #[serde(flatten)]
    pub summary: Summary,
}

/// An embedded Kafka cluster with one topic.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl EmbeddedKafka {
    pub fn start(brokers: i32, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let cluster = MockCluster::new(brokers).context("starting the embedded Kafka cluster")?;
        cluster
            .create_topic(topic, partitions, brokers.min(3))
            .with_context(|| format!("creating topic {topic}"))?;
        Ok(Self { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Another topic, replicated like the first.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        self.cluster
            .create_topic(topic, partitions, 3)
            .with_context(|| format!("creating topic {topic}"))
    }
}

pub async fn quickstart(
    options: QuickstartOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<QuickstartReport> {
    if options.format == PayloadFormat::Protobuf {
        bail!(
            "the quickstart sends JSON or Avro; `weir generate --format protobuf` sends Protobuf"
        );
    }
    // Datasets from an earlier run would mix with this one's and spoil its counts.
    if std::fs::read_dir(&options.out).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "{} is not empty; remove it or choose another --out",
            options.out.display()
        );
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let kafka = EmbeddedKafka::start(3, TOPIC, options.partitions)?;
    let bootstrap = kafka.bootstrap_servers();
    let out = options.out.canonicalize()?;

    let example = tempfile::tempdir()?;
    let config_path = write_example(example.path())?;
    let registry = match options.format {
        PayloadFormat::Json => None,
        PayloadFormat::Avro => Some(avro_example(&config_path)?),
        PayloadFormat::Protobuf => unreachable!("refused above"),
    };
    let vars = BTreeMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap.clone()),
        ("WEIR_OUT".to_owned(), out.display().to_string()),
    ]);
    let config = PipelineConfig::load(&config_path, &vars)?;
    let pipeline = Pipeline::build(config).await?;
    let telemetry = Telemetry::start(TelemetryOptions {
        listen: Some(&options.listen),
        any_port_if_taken: true,
        ..TelemetryOptions::of(&pipeline)
    })
    .await?;
    let status_page = telemetry.address.map(|a| format!("http://{a}/"));
    let metrics = telemetry.address.map(|a| format!("http://{a}/metrics"));
    if let (Some(page), Some(metrics)) = (&status_page, &metrics) {
        eprintln!("weir quickstart: status page {page}  metrics {metrics}");
    }
    let observer = telemetry.observer.clone();
    let progress = observer.source_stats();

    // A known number of events is produced as fast as the pipeline takes them and ends at
    // about the present, so the watermark lag the report shows is that of a pipeline that has
    // caught up. Without a number, events come at `rate` with event times that follow the
    // clock, like a live stream, for the status page to show.
    let mut generated = options.generator.clone();
    let rate = match options.events {
        Some(events) => {
            let span = (events as i64).saturating_mul(generated.step_ms);
            generated.start_ms = chrono::Utc::now().timestamp_millis() - span;
            None
        }
        None => {
            // Event times step by whole milliseconds: at most 1,000 events a second.
            generated.step_ms = (1000 / options.rate.clamp(1, 1000)) as i64;
            generated.start_ms = chrono::Utc::now().timestamp_millis();
            Some(1000.0 / generated.step_ms as f64)
        }
    };
    let started = std::time::Instant::now();
    let mut generator = Generator::new(generated);
    if let Some((_, schema_id)) = &registry {
        generator = generator.with_avro(*schema_id);
    }
    let average_event = generator.event(0).payload.len().max(64) as u64;
    let ahead = options.partitions as u64 * AHEAD_BYTES_PER_PARTITION / average_event;
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let progress = progress.clone();
        let stop = stop.clone();
        let events = options.events;
        tokio::task::spawn_blocking(move || {
            produce(
                &bootstrap,
                TOPIC,
                &generator,
                events,
                LIVE_LINGER,
                &stop,
                &|index| {
                    let on_time = rate.is_none_or(|rate| {
                        index < (started.elapsed().as_secs_f64() * rate) as u64 + 1
                    });
                    on_time && index < progress.messages() + ahead
                },
            )
        })
    };

    // Stop the pipeline on Ctrl-C, or once every generated event has been consumed.
    let (stop_pipeline, pipeline_shutdown) = watch::channel(false);
    let watcher = {
        let progress = progress.clone();
        let stop = stop.clone();
        let mut shutdown = shutdown;
        let events = options.events;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tick.tick() => {
                        if events.is_some_and(|n| progress.messages() >= n) {
                            break;
                        }
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            let _ = stop_pipeline.send(true);
        })
    };

    let summary = run(pipeline, pipeline_shutdown, observer).await;
    telemetry.shutdown().await;
    stop.store(true, Ordering::Relaxed);
    watcher.abort();
    let generated = producing.await??;
    let summary = summary?;
    drop(kafka);

    if options.events.is_some() && summary.events_in != generated.events {
        bail!(
            "{} events were generated but {} committed",
            generated.events,
            summary.events_in
        );
    }
    Ok(QuickstartReport {
        out,
        generated,
        status_page,
        metrics,
        summary,
    })
}

/// Writes the example pipeline into `dir` and returns its pipeline.toml.
/// Turns the example at `config` into one of Avro events: their schema registered in a
/// registry inside weir, which the pipeline reads it from. The registry and the schema id.
fn avro_example(config: &Path) -> anyhow::Result<(EmbeddedRegistry, u32)> {
    let registry = EmbeddedRegistry::start()?;
    let id = registry.register(&format!("{TOPIC}-value"), &crate::generate::avro_schema());
    let text = std::fs::read_to_string(config)?;
    let source_end = "event_time = \"ts\"\n";
    anyhow::ensure!(
        text.contains("schema = \"schema.toml\"\n") && text.contains(source_end),
        "the example's [source] names its schema file and event time"
    );
    let text = text
        .replace("schema = \"schema.toml\"\n", "format = \"avro\"\n")
        .replacen(
            source_end,
            &format!(
                "{source_end}\n[source.schema_registry]\nurl = {:?}\n",
                registry.url
            ),
            1,
        );
    std::fs::write(config, text)?;
    Ok((registry, id))
}

pub fn write_example(dir: &Path) -> anyhow::Result<PathBuf> {
    for (name, text) in FILES {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("files are in a directory"))?;
        std::fs::write(&path, text)?;
    }
    Ok(dir.join("pipeline.toml"))
}

impl std::fmt::Display for QuickstartReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.summary;
        let g = &self.generated;
        writeln!(
            f,
            "weir quickstart: {} events in {:.1} s ({:.0} events/s, {:.1} MB/s)",
            s.events_in,
            s.elapsed_seconds,
            s.events_per_second,
            s.bytes_in as f64 / 1e6 / s.elapsed_seconds.max(1e-9)
        )?;
        writeln!(
            f,
            "  generated     {} events: {} valid, {} malformed",
            g.events,
            g.valid,
            g.events - g.valid
        )?;
        for (name, d) in &s.datasets {
            writeln!(
                f,
                "  dataset {name:<22} {:>9} rows {:>5} files {:>4} partitions  {}",
                d.rows, d.files, d.partitions, d.url
            )?;
            if let Some(open) = d.open_window_groups {
                writeln!(
                    f,
                    "    {open} groups of windows not yet closed by the watermark stay in its state"
                )?;
            }
        }
        if let Some(watermark) = s
            .watermark_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
        {
            let lag = (chrono::Utc::now() - watermark).as_seconds_f64();
            let time = watermark.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            writeln!(f, "  watermark     {time} ({lag:.0} s behind the clock)")?;
        }
        if let (Some(page), Some(metrics)) = (&self.status_page, &self.metrics) {
            writeln!(f, "  status page   {page}  (metrics {metrics})")?;
        }
        let dead: u64 = s.dead_letters.values().sum();
        writeln!(f, "  dead letters  {dead:>9}  {}", s.dead_letter_target)?;
        for (reason, count) in &s.dead_letters {
            writeln!(f, "    {reason:<32} {count:>7}")?;
        }
        write!(
            f,
            "  read them:    duckdb -c \"SELECT count(*) FROM read_parquet('{}/clicks/**/*.parquet', hive_partitioning = true)\"",
            self.out.display()
        )
    }
}
