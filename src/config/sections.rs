//! The tables of pipeline.toml as serde reads them, one struct per section, and the
//! deserializers their durations go through.

use std::collections::BTreeMap;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};
use weir_ingest::StartPosition;
use weir_ingest::registry::Password;
use weir_schemas::{PayloadPolicy, Settings, TimeGranularity};
use weir_sink::Compression;

use super::defaults::{
    default_batch_bytes, default_batch_messages, default_batch_wait, default_commit_interval,
    default_file_age, default_file_rows, default_file_size, default_history, default_idle_timeout,
    default_listen, default_log_end_interval, default_log_retention, default_max_ahead_of_clock,
    default_max_buffered, default_max_memory, default_max_query_memory, default_open_files,
    default_otlp_interval, default_out_of_orderness, default_partitions_per_checkpoint,
    default_registry_timeout, default_row_group_rows, default_snapshot_every, default_start,
    default_table,
};

#[derive(Debug, Clone, Deserialize)]
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
    /// How message payloads are encoded.
    #[serde(default)]
    pub format: PayloadFormat,
    /// The schema file (JSON topics); Avro and Protobuf topics take their schema from the
    /// registry, and a schema file beside it cuts the registry's schema down.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Where Avro and Protobuf topics' schemas are.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistrySection>,
    /// The schema's timestamp field that holds each event's time.
    pub event_time: String,
    /// librdkafka properties passed through, e.g. `security.protocol`, `sasl.*`, `ssl.*`.
    #[serde(default)]
    pub properties: Settings,
    #[serde(default = "default_batch_messages")]
    pub max_batch_messages: usize,
    #[serde(default = "default_batch_bytes")]
    pub max_batch_bytes: ByteSize,
    #[serde(default = "default_batch_wait", deserialize_with = "duration")]
    pub max_batch_wait: Duration,
    /// Threads that decode polled batches in parallel; by default one per core the process
    /// may use, up to four.
    #[serde(default)]
    pub decode_threads: Option<NonZeroUsize>,
}

/// The encoding of message payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// One JSON object per message, read with the schema file.
    #[default]
    Json,
    /// Confluent-framed Avro, its schemas in a schema registry.
    Avro,
    /// Confluent-framed Protobuf, its schemas in a schema registry.
    Protobuf,
}

/// How a topic's subject in the registry is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-value`.
    #[default]
    TopicName,
    /// The record's full name, e.g. `shop.Click`.
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

/// Which version of the subject is the reader schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReaderVersion {
    #[default]
    Latest,
    Pinned(u32),
}

impl<'de> Deserialize<'de> for ReaderVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u32),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Number(0) => Err(serde::de::Error::custom(
                "expected \"latest\" or a version number from 1, found 0",
            )),
            Written::Number(n) => Ok(ReaderVersion::Pinned(n)),
            Written::Text(text) if text == "latest" => Ok(ReaderVersion::Latest),
            // A number given through `${VAR}` arrives as text.
            Written::Text(text) if text.parse::<u32>().is_ok_and(|n| n > 0) => {
                Ok(ReaderVersion::Pinned(text.parse().expect("checked")))
            }
            Written::Text(text) => Err(serde::de::Error::custom(format!(
                "expected \"latest\" or a version number, found \"{text}\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySection {
    /// The registry's base URL.
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    /// Give it as `${VAR}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<Password>,
    /// PEM CA certificates to trust besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, for mutual TLS.
    #[serde(default)]
    pub client_identity_file: Option<PathBuf>,
    #[serde(default = "default_registry_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
    /// The record's full name, for the `record_name` and `topic_record_name` strategies.
    #[serde(default)]
    pub record: Option<String>,
    /// The subject's version whose schema the datasets are written with.
    #[serde(default)]
    pub version: ReaderVersion,
    /// Protobuf: the full name of the message rows are read as, e.g. `shop.Click`; by
    /// default `record`, else the first message of the subject's schema.
    #[serde(default)]
    pub message: Option<String>,
    /// Whether the datasets' columns follow a newer version of the subject met mid-run.
    #[serde(default)]
    pub evolution: Evolution,
}

/// What a running pipeline does when messages of a newer version of the subject, with
/// fields its reader schema lacks, arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evolution {
    /// The reader schema stays what it was at start: the new fields are not read (until a
    /// restart takes the latest version).
    #[default]
    ReaderSchema,
    /// The pipeline commits what it read, takes the subject's latest version as its reader
    /// (when it keeps every column, at the same or a wider type) and goes on: new files
    /// carry the new columns.
    AddColumns,
}

impl SchemaRegistrySection {
    /// The subject holding `topic`'s value schemas.
    pub fn subject(&self, topic: &str) -> String {
        let record = self.record.as_deref().unwrap_or_default();
        match self.subject_strategy {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => record.to_owned(),
            SubjectStrategy::TopicRecordName => format!("{topic}-{record}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub expr: String,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    pub name: String,
    pub expr: String,
}

/// What a dataset is, besides its Parquet files and weir's commit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    /// Hive-partitioned Parquet files; readers see committed files only.
    #[default]
    Parquet,
    /// The same files, each commit also a Delta Lake commit.
    Delta,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `file://`, `s3://`, `gs://`, `az://` URL or a local path.
    pub url: String,
    /// Plain Parquet files, or a Delta Lake table whose commits are weir's.
    #[serde(default)]
    pub format: SinkFormat,
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
    /// Distinct partition paths one checkpoint may write files to: reaching it makes the
    /// pipeline checkpoint before it takes more rows.
    #[serde(default = "default_partitions_per_checkpoint")]
    pub max_partitions_per_checkpoint: usize,
    /// object_store options, e.g. `aws_endpoint`, `aws_region`, `aws_access_key_id`.
    #[serde(default)]
    pub storage: Settings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A Parquet dataset for dead letters.
    pub url: Option<String>,
    /// A Kafka topic for dead letters, on the source cluster.
    pub topic: Option<String>,
    #[serde(default)]
    pub storage: Settings,
    /// What the dead letters keep of each payload.
    #[serde(default)]
    pub payload: PayloadPolicy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How often open files are closed and the offsets they cover committed.
    #[serde(default = "default_commit_interval", deserialize_with = "duration")]
    pub commit_interval: Duration,
    /// Memory for buffered rows; when reached, files are flushed and consumption waits.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: ByteSize,
    /// The process's resident memory not backed by files; when a batch leaves it over this,
    /// the pipeline checkpoints to release what it can.
    #[serde(default = "default_max_memory")]
    pub max_memory: ByteSize,
    /// The memory pool of the transforms' SQL queries.
    #[serde(default = "default_max_query_memory")]
    pub max_query_memory: ByteSize,
    /// How long each dataset's commit log keeps entries a newer snapshot replaces.
    #[serde(default = "default_log_retention", deserialize_with = "duration")]
    pub log_retention: Duration,
    /// Entries of each dataset's commit log between snapshots of its state: where a start
    /// reads from, and what lets older entries be pruned.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: NonZeroU64,
}

/// How event time turns into watermarks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// How far behind the latest event time of a partition an event may still arrive: a
    /// partition's watermark is its highest event time minus this.
    #[serde(default = "default_out_of_orderness", deserialize_with = "duration")]
    pub out_of_orderness: Duration,
    /// A partition without messages for this long stops holding the watermark back.
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// An event whose time is further ahead of the wall clock than this is a dead letter.
    #[serde(default = "default_max_ahead_of_clock", deserialize_with = "duration")]
    pub max_ahead_of_clock: Duration,
}

/// What the transforms' SQL may use besides the source table.
#[derive(Default, Clone, Deserialize)]
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
