//! One consumer-group membership: the reader started, events taken in order until shutdown
//! or an error, then the reader stopped, drained and the consumer closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, watch};
use weir_ingest::{KafkaSource, SourceEvent, spawn_reader};

use super::memory_budget::OVER_MAX_MEMORY;
use super::{RunError, State};

impl State {
    /// Consumes until shutdown or an error, then stops the reader and closes the consumer.
    /// On success everything read is committed.
    pub(super) async fn consume(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        let stats = self.observer.source_stats();
        let source = Arc::new(KafkaSource::connect(self.kafka.clone(), stats)?);
        self.source = Some(source.clone());
        let decoding = self
            .decoding
            .take()
            .expect("each session gives the decoding back when its reader ends");
        let stop = Arc::new(AtomicBool::new(false));
        self.decode_stall.resume();
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(2);
        let reader = spawn_reader(
            source.clone(),
            decoding,
            tx,
            stop.clone(),
            self.observer.source_stats(),
        );
        let mut next_checkpoint = tokio::time::Instant::now() + self.interval;
        let outcome: Result<(), RunError> = async {
            loop {
                self.observer.beat();
                tokio::select! {
                    biased;
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                    // Before events: with a backlog there is always an event ready, and the
                    // checkpoint must still come on time.
                    () = tokio::time::sleep_until(next_checkpoint) => {
                        self.checkpoint(false).await?;
                        next_checkpoint = tokio::time::Instant::now() + self.interval;
                    }
                    event = rx.recv() => match event {
                        Some(event) => {
                            self.handle(event).await?;
                            let buffered = self.buffered_bytes();
                            let memory = self.memory.resident();
                            self.observer.buffered(buffered, memory);
                            if let Some(why) = self.checkpoint_due(buffered, memory) {
                                tracing::debug!(why, "checkpointing early");
                                self.checkpoint(false).await?;
                                next_checkpoint = tokio::time::Instant::now() + self.interval;
                                if why == OVER_MAX_MEMORY {
                                    self.memory.checkpointed(self.window_state_bytes());
                                }
                            }
                        }
                        None => break,
                    },
                }
            }
            Ok(())
        }
        .await;

        // Stop polling and take in what the reader still holds; a decoder waiting for the
        // schema registry gives its batch up instead (its messages are read again next time).
        // After a failure nothing more is written: dropping the events answers the reader's
        // pending questions with "no".
        stop.store(true, Ordering::Relaxed);
        self.decode_stall.abandon();
        let mut outcome = outcome;
        if outcome.is_ok() {
            while let Some(event) = rx.recv().await {
                if let Err(e) = self.handle(event).await {
                    outcome = Err(e);
                    break;
                }
            }
        }
        rx.close();
        while rx.recv().await.is_some() {}
        let (reader_result, decoding) = tokio::task::spawn_blocking(move || reader.join())
            .await
            .map_err(|_| RunError::Panicked("Kafka reader thread"))?
            .map_err(|_| RunError::Panicked("Kafka reader thread"))?;
        self.decoding = Some(decoding);
        if outcome.is_ok() {
            outcome = self.checkpoint(true).await;
        }
        // Closing the consumer leaves the group, which can take a moment.
        self.source = None;
        tokio::task::spawn_blocking(move || drop(source))
            .await
            .map_err(|_| RunError::Panicked("closing of the Kafka consumer"))?;
        outcome?;
        Ok(reader_result?)
    }

    /// Why the pipeline must checkpoint before it takes more rows, with `buffered` bytes in
    /// open files and `memory` held by the process: the buffers are full, memory is over
    /// `max_memory`, or a dataset wrote to as many partition paths as one checkpoint may hold.
    fn checkpoint_due(&mut self, buffered: usize, memory: Option<usize>) -> Option<String> {
        if memory.is_some_and(|memory| self.memory.checkpoint_due(memory)) {
            return Some(OVER_MAX_MEMORY.to_owned());
        }
        if let Some(output) = self
            .outputs
            .iter()
            .find(|o| o.writer.partition_paths_full())
        {
            let dataset = output.writer.name();
            return Some(format!(
                "dataset `{dataset}` reached max_partitions_per_checkpoint"
            ));
        }
        (buffered >= self.max_buffered).then(|| "buffers full".to_owned())
    }

    async fn handle(&mut self, event: SourceEvent) -> Result<(), RunError> {
        match event {
            SourceEvent::Batch(batch) => self.process(*batch).await,
            SourceEvent::Assigned { partitions, resume } => match self.assign(&partitions).await {
                Ok(offsets) => {
                    let _ = resume.send(Ok(offsets));
                    Ok(())
                }
                Err(e) => {
                    let _ = resume.send(Err(e.to_string()));
                    Err(e)
                }
            },
            SourceEvent::Revoked {
                partitions,
                lost,
                done,
            } => {
                let result = self.revoke(&partitions, lost).await;
                let _ = done.send(());
                result
            }
        }
    }
}
