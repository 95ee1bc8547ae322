//! The analysts' loop without a deployment: `weir sql check` plans and explains the
//! transforms, `weir sql run` shows what a sample turns into, both without Kafka or storage.

mod common;

use std::path::{Path, PathBuf};

use common::fixtures::quickstart_config;
use common::process::{output_ok, weir};
use common::repo;

/// A copy of the example pipeline whose datasets would go under `dir/out`.
fn example(dir: &Path) -> (PathBuf, [(&'static str, String); 3]) {
    let config = quickstart_config(dir, "", &[], "5s");
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9".to_owned()),
        ("WEIR_OUT", dir.join("out").display().to_string()),
        ("GROUP", "sql".to_owned()),
    ];
    (config, env)
}

fn click(id: u32, ts: &str, page: &str) -> String {
    format!(
        "{{\"event_id\":\"e{id}\",\"user_id\":{},\"ts\":\"{ts}\",\"page\":\"{page}\",\
         \"device\":{{\"os\":\"linux\",\"browser\":\"firefox\",\"mobile\":false}},\
         \"duration_ms\":{}.5}}",
        id % 3,
        id * 10
    )
}

#[test]
fn sql_check_explains_each_transform_and_touches_no_storage() {
    let dir = tempfile::tempdir().unwrap();
    let (config, env) = example(dir.path());
    let said = String::from_utf8(output_ok(
        weir().args(["sql", "check"]).arg(&config).envs(env.clone()),
    ))
    .unwrap();
    assert!(said.contains("transform `clicks`"), "{said}");
    assert!(said.contains("stateless"), "{said}");
    assert!(
        said.contains("windowed: tumbling 1m over `ts`, allowed lateness 10s"),
        "{said}"
    );
    assert!(said.contains("distinct (page)"), "{said}");
    assert!(said.contains("count(DISTINCT events.user_id)"), "{said}");
    assert!(said.contains("    visitors: Int64 NOT NULL"), "{said}");
    assert!(said.ends_with("ok\n"), "{said}");
    assert!(
        !dir.path().join("out").exists(),
        "sql check created the datasets"
    );

    // A mistake names the file, the line and the column.
    let clicks = dir.path().join("sql/clicks.sql");
    std::fs::write(
        &clicks,
        "-- every click\nSELECT event_id,\n  pagez\nFROM events\n",
    )
    .unwrap();
    let output = weir()
        .args(["sql", "check"])
        .arg(&config)
        .envs(env)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!("{}:3:3:", clicks.display())),
        "{error}"
    );
    assert!(error.contains("No field named pagez"), "{error}");
    assert!(error.contains("Did you mean 'events.page'?"), "{error}");
}

