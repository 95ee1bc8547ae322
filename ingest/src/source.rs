//! The Kafka consumer: polls batches on its own thread, decodes them and hands them on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use weir_schemas::OffsetRanges;

use crate::decode::{Decoded, JsonDecoder};
use crate::kafka::{KafkaError, client_config};
use crate::raw::{Messages, RawMessages};

/// Where a consumer group without committed offsets starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    Earliest,
    Latest,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    pub start: StartPosition,
    /// Pass-through librdkafka properties (security.protocol, sasl.*, ssl.*, fetch tuning).
    pub properties: BTreeMap<String, String>,
    pub max_batch_messages: usize,
    pub max_batch_bytes: usize,
    pub max_batch_wait: Duration,
}

/// A decoded batch with the messages it came from.
pub struct SourceBatch {
    pub decoded: Decoded,
    pub messages: Messages,
}

impl SourceBatch {
    pub fn ranges(&self) -> &OffsetRanges {
        &self.messages.ranges
    }
}

/// Counters the reader keeps; read by the runtime for progress and summaries.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Times the reader found the pipeline full and waited before handing on a batch.
    pub backpressure_pauses: AtomicU64,
}

impl SourceStats {
    /// Messages consumed so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

struct SourceContext;

impl ClientContext for SourceContext {
    fn error(&self, error: RdKafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// A consumer-group member reading the pipeline's topics.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    config: SourceConfig,
}

impl KafkaSource {
    pub fn connect(config: SourceConfig) -> Result<Self, KafkaError> {
        let mut client = client_config(&config.bootstrap_servers, &config.properties);
        client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.start {
                    StartPosition::Earliest => "earliest",
                    StartPosition::Latest => "latest",
                },
            );
        // librdkafka prefetches up to 64 MiB by default; weir bounds memory itself, so keep
        // the prefetch smaller, and come back quickly once it has drained (after reaching the
        // limit librdkafka otherwise waits a whole second before fetching again).
        for (key, value) in [
            ("queued.max.messages.kbytes", "16384"),
            ("fetch.queue.backoff.ms", "10"),
        ] {
            if !config.properties.contains_key(key) {
                client.set(key, value);
            }
        }
        let consumer: BaseConsumer<SourceContext> = client
            .create_with_context(SourceContext)
            .map_err(|source| KafkaError::Create {
                role: "consumer",
                source,
            })?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaError::Subscribe {
                topics: config.topics.clone(),
                source,
            })?;
        Ok(Self { consumer, config })
    }

    /// Polls until a batch is full, `max_batch_wait` has passed since its first message, or
    /// `stop` is set. `None` when stopped with nothing polled.
    pub fn poll_batch(&self, stop: &AtomicBool) -> Result<Option<Messages>, KafkaError> {
        let cfg = &self.config;
        let mut raw = RawMessages::with_capacity(cfg.max_batch_messages);
        let mut deadline: Option<Instant> = None;
        while raw.len() < cfg.max_batch_messages && raw.payload_bytes() < cfg.max_batch_bytes {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let timeout = match deadline {
                None => Duration::from_millis(100),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => break,
                },
            };
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => {
                    deadline.get_or_insert_with(|| Instant::now() + cfg.max_batch_wait);
                    raw.push(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.timestamp().to_millis(),
                        m.key(),
                        m.payload(),
                    );
                }
                Some(Err(e @ RdKafkaError::MessageConsumptionFatal(_))) => {
                    return Err(KafkaError::Fatal(e));
                }
                Some(Err(e)) => tracing::warn!(error = %e, "kafka consume error"),
                None => {}
            }
        }
        Ok((!raw.is_empty()).then(|| raw.finish()))
    }

    /// Commits, for every partition in `ranges`, the offset after the last one: everything
    /// up to it is durable. Retries a few times; the next checkpoint's commit supersedes a
    /// failed one, so the caller may go on after an error.
    pub fn commit(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (key, _, last) in ranges.iter() {
            tpl.add_partition_offset(&key.topic, key.partition, Offset::Offset(last + 1))
                .expect("a non-negative offset is valid");
        }
        const ATTEMPTS: u32 = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                Err(source) if attempt >= ATTEMPTS => {
                    return Err(KafkaError::Commit {
                        attempts: attempt,
                        source,
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "offset commit failed, retrying");
                    std::thread::sleep(Duration::from_millis(100 << attempt));
                }
            }
        }
    }
}

/// Starts the reader: one thread polls and copies messages out of librdkafka, a second
/// checks and decodes them, so the two halves of ingest overlap. Decoded batches go through
/// `tx`; when the pipeline is full both threads wait, which pauses consumption. Runs until
/// `stop` is set or the receiver is gone; the handle returns the poller's result.
pub fn spawn_reader(
    source: Arc<KafkaSource>,
    mut decoder: JsonDecoder,
    tx: mpsc::Sender<SourceBatch>,
    stop: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
) -> JoinHandle<Result<(), KafkaError>> {
    // One polled batch may wait while the previous one is decoded.
    let (polled_tx, polled_rx) = std::sync::mpsc::sync_channel::<Messages>(1);
    let decoder_stats = stats.clone();
    let decoding = std::thread::Builder::new()
        .name("weir-decoder".into())
        .spawn(move || {
            for messages in polled_rx {
                let _span = tracing::debug_span!("decode", messages = messages.len()).entered();
                let decoded = decoder.decode(&messages);
                let batch = SourceBatch { decoded, messages };
                let batch = match tx.try_send(batch) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                    Err(mpsc::error::TrySendError::Full(batch)) => batch,
                };
                decoder_stats
                    .backpressure_pauses
                    .fetch_add(1, Ordering::Relaxed);
                if tx.blocking_send(batch).is_err() {
                    break;
                }
            }
        })
        .expect("spawning a thread");
    std::thread::Builder::new()
        .name("weir-kafka-reader".into())
        .spawn(move || {
            let result = (|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(messages) = source.poll_batch(&stop)? else {
                        continue;
                    };
                    stats
                        .messages
                        .fetch_add(messages.len() as u64, Ordering::Relaxed);
                    stats
                        .bytes
                        .fetch_add(messages.payload_bytes() as u64, Ordering::Relaxed);
                    if polled_tx.send(messages).is_err() {
                        break;
                    }
                }
                Ok(())
            })();
            // The decoder finishes what it holds and hands it on before the reader is done.
            drop(polled_tx);
            decoding.join().expect("the decoder thread does not panic");
            result
        })
        .expect("spawning a thread")
}
