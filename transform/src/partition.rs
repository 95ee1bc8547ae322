//! Hive-style partition paths (`dt=2026-11-25/hour=14/country=NL`) of a transform's output
//! rows: time partitions from a timestamp column, and SQL expressions over the rows.
//!
//! Paths come dictionary-encoded ([`PartitionPaths`]). Each part maps every row to an index
//! into its distinct segments, the parts are combined index by index, and only then is each
//! distinct path written out, escaped and checked against the store's limits: a batch of
//! thousands of rows in a few hours costs integer arithmetic per row, not string
//! formatting.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::error::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;

use weir_schemas::TimeGranularity;
use weir_schemas::hive::{NULL_PARTITION, PartitionPaths, escape_into};

use crate::engine::SqlEngine;
use crate::error::TransformError;

/// What one part of a partition path is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSpec {
    /// The time partitions of a timestamp column, outermost first: `dt=%Y-%m-%d`, then
    /// `hour=%H`, then `minute=%M` down to `granularity`, in UTC, as the sink's completeness
    /// markers expect them.
    Time {
        column: String,
        granularity: TimeGranularity,
    },
    /// One segment, `name=<value of expr>`.
    Expr { name: String, expr: String },
}

impl PartitionSpec {
    /// The segment names this part writes.
    pub fn names(&self) -> Vec<&str> {
        match self {
            PartitionSpec::Time { granularity, .. } => {
                TIME_SEGMENTS[..granularity.depth()].to_vec()
            }
            PartitionSpec::Expr { name, .. } => vec![name.as_str()],
        }
    }
}

/// The segment names of time partitions, outermost first, and their formats.
const TIME_SEGMENTS: [&str; 3] = ["dt", "hour", "minute"];
const TIME_FORMATS: [&str; 3] = ["%Y-%m-%d", "%H", "%M"];

/// Computes the partition path of each row.
pub struct Partitioner {
    parts: Vec<Part>,
    /// The longest segment (`name=value`) the dataset's store can hold.
    max_segment_bytes: usize,
    /// The longest whole path the dataset's store can hold.
    max_path_bytes: usize,
}

