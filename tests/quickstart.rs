//! `weir quickstart` end to end: the summary it prints agrees with what DuckDB reads back.

mod common;

use common::net::{http_get, wait_until};
use common::process::{Process, weir, weirtest};

/// A quickstart of 20,000 events, 5 % malformed, on four partitions (`extra` arguments
/// besides): its JSON report, checked against what DuckDB reads back. Returns the report
/// and the directory holding `out`.
fn checked_quickstart(extra: &[&str]) -> (serde_json::Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = weir()
        .args([
            "quickstart",
            "--events",
            "20000",
            "--malformed-ratio",
            "0.05",
        ])
        .args(["--partitions", "4", "--json"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "quickstart failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["events_in"], 20000);
    assert_eq!(report["generated"]["events"], 20000);
    let report_path = dir.path().join("report.json");
    std::fs::write(&report_path, &output.stdout).unwrap();
    weirtest(&[
        "check-quickstart",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report_path.to_str().unwrap(),
    ]);
    (report, dir)
}

#[test]
fn quickstart_writes_every_valid_event_and_dead_letters_the_rest() {
    let (report, dir) = checked_quickstart(&[]);
    let malformed: u64 = report["generated"]["malformed"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(
        malformed > 500,
        "about 5% malformed expected, got {malformed}"
    );
    assert_eq!(
        report["datasets"]["clicks"]["rows"].as_u64().unwrap() + malformed,
        20000
    );
    // A second run into the same directory would mix two runs' datasets: refused.
    let again = weir()
        .args(["quickstart", "--events", "10", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));
}

/// The quickstart with its events in Confluent-framed Avro (schema in the registry inside
/// weir): the same checks as for JSON hold, the malformed events are dead letters of the
/// Avro reasons the generator announced.
#[test]
fn avro_quickstart_writes_every_valid_event_and_dead_letters_the_rest() {
    let (report, _dir) = checked_quickstart(&["--format", "avro"]);
    let malformed = &report["generated"]["malformed"];
    for reason in [
        "not_confluent_framed",
        "unknown_schema_id",
        "rule:non_negative_duration",
    ] {
        assert!(malformed[reason].as_u64().unwrap() > 0, "{report}");
    }
}

#[test]
fn interrupted_quickstart_flushes_commits_and_accounts_for_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let report_path = dir.path().join("report.json");
    let mut cmd = weir();
    cmd.args(["quickstart", "--partitions", "3", "--json", "--out"])
        .arg(&out);
    // stdout holds the JSON report; the harness writes it to the log file.
    let mut quickstart = Process::start("quickstart", cmd, report_path.clone());
    wait_until(
        "a first committed file",
        std::time::Duration::from_secs(120),
        || {
            quickstart.assert_running();
            std::fs::read_dir(&out).is_ok_and(|_| has_parquet(&out.join("clicks")))
        },
    );
    // It said where its status page and metrics are, and serves them.
    let said = quickstart.log_text();
    let page = said
        .lines()
        .find_map(|l| l.strip_prefix("weir quickstart: status page http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no status page address in:\n{said}"));
    let port: u16 = page.split('/').next().unwrap().parse().unwrap();
    let (code, html) = http_get(port, "/");
    assert_eq!(code, 200);
    assert!(html.contains("<title>weir status</title>"), "{html}");
    let (code, metrics) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("weir_consumed_messages_total{pipeline=\"clickstream\"}"));
    let status = quickstart.interrupt(std::time::Duration::from_secs(60));
    assert!(
        status.success(),
        "quickstart exited with {status}:\n{}",
        quickstart.log_text()
    );
    let text = quickstart.log_text();
    let json = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON report");
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(report["events_in"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["status_page"].as_str(),
        Some(format!("http://127.0.0.1:{port}/").as_str())
    );
    std::fs::write(&report_path, json).unwrap();
    weirtest(&[
        "check-quickstart",
        "--interrupted",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report_path.to_str().unwrap(),
    ]);
}

fn has_parquet(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            has_parquet(&path)
        } else {
            path.extension().is_some_and(|x| x == "parquet")
        }
    })
}
