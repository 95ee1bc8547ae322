//! The benchmark's Kafka side: the embedded cluster in a process of its own
//! (`weir bench-cluster`), the topic's extent, and the bare consumer the pipelines are
//! compared with (`weir bench-consume`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::quickstart::EmbeddedKafka;

/// The topic the benchmark fills on the embedded cluster.
pub const BENCH_TOPIC: &str = "bench";
/// The same events in Confluent-framed Avro, for `--format avro`.
pub const BENCH_AVRO_TOPIC: &str = "bench-avro";
/// The embedded cluster's brokers, as in the quickstart.
const BROKERS: i32 = 3;

/// `weir bench-cluster`: the embedded cluster with the benchmark's topic, until stdin closes.
/// Its bootstrap servers are the first line it prints.
pub fn serve_cluster(partitions: i32) -> anyhow::Result<()> {
    let kafka = EmbeddedKafka::start(BROKERS, BENCH_TOPIC, partitions)?;
    kafka.create_topic(BENCH_AVRO_TOPIC, partitions)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", kafka.bootstrap_servers())?;
    stdout.flush()?;
    // Whoever started it holds stdin; its end (even a crash) ends the cluster.
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}

/// The embedded cluster's process, stopped when dropped.
pub struct ClusterProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    pub bootstrap_servers: String,
}

impl ClusterProcess {
    pub fn start(weir: &Path, partitions: i32, log: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(weir)
            .args(["bench-cluster", "--partitions", &partitions.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting the embedded cluster")?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line)?;
        let bootstrap_servers = line.trim().to_owned();
        if bootstrap_servers.is_empty() {
            bail!(
                "the embedded cluster did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(Self {
            child,
            stdin,
            bootstrap_servers,
        })
    }
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The low and high offsets of every partition of `topic`.
pub fn topic_partitions(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<(i64, i64)>> {
    let consumer: BaseConsumer = weir_ingest::client_config(bootstrap, &Default::default())
        .create()
        .context("creating a client to read the topic's offsets")?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading the metadata of topic {topic}"))?;
    let Some(partitions) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|&n| n > 0)
    else {
        bail!("topic {topic} does not exist on {bootstrap}");
    };
    (0..partitions as i32)
        .map(|partition| {
            consumer
                .fetch_watermarks(topic, partition, timeout)
                .with_context(|| format!("reading the offsets of {topic}/{partition}"))
        })
        .collect()
}

/// `weir bench-consume`: reads `events` messages of `topic` and does nothing with them but
/// count their bytes, with the consumer settings weir's source uses. Prints `first` when the
/// first message arrives and `done EVENTS BYTES` at the end.
pub fn raw_consume(bootstrap: &str, topic: &str, group: &str, events: u64) -> anyhow::Result<()> {
    let consumer: BaseConsumer = weir_ingest::client_config(bootstrap, &Default::default())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "10")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()
        .context("creating the raw consumer")?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut stdout = std::io::stdout();
    let (mut count, mut bytes) = (0u64, 0u64);
    while count < events {
        if Instant::now() > deadline {
            bail!("read only {count} of {events} events in 15 minutes");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if count == 0 {
                    writeln!(stdout, "first")?;
                    stdout.flush()?;
                }
                count += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "raw consume error"),
            None => {}
        }
    }
    writeln!(stdout, "done {count} {bytes}")?;
    Ok(())
}
