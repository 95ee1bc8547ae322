//! One output of a pipeline as the transform stage sees it: a transform, the partition path
//! of its rows, and for a windowed transform its open windows.
//!
//! A windowed output owns everything about its windows that the rest of the pipeline must
//! not decide: which rows are late and why, when a partition's windows close (at the
//! pipeline's watermark, or at the partition's own when it lags behind), and up to which
//! event time its dataset is complete.

use std::time::Duration;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::TimestampMillisecondType;
use datafusion::error::DataFusionError;
use weir_schemas::hive::PartitionPaths;
use weir_schemas::metadata::{self, Partitions};
use weir_schemas::{
    DeadLetter, DeadLetters, EmittedWatermark, OffsetRange, PartitionKey, Reason,
    RecordedWatermark, SourceBatch, WindowCheckpoint, rfc3339_ms,
};

use crate::bisect::Bisection;
use crate::engine::{SqlEngine, Transform, TransformKind};
use crate::error::TransformError;
use crate::partition::{PartitionError, Partitioner};
use crate::windows::WindowState;

/// Rows to write, each batch with the partition path of every row (`None`: unpartitioned).
pub type Rows = Vec<(RecordBatch, Option<PartitionPaths>)>;

/// Rows to dead-letter: `(row, reason, detail)`.
pub(crate) type Rejected = Vec<(usize, Reason, String)>;

/// A transform, where its rows go, and its windows if it has any.
pub struct Output {
    transform: Transform,
    partitioner: Partitioner,
    windows: Option<WindowState>,
}

/// What a windowed output's checkpoint yields for its dataset's commit.
pub struct Emitted {
    /// The windows closed by the watermark, through the rest of the query.
    pub rows: Rows,
    /// Closed windows whose results the query, or their partition paths, failed on: to be
    /// committed with the dead letters, before the dataset commits the windows as emitted.
    pub dead_letters: DeadLetters,
    /// The open windows, saved with the commit.
    pub state: WindowCheckpoint,
    /// The watermarks to record: a windowed dataset is complete only up to the windows it
    /// emitted.
    pub watermarks: Vec<RecordedWatermark>,
}

impl Output {
    /// An output of `transform`; a windowed one keeps its windows open `allowed_lateness`
    /// past their end.
    pub fn new(
        engine: &SqlEngine,
        transform: Transform,
        partitioner: Partitioner,
        allowed_lateness: Duration,
    ) -> Result<Self, TransformError> {
        let windows = match transform.kind() {
            TransformKind::Windowed(_) => Some(WindowState::new(
                engine,
                &transform,
                allowed_lateness.as_millis() as i64,
            )?),
            TransformKind::Stateless => None,
        };
        Ok(Self {
            transform,
            partitioner,
            windows,
        })
    }

