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

use arrow::array::{
    ArrayRef, AsArray, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMillisecondType, UInt32Type};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::{DataSource, DataSourceExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{
    AggregateExec, AggregateMode, aggregate_expressions, evaluate_many,
};
use datafusion::physical_plan::{ExecutionPlan, collect};

use crate::error::TransformError;
use crate::transform::{SqlEngine, Transform};
use crate::window::{WINDOW_END, WINDOW_START, WindowKind, assign, windowed_batch};

/// Columns of a state snapshot besides the keys and partial aggregates.
const TOPIC: &str = "_topic";
const PARTITION: &str = "_partition";

/// One planning of a windowed query, split at its innermost aggregation.
pub(crate) struct SplitPlan {
    pub root: Arc<dyn ExecutionPlan>,
    pub aggregate: Arc<dyn ExecutionPlan>,
    pub input: Arc<dyn ExecutionPlan>,
    pub group_exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
}

impl SplitPlan {
    pub fn new(root: Arc<dyn ExecutionPlan>) -> Result<Self> {
        let aggregate = innermost_aggregate(&root).ok_or_else(|| {
            DataFusionError::Plan("a windowed transform needs an aggregation".into())
        })?;
        let exec = aggregate
            .downcast_ref::<AggregateExec>()
            .expect("found by type");
        if !matches!(
            exec.mode(),
            AggregateMode::Single | AggregateMode::SinglePartitioned
        ) {
            return Err(DataFusionError::Internal(format!(
                "unexpected aggregation mode {:?}",
                exec.mode()
            )));
        }
        if exec.group_expr().has_grouping_set() {
            return Err(DataFusionError::Plan(
                "GROUPING SETS, ROLLUP and CUBE are not supported in windowed transforms".into(),
            ));
        }
        Ok(Self {
            input: exec.input().clone(),
            group_exprs: exec.group_expr().expr().to_vec(),
            aggregates: exec.aggr_expr().to_vec(),
            filters: exec.filter_expr().to_vec(),
            aggregate: aggregate.clone(),
            root,
        })
    }

    /// How many aggregations the query has (two for `count(DISTINCT x)` alone).
    pub fn aggregations(&self) -> usize {
        fn count(plan: &Arc<dyn ExecutionPlan>) -> usize {
            usize::from(plan.downcast_ref::<AggregateExec>().is_some())
                + plan.children().into_iter().map(count).sum::<usize>()
        }
        count(&self.root)
    }

    /// The plan feeding the aggregation, reading `batch` of the windowed source table.
    fn input_over(&self, batch: RecordBatch) -> Result<Arc<dyn ExecutionPlan>> {
        let table = batch.schema();
        Ok(self
            .input
            .clone()
            .transform_up(|node| {
                let Some(memory) = node
                    .downcast_ref::<DataSourceExec>()
                    .and_then(|exec| exec.data_source().downcast_ref::<MemorySourceConfig>())
                    .filter(|memory| memory.original_schema() == table)
                else {
                    return Ok(Transformed::no(node));
                };
                let source = MemorySourceConfig::try_new(
                    &[vec![batch.clone()]],
                    table.clone(),
                    memory.projection().clone(),
                )?
                .with_limit(memory.fetch());
                Ok(Transformed::yes(DataSourceExec::from_data_source(source)))
            })?
            .data)
    }

    /// The plan above the aggregation, over `rows` in the aggregation's output schema.
    fn above(&self, rows: RecordBatch) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.aggregate.schema();
        let source: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[vec![rows]], schema, None)?;
        let target = Arc::as_ptr(&self.aggregate);
        Ok(self
            .root
            .clone()
            .transform_up(|node| {
                Ok(if std::ptr::addr_eq(Arc::as_ptr(&node), target) {
                    Transformed::yes(source.clone())
                } else {
                    Transformed::no(node)
                })
            })?
            .data)
    }
}

/// The deepest aggregation: with `count(DISTINCT x)` alone DataFusion plans two, and the
/// inner one (grouping by window, key and `x`) is the one that sees the events.
fn innermost_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    for child in plan.children() {
        if let Some(found) = innermost_aggregate(child) {
            return Some(found);
        }
    }
    plan.downcast_ref::<AggregateExec>()
        .is_some()
        .then(|| plan.clone())
}

