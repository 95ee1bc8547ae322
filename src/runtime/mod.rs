//! The supervisor: wires ingest, transforms and datasets, and owns the checkpoint.
//!
//! A reader thread polls and decodes; this task runs each batch through the transform stage
//! and writes what it yields. Every `commit_interval` (or sooner when buffers fill, or when
//! partitions are revoked) a checkpoint commits each dataset: its files and the offset
//! ranges they hold go into the dataset's commit log, and only then are the Kafka offsets
//! committed, for lag tools. Where a partition resumes is read from the commit logs when it
//! is assigned, after claiming it there: the lowest position over the datasets, each dataset
//! skipping what it already holds. A crash at any point re-reads from there and writes every
//! record exactly once.
//!
//! When a commit is refused because another instance claimed a partition (this one was a
//! zombie), everything uncommitted is dropped and the instance rejoins the group afresh.
//!
//! | file | role |
//! | --- | --- |
//! | `session.rs` | one consumer-group membership: the reader, the select loop, the drain |
//! | `rebalance.rs` | partitions assigned (claims, resume positions, windows) and revoked |
//! | `batch.rs` | one consumed batch through the transforms into the datasets |
//! | `checkpoint.rs` | committing every dataset, then the Kafka offsets |
//! | `evolution.rs` | the reader schema following the registry (`evolution = "add_columns"`) |
//! | `log_view.rs` | what the brokers say at a checkpoint: idle partitions, watermark coverage |
//! | `summary.rs` | what a run did |

mod batch;
mod checkpoint;
mod evolution;
mod log_view;
mod memory_budget;
mod rebalance;
mod session;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use tokio::sync::watch;
use weir_ingest::dead_letter_topic::DeadLetterTopic;
use weir_ingest::offsets::OffsetClient;
use weir_ingest::registry::ReaderEvolution;
use weir_ingest::{ConsumerConfig, DecodeStall, Decoding, KafkaSource};
use weir_schemas::{DeadLetters, OffsetRanges, PartitionKey, PayloadPolicy, SourceBatch};
use weir_sink::DatasetWriter;
use weir_transform::{TransformError, Transforms, Watermarks};

use crate::config::PipelineConfig;
use crate::pipeline::{DeadLetterTarget, Pipeline};
use crate::telemetry::{Observer, Timestamps};
use log_view::Brokers;
use memory_budget::MemoryBudget;

pub use summary::{DatasetSummary, Summary};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kafka(#[from] weir_ingest::KafkaError),
    #[error(transparent)]
    Sink(#[from] weir_sink::SinkError),
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error("the {0} panicked")]
    Panicked(&'static str),
    #[error(
        "partition {partition} went back: offset {first} arrived where offset {expected} or \
         later was due (where this instance resumed it or last read it). Its log was replaced \
         or cut short under weir: the topic deleted and created again, an unclean leader \
         election, or offsets reset. weir stops rather than take these messages for ones its \
         datasets already hold. If the topic was recreated on purpose, write to new dataset \
         URLs (or move the old datasets away) and start again; if the broker lost messages, \
         compare the datasets with the topic before going on"
    )]
    OffsetsWentBack {
        partition: PartitionKey,
        expected: i64,
        first: i64,
    },
}

/// Runs until `shutdown` turns true (or the reader fails), then drains, checkpoints and
/// returns what it did. What happens is reported to `observer` as it happens.
pub async fn run(
    pipeline: Pipeline,
    mut shutdown: watch::Receiver<bool>,
    observer: Arc<Observer>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let mut state = State::open(pipeline, observer).await?;
    state.watch_brokers()?;
    tracing::info!(pipeline = %state.name, topics = ?state.kafka.topics, writer = %state.writer, "pipeline started");
    loop {
        match state.consume(&mut shutdown).await {
            Ok(()) => {
                let met = state.evolution.as_ref().and_then(|e| e.take());
                match met {
                    Some(new) if !*shutdown.borrow() => state = state.follow(new).await?,
                    _ => break,
                }
            }
            Err(RunError::Sink(e)) if e.is_fenced() => {
                tracing::warn!(error = %e, "rejoining the consumer group without the lost partitions' uncommitted work");
                state.abort().await;
                state.summary.fenced += 1;
            }
            Err(e) => return Err(e),
        }
    }
    let summary = state.finish(started);
    tracing::info!(
        events = summary.events_in,
        elapsed_seconds = summary.elapsed_seconds,
        "pipeline stopped"
    );
    Ok(summary)
}

