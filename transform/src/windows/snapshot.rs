//! Checkpoints of the window state: the windows the watermark closed are emitted through the
//! rest of the query, and the open ones are compacted into a snapshot, a [`RecordBatch`] that
//! the commit log stores with the offsets it covers and from which the state is rebuilt (here,
//! and on the instance a partition moves to).
//!
//! A snapshot has one row per open (Kafka partition, window, key) group: `_topic`,
//! `_partition`, `window_start`, `window_end`, the keys `key_0…`, then the partial state of
//! each aggregate, `state_<aggregate>_<field>`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimestampMillisecondType, UInt32Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::collect;
use weir_schemas::PartitionKey;

use super::WindowKind;
use super::state::{WindowState, new_accumulators};
use crate::bisect::Bisection;
use crate::error::TransformError;

/// A closed window among the merged rows: which rows are its keys', whose shares it holds.
struct ClosedWindow {
    start_ms: i64,
    end_ms: i64,
    rows: Vec<u32>,
    partitions: Vec<PartitionKey>,
}

/// What a checkpoint of the window state yields.
pub struct Checkpointed {
    /// The emitted windows, through the rest of the query.
    pub output: Vec<RecordBatch>,
    /// Closed windows the rest of the query failed on: not emitted, and closed all the same.
    pub failed: Vec<FailedWindow>,
    /// The open windows' partial aggregates; `None` when no window is open.
    pub snapshot: Option<RecordBatch>,
}

/// A closed window whose results the query above its aggregation fails on (a division by
/// zero or a failed cast in the select list, say). Left open it would fail every checkpoint
/// and every restart after, so it is closed without its results, which are kept here.
pub struct FailedWindow {
    /// Epoch milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
    /// The partitions whose events are in it.
    pub partitions: Vec<PartitionKey>,
    /// Its rows as the aggregation yields them, one per key: what the query failed on.
    pub rows: RecordBatch,
    pub error: TransformError,
}

impl WindowState {
    /// Emits every window that ended at or before its partition's watermark minus the allowed
    /// lateness (`watermark` gives each partition's; none, nothing is emitted), and compacts
    /// the rest into a snapshot, from which the state is rebuilt.
    ///
    /// Partitions normally share the pipeline's watermark, so a window is emitted as one row
    /// per key. A partition that lags behind (just taken over with a backlog) has its own,
    /// lower one: its share of a window comes later, as a row of its own, rather than late.
    pub async fn checkpoint(
        &mut self,
        watermark: impl Fn(&PartitionKey) -> Option<i64>,
    ) -> Result<Checkpointed, TransformError> {
        if let Some(broken) = &self.broken {
            return Err(self.failed(DataFusionError::Execution(format!(
                "the window state is not consistent after a failed update ({broken}); it is \
                 not committed, and a restart restores it from the commit log"
            ))));
        }
        let mut closed_until = vec![i64::MIN; self.partitions.len()];
        let mut emitted = self.emitted.clone();
        for (id, partition) in self.partitions.iter().enumerate() {
            if let (true, Some(watermark)) = (self.owned[id], watermark(partition)) {
                emitted[id] = emitted[id].max(Some(watermark));
                closed_until[id] = watermark.saturating_sub(self.lateness);
            }
        }
        let owned = self.owned.clone();
        let (closed, open) = self
            .split(&closed_until, &owned)
            .map_err(|error| self.failed(error))?;
        let rebuilt = self.reset().and_then(|()| match &open {
            Some(open) => self.load(open),
            None => Ok(()),
        });
        if let Err(error) = rebuilt {
            self.broken = Some(error.to_string());
            return Err(self.failed(error));
        }
        let (output, failed) = match &closed {
            Some(closed) => match self.emit(closed).await {
                Ok(emitted) => emitted,
                Err(error) => {
                    // Nothing was emitted: the windows stay open.
                    if let Err(e) = self.load(closed) {
                        self.broken = Some(e.to_string());
                    }
                    return Err(self.failed(error));
                }
            },
            None => (Vec::new(), Vec::new()),
        };
        self.emitted = emitted;
        Ok(Checkpointed {
            output,
            failed,
            snapshot: open,
        })
    }

