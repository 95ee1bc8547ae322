//! Configuration and SQL mistakes stop weir before it starts, with the file and the place.

mod common;

use std::path::Path;

use common::fixtures::QUICKSTART_FILES;
use common::process::{output_ok, weir};
use common::repo;

/// A copy of the quickstart example in `dir`, with `edit` applied to one of its files.
fn example_with(dir: &Path, file: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let src = repo().join("examples/quickstart");
    for name in std::iter::once("pipeline.toml").chain(QUICKSTART_FILES) {
        let to = dir.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(src.join(name)).unwrap();
        let text = if name == file { edit(text) } else { text };
        std::fs::write(to, text).unwrap();
    }
    dir.join("pipeline.toml")
}

/// The 1-based number of the first line of `file` containing `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .expect("the needle")
        + 1
}

fn failing(args: &[&str], config: &Path) -> String {
    let output = weir()
        .args(args)
        .arg("--config")
        .arg(config)
        .env("WEIR_OUT", config.parent().unwrap().join("out"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "expected a failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_example_pipeline_checks() {
    let stdout = output_ok(
        weir()
            .args(["check", "--config"])
            .arg(repo().join("examples/quickstart/pipeline.toml")),
    );
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(
        stdout.contains("transform `clicks` (stateless)") && stdout.contains("product_id: Int64"),
        "{stdout}"
    );
    assert!(
        stdout.contains("transform `page_views_per_minute` (windowed: tumbling 1m)")
            && stdout.contains("visitors: Int64 NOT NULL"),
        "{stdout}"
    );
}

#[test]
fn a_misplaced_window_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_with(dir.path(), "sql/page_views_per_minute.sql", |t| {
        t.replace("GROUP BY tumble(ts,", "GROUP BY tumble(user_id,")
    });
    let sql = config
        .parent()
        .unwrap()
        .join("sql/page_views_per_minute.sql");
    let line = line_of(&sql, "GROUP BY");
    let stderr = failing(&["check"], &config);
    assert!(
        stderr.contains(&format!(
            "page_views_per_minute.sql:{line}:10: windows are over the event-time column `ts`"
        )),
        "{stderr}"
    );
}

#[test]
fn unknown_key_names_file_line_and_key_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_with(dir.path(), "pipeline.toml", |t| {
        t.replace("group_id =", "grup_id =")
    });
    let line = line_of(&config, "grup_id");
    let stderr = failing(&["run"], &config);
    assert!(
        stderr.contains(&format!("pipeline.toml:{line}:")),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `grup_id`"), "{stderr}");
    assert!(!dir.path().join("out").exists(), "nothing may be written");
}

#[test]
fn sql_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_with(dir.path(), "sql/clicks.sql", |t| {
        t.replace("  referrer,", "  refferer,")
    });
    let stderr = failing(&["run"], &config);
    assert!(stderr.contains("clicks.sql:8:3: "), "{stderr}");
    assert!(stderr.contains("refferer"), "{stderr}");
}

#[test]
fn wrong_event_time_and_missing_schema_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_with(dir.path(), "pipeline.toml", |t| {
        t.replace("event_time = \"ts\"", "event_time = \"page\"")
    });
    let stderr = failing(&["check"], &config);
    assert!(
        stderr.contains("event_time") && stderr.contains("expected a timestamp"),
        "{stderr}"
    );

    let config = example_with(dir.path(), "pipeline.toml", |t| {
        t.replace("schema.toml", "nope.toml")
    });
    let stderr = failing(&["check"], &config);
    let line = line_of(&config, "nope.toml");
    assert!(
        stderr.contains(&format!(
            "pipeline.toml:{line}: the schema file `nope.toml` does not exist"
        )),
        "{stderr}"
    );

    let config = example_with(dir.path(), "pipeline.toml", |t| {
        t.replace("sql/clicks.sql", "sql/click.sql")
    });
    let stderr = failing(&["check"], &config);
    let line = line_of(&config, "sql/click.sql");
    assert!(
        stderr.contains(&format!(
            "pipeline.toml:{line}: the SQL file of transform `clicks` `sql/click.sql` does not exist"
        )),
        "{stderr}"
    );
}

#[test]
fn time_partitions_need_the_event_time_in_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_with(dir.path(), "sql/product_views.sql", |t| {
        t.replace("  ts,\n", "")
    });
    let stderr = failing(&["check"], &config);
    let line = line_of(&config, "time_partitions = \"day\"");
    assert!(
        stderr.contains(&format!("pipeline.toml:{line}"))
            && stderr.contains(
                "`time_partitions` of transform `product_views` needs the event-time column `ts`"
            ),
        "{stderr}"
    );
}

/// A malformed `--storage` option may be a credential pasted without its key: the error says
/// which option is wrong without repeating it.
#[test]
fn a_malformed_storage_option_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let output = weir()
        .arg("verify")
        .arg(dir.path())
        .args([
            "--storage",
            "aws_region=us-east-1",
            "--storage",
            "AKIAs3cretpaste",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--storage option 2 is not KEY=VALUE"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
