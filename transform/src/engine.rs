//! The DataFusion session a pipeline's SQL is planned and run in. [`SqlEngine`] plans each
//! transform once, at start-up: a window call in its GROUP BY makes it a windowed
//! [`Transform`], planned over the source table plus the window columns and checked for uses
//! of those columns that streaming cannot honour. Stateless transforms then run here, batch
//! by batch; windowed ones feed a [`crate::WindowState`].
//!
//! Longer than 600 lines only by its tests (about 180), which plan SQL through this module's
//! whole surface and belong beside it.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext};
use weir_schemas::metadata::utc_millis;

use crate::current::CurrentBatch;
use crate::error::TransformError;
use crate::functions::HashKeys;
use crate::windows::plan::SplitPlan;
use crate::windows::syntax::{WindowCall, extract_window};
use crate::windows::{WINDOW_END, WINDOW_START, WindowKind};

/// How a transform relates input to output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    /// Each batch's output depends on that batch only.
    Stateless,
    /// An aggregation over event-time windows, emitted as the watermark passes them.
    Windowed(WindowKind),
}

/// The window of a windowed transform, and its plan as first planned.
pub struct Window {
    pub kind: WindowKind,
    pub(crate) plan: SplitPlan,
}

/// One planned SQL transform.
pub struct Transform {
    name: String,
    plan: LogicalPlan,
    schema: SchemaRef,
    window: Option<Window>,
}

impl Transform {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema of the rows this transform emits.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn kind(&self) -> TransformKind {
        match &self.window {
            Some(window) => TransformKind::Windowed(window.kind),
            None => TransformKind::Stateless,
        }
    }

    pub fn window(&self) -> Option<&Window> {
        self.window.as_ref()
    }
}

/// The DataFusion session in which a pipeline's SQL is planned and run.
pub struct SqlEngine {
    ctx: SessionContext,
    current: Arc<CurrentBatch>,
    table: String,
    table_schema: SchemaRef,
    /// Where windowed transforms are planned: the source table plus the window columns.
    windowed: SessionContext,
    windowed_current: Arc<CurrentBatch>,
    event_time: Option<String>,
}

impl SqlEngine {
    /// A session where `table` is the source table of schema `table_schema`, its queries'
    /// memory unbounded.
    pub fn new(table: &str, table_schema: SchemaRef) -> Result<Self, TransformError> {
        Self::with_memory_limit(table, table_schema, None)
    }

    /// A session whose queries (of every transform, windowed or not) share a memory pool of
    /// `max_query_memory` bytes: an operator that would need more fails the query with
    /// "Resources exhausted", which fails its batch like any error of the SQL, instead of
    /// growing the process until it is killed.
    pub fn with_memory_limit(
        table: &str,
        table_schema: SchemaRef,
        max_query_memory: Option<usize>,
    ) -> Result<Self, TransformError> {
        // No spilling: a query over its pool fails its batch rather than filling a disk the
        // deployment may not have.
        let mut runtime = RuntimeEnvBuilder::new().with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        );
        if let Some(limit) = max_query_memory {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let runtime = runtime
            .build_arc()
            .map_err(|e| TransformError::sql(table, &e))?;
        let mut config = SessionConfig::new()
            // Batches are small and the pipeline already keeps both cores busy: one partition
            // per plan avoids repartitioning every batch.
            .with_target_partitions(1)
            .with_information_schema(false);
        config.options_mut().sql_parser.collect_spans = true;
        let ctx = SessionContext::new_with_config_rt(config.clone(), runtime.clone());
        let current = CurrentBatch::new(table_schema.clone());
        ctx.register_table(table, current.clone())
            .map_err(|e| TransformError::sql(table, &e))?;
        let windowed = SessionContext::new_with_config_rt(config, runtime);
        let window_column = |name| Field::new(name, utc_millis(), false);
        let fields: Vec<Field> = table_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .chain([window_column(WINDOW_START), window_column(WINDOW_END)])
            .collect();
        let windowed_current = CurrentBatch::new(Arc::new(Schema::new(fields)));
        windowed
            .register_table(table, windowed_current.clone())
            .map_err(|e| TransformError::sql(table, &e))?;
        for function in crate::functions::all(&HashKeys::default()) {
            ctx.register_udf(function.clone());
            windowed.register_udf(function);
        }
        Ok(Self {
            ctx,
            current,
            table: table.to_owned(),
            table_schema,
            windowed,
            windowed_current,
            event_time: None,
        })
    }