/// Where the window columns sit among the aggregation's group expressions.
#[derive(Debug, Clone)]
struct Layout {
    start: usize,
    end: usize,
    /// The other group expressions, in order.
    keys: Vec<usize>,
    key_fields: Vec<Field>,
    /// The group expressions as SQL would show them (`page`, `lower(country)`).
    key_names: Vec<String>,
    /// The aggregation's output: the group columns, then one column per aggregate.
    output: SchemaRef,
}

impl Layout {
    fn new(plan: &SplitPlan) -> Result<Self> {
        let position = |name: &str| {
            plan.group_exprs
                .iter()
                .position(|(_, n)| n == name)
                .ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "the aggregation does not group by `{name}`; group by the window"
                    ))
                })
        };
        let (start, end) = (position(WINDOW_START)?, position(WINDOW_END)?);
        let output = plan.aggregate.schema();
        let keys: Vec<usize> = (0..plan.group_exprs.len())
            .filter(|&i| i != start && i != end)
            .collect();
        let key_fields = keys
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                Field::new(
                    format!("key_{n}"),
                    output.field(i).data_type().clone(),
                    true,
                )
            })
            .collect();
        // Physical expressions print columns with their index (`page@4`).
        let key_names = keys
            .iter()
            .map(|&i| {
                let shown = plan.group_exprs[i].0.to_string();
                let mut name = String::with_capacity(shown.len());
                let mut chars = shown.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '@' && chars.peek().is_some_and(char::is_ascii_digit) {
                        while chars.peek().is_some_and(char::is_ascii_digit) {
                            chars.next();
                        }
                    } else {
                        name.push(c);
                    }
                }
                name
            })
            .collect();
        Ok(Self {
            start,
            end,
            keys,
            key_fields,
            key_names,
            output,
        })
    }
}

/// A session window of one key: its extent and the accumulator slots merged into it.
#[derive(Debug, Clone)]
struct Session {
    start: i64,
    end: i64,
    slots: Vec<usize>,
}

/// What a checkpoint of the window state yields.
pub struct Checkpointed {
    /// The emitted windows, through the rest of the query.
    pub output: Vec<RecordBatch>,
    /// The open windows' partial aggregates; `None` when no window is open.
    pub snapshot: Option<RecordBatch>,
}