/// Runs already-consumed batches through the pipeline exactly as the service would, without
/// Kafka: `partitions` are assigned first (resuming wherever the datasets' logs say), and a
/// checkpoint follows every batch. For trying transforms on a sample.
pub async fn replay(
    pipeline: Pipeline,
    partitions: &[PartitionKey],
    batches: impl IntoIterator<Item = SourceBatch>,
    observer: Arc<Observer>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let mut state = State::open(pipeline, observer).await?;
    state.assign(partitions).await?;
    for batch in batches {
        state.process(batch).await?;
        state.checkpoint(false).await?;
    }
    Ok(state.finish(started))
}

impl State {
    /// Lets checkpoints ask the brokers where partitions end.
    fn watch_brokers(&mut self) -> Result<(), RunError> {
        self.brokers = Some(Brokers::new(
            OffsetClient::new(&self.kafka, true)?,
            self.kafka.topics.clone(),
            self.kafka.start,
        ));
        Ok(())
    }
}

/// One output's dataset, opened for this process's writer.
struct OutputDataset {
    writer: Box<dyn DatasetWriter>,
    url: String,
}

/// Where the run writes dead letters.
enum DeadLetterSink {
    /// A dataset, committed exactly once like the others.
    Dataset {
        writer: Box<dyn DatasetWriter>,
        url: String,
    },
    /// A Kafka topic: at least once (a crash between send and commit sends again).
    Topic {
        topic: DeadLetterTopic,
        name: String,
    },
}

impl DeadLetterSink {
    /// Where the dead letters go, in words.
    fn target(&self) -> String {
        match self {
            DeadLetterSink::Dataset { url, .. } => url.clone(),
            DeadLetterSink::Topic { name, .. } => format!("kafka topic {name}"),
        }
    }
}

/// What was consumed since the last checkpoint and is not committed yet.
#[derive(Default)]
struct Pending {
    offsets: OffsetRanges,
    dead_letters: DeadLetters,
    /// Kafka timestamps of the messages, for freshness.
    timestamps: Timestamps,
    /// Late events dead-lettered, by windowed dataset.
    late: BTreeMap<String, u64>,
}

/// A running pipeline: its stages, what it owns and what it has not committed yet.
struct State {
    name: String,
    kafka: ConsumerConfig,
    /// The decoder, lent to each consumer session's reader and given back when it ends.
    decoding: Option<Decoding>,
    /// Tells decoders waiting on a registry to give up when a session ends.
    decode_stall: Arc<DecodeStall>,
    interval: Duration,
    max_buffered: usize,
    memory: MemoryBudget,
    /// Unique to this process: it owns claims in the commit logs and names the files.
    writer: String,
    transforms: Transforms,
    /// One per transform output, in the same order.
    outputs: Vec<OutputDataset>,
    dead_letters: DeadLetterSink,
    /// What the dead letters keep of their payloads.
    dead_letter_payloads: PayloadPolicy,
    /// The consumer of the current session.
    source: Option<Arc<KafkaSource>>,
    /// What checkpoints ask where partitions end; `None` when replaying batches.
    brokers: Option<Brokers>,
    /// Partitions assigned to this instance and claimed in every dataset.
    owned: HashSet<PartitionKey>,
    /// Where newly assigned partitions resume, until their first message arrives.
    resumed_at: HashMap<PartitionKey, i64>,
    /// The lowest offset each owned partition's next message may have: where it resumed,
    /// then past the last message read.
    next_offsets: HashMap<PartitionKey, i64>,
    watermarks: Watermarks,
    pending: Pending,
    summary: Summary,
    observer: Arc<Observer>,
    /// The source table's columns and where they come from (in words).
    source_schema: SchemaRef,
    source_described: String,
    /// With `evolution = "add_columns"`: the writer schemas with new fields the decoders met.
    evolution: Option<Arc<ReaderEvolution>>,
    /// What the pipeline was built from: built again when the reader schema follows the
    /// registry.
    config: PipelineConfig,
}

