//! A pipeline ready to run: the config loaded, the schema read, every SQL text planned and
//! every dataset located. Building one touches no Kafka broker and writes nothing, so all
//! configuration and SQL errors surface before anything starts.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use weir_ingest::avro::{AvroSchema, JsonToAvro, arrow_form, declared_schema, project};
use weir_ingest::protobuf::{JsonToProtobuf, ProtobufReader, compile_schema};
use weir_ingest::registry::{
    BlockingRegistry, ReaderEvolution, RegisteredSchema, RegistryConfig, SchemaRegistry,
    SubjectVersion, WriterSchemas,
};
use weir_ingest::schema_file::check_castable;
use weir_ingest::{
    AvroDecoder, ConsumerConfig, Decode, DecodeStall, Decoding, EventTimeBounds, JsonDecoder,
    ProtobufDecoder, SourceTable,
};
use weir_schemas::EventSchema;
use weir_sink::{Dataset, DatasetOptions, DeltaOptions, ParquetDataset, PathLimits, RollPolicy};
use weir_transform::{
    Output, PartitionSpec, Partitioner, SqlEngine, TransformKind, Transforms, ValidationRules,
};

use crate::config::{
    ConfigError, Evolution, PayloadFormat, PipelineConfig, ReaderVersion, SinkFormat,
    check_event_time, check_time_column, check_windowed,
};

/// How a sample's lines become payloads of the pipeline's format.
pub enum SampleEncoding {
    /// JSON topics: a line is a payload.
    AsIs,
    /// Avro topics: a JSON object line is written as the reader schema's Avro; any other line
    /// is a framed payload in base64, as consumed.
    Avro(JsonToAvro),
    /// Protobuf topics: a JSON object line (Protobuf's JSON mapping) is written as the reader
    /// message; any other line is a framed payload in base64.
    Protobuf(JsonToProtobuf),
}

impl SampleEncoding {
    /// The payload of sample `line`; `Err` says what is wrong with it.
    pub fn payload(&self, line: &str) -> Result<Vec<u8>, String> {
        match self {
            SampleEncoding::AsIs => Ok(line.as_bytes().to_vec()),
            SampleEncoding::Avro(encoder) if line.trim_start().starts_with('{') => {
                encoder.encode(line)
            }
            SampleEncoding::Protobuf(encoder) if line.trim_start().starts_with('{') => {
                encoder.encode(line)
            }
            SampleEncoding::Avro(_) | SampleEncoding::Protobuf(_) => {
                use base64::Engine;
                let format = match self {
                    SampleEncoding::Avro(_) => "Avro",
                    _ => "Protobuf",
                };
                base64::engine::general_purpose::STANDARD
                    .decode(line.trim())
                    .map_err(|e| {
                        format!(
                            "expected a JSON object or a framed {format} message in base64: {e}"
                        )
                    })
            }
        }
    }
}

/// Where one transform's rows go.
pub struct OutputDataset {
    pub dataset: Arc<dyn Dataset>,
    pub url: String,
}

/// Where dead letters go.
pub enum DeadLetterTarget {
    Dataset {
        dataset: Arc<dyn Dataset>,
        url: String,
    },
    Topic(String),
}

