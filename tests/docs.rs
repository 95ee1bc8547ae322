//! The README's minimal pipeline is a working pipeline: it loads and plans.

mod common;

use common::process::{output_ok, weir};
use common::repo;

/// The code block that follows the line "`name`:" in the README.
fn block_after(readme: &str, name: &str) -> String {
    let marker = format!("`{name}`:");
    let after = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README lacks {marker}"))..];
    let start = after.find("```").expect("a code block");
    let body = &after[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").expect("a closed code block")].to_owned()
}

#[test]
fn the_readme_pipeline_checks() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["pipeline.toml", "schema.toml", "clicks.sql"] {
        std::fs::write(dir.path().join(name), block_after(&readme, name)).unwrap();
    }
    let stdout = output_ok(
        weir()
            .args(["check", "--config"])
            .arg(dir.path().join("pipeline.toml"))
            .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
            .env("AWS_REGION", "eu-west-1"),
    );
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(stdout.contains("kafka_offset: Int64"), "{stdout}");
}

/// The SQL guide shows the example pipeline's golden test as it is.
#[test]
fn the_guides_golden_test_is_the_examples() {
    let guide = std::fs::read_to_string(repo().join("docs/sql.md")).unwrap();
    let path = "examples/quickstart/sql/page_views_per_minute.test.toml";
    let file = std::fs::read_to_string(repo().join(path)).unwrap();
    assert!(
        guide.contains(&format!("`{path}`:\n\n```toml\n{file}```\n")),
        "docs/sql.md does not show {path} as it is"
    );
}

/// The fenced blocks of a Markdown text: (info string, body).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().expect("open")),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Every SQL example of the SQL guide is run: planned by `weir sql check`, and where a
/// golden test follows it, run over its sample by `weir sql test` against the rows shown.
#[test]
fn every_sql_example_in_the_sql_guide_runs() {
    let guide = std::fs::read_to_string(repo().join("docs/sql.md")).unwrap();
    let blocks = fenced_blocks(&guide);
    let (mut planned, mut golden) = (0, 0);
    for (i, (info, sql)) in blocks.iter().enumerate() {
        if info != "sql" || sql.starts_with("-- DuckDB") {
            continue;
        }
        // The table it reads says which example's schema it is written for.
        let (table, example) = if sql.contains("FROM orders") {
            ("orders", "orders")
        } else {
            assert!(
                sql.contains("FROM events"),
                "an example over an unknown table:\n{sql}"
            );
            ("events", "quickstart")
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sql")).unwrap();
        std::fs::copy(
            repo().join("examples").join(example).join("schema.toml"),
            dir.path().join("schema.toml"),
        )
        .unwrap();
        let config = dir.path().join("pipeline.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"guide\"\n[source]\nbootstrap_servers = \"127.0.0.1:9\"\n\
                 topics = [\"t\"]\ngroup_id = \"g\"\ntable = \"{table}\"\n\
                 schema = \"schema.toml\"\nevent_time = \"ts\"\n\
                 [[transforms]]\nname = \"example\"\nsql = \"sql/example.sql\"\n\
                 [transforms.sink]\nurl = \"out/example\"\n\
                 [dead_letters]\nurl = \"out/dead_letters\"\n\
                 [sql.keys]\ncustomers = \"docs-example-key-0123456789\"\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("sql/example.sql"), sql).unwrap();
        let said =
            String::from_utf8(output_ok(weir().args(["sql", "check"]).arg(&config))).unwrap();
        assert!(said.ends_with("ok\n"), "{said}");
        planned += 1;
        if let Some((info, test)) = blocks.get(i + 1)
            && info == "toml"
            && test.starts_with("# golden test")
        {
            std::fs::write(dir.path().join("sql/example.test.toml"), test).unwrap();
            let output = weir()
                .args(["sql", "test", "--config"])
                .arg(&config)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "the guide's example does not give the rows shown:\n{sql}\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            golden += 1;
        }
    }
    assert!(
        planned >= 8 && golden >= 5,
        "{planned} planned, {golden} with golden tests"
    );
}
