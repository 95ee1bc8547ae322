//! One consumed batch: kept to the partitions this instance owns, run through the transform
//! stage, its rows written to their datasets (several at once) and what it leaves
//! uncommitted remembered.

use std::time::Instant;

use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::Instrument;
use weir_schemas::{OffsetRanges, SourceBatch};
use weir_transform::Rows;

use super::{OutputDataset, RunError, State};

impl State {
    pub(super) async fn process(&mut self, batch: SourceBatch) -> Result<(), RunError> {
        let span = tracing::info_span!("batch", messages = batch.messages());
        self.process_batch(batch).instrument(span).await
    }

    async fn process_batch(&mut self, mut batch: SourceBatch) -> Result<(), RunError> {
        // Messages polled just before their partition was revoked are someone else's now.
        if batch
            .offsets()
            .partitions()
            .any(|p| !self.owned.contains(p))
        {
            batch.retain_partitions(|p| self.owned.contains(p));
        }
        self.check_offsets_go_forward(batch.offsets())?;
        if !self.resumed_at.is_empty() {
            self.check_resumed(batch.offsets());
        }
        self.pending.offsets.merge(batch.offsets());
        self.observer.consumed(batch.offsets());
        self.pending.timestamps.extend(batch.kafka_timestamps());
        let outputs = &self.outputs;
        let transform = tracing::info_span!("transform", rows = batch.num_rows());
        let processed = self
            .transforms
            .process(&mut batch, |output, partition| {
                outputs[output].writer.next_offset(partition)
            })
            .instrument(transform)
            .await;
        self.watermarks.observe_batch(&batch, Instant::now());
        self.pending.dead_letters.extend(batch.take_dead_letters());
        for (output, late) in self.transforms.outputs().iter().zip(processed.late) {
            if late > 0 {
                *self
                    .pending
                    .late
                    .entry(output.name().to_owned())
                    .or_insert(0) += late;
            }
        }
        write_outputs(&mut self.outputs, processed.rows).await
    }

    /// Within an assignment a partition's offsets only go up: its first message is at or
    /// after where it resumed, each later one after the last. A lower offset means its log
    /// was replaced under weir, and its messages would be dropped as ones the datasets hold.
    fn check_offsets_go_forward(&mut self, offsets: &OffsetRanges) -> Result<(), RunError> {
        for range in offsets.iter() {
            if let Some(&expected) = self.next_offsets.get(&range.partition)
                && range.from < expected
            {
                return Err(RunError::OffsetsWentBack {
                    partition: range.partition,
                    expected,
                    first: range.from,
                });
            }
            self.next_offsets.insert(range.partition, range.to);
        }
        Ok(())
    }

    /// Warns when a partition's first message after an assignment comes later than where it
    /// resumed: the offsets between were not there to read (deleted by retention, or
    /// transaction markers), and the next commit's range covers them.
    fn check_resumed(&mut self, offsets: &OffsetRanges) {
        for range in offsets.iter() {
            if let Some(resumed) = self.resumed_at.remove(&range.partition)
                && range.from > resumed
            {
                tracing::warn!(
                    partition = %range.partition,
                    resumed,
                    first = range.from,
                    "offsets between the resume position and the first message were not readable \
                     (retention, compaction or transaction markers)"
                );
            }
        }
    }
}

/// Writes each output's rows into its dataset and rolls its files that are too old. Encoding
/// Parquet is most of a write and datasets share nothing, so on a multi-threaded runtime the
/// datasets with rows are written at once, each on a thread of its own; the batch is done
/// when all are.
async fn write_outputs(outputs: &mut [OutputDataset], rows: Vec<Rows>) -> Result<(), RunError> {
    let with_rows = rows.iter().filter(|rows| !rows.is_empty()).count();
    let runtime = Handle::current();
    if with_rows < 2 || runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
        for (output, rows) in outputs.iter_mut().zip(rows) {
            write_output(output, rows).await?;
        }
        return Ok(());
    }
    // The supervisor's task waits for the writers; its worker's other tasks move elsewhere.
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let writers: Vec<_> = outputs
                .iter_mut()
                .zip(rows)
                .map(|(output, rows)| {
                    let runtime = &runtime;
                    std::thread::Builder::new()
                        .name("weir-writer".into())
                        .spawn_scoped(scope, move || runtime.block_on(write_output(output, rows)))
                        .expect("spawning a thread")
                })
                .collect();
            writers.into_iter().try_for_each(|writer| {
                writer
                    .join()
                    .map_err(|_| RunError::Panicked("dataset writer"))?
            })
        })
    })
}

async fn write_output(output: &mut OutputDataset, rows: Rows) -> Result<(), RunError> {
    let span = tracing::info_span!("write", dataset = output.writer.name());
    let dataset = &mut output.writer;
    async {
        for (batch, paths) in rows {
            dataset.write(&batch, paths.as_ref()).await?;
        }
        Ok(dataset.roll_aged().await?)
    }
    .instrument(span)
    .await
}