    pub fn name(&self) -> &str {
        self.transform.name()
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// The open windows, for a windowed transform.
    pub fn windows(&self) -> Option<&WindowState> {
        self.windows.as_ref()
    }

    /// The rows of `batches` (this transform's output) with their partition paths.
    pub(crate) fn route(&self, batches: Vec<RecordBatch>) -> Result<Rows, TransformError> {
        batches
            .into_iter()
            .map(|batch| {
                let paths = self.partitioner.paths(&batch).map_err(|e| match e {
                    PartitionError::Sql(source) => self.execute(source),
                    PartitionError::TooLong(detail) => TransformError::PartitionPath {
                        transform: self.name().to_owned(),
                        detail,
                    },
                })?;
                Ok((batch, paths))
            })
            .collect()
    }

    /// Runs this stateless output's SQL over `input` and routes its rows. Rows it fails on
    /// (a failed cast, an overlong partition value) are found by bisection and returned as
    /// `(row of input, reason, detail)`; the output gets every other row.
    pub(crate) async fn run_isolating(
        &self,
        engine: &SqlEngine,
        input: &RecordBatch,
    ) -> (Rows, Rejected) {
        let mut rows = Rows::new();
        let mut failed = Vec::new();
        let mut bisection = Bisection::new(input.num_rows());
        while let Some(slice) = bisection.next_slice() {
            let part = input.slice(slice.start, slice.len());
            let result = match engine.run(part, &[&self.transform]).await {
                Ok(mut batches) => self.route(batches.pop().unwrap_or_default()),
                Err(error) => Err(error),
            };
            match result {
                Ok(routed) => rows.extend(routed),
                Err(error) => {
                    if let Some(row) = bisection.failed(slice) {
                        failed.push((row, error.reason(), error.to_string()));
                    }
                }
            }
        }
        if !failed.is_empty() {
            tracing::warn!(
                transform = self.name(),
                rows = failed.len(),
                "transform failed on some rows; they are dead letters for it alone"
            );
        }
        (rows, failed)
    }

    /// Takes rows of `batch` into the open windows, one Kafka partition at a time: all of
    /// them, or those `keep` selects (the ones the dataset does not hold yet). Rows too late
    /// for every window they fall in are dead-lettered as `late`; rows the SQL fails on
    /// (found by bisection), as `transform_failed`. Returns how many were late.
    pub(crate) async fn add_to_windows(
        &mut self,
        batch: &mut SourceBatch,
        keep: Option<&BooleanArray>,
    ) -> u64 {
        let Some(windows) = &mut self.windows else {
            return 0;
        };
        let rows = batch.rows();
        let selected: Vec<u32> = match keep {
            None => (0..rows.num_rows() as u32).collect(),
            Some(keep) => (0..rows.num_rows() as u32)
                .filter(|&row| keep.value(row as usize))
                .collect(),
        };
        let partitions = Partitions::of(rows).expect("source rows have metadata columns");
        let mut late_count = 0;
        let mut letters = Vec::new();
        for (partition, indices) in partitions.group(selected) {
            let part = take_record_batch(rows, &indices).expect("row indices come from the batch");
            // Rows of `part` too late for every window, and rows the SQL fails on alone.
            let mut late = Vec::new();
            let mut failed = Vec::new();
            let mut bisection = Bisection::new(part.num_rows());
            while let Some(slice) = bisection.next_slice() {
                let start = slice.start;
                match windows
                    .add(&partition, part.slice(start, slice.len()))
                    .await
                {
                    Ok(slice_late) => late.extend(slice_late.into_iter().map(|row| start + row)),
                    Err(error) => failed.extend(
                        bisection
                            .failed(slice)
                            .map(|row| (row, error.reason(), error.to_string())),
                    ),
                }
            }
            if !failed.is_empty() {
                tracing::warn!(
                    transform = self.transform.name(),
                    rows = failed.len(),
                    "windowed transform failed on some rows; they are dead letters for it alone"
                );
            }
            for (row, reason, detail) in failed {
                letters.push((indices.value(row) as usize, reason, detail));
            }
            if late.is_empty() {
                continue;
            }
            late_count += late.len() as u64;
            let emitted = windows
                .emitted(&partition)
                .map_or_else(|| "-".into(), rfc3339_ms);
            let times = arrow::compute::cast(
                part.column(windows.event_time_column()),
                &metadata::utc_millis(),
            )
            .expect("a timestamp casts to milliseconds");
            let times = times.as_primitive::<TimestampMillisecondType>();
            for row in late {
                let detail = format!(
                    "late for transform `{}`: event time {} falls only in windows emitted at \
                     watermark {emitted} (plus the allowed lateness)",
                    self.transform.name(),
                    rfc3339_ms(times.value(row)),
                );
                letters.push((indices.value(row) as usize, Reason::Late, detail));
            }
        }
        for (row, reason, detail) in letters {
            batch.dead_letter_row(row, reason, detail);
        }
        late_count
    }

    /// Starts tracking an assigned partition whose windows up to `emitted` were emitted
    /// already, as its dataset's log says.
    pub fn assign(&mut self, partition: &PartitionKey, emitted: Option<i64>) {
        if let Some(windows) = &mut self.windows {
            windows.assign(partition, emitted);
        }
    }

    /// Takes in the open windows of the `wanted` partitions from a saved state (which holds
    /// every partition of the instance that saved it).
    pub fn restore(
        &mut self,
        state: &RecordBatch,
        wanted: &[&PartitionKey],
    ) -> Result<(), TransformError> {
        if self.windows.is_none() {
            return Ok(());
        }
        let partitions = Partitions::of(state)
            .map_err(|e| self.execute(DataFusionError::External(Box::new(e))))?;
        let keep: BooleanArray = (0..state.num_rows())
            .map(|row| {
                let (topic, partition) = partitions.of_row(row);
                Some(wanted.iter().any(|p| p.is(topic, partition)))
            })
            .collect();
        let state = filter_record_batch(state, &keep).map_err(|e| self.execute(e.into()))?;
        match &mut self.windows {
            Some(windows) => windows.restore(&state),
            None => Ok(()),
        }
    }

    /// Emits the windows the watermark closed and saves the rest. A partition's windows close
    /// at the pipeline's watermark, or at its own when it lags behind (taken over with a
    /// backlog); a partition without an event time yet closes nothing. `None` for a stateless
    /// output.
    ///
    /// A window whose results fail (in the SQL above its aggregation, or in their partition
    /// paths) closes all the same, as a dead letter: left open, it would fail every later
    /// checkpoint and every restart. Dead letters name a Kafka position: a window's is the
    /// last message of `ranges` (the offsets this commit covers) in a partition with events
    /// in it, else the last of the first range.
    pub async fn checkpoint(
        &mut self,
        watermarks: &[RecordedWatermark],
        pipeline: Option<i64>,
        owned: impl Iterator<Item = &PartitionKey>,
        ranges: &[OffsetRange],
    ) -> Result<Option<Emitted>, TransformError> {
        let Some(windows) = &mut self.windows else {
            return Ok(None);
        };
        let done = windows
            .checkpoint(|partition| {
                let own = watermarks
                    .iter()
                    .find(|r| &r.partition == partition)
                    .map(|r| r.watermark.watermark_ms);
                Some(pipeline?.min(own?))
            })
            .await?;
        let emitted = owned
            .map(|p| EmittedWatermark {
                partition: p.clone(),
                emitted_ms: windows.emitted(p),
            })
            .collect();
        // A windowed dataset is complete up to the windows it emitted.
        let watermarks = watermarks
            .iter()
            .filter_map(|r| {
                let until = windows.complete_until(&r.partition)?;
                let mut r = r.clone();
                r.watermark.watermark_ms = r.watermark.watermark_ms.min(until);
                Some(r)
            })
            .collect();
        let mut dead_letters = DeadLetters::default();
        for window in &done.failed {
            let detail = format!(
                "window [{}, {}) failed: {}",
                rfc3339_ms(window.start_ms),
                rfc3339_ms(window.end_ms),
                window.error
            );
            tracing::warn!(transform = self.name(), window = %rfc3339_ms(window.start_ms), "a window's results failed; they are a dead letter");
            if let Some(letter) = window_letter(&window.rows, &window.partitions, ranges, detail) {
                dead_letters.push(letter);
            }
        }
        let mut rows = Rows::new();
        for batch in done.output {
            let (routed, failed) = self.route_isolating(batch);
            rows.extend(routed);
            for (row, error) in failed {
                let detail = format!("a window's row failed: {error}");
                if let Some(letter) = window_letter(&row, &[], ranges, detail) {
                    dead_letters.push(letter);
                }
            }
        }
        Ok(Some(Emitted {
            rows,
            dead_letters,
            state: WindowCheckpoint {
                snapshot: done.snapshot,
                emitted,
            },
            watermarks,
        }))
    }

    /// Routes `batch`, setting apart the rows whose partition paths fail (found by
    /// bisection), each as a one-row batch with its error.
    fn route_isolating(&self, batch: RecordBatch) -> (Rows, Vec<(RecordBatch, TransformError)>) {
        let mut rows = Rows::new();
        let mut failed = Vec::new();
        let mut bisection = Bisection::new(batch.num_rows());
        while let Some(slice) = bisection.next_slice() {
            let part = batch.slice(slice.start, slice.len());
            match self.route(vec![part.clone()]) {
                Ok(routed) => rows.extend(routed),
                Err(error) => {
                    if bisection.failed(slice).is_some() {
                        failed.push((part, error));
                    }
                }
            }
        }
        (rows, failed)
    }

    /// Forgets revoked partitions and their open windows (after their last checkpoint).
    pub fn release(&mut self, partitions: &[PartitionKey]) -> Result<(), TransformError> {
        match &mut self.windows {
            Some(windows) => windows.release(partitions),
            None => Ok(()),
        }
    }

    /// Drops every open window, as after a refused commit.
    pub fn clear(&mut self) -> Result<(), TransformError> {
        match &mut self.windows {
            Some(windows) => windows.clear(),
            None => Ok(()),
        }
    }

    fn execute(&self, source: DataFusionError) -> TransformError {
        TransformError::Execute {
            transform: self.transform.name().to_owned(),
            source,
        }
    }
}

/// The dead letter of a window's `rows` (as JSON lines), placed at the last message of
/// `ranges` in one of `partitions` (the first range's without one); `None` without ranges.
fn window_letter(
    rows: &RecordBatch,
    partitions: &[PartitionKey],
    ranges: &[OffsetRange],
    detail: String,
) -> Option<DeadLetter> {
    let range = ranges
        .iter()
        .find(|r| partitions.contains(&r.partition))
        .or(ranges.first())?;
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    let payload = match writer.write(rows).and_then(|()| writer.finish()) {
        Ok(()) => Some(writer.into_inner()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write a failed window's rows as JSON");
            None
        }
    };
    Some(DeadLetter {
        reason: Reason::WindowFailed,
        detail,
        topic: range.partition.topic.clone(),
        partition: range.partition.partition,
        offset: range.to - 1,
        timestamp_ms: None,
        key: None,
        payload,
    })
}