    /// Closed windows (a snapshot) merged across partitions, through the rest of the query.
    /// Windows it fails on are found by bisection over whole windows (every key and every
    /// partition's share of a window stay together, so no result is split in two) and
    /// returned apart; the others are emitted. Nothing extra runs when nothing fails.
    async fn emit(&self, closed: &RecordBatch) -> Result<(Vec<RecordBatch>, Vec<FailedWindow>)> {
        let rows = self.merge_closed(closed)?;
        let windows = self.windows_of(&rows, closed);
        let mut output = Vec::new();
        let mut failed = Vec::new();
        let mut bisection = Bisection::new(windows.len());
        while let Some(slice) = bisection.next_slice() {
            let part = match slice.len() == windows.len() {
                true => rows.clone(),
                false => {
                    let indices = windows[slice.clone()].iter().flat_map(|w| &w.rows).copied();
                    take_record_batch(&rows, &UInt32Array::from_iter_values(indices))?
                }
            };
            let result = match self.plan.above(part.clone()) {
                Ok(plan) => collect(plan, self.task_ctx.clone()).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(batches) => output.extend(batches),
                Err(error) => {
                    if let Some(window) = bisection.failed(slice) {
                        let window = &windows[window];
                        failed.push(FailedWindow {
                            start_ms: window.start_ms,
                            end_ms: window.end_ms,
                            partitions: window.partitions.clone(),
                            rows: part,
                            error: self.failed(error),
                        });
                    }
                }
            }
        }
        Ok((output, failed))
    }

    /// The windows among merged closed `rows`, in order, with the partitions whose shares
    /// of each the `closed` snapshot holds.
    fn windows_of(&self, rows: &RecordBatch, closed: &RecordBatch) -> Vec<ClosedWindow> {
        let bounds = |batch: &RecordBatch, start: usize, end: usize| -> Vec<(i64, i64)> {
            let column = |i: usize| batch.column(i).as_primitive::<TimestampMillisecondType>();
            let (starts, ends) = (column(start), column(end));
            (0..batch.num_rows())
                .map(|row| (starts.value(row), ends.value(row)))
                .collect()
        };
        let mut windows: std::collections::BTreeMap<(i64, i64), ClosedWindow> = Default::default();
        for (row, (start_ms, end_ms)) in bounds(rows, self.layout.start, self.layout.end)
            .into_iter()
            .enumerate()
        {
            let window = windows
                .entry((start_ms, end_ms))
                .or_insert_with(|| ClosedWindow {
                    start_ms,
                    end_ms,
                    rows: Vec::new(),
                    partitions: Vec::new(),
                });
            window.rows.push(row as u32);
        }
        // A snapshot's columns: `_topic`, `_partition`, `window_start`, `window_end`, ...
        let topics = closed.column(0).as_string::<i32>();
        let numbers = closed.column(1).as_primitive::<Int32Type>();
        for (row, bounds) in bounds(closed, 2, 3).into_iter().enumerate() {
            let partition = PartitionKey::new(topics.value(row), numbers.value(row));
            if let Some(window) = windows.get_mut(&bounds)
                && !window.partitions.contains(&partition)
            {
                window.partitions.push(partition);
            }
        }
        windows.into_values().collect()
    }

