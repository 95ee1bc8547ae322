//! pipeline.toml: what a pipeline reads, how it checks and reshapes events, where it writes.
//!
//! Loading is strict: unknown keys, wrong types and missing files are errors that name the
//! file, the line and the key. `${VAR}`, `${VAR:-default}` and `${file:PATH}` in the text are
//! replaced before parsing, escaped so that a value stays inside its string and on its line;
//! errors quote the file as written, so an expanded secret never appears in a message.
//! The reference is docs/configuration.md.

mod check;
mod defaults;
mod expand;
mod locate;
mod sections;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use check::{check_event_time, check_time_column, check_windowed};
pub use expand::{Environment, Vars, expand};
use locate::invalid;
pub use sections::*;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}\n    {line_text}")]
    Invalid {
        path: PathBuf,
        line: usize,
        line_text: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Check { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Names the pipeline in logs and summaries.
    pub name: String,
    pub source: SourceConfig,
    /// Named SQL boolean expressions every event must satisfy.
    #[serde(default)]
    pub validation: Vec<RuleConfig>,
    pub transforms: Vec<TransformConfig>,
    pub dead_letters: DeadLetterConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub watermarks: WatermarkConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub sql: SqlConfig,
    /// The directory of the config file: relative paths in it are relative to this.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub path: PathBuf,
    /// The file as written, to place errors found after parsing.
    #[serde(skip)]
    text: String,
}

impl PipelineConfig {
    pub fn load(path: &Path, vars: &dyn Vars) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (expanded, substituted) =
            expand(&text, path, vars).map_err(|e| invalid(path, &text, e.line, e.message))?;
        let mut config: PipelineConfig = toml::from_str(&expanded).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let line = expanded[..offset.min(expanded.len())].matches('\n').count() + 1;
            let mut message = e.message().trim_end().to_owned();
            // A value the message quotes is escaped there (`\"`, `\n`): both forms are
            // hidden. A short one is hidden only where it is quoted: replaced everywhere, a
            // `1` would garble every number in the message.
            for value in substituted.iter().filter(|v| !v.is_empty()) {
                for form in [value.to_owned(), value.escape_debug().to_string()] {
                    message = match form.len() >= 4 {
                        true => message.replace(&form, "<redacted>"),
                        false => ["\"", "'", "`"].iter().fold(message, |text, quote| {
                            text.replace(&format!("{quote}{form}{quote}"), "<redacted>")
                        }),
                    };
                }
            }
            invalid(path, &text, line, message)
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.path = path.to_owned();
        config.text = text;
        config.check()?;
        Ok(config)
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// A dataset URL from the config: relative local paths are relative to the config file.
    pub fn resolve_url(&self, url: &str) -> String {
        if url.contains("://") {
            url.to_owned()
        } else {
            self.resolve(Path::new(url)).display().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use weir_sink::Compression;

    use super::*;

    pub(super) const MINIMAL: &str = r#"
name = "p"
[source]
bootstrap_servers = "${BOOTSTRAP:-localhost:9092}"
topics = ["clicks"]
group_id = "g"
schema = "s.toml"
event_time = "ts"
[source.properties]
"sasl.password" = "${SECRET}"
[[transforms]]
name = "all"
sql = "all.sql"
[transforms.sink]
url = "out/all"
[dead_letters]
url = "out/dlq"
"#;

    pub(super) fn load(text: &str, vars: &[(&str, &str)]) -> Result<PipelineConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PipelineConfig::load(&path, &vars)
    }

    #[test]
    fn loads_with_defaults_and_expands_variables() {
        let config = load(MINIMAL, &[("SECRET", "a\"b\nc")]).unwrap();
        assert_eq!(config.source.bootstrap_servers, "localhost:9092");
        assert_eq!(config.source.properties["sasl.password"], "a\"b\nc");
        assert_eq!(config.delivery.commit_interval, Duration::from_secs(10));
        assert_eq!(config.transforms[0].sink.compression, Compression::Zstd);
        assert_eq!(config.source.table, "events");
        assert!(config.resolve_url("out/all").ends_with("out/all"));
        assert!(config.resolve_url("out/all").starts_with('/'));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = MINIMAL.replace("group_id = \"g\"", "group_id = \"g\"\ngroup = \"x\"");
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        assert!(err.contains("pipeline.toml:7:"), "{err}");
        assert!(err.contains("unknown field `group`"), "{err}");
        assert!(err.contains("group_id"), "expected keys are listed: {err}");
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let text = MINIMAL.replace(
            "event_time = \"ts\"",
            "event_time = \"ts\"\nmax_batch_wait = \"soon\"",
        );
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        assert!(
            err.contains(":9:") && err.contains("expected a duration"),
            "{err}"
        );
        let text = MINIMAL.replace("group_id = \"g\"", "group_id = 7");
        let err = load(&text, &[("SECRET", "s")]).err().unwrap().to_string();
        assert!(err.contains(":6:") && err.contains("string"), "{err}");
    }

    #[test]
    fn missing_variable_is_an_error_and_secrets_stay_out_of_errors() {
        let err = load(MINIMAL, &[]).err().unwrap().to_string();
        assert!(
            err.contains(":10:") && err.contains("`SECRET` is not set"),
            "{err}"
        );
        let text = MINIMAL.replace(
            "\"sasl.password\" = \"${SECRET}\"",
            "\"sasl.password\" = \"${SECRET}\" oops",
        );
        let err = load(&text, &[("SECRET", "hunter2")])
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("${SECRET}"), "{err}");
        // Quoted in a type error, a value appears escaped: that form is hidden too.
        let text = MINIMAL.replace(
            "event_time = \"ts\"",
            "event_time = \"ts\"\nmax_batch_messages = \"${SECRET}\"",
        );
        let err = load(&text, &[("SECRET", "hun\"ter\n2")])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("max_batch_messages") || err.contains("invalid type"),
            "{err}"
        );
        assert!(!err.contains("hun"), "{err}");
        // A short secret is hidden where the message quotes it.
        let err = load(&text, &[("SECRET", "x7")]).err().unwrap().to_string();
        assert!(err.contains("max_batch_messages"), "{err}");
        assert!(!err.contains("\"x7\""), "{err}");
    }
}
