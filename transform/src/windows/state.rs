//! Streaming windowed aggregation: partial aggregates per open window, each window emitted
//! once, when the watermark passes its end plus the allowed lateness.
//!
//! DataFusion plans the query as an ordinary aggregation over the windowed source table
//! (the event columns plus `window_start` and `window_end`). weir splits the physical plan
//! at its innermost aggregation:
//! - below it, the plan that feeds the aggregation runs on each batch as it arrives;
//! - the aggregation itself is kept here: a group per (Kafka partition, window, key) in
//!   DataFusion's group tables, and one [`GroupsAccumulator`] per aggregate, so memory grows
//!   with open windows × keys and never with rows;
//! - above it (projections, HAVING, an outer aggregation) runs on the emitted rows.
//!
//! State is kept per Kafka partition so that a partition can move to another instance with
//! its open windows; when a window is emitted, the partitions this instance owns are merged
//! into one row per window and key. At every checkpoint the state is compacted into a
//! [`RecordBatch`] of partial aggregates (the snapshot) that the commit log stores with the
//! offsets it covers, and rebuilt from it, which is also how an instance restores it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType, UInt32Type,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::GroupsAccumulator;
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateMode, aggregate_expressions, evaluate_many};
use datafusion::physical_plan::collect;
use weir_schemas::PartitionKey;
use weir_schemas::metadata::{PARTITION, TOPIC};

use super::assign::{assign, windowed_batch};
use super::plan::{Layout, SplitPlan};
use super::session::{Session, place};
use super::{WINDOW_END, WINDOW_START, WindowKind};
use crate::engine::{SqlEngine, Transform};
use crate::error::TransformError;

/// The open windows of one windowed transform, for the Kafka partitions this instance owns.
pub struct WindowState {
    pub(super) transform: String,
    pub(super) kind: WindowKind,
    pub(super) lateness: i64,
    /// The transform's plan, split at its innermost aggregation.
    pub(super) plan: SplitPlan,
    /// Where the plan runs: the engine's windowed session, taken once its functions are all
    /// registered.
    pub(super) task_ctx: Arc<TaskContext>,
    /// The source table with the window columns, as the plan's input sees it.
    windowed_schema: SchemaRef,
    event_time: usize,
    pub(super) layout: Layout,
    pub(super) aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub(super) accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Group values per slot: the partition id, for fixed windows the window start, then
    /// the keys. For sessions, per (partition, keys); the sessions list their slots.
    pub(super) groups: Box<dyn GroupValues>,
    pub(super) group_schema: SchemaRef,
    pub(super) sessions: Vec<Vec<Session>>,
    pub(super) slots: usize,
    pub(super) partitions: Vec<PartitionKey>,
    partition_ids: HashMap<PartitionKey, u32>,
    /// Per partition id: whether this instance owns the partition now.
    pub(super) owned: Vec<bool>,
    /// Per partition id: the watermark up to which its windows were emitted.
    pub(super) emitted: Vec<Option<i64>>,
    /// Per partition id: the earliest start of an open window (a lower bound).
    pub(super) open_from: Vec<Option<i64>>,
    pub(super) snapshot_schema: SchemaRef,
    pub(super) scratch: Vec<usize>,
    /// Set when an update failed halfway: the state no longer matches the offsets, and the
    /// next checkpoint refuses to commit it (a restart restores it from the commit log).
    pub(super) broken: Option<String>,
}

/// The values of one batch (below the aggregation) that feed the state, all evaluated
/// before the state changes, so that an error in the SQL leaves it untouched.
struct Prepared {
    groups: Vec<ArrayRef>,
    arguments: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<ArrayRef>>,
}

impl WindowState {
    /// Empty state for `transform`, whose windows stay open `lateness` ms past their end.
    pub fn new(
        engine: &SqlEngine,
        transform: &Transform,
        lateness_ms: i64,
    ) -> Result<Self, TransformError> {
        Self::build(engine, transform, lateness_ms).map_err(|source| TransformError::Execute {
            transform: transform.name().to_owned(),
            source,
        })
    }