enum Part {
    /// Time partitions of the timestamp column at `column`, in `unit`, in UTC.
    Time {
        column: usize,
        unit: TimeUnit,
        granularity: TimeGranularity,
    },
    /// `name=<value of expr>`.
    Expr {
        name: String,
        expr: Arc<dyn PhysicalExpr>,
    },
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

/// For each row, the index of its segment among `segments`, the distinct ones.
struct Indexed {
    rows: Vec<u32>,
    segments: Vec<String>,
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
            for name in spec.names() {
                check_name(schema, name, source_name)?;
            }
            let (name, expr) = match spec {
                PartitionSpec::Time {
                    column,
                    granularity,
                } => match utc_timestamp(schema, column) {
                    Some((index, unit)) => {
                        parts.push(Part::Time {
                            column: index,
                            unit,
                            granularity: *granularity,
                        });
                        continue;
                    }
                    // A timestamp in another time zone: its hours are that zone's, as SQL
                    // formats them.
                    None => {
                        let column = format!("\"{}\"", column.replace('"', "\"\""));
                        for (name, format) in TIME_SEGMENTS
                            .iter()
                            .zip(TIME_FORMATS)
                            .take(granularity.depth())
                        {
                            let expr = format!("to_char({column}, '{format}')");
                            parts.push(Part::Expr {
                                name: name.to_string(),
                                expr: compile(engine, &df_schema, &expr, name, source_name)?,
                            });
                        }
                        continue;
                    }
                },
                PartitionSpec::Expr { name, expr } => (name, expr),
            };
            parts.push(Part::Expr {
                name: name.clone(),
                expr: compile(engine, &df_schema, expr, name, source_name)?,
            });
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
    /// if a row's path is one the store could not hold.
    pub fn paths(&self, batch: &RecordBatch) -> Result<Option<PartitionPaths>, PartitionError> {
        let mut combined: Option<Indexed> = None;
        for part in &self.parts {
            let indexed = match part {
                Part::Time {
                    column,
                    unit,
                    granularity,
                } => time_segments(batch.column(*column).as_ref(), *unit, *granularity),
                Part::Expr { name, expr } => {
                    let values = expr.evaluate(batch)?.into_array(batch.num_rows())?;
                    let values = cast(&values, &DataType::Utf8).map_err(DataFusionError::from)?;
                    let segments = expr_segments(name, &values);
                    if let Some(long) = segments
                        .segments
                        .iter()
                        .find(|s| s.len() > self.max_segment_bytes)
                    {
                        return Err(PartitionError::TooLong(format!(
                            "partition `{name}` is {} bytes as a path segment (`{name}=` and \
                             the escaped value); this dataset's store holds at most {}",
                            long.len(),
                            self.max_segment_bytes
                        )));
                    }
                    segments
                }
            };
            combined = Some(match combined {
                None => indexed,
                Some(outer) => combine(outer, indexed),
            });
        }
        let Some(Indexed { rows, segments }) = combined else {
            return Ok(None);
        };
        if let Some(long) = segments.iter().find(|p| p.len() > self.max_path_bytes) {
            return Err(PartitionError::TooLong(format!(
                "the partition path is {} bytes; this dataset's store holds paths of at most \
                 {} bytes under the dataset",
                long.len(),
                self.max_path_bytes
            )));
        }
        Ok(Some(PartitionPaths::new(
            UInt32Array::from(rows),
            Arc::new(StringArray::from(segments)),
        )))
    }
}

fn check_name(schema: &SchemaRef, name: &str, source_name: &str) -> Result<(), TransformError> {
    let where_ = format!("{source_name}: partition `{name}`");
    let bad_name = name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if bad_name {
        return Err(TransformError::Sql {
            source_name: where_,
            location: None,
            message: "a partition name is letters, digits and `_`".into(),
        });
    }
    if schema.field_with_name(name).is_ok() {
        return Err(TransformError::Sql {
            source_name: where_,
            location: None,
            message: format!(
                "`{name}` is also an output column; readers would see two values for it. \
                 Rename the partition or the column"
            ),
        });
    }
    Ok(())
}

fn compile(
    engine: &SqlEngine,
    df_schema: &datafusion::common::DFSchema,
    expr: &str,
    name: &str,
    source_name: &str,
) -> Result<Arc<dyn PhysicalExpr>, TransformError> {
    engine
        .context()
        .parse_sql_expr(expr, df_schema)
        .and_then(|e| engine.context().create_physical_expr(e, df_schema))
        .map_err(|e| TransformError::sql(&format!("{source_name}: partition `{name}`"), &e))
}

/// The index and unit of `column` when it is a timestamp in UTC (or without a zone).
fn utc_timestamp(schema: &SchemaRef, column: &str) -> Option<(usize, TimeUnit)> {
    let index = schema.index_of(column).ok()?;
    match schema.field(index).data_type() {
        DataType::Timestamp(unit, None) => Some((index, *unit)),
        DataType::Timestamp(unit, Some(zone))
            if matches!(zone.as_ref(), "UTC" | "+00:00" | "Z" | "Etc/UTC") =>
        {
            Some((index, *unit))
        }
        _ => None,
    }
}

/// Gives each distinct key of `keys` (one per row) an index, in order of first appearance.
/// Rows in runs of one key, as time partitions mostly are, cost one comparison each.
fn index_rows<K: Copy + Eq + Hash>(
    keys: impl Iterator<Item = K>,
    rows: usize,
) -> (Vec<u32>, Vec<K>) {
    let mut indices = Vec::with_capacity(rows);
    let mut distinct = Vec::new();
    let mut seen: HashMap<K, u32> = HashMap::new();
    let mut last: Option<(K, u32)> = None;
    for key in keys {
        let index = match last {
            Some((k, i)) if k == key => i,
            _ => *seen.entry(key).or_insert_with(|| {
                distinct.push(key);
                (distinct.len() - 1) as u32
            }),
        };
        last = Some((key, index));
        indices.push(index);
    }
    (indices, distinct)
}

/// The time partition segments of a timestamp column: each row's span by integer division,
/// each distinct span formatted once.
fn time_segments(column: &dyn Array, unit: TimeUnit, granularity: TimeGranularity) -> Indexed {
    let per_ms: i64 = match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1_000_000,
    };
    let to_ms = |v: i64| match per_ms {
        0 => v.saturating_mul(1000),
        n => v.div_euclid(n),
    };
    let span = granularity.span_ms();
    let times = match unit {
        TimeUnit::Second => column.as_primitive::<TimestampSecondType>().values(),
        TimeUnit::Millisecond => column.as_primitive::<TimestampMillisecondType>().values(),
        TimeUnit::Microsecond => column.as_primitive::<TimestampMicrosecondType>().values(),
        TimeUnit::Nanosecond => column.as_primitive::<TimestampNanosecondType>().values(),
    };
    let spans = (0..column.len()).map(|row| {
        column
            .is_valid(row)
            .then(|| to_ms(times[row]).div_euclid(span))
    });
    let (rows, spans) = index_rows(spans, column.len());
    let segments = spans
        .into_iter()
        .map(|span_index| {
            let path = span_index.and_then(|i| granularity.path_of(i.saturating_mul(span)));
            path.unwrap_or_else(|| {
                TIME_SEGMENTS[..granularity.depth()]
                    .iter()
                    .map(|name| format!("{name}={NULL_PARTITION}"))
                    .collect::<Vec<_>>()
                    .join("/")
            })
        })
        .collect();
    Indexed { rows, segments }
}

