//! The pipelines the benchmark measures, written as a user would write them: a pipeline file
//! beside the quickstart's schema and SQL, run with `weir run`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

/// A pipeline shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// (a) Every valid event to one dataset, hourly partitions, zstd: the sink alone.
    Stateless,
    /// (b) The quickstart pipeline: a validation rule, three datasets, one of them windowed
    /// with `count(DISTINCT …)`.
    Quickstart,
    /// (c) A windowed aggregate with many groups open at once (`--groups`).
    Windows,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::Stateless => "a stateless",
            Shape::Quickstart => "b quickstart",
            Shape::Windows => "c windows",
        }
    }
}

/// How a shape is varied for the scaling figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Variation {
    /// Distinct partition paths of the stateless shape: `user_id % paths` instead of hours
    /// when more than one.
    pub paths: Option<u64>,
    /// Open groups of the windowed shape.
    pub groups: u64,
}

/// Where one measured run reads and writes.
pub struct Target<'a> {
    pub topic: &'a str,
    pub group: &'a str,
    /// The topic is Avro, its schema in the registry at this URL.
    pub registry: Option<&'a str>,
}

/// Writes the pipeline of `shape` into `dir` and returns its file. The bootstrap servers
/// and the output directory come from `KAFKA_BOOTSTRAP_SERVERS` and `WEIR_OUT`.
pub fn write_pipeline(
    dir: &Path,
    shape: Shape,
    variation: Variation,
    target: &Target,
) -> anyhow::Result<PathBuf> {
    let example = crate::quickstart::write_example(dir)?;
    // The Avro topic's schema is the schema file's, from the registry.
    let schema = match target.registry {
        Some(_) => "format = \"avro\"\n",
        None => "schema = \"schema.toml\"\n",
    };
    let registry = match target.registry {
        Some(url) => format!("\n[source.schema_registry]\nurl = {url:?}\n"),
        None => String::new(),
    };
    let source = format!(
        "[source]\n\
         bootstrap_servers = \"${{KAFKA_BOOTSTRAP_SERVERS}}\"\n\
         topics = [{topic:?}]\n\
         group_id = {group:?}\n\
         start = \"earliest\"\n\
         table = \"events\"\n\
         {schema}\
         event_time = \"ts\"\n{registry}",
        topic = target.topic,
        group = target.group,
    );
    // As the quickstart has them, so that shapes differ only in what they compute.
    let common = "[dead_letters]\nurl = \"${WEIR_OUT}/dead_letters\"\n\n\
                  [watermarks]\nout_of_orderness = \"30s\"\nidle_timeout = \"1m\"\n\n\
                  [delivery]\ncommit_interval = \"5s\"\nmax_buffered = \"256MiB\"\n\
                  max_memory = \"1GiB\"\n";
    let text = match shape {
        Shape::Quickstart => {
            let text = std::fs::read_to_string(&example)?;
            let start = text
                .find("[source]")
                .context("the example has a [source]")?;
            let end = text[start..]
                .find("event_time = \"ts\"\n")
                .context("the example's source names its event time")?
                + start
                + "event_time = \"ts\"\n".len();
            format!("{}{source}{}", &text[..start], &text[end..])
        }
        Shape::Stateless => {
            let partitions = match variation.paths {
                Some(paths) if paths > 1 => format!(
                    "partition_by = [{{ name = \"bucket\", expr = \"user_id % {paths}\" }}]\n"
                ),
                Some(_) => String::new(),
                None => "time_partitions = \"hour\"\n".to_owned(),
            };
            format!(
                "name = \"bench-stateless\"\n\n{source}\n\
                 [[transforms]]\nname = \"clicks\"\nsql = \"sql/clicks.sql\"\n\n\
                 [transforms.sink]\nurl = \"${{WEIR_OUT}}/clicks\"\n{partitions}\
                 compression = \"zstd\"\n\n{common}"
            )
        }
        Shape::Windows => {
            // One group per event id up to `groups` (ids end in the event's index), in day
            // windows: every group stays open for the whole run.
            let slot = format!("CAST(right(event_id, 12) AS BIGINT) % {}", variation.groups);
            std::fs::write(
                dir.join("sql/per_event_slot.sql"),
                format!(
                    "SELECT\n  window_start,\n  window_end,\n  {slot} AS slot,\n  \
                     count(*) AS events,\n  sum(duration_ms) AS total_ms\nFROM events\n\
                     GROUP BY tumble(ts, INTERVAL '1 day'), {slot}\n"
                ),
            )?;
            format!(
                "name = \"bench-windows\"\n\n{source}\n\
                 [[transforms]]\nname = \"per_event_slot\"\nsql = \"sql/per_event_slot.sql\"\n\n\
                 [transforms.sink]\nurl = \"${{WEIR_OUT}}/per_event_slot\"\n\
                 time_partitions = \"day\"\n\n{common}"
            )
        }
    };
    let path = dir.join("bench.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::PipelineConfig;

    #[test]
    fn every_shape_is_a_valid_pipeline_on_the_topic_and_group_asked_for() {
        let shapes = [Shape::Stateless, Shape::Quickstart, Shape::Windows];
        let registries = [None, Some("http://127.0.0.1:9")];
        for (shape, registry) in shapes.into_iter().flat_map(|s| registries.map(|r| (s, r))) {
            for paths in [None, Some(1), Some(100)] {
                let dir = tempfile::tempdir().unwrap();
                let target = Target {
                    topic: "bench-topic",
                    group: "bench-group-1",
                    registry,
                };
                let variation = Variation {
                    paths,
                    groups: 1000,
                };
                let path = write_pipeline(dir.path(), shape, variation, &target).unwrap();
                let vars = BTreeMap::from([
                    (
                        "KAFKA_BOOTSTRAP_SERVERS".to_owned(),
                        "127.0.0.1:9".to_owned(),
                    ),
                    ("WEIR_OUT".to_owned(), "/tmp/out".to_owned()),
                ]);
                let config =
                    PipelineConfig::load(&path, &vars).unwrap_or_else(|e| panic!("{shape:?}: {e}"));
                assert_eq!(config.source.topics, ["bench-topic"], "{shape:?}");
                assert_eq!(config.source.group_id, "bench-group-1", "{shape:?}");
                let url = config
                    .source
                    .schema_registry
                    .as_ref()
                    .map(|r| r.url.as_str());
                assert_eq!(url, registry, "{shape:?}");
            }
        }
    }
}
