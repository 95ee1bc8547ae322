//! pipeline.toml: what a pipeline reads, how it checks and reshapes events, where it writes.
//!
//! Loading is strict: unknown keys, wrong types and missing files are errors that name the
//! file, the line and the key. `${VAR}`, `${VAR:-default}` and `${file:PATH}` in the text are
//! replaced before parsing, escaped so that a value stays inside its string and on its line;
//! errors quote the file as written, so an expanded secret never appears in a message.
//! The reference is docs/configuration.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};
use weir_ingest::StartPosition;
use weir_sink::{Compression, TimeGranularity};

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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    #[serde(default = "default_start")]
    pub start: StartPosition,
    /// The table name SQL selects from.
    #[serde(default = "default_table")]
    pub table: String,
    /// The schema file.
    pub schema: PathBuf,
    /// The schema's timestamp field that holds each event's time.
    pub event_time: String,
    /// librdkafka properties passed through, e.g. `security.protocol`, `sasl.*`, `ssl.*`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default = "default_batch_messages")]
    pub max_batch_messages: usize,
    #[serde(default = "default_batch_bytes")]
    pub max_batch_bytes: ByteSize,
    #[serde(default = "default_batch_wait", deserialize_with = "duration")]
    pub max_batch_wait: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub expr: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Names the transform and its dataset.
    pub name: String,
    /// A .sql file holding one SELECT over the source table.
    pub sql: PathBuf,
    /// Windowed transforms: how long past its end (in event time) a window waits for
    /// stragglers before it is emitted.
    #[serde(default, deserialize_with = "duration")]
    pub allowed_lateness: Duration,
    pub sink: SinkConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    pub name: String,
    pub expr: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `file://`, `s3://`, `gs://`, `az://` URL or a local path.
    pub url: String,
    /// Leading `dt=…[/hour=…[/minute=…]]` directories from the event time, marked complete
    /// (`_SUCCESS`) once the committed watermark passes their end.
    #[serde(default)]
    pub time_partitions: Option<TimeGranularity>,
    #[serde(default)]
    pub partition_by: Vec<PartitionConfig>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    #[serde(default = "default_file_size")]
    pub target_file_size: ByteSize,
    #[serde(default = "default_file_rows")]
    pub max_file_rows: u64,
    #[serde(default = "default_file_age", deserialize_with = "duration")]
    pub max_file_age: Duration,
    #[serde(default = "default_open_files")]
    pub max_open_files: usize,
    /// object_store options, e.g. `aws_endpoint`, `aws_region`, `aws_access_key_id`.
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A Parquet dataset for dead letters.
    pub url: Option<String>,
    /// A Kafka topic for dead letters, on the source cluster.
    pub topic: Option<String>,
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How often open files are closed and the offsets they cover committed.
    #[serde(default = "default_commit_interval", deserialize_with = "duration")]
    pub commit_interval: Duration,
    /// Memory for buffered rows; when reached, files are flushed and consumption waits.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: ByteSize,
    /// How long each dataset's commit log keeps entries a newer snapshot replaces.
    #[serde(default = "default_log_retention", deserialize_with = "duration")]
    pub log_retention: Duration,
}

/// How event time turns into watermarks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// How far behind the latest event time of a partition an event may still arrive: a
    /// partition's watermark is its highest event time minus this.
    #[serde(default = "default_out_of_orderness", deserialize_with = "duration")]
    pub out_of_orderness: Duration,
    /// A partition without messages for this long stops holding the watermark back.
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

/// What the transforms' SQL may use besides the source table.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Secret keys for `keyed_hash(value, 'name')`, by name; give them as `${VAR}` or
    /// `${file:PATH}`, never in the file itself.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