pub struct Pipeline {
    pub name: String,
    pub kafka: ConsumerConfig,
    /// How consumed messages become batches: the events' format and the source table.
    pub decoding: Decoding,
    pub transforms: Transforms,
    /// Where each transform output's rows go, in the order of `transforms.outputs()`.
    pub outputs: Vec<OutputDataset>,
    pub dead_letters: DeadLetterTarget,
    /// Why decoding waits, while it does (a schema registry that does not answer).
    pub decode_stall: Arc<DecodeStall>,
    /// How the lines of a sample (`weir sql run`, golden tests) become message payloads.
    pub samples: SampleEncoding,
    /// The source table's columns, and where they come from (in words).
    pub source_schema: SchemaRef,
    pub source_described: String,
    /// With `evolution = "add_columns"`: where the decoders report writer schemas with
    /// fields the reader lacks.
    pub evolution: Option<Arc<ReaderEvolution>>,
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
    #[error(transparent)]
    Decoder(#[from] weir_ingest::DecoderError),
    #[error("{config}: {error}")]
    Registry {
        config: String,
        error: weir_ingest::registry::RegistryError,
    },
    #[error("{config}: the reader schema, {what}: {message}")]
    ReaderSchema {
        config: String,
        what: String,
        message: String,
    },
}

impl Pipeline {
    pub async fn build(config: PipelineConfig) -> Result<Self, BuildError> {
        let config_name = config.path.display().to_string();
        let decode_threads = config.source.decode_threads.map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(MAX_DEFAULT_DECODE_THREADS)
            },
            |n| n.get(),
        );
        let decode_stall = Arc::new(DecodeStall::default());
        let evolution = config
            .source
            .schema_registry
            .as_ref()
            .filter(|r| r.evolution == Evolution::AddColumns)
            .map(|_| Arc::new(ReaderEvolution::default()));
        let ReadSource {
            schema,
            decoders,
            samples,
            described: schema_source,
        } = match config.source.format {
            PayloadFormat::Json => {
                let written = config.source.schema.as_ref().expect("checked at load");
                let schema_path = config.resolve(written);
                if !schema_path.is_file() {
                    return Err(missing_file(&config, written, "schema file").into());
                }
                let schema = EventSchema::load(&schema_path)?;
                let decoders = (0..decode_threads)
                    .map(|_| Box::new(JsonDecoder::new(&schema)) as Box<dyn Decode>)
                    .collect();
                ReadSource {
                    schema,
                    decoders,
                    samples: SampleEncoding::AsIs,
                    described: format!("schema file {}", schema_path.display()),
                }
            }
            PayloadFormat::Avro => {
                avro_decoders(&config, decode_threads, &decode_stall, &evolution).await?
            }
            PayloadFormat::Protobuf => {
                protobuf_decoders(&config, decode_threads, &decode_stall, &evolution).await?
            }
        };
        check_event_time(&config, &schema)?;

        let keys = config
            .sql
            .keys
            .iter()
            .map(|(name, key)| (name.clone(), key.as_bytes().to_vec()))
            .collect();
        let engine = SqlEngine::with_memory_limit(
            &config.source.table,
            schema.table_schema(),
            Some(config.delivery.max_query_memory.as_u64() as usize),
        )?
        .with_event_time(&config.source.event_time)
        .with_hash_keys(&weir_transform::HashKeys::new(keys));
        let rules: Vec<(String, String)> = config
            .validation
            .iter()
            .map(|r| (r.name.clone(), r.expr.clone()))
            .collect();
        let rules = ValidationRules::new(&engine, &rules, &config_name)?;

