//! Whether a pipeline is valid beyond what serde can say: the config's own rules, checked at
//! load, and the checks against the schema and the transforms' SQL made when it is built.

use weir_schemas::EventSchema;
use weir_transform::WindowKind;

use super::defaults::{MIN_HASH_KEY_BYTES, MIN_LOG_RETENTION, MIN_MEMORY};
use super::{
    ConfigError, Evolution, PayloadFormat, PipelineConfig, ReaderVersion, SubjectStrategy,
};

impl PipelineConfig {
    /// The keys each payload format needs, and no key another one reads.
    fn check_format(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| self.error_at(key, message);
        let source = &self.source;
        match source.format {
            PayloadFormat::Json => {
                if source.schema.is_none() {
                    return Err(fail(
                        "[source]",
                        "`source.schema` is missing: JSON events need a schema file".into(),
                    ));
                }
                if source.schema_registry.is_some() {
                    return Err(fail(
                        "schema_registry",
                        "`[source.schema_registry]` is for `format = \"avro\"` and \
                         `\"protobuf\"`; JSON events take their schema from `source.schema`"
                            .into(),
                    ));
                }
            }
            PayloadFormat::Avro | PayloadFormat::Protobuf => {
                let format = match source.format {
                    PayloadFormat::Avro => "avro",
                    _ => "protobuf",
                };
                let Some(registry) = &source.schema_registry else {
                    return Err(fail(
                        "format",
                        format!(
                            "`format = \"{format}\"` needs a `[source.schema_registry]` table \
                             with the registry's `url`"
                        ),
                    ));
                };
                if registry.message.is_some() && source.format != PayloadFormat::Protobuf {
                    return Err(fail(
                        "message",
                        "`schema_registry.message` picks a Protobuf message; an Avro \
                         subject's schema is one record"
                            .into(),
                    ));
                }
                let needs_record = registry.subject_strategy != SubjectStrategy::TopicName;
                match (&registry.record, needs_record) {
                    (None, true) => {
                        return Err(fail(
                            "subject_strategy",
                            "`subject_strategy` names subjects after the record: give its \
                             full name as `record`, e.g. record = \"shop.Click\""
                                .into(),
                        ));
                    }
                    (Some(_), false) => {
                        return Err(fail(
                            "record",
                            "`record` is for the `record_name` and `topic_record_name` \
                             subject strategies; `topic_name` uses `<topic>-value`"
                                .into(),
                        ));
                    }
                    _ => {}
                }
                if registry.password.is_some() && registry.username.is_none() {
                    return Err(fail(
                        "password",
                        "`schema_registry.password` without a `username`".into(),
                    ));
                }
                if registry.evolution == Evolution::AddColumns {
                    if registry.version != ReaderVersion::Latest {
                        return Err(fail(
                            "evolution",
                            "`evolution = \"add_columns\"` follows the subject's latest \
                             version; a pinned `version` never changes: remove one of them"
                                .into(),
                        ));
                    }
                    if source.schema.is_some() {
                        return Err(fail(
                            "evolution",
                            "`evolution = \"add_columns\"` takes the columns from the \
                             registry; the schema file `schema` fixes them: remove one of them"
                                .into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks that serde cannot express; `text` places the errors.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| self.error_at(key, message);
        if self.source.topics.is_empty() {
            return Err(fail("topics", "`source.topics` lists no topic".into()));
        }
        for key in self.source.properties.keys() {
            if weir_ingest::RESERVED_PROPERTIES.contains(&key.as_str()) {
                return Err(fail(
                    key,
                    format!(
                        "`source.properties.{key}` is set by weir; use the `source` keys instead"
                    ),
                ));
            }
        }
        self.check_format()?;
        if self.source.max_batch_messages == 0 {
            return Err(fail(
                "max_batch_messages",
                "`source.max_batch_messages` must be at least 1".into(),
            ));
        }
        if self.transforms.is_empty() {
            return Err(fail(
                "name",
                "no [[transforms]]: a pipeline needs at least one".into(),
            ));
        }
        if self.delivery.log_retention < MIN_LOG_RETENTION {
            return Err(fail(
                "log_retention",
                format!(
                    "`delivery.log_retention` must be at least {}, found {}",
                    humantime::format_duration(MIN_LOG_RETENTION),
                    humantime::format_duration(self.delivery.log_retention)
                ),
            ));
        }
        if self.delivery.max_memory < MIN_MEMORY {
            return Err(fail(
                "max_memory",
                format!(
                    "`delivery.max_memory` must be at least {MIN_MEMORY}, what weir holds \
                     before it buffers anything; found {}",
                    self.delivery.max_memory
                ),
            ));
        }
        if self.delivery.max_query_memory > self.delivery.max_memory {
            return Err(fail(
                "max_query_memory",
                format!(
                    "`delivery.max_query_memory` ({}) is part of `delivery.max_memory` ({}) \
                     and cannot exceed it",
                    self.delivery.max_query_memory, self.delivery.max_memory
                ),
            ));
        }
        for (name, key) in &self.sql.keys {
            if key.len() < MIN_HASH_KEY_BYTES {
                // No line is quoted: it could hold the key itself.
                return Err(ConfigError::Check {
                    path: self.path.clone(),
                    message: format!(
                        "`sql.keys.{name}` is {} bytes long; a key for keyed_hash needs at least \
                         {MIN_HASH_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                        key.len()
                    ),
                });
            }
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !endpoint.starts_with("http://")
        {
            return Err(fail(
                "otlp_endpoint",
                format!(
                    "`telemetry.otlp_endpoint` must be an http:// address of a collector on the \
                     node or in the pod (OTLP over TLS is not supported), found \"{}\"",
                    crate::telemetry::scrub::urls(endpoint)
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.transforms {
            if !names.insert(t.name.as_str()) {
                return Err(fail(
                    &t.name,
                    format!("two transforms are named `{}`", t.name),
                ));
            }
            if t.sink.max_file_rows == 0
                || t.sink.row_group_rows == 0
                || t.sink.max_open_files == 0
                || t.sink.max_partitions_per_checkpoint == 0
            {
                return Err(fail(
                    "max_file_rows",
                    format!(
                        "transform `{}`: row and file counts must be at least 1",
                        t.name
                    ),
                ));
            }
        }
        let mut rules = std::collections::HashSet::new();
        for r in &self.validation {
            if !rules.insert(r.name.as_str()) {
                return Err(fail(
                    &r.name,
                    format!("two validation rules are named `{}`", r.name),
                ));
            }
        }
        match (&self.dead_letters.url, &self.dead_letters.topic) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(fail(
                    "[dead_letters]",
                    "[dead_letters] needs exactly one of `url` (a Parquet dataset) or `topic` (a Kafka topic)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A window places each event by its event time, which must therefore be there; session
/// windows have no bounded start, so their datasets cannot be marked complete by it.
pub fn check_windowed(
    config: &PipelineConfig,
    schema: &EventSchema,
    transform: &str,
    kind: WindowKind,
    time_partitions: Option<weir_schemas::TimeGranularity>,
) -> Result<(), ConfigError> {
    let event_time = &config.source.event_time;
    if schema.field(event_time).is_some_and(|f| !f.required) {
        return Err(config.error_at(
            "event_time",
            format!(
                "transform `{transform}` is windowed, so every event needs its event time: \
                 declare `{event_time}` required in the schema"
            ),
        ));
    }
    if matches!(kind, WindowKind::Session { .. }) && time_partitions.is_some() {
        return Err(config.error_in_transform(
            transform,
            "time_partitions",
            format!(
                "transform `{transform}` has session windows, whose start is not bounded by the \
                 watermark: partition it with `partition_by` instead of `time_partitions`"
            ),
        ));
    }
    Ok(())
}

/// Time partitions come from the event time (a window's start for windowed transforms), so
/// the transform must pass it through.
pub fn check_time_column(
    config: &PipelineConfig,
    transform: &str,
    output: &arrow::datatypes::Schema,
    event_time: &str,
) -> Result<(), ConfigError> {
    match output.field_with_name(event_time).map(|f| f.data_type()) {
        Ok(arrow::datatypes::DataType::Timestamp(..)) => Ok(()),
        Ok(other) => Err(config.error_in_transform(
            transform,
            "time_partitions",
            format!(
                "`time_partitions` of transform `{transform}` needs the event-time column \
                 `{event_time}` as a timestamp in its output, but it is {other}"
            ),
        )),
        Err(_) => Err(config.error_in_transform(
            transform,
            "time_partitions",
            format!(
                "`time_partitions` of transform `{transform}` needs the event-time column \
                 `{event_time}` in its output; select it in the SQL"
            ),
        )),
    }
}

pub fn check_event_time(config: &PipelineConfig, schema: &EventSchema) -> Result<(), ConfigError> {
    let name = &config.source.event_time;
    let arrow = schema.arrow_schema();
    let message = match arrow.field_with_name(name).map(|f| f.data_type()) {
        Ok(ty) if ty == &weir_schemas::metadata::utc_millis() => return Ok(()),
        Ok(other) => format!(
            "`event_time`: the field `{name}` is {} in the schema, expected a timestamp",
            schema
                .field(name)
                .map_or_else(|| other.to_string(), |f| format!("{:?}", f.ty))
        ),
        Err(_) => format!(
            "`event_time`: the schema {} has no field `{name}`",
            schema.name
        ),
    };
    Err(config.error_at("event_time", message))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytesize::ByteSize;

    use crate::config::tests::{MINIMAL, load};
    use crate::config::{Evolution, SinkFormat};

    /// MINIMAL as an Avro pipeline, with `registry` lines in its `[source.schema_registry]`.
    fn avro(registry: &str) -> String {
        MINIMAL
            .replace("schema = \"s.toml\"\n", "format = \"avro\"\n")
            .replace(
                "[source.properties]",
                &format!("[source.schema_registry]\n{registry}\n[source.properties]"),
            )
    }

    #[test]
    fn each_payload_format_gets_the_keys_it_needs_and_no_other() {
        let secret = [("SECRET", "s")];
        let err = |text: &str| load(text, &secret).err().unwrap().to_string();
        let no_registry = MINIMAL.replace("schema = \"s.toml\"\n", "format = \"avro\"\n");
        assert!(err(&no_registry).contains("needs a `[source.schema_registry]`"));
        let json_with_registry =
            avro("url = \"http://r\"").replace("format = \"avro\"\n", "schema = \"s.toml\"\n");
        assert!(err(&json_with_registry).contains("is for `format = \"avro\"`"));
        let no_schema = MINIMAL.replace("schema = \"s.toml\"\n", "");
        assert!(err(&no_schema).contains("JSON events need a schema file"));
        let strategy = avro("url = \"http://r\"\nsubject_strategy = \"record_name\"");
        assert!(err(&strategy).contains("give its full name as `record`"));
        let stray = avro("url = \"http://r\"\nrecord = \"shop.Click\"");
        assert!(err(&stray).contains("`record` is for the"));
        assert!(err(&avro("url = \"http://r\"\nversion = 0")).contains("from 1, found 0"));
        assert!(err(&avro("url = \"http://r\"\nversion = \"newest\"")).contains("\"newest\""));
        let orphan = avro("url = \"http://r\"\npassword = \"${SECRET}\"");
        assert!(err(&orphan).contains("without a `username`"));
        // Protobuf: the same registry keys, and `message`, which Avro has no use for.
        let protobuf = |registry: &str| avro(registry).replace("\"avro\"", "\"protobuf\"");
        let message = "url = \"http://r\"\nmessage = \"shop.Click\"";
        let config = load(&protobuf(message), &secret).unwrap();
        let registry = config.source.schema_registry.as_ref().unwrap();
        assert_eq!(registry.message.as_deref(), Some("shop.Click"));
        assert!(err(&avro(message)).contains("picks a Protobuf message"));
        // Columns that follow the registry: only from its latest version, without a schema
        // file.
        let add = "url = \"http://r\"\nevolution = \"add_columns\"";
        let config = load(&avro(add), &secret).unwrap();
        let registry = config.source.schema_registry.as_ref().unwrap();
        assert_eq!(registry.evolution, Evolution::AddColumns);
        assert!(err(&avro(&format!("{add}\nversion = 2"))).contains("a pinned `version`"));
        let with_file = avro(add).replace(
            "[source.schema_registry]",
            "schema = \"s.toml\"\n[source.schema_registry]",
        );
        assert!(
            err(&with_file).contains("the schema file `schema` fixes them"),
            "{}",
            err(&with_file)
        );
        assert!(err(&avro("url = \"http://r\"\nevolution = \"drop\"")).contains("unknown variant"));
        let no_registry = no_registry.replace("\"avro\"", "\"protobuf\"");
        assert!(err(&no_registry).contains("`format = \"protobuf\"` needs a"));
    }

    #[test]
    fn subjects_follow_the_strategy_and_versions_may_come_as_text() {
        let load_ok = |registry: &str| load(&avro(registry), &[("SECRET", "s")]).unwrap();
        let config = load_ok("url = \"http://r\"\nversion = \"3\"");
        let registry = config.source.schema_registry.as_ref().unwrap();
        assert_eq!(registry.subject("clicks"), "clicks-value");
        assert_eq!(registry.version, crate::config::ReaderVersion::Pinned(3));
        let config = load_ok(
            "url = \"http://r\"\nsubject_strategy = \"topic_record_name\"\nrecord = \"shop.Click\"",
        );
        let registry = config.source.schema_registry.as_ref().unwrap();
        assert_eq!(registry.subject("clicks"), "clicks-shop.Click");
        assert_eq!(registry.version, crate::config::ReaderVersion::Latest);
        let config = load_ok(
            "url = \"http://r\"\nsubject_strategy = \"record_name\"\nrecord = \"shop.Click\"",
        );
        let registry = config.source.schema_registry.as_ref().unwrap();
        assert_eq!(registry.subject("clicks"), "shop.Click");
        // The password is a secret: Debug shows that there is one, not what it is.
        let config = load_ok("url = \"http://r\"\nusername = \"u\"\npassword = \"${SECRET}-x\"");
        let shown = format!("{:?}", config.source.schema_registry);
        assert!(shown.contains("***") && !shown.contains("s-x"), "{shown}");
    }

    #[test]
    fn a_sink_is_parquet_unless_it_says_delta() {
        let secret = [("SECRET", "s")];
        let config = load(MINIMAL, &secret).unwrap();
        assert_eq!(config.transforms[0].sink.format, SinkFormat::Parquet);
        let delta = MINIMAL.replace(
            "[transforms.sink]\n",
            "[transforms.sink]\nformat = \"delta\"\n",
        );
        let config = load(&delta, &secret).unwrap();
        assert_eq!(config.transforms[0].sink.format, SinkFormat::Delta);
        let iceberg = delta.replace("\"delta\"", "\"iceberg\"");
        let err = load(&iceberg, &secret).err().unwrap().to_string();
        assert!(err.contains("unknown variant `iceberg`"), "{err}");
    }

    #[test]
    fn otlp_over_tls_is_refused_at_load() {
        let text = format!("{MINIMAL}\n[telemetry]\notlp_endpoint = \"https://collector:4318\"\n");
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        assert!(
            err.contains("otlp_endpoint") && err.contains("http://"),
            "{err}"
        );
        let text = text.replace("https://", "http://");
        let config = load(&text, &[("SECRET", "s")]).unwrap();
        assert_eq!(
            config.telemetry.otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
    }

    #[test]
    fn a_log_retention_under_an_hour_is_refused_at_its_line() {
        let text = format!("{MINIMAL}\n[delivery]\nlog_retention = \"10m\"\n");
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        let line = text
            .lines()
            .position(|l| l.starts_with("log_retention"))
            .unwrap()
            + 1;
        assert!(err.contains(&format!("pipeline.toml:{line}:")), "{err}");
        assert!(
            err.contains("`delivery.log_retention` must be at least 1h, found 10m"),
            "{err}"
        );
        let config = load(&text.replace("10m", "30d"), &[("SECRET", "s")]).unwrap();
        assert_eq!(
            config.delivery.log_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
    }

    #[test]
    fn memory_budgets_below_what_weir_needs_or_out_of_order_are_refused() {
        let text = format!("{MINIMAL}\n[delivery]\nmax_memory = \"16MiB\"\n");
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        assert!(
            err.contains("`delivery.max_memory` must be at least 128.0 MiB"),
            "{err}"
        );
        assert!(err.contains("found 16.0 MiB"), "{err}");
        let text = format!(
            "{MINIMAL}\n[delivery]\nmax_memory = \"200MiB\"\nmax_query_memory = \"256MiB\"\n"
        );
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        assert!(err.contains("cannot exceed it"), "{err}");
        let config = load(&text.replace("256MiB", "32MiB"), &[("SECRET", "s")]).unwrap();
        assert_eq!(config.delivery.max_memory, ByteSize::mib(200));
        assert_eq!(config.delivery.max_query_memory, ByteSize::mib(32));
    }

    #[test]
    fn reserved_properties_and_dead_letter_targets_are_checked() {
        let text = MINIMAL.replace(
            "\"sasl.password\" = \"${SECRET}\"",
            "\"enable.auto.commit\" = \"true\"",
        );
        let err = load(&text, &[]).err().unwrap().to_string();
        assert!(
            err.contains("enable.auto.commit") && err.contains("set by weir"),
            "{err}"
        );
        let text = MINIMAL.replace("url = \"out/dlq\"", "url = \"out/dlq\"\ntopic = \"dlq\"");
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        assert!(err.contains("exactly one of"), "{err}");
    }
}
