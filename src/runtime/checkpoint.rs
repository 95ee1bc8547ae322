//! The checkpoint: every dataset committed (dead letters first, then the outputs, windowed
//! ones with their emitted windows and state), then the Kafka offsets.

use std::time::Instant;

use tracing::Instrument;
use weir_schemas::hive::one_path;
use weir_schemas::{Checkpoint, PartitionKey, RecordedWatermark};
use weir_sink::{Committed, DatasetWriter};
use weir_transform::Now;

use super::log_view::{LogView, Questions};
use super::{DeadLetterSink, RunError, State};
use crate::telemetry::Observer;

impl State {
    /// Commits every dataset, then the Kafka offsets. `closing`: the last checkpoint before
    /// the consumer closes, whose Kafka commit is waited for.
    pub(super) async fn checkpoint(&mut self, closing: bool) -> Result<(), RunError> {
        let messages = self.pending.offsets.messages();
        let span = tracing::info_span!("checkpoint", messages);
        self.observer.checkpoint_started();
        let result = self.commit_all(closing).instrument(span).await;
        self.memory.release_freed();
        let error = result.as_ref().err().map(ToString::to_string);
        self.observer
            .checkpoint_finished(error, messages > 0, self.buffered_bytes());
        // Freshness is told last: once a scrape counts a message as visible, the scrapes
        // after it see all the rest of the checkpoint that made it so.
        if result.is_ok() {
            self.observer.visible(
                &std::mem::take(&mut self.pending.timestamps),
                chrono::Utc::now().timestamp_millis(),
            );
        }
        result
    }

