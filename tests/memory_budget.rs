//! The memory budget under load: 80 Kafka partitions, 500 distinct partition paths and
//! incompressible payloads, twice as much data as `max_memory`, with checkpoints due only
//! once an hour. Only the budget makes weir checkpoint, and its memory stays within the
//! budget plus a stated constant.

mod common;

use std::path::Path;
use std::time::Duration;

use common::kafka::committed_total;
use common::net::{http_get, serving_port, wait_until};
use common::process::{Process, weir, weirtest};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const EVENTS: usize = 256_000;
/// The embedded cluster keeps about 5 MiB per partition (and drops older data): 80 of them
/// hold the 270 MiB, 3.4 MiB each.
const PARTITIONS: i32 = 80;
const PATHS: usize = 500;
const BUDGET_MIB: u64 = 128;

/// How far past `max_memory` weir's memory may go: the budget is checked after each batch,
/// a batch (`max_batch_bytes`, 2 MiB here, decoded, transformed and written) carries it over
/// by a few MiB, and so does closing the open files at the checkpoint that follows.
const OVERSHOOT_MIB: u64 = 32;

#[test]
fn peak_memory_stays_within_the_budget_and_a_constant() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "soak";
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    cluster
        .create_topic(topic, PARTITIONS, 1)
        .expect("creating the topic");
    let bootstrap = cluster.bootstrap_servers();
    let payload_mib = produce(&bootstrap, topic) >> 20;
    assert!(
        payload_mib > 2 * BUDGET_MIB,
        "too little data to prove a bound"
    );

    let config = pipeline(dir.path(), &bootstrap, topic);
    let mut command = weir();
    command.args(["run", "--config"]).arg(&config);
    let mut weir = Process::start("weir", command, dir.path().join("weir.log"));
    let port = serving_port(&mut weir);
    let mut peak_sampled = 0;
    wait_until(
        "every event to be consumed",
        Duration::from_secs(600),
        || {
            weir.assert_running();
            let (status, metrics) = http_get(port, "/metrics");
            assert_eq!(status, 200, "{metrics}");
            peak_sampled = peak_sampled.max(metric(&metrics, "weir_memory_bytes"));
            metric(&metrics, "weir_consumed_messages_total") == EVENTS as u64
        },
    );
    let resident = Resident::of(&weir);
    // Nothing but the budget makes weir checkpoint before the hour is up.
    let group = format!("weir-test-{topic}");
    let committed = committed_total(&bootstrap, &group, topic, PARTITIONS);
    let status = weir.terminate(Duration::from_secs(120));
    assert!(status.success(), "{}", weir.log_text());
    assert!(
        committed >= EVENTS as i64 / 2,
        "{committed} of {EVENTS} events committed before shutdown: the budget forced too few \
         checkpoints"
    );
    assert_eq!(
        committed_total(&bootstrap, &group, topic, PARTITIONS),
        EVENTS as i64
    );
    let files = count_files(&dir.path().join("out/by_value"));
    assert!(files >= PATHS, "{files} files for {PATHS} partition paths");
    let out = dir.path().join("out/by_value");
    let read = weirtest(&[
        "distinct",
        "--path",
        out.to_str().unwrap(),
        "--column",
        "id",
    ]);
    assert_eq!(
        read.trim(),
        format!(r#"{{"rows": {EVENTS}, "distinct": {EVENTS}}}"#),
        "every event once"
    );

    let log = weir.log_text();
    for line in log.lines().filter(|l| l.contains("max_memory")) {
        eprintln!("{line}");
    }
    // What `max_memory` counts: resident memory that no file backs (the code is mapped).
    let peak_mib = resident.peak_kib.saturating_sub(resident.file_kib) >> 10;
    eprintln!(
        "max_memory {BUDGET_MIB} MiB, {payload_mib} MiB of payloads: peak resident memory \
         {} MiB, of which {peak_mib} MiB not code; peak of weir_memory_bytes {} MiB",
        resident.peak_kib >> 10,
        peak_sampled >> 20
    );
    assert!(
        peak_mib <= BUDGET_MIB + OVERSHOOT_MIB,
        "peak resident memory but code {peak_mib} MiB, over max_memory ({BUDGET_MIB} MiB) + \
         {OVERSHOOT_MIB} MiB"
    );
    // The gauge shows what the system counts (the file-backed part moves by a few MiB).
    assert!(
        peak_sampled >> 20 <= peak_mib + 8,
        "{} MiB",
        peak_sampled >> 20
    );
}

