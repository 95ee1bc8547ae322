//! The decoder seam: the bytes of polled messages in, the batch every stage takes out.
//!
//! A [`Decode`] implementation knows one payload format (JSON, Confluent-framed Avro or
//! Protobuf): it turns each message's payload into the declared columns, or into a dead
//! letter saying why it cannot. Everything else a
//! batch needs is the same whatever the format, and done once here by [`SourceTable`]: the
//! Kafka metadata columns, the bounds on event time, and the latest event time of each
//! partition.

use std::time::{Duration, SystemTime};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use weir_schemas::time::{EARLIEST_EVENT_TIME_MS, LATEST_EVENT_TIME_MS, rfc3339_ms};
use weir_schemas::{DeadLetters, EventSchema, Messages, Reason, SourceBatch, metadata};

/// Decodes message payloads of one format into rows of the declared schema.
pub trait Decode: Send {
    /// Decodes every message of `messages`: the declared columns of those that fit, in message
    /// order, and a dead letter (with the reason and where in the payload) for each other one.
    /// A message that cannot be decoded is a dead letter, never an error. The one way out is
    /// [`Abandoned`]: the decoder was waiting for something outside the messages (a schema
    /// registry) when the pipeline stopped, or met a writer schema the pipeline must decide
    /// on first ([`crate::registry::ReaderEvolution`]), and has decided nothing about this
    /// batch.
    fn decode(&mut self, messages: &Messages) -> Result<Decoded, Abandoned>;
}

/// A batch given up undecided: the pipeline stopped while its decoder waited (see
/// [`DecodeStall::abandon`]), or must decide on a writer schema ahead of its reader first.
/// Neither it nor any batch after it may be handed on, so that no offset past it is
/// committed; its messages are read again by the next session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "decoding was given up: the pipeline stopped while its decoder waited, or must first \
     decide on a writer schema ahead of its reader"
)]
pub struct Abandoned;

/// What a [`Decode`] makes of one batch of messages.
pub struct Decoded {
    /// The declared columns of the accepted messages, in the event schema's Arrow form.
    pub declared: RecordBatch,
    /// For each row of `declared`, the index of the message it came from.
    pub message_of_row: Vec<u32>,
    /// The rejected messages.
    pub dead_letters: DeadLetters,
}

#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    #[error("the event-time column `{0}` is not a field of the schema")]
    NoEventTime(String),
    #[error("the event-time column `{0}` is not a timestamp")]
    EventTimeNotTimestamp(String),
}

/// Which event times a row may have. A time that RFC 3339 cannot write, or one further ahead
/// of the wall clock than `max_ahead`, is a producer's mistake (a wrong unit, a clock years
/// off); taken as is, it would lift the watermark past every event still to come, for good,
/// since watermarks never go back. Such rows are dead letters instead
/// (`event_time_out_of_range`). Times in the past are not bounded beyond year 1: they are
/// late for windows, but they are real data.
#[derive(Debug, Clone, Copy)]
pub struct EventTimeBounds {
    pub max_ahead: Duration,
}