#[test]
fn sql_run_emits_windows_as_the_watermark_passes_and_shows_late_events() {
    let dir = tempfile::tempdir().unwrap();
    let (config, env) = example(dir.path());
    // The example's watermark trails the latest event time by 30 s, and a minute is written
    // 10 s after the watermark passes its end.
    let lines = [
        click(1, "2026-11-25T10:00:05Z", "/home"),
        click(2, "2026-11-25T10:00:20Z", "/product/9"),
        "this is not JSON".to_owned(),
        // Watermark 10:01:30: the minute 10:00 is written at the next checkpoint.
        click(4, "2026-11-25T10:02:00Z", "/home"),
        // Too late for 10:00, which was written: a dead letter `late`, yet still a click.
        click(5, "2026-11-25T10:00:30Z", "/home"),
        click(6, "2026-11-25T10:02:10Z", "/home"),
    ];
    let sample = dir.path().join("sample.jsonl");
    std::fs::write(&sample, lines.join("\n") + "\n").unwrap();
    let run = |args: &[&str]| {
        output_ok(
            weir()
                .args(["sql", "run", "--batch", "1", "--config"])
                .arg(&config)
                .arg("--input")
                .arg(&sample)
                .args(args)
                .envs(env.clone()),
        )
    };
    let report: serde_json::Value = serde_json::from_slice(&run(&["--format", "json"])).unwrap();
    assert_eq!(report["messages"], 6);
    let minutes = report["datasets"]["page_views_per_minute"]
        .as_array()
        .unwrap();
    let rows: Vec<(String, String, i64)> = minutes
        .iter()
        .map(|r| {
            (
                r["window_start"].as_str().unwrap().to_owned(),
                r["page"].as_str().unwrap().to_owned(),
                r["views"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-11-25T10:00:00Z".to_owned(), "/home".to_owned(), 1),
            (
                "2026-11-25T10:00:00Z".to_owned(),
                "/product/9".to_owned(),
                1
            ),
        ]
    );
    // The minute 10:02 is still open: its /home group waits in the state.
    assert_eq!(report["open_window_groups"]["page_views_per_minute"], 1);
    let clicks = report["datasets"]["clicks"].as_array().unwrap();
    assert_eq!(clicks.len(), 5);
    assert!(
        clicks
            .iter()
            .all(|c| c["_partition_path"] == "dt=2026-11-25/hour=10")
    );
    let views = report["datasets"]["product_views"].as_array().unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0]["product_id"], 9);
    let dead: Vec<(i64, &str)> = report["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["line"].as_i64().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(dead, [(3, "invalid_json"), (5, "late")]);
    assert_eq!(
        report["watermark_ms"],
        chrono::DateTime::parse_from_rfc3339("2026-11-25T10:01:40Z")
            .unwrap()
            .timestamp_millis()
    );

    // For a person: tables, the open windows, the dead letters with their reasons.
    let table = String::from_utf8(run(&[])).unwrap();
    assert!(
        table.contains("transform `page_views_per_minute`: 2 rows"),
        "{table}"
    );
    assert!(
        table.contains("1 group in windows the watermark has not closed yet"),
        "{table}"
    );
    assert!(table.contains("| 5    | late"), "{table}");
    // One transform as CSV.
    let csv = String::from_utf8(run(&["--format", "csv", "--transform", "product_views"])).unwrap();
    assert!(
        csv.starts_with("event_id,ts,product_id,user_id,mobile,country,_partition_path\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

#[test]
fn the_examples_golden_tests_pass() {
    let example = repo().join("examples/quickstart");
    let goldens = std::fs::read_dir(example.join("sql"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".test.toml")
        })
        .count();
    assert!(goldens >= 3);
    let said = String::from_utf8(output_ok(
        weir()
            .args(["sql", "test", "--config"])
            .arg(example.join("pipeline.toml")),
    ))
    .unwrap();
    assert!(
        said.ends_with(&format!("{goldens} passed, 0 failed\n")),
        "{said}"
    );
}

#[test]
fn a_failing_golden_test_shows_what_differs_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (config, env) = example(dir.path());
    let sample = [
        click(1, "2026-11-25T10:00:05Z", "/product/5"),
        click(2, "2026-11-25T10:00:06Z", "/product/6"),
    ]
    .join("\n");
    std::fs::write(
        dir.path().join("sql/product_views.test.toml"),
        format!(
            "input = '''\n{sample}\n'''\n\n[[rows]]\nevent_id = \"e1\"\nproduct_id = 5\n\n\
             [[rows]]\nevent_id = \"e2\"\nproduct_id = 7\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sql/clicks.test.toml"),
        "input = \"{}\"\nexpected_rows = 3\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sql/page_views_per_minute.test.toml"),
        format!("input = '''\n{sample}\n'''\n\n[[rows]]\nview = 1\n"),
    )
    .unwrap();
    let output = weir()
        .args(["sql", "test", "--config"])
        .arg(&config)
        .envs(env)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("FAIL  "), "{said}");
    assert!(
        said.contains("rows of `product_views`: 2 expected, 2 produced"),
        "{said}"
    );
    assert!(
        said.contains("- missing    {\"event_id\":\"e2\",\"product_id\":7}"),
        "{said}"
    );
    assert!(
        said.contains("+ unexpected {\"event_id\":\"e2\",\"product_id\":6}"),
        "{said}"
    );
    // A test file with a mistake fails with the file and the key.
    assert!(said.contains("clicks.test.toml"), "{said}");
    assert!(said.contains("unknown field `expected_rows`"), "{said}");
    // A column the transform does not have is named, with the ones it has.
    assert!(
        said.contains(
            "rows of `page_views_per_minute`: no column `view`; the columns are window_start, \
             window_end, page, views, visitors, avg_duration_ms"
        ),
        "{said}"
    );
    assert!(said.ends_with("0 passed, 3 failed\n"), "{said}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("3 of 3 golden tests failed"), "{error}");
}
