//! The README's minimal pipeline is a working pipeline: it loads and plans.

mod common;

use common::*;

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