impl std::fmt::Debug for SqlConfig {
    // The keys are secrets: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConfig")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Keys shorter than this would let a guessed value's hash be searched for.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// What the running service tells the people who run it: metrics, probes, the status page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where the status page, `/metrics`, `/healthz` and `/readyz` are served; "off" serves
    /// nothing. `weir run --listen` overrides it.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// An OTLP/HTTP collector to push metrics and spans to, e.g. "http://127.0.0.1:4318".
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// How often metrics are pushed over OTLP.
    #[serde(default = "default_otlp_interval", deserialize_with = "duration")]
    pub otlp_interval: Duration,
    /// How often the log-end offsets of the owned partitions are asked of the brokers.
    #[serde(default = "default_log_end_interval", deserialize_with = "duration")]
    pub log_end_interval: Duration,
    /// How much history the status page's charts keep.
    #[serde(default = "default_history", deserialize_with = "duration")]
    pub history: Duration,
    /// `/readyz` fails when the last checkpoint is older than this (default: three commit
    /// intervals, at least 30 s).
    #[serde(default, deserialize_with = "optional_duration")]
    pub ready_max_checkpoint_age: Option<Duration>,
    /// `/healthz` fails when the pipeline loop has not moved for this long (default: three
    /// commit intervals, at least 5 minutes).
    #[serde(default, deserialize_with = "optional_duration")]
    pub wedged_after: Option<Duration>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            otlp_endpoint: None,
            otlp_interval: default_otlp_interval(),
            log_end_interval: default_log_end_interval(),
            history: default_history(),
            ready_max_checkpoint_age: None,
            wedged_after: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_otlp_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_log_end_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_history() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            out_of_orderness: default_out_of_orderness(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_out_of_orderness() -> Duration {
    Duration::from_secs(30)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            commit_interval: default_commit_interval(),
            max_buffered: default_max_buffered(),
            log_retention: default_log_retention(),
        }
    }
}

fn default_start() -> StartPosition {
    StartPosition::Earliest
}
fn default_table() -> String {
    "events".into()
}
fn default_batch_messages() -> usize {
    20_000
}
fn default_batch_bytes() -> ByteSize {
    ByteSize::mib(16)
}
fn default_batch_wait() -> Duration {
    Duration::from_millis(250)
}
fn default_row_group_rows() -> usize {
    128 * 1024
}
fn default_file_size() -> ByteSize {
    ByteSize::mib(128)
}
fn default_file_rows() -> u64 {
    10_000_000
}
fn default_file_age() -> Duration {
    Duration::from_secs(300)
}
fn default_open_files() -> usize {
    256
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_log_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// Shorter, and an instance paused for a fraction of it would have to start over too often.
const MIN_LOG_RETENTION: Duration = Duration::from_secs(3600);

fn default_max_buffered() -> ByteSize {
    ByteSize::mib(256)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "expected a duration such as \"250ms\", \"10s\" or \"5m\", found \"{text}\" ({e})"
        ))
    })
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Looks up `${...}` references: the process environment, or overrides in tests and the
/// quickstart.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Environment;

impl Vars for Environment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Overrides on top of the process environment.
impl Vars for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().or_else(|| std::env::var(name).ok())
    }
}

