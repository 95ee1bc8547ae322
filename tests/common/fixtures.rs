//! The test pipelines: the orders fixture and copies of the quickstart example.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::repo;

/// Environment for the test pipeline in tests/fixtures/orders.
pub fn orders_env(
    bootstrap: &str,
    topic: &str,
    out: &Path,
    orders_url: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.into()),
        ("TOPIC".into(), topic.into()),
        ("GROUP".into(), format!("weir-test-{topic}")),
        ("OUT".into(), out.display().to_string()),
        ("ORDERS_URL".into(), orders_url.into()),
    ])
}

/// A copy of the orders test pipeline in `dir`, its pipeline.toml changed by replacing
/// `from` with `to`. Returns the new pipeline.toml.
pub fn orders_config_with(dir: &Path, from: &str, to: &str) -> PathBuf {
    orders_config_edited(dir, &[(from, to)])
}

/// [`orders_config_with`] with several replacements, made in order.
pub fn orders_config_edited(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let fixture = repo().join("tests/fixtures/orders");
    let mut text = std::fs::read_to_string(fixture.join("pipeline.toml")).expect("the fixture");
    for (from, to) in edits {
        assert!(text.contains(from), "the fixture has no `{from}`");
        text = text.replace(from, to);
    }
    let config = dir.join("pipeline.toml");
    std::fs::write(&config, text).expect("writing the config");
    std::fs::create_dir_all(dir.join("sql")).expect("creating sql/");
    for file in ["schema.toml", "sql/orders.sql", "sql/big_orders.sql"] {
        std::fs::copy(fixture.join(file), dir.join(file)).expect("copying the fixture");
    }
    config
}

/// A copy of the quickstart pipeline in `dir`, reading from `${GROUP}` as its consumer group,
/// with `source_extra` added to its `[source]` table (before `[source.properties]`, given as
/// `properties`) and the commit interval set. Returns the new pipeline.toml.
pub fn quickstart_config(
    dir: &Path,
    source_extra: &str,
    properties: &[(&str, &str)],
    commit_interval: &str,
) -> PathBuf {
    let example = repo().join("examples/quickstart");
    let text = std::fs::read_to_string(example.join("pipeline.toml")).expect("the example");
    let mut source = format!("event_time = \"ts\"\n{source_extra}\n");
    if !properties.is_empty() {
        source.push_str("\n[source.properties]\n");
        for (key, value) in properties {
            source.push_str(&format!("\"{key}\" = \"{value}\"\n"));
        }
    }
    let text = text
        .replace("event_time = \"ts\"\n", &source)
        .replace("group_id = \"weir-clickstream\"", "group_id = \"${GROUP}\"")
        .replace(
            "commit_interval = \"5s\"",
            &format!("commit_interval = \"{commit_interval}\""),
        );
    let config = dir.join("pipeline.toml");
    std::fs::write(&config, text).expect("writing the config");
    std::fs::create_dir_all(dir.join("sql")).expect("creating sql/");
    for file in QUICKSTART_FILES {
        std::fs::copy(example.join(file), dir.join(file)).expect("copying the example");
    }
    config
}

/// Makes the output datasets of the quickstart pipeline at `config` Delta tables.
pub fn as_delta(config: &Path) {
    let text = std::fs::read_to_string(config).expect("the config");
    let delta = text.replace(
        "[transforms.sink]\n",
        "[transforms.sink]\nformat = \"delta\"\n",
    );
    assert_eq!(delta.matches("format = \"delta\"").count(), 3);
    std::fs::write(config, delta).expect("writing the config");
}

/// The example's files besides its pipeline.toml.
pub const QUICKSTART_FILES: [&str; 4] = [
    "schema.toml",
    "sql/clicks.sql",
    "sql/product_views.sql",
    "sql/page_views_per_minute.sql",
];

/// The datasets of the quickstart pipeline.
pub const QUICKSTART_DATASETS: [&str; 4] = [
    "clicks",
    "product_views",
    "page_views_per_minute",
    "dead_letters",
];
