//! The Kafka consumer: polls batches on its own thread, decodes them and hands them on.
//!
//! Rebalances travel the same road as messages. When partitions are assigned or revoked,
//! librdkafka calls back on the polling thread; the callback first hands on the messages
//! polled so far, then an event, and waits for the pipeline's answer: for an assignment, the
//! offset each partition resumes from (read from the datasets' commit logs, after claiming the
//! partitions there); for a revocation, that everything read from them is committed. Since
//! the pipeline takes events in order, it has processed every earlier message by then.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use weir_schemas::{Messages, OffsetRanges, PartitionKey, RawMessages, Settings, SourceBatch};

use crate::decode::{Abandoned, Decode, SourceTable};
use crate::decoders::{self, Dealer, Polled, Room};
use crate::kafka::{KafkaError, client_config};

/// Where a consumer group without committed offsets starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    Earliest,
    Latest,
}

/// How the pipeline's consumer connects, which topics it reads and how it batches them.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    pub start: StartPosition,
    /// Pass-through librdkafka properties (security.protocol, sasl.*, ssl.*, fetch tuning).
    pub properties: Settings,
    pub max_batch_messages: usize,
    pub max_batch_bytes: usize,
    pub max_batch_wait: Duration,
}

/// What the reader hands to the pipeline, in the order it happened.
pub enum SourceEvent {
    Batch(Box<SourceBatch>),
    /// Partitions were assigned. Answer with the offset each resumes from, in order (`None`:
    /// the consumer group's committed offset), or an error to stop consuming.
    Assigned {
        partitions: Vec<PartitionKey>,
        resume: oneshot::Sender<Result<Vec<Option<i64>>, String>>,
    },
    /// Partitions are being revoked (`lost`: taken away without a handover, e.g. after a
    /// session timeout). Answer once what can be committed is.
    Revoked {
        partitions: Vec<PartitionKey>,
        lost: bool,
        done: oneshot::Sender<()>,
    },
}

/// How the reader turns polled messages into batches: decoders of the payload format, one
/// per decoding thread, and the table their rows go into.
pub struct Decoding {
    pub decoders: Vec<Box<dyn Decode>>,
    pub table: SourceTable,
}

impl Decoding {
    /// Decodes `messages` on the calling thread, with the first decoder.
    pub fn decode(&mut self, messages: Messages) -> Result<SourceBatch, Abandoned> {
        let decoder = self.decoders.first_mut().expect("at least one decoder");
        self.table.decode(decoder.as_mut(), messages)
    }
}

/// Counters the reader keeps; read by the runtime for progress and summaries.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Times the reader found the pipeline full and waited before handing on a batch.
    pub backpressure_pauses: AtomicU64,
    pub client_errors: ClientErrors,
}

/// How often one and the same Kafka client error is logged at most.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(30);

/// The Kafka client's errors as the consumer met them. librdkafka reports a broker it cannot
/// use (refused, a TLS handshake or a login that fails) at every reconnection attempt, many
/// times a second: each distinct error is logged at most once per [`REPEAT_LOG_EVERY`], with
/// how often it came since, and the latest is kept for the probes to show.
#[derive(Debug, Default)]
pub struct ClientErrors {
    seen: Mutex<SeenErrors>,
}

#[derive(Debug, Default)]
struct SeenErrors {
    latest: Option<(String, Instant)>,
    /// Per error text: when it was last logged, and how often it came since.
    logged: HashMap<String, (Instant, u64)>,
}

impl ClientErrors {
    /// Takes in an error that says why the client cannot work (not a consequence of one,
    /// such as "all brokers are down"): the probes show the latest.
    pub fn record(&self, text: &str, now: Instant) {
        let text = without_timing(text);
        self.seen.lock().expect("not poisoned").latest = Some((text, now));
    }