/// The value of an unlabelled-by-dataset metric in a Prometheus scrape (summed over lines).
fn metric(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A process's resident memory from `/proc/<pid>/status`, in KiB: the peak (`VmHWM`) and the
/// part that is its mapped files, the binary's code above all (`RssFile`).
struct Resident {
    peak_kib: u64,
    file_kib: u64,
}

impl Resident {
    fn of(process: &Process) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{}/status", process.child.id()))
            .expect("the process's status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in\n{status}"))
        };
        Self {
            peak_kib: field("VmHWM:"),
            file_kib: field("RssFile:"),
        }
    }
}

/// Produces the events: one of `PATHS` values each, with a padding of random hex (which
/// Parquet cannot shrink much). Returns the payload bytes.
fn produce(bootstrap: &str, topic: &str) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("a producer");
    let mut bytes = 0;
    let (mut raw, mut pad) = ([0u8; PAD_BYTES / 2], String::with_capacity(PAD_BYTES));
    for id in 0..EVENTS {
        let pad = random_hex(&mut raw, &mut pad);
        let payload = format!(
            r#"{{"id":{id},"c":"v-{}","pad":"{pad}","ts":"2026-11-25T10:00:00Z"}}"#,
            id % PATHS
        );
        bytes += payload.len() as u64;
        let key = id.to_string();
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("delivering the events");
    bytes
}

/// Hex characters of padding per event: about 1 KiB each.
const PAD_BYTES: usize = 1024;

fn random_hex<'a>(raw: &mut [u8], pad: &'a mut String) -> &'a str {
    use std::fmt::Write;
    rand::fill(raw);
    pad.clear();
    for byte in raw.iter() {
        write!(pad, "{byte:02x}").unwrap();
    }
    pad
}

fn pipeline(dir: &Path, bootstrap: &str, topic: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("sql")).unwrap();
    std::fs::write(
        dir.join("schema.toml"),
        r#"
        [[fields]]
        name = "id"
        type = "int64"
        required = true
        [[fields]]
        name = "c"
        type = "string"
        required = true
        [[fields]]
        name = "pad"
        type = "string"
        [[fields]]
        name = "ts"
        type = "timestamp"
        required = true
        "#,
    )
    .unwrap();
    std::fs::write(
        dir.join("sql/by_value.sql"),
        "SELECT id, c AS value, pad, ts FROM events",
    )
    .unwrap();
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            name = "soak"
            [source]
            bootstrap_servers = "{bootstrap}"
            topics = ["{topic}"]
            group_id = "weir-test-{topic}"
            table = "events"
            schema = "schema.toml"
            event_time = "ts"
            max_batch_bytes = "2MiB"
            [[transforms]]
            name = "by_value"
            sql = "sql/by_value.sql"
            [transforms.sink]
            url = "{out}/by_value"
            partition_by = [{{ name = "c", expr = "value" }}]
            max_partitions_per_checkpoint = 100000
            [dead_letters]
            url = "{out}/dead_letters"
            [delivery]
            commit_interval = "1h"
            max_buffered = "4GiB"
            max_memory = "{BUDGET_MIB}MiB"
            max_query_memory = "32MiB"
            "#,
            out = dir.join("out").display(),
        ),
    )
    .unwrap();
    config
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => count_files(&e.path()),
                    _ => 1,
                })
                .sum()
        })
        .unwrap_or(0)
}
