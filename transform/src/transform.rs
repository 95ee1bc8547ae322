use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::current::CurrentBatch;
use crate::error::TransformError;

/// How a transform relates input to output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    /// Each batch's output depends on that batch only.
    Stateless,
}

/// One planned SQL transform.
pub struct Transform {
    name: String,
    plan: LogicalPlan,
    schema: SchemaRef,
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
        TransformKind::Stateless
    }
}

/// The DataFusion session in which a pipeline's SQL is planned and run.
pub struct SqlEngine {
    ctx: SessionContext,
    current: Arc<CurrentBatch>,
    table: String,
    table_schema: SchemaRef,
}

impl SqlEngine {
    /// A session where `table` is the source table of schema `table_schema`.
    pub fn new(table: &str, table_schema: SchemaRef) -> Result<Self, TransformError> {
        let mut config = SessionConfig::new()
            // Batches are small and the pipeline already keeps both cores busy: one partition
            // per plan avoids repartitioning every batch.
            .with_target_partitions(1)
            .with_information_schema(false);
        config.options_mut().sql_parser.collect_spans = true;
        let ctx = SessionContext::new_with_config(config);
        let current = CurrentBatch::new(table_schema.clone());
        ctx.register_table(table, current.clone())
            .map_err(|e| TransformError::sql(table, &e))?;
        Ok(Self {
            ctx,
            current,
            table: table.to_owned(),
            table_schema,
        })
    }

    /// The name SQL uses for the source table.
    pub fn table(&self) -> &str {
        &self.table
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
        let sql = std::fs::read_to_string(path).map_err(|error| TransformError::Read {
            path: path.to_owned(),
            error,
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
        let state = self.ctx.state();
        let plan = state
            .create_logical_plan(sql)
            .await
            .map_err(|e| TransformError::sql_in(source_name, sql, &e))?;
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
        let plan = state
            .optimize(&plan)
            .map_err(|e| TransformError::sql(source_name, &e))?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Ok(Transform {
            name: name.to_owned(),
            plan,
            schema,
        })
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
            .map_err(|error| TransformError::Execute {
                transform: transform.name.clone(),
                error,
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
}