    /// [`WindowState::new`], failing as DataFusion does.
    fn build(engine: &SqlEngine, transform: &Transform, lateness_ms: i64) -> Result<Self> {
        let window = transform.window().ok_or_else(|| {
            DataFusionError::Internal(format!("transform `{}` is not windowed", transform.name()))
        })?;
        let plan = &window.plan;
        let layout = Layout::new(plan, WINDOW_START, WINDOW_END)?;
        let mut group_fields = vec![Field::new("partition", DataType::UInt32, false)];
        if window.kind.size().is_some() {
            group_fields.push(layout.output.field(layout.start).clone());
        }
        group_fields.extend(layout.key_fields.iter().cloned());
        let group_schema = Arc::new(Schema::new(group_fields));
        // The snapshot's columns: commit logs keep snapshots, so they must not change.
        let mut snapshot_fields = vec![
            Field::new(TOPIC, DataType::Utf8, false),
            Field::new(PARTITION, DataType::Int32, false),
            layout.output.field(layout.start).clone(),
            layout.output.field(layout.end).clone(),
        ];
        snapshot_fields.extend(layout.key_fields.iter().cloned());
        for (a, aggregate) in plan.aggregates.iter().enumerate() {
            for (s, field) in aggregate.state_fields()?.iter().enumerate() {
                snapshot_fields.push(Field::new(
                    format!("state_{a}_{s}"),
                    field.data_type().clone(),
                    true,
                ));
            }
        }
        let event_time = engine
            .windowed_schema()
            .index_of(engine.event_time())
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
        let aggregates = plan.aggregates.clone();
        Ok(Self {
            transform: transform.name().to_owned(),
            kind: window.kind,
            lateness: lateness_ms,
            plan: plan.clone(),
            task_ctx: engine.windowed_task_ctx(),
            windowed_schema: engine.windowed_schema(),
            event_time,
            accumulators: new_accumulators(&aggregates)?,
            aggregates,
            groups: new_group_values(group_schema.clone(), &GroupOrdering::None)?,
            group_schema,
            layout,
            sessions: Vec::new(),
            slots: 0,
            partitions: Vec::new(),
            partition_ids: HashMap::new(),
            owned: Vec::new(),
            emitted: Vec::new(),
            open_from: Vec::new(),
            snapshot_schema: Arc::new(Schema::new(snapshot_fields)),
            scratch: Vec::new(),
            broken: None,
        })
    }

    /// What the state holds and what makes it grow, in words: for analysts sizing a
    /// transform before it runs.
    pub fn describe_state(&self) -> String {
        let keys = &self.layout.key_names;
        let groups = if keys.is_empty() {
            "one group per Kafka partition and open window (small)".to_owned()
        } else {
            format!(
                "one group per Kafka partition, open window and distinct ({}): grows with the keys' cardinality",
                keys.join(", ")
            )
        };
        // Aggregates whose partial state is a list keep values, not a fixed-size summary.
        let sets: Vec<String> = self
            .aggregates
            .iter()
            .filter(|a| {
                a.state_fields().is_ok_and(|fields| {
                    fields.iter().any(|f| {
                        matches!(f.data_type(), DataType::List(_) | DataType::LargeList(_))
                    })
                })
            })
            .map(|a| a.name().to_owned())
            .collect();
        if sets.is_empty() {
            format!("{groups}; fixed-size partial aggregates per group")
        } else {
            format!(
                "{groups}; {} keep lists of values per group, so they grow with the values",
                sets.join(", ")
            )
        }
    }

    /// The column of the source table (and of the batches [`WindowState::add`] takes) that
    /// holds the event time.
    pub fn event_time_column(&self) -> usize {
        self.event_time
    }

    /// How many (partition, window, key) groups are open.
    pub fn open_groups(&self) -> usize {
        self.slots
    }

