//! `weir bench`: what weir's own process spends per event, beside the raw consume rate of the
//! same topic and a hand-written Python consumer doing the stateless job.
//!
//! Every measured program runs as a process of its own and is measured from outside (see
//! [`process`]): `weir run` exactly as a service runs it, on pipelines of three shapes
//! ([`shapes`]); a bare consumer reading the same topic (`weir bench-consume`); the Python
//! peer; and, for side-by-side figures, other weir binaries given with `--weir`. The embedded
//! cluster runs in a process of its own too (`weir bench-cluster`), so its threads are not
//! counted; `--bootstrap-servers` measures against an existing cluster instead.
//!
//! A measurement starts at the first message the program reads, so that joining the consumer
//! group does not count, and ends when it has exited after reading every event, so that its
//! last commit counts. Runs of the measured programs are interleaved, so that a machine
//! getting slower or faster during the benchmark affects them alike.

pub mod cluster;
mod decoders;
pub mod process;
pub mod shapes;
mod windows;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::embedded_registry::EmbeddedRegistry;
use crate::generate::{Generator, GeneratorOptions, produce};
use process::Measured;
use shapes::{Shape, Target, Variation};

pub use decoders::{DecoderBenchReport, bench_decoders};
pub use windows::{WindowBenchReport, bench_windows};

/// What a mock-cluster partition holds safely (it deletes past ~5 MiB).
const PARTITION_CAPACITY: u64 = 4 << 20;
/// How long the producer filling the topic waits to fill a batch.
const FILL_LINGER: Duration = Duration::from_millis(100);
/// The longest a measured program may take to read the topic.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// How often a starting pipeline is asked whether it has its partitions.
const READY_POLL: Duration = Duration::from_millis(2);
/// The shortest wait between two reads of a pipeline's progress from its metrics.
const PROGRESS_POLL: Duration = Duration::from_millis(10);
/// The Python peer, compiled in so the benchmark runs from any directory.
const PYTHON_PEER: &str = include_str!("../../bench/python_peer.py");

/// What to measure.
pub struct BenchOptions {
    pub events: u64,
    pub partitions: i32,
    /// Measured runs of each program.
    pub runs: usize,
    pub shapes: Vec<Shape>,
    pub variation: Variation,
    /// Payload size of the generated events (the generator's own, about 260 bytes, without).
    pub event_bytes: Option<usize>,
    /// An existing cluster and topic instead of the embedded cluster.
    pub external: Option<(String, String)>,
    /// The weir binaries to measure, each with a label; this one when empty.
    pub binaries: Vec<(String, PathBuf)>,
    /// A Python interpreter with confluent-kafka and pyarrow, to run the peer.
    pub python: Option<PathBuf>,
    /// CPUs the measured programs may run on (`taskset -c` syntax).
    pub cpus: Option<String>,
    /// Keep the written datasets and logs here.
    pub out: Option<PathBuf>,
    /// Also measure each weir shape on a topic of the same events in Confluent-framed Avro,
    /// their schema in an embedded registry.
    pub avro: bool,
}

/// The figures of one measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub megabytes_per_second: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million_events: f64,
    pub peak_rss_bytes: u64,
}

/// Median, lowest and highest of one figure over the runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Self {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }
}

/// One measured program over all its runs.
#[derive(Debug, Serialize)]
pub struct Measurement {
    pub name: String,
    pub events_per_second: Spread,
    pub megabytes_per_second: Spread,
    pub cpu_seconds_per_million_events: Spread,
    pub peak_rss_bytes: Spread,
    /// weir's CPU while it read, by kind of thread: the share of each over all runs.
    pub cpu_share_by_thread: BTreeMap<String, f64>,
    pub runs: Vec<RunFigures>,
}

/// A target the figures are held to.
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: f64,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub cluster: String,
    pub topic: String,
    pub partitions: usize,
    pub events: u64,
    pub bytes_per_event: f64,
    pub cpus: Option<String>,
    pub variation: Variation,
    pub measurements: Vec<Measurement>,
    pub targets: Vec<TargetCheck>,
}

impl BenchReport {
    /// Whether every target was met.
    pub fn targets_met(&self) -> bool {
        self.targets.iter().all(|t| t.met)
    }
}

