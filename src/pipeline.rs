//! A pipeline ready to run: the config loaded, the schema read, every SQL text planned and
//! every dataset opened. Building one touches no Kafka broker, so all configuration and SQL
//! errors surface before anything starts.

use weir_ingest::{JsonDecoder, SourceConfig as KafkaConfig};
use weir_schemas::EventSchema;
use weir_schemas::schema::FieldType;
use weir_sink::{Dataset, DatasetOptions, RollPolicy};
use weir_transform::{
    PartitionSpec, Partitioner, SqlEngine, Transform, TransformKind, ValidationRules, WindowKind,
    WindowState,
};

use crate::config::{ConfigError, PipelineConfig};

/// One transform and the dataset it feeds.
pub struct Output {
    pub transform: Transform,
    pub partitioner: Partitioner,
    pub dataset: Dataset,
    pub url: String,
    /// The open windows of a windowed transform.
    pub windows: Option<WindowState>,
}

/// Where dead letters go.
pub enum DeadLetterTarget {
    Dataset { dataset: Box<Dataset>, url: String },
    Topic(String),
}

pub struct Pipeline {
    pub name: String,
    pub kafka: KafkaConfig,
    /// The events' schema, for the JSON decoder of each consumer session.
    pub schema: EventSchema,
    pub engine: SqlEngine,
    pub rules: ValidationRules,
    pub outputs: Vec<Output>,
    pub dead_letters: DeadLetterTarget,
    pub config: PipelineConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Schema(#[from] weir_schemas::SchemaError),
    #[error(transparent)]
    Sql(#[from] weir_transform::TransformError),
    #[error(transparent)]
    Store(#[from] weir_sink::StoreError),
    #[error("{0}")]
    Decoder(#[from] weir_ingest::decode::DecoderError),
}

impl Pipeline {
    pub async fn build(config: PipelineConfig) -> Result<Self, BuildError> {
        let config_name = config.path.display().to_string();
        let schema_path = config.resolve(&config.source.schema);
        if !schema_path.is_file() {
            return Err(missing_file(&config, &config.source.schema, "schema file").into());
        }
        let schema = EventSchema::load(&schema_path)?;
        check_event_time(&config, &schema)?;

        let keys = config
            .sql
            .keys
            .iter()
            .map(|(name, key)| (name.clone(), key.as_bytes().to_vec()))
            .collect();
        let engine = SqlEngine::new(&config.source.table, schema.table_schema())?
            .with_event_time(&config.source.event_time)
            .with_hash_keys(&weir_transform::HashKeys::new(keys));
        let rules: Vec<(String, String)> = config
            .validation
            .iter()
            .map(|r| (r.name.clone(), r.expr.clone()))
            .collect();
        let rules = ValidationRules::new(&engine, &rules, &config_name)?;

        let mut outputs = Vec::with_capacity(config.transforms.len());
        for t in &config.transforms {
            let sql_path = config.resolve(&t.sql);
            if !sql_path.is_file() {
                let what = format!("SQL file of transform `{}`", t.name);
                return Err(missing_file(&config, &t.sql, &what).into());
            }
            let transform = engine.transform_file(&t.name, &sql_path).await?;
            // A windowed dataset is partitioned by the window's start, and complete up to
            // the windows its commits emitted.
            let time_column = match transform.kind() {
                TransformKind::Stateless => config.source.event_time.as_str(),
                TransformKind::Windowed(kind) => {
                    check_windowed(&config, &schema, &t.name, kind, t.sink.time_partitions)?;
                    weir_transform::window::WINDOW_START
                }
            };
            let time_specs = match t.sink.time_partitions {
                Some(granularity) => {
                    check_time_column(&config, &t.name, &transform.schema(), time_column)?;
                    granularity.partition_specs(time_column)
                }
                None => Vec::new(),
            };
            let specs: Vec<PartitionSpec> = time_specs
                .into_iter()
                .chain(
                    t.sink
                        .partition_by
                        .iter()
                        .map(|p| (p.name.clone(), p.expr.clone())),
                )
                .map(|(name, expr)| PartitionSpec { name, expr })
                .collect();
            let where_ = format!("{config_name}: transform `{}`", t.name);
            let partitioner = Partitioner::new(&engine, &transform.schema(), &specs, &where_)?;
            let url = config.resolve_url(&t.sink.url);
            let (store, root) = weir_sink::open_store(&url, &t.sink.storage)?;
            let options = DatasetOptions {
                compression: t.sink.compression,
                row_group_rows: t.sink.row_group_rows,
                roll: RollPolicy {
                    target_file_bytes: t.sink.target_file_size.as_u64(),
                    max_file_rows: t.sink.max_file_rows,
                    max_file_age: t.sink.max_file_age,
                },
                upload_buffer_bytes: upload_buffer(t.sink.target_file_size.as_u64()),
                time_partitions: t.sink.time_partitions,
                max_open_files: t.sink.max_open_files,
                log_retention: Some(config.delivery.log_retention),
            };
            let dataset = Dataset::new(&t.name, store, root, &transform.schema(), options);
            let windows = match transform.kind() {
                TransformKind::Windowed(_) => Some(
                    WindowState::new(&engine, &transform, t.allowed_lateness.as_millis() as i64)
                        .map_err(|e| weir_transform::TransformError::Execute {
                            transform: t.name.clone(),
                            error: e,
                        })?,
                ),
                TransformKind::Stateless => None,
            };
            outputs.push(Output {
                transform,
                partitioner,
                dataset,
                url,
                windows,
            });
        }

        let dead_letters = match (&config.dead_letters.url, &config.dead_letters.topic) {
            (Some(url), _) => {
                let url = config.resolve_url(url);
                let (store, root) = weir_sink::open_store(&url, &config.dead_letters.storage)?;
                let options = DatasetOptions {
                    compression: weir_sink::Compression::Zstd,
                    row_group_rows: 64 * 1024,
                    roll: RollPolicy {
                        target_file_bytes: 128 << 20,
                        max_file_rows: u64::MAX,
                        max_file_age: config.delivery.commit_interval,
                    },
                    upload_buffer_bytes: 8 << 20,
                    max_open_files: 1,
                    // By the day they were dead-lettered, not by event time.
                    time_partitions: None,
                    log_retention: Some(config.delivery.log_retention),
                };
                let schema = weir_schemas::DeadLetters::schema();
                DeadLetterTarget::Dataset {
                    dataset: Box::new(Dataset::new("dead_letters", store, root, &schema, options)),
                    url,
                }
            }
            (None, Some(topic)) => DeadLetterTarget::Topic(topic.clone()),
            (None, None) => unreachable!("checked when the config was loaded"),
        };

        let kafka = KafkaConfig {
            bootstrap_servers: config.source.bootstrap_servers.clone(),
            topics: config.source.topics.clone(),
            group_id: config.source.group_id.clone(),
            start: config.source.start,
            properties: config.source.properties.clone(),
            max_batch_messages: config.source.max_batch_messages,
            max_batch_bytes: config.source.max_batch_bytes.as_u64() as usize,
            max_batch_wait: config.source.max_batch_wait,
        };
        // Fail now, not when the first consumer starts.
        JsonDecoder::new(&schema, config.source.max_batch_messages)?;
        Ok(Self {
            name: config.name.clone(),
            kafka,
            schema,
            engine,
            rules,
            outputs,
            dead_letters,
            config,
        })
    }
}

fn missing_file(config: &PipelineConfig, path: &std::path::Path, what: &str) -> ConfigError {
    let written = path.display().to_string();
    config.error_at(
        &format!("\"{written}\""),
        format!(
            "the {what} `{written}` does not exist (looked for {})",
            config.resolve(path).display()
        ),
    )
}

/// Uploads switch to multipart past this size; smaller files go up in one request.
fn upload_buffer(target_file_bytes: u64) -> usize {
    target_file_bytes.clamp(5 << 20, 16 << 20) as usize
}

/// A window places each event by its event time, which must therefore be there; session
/// windows have no bounded start, so their datasets cannot be marked complete by it.
fn check_windowed(
    config: &PipelineConfig,
    schema: &EventSchema,
    transform: &str,
    kind: WindowKind,
    time_partitions: Option<weir_sink::TimeGranularity>,
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
fn check_time_column(
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

fn check_event_time(config: &PipelineConfig, schema: &EventSchema) -> Result<(), ConfigError> {
    let name = &config.source.event_time;
    let message = match schema.field(name).map(|f| &f.ty) {
        Some(FieldType::Timestamp) => return Ok(()),
        Some(other) => format!(
            "`event_time`: the field `{name}` is {other:?} in the schema, expected a timestamp"
        ),
        None => format!(
            "`event_time`: the schema {} has no field `{name}`",
            config.resolve(&config.source.schema).display()
        ),
    };
    Err(config.error_at("event_time", message))
}