impl State {
    /// The state of a new run: every dataset's log opened, dead letters wired.
    async fn open(pipeline: Pipeline, observer: Arc<Observer>) -> Result<Self, RunError> {
        let Pipeline {
            name,
            kafka,
            decoding,
            transforms,
            outputs: datasets,
            dead_letters,
            decode_stall,
            samples: _,
            source_schema,
            source_described,
            evolution,
            config,
        } = pipeline;
        observer.watch_decoding(decode_stall.clone());
        let writer = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let orphan_grace = (config.delivery.commit_interval * 10).max(Duration::from_secs(3600));
        let mut outputs = Vec::with_capacity(datasets.len());
        let mut opened = Vec::with_capacity(datasets.len() + 1);
        for output in datasets {
            let dataset_writer = output.dataset.open(&writer, orphan_grace).await?;
            opened.push((output.dataset.name().to_owned(), output.url.clone()));
            outputs.push(OutputDataset {
                writer: dataset_writer,
                url: output.url,
            });
        }
        let dead_letters = match dead_letters {
            DeadLetterTarget::Dataset { dataset, url } => {
                opened.push((dataset.name().to_owned(), url.clone()));
                DeadLetterSink::Dataset {
                    writer: dataset.open(&writer, orphan_grace).await?,
                    url,
                }
            }
            DeadLetterTarget::Topic(name) => DeadLetterSink::Topic {
                topic: DeadLetterTopic::new(&kafka.bootstrap_servers, &kafka.properties, &name)?,
                name,
            },
        };
        observer.storage_checked(opened);
        Ok(State {
            name,
            kafka,
            decoding: Some(decoding),
            decode_stall,
            interval: config.delivery.commit_interval,
            max_buffered: config.delivery.max_buffered.as_u64() as usize,
            memory: MemoryBudget::new(config.delivery.max_memory.as_u64() as usize),
            writer,
            transforms,
            outputs,
            dead_letters,
            dead_letter_payloads: config.dead_letters.payload,
            source: None,
            brokers: None,
            owned: HashSet::new(),
            resumed_at: HashMap::new(),
            next_offsets: HashMap::new(),
            watermarks: Watermarks::new(
                config.watermarks.out_of_orderness,
                config.watermarks.idle_timeout,
            ),
            pending: Pending::default(),
            summary: Summary::default(),
            observer,
            source_schema,
            source_described,
            evolution,
            config,
        })
    }

    /// Every dataset with a commit log: the outputs and the dead-letter dataset.
    fn datasets(&mut self) -> impl Iterator<Item = &mut Box<dyn DatasetWriter>> {
        let dead = match &mut self.dead_letters {
            DeadLetterSink::Dataset { writer, .. } => Some(writer),
            DeadLetterSink::Topic { .. } => None,
        };
        self.outputs.iter_mut().map(|o| &mut o.writer).chain(dead)
    }

    /// The commit log of every dataset, as [`State::datasets`] lists them.
    fn dataset_logs(&self) -> impl Iterator<Item = &weir_sink::LogState> {
        let dead = match &self.dead_letters {
            DeadLetterSink::Dataset { writer, .. } => Some(writer.state()),
            DeadLetterSink::Topic { .. } => None,
        };
        self.outputs.iter().map(|o| o.writer.state()).chain(dead)
    }

    /// Bytes the open windows of every transform hold.
    fn window_state_bytes(&self) -> usize {
        self.transforms
            .outputs()
            .iter()
            .filter_map(|o| o.windows())
            .map(|w| w.memory_bytes())
            .sum()
    }

    /// Memory a checkpoint releases: rows in open files and the dead letters waiting for it.
    /// (Open windows stay open across checkpoints: the window state is reported on its own.)
    fn buffered_bytes(&self) -> usize {
        let files: usize = self.outputs.iter().map(|o| o.writer.buffered_bytes()).sum();
        files + self.pending.dead_letters.memory_bytes()
    }
}
