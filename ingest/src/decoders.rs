//! The decoding threads: polled batches decoded in parallel and handed on in the order they
//! were polled.
//!
//! The polling thread deals batches (and rebalance events) to the decoding threads in turn:
//! the `k`-th to thread `k mod n`. Each thread decodes what it is dealt in order and waits
//! for its turn before handing the result on, so the pipeline sees exactly the sequence that
//! was polled: per-partition order, and every batch before the rebalance event that follows
//! it. Decoding is most of ingest's work, so ingest uses as many cores as it has threads
//! while the pipeline behind it stays sequential.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SendError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;
use weir_schemas::Messages;

use crate::decode::{Decode, SourceTable};
use crate::source::{SourceEvent, SourceStats};

/// What the polling thread hands to the decoding threads.
pub(crate) enum Polled {
    Messages(Box<Messages>),
    Event(SourceEvent),
}

/// The polling thread's end: deals each batch or event to the next decoding thread.
#[derive(Clone)]
pub(crate) struct Dealer {
    threads: Vec<SyncSender<Polled>>,
    /// The thread the next batch or event goes to.
    next: Arc<AtomicUsize>,
}

impl Dealer {
    /// Hands `polled` to the next thread, waiting for room. `Err` once the threads are gone.
    pub(crate) fn send(&self, polled: Polled) -> Result<(), SendError<Polled>> {
        let next = self.next.load(Ordering::Relaxed);
        self.threads[next].send(polled)?;
        self.advance(next);
        Ok(())
    }

    /// Hands `polled` to the next thread if it has room.
    pub(crate) fn try_send(&self, polled: Polled) -> Result<(), TrySendError<Polled>> {
        let next = self.next.load(Ordering::Relaxed);
        self.threads[next].try_send(polled)?;
        self.advance(next);
        Ok(())
    }

    fn advance(&self, sent_to: usize) {
        self.next
            .store((sent_to + 1) % self.threads.len(), Ordering::Relaxed);
    }
}

/// Counts the batches the decoding threads have taken, so that the polling thread can wait
/// for room without polling for it.
#[derive(Default)]
pub(crate) struct Room {
    taken: Mutex<u64>,
    changed: Condvar,
}

impl Room {
    pub(crate) fn taken(&self) -> u64 {
        *self.taken.lock().expect("not poisoned")
    }

    /// The decoder took a batch.
    pub(crate) fn take(&self) {
        *self.taken.lock().expect("not poisoned") += 1;
        self.changed.notify_all();
    }

    /// Waits until the decoder has taken more than `seen` batches; `false` if it has not by
    /// `deadline`.
    pub(crate) fn wait_past(&self, seen: u64, deadline: Instant) -> bool {
        let mut taken = self.taken.lock().expect("not poisoned");
        while *taken == seen {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            taken = self
                .changed
                .wait_timeout(taken, left)
                .expect("not poisoned")
                .0;
        }
        true
    }
}

/// Whose turn it is to hand a decoded batch on: the sequence number of the next one.
#[derive(Default)]
struct Turns {
    state: Mutex<TurnState>,
    changed: Condvar,
}

#[derive(Default)]
struct TurnState {
    next: u64,
    /// The pipeline is gone or a thread died: nobody waits for a turn any more.
    closed: bool,
}

impl Turns {
    /// Waits until it is `turn`'s turn; `false` if the turns closed first.
    fn wait_for(&self, turn: u64) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        while state.next != turn && !state.closed {
            state = self.changed.wait(state).expect("not poisoned");
        }
        !state.closed
    }

    /// The holder of the turn handed its batch on.
    fn pass(&self) {
        self.state.lock().expect("not poisoned").next += 1;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.changed.notify_all();
    }
}

/// Closes the turns if a decoding thread unwinds, so that the others do not wait for a turn
/// that never comes.
struct CloseTurnsOnPanic<'a>(&'a Turns);

impl Drop for CloseTurnsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
        }
    }
}

/// Starts one decoding thread per decoder; their results go to `tx` in the order dealt.
/// The threads end once the dealer is dropped and what they hold is handed on (or the
/// pipeline is gone); each gives its decoder back. A thread that gives a batch up sets
/// `stop`, so that the polling thread stops and drops the dealer.
pub(crate) fn spawn(
    decoders: Vec<Box<dyn Decode>>,
    table: &SourceTable,
    tx: mpsc::Sender<SourceEvent>,
    room: &Arc<Room>,
    stats: &Arc<SourceStats>,
    stop: &Arc<AtomicBool>,
) -> (Dealer, Vec<JoinHandle<Box<dyn Decode>>>) {
    let count = decoders.len();
    assert!(count > 0, "at least one decoder");
    let turns = Arc::new(Turns::default());
    let mut threads = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    for (index, decoder) in decoders.into_iter().enumerate() {
        // One batch may wait while the thread decodes the one before.
        let (polled_tx, polled_rx) = std::sync::mpsc::sync_channel::<Polled>(1);
        threads.push(polled_tx);
        let worker = Worker {
            first_turn: index as u64,
            stride: count as u64,
            table: table.clone(),
            tx: tx.clone(),
            turns: turns.clone(),
            room: room.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("weir-decoder-{index}"))
            .spawn(move || worker.run(polled_rx, decoder))
            .expect("spawning a thread");
        handles.push(handle);
    }
    let dealer = Dealer {
        threads,
        next: Arc::new(AtomicUsize::new(0)),
    };
    (dealer, handles)
}