    /// Whether to log `text` now: `Some(repeats)`, with how often it came without being
    /// logged since it last was. Texts that differ only in librdkafka's timing note
    /// ("after 4ms in state …") are one.
    pub fn to_log(&self, text: &str, now: Instant) -> Option<u64> {
        let text = without_timing(text);
        let mut seen = self.seen.lock().expect("not poisoned");
        // Error texts carry broker addresses, not values: few of them. Bounded all the same.
        if seen.logged.len() > 64 {
            seen.logged.clear();
        }
        match seen.logged.get_mut(&text) {
            Some((last, repeats)) if now.saturating_duration_since(*last) < REPEAT_LOG_EVERY => {
                *repeats += 1;
                None
            }
            Some((last, repeats)) => {
                *last = now;
                Some(std::mem::take(repeats))
            }
            None => {
                seen.logged.insert(text, (now, 0));
                Some(0)
            }
        }
    }

    /// The latest error and when it came.
    pub fn latest(&self) -> Option<(String, Instant)> {
        self.seen.lock().expect("not poisoned").latest.clone()
    }
}

/// `text` without librdkafka's notes of how long an attempt took, " (after 4ms in state
/// CONNECT)", which make every repetition of an error a new text.
fn without_timing(text: &str) -> String {
    let mut rest = text;
    let mut out = String::with_capacity(text.len());
    while let Some(start) = rest.find(" (after ") {
        out.push_str(&rest[..start]);
        match rest[start..].find(')') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

impl SourceStats {
    /// Messages consumed so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

/// State shared between the polling loop and librdkafka's callbacks, which run on the
/// polling thread inside `poll`.
struct SourceContext {
    /// The batch being polled.
    building: Mutex<RawMessages>,
    batch_capacity: usize,
    batch_bytes: usize,
    /// Where polled batches and events go; `None` once the reader has stopped.
    forward: Mutex<Option<Dealer>>,
    /// Why consuming must stop, set by a callback that could not do its job.
    fatal: Mutex<Option<String>>,
    /// The group offsets to commit for the partitions owned: the latest ones asked for.
    group_offsets: Mutex<BTreeMap<PartitionKey, i64>>,
    stats: Arc<SourceStats>,
    /// A batch waiting for room in the full pipeline while the consumer polls on.
    waiting: Mutex<Option<Polled>>,
    /// Told each time a decoding thread takes a batch.
    room: Arc<Room>,
}

/// How long a batch may wait for the decoding threads before the reader pauses its partitions
/// and polls on. Waiting without polling keeps what librdkafka prefetched (pausing drops it),
/// so the ordinary back-pressure of a backlog costs nothing; polling on keeps a member whose
/// pipeline is held up for longer (a slow checkpoint) in the group.
const PATIENCE_WHEN_FULL: Duration = Duration::from_secs(1);

/// Messages polled without waiting between two looks at the clock while a batch fills.
const CLOCK_EVERY: u32 = 64;

impl SourceContext {
    /// Logs a client error, unless the same one was logged a moment ago; `cause`: it says why
    /// the client cannot work, and the probes show it.
    fn client_error(&self, error: &dyn std::fmt::Display, detail: &str, cause: bool) {
        let text = match detail.is_empty() {
            true => error.to_string(),
            false => format!("{error}: {detail}"),
        };
        let now = Instant::now();
        if cause {
            self.stats.client_errors.record(&text, now);
        }
        if let Some(repeated) = self.stats.client_errors.to_log(&text, now) {
            tracing::warn!(%error, detail, repeated, "kafka client error");
        }
    }
}

impl SourceContext {
    /// Hands on the batch polled so far, so that it travels ahead of an event.
    fn hand_on_building(&self) {
        let raw = std::mem::replace(
            &mut *self.building.lock().expect("not poisoned"),
            RawMessages::for_batch(self.batch_capacity, self.batch_bytes),
        );
        if !raw.is_empty() {
            self.forward(Polled::Messages(Box::new(raw.finish())));
        }
    }

    /// Hands `polled` on, after the batch waiting for room if there is one, so that a
    /// rebalance event never overtakes messages polled before it.
    fn forward(&self, polled: Polled) -> bool {
        let Some(sender) = self.forward.lock().expect("not poisoned").clone() else {
            return false;
        };
        let waiting = self.waiting.lock().expect("not poisoned").take();
        if let Some(waiting) = waiting
            && sender.send(waiting).is_err()
        {
            return false;
        }
        sender.send(polled).is_ok()
    }

    fn fail(&self, reason: String) {
        tracing::error!(%reason, "stopping consumption");
        self.fatal
            .lock()
            .expect("not poisoned")
            .get_or_insert(reason);
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions = partition_keys(tpl);
        tracing::info!(partitions = %list(&partitions), "partitions assigned");
        self.hand_on_building();
        let (resume, answer) = oneshot::channel();
        let event = SourceEvent::Assigned {
            partitions: partitions.clone(),
            resume,
        };
        let offsets = if self.forward(Polled::Event(event)) {
            match answer.blocking_recv() {
                Ok(Ok(offsets)) => Some(offsets),
                Ok(Err(reason)) => {
                    self.fail(reason);
                    None
                }
                Err(_) => {
                    self.fail("the pipeline stopped during an assignment".into());
                    None
                }
            }
        } else {
            None
        };
        // Even when the assignment failed, librdkafka is told it was taken (a consumer that
        // never answers cannot leave the group); consumption stops at the next poll instead.
        let mut group_offsets = self.group_offsets.lock().expect("not poisoned");
        for (partition, offset) in partitions.iter().zip(offsets.unwrap_or_default()) {
            if let Some(offset) = offset {
                // Everything before it is committed to the datasets: let the group say so too.
                group_offsets.insert(partition.clone(), offset);
                tpl.set_partition_offset(
                    &partition.topic,
                    partition.partition,
                    Offset::Offset(offset),
                )
                .expect("the partition is in the list");
            }
        }
        drop(group_offsets);
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(e) = assigned {
            self.fail(format!("cannot take the assigned partitions: {e}"));
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions = partition_keys(tpl);
        let lost = consumer.assignment_lost();
        tracing::info!(partitions = %list(&partitions), lost, "partitions revoked");
        self.hand_on_building();
        let (done, answer) = oneshot::channel();
        let event = SourceEvent::Revoked {
            partitions: partitions.clone(),
            lost,
            done,
        };
        if self.forward(Polled::Event(event)) {
            // An error means the pipeline stopped: nothing more can be committed anyway.
            let _ = answer.blocking_recv();
        }
        // Forgotten only now: the pipeline's last checkpoint of these partitions puts their
        // offsets back, and every later commit would send them again over the new owner's.
        let mut offsets = self.group_offsets.lock().expect("not poisoned");
        for partition in &partitions {
            offsets.remove(partition);
        }
        drop(offsets);
        let unassigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(e) = unassigned {
            tracing::warn!(error = %e, "cannot give up revoked partitions");
        }
    }
}

/// Closes the road to the decoding threads when the polling thread ends, even by a panic, so
/// they and then the pipeline see the end. Callbacks from then on (the consumer closing)
/// find no pipeline to ask.
struct StopForwardingOnDrop<'a>(&'a SourceContext);

impl Drop for StopForwardingOnDrop<'_> {
    fn drop(&mut self) {
        let mut forward = self.0.forward.lock().unwrap_or_else(|e| e.into_inner());
        forward.take();
    }
}

fn partition_keys(tpl: &TopicPartitionList) -> Vec<PartitionKey> {
    tpl.elements()
        .iter()
        .map(|e| PartitionKey::new(e.topic(), e.partition()))
        .collect()
}

fn list(partitions: &[PartitionKey]) -> String {
    partitions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClientContext for SourceContext {
    fn error(&self, error: RdKafkaError, reason: &str) {
        let consequence = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        self.client_error(&error, reason, !consequence);
    }

    /// librdkafka's own log, its errors and warnings with repetitions held back as for
    /// client errors: it logs a failed connection at every attempt.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel::*;
        let repeated = || {
            let text = format!("{facility} {message}");
            self.stats.client_errors.to_log(&text, Instant::now())
        };
        match level {
            Emerg | Alert | Critical | Error => {
                if let Some(repeated) = repeated() {
                    tracing::error!(target: "librdkafka", repeated, "librdkafka: {facility} {message}");
                }
            }
            Warning => {
                if let Some(repeated) = repeated() {
                    tracing::warn!(target: "librdkafka", repeated, "librdkafka: {facility} {message}");
                }
            }
            Notice | Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            Debug => tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}"),
        }
    }
}

impl ConsumerContext for SourceContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        // A request can succeed while every partition in it failed (e.g. during a rebalance).
        let failed = result.err().map(|e| e.to_string()).or_else(|| {
            offsets
                .elements()
                .iter()
                .find_map(|e| e.error().err().map(|e| e.to_string()))
        });
        if let Some(error) = failed {
            tracing::debug!(%error, "Kafka offset commit failed; it is sent again");
        }
    }

    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "cannot give up partitions after a rebalance error");
                }
            }
        }
    }
}