    /// The secret keys `keyed_hash(value, 'name')` may use.
    pub fn with_hash_keys(self, keys: &HashKeys) -> Self {
        for function in crate::functions::all(keys) {
            self.ctx.register_udf(function.clone());
            self.windowed.register_udf(function);
        }
        self
    }

    /// Names the event-time column, which windows are defined over.
    pub fn with_event_time(mut self, column: &str) -> Self {
        self.event_time = Some(column.to_owned());
        self
    }

    pub(crate) fn event_time(&self) -> &str {
        self.event_time.as_deref().unwrap_or_default()
    }

    /// The source table with the window columns, as windowed transforms see it.
    pub(crate) fn windowed_schema(&self) -> SchemaRef {
        self.windowed_current.schema()
    }

    pub(crate) fn windowed_task_ctx(&self) -> Arc<TaskContext> {
        self.windowed.task_ctx()
    }

    /// Plans a windowed transform over `batch` (rows already placed in their windows).
    pub(crate) async fn plan_windowed(
        &self,
        transform: &Transform,
        batch: RecordBatch,
    ) -> Result<SplitPlan, TransformError> {
        self.windowed_current.set(batch);
        let planned = self
            .windowed
            .state()
            .create_physical_plan(&transform.plan)
            .await
            .and_then(SplitPlan::new);
        self.windowed_current.clear();
        planned.map_err(|source| TransformError::Execute {
            transform: transform.name.clone(),
            source,
        })
    }

    pub fn table_schema(&self) -> SchemaRef {
        self.table_schema.clone()
    }