struct Worker {
    /// The sequence number of this thread's first batch; each later one is `stride` on.
    first_turn: u64,
    stride: u64,
    table: SourceTable,
    tx: mpsc::Sender<SourceEvent>,
    turns: Arc<Turns>,
    room: Arc<Room>,
    stats: Arc<SourceStats>,
    /// The session's stop flag: the polling thread stops once it is set.
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, polled: Receiver<Polled>, mut decoder: Box<dyn Decode>) -> Box<dyn Decode> {
        let _close = CloseTurnsOnPanic(&self.turns);
        let mut turn = self.first_turn;
        for polled in polled {
            self.room.take();
            let event = match polled {
                Polled::Event(event) => event,
                Polled::Messages(messages) => {
                    let _span = tracing::debug_span!("decode", messages = messages.len()).entered();
                    match self.table.decode(decoder.as_mut(), *messages) {
                        Ok(batch) => SourceEvent::Batch(Box::new(batch)),
                        // Nothing from here on may be handed on: a later batch would commit
                        // offsets past this one's messages. Polling stops too, or a session
                        // with no more messages to deal would never notice and end.
                        Err(abandoned) => {
                            tracing::info!("{abandoned}; its messages are read again next time");
                            self.stop.store(true, Ordering::Relaxed);
                            self.turns.close();
                            break;
                        }
                    }
                }
            };
            if !self.turns.wait_for(turn) {
                break;
            }
            if !self.hand_on(event) {
                self.turns.close();
                break;
            }
            self.turns.pass();
            turn += self.stride;
        }
        decoder
    }

    /// Hands `event` to the pipeline, waiting while it is full; `false` once it is gone.
    fn hand_on(&self, event: SourceEvent) -> bool {
        let event = match self.tx.try_send(event) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(event)) => event,
        };
        self.stats
            .backpressure_pauses
            .fetch_add(1, Ordering::Relaxed);
        self.tx.blocking_send(event).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::mpsc::{Receiver, Sender, channel};
    use std::time::Duration;

    use weir_schemas::{EventSchema, RawMessages};

    use super::*;
    use crate::decode::{Abandoned, Decoded, EventTimeBounds};
    use crate::json::JsonDecoder;

    /// A JSON decoder that tells which batch it decodes (by its first offset), and whose
    /// first batch waits until the test opens its gate.
    struct Watched {
        json: JsonDecoder,
        gate: Option<Receiver<()>>,
        decoding: Sender<i64>,
    }

    impl Decode for Watched {
        fn decode(&mut self, messages: &Messages) -> Result<Decoded, Abandoned> {
            self.decoding.send(messages.offset(0)).unwrap();
            if let Some(gate) = self.gate.take() {
                gate.recv().unwrap();
            }
            self.json.decode(messages)
        }
    }

    #[test]
    fn batches_decoded_in_parallel_are_handed_on_in_the_order_polled() {
        let schema = EventSchema::parse(
            "[[fields]]\nname = \"ts\"\ntype = \"timestamp\"\n",
            Path::new("schema.toml"),
        )
        .unwrap();
        let bounds = EventTimeBounds {
            max_ahead: Duration::from_secs(3600),
        };
        let table = SourceTable::new(&schema, "ts", bounds).unwrap();
        let (decoding_tx, decoding) = channel();
        let (open_gate, gate) = channel();
        let mut gate = Some(gate);
        let decoders: Vec<Box<dyn Decode>> = (0..3)
            .map(|_| {
                Box::new(Watched {
                    json: JsonDecoder::new(&schema),
                    gate: gate.take(),
                    decoding: decoding_tx.clone(),
                }) as Box<dyn Decode>
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(16);
        let room = Arc::new(Room::default());
        let stats = Arc::new(SourceStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (dealer, threads) = spawn(decoders, &table, tx, &room, &stats, &stop);
        let batch = |offset: i64| {
            let mut raw = RawMessages::with_capacity(1);
            let payload = format!(r#"{{"ts": "2026-12-01T00:00:{:02}Z"}}"#, offset);
            raw.push("t", 0, offset, None, None, Some(payload.as_bytes()));
            Polled::Messages(Box::new(raw.finish()))
        };
        let polling = std::thread::spawn(move || {
            for offset in 0..9 {
                dealer.send(batch(offset)).map_err(|_| ()).unwrap();
            }
        });
        // The first thread is held on batch 0; the other two decode batches 1 and 2, which
        // must wait for it.
        let mut started: Vec<i64> = (0..3).map(|_| decoding.recv().unwrap()).collect();
        started.sort();
        assert_eq!(started, [0, 1, 2]);
        assert!(rx.try_recv().is_err(), "nothing overtakes batch 0");
        open_gate.send(()).unwrap();
        polling.join().unwrap();
        let mut handed_on = Vec::new();
        while let Some(event) = rx.blocking_recv() {
            let SourceEvent::Batch(batch) = event else {
                panic!("only batches were polled")
            };
            assert_eq!(batch.num_rows(), 1);
            handed_on.push(batch.offsets().iter().next().unwrap().from);
        }
        assert_eq!(handed_on, (0..9).collect::<Vec<_>>());
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*room.taken.lock().unwrap(), 9);
    }

    #[test]
    fn the_reader_waits_for_room_until_the_decoder_takes_a_batch_or_patience_runs_out() {
        let room = Arc::new(Room::default());
        let seen = room.taken();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!room.wait_past(seen, soon), "nothing taken: it times out");
        assert!(Instant::now() >= soon);
        let decoder = {
            let room = room.clone();
            std::thread::spawn(move || room.take())
        };
        assert!(room.wait_past(seen, Instant::now() + Duration::from_secs(60)));
        decoder.join().unwrap();
        // A batch taken before the wait began counts: no wake-up is lost.
        assert!(room.wait_past(seen, Instant::now()));
    }
}
