//! `weir bench` measures programs that did the whole job: every measured program reads every
//! event of the topic, the stateless pipeline writes each event it does not dead-letter once,
//! and the Python peer, written independently, keeps exactly the same events.

mod common;

use common::process::{output_ok, weir, weirtest};
use common::tool;

/// Rows and dead letters (by reason) of the `clicks` dataset a measured run wrote at `out`.
fn clicks_counts(out: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&weirtest(&[
        "counts",
        "--out",
        out.to_str().unwrap(),
        "--dataset",
        "clicks",
    ]))
    .unwrap()
}

#[test]
fn every_program_is_measured_over_the_whole_topic_and_did_the_whole_job() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let events = 20_000;
    let stdout = output_ok(
        weir()
            .args([
                "bench",
                "--events",
                &events.to_string(),
                "--partitions",
                "8",
            ])
            .args(["--runs", "1", "--groups", "5000", "--json", "--out"])
            .arg(&out)
            .arg("--python")
            .arg(tool("WEIR_TEST_PYTHON")),
    );
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["events"], events, "{report:#}");
    assert_eq!(report["partitions"], 8, "{report:#}");
    let measurements = report["measurements"].as_array().unwrap();
    let names: Vec<&str> = measurements
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "raw consume",
            "weir a stateless",
            "weir b quickstart",
            "weir c windows",
            "python peer"
        ]
    );
    for measurement in measurements {
        let run = &measurement["runs"][0];
        let measured = run["events"].as_u64().unwrap();
        // Counted from the first message read, so at most the whole topic.
        assert!(measured > 0 && measured <= events, "{measurement:#}");
        assert!(
            run["cpu_seconds"].as_f64().unwrap() > 0.0,
            "{measurement:#}"
        );
        assert!(
            run["peak_rss_bytes"].as_u64().unwrap() > 0,
            "{measurement:#}"
        );
        assert!(
            run["events_per_second"].as_f64().unwrap() > 0.0,
            "{measurement:#}"
        );
    }
    // The raw consumer reports every event it read, and their bytes.
    assert_eq!(measurements[0]["runs"][0]["events"], events);
    assert!(
        report["bytes_per_event"].as_f64().unwrap() > 100.0,
        "{report:#}"
    );
    let targets: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), 4, "{targets:?}");

    // Each event the stateless pipeline did not dead-letter is written once.
    let counts = clicks_counts(&out.join("weir-a-stateless-1/out"));
    let rows = counts["rows"]["clicks"].as_u64().unwrap();
    let dead_letters: u64 = counts["dead_letters"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(rows + dead_letters, events, "{counts:#}");
    assert!(
        dead_letters > 0,
        "the generator makes some events malformed"
    );
    // The Python peer keeps the same events, each once.
    let peer: serde_json::Value = serde_json::from_str(&weirtest(&[
        "distinct",
        "--path",
        out.join("python-peer-1/out").to_str().unwrap(),
        "--column",
        "event_id",
    ]))
    .unwrap();
    assert_eq!(peer["rows"], rows, "{peer:#}");
    assert_eq!(peer["distinct"], rows, "{peer:#}");
}

/// `--format avro`: each shape is measured on the JSON topic and on its Avro twin, and the
/// Avro pipeline writes the very rows the JSON one writes.
#[test]
fn avro_shapes_read_the_same_events_and_write_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let events = 20_000;
    let stdout = output_ok(
        weir()
            .args(["bench", "--format", "avro", "--shapes", "stateless"])
            .args(["--events", &events.to_string(), "--partitions", "8"])
            .args(["--runs", "1", "--json", "--out"])
            .arg(&out),
    );
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let names: Vec<&str> = report["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "raw consume",
            "raw consume avro",
            "weir a stateless",
            "weir a stateless avro"
        ]
    );
    assert_eq!(report["measurements"][1]["runs"][0]["events"], events);
    let targets = report["targets"].to_string();
    assert!(
        targets.contains("a stateless avro: less CPU per event"),
        "{targets}"
    );
    let rows_of = |run: &str| -> (serde_json::Value, serde_json::Value) {
        let path = out.join(run).join("out");
        let counts = clicks_counts(&path);
        let ids: serde_json::Value = serde_json::from_str(&weirtest(&[
            "distinct",
            "--path",
            path.join("clicks").to_str().unwrap(),
            "--column",
            "event_id",
        ]))
        .unwrap();
        (counts["rows"].clone(), ids)
    };
    let json = rows_of("weir-a-stateless-1");
    let avro = rows_of("weir-a-stateless-avro-1");
    assert_eq!(json, avro);
    assert!(json.0["clicks"].as_u64().unwrap() > 19_000, "{json:?}");
}

/// `--decoders`: each format's decoder turns every one of the same generated events into a
/// row, and the figures say how many bytes each format took.
#[test]
fn the_decoders_bench_decodes_every_event_in_every_format() {
    let events = 20_000;
    let stdout = output_ok(weir().args([
        "bench",
        "--decoders",
        "--events",
        &events.to_string(),
        "--runs",
        "1",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let formats = report["formats"].as_array().unwrap();
    let names: Vec<&str> = formats
        .iter()
        .map(|f| f["format"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["json", "avro", "protobuf"]);
    for format in formats {
        assert_eq!(format["rows"], events, "{format}");
        assert!(
            format["events_per_second"].as_f64().unwrap() > 0.0,
            "{format}"
        );
    }
    // The binary formats carry the same events in fewer bytes than JSON.
    let bytes = |i: usize| formats[i]["bytes_per_event"].as_f64().unwrap();
    assert!(bytes(1) < bytes(0) && bytes(2) < bytes(0), "{report}");
}
