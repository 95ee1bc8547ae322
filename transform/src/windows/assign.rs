//! Events into windows: which windows each row of a batch falls in, leaving out the ones
//! already emitted, and the batch with one row per (event, window) that the plan below the
//! aggregation reads.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use arrow::error::ArrowError;

use super::WindowKind;

/// The rows of one batch placed in their windows.
pub(super) struct Assigned {
    /// For each windowed row, the input row it came from.
    pub rows: UInt32Array,
    pub starts: TimestampMillisecondArray,
    pub ends: TimestampMillisecondArray,
    /// Input rows none of whose windows are still open.
    pub late: Vec<usize>,
}

/// Places every row of `times` (event time, milliseconds) in its windows, leaving out the
/// windows that were emitted: those ending at or before `emitted - lateness` (for sessions,
/// events before it).
pub(super) fn assign(
    kind: &WindowKind,
    times: &ArrayRef,
    emitted: Option<i64>,
    lateness: i64,
) -> Assigned {
    let times = times.as_primitive::<TimestampMillisecondType>();
    let closed_until = emitted.map_or(i64::MIN, |e| e.saturating_sub(lateness));
    let mut rows = Vec::with_capacity(times.len());
    let mut starts = Vec::with_capacity(times.len());
    let mut ends = Vec::with_capacity(times.len());
    let mut late = Vec::new();
    for row in 0..times.len() {
        // The schema requires the event time of windowed transforms' events.
        let ts = times.value(row);
        let before = rows.len();
        kind.assign(ts, |start, end| {
            // A session closes only once the watermark is past its end (see the state), so
            // an event is late for one when it is before where sessions were closed.
            let open = match kind {
                WindowKind::Session { .. } => start >= closed_until,
                _ => end > closed_until,
            };
            if open {
                rows.push(row as u32);
                starts.push(start);
                ends.push(end);
            }
        });
        if rows.len() == before {
            late.push(row);
        }
    }
    // Window bounds are instants: UTC, whatever zone the event time was written in.
    Assigned {
        rows: UInt32Array::from(rows),
        starts: TimestampMillisecondArray::from(starts).with_timezone("UTC"),
        ends: TimestampMillisecondArray::from(ends).with_timezone("UTC"),
        late,
    }
}

/// `batch` with one row per (row, window) of `assigned` and the window columns appended.
pub(super) fn windowed_batch(
    batch: &RecordBatch,
    assigned: &Assigned,
    schema: SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let mut columns = Vec::with_capacity(batch.num_columns() + 2);
    for column in batch.columns() {
        columns.push(take(column, &assigned.rows, None)?);
    }
    columns.push(Arc::new(assigned.starts.clone()));
    columns.push(Arc::new(assigned.ends.clone()));
    RecordBatch::try_new(schema, columns)
}