/// A consumer-group member reading the pipeline's topics.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    config: ConsumerConfig,
}

impl KafkaSource {
    /// A consumer for `config`, counting into `stats`.
    pub fn connect(config: ConsumerConfig, stats: Arc<SourceStats>) -> Result<Self, KafkaError> {
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
        // limit librdkafka otherwise waits a whole second before fetching again). Cooperative
        // rebalancing moves only the partitions that change owner; the others keep flowing.
        for (key, value) in [
            ("queued.max.messages.kbytes", "16384"),
            ("fetch.queue.backoff.ms", "10"),
            ("partition.assignment.strategy", "cooperative-sticky"),
        ] {
            if !config.properties.contains_key(key) {
                client.set(key, value);
            }
        }
        let context = SourceContext {
            building: Mutex::new(RawMessages::for_batch(
                config.max_batch_messages,
                config.max_batch_bytes,
            )),
            batch_capacity: config.max_batch_messages,
            batch_bytes: config.max_batch_bytes,
            forward: Mutex::new(None),
            fatal: Mutex::new(None),
            group_offsets: Mutex::new(BTreeMap::new()),
            stats,
            waiting: Mutex::new(None),
            room: Arc::default(),
        };
        let consumer: BaseConsumer<SourceContext> = client
            .create_with_context(context)
            .map_err(|source| KafkaError::create("consumer", source))?;
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
    fn poll_batch(&self, stop: &AtomicBool) -> Result<Option<Messages>, KafkaError> {
        let cfg = &self.config;
        let context = self.consumer.context();
        let mut deadline: Option<Instant> = None;
        let (mut count, mut bytes) = (0, 0);
        // Polls since the clock was last read. In a backlog every poll brings a message: a
        // poll that does not wait reads no clock, and the batch's deadline is looked at
        // every `CLOCK_EVERY` messages.
        let mut unclocked = 0;
        while count < cfg.max_batch_messages && bytes < cfg.max_batch_bytes {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let timeout = match deadline {
                Some(_) if unclocked < CLOCK_EVERY => Duration::ZERO,
                None => Duration::from_millis(100),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => break,
                },
            };
            match self.poll_once(timeout)? {
                Some((messages, payload_bytes)) => {
                    deadline.get_or_insert_with(|| Instant::now() + cfg.max_batch_wait);
                    (count, bytes) = (messages, payload_bytes);
                    unclocked = if timeout.is_zero() { unclocked + 1 } else { 0 };
                }
                // Nothing ready: the next poll waits, up to the deadline.
                None => unclocked = CLOCK_EVERY,
            }
        }
        let raw = std::mem::replace(
            &mut *context.building.lock().expect("not poisoned"),
            RawMessages::for_batch(cfg.max_batch_messages, cfg.max_batch_bytes),
        );
        Ok((!raw.is_empty()).then(|| raw.finish()))
    }