impl EventTimeBounds {
    /// The latest event time accepted when the wall clock reads `now_ms`.
    fn latest_ms(&self, now_ms: i64) -> i64 {
        let ahead = i64::try_from(self.max_ahead.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_add(ahead).min(LATEST_EVENT_TIME_MS)
    }
}

/// The source table that SQL selects from: the declared fields, then the metadata columns;
/// and which of them is the event time.
#[derive(Debug, Clone)]
pub struct SourceTable {
    schema: SchemaRef,
    event_time: usize,
    bounds: EventTimeBounds,
}

impl SourceTable {
    pub fn new(
        schema: &EventSchema,
        event_time: &str,
        bounds: EventTimeBounds,
    ) -> Result<Self, DecoderError> {
        let schema = schema.table_schema();
        let index = schema
            .index_of(event_time)
            .map_err(|_| DecoderError::NoEventTime(event_time.to_owned()))?;
        if schema.field(index).data_type() != &metadata::utc_millis() {
            return Err(DecoderError::EventTimeNotTimestamp(event_time.to_owned()));
        }
        Ok(Self {
            schema,
            event_time: index,
            bounds,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes `messages` with `decoder` into a batch of this table, bounding event time by
    /// the wall clock now.
    pub fn decode(
        &self,
        decoder: &mut dyn Decode,
        messages: Messages,
    ) -> Result<SourceBatch, Abandoned> {
        let decoded = decoder.decode(&messages)?;
        Ok(self.batch(decoded, messages, wall_clock_ms()))
    }

    /// The batch of this table that `decoded` (what a decoder made of `messages`) becomes
    /// when the wall clock reads `now_ms`.
    pub fn batch(&self, decoded: Decoded, messages: Messages, now_ms: i64) -> SourceBatch {
        let Decoded {
            declared,
            message_of_row,
            dead_letters,
        } = decoded;
        let rows = metadata::append(&self.schema, declared, &messages, &message_of_row);
        let out_of_range = self.out_of_range(&rows, now_ms);
        let mut batch = SourceBatch::new(
            rows,
            message_of_row,
            messages,
            dead_letters,
            self.event_time,
        );
        batch.reject(out_of_range);
        batch
    }

    /// The rows of `rows` whose event time is out of bounds, each with the reason and why.
    fn out_of_range(&self, rows: &RecordBatch, now_ms: i64) -> Vec<(usize, Reason, String)> {
        let times = rows
            .column(self.event_time)
            .as_primitive::<TimestampMillisecondType>();
        let latest = self.bounds.latest_ms(now_ms);
        let in_range = |t: i64| (EARLIEST_EVENT_TIME_MS..=latest).contains(&t);
        // Nearly always every row is in range: two vectorised passes tell.
        let (Some(min), Some(max)) = (arrow::compute::min(times), arrow::compute::max(times))
        else {
            return Vec::new();
        };
        if in_range(min) && in_range(max) {
            return Vec::new();
        }
        let name = self.schema.field(self.event_time).name();
        let ahead = humantime::format_duration(self.bounds.max_ahead);
        times
            .iter()
            .enumerate()
            .filter_map(|(row, time)| {
                let time = time?;
                if in_range(time) {
                    return None;
                }
                let detail = if !(EARLIEST_EVENT_TIME_MS..=LATEST_EVENT_TIME_MS).contains(&time) {
                    format!(
                        "event time `{name}` is {time} ms since the epoch, outside years 1 to \
                         9999"
                    )
                } else {
                    format!(
                        "event time `{name}` is {}, more than {ahead} ahead of the clock ({})",
                        rfc3339_ms(time),
                        rfc3339_ms(now_ms)
                    )
                };
                Some((row, Reason::EventTimeOutOfRange, detail))
            })
            .collect()
    }
}

/// The wall clock, epoch milliseconds.
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why decoding is waiting, while it is: something outside the messages (a schema registry
/// that does not answer) holds the pipeline back. The probes and the status page show it.
/// When the pipeline stops, [`DecodeStall::abandon`] makes the waiting decoders give up.
#[derive(Debug, Default)]
pub struct DecodeStall {
    waiting: std::sync::Mutex<Option<(String, std::time::Instant)>>,
    abandoned: std::sync::Mutex<bool>,
    abandon_now: std::sync::Condvar,
}

impl DecodeStall {
    /// Decoding waits, for `why`; `true` if it was not waiting for that already.
    pub fn set(&self, why: &str) -> bool {
        let mut waiting = self.waiting.lock().expect("not poisoned");
        match waiting.as_ref() {
            Some((current, _)) if current == why => false,
            _ => {
                let since = waiting
                    .as_ref()
                    .map_or_else(std::time::Instant::now, |(_, since)| *since);
                *waiting = Some((why.to_owned(), since));
                true
            }
        }
    }

    /// Decoding goes on.
    pub fn clear(&self) {
        *self.waiting.lock().expect("not poisoned") = None;
    }

    /// Why decoding waits and since when, if it does.
    pub fn waiting(&self) -> Option<(String, std::time::Instant)> {
        self.waiting.lock().expect("not poisoned").clone()
    }

    /// The consumer session is ending: decoders that wait now, or would start to, give up
    /// their batch ([`Abandoned`]) instead of holding the end of the session up.
    pub fn abandon(&self) {
        *self.abandoned.lock().expect("not poisoned") = true;
        self.abandon_now.notify_all();
    }

    /// A new session: decoders wait again for as long as it takes.
    pub fn resume(&self) {
        *self.abandoned.lock().expect("not poisoned") = false;
    }

    /// Waits `pause` unless the session ends first; `Err` if it has.
    pub fn pause(&self, pause: Duration) -> Result<(), Abandoned> {
        let abandoned = self.abandoned.lock().expect("not poisoned");
        let (abandoned, _) = self
            .abandon_now
            .wait_timeout_while(abandoned, pause, |abandoned| !*abandoned)
            .expect("not poisoned");
        match *abandoned {
            true => Err(Abandoned),
            false => Ok(()),
        }
    }
}
