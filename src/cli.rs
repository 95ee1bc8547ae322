//! The command line: what each command takes, and running it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::bench::BenchOptions;
use crate::bench::shapes::{Shape, Variation};
use crate::config::PayloadFormat;
use crate::generate::{Generator, GeneratorOptions};
use crate::{bench, commands, lag, quickstart, sample};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Kafka to partitioned Parquet on object storage, reshaped with SQL"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline as a service until SIGINT or SIGTERM.
    Run {
        /// The pipeline file.
        #[arg(long, short)]
        config: PathBuf,
        /// Where to serve the status page, /metrics, /healthz and /readyz ("off" for
        /// nowhere); overrides `[telemetry] listen`.
        #[arg(long, env = "WEIR_LISTEN")]
        listen: Option<String>,
    },
    /// Check a pipeline file, its schema and SQL without writing anything (Avro and Protobuf
    /// pipelines ask their schema registry).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also read each dataset's commit log and compare the columns the config would write
        /// with those it recorded last.
        #[arg(long)]
        datasets: bool,
    },
    /// Write and try SQL transforms without deploying: plan them, run them over a sample.
    Sql {
        #[command(subcommand)]
        command: SqlCommand,
    },
    /// Check datasets against their commit logs: every committed file present and whole,
    /// offset ranges without gap or overlap, commits only from partition owners, nothing
    /// visible that is not committed. Exits non-zero when any of it does not hold.
    Verify {
        /// Verify every dataset of this pipeline (outputs and dead letters).
        #[arg(long, short, required_unless_present = "urls")]
        config: Option<PathBuf>,
        /// Dataset URLs to verify (file://, s3://, gs://, az:// or a local path).
        urls: Vec<String>,
        /// Storage option for the URLs, as object_store's key=value (e.g.
        /// aws_endpoint=http://127.0.0.1:9000); credentials come from the environment.
        /// Checked by `weir verify` itself, so that a malformed one is not echoed: it may
        /// hold a secret.
        #[arg(long = "storage", value_name = "KEY=VALUE")]
        storage: Vec<String>,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// How far each dataset trails the log, per partition, from the brokers and the commit
    /// logs (works while the service is down). Exits non-zero past any given threshold.
    Lag {
        #[arg(long, short)]
        config: PathBuf,
        /// Messages a partition may trail the log end by.
        #[arg(long)]
        max_offset_lag: Option<i64>,
        /// How far a dataset's committed watermark may trail the clock, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        max_watermark_lag: Option<Duration>,
        /// How long ago a partition's last commit may be, e.g. 2m.
        #[arg(long, value_parser = humantime::parse_duration)]
        max_commit_age: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// The example pipeline on an embedded Kafka cluster with generated events.
    Quickstart {
        /// Events to generate; without it, runs until Ctrl-C.
        #[arg(long)]
        events: Option<u64>,
        /// Where the datasets are written.
        #[arg(long, default_value = "weir-quickstart")]
        out: PathBuf,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        generator: GeneratorArgs,
        /// Partitions of the embedded topic.
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        /// Where to serve the status page and metrics; another free port when 9464 is taken.
        #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:9464")]
        listen: String,
        /// Events per second without --events (at most 1000), with event times that follow
        /// the clock.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// `avro`: the same events in Confluent-framed Avro, their schema in a registry
        /// inside weir.
        #[arg(long, value_enum, default_value = "json")]
        format: PayloadFormat,
    },
    /// Produce generated click-stream events into a Kafka cluster.
    Generate {
        #[arg(long)]
        bootstrap_servers: String,
        #[arg(long, default_value = "clickstream")]
        topic: String,
        /// Events to produce; without it, produces until Ctrl-C.
        #[arg(long)]
        events: Option<u64>,
        /// Events per second at most; as fast as the cluster takes them without it.
        #[arg(long)]
        rate: Option<u64>,
        /// Spread the events' times evenly over this long before now (with --events), e.g.
        /// 4h for a backlog of several hours; otherwise they start an hour ago, 10 ms apart.
        #[arg(long, requires = "events", value_parser = humantime::parse_duration)]
        event_time_span: Option<Duration>,
        /// The events' encoding: JSON, or Confluent-framed Avro or Protobuf whose schema is
        /// registered as `<topic>-value` in --schema-registry.
        #[arg(long, value_enum, default_value = "json")]
        format: PayloadFormat,
        /// The schema registry's URL, for --format avro and protobuf.
        #[arg(long, required_if_eq_any([("format", "avro"), ("format", "protobuf")]))]
        schema_registry: Option<String>,
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    /// Measure what weir's own process spends per event: each pipeline shape run by `weir run`
    /// in a process of its own, beside a bare consumer of the same topic (and optionally
    /// other weir binaries and the Python peer). The embedded cluster runs in a process of
    /// its own; --bootstrap-servers and --topic measure against yours instead.
    Bench {
        /// Events to produce into the embedded cluster.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Partitions of the embedded cluster's topic.
        #[arg(long, default_value_t = 96)]
        partitions: i32,
        /// Measured runs of each program: figures are medians, with the lowest and highest.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The pipeline shapes to measure.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "stateless,quickstart,windows"
        )]
        shapes: Vec<Shape>,
        /// Groups the windowed shape keeps open (at most one per event).
        #[arg(long, default_value_t = 1_000_000)]
        groups: u64,
        /// Distinct partition paths of the stateless shape, by `user_id`, instead of hours.
        #[arg(long)]
        paths: Option<u64>,
        /// Payload bytes of each generated event (about 260 without).
        #[arg(long)]
        event_bytes: Option<usize>,
        /// An existing cluster to measure against, with --topic (fill the topic with
        /// `weir generate` first): every event the topic holds is read.
        #[arg(long, requires = "topic")]
        bootstrap_servers: Option<String>,
        #[arg(long, requires = "bootstrap_servers")]
        topic: Option<String>,
        /// Another weir binary measured beside this one, as LABEL=PATH (repeatable).
        #[arg(long = "weir", value_name = "LABEL=PATH")]
        binaries: Vec<String>,
        /// A Python interpreter with confluent-kafka and pyarrow: measures the Python peer
        /// (bench/python_peer.py) too.
        #[arg(long)]
        python: Option<PathBuf>,
        /// CPUs the measured programs run on, in taskset's syntax (0, or 0-1).
        #[arg(long)]
        cpus: Option<String>,
        /// Fail when a target is missed.
        #[arg(long)]
        check: bool,
        /// Keep the written datasets and the programs' logs here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// `avro`: also measure each shape on the same events as Confluent-framed Avro, their
        /// schema in a registry inside the benchmark.
        #[arg(long, value_enum, default_value = "json")]
        format: PayloadFormat,
        /// Benchmark the windowed aggregation alone instead, with this many groups open.
        #[arg(long, value_name = "GROUPS")]
        windows: Option<u64>,
        /// Benchmark the decoders alone instead: the same events as JSON, Avro and Protobuf,
        /// each decoded on one thread (best of --runs).
        #[arg(long, conflicts_with = "windows")]
        decoders: bool,
        #[arg(long)]
        json: bool,
    },
    /// The benchmark's embedded cluster, in a process of its own: prints its bootstrap
    /// servers, serves until stdin closes.
    #[command(hide = true)]
    BenchCluster {
        #[arg(long)]
        partitions: i32,
    },
    /// The benchmark's bare consumer: reads EVENTS messages and only counts them.
    #[command(hide = true)]
    BenchConsume {
        #[arg(long)]
        bootstrap_servers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        events: u64,
    },
}