    /// One poll: a message goes into the batch being built (`Some` of its size so far,
    /// messages and payload bytes), callbacks run, a fatal error or a failed rebalance ends
    /// consumption.
    fn poll_once(&self, timeout: Duration) -> Result<Option<(usize, usize)>, KafkaError> {
        let context = self.consumer.context();
        let polled = self.consumer.poll(timeout);
        if let Some(reason) = context.fatal.lock().expect("not poisoned").take() {
            return Err(KafkaError::Rebalance(reason));
        }
        match polled {
            Some(Ok(m)) => {
                let mut raw = context.building.lock().expect("not poisoned");
                raw.push(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.key(),
                    m.payload(),
                );
                Ok(Some((raw.len(), raw.payload_bytes())))
            }
            Some(Err(e @ RdKafkaError::MessageConsumptionFatal(_))) => Err(KafkaError::Fatal(e)),
            // The client's error callback said why already.
            Some(Err(e)) => {
                context.client_error(&e, "", false);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Hands `messages` on to the decoding threads, waiting up to [`PATIENCE_WHEN_FULL`] for
    /// room. While the pipeline stays full longer (a slow checkpoint or store holding it up),
    /// every assigned partition is paused and the consumer keeps polling: the group takes a
    /// member that stops polling for `max.poll.interval.ms` for dead, and would move its
    /// partitions away. Paused partitions yield no messages (the prefetched ones are dropped,
    /// and fetched again from the next offset on resume), so only a partition assigned
    /// meanwhile can bring any, into the next batch. A rebalance callback meanwhile hands the
    /// waiting batch on before its event. `false` once the pipeline is gone.
    fn hand_on(&self, messages: Messages, stop: &AtomicBool) -> Result<bool, KafkaError> {
        use std::sync::mpsc::TrySendError;
        let context = self.consumer.context();
        let Some(sender) = context.forward.lock().expect("not poisoned").clone() else {
            return Ok(false);
        };
        let mut polled = Polled::Messages(Box::new(messages));
        let patience = Instant::now() + PATIENCE_WHEN_FULL;
        loop {
            let seen = context.room.taken();
            match sender.try_send(polled) {
                Ok(()) => return Ok(true),
                Err(TrySendError::Disconnected(_)) => return Ok(false),
                Err(TrySendError::Full(back)) => polled = back,
            }
            if stop.load(Ordering::Relaxed) || !context.room.wait_past(seen, patience) {
                break;
            }
        }
        *context.waiting.lock().expect("not poisoned") = Some(polled);
        let mut paused = BTreeSet::new();
        self.pause_new(&mut paused);
        tracing::debug!("pipeline full: partitions paused, polling on for the group");
        let handed_on = loop {
            let waiting = context.waiting.lock().expect("not poisoned").take();
            let Some(polled) = waiting else {
                // A rebalance callback handed it on.
                break true;
            };
            if stop.load(Ordering::Relaxed) {
                break sender.send(polled).is_ok();
            }
            match sender.try_send(polled) {
                Ok(()) => break true,
                Err(TrySendError::Disconnected(_)) => break false,
                Err(TrySendError::Full(polled)) => {
                    *context.waiting.lock().expect("not poisoned") = Some(polled);
                }
            }
            // Serves heartbeats and rebalances.
            self.poll_once(Duration::from_millis(100))?;
            self.pause_new(&mut paused);
        };
        let mut resumed = TopicPartitionList::new();
        for (topic, partition) in &paused {
            resumed.add_partition(topic, *partition);
        }
        if let Err(e) = self.consumer.resume(&resumed) {
            tracing::warn!(error = %e, "cannot resume the paused partitions");
        }
        Ok(handed_on)
    }

    /// Pauses the assigned partitions not in `paused` yet, and adds them to it.
    fn pause_new(&self, paused: &mut BTreeSet<(String, i32)>) {
        let assigned = match self.consumer.assignment() {
            Ok(assigned) => assigned,
            Err(e) => return tracing::warn!(error = %e, "cannot read the assignment"),
        };
        let mut new = TopicPartitionList::new();
        for element in assigned.elements() {
            if paused.insert((element.topic().to_owned(), element.partition())) {
                new.add_partition(element.topic(), element.partition());
            }
        }
        if new.count() > 0
            && let Err(e) = self.consumer.pause(&new)
        {
            tracing::warn!(error = %e, "cannot pause the assigned partitions");
        }
    }

    /// Starts committing, for every partition in `ranges`, the offset after the last one,
    /// without waiting: the consumer group's offsets only feed lag tools (the datasets' commit
    /// logs say where to resume), so a coordinator that is down must not stall the pipeline.
    /// A failure is logged when librdkafka reports it; the next commit supersedes it.
    /// Sends the offsets of every owned partition, so that a failed commit is repaired by
    /// the next one even for partitions without new data.
    pub fn commit_in_background(&self, ranges: &OffsetRanges) {
        let tpl = self.remember(ranges);
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "cannot start a Kafka offset commit");
        }
    }

    /// Sends the owned partitions' offsets again, for a pipeline without new data: a commit
    /// that failed (say during a rebalance) is repaired, and partitions assigned at the
    /// positions the commit logs gave get those offsets. One small request per checkpoint
    /// interval; Kafka's own auto-commit does the same.
    pub fn commit_again(&self) {
        self.commit_in_background(&OffsetRanges::default());
    }

    /// Adds `ranges` to the group offsets to commit; returns them all.
    fn remember(&self, ranges: &OffsetRanges) -> TopicPartitionList {
        let mut offsets = self
            .consumer
            .context()
            .group_offsets
            .lock()
            .expect("not poisoned");
        for range in ranges.iter() {
            offsets.insert(range.partition, range.to);
        }
        let mut tpl = TopicPartitionList::new();
        for (key, offset) in offsets.iter() {
            tpl.add_partition_offset(&key.topic, key.partition, Offset::Offset(*offset))
                .expect("a non-negative offset is valid");
        }
        tpl
    }

    /// Commits like [`KafkaSource::commit_in_background`] but waits for the answer, retrying
    /// a few times: for the last commit before the consumer closes.
    pub fn commit(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        let tpl = self.remember(ranges);
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

/// Starts the reader: one thread polls and copies messages out of librdkafka, one or more
/// others (one per decoder of `decoding`) check and decode them, so that polling and decoding
/// overlap and decoding uses several cores. Batches and rebalance events go through `tx` in
/// the order polled; when the pipeline is full the threads wait, which pauses consumption.
/// Runs until `stop` is set or the receiver is gone; the handle returns the poller's result
/// and the decoding, for the next consumer session.
pub fn spawn_reader(
    source: Arc<KafkaSource>,
    decoding: Decoding,
    tx: mpsc::Sender<SourceEvent>,
    stop: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
) -> JoinHandle<(Result<(), KafkaError>, Decoding)> {
    let Decoding { decoders, table } = decoding;
    let room = source.consumer.context().room.clone();
    let (dealer, decoding_threads) = decoders::spawn(decoders, &table, tx, &room, &stats, &stop);
    *source
        .consumer
        .context()
        .forward
        .lock()
        .expect("not poisoned") = Some(dealer);
    std::thread::Builder::new()
        .name("weir-kafka-reader".into())
        .spawn(move || {
            let context = source.consumer.context();
            let forwarding = StopForwardingOnDrop(context);
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
                    if !source.hand_on(messages, &stop)? {
                        break;
                    }
                }
                Ok(())
            })();
            // The decoding threads finish what they hold and hand it on before the reader is
            // done.
            drop(forwarding);
            let decoders = decoding_threads
                .into_iter()
                .map(|thread| thread.join().expect("a decoding thread does not panic"))
                .collect();
            (result, Decoding { decoders, table })
        })
        .expect("spawning a thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_client_error_is_logged_once_per_interval_with_its_count() {
        let errors = ClientErrors::default();
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let refused =
            |ms| format!("b:9092/1: Connect failed: refused (after {ms}ms in state CONNECT)");
        assert_eq!(errors.to_log(&refused(0), at(0)), Some(0));
        // The same error, whatever librdkafka's timing note says.
        assert_eq!(errors.to_log(&refused(3), at(1)), None);
        assert_eq!(errors.to_log(&refused(1), at(2)), None);
        // Another error is its own.
        assert_eq!(errors.to_log("TLS", at(2)), Some(0));
        assert_eq!(errors.to_log(&refused(2), at(31)), Some(2));
        assert_eq!(errors.to_log(&refused(0), at(32)), None);
        // The probes get the latest cause, without the timing note.
        assert_eq!(errors.latest(), None);
        errors.record(&refused(7), at(33));
        let said = "b:9092/1: Connect failed: refused".to_owned();
        assert_eq!(errors.latest(), Some((said, at(33))));
    }
}
