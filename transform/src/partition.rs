//! Hive-style partition paths (`dt=2026-11-25/hour=14`) computed from SQL expressions over a
//! transform's output rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;

use weir_schemas::TimeGranularity;
use weir_schemas::hive::{NULL_PARTITION, escape_into};

use crate::engine::SqlEngine;
use crate::error::TransformError;

/// One path segment: `name=<value of expr>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub name: String,
    pub expr: String,
}

/// The partition specs of time partitions of `granularity` over the timestamp `column`,
/// outermost first: `dt=%Y-%m-%d`, then `hour=%H`, then `minute=%M`, as the sink's
/// completeness markers expect them.
pub fn time_partition_specs(granularity: TimeGranularity, column: &str) -> Vec<PartitionSpec> {
    let column = format!("\"{}\"", column.replace('"', "\"\""));
    let all = [("dt", "%Y-%m-%d"), ("hour", "%H"), ("minute", "%M")];
    all[..granularity.depth()]
        .iter()
        .map(|(name, format)| PartitionSpec {
            name: name.to_string(),
            expr: format!("to_char({column}, '{format}')"),
        })
        .collect()
}

/// Computes the partition path of each row.
pub struct Partitioner {
    parts: Vec<(String, Arc<dyn PhysicalExpr>)>,
    /// The longest segment (`name=value`) the dataset's store can hold.
    max_segment_bytes: usize,
    /// The longest whole path the dataset's store can hold.
    max_path_bytes: usize,
}

/// Why a batch has no partition paths.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Sql(#[from] DataFusionError),
    /// A row's path is longer than the store can hold. The value itself stays out of the
    /// text, which reaches logs.
    #[error("{0}")]
    TooLong(String),
}

impl Partitioner {
    /// Compiles the specs against `schema`, the rows to partition; `source_name` says where
    /// they were declared.
    pub fn new(
        engine: &SqlEngine,
        schema: &SchemaRef,
        specs: &[PartitionSpec],
        source_name: &str,
    ) -> Result<Self, TransformError> {
        let df_schema = SqlEngine::df_schema(schema);
        let mut parts = Vec::with_capacity(specs.len());
        for spec in specs {
            let where_ = format!("{source_name}: partition `{}`", spec.name);
            let bad_name = spec.name.is_empty()
                || !spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if bad_name {
                return Err(TransformError::Sql {
                    source_name: where_,
                    location: None,
                    message: "a partition name is letters, digits and `_`".into(),
                });
            }
            if schema.field_with_name(&spec.name).is_ok() {
                return Err(TransformError::Sql {
                    source_name: where_,
                    location: None,
                    message: format!(
                        "`{}` is also an output column; readers would see two values for it. \
                         Rename the partition or the column",
                        spec.name
                    ),
                });
            }
            let expr = engine
                .context()
                .parse_sql_expr(&spec.expr, &df_schema)
                .and_then(|e| engine.context().create_physical_expr(e, &df_schema))
                .map_err(|e| TransformError::sql(&where_, &e))?;
            parts.push((spec.name.clone(), expr));
        }
        Ok(Self {
            parts,
            max_segment_bytes: usize::MAX,
            max_path_bytes: usize::MAX,
        })
    }

