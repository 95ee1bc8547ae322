//! The statistics of an `add` action, from the Parquet footer of the file it adds: rows,
//! and per top-level column the NULL count and, for types readers skip files by (numbers,
//! strings, dates, timestamps), the smallest and largest value.

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

use crate::footer::read_metadata;

/// The statistics JSON of the Parquet file at `path` (`size` bytes).
pub async fn file_stats(store: &dyn ObjectStore, path: &Path, size: u64) -> Result<String, String> {
    let metadata = read_metadata(store, path, size)
        .await
        .map_err(|e| e.to_string())?;
    stats_of(&metadata).map(|stats| stats.to_string())
}

fn stats_of(metadata: &ParquetMetaData) -> Result<Value, String> {
    let file = metadata.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| e.to_string())?;
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    for (index, column) in file.schema_descr().columns().iter().enumerate() {
        // Nested columns (structs, lists, maps) are left out: their leaves' NULLs are not the
        // column's.
        let [name] = column.path().parts() else {
            continue;
        };
        let Ok(field) = schema.field_with_name(name) else {
            continue;
        };
        let chunks: Vec<Option<&Statistics>> = metadata
            .row_groups()
            .iter()
            .map(|group| group.column(index).statistics())
            .collect();
        let null_count: Option<u64> = chunks
            .iter()
            .map(|s| s.and_then(Statistics::null_count_opt))
            .sum();
        if let Some(count) = null_count {
            nulls.insert(name.clone(), json!(count));
        }
        let bounds: Option<Vec<(Value, Value)>> = chunks
            .iter()
            .map(|s| s.and_then(|s| bounds(s, field.data_type())))
            .collect();
        if let Some(bounds) = bounds.filter(|b| !b.is_empty()) {
            let lowest = bounds.iter().map(|(lo, _)| lo).min_by(|a, b| order(a, b));
            let highest = bounds.iter().map(|(_, hi)| hi).max_by(|a, b| order(a, b));
            if let (Some(lo), Some(hi)) = (lowest, highest) {
                min.insert(name.clone(), lo.clone());
                max.insert(name.clone(), hi.clone());
            }
        }
    }
    Ok(json!({
        "numRecords": file.num_rows(),
        "minValues": min,
        "maxValues": max,
        "nullCount": nulls,
    }))
}

/// The order of two bounds of one column (both numbers or both strings; timestamps and
/// dates as ISO text, which orders as time does).
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            a.total_cmp(&b)
        }
        (Value::String(a), Value::String(b)) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    }
}

/// The smallest and largest value of one chunk, as Delta writes them for `data_type`; `None`
/// when the chunk has none (all NULL) or the type has no bounds readers use.
fn bounds(stats: &Statistics, data_type: &DataType) -> Option<(Value, Value)> {
    let exact = stats.min_is_exact() && stats.max_is_exact();
    match (stats, data_type) {
        (Statistics::Int32(s), DataType::Date32) => {
            let day = |d: &i32| {
                NaiveDate::from_num_days_from_ce_opt(719_163 + *d).map(|d| json!(d.to_string()))
            };
            Some((day(s.min_opt()?)?, day(s.max_opt()?)?))
        }
        (Statistics::Int32(s), DataType::Int8 | DataType::Int16 | DataType::Int32) => {
            Some((json!(s.min_opt()?), json!(s.max_opt()?)))
        }
        (Statistics::Int32(s), DataType::UInt8 | DataType::UInt16 | DataType::UInt32) => {
            let unsigned = |v: &i32| json!(*v as u32);
            Some((unsigned(s.min_opt()?), unsigned(s.max_opt()?)))
        }
        (Statistics::Int64(s), DataType::Int64) => Some((json!(s.min_opt()?), json!(s.max_opt()?))),
        (Statistics::Int64(s), DataType::Timestamp(unit, _)) => {
            let micros = |v: i64| match unit {
                TimeUnit::Second => v.checked_mul(1_000_000),
                TimeUnit::Millisecond => v.checked_mul(1_000),
                TimeUnit::Microsecond => Some(v),
                TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
            };
            // Delta's timestamps have milliseconds: the lower bound rounds down, the upper
            // one up, so that no file is skipped for a value it holds.
            let lo = micros(*s.min_opt()?)?.div_euclid(1_000);
            let hi = micros(*s.max_opt()?)?;
            let hi = hi.div_euclid(1_000) + i64::from(hi.rem_euclid(1_000) != 0);
            let text = |ms: i64| {
                DateTime::from_timestamp_millis(ms)
                    .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
            };
            Some((text(lo)?, text(hi)?))
        }
        (Statistics::Float(s), DataType::Float32) if exact => {
            let (lo, hi) = (*s.min_opt()?, *s.max_opt()?);
            (!lo.is_nan() && !hi.is_nan()).then(|| (json!(lo), json!(hi)))
        }
        (Statistics::Double(s), DataType::Float64) if exact => {
            let (lo, hi) = (*s.min_opt()?, *s.max_opt()?);
            (!lo.is_nan() && !hi.is_nan()).then(|| (json!(lo), json!(hi)))
        }
        // A truncated bound is not the value: leave the column out.
        (Statistics::ByteArray(s), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            if exact =>
        {
            let text = |v: &parquet::data_type::ByteArray| {
                std::str::from_utf8(v.data()).ok().map(|t| json!(t))
            };
            Some((text(s.min_opt()?)?, text(s.max_opt()?)?))
        }
        _ => None,
    }
}
