//! The physical plan of a windowed query, split at its innermost aggregation: the plan
//! below it runs on each batch, the aggregation itself is kept by the window state, and the
//! plan above it runs on the emitted rows. [`Layout`] says where the window columns and the
//! keys sit among the aggregation's groups.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::{DataSource, DataSourceExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};

/// One planning of a windowed query, split at its innermost aggregation.
#[derive(Clone)]
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
    pub(super) fn input_over(&self, batch: RecordBatch) -> Result<Arc<dyn ExecutionPlan>> {
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
    pub(super) fn above(&self, rows: RecordBatch) -> Result<Arc<dyn ExecutionPlan>> {
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
pub(super) struct Layout {
    pub start: usize,
    pub end: usize,
    /// The other group expressions, in order.
    pub keys: Vec<usize>,
    pub key_fields: Vec<Field>,
    /// The group expressions as SQL would show them (`page`, `lower(country)`).
    pub key_names: Vec<String>,
    /// The aggregation's output: the group columns, then one column per aggregate.
    pub output: SchemaRef,
}

impl Layout {
    /// The layout of `plan`'s aggregation, whose window columns are named `start` and `end`.
    pub fn new(plan: &SplitPlan, start: &str, end: &str) -> Result<Self> {
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
        let (start, end) = (position(start)?, position(end)?);
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
