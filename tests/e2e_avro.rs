//! Confluent-framed Avro end to end: clicks produced by confluent-kafka's own AvroSerializer
//! (two schema versions registered mid-stream) into a real broker (Tansu), their schemas in
//! a schema registry with basic authentication, read by examples/avro/pipeline.toml and
//! checked field by field with DuckDB; every dead-letter reason; a registry outage; a
//! SIGKILL.

mod common;

use std::time::Duration;

use common::net::{http_get, serving_port, wait_until};
use common::process::Process;
use common::registry::{Codec, Setup};
use common::repo;

fn setup() -> Setup {
    Setup::start(Codec::Avro)
}

#[test]
fn avro_of_two_schema_versions_lands_field_by_field_with_every_dead_letter_reason() {
    let mut setup = setup();
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
    setup.register();
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
    let mut setup = setup();
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
    let setup = setup();
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
    let setup = setup();
    setup.produce(&[]);
    setup.run_until_committed(
        setup.weir_with(&repo().join("tests/fixtures/avro-file/pipeline.toml")),
        "weir.log",
        80,
    );
    let report = Codec::Avro.verify_with("verify-file", &setup.expected, &setup.path().join("out"));
    assert_eq!(report["rows"], 80, "{report}");
    assert_eq!(
        report["columns"],
        serde_json::json!([
            "id", "ts", "user", "amount", "quantity", "referrer", "dt", "hour"
        ]),
        "{report}"
    );
}

/// With `evolution = "add_columns"`, a newer version of the subject met mid-run becomes the
/// reader: what came before is committed, the files after carry its new column (NULL for
/// the earlier clicks, to a reader using `union_by_name`) and its widened one, exactly once;
/// the commit log records the change, and `weir verify`, `weir check` and the status page
/// show it.
#[test]
fn with_add_columns_a_newer_version_met_mid_run_adds_its_columns_to_the_next_files() {
    setup().follows_a_newer_version(&repo().join("tests/fixtures/avro-evolution/pipeline.toml"));
}

/// Killed with SIGKILL while it writes, weir restarted on the same group writes every click
/// once: the Avro decoder holds nothing a restart needs.
#[test]
fn avro_killed_mid_stream_is_written_exactly_once() {
    let setup = setup();
    setup.produce(&["--count", "600"]);
    let report = setup.killed_between_checkpoints_then_restarted(1200);
    assert_eq!(report["rows"], 1200, "{report}");
}