/// One program to measure, and how.
enum Program {
    /// A bare consumer of the topic, or of the Avro topic.
    Raw {
        avro: bool,
    },
    Weir {
        label: String,
        binary: PathBuf,
        shape: Shape,
        /// Reads the Avro topic.
        avro: bool,
    },
    Python(PathBuf),
}

impl Program {
    fn name(&self) -> String {
        match self {
            Program::Raw { avro: false } => "raw consume".to_owned(),
            Program::Raw { avro: true } => "raw consume avro".to_owned(),
            Program::Weir {
                label, shape, avro, ..
            } => format!(
                "{label} {}{}",
                shape.label(),
                if *avro { " avro" } else { "" }
            ),
            Program::Python(_) => "python peer".to_owned(),
        }
    }
}

pub async fn bench(options: BenchOptions) -> anyhow::Result<BenchReport> {
    tokio::task::spawn_blocking(move || bench_blocking(&options)).await?
}

fn bench_blocking(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let this = std::env::current_exe().context("finding weir's own binary")?;
    let scratch = tempfile::tempdir()?;
    let work = options
        .out
        .clone()
        .unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&work)?;

    if options.avro && options.external.is_some() {
        bail!("--format avro needs the embedded cluster: it fills an Avro topic of its own");
    }
    let registry = match options.avro {
        true => Some(EmbeddedRegistry::start()?),
        false => None,
    };
    let (_cluster, bootstrap, topic, cluster_name) = match &options.external {
        Some((bootstrap, topic)) => (None, bootstrap.clone(), topic.clone(), bootstrap.clone()),
        None => {
            let cluster = start_embedded(&this, options, &work, registry.as_ref())?;
            let bootstrap = cluster.bootstrap_servers.clone();
            let name = format!(
                "embedded, 3 brokers, in a process of its own ({} partitions)",
                options.partitions
            );
            (
                Some(cluster),
                bootstrap,
                cluster::BENCH_TOPIC.to_owned(),
                name,
            )
        }
    };
    let partitions = cluster::topic_partitions(&bootstrap, &topic)?;
    let events = partitions.iter().map(|p| p.1 - p.0).sum::<i64>() as u64;
    if events == 0 {
        bail!("topic {topic} holds no events: produce some first, e.g. with `weir generate`");
    }

    let mut programs = vec![Program::Raw { avro: false }];
    if options.avro {
        programs.push(Program::Raw { avro: true });
    }
    let binaries = if options.binaries.is_empty() {
        vec![("weir".to_owned(), this.clone())]
    } else {
        options.binaries.clone()
    };
    let formats: &[bool] = if options.avro {
        &[false, true]
    } else {
        &[false]
    };
    for shape in &options.shapes {
        for &avro in formats {
            for (label, binary) in &binaries {
                programs.push(Program::Weir {
                    label: label.clone(),
                    binary: binary.clone(),
                    shape: *shape,
                    avro,
                });
            }
        }
    }
    if let Some(python) = &options.python {
        let peer = work.join("python_peer.py");
        std::fs::write(&peer, PYTHON_PEER)?;
        programs.push(Program::Python(python.clone()));
    }

    let context = RunContext {
        this: &this,
        bootstrap: &bootstrap,
        topic: &topic,
        events,
        cpus: options.cpus.as_deref(),
        variation: options.variation,
        work: &work,
        registry: registry.as_ref().map(|r| r.url.as_str()),
    };
    let mut runs: Vec<Vec<Sample>> = programs.iter().map(|_| Vec::new()).collect();
    for run in 0..options.runs {
        for (program, samples) in programs.iter().zip(&mut runs) {
            eprintln!(
                "weir bench: run {} of {}: {}",
                run + 1,
                options.runs,
                program.name()
            );
            let sample = context
                .measure(program, run)
                .with_context(|| format!("measuring {}", program.name()))?;
            samples.push(sample);
        }
    }

    // The topic's payload bytes are what the raw consumer counted.
    let bytes_per_event = runs[0][0].bytes as f64 / runs[0][0].events.max(1) as f64;
    let measurements: Vec<Measurement> = programs
        .iter()
        .zip(runs)
        .map(|(program, samples)| measurement(program.name(), &samples, bytes_per_event))
        .collect();
    let targets = targets(&programs, &measurements);
    Ok(BenchReport {
        cluster: cluster_name,
        topic,
        partitions: partitions.len(),
        events,
        bytes_per_event,
        cpus: options.cpus.clone(),
        variation: options.variation,
        measurements,
        targets,
    })
}