        let mut transform_outputs = Vec::with_capacity(config.transforms.len());
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
                    weir_transform::windows::WINDOW_START
                }
            };
            let time_spec = match t.sink.time_partitions {
                Some(granularity) => {
                    check_time_column(&config, &t.name, &transform.schema(), time_column)?;
                    Some(PartitionSpec::Time {
                        column: time_column.to_owned(),
                        granularity,
                    })
                }
                None => None,
            };
            let specs: Vec<PartitionSpec> = time_spec
                .into_iter()
                .chain(t.sink.partition_by.iter().map(|p| PartitionSpec::Expr {
                    name: p.name.clone(),
                    expr: p.expr.clone(),
                }))
                .collect();
            let where_ = format!("{config_name}: transform `{}`", t.name);
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
                max_partitions_per_checkpoint: t.sink.max_partitions_per_checkpoint,
                log_retention: Some(config.delivery.log_retention),
                path_limits: PathLimits::for_url(&url),
                snapshot_every: Some(config.delivery.snapshot_every),
                schema_source: schema_source.clone(),
                delta: (t.sink.format == SinkFormat::Delta).then(|| DeltaOptions {
                    url: url.clone(),
                    storage: t
                        .sink
                        .storage
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    app: config.name.clone(),
                    partition_columns: specs
                        .iter()
                        .flat_map(|spec| spec.names())
                        .map(str::to_owned)
                        .collect(),
                }),
            };
            let dataset = ParquetDataset::new(&t.name, store, root, &transform.schema(), options);
            let partitioner = Partitioner::new(&engine, &transform.schema(), &specs, &where_)?
                .with_limits(
                    dataset.max_partition_segment_bytes(),
                    dataset.max_partition_path_bytes(),
                );
            outputs.push(OutputDataset {
                dataset: Arc::new(dataset),
                url,
            });
            transform_outputs.push(Output::new(
                &engine,
                transform,
                partitioner,
                t.allowed_lateness,
            )?);
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
                    // Unpartitioned.
                    max_partitions_per_checkpoint: usize::MAX,
                    // By the day they were dead-lettered, not by event time.
                    time_partitions: None,
                    log_retention: Some(config.delivery.log_retention),
                    path_limits: PathLimits::for_url(&url),
                    snapshot_every: Some(config.delivery.snapshot_every),
                    schema_source: "weir's dead-letter columns".into(),
                    delta: None,
                };
                let schema = weir_schemas::DeadLetters::schema();
                let dataset = ParquetDataset::new("dead_letters", store, root, &schema, options);
                DeadLetterTarget::Dataset {
                    dataset: Arc::new(dataset),
                    url,
                }
            }
            (None, Some(topic)) => DeadLetterTarget::Topic(topic.clone()),
            (None, None) => unreachable!("checked when the config was loaded"),
        };

        let kafka = ConsumerConfig {
            bootstrap_servers: config.source.bootstrap_servers.clone(),
            topics: config.source.topics.clone(),
            group_id: config.source.group_id.clone(),
            start: config.source.start,
            properties: config.source.properties.clone(),
            max_batch_messages: config.source.max_batch_messages,
            max_batch_bytes: config.source.max_batch_bytes.as_u64() as usize,
            max_batch_wait: config.source.max_batch_wait,
        };
        let decoding = Decoding {
            decoders,
            table: SourceTable::new(
                &schema,
                &config.source.event_time,
                EventTimeBounds {
                    max_ahead: config.watermarks.max_ahead_of_clock,
                },
            )?,
        };
        Ok(Self {
            name: config.name.clone(),
            kafka,
            decoding,
            transforms: Transforms::new(engine, rules, transform_outputs),
            outputs,
            dead_letters,
            decode_stall,
            samples,
            source_schema: schema.arrow_schema(),
            source_described: schema_source,
            evolution,
            config,
        })
    }

    /// Every dataset the pipeline commits to: the outputs', then the dead letters' if they
    /// go to a dataset.
    pub fn datasets(&self) -> impl Iterator<Item = &dyn Dataset> {
        let dead = match &self.dead_letters {
            DeadLetterTarget::Dataset { dataset, .. } => Some(dataset.as_ref()),
            DeadLetterTarget::Topic(_) => None,
        };
        self.outputs.iter().map(|o| o.dataset.as_ref()).chain(dead)
    }
}

/// How the source's payloads are read: the event schema, a decoder per decoding thread,
/// how samples are encoded, and where the columns come from (in words).
struct ReadSource {
    schema: EventSchema,
    decoders: Vec<Box<dyn Decode>>,
    samples: SampleEncoding,
    described: String,
}

/// The registry of Avro or Protobuf topics, and the reader schema in it: the subject of the
/// first topic, at the configured version.
struct RegisteredReader {
    fetch: BlockingRegistry,
    subject: String,
    schema: RegisteredSchema,
    /// How the reader schema is named in messages.
    what: String,
    config: String,
}

