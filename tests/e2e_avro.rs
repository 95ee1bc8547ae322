//! Confluent-framed Avro end to end: clicks produced by confluent-kafka's own AvroSerializer
//! (two schema versions registered mid-stream) into a real broker (Tansu), their schemas in
//! a schema registry with basic authentication, read by examples/avro/pipeline.toml and
//! checked field by field with DuckDB; every dead-letter reason; a registry outage; a
//! SIGKILL.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cli::{Committed, run_until_committed};
use common::kafka::{committed_total, start_tansu};
use common::net::{free_port, http_get, serving_port, wait_until};
use common::process::{Process, weir};
use common::registry::{Registry, verify_avro, verify_avro_file};
use common::repo;

const TOPIC: &str = "clicks";
const PARTITIONS: i32 = 3;

/// A broker, a registry, and where the expected rows are kept.
struct Setup {
    dir: tempfile::TempDir,
    broker: Process,
    bootstrap: String,
    registry: Registry,
    expected: PathBuf,
}

impl Setup {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let broker = start_tansu(dir.path(), port, false, "tansu.log");
        let registry = Registry::start(dir.path());
        let expected = dir.path().join("expected.json");
        Self {
            broker,
            bootstrap: format!("127.0.0.1:{port}"),
            registry,
            expected,
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Produces clicks (avrotest.py `produce` with `args`), the first time creating the topic.
    fn produce(&self, args: &[&str]) {
        let partitions = PARTITIONS.to_string();
        let mut all = args.to_vec();
        if !self.expected.exists() {
            all.extend(["--partitions", &partitions]);
        }
        self.registry
            .produce(&self.bootstrap, TOPIC, &self.expected, &all);
    }

    /// `weir run` of the Avro example.
    fn weir(&self) -> Command {
        self.weir_with(&repo().join("examples/avro/pipeline.toml"))
    }

    fn weir_with(&self, config: &Path) -> Command {
        let mut command = weir();
        command
            .args(["run", "--config"])
            .arg(config)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("TOPIC", TOPIC)
            .env("GROUP", format!("weir-test-{TOPIC}"))
            .env("WEIR_OUT", self.path().join("out"))
            .envs(self.registry.env());
        command
    }

    fn committed(&self) -> i64 {
        committed_total(
            &self.bootstrap,
            &format!("weir-test-{TOPIC}"),
            TOPIC,
            PARTITIONS,
        )
    }

    /// Runs `command` until all `messages` are committed, then stops it; returns its log.
    fn run_until_committed(&self, command: Command, log: &str, messages: i64) -> String {
        run_until_committed(
            command,
            self.path().join(log),
            Committed {
                bootstrap: &self.bootstrap,
                topic: TOPIC,
                partitions: PARTITIONS,
                messages,
                properties: &[],
            },
        )
    }

    fn verify(&self) -> serde_json::Value {
        verify_avro(&self.expected, &self.path().join("out"))
    }
}

#[test]
fn avro_of_two_schema_versions_lands_field_by_field_with_every_dead_letter_reason() {
    let mut setup = Setup::start();
    setup.produce(&["--malformed"]);
    let log = setup.run_until_committed(setup.weir(), "weir.log", 2 * 40 + 7);
    setup.broker.assert_running();
    let report = setup.verify();
    assert_eq!(report["rows"], 80, "{report}");
    assert_eq!(report["dead_letters"], 7, "{report}");
    // The Avro types keep their forms: a decimal stays exact, micros stay micros.
    let types = &report["types"];
    assert_eq!(types["amount"], "DECIMAL(10,2)", "{report}");
    assert_eq!(types["seen_at"], "TIMESTAMP WITH TIME ZONE", "{report}");
    assert_eq!(types["day"], "DATE", "{report}");
    assert_eq!(types["attrs"], "MAP(VARCHAR, VARCHAR)", "{report}");
    assert_eq!(types["raw"], "BLOB", "{report}");
    assert!(
        log.contains("Avro topics are read with subject `clicks-value` version 2"),
        "{log}"
    );
    let password = &setup.registry.env()[2].1;
    assert!(!log.contains(password.as_str()), "the password is logged");
}

/// Weir running with 30 clicks of version 1 committed, then 30 of version 2 produced while
/// the registry fails every schema lookup: returns it once `/readyz` says decoding waits,
/// with the port it serves on.
fn waiting_for_the_registry(setup: &Setup) -> (Process, u16) {
    // Version 2 is the reader schema from the start; its first messages come later.
    setup.registry.register(TOPIC);
    setup.produce(&["--versions", "1", "--count", "30"]);
    let mut weir = Process::start("weir", setup.weir(), setup.path().join("weir.log"));
    let listen = serving_port(&mut weir);
    wait_until(
        "the first clicks to be committed",
        Duration::from_secs(120),
        || {
            weir.assert_running();
            setup.committed() == 30
        },
    );
    // Schema id 2 cannot be fetched: its messages wait, they are not dead letters.
    setup.registry.outage(Some("GET /schemas/ids/"));
    setup.produce(&["--versions", "2", "--first", "30", "--count", "30"]);
    let mut readiness = String::new();
    wait_until(
        "/readyz to say decoding waits",
        Duration::from_secs(60),
        || {
            weir.assert_running();
            let (status, body) = http_get(listen, "/readyz");
            readiness = body;
            status == 503 && readiness.contains("decoding has waited")
        },
    );
    assert!(
        readiness.contains("schema id 2") && readiness.contains("unavailable"),
        "{readiness}"
    );
    assert_eq!(setup.committed(), 30);
    (weir, listen)
}

#[test]
fn a_registry_outage_pauses_decoding_until_it_answers_and_loses_nothing() {
    let mut setup = Setup::start();
    let (mut weir, listen) = waiting_for_the_registry(&setup);
    setup.registry.outage(None);
    wait_until(
        "every click to be committed",
        Duration::from_secs(120),
        || {
            weir.assert_running();
            setup.committed() == 60
        },
    );
    let (status, body) = http_get(listen, "/readyz");
    assert!(!body.contains("decoding has waited"), "{status}: {body}");
    assert!(weir.terminate(Duration::from_secs(30)).success());
    setup.broker.assert_running();
    let report = setup.verify();
    assert_eq!(report["rows"], 60, "{report}");
    assert_eq!(report["dead_letters"], 0, "{report}");
}

/// Stopped while it waits for the registry, weir exits at once with what came before
/// committed; the messages it waited on are read again by the next run.
#[test]
fn stopped_while_the_registry_is_down_it_exits_and_reads_those_messages_next_time() {
    let setup = Setup::start();
    let (mut weir, _) = waiting_for_the_registry(&setup);
    let status = weir.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", weir.log_text());
    assert!(
        weir.log_text().contains("decoding was given up"),
        "{}",
        weir.log_text()
    );
    assert_eq!(setup.committed(), 30);
    setup.registry.outage(None);
    setup.run_until_committed(setup.weir(), "weir-2.log", 60);
    let report = setup.verify();
    assert_eq!(report["rows"], 60, "{report}");
    assert_eq!(report["dead_letters"], 0, "{report}");
}

/// Read with a schema file as its reader, the datasets have the file's columns in its
/// types, whichever version wrote each click.
#[test]
fn a_schema_file_gives_the_datasets_its_columns_across_versions() {
    let setup = Setup::start();
    setup.produce(&[]);
    setup.run_until_committed(
        setup.weir_with(&repo().join("tests/fixtures/avro-file/pipeline.toml")),
        "weir.log",
        80,
    );
    let report = verify_avro_file(&setup.expected, &setup.path().join("out"));
    assert_eq!(report["rows"], 80, "{report}");
    assert_eq!(
        report["columns"],
        serde_json::json!([
            "id", "ts", "user", "amount", "quantity", "referrer", "dt", "hour"
        ]),
        "{report}"
    );
}

/// Killed with SIGKILL while it writes, weir restarted on the same group writes every click
/// once: the Avro decoder holds nothing a restart needs.
#[test]
fn avro_killed_mid_stream_is_written_exactly_once() {
    let setup = Setup::start();
    setup.produce(&["--count", "600"]);
    // Small batches, each checkpointed: the kill lands between checkpoints.
    let example = setup.path().join("avro");
    std::fs::create_dir_all(example.join("sql")).unwrap();
    std::fs::copy(
        repo().join("examples/avro/sql/clicks.sql"),
        example.join("sql/clicks.sql"),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo().join("examples/avro/pipeline.toml")).unwrap();
    // A short session: the restarted instance need not wait long for the killed one's.
    let text = format!("{text}\n[source.properties]\n\"session.timeout.ms\" = \"6000\"\n");
    let config = example.join("pipeline.toml");
    std::fs::write(
        &config,
        text.replace(
            "max_batch_wait = ",
            "max_batch_messages = 40\nmax_batch_wait = ",
        )
        // Every batch is checkpointed on its own.
        .replace(
            "commit_interval = ",
            "max_buffered = \"1B\"\ncommit_interval = ",
        ),
    )
    .unwrap();
    let mut weir = Process::start(
        "weir",
        setup.weir_with(&config),
        setup.path().join("weir-1.log"),
    );
    wait_until("a first checkpoint", Duration::from_secs(120), || {
        weir.assert_running();
        setup.committed() > 0
    });
    weir.child.kill().unwrap();
    weir.child.wait().unwrap();
    assert!(
        setup.committed() < 1200,
        "the kill came after the last checkpoint"
    );
    setup.run_until_committed(setup.weir(), "weir-2.log", 1200);
    let report = setup.verify();
    assert_eq!(report["rows"], 1200, "{report}");
}
