//! Validation rules: named SQL boolean expressions every source row must satisfy.
//!
//! A row passes a rule only when the expression is true; false and NULL both fail it, as in
//! a WHERE clause. A failing row is dead-lettered with reason `rule:<name>`.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::DataType;
use datafusion::physical_expr::PhysicalExpr;

use crate::engine::SqlEngine;
use crate::error::TransformError;

struct Rule {
    name: Arc<str>,
    sql: String,
    expr: Arc<dyn PhysicalExpr>,
}

/// The compiled rules of a pipeline.
pub struct ValidationRules {
    rules: Vec<Rule>,
}

/// What the rules say about one batch.
pub struct RuleOutcome {
    /// The rows that passed every rule.
    pub passed: RecordBatch,
    /// `(row, rule name, detail)` for each row that failed, naming the first rule it failed.
    pub failed: Vec<(usize, Arc<str>, String)>,
}

impl ValidationRules {
    /// Compiles `(name, expression)` pairs against the source table; `source_name` says
    /// where they were declared.
    pub fn new(
        engine: &SqlEngine,
        rules: &[(String, String)],
        source_name: &str,
    ) -> Result<Self, TransformError> {
        let schema = SqlEngine::df_schema(&engine.table_schema());
        let mut compiled = Vec::with_capacity(rules.len());
        for (name, sql) in rules {
            let where_ = format!("{source_name}: rule `{name}`");
            let expr = engine
                .context()
                .parse_sql_expr(sql, &schema)
                .map_err(|e| TransformError::sql(&where_, &e))?;
            let physical = engine
                .context()
                .create_physical_expr(expr, &schema)
                .map_err(|e| TransformError::sql(&where_, &e))?;
            let data_type = physical
                .data_type(&engine.table_schema())
                .map_err(|e| TransformError::sql(&where_, &e))?;
            if data_type != DataType::Boolean {
                return Err(TransformError::Sql {
                    source_name: where_,
                    location: None,
                    message: format!("a rule must be a boolean expression, `{sql}` is {data_type}"),
                });
            }
            compiled.push(Rule {
                name: Arc::from(name.as_str()),
                sql: sql.clone(),
                expr: physical,
            });
        }
        Ok(Self { rules: compiled })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn apply(
        &self,
        batch: RecordBatch,
    ) -> Result<RuleOutcome, datafusion::error::DataFusionError> {
        if self.rules.is_empty() || batch.num_rows() == 0 {
            return Ok(RuleOutcome {
                passed: batch,
                failed: Vec::new(),
            });
        }
        let n = batch.num_rows();
        let mut first_failure: Vec<Option<(usize, bool)>> = vec![None; n];
        for (r, rule) in self.rules.iter().enumerate() {
            let values = rule.expr.evaluate(&batch)?.into_array(n)?;
            let values = values.as_boolean();
            for (row, slot) in first_failure.iter_mut().enumerate() {
                if slot.is_none() && !(values.is_valid(row) && values.value(row)) {
                    *slot = Some((r, values.is_null(row)));
                }
            }
        }
        let mask: BooleanArray = first_failure.iter().map(|f| Some(f.is_none())).collect();
        let failed = first_failure
            .iter()
            .enumerate()
            .filter_map(|(row, f)| {
                f.map(|(r, null)| {
                    let rule = &self.rules[r];
                    let outcome = if null { "NULL" } else { "false" };
                    (
                        row,
                        rule.name.clone(),
                        format!("rule `{}`: `{}` is {outcome}", rule.name, rule.sql),
                    )
                })
            })
            .collect();
        Ok(RuleOutcome {
            passed: filter_record_batch(&batch, &mask)?,
            failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn engine() -> SqlEngine {
        SqlEngine::new(
            "orders",
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("amount", DataType::Float64, true),
            ])),
        )
        .unwrap()
    }

    #[test]
    fn failing_rows_name_the_first_rule_they_fail() {
        let engine = engine();
        let rules = ValidationRules::new(
            &engine,
            &[
                ("positive_amount".into(), "amount > 0".into()),
                ("short_id".into(), "length(id) <= 3".into()),
            ],
            "orders.toml",
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            engine.table_schema(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "cccc", "d"])),
                Arc::new(Float64Array::from(vec![
                    Some(1.0),
                    Some(-2.0),
                    Some(3.0),
                    None,
                ])),
            ],
        )
        .unwrap();
        let out = rules.apply(batch).unwrap();
        assert_eq!(out.passed.num_rows(), 1);
        let failed: Vec<_> = out
            .failed
            .iter()
            .map(|(row, name, _)| (*row, name.to_string()))
            .collect();
        assert_eq!(
            failed,
            vec![
                (1, "positive_amount".into()),
                (2, "short_id".into()),
                (3, "positive_amount".into())
            ]
        );
        assert!(out.failed[2].2.contains("is NULL"), "{}", out.failed[2].2);
    }

    #[test]
    fn non_boolean_and_unknown_columns_are_config_errors() {
        let engine = engine();
        let err = ValidationRules::new(&engine, &[("r".into(), "amount + 1".into())], "p.toml")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("p.toml: rule `r`") && err.contains("boolean"),
            "{err}"
        );
        let err = ValidationRules::new(&engine, &[("r".into(), "amont > 0".into())], "p.toml")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("amont"), "{err}");
    }
}