impl RegisteredReader {
    /// The reader of `config`, which must be a `schema_type` (`AVRO`, `PROTOBUF`) schema.
    async fn ask(config: &PipelineConfig, schema_type: &str) -> Result<Self, BuildError> {
        let section = config
            .source
            .schema_registry
            .as_ref()
            .expect("checked at load");
        let config_name = config.path.display().to_string();
        let registry_error = |error| BuildError::Registry {
            config: config_name.clone(),
            error,
        };
        let registry = SchemaRegistry::new(&RegistryConfig {
            url: section.url.clone(),
            username: section.username.clone(),
            password: section.password.clone(),
            ca_file: section.ca_file.as_ref().map(|p| config.resolve(p)),
            client_identity_file: section
                .client_identity_file
                .as_ref()
                .map(|p| config.resolve(p)),
            timeout: section.timeout,
        })
        .map_err(registry_error)?;
        let subject = section.subject(&config.source.topics[0]);
        let version = match section.version {
            ReaderVersion::Latest => SubjectVersion::Latest,
            ReaderVersion::Pinned(n) => SubjectVersion::Number(n),
        };
        let schema = registry
            .subject_version(&subject, version)
            .await
            .map_err(registry_error)?;
        let what = format!(
            "subject `{subject}` version {} (schema id {})",
            schema
                .version
                .map_or_else(|| version.to_string(), |v| v.to_string()),
            schema.id
        );
        let reader = Self {
            fetch: BlockingRegistry::new(registry).map_err(registry_error)?,
            subject,
            schema,
            what,
            config: config_name,
        };
        if !reader.schema.schema_type.eq_ignore_ascii_case(schema_type) {
            return Err(reader.error(format!(
                "it is a {} schema, and `format = \"{}\"`",
                reader.schema.schema_type,
                schema_type.to_lowercase()
            )));
        }
        Ok(reader)
    }

    /// The schema file `written` (as the config has it) the reader is cut down to.
    fn schema_file(
        &self,
        config: &PipelineConfig,
        written: &std::path::Path,
    ) -> Result<EventSchema, BuildError> {
        let path = config.resolve(written);
        if !path.is_file() {
            return Err(missing_file(config, written, "schema file").into());
        }
        Ok(EventSchema::load(&path)?)
    }

    /// What is wrong with reading the reader schema as the schema file `written`.
    fn schema_file_error(
        &self,
        config: &PipelineConfig,
        written: &std::path::Path,
        message: String,
    ) -> BuildError {
        BuildError::ReaderSchema {
            config: self.config.clone(),
            what: format!(
                "{}, read as the schema file {}",
                self.what,
                config.resolve(written).display()
            ),
            message,
        }
    }

    /// Where the source's columns come from, in words.
    fn described(&self, config: &PipelineConfig) -> String {
        match &config.source.schema {
            Some(written) => format!(
                "{}, read as the schema file {}",
                self.what,
                config.resolve(written).display()
            ),
            None => self.what.clone(),
        }
    }

    /// What is wrong with the reader schema, for the pipeline's error.
    fn error(&self, message: String) -> BuildError {
        BuildError::ReaderSchema {
            config: self.config.clone(),
            what: self.what.clone(),
            message,
        }
    }
}