    async fn commit_all(&mut self, closing: bool) -> Result<(), RunError> {
        let started = Instant::now();
        let now = Now::read();
        if self.pending.offsets.is_empty() {
            // What the brokers said at the last commit may be stale: no partition counts as
            // idle without asking them again, which only a commit does.
            self.watermarks.read_to_log_end(&Default::default());
            let watermarks = self.watermarks.recorded(now);
            self.report_watermarks(&watermarks);
            if let Some(source) = &self.source {
                source.commit_again();
            }
            return Ok(());
        }
        let view = self.log_view(now).await;
        let watermarks = self.watermarks.recorded(now);
        self.report_watermarks(&watermarks);
        let watermark = self.watermarks.watermark(now);
        let positions = &self.next_offsets;
        let mut dead = self.pending.dead_letters.take();
        // Windows are emitted (and their state saved) only with offsets to commit: the state
        // must always match the offsets committed beside it. They are emitted before anything
        // is committed, so that the dead letters of windows whose results failed go with
        // the other dead letters.
        let mut emissions = Vec::with_capacity(self.outputs.len());
        let outputs = self.transforms.outputs_mut().iter_mut();
        for (output, dataset) in outputs.zip(&self.outputs) {
            let ranges = self
                .pending
                .offsets
                .after(|p| dataset.writer.next_offset(p));
            let mut emitted = match ranges.is_empty() {
                true => None,
                false => {
                    output
                        .checkpoint(&watermarks, watermark, self.owned.iter(), &ranges)
                        .await?
                }
            };
            if let Some(emitted) = &mut emitted {
                dead.extend(std::mem::take(&mut emitted.dead_letters));
            }
            emissions.push((ranges, emitted));
        }
        // Dead letters first: a windowed dataset that committed skips its rows on replay,
        // so the `late` letters they made must already be committed.
        dead.apply(self.dead_letter_payloads);
        match &mut self.dead_letters {
            DeadLetterSink::Topic { topic, .. } => {
                if !dead.is_empty() {
                    topic.send(&dead).await?;
                }
            }
            DeadLetterSink::Dataset { writer, .. } => {
                dead.retain(|letter| {
                    let partition = PartitionKey {
                        topic: letter.topic.clone(),
                        partition: letter.partition,
                    };
                    writer
                        .next_offset(&partition)
                        .is_none_or(|next| letter.offset >= next)
                });
                if !dead.is_empty() {
                    // Partitioned by the day they were dead-lettered, so a service running
                    // for months keeps a browsable dataset.
                    let now = chrono::Utc::now();
                    let day = format!("dt={}", now.format("%Y-%m-%d"));
                    for batch in dead.to_batches(now.timestamp_millis()) {
                        let days = one_path(&day, batch.num_rows());
                        writer.write(&batch, Some(&days)).await?;
                    }
                }
                let ranges = self.pending.offsets.after(|p| writer.next_offset(p));
                let coverage = view.coverage(writer.state(), &ranges, &watermarks, positions);
                let checkpoint = Checkpoint {
                    ranges,
                    watermarks: watermarks.clone(),
                    window_state: None,
                    coverage,
                };
                let began = Instant::now();
                let committed = writer.commit(checkpoint).await?;
                report_commit(&self.observer, writer.as_ref(), &committed, began);
            }
        }
        let outputs = self.transforms.outputs().iter();
        for ((output, dataset), (ranges, emitted)) in outputs.zip(&mut self.outputs).zip(emissions)
        {
            let began = Instant::now();
            let writer = &mut dataset.writer;
            let checkpoint = match emitted {
                Some(emitted) => {
                    for (batch, paths) in &emitted.rows {
                        writer.write(batch, paths.as_ref()).await?;
                    }
                    let coverage =
                        view.coverage(writer.state(), &ranges, &emitted.watermarks, positions);
                    Checkpoint {
                        ranges,
                        watermarks: emitted.watermarks,
                        window_state: Some(emitted.state),
                        coverage,
                    }
                }
                None => Checkpoint {
                    coverage: view.coverage(writer.state(), &ranges, &watermarks, positions),
                    ranges,
                    watermarks: watermarks.clone(),
                    window_state: None,
                },
            };
            let committed = writer.commit(checkpoint).await?;
            report_commit(&self.observer, writer.as_ref(), &committed, began);
            let entry = self
                .summary
                .datasets
                .entry(output.name().to_owned())
                .or_default();
            for file in &committed.files {
                entry.rows += file.rows;
                entry.bytes += file.bytes;
                entry.files += 1;
            }
        }
        for (reason, count) in dead.counts() {
            *self.summary.dead_letters.entry(reason).or_insert(0) += count;
        }
        self.observer.dead_lettered(dead.counts());
        for (dataset, late) in std::mem::take(&mut self.pending.late) {
            self.observer.late(&dataset, "dead_lettered", late);
        }
        let offsets = std::mem::take(&mut self.pending.offsets);
        self.summary.events_in += offsets.messages();
        self.summary.checkpoints += 1;
        // The datasets' logs are the truth; group offsets only feed lag tools. The last
        // commit before the consumer closes is waited for, the others are not.
        match (self.source.clone(), closing) {
            (Some(source), false) => source.commit_in_background(&offsets),
            (Some(source), true) => {
                match tokio::task::spawn_blocking(move || source.commit(&offsets)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "the last Kafka offset commit failed"),
                    Err(_) => return Err(RunError::Panicked("last Kafka offset commit")),
                }
            }
            (None, _) => {}
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint committed"
        );
        Ok(())
    }

    fn report_watermarks(&self, watermarks: &[RecordedWatermark]) {
        self.observer.watermarks(
            watermarks
                .iter()
                .map(|r| (r.partition.clone(), r.watermark.watermark_ms)),
        );
    }

    /// What the brokers say about where partitions end (see [`LogView`]), and which quiet
    /// partitions are idle by it.
    async fn log_view(&mut self, now: Now) -> LogView {
        let quiet = self.watermarks.quiet(now.instant);
        let view = match &self.brokers {
            Some(brokers) => {
                let questions = Questions {
                    quiet: &quiet,
                    positions: &self.next_offsets,
                    logs: self.dataset_logs().collect(),
                    recorded: self.watermarks.timed().cloned().collect(),
                };
                LogView::ask(brokers, &questions).await
            }
            None => LogView::without_brokers(self.owned.iter().cloned()),
        };
        let idle = view.read_to_log_end(&quiet, &self.next_offsets);
        self.watermarks.read_to_log_end(&idle);
        view
    }
}

/// Tells the observer what a dataset's commit did.
fn report_commit(
    observer: &Observer,
    dataset: &dyn DatasetWriter,
    committed: &Committed,
    began: Instant,
) {
    if committed.seq.is_none() {
        return;
    }
    observer.committed(
        dataset.name(),
        committed.files.iter().map(|f| (f.rows, f.bytes)),
        began.elapsed(),
        dataset.state().partitions.iter(),
    );
    observer.late(dataset.name(), "written", committed.late_rows);
    observer.schema(dataset.name(), dataset.state().schema.as_ref());
}