#[derive(Subcommand)]
enum SqlCommand {
    /// Run the golden tests (`*.test.toml` next to the SQL files): each a sample and the rows
    /// a transform must produce from it. Exits non-zero when any fails.
    Test {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Plan every transform against the declared schema, touching neither Kafka nor storage;
    /// print each one's output schema, and for windowed ones the window, the lateness and
    /// what their state grows with.
    Check {
        /// The pipeline file.
        config: PathBuf,
    },
    /// Run the transforms over a sample file (one JSON message per line) exactly as the
    /// service would: validation, event time, watermarks, windows, late events and dead
    /// letters, without Kafka or the pipeline's storage.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// The sample: one message payload per line (JSON Lines).
        #[arg(long, short)]
        input: PathBuf,
        /// Only this transform's rows.
        #[arg(long, short)]
        transform: Option<String>,
        #[arg(long, value_enum, default_value_t = sample::Format::Table)]
        format: sample::Format,
        /// The directory for --format parquet.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Messages between two checkpoints, as the service takes a commit interval's worth:
        /// windows are emitted and late events told at checkpoints.
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
}

#[derive(clap::Args)]
struct GeneratorArgs {
    /// Seed of the generated events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of malformed messages, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.01)]
    malformed_ratio: f64,
    /// Maximum out-of-orderness of event times, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_disorder: Duration,
}

impl GeneratorArgs {
    fn options(&self) -> GeneratorOptions {
        GeneratorOptions {
            seed: self.seed,
            malformed_ratio: self.malformed_ratio,
            max_disorder: self.max_disorder,
            ..GeneratorOptions::default()
        }
    }
}

/// Parses the command line, runs the command and says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let result = runtime.block_on(execute(cli.command, cli.log_format));
    // Everything was committed and flushed; a Kafka client still closing (say against an
    // unreachable broker) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", with_causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and each of its causes once: most of weir's errors already name their cause in
/// their own message, which `{:#}` would print a second time.
fn with_causes(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The log level when `WEIR_LOG` does not say: the quickstart and bench print a report on
/// stdout, so their logs stay at warnings.
fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Run { .. } | Command::Generate { .. } => "info",
        _ => "warn",
    }
}