    /// Refuses paths with a segment longer than `segment_bytes` or longer than `path_bytes`
    /// in all: what the dataset's store holds.
    pub fn with_limits(mut self, segment_bytes: usize, path_bytes: usize) -> Self {
        self.max_segment_bytes = segment_bytes;
        self.max_path_bytes = path_bytes;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The path of every row, e.g. `dt=2026-11-25/hour=14`; `None` without partitions. Fails
    /// on the first row whose path the store could not hold.
    pub fn paths(&self, batch: &RecordBatch) -> Result<Option<StringArray>, PartitionError> {
        if self.parts.is_empty() {
            return Ok(None);
        }
        let n = batch.num_rows();
        let values: Vec<ArrayRef> = self
            .parts
            .iter()
            .map(|(_, expr)| {
                let array = expr.evaluate(batch)?.into_array(n)?;
                Ok(cast(&array, &DataType::Utf8)?)
            })
            .collect::<Result<_, DataFusionError>>()?;
        let mut paths = StringBuilder::with_capacity(n, n * 24);
        let mut path = String::with_capacity(64);
        for row in 0..n {
            path.clear();
            for (i, (name, _)) in self.parts.iter().enumerate() {
                if i > 0 {
                    path.push('/');
                }
                let segment_start = path.len();
                path.push_str(name);
                path.push('=');
                let column = values[i].as_string::<i32>();
                if column.is_null(row) {
                    path.push_str(NULL_PARTITION);
                } else {
                    escape_into(&mut path, column.value(row));
                }
                let segment = path.len() - segment_start;
                if segment > self.max_segment_bytes {
                    return Err(PartitionError::TooLong(format!(
                        "partition `{name}` is {segment} bytes as a path segment (`{name}=` and \
                         the escaped value); this dataset's store holds at most {}",
                        self.max_segment_bytes
                    )));
                }
            }
            if path.len() > self.max_path_bytes {
                return Err(PartitionError::TooLong(format!(
                    "the partition path is {} bytes; this dataset's store holds paths of at most \
                     {} bytes under the dataset",
                    path.len(),
                    self.max_path_bytes
                )));
            }
            paths.append_value(&path);
        }
        Ok(Some(paths.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    #[test]
    fn time_partitions_are_sql_over_the_event_time() {
        assert_eq!(
            time_partition_specs(TimeGranularity::Day, "ts"),
            vec![PartitionSpec {
                name: "dt".to_string(),
                expr: "to_char(\"ts\", '%Y-%m-%d')".to_string()
            }]
        );
        let hour: Vec<String> = time_partition_specs(TimeGranularity::Minute, "a\"b")
            .into_iter()
            .map(|spec| format!("{}={}", spec.name, spec.expr))
            .collect();
        assert_eq!(
            hour,
            [
                "dt=to_char(\"a\"\"b\", '%Y-%m-%d')",
                "hour=to_char(\"a\"\"b\", '%H')",
                "minute=to_char(\"a\"\"b\", '%M')"
            ]
        );
    }

    #[test]
    fn paths_from_time_and_column_expressions() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("country", DataType::Utf8, true),
        ]));
        let engine = SqlEngine::new("events", schema.clone()).unwrap();
        let partitioner = Partitioner::new(
            &engine,
            &schema,
            &[
                PartitionSpec {
                    name: "dt".into(),
                    expr: "to_char(ts, '%Y-%m-%d')".into(),
                },
                PartitionSpec {
                    name: "hour".into(),
                    expr: "to_char(ts, '%H')".into(),
                },
                PartitionSpec {
                    name: "c".into(),
                    expr: "country".into(),
                },
            ],
            "p.toml",
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(vec![1_795_615_200_000, 0])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![Some("a/b"), None])),
            ],
        )
        .unwrap();
        let paths = partitioner.paths(&batch).unwrap().unwrap();
        assert_eq!(paths.value(0), "dt=2026-11-25/hour=14/c=a%2Fb");
        assert_eq!(
            paths.value(1),
            "dt=1970-01-01/hour=00/c=__HIVE_DEFAULT_PARTITION__"
        );
    }

    #[test]
    fn paths_a_store_cannot_hold_are_refused() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)]));
        let engine = SqlEngine::new("events", schema.clone()).unwrap();
        let spec = PartitionSpec {
            name: "p".into(),
            expr: "v".into(),
        };
        let partitioner = Partitioner::new(&engine, &schema, &[spec], "p.toml")
            .unwrap()
            .with_limits(255, 400);
        let paths = |values: Vec<String>| {
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))])
                    .unwrap();
            partitioner.paths(&batch).map(|p| p.unwrap())
        };
        // `p=` and 253 bytes: the longest segment; `/` escaped takes three.
        let longest = "x".repeat(253);
        assert_eq!(paths(vec![longest.clone()]).unwrap().value(0).len(), 255);
        let over = [
            ("x".repeat(254), "256 bytes"),
            (format!("{}/", "x".repeat(252)), "257 bytes"),
            // Two bytes in UTF-8 each.
            ("é".repeat(127), "256 bytes"),
        ];
        for (value, said) in over {
            let err = paths(vec!["ok".into(), value.clone()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(said), "{err}");
            assert!(
                !err.contains(&value),
                "the value stays out of the error: {err}"
            );
        }
    }

    #[test]
    fn the_whole_path_is_bounded_by_the_store() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let engine = SqlEngine::new("events", schema.clone()).unwrap();
        let specs = [
            PartitionSpec {
                name: "pa".into(),
                expr: "a".into(),
            },
            PartitionSpec {
                name: "pb".into(),
                expr: "b".into(),
            },
        ];
        // `pa=` + 200 + `/` + `pb=` + 200: 407 bytes.
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a".repeat(200)])),
                Arc::new(StringArray::from(vec!["b".repeat(200)])),
            ],
        )
        .unwrap();
        let partitioner = |limit| {
            Partitioner::new(&engine, &schema, &specs, "p.toml")
                .unwrap()
                .with_limits(255, limit)
        };
        assert!(partitioner(407).paths(&batch).is_ok());
        let err = partitioner(406).paths(&batch).unwrap_err().to_string();
        assert!(
            err.contains("407 bytes") && err.contains("at most 406"),
            "{err}"
        );
    }

    #[test]
    fn partition_names_may_not_shadow_columns() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("dt", DataType::Utf8, true)]));
        let engine = SqlEngine::new("events", schema.clone()).unwrap();
        let err = Partitioner::new(
            &engine,
            &schema,
            &[PartitionSpec {
                name: "dt".into(),
                expr: "dt".into(),
            }],
            "p.toml",
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("also an output column"), "{err}");
    }
}