    /// Memory held by the groups and partial aggregates, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.groups.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// The watermark up to which windows holding `partition`'s events were emitted.
    pub fn emitted(&self, partition: &PartitionKey) -> Option<i64> {
        let id = self.partition_ids.get(partition)?;
        self.emitted[*id as usize]
    }

    pub(super) fn partition_id(&mut self, partition: &PartitionKey) -> u32 {
        if let Some(id) = self.partition_ids.get(partition) {
            return *id;
        }
        let id = self.partitions.len() as u32;
        self.partitions.push(partition.clone());
        self.partition_ids.insert(partition.clone(), id);
        self.owned.push(false);
        self.emitted.push(None);
        self.open_from.push(None);
        id
    }

    /// Starts tracking `partition`, whose windows up to `emitted` were emitted already
    /// (by this instance or the one that owned it before), as its commit log says.
    pub fn assign(&mut self, partition: &PartitionKey, emitted: Option<i64>) {
        let id = self.partition_id(partition) as usize;
        self.owned[id] = true;
        self.emitted[id] = emitted;
    }

    /// Adds the events of one Kafka partition (rows of the source table) to their windows.
    /// Returns the rows that came too late: every window they fall in was emitted.
    pub async fn add(
        &mut self,
        partition: &PartitionKey,
        batch: RecordBatch,
    ) -> Result<Vec<usize>, TransformError> {
        let id = self.partition_id(partition);
        // Its events arrive here only while this instance owns it.
        self.owned[id as usize] = true;
        let times = arrow::compute::cast(
            batch.column(self.event_time),
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )
        .map_err(|e| self.failed(e.into()))?;
        let assigned = assign(&self.kind, &times, self.emitted[id as usize], self.lateness);
        if assigned.rows.is_empty() {
            return Ok(assigned.late);
        }
        let windowed = windowed_batch(&batch, &assigned, self.windowed_schema.clone())
            .map_err(|e| self.failed(e.into()))?;
        let plan = &self.plan;
        let input = plan
            .input_over(windowed)
            .map_err(|error| self.failed(error))?;
        let batches = collect(input, self.task_ctx.clone())
            .await
            .map_err(|error| self.failed(error))?;
        let prepared = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| prepare(plan, b))
            .collect::<Result<Vec<_>>>()
            .map_err(|error| self.failed(error))?;
        for prepared in prepared {
            if let Err(error) = self.update(id, prepared) {
                self.broken = Some(error.to_string());
                return Err(self.failed(error));
            }
        }
        Ok(assigned.late)
    }

    fn update(&mut self, id: u32, prepared: Prepared) -> Result<()> {
        let Prepared {
            groups: values,
            arguments,
            filters,
        } = prepared;
        let rows = values[0].len();
        let starts = values[self.layout.start]
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let ends = values[self.layout.end]
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let keys: Vec<ArrayRef> = self
            .layout
            .keys
            .iter()
            .map(|&i| values[i].clone())
            .collect();
        let ids = UInt32Array::from_value(id, rows);
        let slots = self.slots_of(ids, &values[self.layout.start], &starts, &ends, keys)?;
        for ((accumulator, arguments), filter) in
            self.accumulators.iter_mut().zip(&arguments).zip(&filters)
        {
            accumulator.update_batch(
                arguments,
                &slots,
                filter.as_ref().map(|f| f.as_boolean()),
                self.slots,
            )?;
        }
        self.scratch = slots;
        Ok(())
    }

    /// The accumulator slot of each row, given its partition id, window and keys: the group
    /// of (partition, window start, keys) for fixed windows; for sessions, the session of
    /// (partition, keys) the window joins. The returned buffer goes back to `self.scratch`.
    pub(super) fn slots_of(
        &mut self,
        ids: UInt32Array,
        start_column: &ArrayRef,
        starts: &TimestampMillisecondArray,
        ends: &TimestampMillisecondArray,
        keys: Vec<ArrayRef>,
    ) -> Result<Vec<usize>> {
        let mut group_columns: Vec<ArrayRef> = vec![Arc::new(ids)];
        if self.kind.size().is_some() {
            group_columns.push(start_column.clone());
        }
        group_columns.extend(keys);
        let mut slots = std::mem::take(&mut self.scratch);
        self.groups.intern(&group_columns, &mut slots)?;
        if self.kind.size().is_some() {
            self.slots = self.groups.len();
        } else {
            for (row, group) in slots.iter_mut().enumerate() {
                *group = place(
                    &mut self.sessions,
                    &mut self.slots,
                    *group,
                    starts.value(row),
                    ends.value(row),
                );
            }
        }
        for (id, start) in group_columns[0]
            .as_primitive::<UInt32Type>()
            .values()
            .iter()
            .zip(starts.values())
        {
            let from = &mut self.open_from[*id as usize];
            *from = Some(from.map_or(*start, |f| f.min(*start)));
        }
        Ok(slots)
    }

    /// Forgets the `released` partitions and their open windows (they were revoked, after a
    /// checkpoint).
    pub fn release(&mut self, released: &[PartitionKey]) -> Result<(), TransformError> {
        self.forget(released).map_err(|source| self.failed(source))
    }

    fn forget(&mut self, released: &[PartitionKey]) -> Result<()> {
        let kept: Vec<bool> = self
            .partitions
            .iter()
            .map(|partition| !released.contains(partition))
            .collect();
        let (_, snapshot) = self.split(&vec![i64::MIN; kept.len()], &kept)?;
        self.reset()?;
        for (id, kept) in kept.iter().enumerate() {
            if !kept {
                self.owned[id] = false;
                self.emitted[id] = None;
            }
        }
        if let Some(snapshot) = &snapshot {
            self.load(snapshot)?;
        }
        Ok(())
    }

    /// Drops all state, as after a refused commit.
    pub fn clear(&mut self) -> Result<(), TransformError> {
        self.reset().map_err(|source| self.failed(source))?;
        self.emitted.iter_mut().for_each(|e| *e = None);
        self.owned.iter_mut().for_each(|o| *o = false);
        self.broken = None;
        Ok(())
    }

    /// Every window of `partition` that starts before this was emitted: the event time up
    /// to which a windowed dataset partitioned by window start is complete.
    pub fn complete_until(&self, partition: &PartitionKey) -> Option<i64> {
        let id = *self.partition_ids.get(partition)? as usize;
        let closed_until = self.emitted[id]?.saturating_sub(self.lateness);
        Some(match self.kind.size() {
            Some(size) => closed_until.saturating_sub(size),
            // An open session may have started long before.
            None => self.open_from[id].map_or(closed_until, |from| from.min(closed_until)),
        })
    }

    /// `source` as the failure of this state's transform.
    pub(super) fn failed(&self, source: DataFusionError) -> TransformError {
        TransformError::Execute {
            transform: self.transform.clone(),
            source,
        }
    }
}

fn prepare(plan: &SplitPlan, batch: &RecordBatch) -> Result<Prepared> {
    let rows = batch.num_rows();
    let groups = plan
        .group_exprs
        .iter()
        .map(|(expr, _)| expr.evaluate(batch)?.into_array(rows))
        .collect::<Result<_>>()?;
    let arguments = evaluate_many(
        &aggregate_expressions(&plan.aggregates, &AggregateMode::Single, 0)?,
        batch,
    )?;
    let filters = plan
        .filters
        .iter()
        .map(|filter| {
            filter
                .as_ref()
                .map(|f| f.evaluate(batch)?.into_array(rows))
                .transpose()
        })
        .collect::<Result<_>>()?;
    Ok(Prepared {
        groups,
        arguments,
        filters,
    })
}

pub(super) fn new_accumulators(
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    aggregates
        .iter()
        .map(|aggregate| -> Result<Box<dyn GroupsAccumulator>> {
            if aggregate.groups_accumulator_supported() {
                aggregate.create_groups_accumulator()
            } else {
                let aggregate = aggregate.clone();
                Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                    aggregate.create_accumulator()
                })))
            }
        })
        .collect()
}