/// Avro topics: the reader schema from the registry, the columns it gives (or those of the
/// schema file), and decoders that resolve every writer schema met on the topics to it.
async fn avro_decoders(
    config: &PipelineConfig,
    threads: usize,
    stall: &Arc<DecodeStall>,
    evolution: &Option<Arc<ReaderEvolution>>,
) -> Result<ReadSource, BuildError> {
    let reader = RegisteredReader::ask(config, "AVRO").await?;
    let described = reader.described(config);
    let reader_error = |message| reader.error(message);
    let samples = JsonToAvro::new(&reader.schema.schema, reader.schema.id).map_err(reader_error)?;
    let (schema, reader_schema) = match &config.source.schema {
        // The schema file's fields, in its types: the registry's schema cut down to them.
        Some(written) => {
            let file = reader.schema_file(config, written)?;
            let file_error = |message| reader.schema_file_error(config, written, message);
            let projected = project(&reader.schema.schema, &file.fields).map_err(file_error)?;
            let reader_schema = AvroSchema::new(projected);
            let arrow = arrow_form(&reader_schema).map_err(file_error)?;
            check_castable(&arrow, &file.arrow_schema()).map_err(file_error)?;
            (file, reader_schema)
        }
        None => {
            let reader_schema = AvroSchema::new(reader.schema.schema.clone());
            let declared = arrow_form(&reader_schema)
                .and_then(|arrow| declared_schema(&arrow, &config.source.event_time))
                .map_err(reader_error)?;
            let schema = EventSchema::from_arrow(&reader.subject, declared)?;
            (schema, reader_schema)
        }
    };
    let declared = schema.arrow_schema();
    tracing::info!(
        subject = reader.subject,
        schema_id = reader.schema.id,
        "Avro topics are read with {}",
        reader.what
    );
    let writers = WriterSchemas::new(Box::new(reader.fetch), reader_schema, stall.clone());
    let writers = Arc::new(match evolution {
        Some(evolution) => writers.with_evolution(evolution.clone()),
        None => writers,
    });
    let decoders = (0..threads)
        .map(|_| Box::new(AvroDecoder::new(writers.clone(), declared.clone())) as Box<dyn Decode>)
        .collect();
    Ok(ReadSource {
        schema,
        decoders,
        samples: SampleEncoding::Avro(samples),
        described,
    })
}

/// Protobuf topics: the reader message from the registry's schema (compiled with its
/// imports), its columns, and decoders that read every writer schema's messages into them.
async fn protobuf_decoders(
    config: &PipelineConfig,
    threads: usize,
    stall: &Arc<DecodeStall>,
    evolution: &Option<Arc<ReaderEvolution>>,
) -> Result<ReadSource, BuildError> {
    let reader = RegisteredReader::ask(config, "PROTOBUF").await?;
    let described = reader.described(config);
    let reader_error = |message| reader.error(message);
    // Imports are fetched blocking: at start, nothing else waits on this thread.
    let file = compile_schema(&reader.schema, &reader.fetch)
        .map_err(|error| BuildError::Registry {
            config: reader.config.clone(),
            error,
        })?
        .map_err(reader_error)?;
    let section = config
        .source
        .schema_registry
        .as_ref()
        .expect("checked at load");
    let message = section.message.as_deref().or(section.record.as_deref());
    let mut reader_message =
        ProtobufReader::new(&file, message, &config.source.event_time).map_err(reader_error)?;
    let schema = match &config.source.schema {
        // The schema file's fields, in its types: the message's fields cut down to them.
        Some(written) => {
            let file = reader.schema_file(config, written)?;
            reader_message = reader_message
                .with_schema_file(file.clone())
                .map_err(|message| reader.schema_file_error(config, written, message))?;
            file
        }
        None => EventSchema::from_arrow(&reader.subject, reader_message.declared_schema())?,
    };
    let samples = JsonToProtobuf::new(reader_message.message(), reader.schema.id);
    tracing::info!(
        subject = reader.subject,
        schema_id = reader.schema.id,
        reader_message = reader_message.message().full_name(),
        "Protobuf topics are read with {}",
        reader.what
    );
    let writers = WriterSchemas::new(Box::new(reader.fetch), reader_message, stall.clone());
    let writers = Arc::new(match evolution {
        Some(evolution) => writers.with_evolution(evolution.clone()),
        None => writers,
    });
    let decoders = (0..threads)
        .map(|_| Box::new(ProtobufDecoder::new(writers.clone())) as Box<dyn Decode>)
        .collect();
    Ok(ReadSource {
        schema,
        decoders,
        samples: SampleEncoding::Protobuf(samples),
        described,
    })
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

/// Decoding threads when the config does not say: one per core, up to this many. Past it the
/// sequential stages behind decoding hold the pipeline back, and each thread holds up to two
/// batches in memory.
const MAX_DEFAULT_DECODE_THREADS: usize = 4;

/// Uploads switch to multipart past this size; smaller files go up in one request.
fn upload_buffer(target_file_bytes: u64) -> usize {
    target_file_bytes.clamp(5 << 20, 16 << 20) as usize
}
