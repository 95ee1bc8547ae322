//! Confluent-framed Protobuf end to end: clicks produced by confluent-kafka's own
//! ProtobufSerializer (two schema versions, the reader's registered as `.proto` source, the
//! producers' as descriptors) into a real broker (Tansu), read by
//! examples/protobuf/pipeline.toml and checked field by field with DuckDB; every dead-letter
//! reason; a SIGKILL. The registry outage paths are the Avro ones (tests/e2e_avro.rs): both
//! formats wait for the registry in the same shared cache of writer schemas.

mod common;

use common::registry::{Codec, Setup};
use common::repo;

#[test]
fn protobuf_of_two_schema_versions_lands_field_by_field_with_every_dead_letter_reason() {
    let mut setup = Setup::start(Codec::Protobuf);
    // Versions 1 and 2 as `.proto` source (ids 1 and 2); the producers' serializer then
    // registers its own descriptors of them (ids 3 and 4), which their messages name.
    setup.register();
    setup.produce(&["--malformed"]);
    // The reader is version 2, compiled from source: version 1's clicks are read as it.
    let mut weir = setup.weir();
    weir.env("READER_VERSION", "2");
    let log = setup.run_until_committed(weir, "weir.log", 2 * 40 + 10);
    setup.broker.assert_running();
    let report = setup.verify();
    assert_eq!(report["rows"], 80, "{report}");
    assert_eq!(report["dead_letters"], 10, "{report}");
    let types = &report["types"];
    assert_eq!(types["ts"], "TIMESTAMP WITH TIME ZONE", "{report}");
    assert_eq!(types["seen_at"], "TIMESTAMP WITH TIME ZONE", "{report}");
    assert_eq!(types["quantity"], "BIGINT", "{report}");
    assert_eq!(types["big"], "UBIGINT", "{report}");
    assert_eq!(types["ratio"], "FLOAT", "{report}");
    assert_eq!(types["attrs"], "MAP(VARCHAR, VARCHAR)", "{report}");
    assert_eq!(types["raw"], "BLOB", "{report}");
    assert_eq!(
        types["items"], "STRUCT(sku VARCHAR, count UINTEGER, sizes INTEGER[])[]",
        "{report}"
    );
    assert!(
        log.contains(
            "Protobuf topics are read with subject `clicks-pb-value` version 2 (schema id 2)"
        ),
        "{log}"
    );
    let password = &setup.registry.env()[2].1;
    assert!(!log.contains(password.as_str()), "the password is logged");
}

/// Read with a schema file as its reader, the datasets have the file's columns in its
/// types, whichever version wrote each click.
#[test]
fn a_schema_file_gives_the_datasets_its_columns_across_versions() {
    let setup = Setup::start(Codec::Protobuf);
    setup.produce(&[]);
    setup.run_until_committed(
        setup.weir_with(&repo().join("tests/fixtures/protobuf-file/pipeline.toml")),
        "weir.log",
        80,
    );
    let report =
        Codec::Protobuf.verify_with("verify-file", &setup.expected, &setup.path().join("out"));
    assert_eq!(report["rows"], 80, "{report}");
    assert_eq!(
        report["columns"],
        serde_json::json!([
            "id", "ts", "user", "quantity", "kind", "items", "referrer", "dt", "hour"
        ]),
        "{report}"
    );
}

/// Killed with SIGKILL while it writes, weir restarted on the same group writes every click
/// once: the Protobuf decoder holds nothing a restart needs.
#[test]
fn protobuf_killed_mid_stream_is_written_exactly_once() {
    let setup = Setup::start(Codec::Protobuf);
    setup.register();
    setup.produce(&["--count", "600"]);
    let report = setup.killed_between_checkpoints_then_restarted(1200);
    assert_eq!(report["rows"], 1200, "{report}");
    assert_eq!(report["dead_letters"], 0, "{report}");
}

/// With `evolution = "add_columns"`, a newer version whose message has new field numbers
/// becomes the reader mid-run: the files after it carry the new column, exactly once, and
/// the change is recorded and shown.
#[test]
fn with_add_columns_a_newer_version_met_mid_run_adds_its_columns_to_the_next_files() {
    Setup::start(Codec::Protobuf)
        .follows_a_newer_version(&repo().join("tests/fixtures/protobuf-evolution/pipeline.toml"));
}