/// Starts the embedded cluster in a process of its own and fills its topic; with
/// `registry`, its Avro topic too, with the same events.
fn start_embedded(
    this: &Path,
    options: &BenchOptions,
    work: &Path,
    registry: Option<&EmbeddedRegistry>,
) -> anyhow::Result<cluster::ClusterProcess> {
    let generator = Generator::new(GeneratorOptions {
        event_bytes: options.event_bytes,
        ..GeneratorOptions::default()
    });
    let average = generator.event(0).payload.len() as u64 + 8;
    let capacity = options.partitions as u64 * PARTITION_CAPACITY;
    if options.events * average > capacity {
        bail!(
            "{} events of ~{average} bytes do not fit the embedded cluster's retention with {} \
             partitions; use --partitions {} or fewer --events",
            options.events,
            options.partitions,
            (options.events * average).div_ceil(PARTITION_CAPACITY)
        );
    }
    let cluster =
        cluster::ClusterProcess::start(this, options.partitions, &work.join("cluster.log"))?;
    eprintln!(
        "weir bench: producing {} events into {} partitions",
        options.events, options.partitions
    );
    // Large batches, whatever the generator's pace: the embedded cluster reads a partition
    // slower the more batches it holds, and Avro events are slower to make than JSON ones.
    let fill = |topic: &str, generator: &Generator| {
        produce(
            &cluster.bootstrap_servers,
            topic,
            generator,
            Some(options.events),
            FILL_LINGER,
            &std::sync::atomic::AtomicBool::new(false),
            &|_| true,
        )
    };
    fill(cluster::BENCH_TOPIC, &generator)?;
    if let Some(registry) = registry {
        let subject = format!("{}-value", cluster::BENCH_AVRO_TOPIC);
        let id = registry.register(&subject, &crate::generate::avro_schema());
        eprintln!("weir bench: the same events as Avro (schema id {id})");
        fill(cluster::BENCH_AVRO_TOPIC, &generator.with_avro(id))?;
    }
    Ok(cluster)
}

/// What one run measured, before it becomes figures.
struct Sample {
    events: u64,
    bytes: u64,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    /// CPU seconds by kind of thread, for weir's runs.
    threads: BTreeMap<String, f64>,
}

struct RunContext<'a> {
    this: &'a Path,
    bootstrap: &'a str,
    topic: &'a str,
    events: u64,
    cpus: Option<&'a str>,
    variation: Variation,
    work: &'a Path,
    /// The embedded registry of the Avro topic's schema.
    registry: Option<&'a str>,
}