impl PipelineConfig {
    pub fn load(path: &Path, vars: &dyn Vars) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (expanded, substituted) = expand(&text, path, vars)?;
        let mut config: PipelineConfig = toml::from_str(&expanded).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let line = expanded[..offset.min(expanded.len())].matches('\n').count() + 1;
            let mut message = e.message().trim_end().to_owned();
            // Values too short to be secrets would only garble the message.
            for value in substituted.iter().filter(|v| v.len() >= 4) {
                message = message.replace(value.as_str(), "<redacted>");
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

    /// Checks that serde cannot express; `text` places the errors.
    fn check(&self) -> Result<(), ConfigError> {
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
                     node or in the pod (OTLP over TLS is not supported), found \"{endpoint}\""
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
            if t.sink.max_file_rows == 0 || t.sink.row_group_rows == 0 || t.sink.max_open_files == 0
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

impl PipelineConfig {
    /// An error placed at the first line of the file that mentions `needle`.
    pub fn error_at(&self, needle: &str, message: String) -> ConfigError {
        self.error_at_line(find_line(&self.text, needle), message)
    }

    /// An error at the first line mentioning `key` in the table of transform `transform`.
    pub fn error_in_transform(&self, transform: &str, key: &str, message: String) -> ConfigError {
        let name = format!("\"{transform}\"");
        let start = self
            .text
            .lines()
            .position(|l| l.trim_start().starts_with("name") && l.contains(&name));
        let line = start.and_then(|start| {
            self.text
                .lines()
                .enumerate()
                .skip(start)
                .find(|(_, l)| l.contains(key))
                .map(|(i, _)| i + 1)
        });
        self.error_at_line(line, message)
    }

    fn error_at_line(&self, line: Option<usize>, message: String) -> ConfigError {
        match line {
            Some(line) => invalid(&self.path, &self.text, line, message),
            None => ConfigError::Check {
                path: self.path.clone(),
                message,
            },
        }
    }
}

fn invalid(path: &Path, text: &str, line: usize, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        line_text: text
            .lines()
            .nth(line - 1)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        message,
    }
}

/// The first line that mentions `needle`, 1-based.
fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Replaces `${VAR}`, `${VAR:-default}` and `${file:PATH}`; `$${` is a literal `${`.
/// Values are escaped for a TOML basic string, so newlines and quotes cannot leave it.
/// Returns the text and the values put in, which errors must not show.
pub fn expand(
    text: &str,
    path: &Path,
    vars: &dyn Vars,
) -> Result<(String, Vec<String>), ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut substituted = Vec::new();
    let mut strings = StringState::Outside;
    for (index, whole) in text.split_inclusive('\n').enumerate() {
        // Comments are left as written: a `${...}` in one is prose, not a reference.
        let (line, comment) = whole.split_at(comment_start(whole, &mut strings));
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            if rest[..start].ends_with('$') {
                out.push_str(&rest[..start - 1]);
                out.push_str("${");
                rest = &rest[start + 2..];
                continue;
            }
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(invalid(path, text, index + 1, "unclosed `${`".into()));
            };
            let reference = &after[..end];
            let value = resolve(reference, path, vars)
                .map_err(|message| invalid(path, text, index + 1, message))?;
            escape_into(&mut out, &value);
            substituted.push(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok((out, substituted))
}

/// Which TOML string the text is inside, carried from line to line for multi-line strings.
#[derive(Clone, Copy, PartialEq)]
enum StringState {
    Outside,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// Where `line`'s comment starts (its length when it has none), following `state` through
/// the line's strings.
fn comment_start(line: &str, state: &mut StringState) -> usize {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &line[i..];
        match *state {
            StringState::Outside => {
                if rest.starts_with("\"\"\"") {
                    *state = StringState::MultiBasic;
                    i += 3;
                    continue;
                }
                if rest.starts_with("'''") {
                    *state = StringState::MultiLiteral;
                    i += 3;
                    continue;
                }
                match bytes[i] {
                    b'#' => return i,
                    b'"' => *state = StringState::Basic,
                    b'\'' => *state = StringState::Literal,
                    _ => {}
                }
            }
            StringState::Basic | StringState::MultiBasic if bytes[i] == b'\\' => i += 1,
            StringState::Basic if bytes[i] == b'"' || bytes[i] == b'\n' => {
                *state = StringState::Outside;
            }
            StringState::Literal if bytes[i] == b'\'' || bytes[i] == b'\n' => {
                *state = StringState::Outside;
            }
            StringState::MultiBasic if rest.starts_with("\"\"\"") => {
                *state = StringState::Outside;
                i += 3;
                continue;
            }
            StringState::MultiLiteral if rest.starts_with("'''") => {
                *state = StringState::Outside;
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    line.len()
}

fn resolve(reference: &str, path: &Path, vars: &dyn Vars) -> Result<String, String> {
    if let Some(file) = reference.strip_prefix("file:") {
        let file = Path::new(file);
        let file = if file.is_absolute() {
            file.to_owned()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(file)
        };
        return std::fs::read_to_string(&file)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("cannot read `${{file:{}}}`: {e}", file.display()));
    }
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("`${{{reference}}}` is not a variable reference"));
    }
    match (vars.var(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
        )),
    }
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
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

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<PipelineConfig, ConfigError> {
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
    fn references_in_comments_stay_as_written() {
        let text = "# set ${UNSET} or use ${file:/no/such/file}\n\
                    a = \"#${X}\" # ${UNSET}\n\
                    b = '#' # '${UNSET}'\n\
                    c = \"\"\"\nline # ${X}\n\"\"\"\n";
        let vars = BTreeMap::from([("X".to_owned(), "x".to_owned())]);
        let (expanded, _) = expand(text, Path::new("p.toml"), &vars).unwrap();
        assert_eq!(
            expanded,
            "# set ${UNSET} or use ${file:/no/such/file}\n\
             a = \"#x\" # ${UNSET}\n\
             b = '#' # '${UNSET}'\n\
             c = \"\"\"\nline # x\n\"\"\"\n"
        );
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

    #[test]
    fn file_references_and_literal_dollars() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
        let (text, _) = expand(
            "a = \"${file:pw}\"\nb = \"$${X}\"\n",
            &dir.path().join("p.toml"),
            &Environment,
        )
        .unwrap();
        assert_eq!(text, "a = \"from-file\"\nb = \"${X}\"\n");
    }
}