/// The segments `name=value` of a column of values, each distinct value escaped once.
fn expr_segments(name: &str, values: &ArrayRef) -> Indexed {
    let values = values.as_string::<i32>();
    let (rows, distinct) = index_rows(
        (0..values.len()).map(|row| values.is_valid(row).then(|| values.value(row))),
        values.len(),
    );
    let segments = distinct
        .into_iter()
        .map(|value| {
            let mut segment = format!("{name}=");
            match value {
                Some(value) => escape_into(&mut segment, value),
                None => segment.push_str(NULL_PARTITION),
            }
            segment
        })
        .collect();
    Indexed { rows, segments }
}

/// The paths `outer/inner` of each row, each distinct pair once.
fn combine(outer: Indexed, inner: Indexed) -> Indexed {
    let pairs = outer.rows.iter().zip(&inner.rows).map(|(&o, &i)| (o, i));
    let (rows, distinct) = index_rows(pairs, outer.rows.len());
    let segments = distinct
        .into_iter()
        .map(|(o, i)| {
            format!(
                "{}/{}",
                outer.segments[o as usize], inner.segments[i as usize]
            )
        })
        .collect();
    Indexed { rows, segments }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    /// The path of `row`.
    fn path(paths: &PartitionPaths, row: usize) -> &str {
        let names = paths.values().as_string::<i32>();
        names.value(paths.keys().value(row) as usize)
    }

    /// Time partitions computed by arithmetic are what SQL's `to_char` writes, in every
    /// unit, before the epoch, and for a missing time; a timestamp in another zone is
    /// formatted by SQL in that zone.
    #[test]
    fn time_partitions_are_what_sql_formats() {
        use arrow::array::{
            TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray,
        };
        let millis: Vec<Option<i64>> = vec![
            Some(1_795_615_200_000),
            Some(1_795_615_200_000 + 3_599_999),
            Some(0),
            Some(-1),
            Some(-86_400_001),
            None,
        ];
        let columns: Vec<(ArrayRef, TimeUnit)> = vec![
            (
                Arc::new(TimestampSecondArray::from(
                    millis
                        .iter()
                        .map(|m| m.map(|m| m.div_euclid(1000)))
                        .collect::<Vec<_>>(),
                )),
                TimeUnit::Second,
            ),
            (
                Arc::new(TimestampMillisecondArray::from(millis.clone())),
                TimeUnit::Millisecond,
            ),
            (
                Arc::new(TimestampMicrosecondArray::from(
                    millis
                        .iter()
                        .map(|m| m.map(|m| m * 1000 + 999))
                        .collect::<Vec<_>>(),
                )),
                TimeUnit::Microsecond,
            ),
            (
                Arc::new(TimestampNanosecondArray::from(
                    // Nanoseconds reach only to 2262: later times are missing.
                    millis
                        .iter()
                        .map(|m| m.and_then(|m| m.checked_mul(1_000_000)).map(|n| n + 1))
                        .collect::<Vec<_>>(),
                )),
                TimeUnit::Nanosecond,
            ),
        ];
        for (column, unit) in columns {
            for zone in [None, Some("UTC"), Some("Europe/Paris")] {
                let column =
                    cast(&column, &DataType::Timestamp(unit, zone.map(Into::into))).unwrap();
                let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
                    "ts",
                    column.data_type().clone(),
                    true,
                )]));
                let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
                let engine = SqlEngine::new("events", schema.clone()).unwrap();
                let time = Partitioner::new(
                    &engine,
                    &schema,
                    &[PartitionSpec::Time {
                        column: "ts".into(),
                        granularity: TimeGranularity::Minute,
                    }],
                    "p.toml",
                )
                .unwrap();
                let sql = Partitioner::new(
                    &engine,
                    &schema,
                    &[("dt", "%Y-%m-%d"), ("hour", "%H"), ("minute", "%M")].map(
                        |(name, format)| PartitionSpec::Expr {
                            name: name.into(),
                            expr: format!("to_char(ts, '{format}')"),
                        },
                    ),
                    "p.toml",
                )
                .unwrap();
                let (time, sql) = (
                    time.paths(&batch).unwrap().unwrap(),
                    sql.paths(&batch).unwrap().unwrap(),
                );
                for row in 0..batch.num_rows() {
                    assert_eq!(path(&time, row), path(&sql, row), "{unit:?} {zone:?} {row}");
                }
                if zone != Some("Europe/Paris") {
                    assert_eq!(path(&time, 1), "dt=2026-11-25/hour=14/minute=59");
                    assert_eq!(path(&time, 3), "dt=1969-12-31/hour=23/minute=59");
                }
            }
        }
        // The last event time weir accepts, which SQL's to_char cannot format (it goes
        // through nanoseconds).
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        )]));
        let last = TimestampMillisecondArray::from(vec![253_402_300_799_999]).with_timezone("UTC");
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(last)]).unwrap();
        let engine = SqlEngine::new("events", schema.clone()).unwrap();
        let spec = PartitionSpec::Time {
            column: "ts".into(),
            granularity: TimeGranularity::Minute,
        };
        let time = Partitioner::new(&engine, &schema, &[spec], "p.toml").unwrap();
        let paths = time.paths(&batch).unwrap().unwrap();
        assert_eq!(path(&paths, 0), "dt=9999-12-31/hour=23/minute=59");
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
                PartitionSpec::Time {
                    column: "ts".into(),
                    granularity: TimeGranularity::Hour,
                },
                PartitionSpec::Expr {
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
        assert_eq!(path(&paths, 0), "dt=2026-11-25/hour=14/c=a%2Fb");
        assert_eq!(
            path(&paths, 1),
            "dt=1970-01-01/hour=00/c=__HIVE_DEFAULT_PARTITION__"
        );
    }

    #[test]
    fn paths_a_store_cannot_hold_are_refused() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)]));
        let engine = SqlEngine::new("events", schema.clone()).unwrap();
        let spec = PartitionSpec::Expr {
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
        assert_eq!(path(&paths(vec![longest.clone()]).unwrap(), 0).len(), 255);
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
            PartitionSpec::Expr {
                name: "pa".into(),
                expr: "a".into(),
            },
            PartitionSpec::Expr {
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
            &[PartitionSpec::Expr {
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