/// The open windows of one windowed transform, for the Kafka partitions this instance owns.
pub struct WindowState {
    transform: String,
    kind: WindowKind,
    lateness: i64,
    event_time: usize,
    layout: Layout,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Group values per slot: the partition id, for fixed windows the window start, then
    /// the keys. For sessions, per (partition, keys); the sessions list their slots.
    groups: Box<dyn GroupValues>,
    group_schema: SchemaRef,
    sessions: Vec<Vec<Session>>,
    slots: usize,
    partitions: Vec<(Arc<str>, i32)>,
    partition_ids: HashMap<(Arc<str>, i32), u32>,
    /// Per partition id: whether this instance owns the partition now.
    owned: Vec<bool>,
    /// Per partition id: the watermark up to which its windows were emitted.
    emitted: Vec<Option<i64>>,
    /// Per partition id: the earliest start of an open window (a lower bound).
    open_from: Vec<Option<i64>>,
    snapshot_schema: SchemaRef,
    scratch: Vec<usize>,
    /// Set when an update failed halfway: the state no longer matches the offsets, and the
    /// next checkpoint refuses to commit it (a restart restores it from the commit log).
    broken: Option<String>,
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
    pub fn new(engine: &SqlEngine, transform: &Transform, lateness_ms: i64) -> Result<Self> {
        let window = transform.window().ok_or_else(|| {
            DataFusionError::Internal(format!("transform `{}` is not windowed", transform.name()))
        })?;
        let plan = &window.plan;
        let layout = Layout::new(plan)?;
        let mut group_fields = vec![Field::new("partition", DataType::UInt32, false)];
        if window.kind.size().is_some() {
            group_fields.push(layout.output.field(layout.start).clone());
        }
        group_fields.extend(layout.key_fields.iter().cloned());
        let group_schema = Arc::new(Schema::new(group_fields));
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

    pub fn kind(&self) -> WindowKind {
        self.kind
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

    /// How many (partition, window, key) groups are open.
    pub fn open_groups(&self) -> usize {
        self.slots
    }

    /// Memory held by the groups and partial aggregates, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.groups.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// The watermark up to which windows holding `partition`'s events were emitted.
    pub fn emitted(&self, topic: &str, partition: i32) -> Option<i64> {
        let id = self.partition_ids.get(&(Arc::from(topic), partition))?;
        self.emitted[*id as usize]
    }

    fn partition_id(&mut self, topic: &str, partition: i32) -> u32 {
        let key = (Arc::<str>::from(topic), partition);
        if let Some(id) = self.partition_ids.get(&key) {
            return *id;
        }
        let id = self.partitions.len() as u32;
        self.partitions.push(key.clone());
        self.partition_ids.insert(key, id);
        self.owned.push(false);
        self.emitted.push(None);
        self.open_from.push(None);
        id
    }

    /// Starts tracking `partition`, whose windows up to `emitted` were emitted already
    /// (by this instance or the one that owned it before), as its commit log says.
    pub fn assign(&mut self, topic: &str, partition: i32, emitted: Option<i64>) {
        let id = self.partition_id(topic, partition) as usize;
        self.owned[id] = true;
        self.emitted[id] = emitted;
    }

    /// Adds the events of one Kafka partition (rows of the source table) to their windows.
    /// Returns the rows that came too late: every window they fall in was emitted.
    pub async fn add(
        &mut self,
        engine: &SqlEngine,
        transform: &Transform,
        topic: &str,
        partition: i32,
        batch: RecordBatch,
    ) -> Result<Vec<usize>, TransformError> {
        let name = self.transform.clone();
        let execute = |error| TransformError::Execute {
            transform: name.clone(),
            error,
        };
        let id = self.partition_id(topic, partition);
        // Its events arrive here only while this instance owns it.
        self.owned[id as usize] = true;
        let times = arrow::compute::cast(
            batch.column(self.event_time),
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
        )
        .map_err(|e| execute(e.into()))?;
        let assigned = assign(&self.kind, &times, self.emitted[id as usize], self.lateness);
        if assigned.rows.is_empty() {
            return Ok(assigned.late);
        }
        let windowed = windowed_batch(&batch, &assigned, engine.windowed_schema())
            .map_err(|e| execute(e.into()))?;
        let plan = &transform.window().expect("checked when created").plan;
        let input = plan.input_over(windowed).map_err(execute)?;
        let batches = collect(input, engine.windowed_task_ctx())
            .await
            .map_err(execute)?;
        let prepared = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| prepare(plan, b))
            .collect::<Result<Vec<_>>>()
            .map_err(execute)?;
        for prepared in prepared {
            if let Err(error) = self.update(id, prepared) {
                self.broken = Some(error.to_string());
                return Err(execute(error));
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
    fn slots_of(
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
                *group = self.place(*group, starts.value(row), ends.value(row));
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

    /// The slot of a session window `[start, end)` of the key with group `group`: it joins
    /// (and merges) every session it overlaps or touches, or opens a new one.
    fn place(&mut self, group: usize, start: i64, end: i64) -> usize {
        if self.sessions.len() <= group {
            self.sessions.resize_with(group + 1, Vec::new);
        }
        let sessions = &mut self.sessions[group];
        let mut merged: Option<Session> = None;
        sessions.retain(|s| {
            if s.start <= end && start <= s.end {
                match &mut merged {
                    None => merged = Some(s.clone()),
                    Some(m) => {
                        m.start = m.start.min(s.start);
                        m.end = m.end.max(s.end);
                        m.slots.extend_from_slice(&s.slots);
                    }
                }
                false
            } else {
                true
            }
        });
        let session = match merged {
            Some(mut m) => {
                m.start = m.start.min(start);
                m.end = m.end.max(end);
                m
            }
            None => {
                self.slots += 1;
                Session {
                    start,
                    end,
                    slots: vec![self.slots - 1],
                }
            }
        };
        let slot = session.slots[0];
        sessions.push(session);
        slot
    }

    /// Emits every window that ended at or before its partition's watermark minus the allowed
    /// lateness (`watermark` gives each partition's; none, nothing is emitted), and compacts
    /// the rest into a snapshot, from which the state is rebuilt.
    ///
    /// Partitions normally share the pipeline's watermark, so a window is emitted as one row
    /// per key. A partition that lags behind (just taken over with a backlog) has its own,
    /// lower one: its share of a window comes later, as a row of its own, rather than late.
    pub async fn checkpoint(
        &mut self,
        transform: &Transform,
        engine: &SqlEngine,
        watermark: impl Fn(&str, i32) -> Option<i64>,
    ) -> Result<Checkpointed, TransformError> {
        let name = self.transform.clone();
        let execute = |error| TransformError::Execute {
            transform: name.clone(),
            error,
        };
        if let Some(broken) = &self.broken {
            return Err(execute(DataFusionError::Execution(format!(
                "the window state is not consistent after a failed update ({broken}); it is \
                 not committed, and a restart restores it from the commit log"
            ))));
        }
        let mut closed_until = vec![i64::MIN; self.partitions.len()];
        let mut emitted = self.emitted.clone();
        for (id, (topic, partition)) in self.partitions.iter().enumerate() {
            if let (true, Some(watermark)) = (self.owned[id], watermark(topic, *partition)) {
                emitted[id] = emitted[id].max(Some(watermark));
                closed_until[id] = watermark.saturating_sub(self.lateness);
            }
        }
        let owned = self.owned.clone();
        let (closed, open) = self.split(&closed_until, &owned).map_err(execute)?;
        let rebuilt = self.reset().and_then(|()| match &open {
            Some(open) => self.restore(open),
            None => Ok(()),
        });
        if let Err(error) = rebuilt {
            self.broken = Some(error.to_string());
            return Err(execute(error));
        }
        let output = match &closed {
            Some(closed) => match self.emit(transform, engine, closed).await {
                Ok(output) => output,
                Err(error) => {
                    // Nothing was emitted: the windows stay open, for a fixed query to emit.
                    if let Err(e) = self.restore(closed) {
                        self.broken = Some(e.to_string());
                    }
                    return Err(execute(error));
                }
            },
            None => Vec::new(),
        };
        self.emitted = emitted;
        Ok(Checkpointed {
            output,
            snapshot: open,
        })
    }

    /// Closed windows (a snapshot) merged across partitions, through the rest of the query.
    async fn emit(
        &self,
        transform: &Transform,
        engine: &SqlEngine,
        closed: &RecordBatch,
    ) -> Result<Vec<RecordBatch>> {
        let rows = self.merge_closed(closed)?;
        let plan = &transform.window().expect("checked when created").plan;
        collect(plan.above(rows)?, engine.windowed_task_ctx()).await
    }

    /// Takes the whole state out as two snapshots: the windows closed by `closed_until` (per
    /// partition id) and the open ones; partitions not `kept` are dropped. Leaves the group
    /// table and accumulators empty.
    fn split(
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
                .map(|id| Some(self.partitions[*id as usize].0.as_ref()))
                .collect();
            let numbers: Int32Array = partition_ids
                .values()
                .iter()
                .map(|id| self.partitions[*id as usize].1)
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

    fn reset(&mut self) -> Result<()> {
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
    pub fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
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
        let numbers = snapshot
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let ids: UInt32Array = (0..rows)
            .map(|row| self.partition_id(topics.value(row), numbers.value(row)))
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

    /// Forgets `partition` and its open windows (it was revoked, after a checkpoint).
    pub fn release(&mut self, released: &[(String, i32)]) -> Result<()> {
        let keep = |topic: &str, partition: i32| {
            !released.iter().any(|(t, p)| t == topic && *p == partition)
        };
        let kept: Vec<bool> = self
            .partitions
            .iter()
            .map(|(topic, partition)| keep(topic, *partition))
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
            self.restore(snapshot)?;
        }
        Ok(())
    }

    /// Drops all state, as after a refused commit.
    pub fn clear(&mut self) -> Result<()> {
        self.reset()?;
        self.emitted.iter_mut().for_each(|e| *e = None);
        self.owned.iter_mut().for_each(|o| *o = false);
        self.broken = None;
        Ok(())
    }

    /// Every window of `partition` that starts before this was emitted: the event time up
    /// to which a windowed dataset partitioned by window start is complete.
    pub fn complete_until(&self, topic: &str, partition: i32) -> Option<i64> {
        let id = *self.partition_ids.get(&(Arc::from(topic), partition))? as usize;
        let closed_until = self.emitted[id]?.saturating_sub(self.lateness);
        Some(match self.kind.size() {
            Some(size) => closed_until.saturating_sub(size),
            // An open session may have started long before.
            None => self.open_from[id].map_or(closed_until, |from| from.min(closed_until)),
        })
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

fn new_accumulators(
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