impl RunContext<'_> {
    /// A command for `program`, on the CPUs asked for.
    fn command(&self, program: &OsStr) -> Command {
        match self.cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpus]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn measure(&self, program: &Program, run: usize) -> anyhow::Result<Sample> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let slug = program.name().replace(' ', "-");
        let dir = self.work.join(format!("{slug}-{}", run + 1));
        std::fs::create_dir_all(&dir)?;
        let group = format!("weir-bench-{slug}-{stamp}");
        let log = dir.join("log.txt");
        match program {
            Program::Raw { avro } => {
                let topic = match avro {
                    true => cluster::BENCH_AVRO_TOPIC,
                    false => self.topic,
                };
                let mut command = self.command(self.this.as_os_str());
                command.args([
                    "bench-consume",
                    "--bootstrap-servers",
                    self.bootstrap,
                    "--topic",
                    topic,
                    "--group",
                    &group,
                    "--events",
                    &self.events.to_string(),
                ]);
                self.measure_reporting(Measured::spawn("the raw consumer", command, &log)?)
            }
            Program::Python(python) => {
                let mut command = self.command(python.as_os_str());
                command
                    .arg(self.work.join("python_peer.py"))
                    .args(["--bootstrap-servers", self.bootstrap, "--topic", self.topic])
                    .args(["--group", &group, "--events", &self.events.to_string()])
                    .arg("--out")
                    .arg(dir.join("out"));
                self.measure_reporting(Measured::spawn("the Python peer", command, &log)?)
            }
            Program::Weir {
                binary,
                shape,
                avro,
                ..
            } => {
                let (topic, registry) = match avro {
                    true => (cluster::BENCH_AVRO_TOPIC, self.registry),
                    false => (self.topic, None),
                };
                let config = shapes::write_pipeline(
                    &dir,
                    *shape,
                    self.variation,
                    &Target {
                        topic,
                        group: &group,
                        registry,
                    },
                )?;
                let listen = free_local_address()?;
                let mut command = self.command(binary.as_os_str());
                command
                    .arg("run")
                    .arg("--config")
                    .arg(&config)
                    .args(["--listen", &listen])
                    .env("KAFKA_BOOTSTRAP_SERVERS", self.bootstrap)
                    .env("WEIR_OUT", dir.join("out"))
                    .env_remove("WEIR_LISTEN");
                let child =
                    Measured::spawn(&format!("weir run ({})", binary.display()), command, &log)?;
                self.measure_pipeline(child, &listen)
            }
        }
    }

    /// A program that says `first` when its first messages arrive and `done EVENTS BYTES`
    /// (or `done EVENTS ROWS`) once it has read and handled every event.
    fn measure_reporting(&self, mut child: Measured) -> anyhow::Result<Sample> {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let (started, cpu_at_start) = loop {
            let (at, line) = child.next_line(deadline)?;
            if line == "first" {
                break (at, child.cpu_seconds()?);
            }
        };
        let (events, bytes) = loop {
            let (_, line) = child.next_line(deadline)?;
            if let Some(counts) = line.strip_prefix("done ") {
                let mut counts = counts.split_whitespace().map(str::parse::<u64>);
                let events = counts.next().context("done says how many events")??;
                let bytes = counts.next().transpose()?.unwrap_or(0);
                break (events, bytes);
            }
        };
        let log_tail = child.log_tail();
        let exit = child.reap(Duration::from_secs(60))?;
        if exit.code != Some(0) {
            bail!("it exited with {:?}{log_tail}", exit.code);
        }
        Ok(Sample {
            events,
            bytes,
            seconds: exit.at.duration_since(started).as_secs_f64(),
            cpu_seconds: exit.cpu_seconds - cpu_at_start,
            peak_rss_bytes: exit.peak_rss_bytes,
            threads: BTreeMap::new(),
        })
    }

    /// `weir run`: measured from when its partitions are assigned (`/readyz`), stopped with
    /// SIGTERM once its metrics say it has read every event; it then commits what it holds
    /// and exits.
    fn measure_pipeline(&self, mut child: Measured, listen: &str) -> anyhow::Result<Sample> {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let running = |child: &mut Measured| -> anyhow::Result<()> {
            child.check_running()?;
            if Instant::now() > deadline {
                bail!("it read too slowly{}", child.log_tail());
            }
            Ok(())
        };
        // The first fetch follows the assignment within milliseconds: counting every event
        // from here leaves out nothing the pipeline did with them.
        let (started, cpu_at_start, threads_at_start) = loop {
            running(&mut child)?;
            if http_get(listen, "/readyz").is_some_and(|(status, _)| status == 200) {
                break (Instant::now(), child.cpu_seconds()?, child.cpu_by_thread()?);
            }
            std::thread::sleep(READY_POLL);
        };
        // A scrape costs the pipeline about a millisecond of CPU: ask again when about half
        // of what is left should be read, at the rate so far.
        loop {
            running(&mut child)?;
            let read = consumed_messages(listen).unwrap_or(0);
            if read >= self.events {
                break;
            }
            let rate = read as f64 / started.elapsed().as_secs_f64().max(1e-3);
            let left = (self.events - read) as f64 / rate.max(1.0);
            let wait = Duration::from_secs_f64(left / 2.0);
            std::thread::sleep(wait.clamp(PROGRESS_POLL, Duration::from_secs(1)));
        }
        // Taken before the final checkpoint and exit, which the threads would not show.
        let cpu_read = child.cpu_seconds()? - cpu_at_start;
        let mut threads = child.cpu_by_thread()?;
        for (kind, seconds) in &mut threads {
            *seconds -= threads_at_start.get(kind).copied().unwrap_or(0.0);
        }
        let listed: f64 = threads.values().sum();
        threads.insert(ENDED_THREADS.to_owned(), (cpu_read - listed).max(0.0));
        child.terminate()?;
        let log_tail = child.log_tail();
        let exit = child.reap(Duration::from_secs(120))?;
        if exit.code != Some(0) {
            bail!("weir run exited with {:?}{log_tail}", exit.code);
        }
        Ok(Sample {
            events: self.events,
            bytes: 0,
            seconds: exit.at.duration_since(started).as_secs_f64(),
            cpu_seconds: exit.cpu_seconds - cpu_at_start,
            peak_rss_bytes: exit.peak_rss_bytes,
            threads,
        })
    }
}