    pub(crate) fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans the SQL in `path`.
    pub async fn transform_file(
        &self,
        name: &str,
        path: &Path,
    ) -> Result<Transform, TransformError> {
        let sql = std::fs::read_to_string(path).map_err(|source| TransformError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.transform(name, &sql, &path.display().to_string())
            .await
    }

    /// Plans one SELECT over the source table; `source_name` names the SQL in errors.
    pub async fn transform(
        &self,
        name: &str,
        sql: &str,
        source_name: &str,
    ) -> Result<Transform, TransformError> {
        let sql_error = |e: &DataFusionError| TransformError::sql_in(source_name, sql, e);
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state
            .sql_to_statement(sql, &dialect)
            .map_err(|e| sql_error(&e))?;
        let window = extract_window(&mut statement).map_err(|e| TransformError::Sql {
            source_name: source_name.to_owned(),
            location: e.location,
            message: e.message,
        })?;
        let state = match &window {
            Some(_) => self.windowed.state(),
            None => state,
        };
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| sql_error(&e))?;
        if matches!(
            plan,
            LogicalPlan::Ddl(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::DescribeTable(_)
        ) {
            return Err(TransformError::Sql {
                source_name: source_name.to_owned(),
                location: None,
                message: format!(
                    "a transform is one SELECT query over `{}`, not a {} statement",
                    self.table,
                    plan.display()
                ),
            });
        }
        let sql_error_at = |message: String| TransformError::Sql {
            source_name: source_name.to_owned(),
            location: None,
            message,
        };
        let kind = match &window {
            Some(call) => {
                let kind = self.window_kind(call, source_name).await?;
                check_window_columns(&plan, WINDOW_COLUMNS_AFTER_AGGREGATION)
                    .map_err(sql_error_at)?;
                Some(kind)
            }
            None => None,
        };
        let plan = state
            .optimize(&plan)
            .map_err(|e| TransformError::sql(source_name, &e))?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let mut transform = Transform {
            name: name.to_owned(),
            plan,
            schema,
            window: None,
        };
        if let Some(kind) = kind {
            // The optimizer pushes `HAVING window_start > …` below the aggregation: right for
            // fixed windows, where each row knows its window, but not for sessions, whose
            // bounds are known only when they close.
            if matches!(kind, WindowKind::Session { .. }) {
                check_window_columns(&transform.plan, SESSION_BOUNDS_UNKNOWN)
                    .map_err(sql_error_at)?;
            }
            let plan = self
                .plan_windowed(&transform, RecordBatch::new_empty(self.windowed_schema()))
                .await
                .map_err(|e| match e {
                    TransformError::Execute { source, .. } => {
                        TransformError::sql(source_name, &source)
                    }
                    other => other,
                })?;
            if matches!(kind, WindowKind::Session { .. }) && plan.aggregations() > 1 {
                return Err(sql_error_at(
                    "with session windows, `count(DISTINCT …)` as the only aggregate is not \
                     supported (DataFusion would form sessions per distinct value); add another \
                     aggregate such as count(*)"
                        .into(),
                ));
            }
            transform.window = Some(Window { kind, plan });
        }
        Ok(transform)
    }

    /// Checks a window call's time column and evaluates its intervals.
    async fn window_kind(
        &self,
        call: &WindowCall,
        source_name: &str,
    ) -> Result<WindowKind, TransformError> {
        let error = |message: String| TransformError::Sql {
            source_name: source_name.to_owned(),
            location: call.location,
            message,
        };
        let event_time = self.event_time();
        if !call.time_column.eq_ignore_ascii_case(event_time) {
            return Err(error(format!(
                "windows are over the event-time column `{event_time}` (source.event_time), \
                 which the watermark follows; `{}` is not it",
                call.time_column
            )));
        }
        let mut lengths = Vec::with_capacity(call.intervals.len());
        for interval in &call.intervals {
            let length = self
                .interval_ms(interval)
                .await
                .map_err(|message| error(format!("`{interval}`: {message}")))?;
            lengths.push(length);
        }
        Ok(match (call.name.as_str(), lengths.as_slice()) {
            ("tumble", [size]) => WindowKind::Tumble { size: *size },
            ("hop", [slide, size]) if slide <= size => WindowKind::Hop {
                slide: *slide,
                size: *size,
            },
            ("hop", _) => {
                return Err(error(
                    "a hopping window's slide (the second argument) cannot exceed its size \
                     (the third)"
                        .into(),
                ));
            }
            (_, [gap]) => WindowKind::Session { gap: *gap },
            _ => unreachable!("the argument count was checked when the call was parsed"),
        })
    }

    /// The length of an `INTERVAL` expression in milliseconds; it must be positive, fixed
    /// (no months: their length varies) and at most [`crate::windows::MAX_WINDOW_MS`].
    async fn interval_ms(&self, interval: &str) -> Result<i64, String> {
        let batches = async {
            let df = self.ctx.sql(&format!("SELECT {interval}")).await?;
            df.collect().await
        }
        .await
        .map_err(|e| crate::error::locate(&e).1)?;
        let column = batches
            .first()
            .filter(|b| b.num_rows() == 1)
            .map(|b| b.column(0).clone())
            .ok_or("it is not a value")?;
        let value = arrow::compute::cast(&column, &DataType::Interval(IntervalUnit::MonthDayNano))
            .map_err(|_| format!("expected an INTERVAL, found {}", column.data_type()))?;
        let value = value
            .as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>()
            .value(0);
        let ms = i64::from(value.days) * 86_400_000 + value.nanoseconds / 1_000_000;
        if value.months != 0 || ms <= 0 {
            return Err("a window length is a positive interval in days or smaller units".into());
        }
        if ms > crate::windows::MAX_WINDOW_MS {
            return Err(format!(
                "a window length is at most {} days",
                crate::windows::MAX_WINDOW_MS / 86_400_000
            ));
        }
        Ok(ms)
    }

    /// Runs each transform over `batch`; the result holds one output per transform, in order.
    pub async fn run(
        &self,
        batch: RecordBatch,
        transforms: &[&Transform],
    ) -> Result<Vec<Vec<RecordBatch>>, TransformError> {
        self.current.set(batch);
        let mut outputs = Vec::with_capacity(transforms.len());
        let state = self.ctx.state();
        for transform in transforms {
            let result = async {
                let plan = state.create_physical_plan(&transform.plan).await?;
                collect(plan, self.ctx.task_ctx()).await
            }
            .await
            .map_err(|source| TransformError::Execute {
                transform: transform.name.clone(),
                source,
            });
            match result {
                Ok(batches) => outputs.push(batches),
                Err(e) => {
                    self.current.clear();
                    return Err(e);
                }
            }
        }
        self.current.clear();
        Ok(outputs)
    }

    /// The schema as DataFusion sees it, for planning expressions.
    pub(crate) fn df_schema(schema: &SchemaRef) -> DFSchema {
        DFSchema::try_from(schema.as_ref().clone()).expect("an Arrow schema converts")
    }
}

const WINDOW_COLUMNS_AFTER_AGGREGATION: &str = "is known only after aggregation: use it in the SELECT list or HAVING, not in WHERE or a \
     subquery";
const SESSION_BOUNDS_UNKNOWN: &str = "of a session window is known only when the session closes: filters on it are not \
     supported with session windows";

/// Below the aggregation, the window columns may only be passed along: the rows of a
/// session window are known only when the window closes, and filtering by window there
/// would change which events a window holds.
fn check_window_columns(plan: &LogicalPlan, why: &str) -> Result<(), String> {
    fn innermost_aggregate(plan: &LogicalPlan) -> Option<&LogicalPlan> {
        plan.inputs()
            .into_iter()
            .find_map(innermost_aggregate)
            .or(matches!(plan, LogicalPlan::Aggregate(_)).then_some(plan))
    }
    let Some(LogicalPlan::Aggregate(aggregate)) = innermost_aggregate(plan) else {
        return Err("a windowed transform aggregates: select aggregates such as count(*)".into());
    };
    let mut misuse = None;
    aggregate
        .input
        .apply(|node| {
            for expr in node.expressions() {
                if matches!(expr.clone().unalias(), Expr::Column(_)) {
                    continue;
                }
                if let Some(column) = expr
                    .column_refs()
                    .into_iter()
                    .find(|c| c.name == WINDOW_START || c.name == WINDOW_END)
                {
                    misuse = Some(column.name.clone());
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("the visitor does not fail");
    match misuse {
        Some(column) => Err(format!("`{column}` {why}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;

    fn engine() -> SqlEngine {
        let schema = Arc::new(Schema::new(vec![
            Field::new("page", DataType::Utf8, false),
            Field::new("ms", DataType::Int64, true),
        ]));
        SqlEngine::new("events", schema).unwrap()
    }

    fn batch(engine: &SqlEngine, pages: &[&str], ms: &[Option<i64>]) -> RecordBatch {
        RecordBatch::try_new(
            engine.table_schema(),
            vec![
                Arc::new(StringArray::from(pages.to_vec())),
                Arc::new(Int64Array::from(ms.to_vec())),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn runs_several_transforms_over_successive_batches() {
        let engine = engine();
        let all = engine
            .transform(
                "all",
                "SELECT upper(page) AS page, ms FROM events WHERE ms IS NOT NULL",
                "all.sql",
            )
            .await
            .unwrap();
        let agg = engine
            .transform(
                "count",
                "SELECT page, count(*) AS n FROM events GROUP BY page ORDER BY page",
                "count.sql",
            )
            .await
            .unwrap();
        assert_eq!(all.schema().field(0).name(), "page");
        assert_eq!(agg.kind(), TransformKind::Stateless);
        let transforms = [&all, &agg];

        let out = engine
            .run(
                batch(&engine, &["a", "b", "a"], &[Some(1), None, Some(3)]),
                &transforms,
            )
            .await
            .unwrap();
        let text = pretty_format_batches(&out[0]).unwrap().to_string();
        assert!(
            text.contains("| A    | 1  |") && text.contains("| A    | 3  |"),
            "{text}"
        );
        assert_eq!(out[0].iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
        let text = pretty_format_batches(&out[1]).unwrap().to_string();
        assert!(
            text.contains("| a    | 2 |") && text.contains("| b    | 1 |"),
            "{text}"
        );

        // The next batch sees only its own rows.
        let out = engine
            .run(batch(&engine, &["c"], &[Some(9)]), &transforms)
            .await
            .unwrap();
        assert_eq!(out[1].iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    }

    #[tokio::test]
    async fn a_query_over_its_memory_pool_fails_instead_of_growing() {
        let schema = engine().table_schema();
        let pages: Vec<String> = (0..50_000).map(|i| format!("page-{i}")).collect();
        let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
        let ms = vec![Some(1); pages.len()];
        let sql = "SELECT page, count(*) AS n FROM events GROUP BY page ORDER BY page";
        for (limit, fits) in [(None, true), (Some(1 << 20), false)] {
            let engine = SqlEngine::with_memory_limit("events", schema.clone(), limit).unwrap();
            let count = engine.transform("count", sql, "count.sql").await.unwrap();
            let out = engine.run(batch(&engine, &pages, &ms), &[&count]).await;
            match out {
                Ok(out) => {
                    assert!(fits, "{limit:?}");
                    let rows: usize = out[0].iter().map(RecordBatch::num_rows).sum();
                    assert_eq!(rows, pages.len());
                }
                Err(e) => {
                    assert!(!fits, "{e}");
                    assert!(e.to_string().contains("Resources exhausted"), "{e}");
                }
            }
        }
    }

    #[tokio::test]
    async fn errors_name_the_file_line_and_column() {
        let engine = engine();
        let err = engine
            .transform("t", "SELECT page,\n  nope\nFROM events", "t.sql")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("t.sql:2:3: "), "{err}");
        assert!(err.contains("nope"), "{err}");

        let err = engine
            .transform("t", "SELECT page\nFROM events\nWHERE ms >", "t.sql")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("t.sql:3:11: "), "{err}");

        let err = engine
            .transform("t", "CREATE TABLE x (a INT)", "t.sql")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("one SELECT query"), "{err}");
    }

    async fn window_error(sql: &str) -> String {
        let schema = Arc::new(Schema::new(vec![
            Field::new("page", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("other_ts", DataType::Int64, false),
        ]));
        let engine = SqlEngine::new("events", schema)
            .unwrap()
            .with_event_time("ts");
        match engine.transform("w", sql, "w.sql").await {
            Ok(t) => format!("planned as {:?}", t.kind()),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn windows_are_planned_and_misuse_is_pointed_at() {
        let ok = window_error(
            "SELECT window_start, page, count(*) AS n FROM events\n\
             GROUP BY page, hop(ts, INTERVAL '10 seconds', INTERVAL '1 minute')",
        )
        .await;
        assert_eq!(ok, "planned as Windowed(Hop { slide: 10000, size: 60000 })");
        for (sql, expected) in [
            (
                "SELECT count(*)\nFROM events GROUP BY tumble(other_ts, INTERVAL '1 minute')",
                "w.sql:2:22: windows are over the event-time column `ts`",
            ),
            (
                "SELECT tumble(ts, INTERVAL '1 minute'), count(*) FROM events GROUP BY page",
                "w.sql:1:8: a window function (tumble, hop, session) belongs in the GROUP BY",
            ),
            (
                "SELECT count(*) FROM events\nGROUP BY tumble(ts, INTERVAL '1 month')",
                "w.sql:2:10: `INTERVAL '1 month'`: a window length is a positive interval",
            ),
            (
                "SELECT count(*) FROM events\nGROUP BY session(ts, INTERVAL '10001 days')",
                "w.sql:2:10: `INTERVAL '10001 days'`: a window length is at most 10000 days",
            ),
            (
                "SELECT count(*) FROM events GROUP BY hop(ts, INTERVAL '2 minutes', INTERVAL '1 minute')",
                "w.sql:1:38: a hopping window's slide",
            ),
            (
                "SELECT count(*) FROM events GROUP BY session(ts)",
                "w.sql:1:38: `session` takes 2 arguments, not 1; write session(<event time>, INTERVAL '<gap>')",
            ),
            (
                "SELECT count(*) FROM events WHERE window_start > now() \
                 GROUP BY tumble(ts, INTERVAL '1 minute')",
                "w.sql: `window_start` is known only after aggregation",
            ),
            (
                "SELECT count(*) FROM events GROUP BY tumble(ts, INTERVAL '1 minute'), \
                 tumble(ts, INTERVAL '1 hour')",
                "a transform can group by one window only",
            ),
            (
                "SELECT page, count(DISTINCT other_ts) FROM events \
                 GROUP BY session(ts, INTERVAL '1 minute'), page",
                "with session windows, `count(DISTINCT …)` as the only aggregate",
            ),
            (
                "SELECT page, count(*) FROM events GROUP BY session(ts, INTERVAL '1 minute'), \
                 page HAVING window_start > now()",
                "`window_start` of a session window is known only when the session closes",
            ),
        ] {
            let error = window_error(sql).await;
            assert!(
                error.starts_with(expected) || error.contains(expected),
                "{sql}\n{error}"
            );
        }
    }
}