    /// Takes the whole state out as two snapshots: the windows closed by `closed_until` (per
    /// partition id) and the open ones; partitions not `kept` are dropped. Leaves the group
    /// table and accumulators empty.
    pub(super) fn split(
        &mut self,
        closed_until: &[i64],
        kept: &[bool],
    ) -> Result<(Option<RecordBatch>, Option<RecordBatch>)> {
        if self.slots == 0 {
            return Ok((None, None));
        }
        let groups = self.groups.emit(EmitTo::All)?;
        let mut states = Vec::with_capacity(self.accumulators.len());
        for accumulator in &mut self.accumulators {
            states.push(accumulator.state(EmitTo::All)?);
        }
        // Per slot: its row in `groups`, and its window.
        let (group_of, starts, ends) = match self.kind.size() {
            Some(size) => {
                let starts = groups[1].as_primitive::<TimestampMillisecondType>();
                let starts: Vec<i64> = starts.values().to_vec();
                let ends = starts.iter().map(|s| s + size).collect();
                ((0..self.slots as u32).collect::<Vec<u32>>(), starts, ends)
            }
            None => {
                let mut group_of = vec![0u32; self.slots];
                let mut starts = vec![0i64; self.slots];
                let mut ends = vec![0i64; self.slots];
                for (group, sessions) in self.sessions.drain(..).enumerate() {
                    for session in sessions {
                        for slot in session.slots {
                            group_of[slot] = group as u32;
                            starts[slot] = session.start;
                            ends[slot] = session.end;
                        }
                    }
                }
                (group_of, starts, ends)
            }
        };
        let ids = groups[0].as_primitive::<UInt32Type>();
        let (mut closed, mut open) = (Vec::new(), Vec::new());
        for slot in 0..self.slots {
            let id = ids.value(group_of[slot] as usize) as usize;
            if !kept[id] {
                continue;
            }
            // A session still grows by events at its very end (they touch it), so it closes
            // only once the watermark is past that.
            let is_closed = match self.kind {
                WindowKind::Session { .. } => ends[slot] < closed_until[id],
                _ => ends[slot] <= closed_until[id],
            };
            if is_closed {
                closed.push(slot as u32);
            } else {
                open.push(slot as u32);
            }
        }
        let keys = &groups[groups.len() - self.layout.keys.len()..];
        let tz = match self.layout.output.field(self.layout.start).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        // The columns of the given slots: window start and end, keys, then partial states.
        let columns = |slots: &[u32]| -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
            let slots = UInt32Array::from(slots.to_vec());
            let rows = take(&UInt32Array::from(group_of.clone()), &slots, None)?;
            let window = |values: &[i64]| -> Result<ArrayRef> {
                let all =
                    TimestampMillisecondArray::from(values.to_vec()).with_timezone_opt(tz.clone());
                Ok(take(&all, &slots, None)?)
            };
            let mut group_columns = vec![window(&starts)?, window(&ends)?];
            for key in keys {
                group_columns.push(take(key, &rows, None)?);
            }
            let partial = states
                .iter()
                .map(|state| {
                    state
                        .iter()
                        .map(|column| Ok(take(column, &slots, None)?))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((group_columns, partial))
        };

        let snapshot = |slots: Vec<u32>| -> Result<Option<RecordBatch>> {
            if slots.is_empty() {
                return Ok(None);
            }
            let (group_columns, partial) = columns(&slots)?;
            let rows = take(
                &UInt32Array::from(group_of.clone()),
                &UInt32Array::from(slots),
                None,
            )?;
            let partition_ids = take(ids, &rows, None)?;
            let partition_ids = partition_ids.as_primitive::<UInt32Type>();
            let topics: StringArray = partition_ids
                .values()
                .iter()
                .map(|id| Some(self.partitions[*id as usize].topic.as_ref()))
                .collect();
            let numbers: Int32Array = partition_ids
                .values()
                .iter()
                .map(|id| self.partitions[*id as usize].partition)
                .collect();
            let mut columns: Vec<ArrayRef> = vec![Arc::new(topics), Arc::new(numbers)];
            columns.extend(group_columns);
            columns.extend(partial.into_iter().flatten());
            Ok(Some(RecordBatch::try_new(
                self.snapshot_schema.clone(),
                columns,
            )?))
        };
        let (closed, snapshot) = (snapshot(closed)?, snapshot(open)?);
        self.slots = 0;
        Ok((closed, snapshot))
    }

    /// Merges the partial aggregates of closed windows (a snapshot) across partitions into
    /// one row per window and key, in the aggregation's output schema.
    fn merge_closed(&self, closed: &RecordBatch) -> Result<RecordBatch> {
        let key_count = self.layout.keys.len();
        let group_columns = closed.columns()[2..4 + key_count].to_vec();
        let fields: Vec<Field> = [self.layout.start, self.layout.end]
            .iter()
            .map(|&i| self.layout.output.field(i).clone())
            .chain(self.layout.key_fields.iter().cloned())
            .collect();
        let mut groups = new_group_values(Arc::new(Schema::new(fields)), &GroupOrdering::None)?;
        let mut ids = Vec::new();
        groups.intern(&group_columns, &mut ids)?;
        let total = groups.len();
        let mut values = Vec::with_capacity(self.aggregates.len());
        let mut column = 4 + key_count;
        for (mut accumulator, aggregate) in new_accumulators(&self.aggregates)?
            .into_iter()
            .zip(&self.aggregates)
        {
            let width = aggregate.state_fields()?.len();
            accumulator.merge_batch(&closed.columns()[column..column + width], &ids, total)?;
            values.push(accumulator.evaluate(EmitTo::All)?);
            column += width;
        }
        let merged = groups.emit(EmitTo::All)?;
        let mut columns: Vec<Option<ArrayRef>> = vec![None; self.layout.keys.len() + 2];
        columns[self.layout.start] = Some(merged[0].clone());
        columns[self.layout.end] = Some(merged[1].clone());
        for (n, &i) in self.layout.keys.iter().enumerate() {
            columns[i] = Some(merged[2 + n].clone());
        }
        let mut columns: Vec<ArrayRef> = columns
            .into_iter()
            .map(|c| c.expect("every group column placed"))
            .collect();
        columns.extend(values);
        Ok(RecordBatch::try_new(self.layout.output.clone(), columns)?)
    }

    pub(super) fn reset(&mut self) -> Result<()> {
        self.groups = new_group_values(self.group_schema.clone(), &GroupOrdering::None)?;
        self.accumulators = new_accumulators(&self.aggregates)?;
        self.sessions.clear();
        self.slots = 0;
        self.open_from.iter_mut().for_each(|f| *f = None);
        Ok(())
    }

    /// Merges a snapshot (of this instance or read from a commit log) into the state. Its
    /// partitions must be assigned first: windows of partitions not owned are dropped at the
    /// next checkpoint.
    pub fn restore(&mut self, snapshot: &RecordBatch) -> Result<(), TransformError> {
        self.load(snapshot).map_err(|source| self.failed(source))
    }

    /// [`WindowState::restore`], failing as DataFusion does: a checkpoint that rebuilds the
    /// state with it keeps the error's text in `broken`.
    pub(super) fn load(&mut self, snapshot: &RecordBatch) -> Result<()> {
        if snapshot.schema().fields() != self.snapshot_schema.fields() {
            return Err(DataFusionError::Plan(format!(
                "the saved window state of transform `{}` does not fit its SQL, which must have \
                 changed: saved {:?}, expected {:?}",
                self.transform,
                snapshot.schema(),
                self.snapshot_schema
            )));
        }
        let rows = snapshot.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let topics = snapshot.column(0).as_string::<i32>();
        let numbers = snapshot.column(1).as_primitive::<Int32Type>();
        let ids: UInt32Array = (0..rows)
            .map(|row| self.partition_id(&PartitionKey::new(topics.value(row), numbers.value(row))))
            .collect();
        let starts = snapshot
            .column(2)
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let ends = snapshot
            .column(3)
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let key_count = self.layout.keys.len();
        let keys = snapshot.columns()[4..4 + key_count].to_vec();
        let slots = self.slots_of(ids, snapshot.column(2), &starts, &ends, keys)?;
        let mut column = 4 + key_count;
        for (accumulator, aggregate) in self.accumulators.iter_mut().zip(&self.aggregates) {
            let width = aggregate.state_fields()?.len();
            accumulator.merge_batch(
                &snapshot.columns()[column..column + width],
                &slots,
                self.slots,
            )?;
            column += width;
        }
        self.scratch = slots;
        Ok(())
    }
}