/// In the CPU by thread: what threads that ended while weir read (writers of one batch) used.
const ENDED_THREADS: &str = "ended threads";

/// A loopback address with a port nobody listens on now.
fn free_local_address() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// `weir_consumed_messages_total` from the metrics served at `listen`.
fn consumed_messages(listen: &str) -> Option<u64> {
    let (_, text) = http_get(listen, "/metrics")?;
    text.lines()
        .find(|line| line.starts_with("weir_consumed_messages_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map(|value| value as u64)
}

/// The status code and the whole response of a GET of `path` at `listen`.
fn http_get(listen: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(listen).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: weir\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

fn measurement(name: String, samples: &[Sample], bytes_per_event: f64) -> Measurement {
    let runs: Vec<RunFigures> = samples
        .iter()
        .map(|s| {
            let seconds = s.seconds.max(1e-9);
            let events_per_second = s.events as f64 / seconds;
            RunFigures {
                events: s.events,
                seconds: s.seconds,
                events_per_second,
                megabytes_per_second: events_per_second * bytes_per_event / 1e6,
                cpu_seconds: s.cpu_seconds,
                cpu_seconds_per_million_events: s.cpu_seconds / s.events.max(1) as f64 * 1e6,
                peak_rss_bytes: s.peak_rss_bytes,
            }
        })
        .collect();
    Measurement {
        name,
        events_per_second: Spread::of(runs.iter().map(|r| r.events_per_second)),
        megabytes_per_second: Spread::of(runs.iter().map(|r| r.megabytes_per_second)),
        cpu_seconds_per_million_events: Spread::of(
            runs.iter().map(|r| r.cpu_seconds_per_million_events),
        ),
        peak_rss_bytes: Spread::of(runs.iter().map(|r| r.peak_rss_bytes as f64)),
        cpu_share_by_thread: shares(samples.iter().map(|s| &s.threads)),
        runs,
    }
}

/// Each kind of thread's share of the CPU time of all kinds together, over every run.
fn shares<'a>(runs: impl Iterator<Item = &'a BTreeMap<String, f64>>) -> BTreeMap<String, f64> {
    let mut total = BTreeMap::new();
    for run in runs {
        for (kind, seconds) in run {
            *total.entry(kind.clone()).or_insert(0.0) += seconds.max(0.0);
        }
    }
    let all: f64 = total.values().sum();
    if all > 0.0 {
        total.values_mut().for_each(|seconds| *seconds /= all);
    }
    total
}

/// The targets weir's figures are held to, for the first binary measured.
fn targets(programs: &[Program], measurements: &[Measurement]) -> Vec<TargetCheck> {
    let find = |wanted: &dyn Fn(&Program) -> bool| {
        programs
            .iter()
            .position(wanted)
            .map(|index| &measurements[index])
    };
    let first_label = programs.iter().find_map(|p| match p {
        Program::Weir { label, .. } => Some(label.clone()),
        _ => None,
    });
    let shape = |wanted: Shape| {
        let label = first_label.clone();
        find(
            &move |p: &Program| matches!(p, Program::Weir { label: l, shape, avro: false, .. } if Some(l) == label.as_ref() && *shape == wanted),
        )
    };
    let avro_shape = |wanted: Shape| {
        let label = first_label.clone();
        find(
            &move |p: &Program| matches!(p, Program::Weir { label: l, shape, avro: true, .. } if Some(l) == label.as_ref() && *shape == wanted),
        )
    };
    let raw = find(&|p| matches!(p, Program::Raw { avro: false }));
    let python = find(&|p| matches!(p, Program::Python(_)));
    let mut checks = Vec::new();
    let cpu = |m: &Measurement| m.cpu_seconds_per_million_events.median;
    if let Some(a) = shape(Shape::Stateless) {
        checks.push(TargetCheck {
            target: "a stateless: at most 1.0 CPU s per million events".into(),
            measured: cpu(a),
            met: cpu(a) <= 1.0,
        });
        if let Some(raw) = raw {
            let share = a.events_per_second.median / raw.events_per_second.median;
            checks.push(TargetCheck {
                target: "a stateless: at least 80 % of the raw consume rate".into(),
                measured: share * 100.0,
                met: share >= 0.8,
            });
        }
        if let Some(python) = python {
            let ratio = cpu(python) / cpu(a);
            checks.push(TargetCheck {
                target: "python peer: at least 20x the CPU per event of a stateless".into(),
                measured: ratio,
                met: ratio >= 20.0,
            });
        }
    }
    if let Some(b) = shape(Shape::Quickstart) {
        checks.push(TargetCheck {
            target: "b quickstart: at most 2.5 CPU s per million events".into(),
            measured: cpu(b),
            met: cpu(b) <= 2.5,
        });
    }
    for wanted in [Shape::Stateless, Shape::Quickstart, Shape::Windows] {
        if let (Some(json), Some(avro)) = (shape(wanted), avro_shape(wanted)) {
            checks.push(TargetCheck {
                target: format!(
                    "{} avro: less CPU per event than the same events in JSON (% of JSON's)",
                    wanted.label()
                ),
                measured: cpu(avro) / cpu(json) * 100.0,
                met: cpu(avro) < cpu(json),
            });
        }
    }
    checks
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = self.measurements.first().map_or(0, |m| m.runs.len());
        writeln!(
            f,
            "weir bench: {} events of {:.0} bytes in topic {} ({} partitions), cluster {}",
            self.events, self.bytes_per_event, self.topic, self.partitions, self.cluster
        )?;
        let v = &self.variation;
        writeln!(
            f,
            "  {runs} run(s) each, median (min to max){}; paths {}, window groups {}",
            self.cpus
                .as_ref()
                .map(|c| format!(", measured programs on CPUs {c}"))
                .unwrap_or_default(),
            v.paths.map_or("hourly".to_owned(), |p| p.to_string()),
            v.groups
        )?;
        writeln!(
            f,
            "  {:<26} {:>28} {:>9} {:>28} {:>14}",
            "", "events/s", "MB/s", "CPU s per million events", "peak RSS MiB"
        )?;
        let mib = |b: f64| b / f64::from(1 << 20);
        for m in &self.measurements {
            let e = &m.events_per_second;
            let c = &m.cpu_seconds_per_million_events;
            writeln!(
                f,
                "  {:<26} {:>9.0} ({:>7.0}-{:>7.0}) {:>9.1} {:>9.2} ({:>6.2}-{:>6.2}) {:>14.0}",
                m.name,
                e.median,
                e.min,
                e.max,
                m.megabytes_per_second.median,
                c.median,
                c.min,
                c.max,
                mib(m.peak_rss_bytes.median)
            )?;
            if !m.cpu_share_by_thread.is_empty() {
                let mut kinds: Vec<_> = m.cpu_share_by_thread.iter().collect();
                kinds.sort_by(|a, b| b.1.total_cmp(a.1));
                let kinds: Vec<String> = kinds
                    .iter()
                    .filter(|(_, share)| **share >= 0.005)
                    .map(|(kind, share)| format!("{kind} {:.0}%", *share * 100.0))
                    .collect();
                writeln!(f, "  {:<26} CPU by thread: {}", "", kinds.join(", "))?;
            }
        }
        for t in &self.targets {
            writeln!(
                f,
                "  target {}: {} ({:.2})",
                t.target,
                if t.met { "met" } else { "missed" },
                t.measured
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_the_median_with_the_extremes() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
    }
}