/// Logs to stderr as text or JSON lines, filtered by `WEIR_LOG` (else `default`); spans also
/// go to `tracer` when there is one.
pub(crate) fn init_logging(
    format: LogFormat,
    default: &str,
    tracer: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;
    let filter = EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal, not in journald or files.
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let spans = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t.tracer("weir")));
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(spans)
        .init();
}

/// A channel that turns true on SIGINT or SIGTERM.
pub(crate) fn shutdown_signal() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Runs `command`; logging is set up first (by `weir run` itself, which may send spans to a
/// collector).
async fn execute(command: Command, log_format: LogFormat) -> anyhow::Result<()> {
    let level = default_log_level(&command);
    if !matches!(command, Command::Run { .. }) {
        init_logging(log_format, level, None);
    }
    match command {
        Command::Run { config, listen } => {
            commands::run::run(&config, listen, log_format, level).await
        }
        Command::Check { config, datasets } => commands::check::run(&config, datasets).await,
        Command::Sql { command } => match command {
            SqlCommand::Test { config } => commands::sql::test(&config).await,
            SqlCommand::Check { config } => commands::sql::check(&config).await,
            SqlCommand::Run {
                config,
                input,
                transform,
                format,
                out,
                batch,
            } => {
                commands::sql::run(&config, &input, transform.as_deref(), format, out, batch).await
            }
        },
        Command::Verify {
            config,
            urls,
            storage,
            json,
        } => commands::verify::run(config.as_deref(), &urls, storage, json).await,
        Command::Lag {
            config,
            max_offset_lag,
            max_watermark_lag,
            max_commit_age,
            json,
        } => {
            let thresholds = lag::Thresholds {
                max_offset_lag,
                max_watermark_lag,
                max_commit_age,
            };
            commands::lag::run(&config, thresholds, json).await
        }
        Command::Quickstart {
            events,
            out,
            json,
            generator,
            partitions,
            listen,
            rate,
            format,
        } => {
            let options = quickstart::QuickstartOptions {
                format,
                events,
                out,
                partitions,
                listen,
                rate,
                generator: generator.options(),
            };
            commands::quickstart::run(options, json).await
        }
        Command::Generate {
            bootstrap_servers,
            topic,
            events,
            rate,
            event_time_span,
            format,
            schema_registry,
            generator,
        } => {
            let mut options = generator.options();
            if let (Some(span), Some(events)) = (event_time_span, events) {
                let span_ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
                options.step_ms = (span_ms / events.max(1) as i64).max(1);
                options.start_ms = chrono::Utc::now().timestamp_millis() - span_ms;
            }
            let mut generator = Generator::new(options);
            if format != PayloadFormat::Json {
                let url = schema_registry.expect("clap requires it with --format avro or protobuf");
                generator = commands::generate::registered(generator, format, &url, &topic).await?;
            }
            commands::generate::run(bootstrap_servers, topic, events, rate, generator).await
        }
        Command::Bench {
            events,
            windows: Some(groups),
            json,
            ..
        } => commands::bench::windows(events, groups, json).await,
        Command::Bench {
            events,
            runs,
            decoders: true,
            json,
            ..
        } => commands::bench::decoders(events, runs, json).await,
        Command::Bench {
            events,
            partitions,
            runs,
            shapes,
            groups,
            paths,
            event_bytes,
            bootstrap_servers,
            topic,
            binaries,
            python,
            cpus,
            check,
            out,
            format,
            json,
            windows: None,
            decoders: false,
        } => {
            if format == PayloadFormat::Protobuf {
                anyhow::bail!(
                    "`weir bench --format` takes json or avro; `weir bench --decoders` measures \
                     Protobuf decoding beside them"
                );
            }
            let options = BenchOptions {
                events,
                partitions,
                runs,
                shapes,
                variation: Variation { paths, groups },
                event_bytes,
                external: bootstrap_servers.zip(topic),
                binaries: commands::bench::labelled_binaries(&binaries)?,
                python,
                cpus,
                out,
                avro: format == PayloadFormat::Avro,
            };
            commands::bench::pipelines(options, check, json).await
        }
        Command::BenchCluster { partitions } => bench::cluster::serve_cluster(partitions),
        Command::BenchConsume {
            bootstrap_servers,
            topic,
            group,
            events,
        } => bench::cluster::raw_consume(&bootstrap_servers, &topic, &group, events),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the log: {source}")]
    struct Naming {
        source: std::io::Error,
    }

    #[test]
    fn an_error_that_names_its_cause_prints_it_once() {
        let named = anyhow::Error::from(Naming {
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(with_causes(&named), "cannot open the log: disk full");
        let context =
            anyhow::Error::from(std::io::Error::other("disk full")).context("dataset `a`");
        assert_eq!(with_causes(&context), "dataset `a`: disk full");
    }
}
