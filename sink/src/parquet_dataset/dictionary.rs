//! Whether a column's dictionary pays, judged once from the first rows a writer sees.
//!
//! Parquet's writer dictionary-encodes every column of a row group until the dictionary
//! outgrows its page limit (1 MiB). A column of 8-byte values that are nearly all distinct
//! (event times, offsets, measurements) never reaches that limit in a row group of 128k
//! rows, so every value is hashed into a dictionary as large as the values themselves,
//! plus the indices: more CPU and more bytes than plain encoding. parquet-java keeps a
//! column's dictionary only when, after its first page, dictionary plus indices are smaller
//! than the plain values; this applies the same rule to a sample of the first batch.

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Fields, SchemaRef};
use parquet::schema::types::ColumnPath;

/// Rows of a batch sampled: about one data page of 8-byte values.
pub(super) const SAMPLE_ROWS: usize = 16 * 1024;

/// Fewer non-null values than this in the sample tell too little: the column is judged on
/// a later batch.
const MIN_VALUES: usize = 1024;

/// Bytes a plain-encoded byte array spends on its length.
const LENGTH_PREFIX: usize = 4;

/// The columns of `batch` among `undecided` judged now, each with whether its dictionary
/// pays. Columns the sample says too little about stay undecided.
pub(super) fn judge(
    batch: &RecordBatch,
    undecided: &HashSet<ColumnPath>,
) -> Vec<(ColumnPath, bool)> {
    let sample = batch.slice(0, batch.num_rows().min(SAMPLE_ROWS));
    leaves(&sample)
        .into_iter()
        .filter(|(path, _)| undecided.contains(path))
        .filter_map(|(path, array)| Some((path, dictionary_pays(array.as_ref())?)))
        .collect()
}

/// The leaf columns of `schema` the judge understands.
pub(super) fn judged_columns(schema: &SchemaRef) -> HashSet<ColumnPath> {
    leaves(&RecordBatch::new_empty(schema.clone()))
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// The leaf columns the judge understands, top-level and inside structs, with their Parquet
/// paths. Lists and maps keep Parquet's default.
fn leaves(batch: &RecordBatch) -> Vec<(ColumnPath, ArrayRef)> {
    let mut leaves = Vec::new();
    collect_leaves(
        batch.schema().fields(),
        batch.columns(),
        &mut Vec::new(),
        &mut leaves,
    );
    leaves
}

fn collect_leaves(
    fields: &Fields,
    columns: &[ArrayRef],
    prefix: &mut Vec<String>,
    leaves: &mut Vec<(ColumnPath, ArrayRef)>,
) {
    for (field, column) in fields.iter().zip(columns) {
        prefix.push(field.name().clone());
        match column.data_type() {
            DataType::Struct(children) => {
                collect_leaves(children, column.as_struct().columns(), prefix, leaves)
            }
            // Booleans, which have no primitive width, are never dictionary-encoded.
            data_type
                if data_type.primitive_width().is_some()
                    || matches!(
                        data_type,
                        DataType::Utf8
                            | DataType::LargeUtf8
                            | DataType::Binary
                            | DataType::LargeBinary
                    ) =>
            {
                leaves.push((ColumnPath::new(prefix.clone()), column.clone()))
            }
            _ => {}
        }
        prefix.pop();
    }
}

/// Whether dictionary plus indices take fewer bytes than the plain values of `array`;
/// `None` when it holds too few values to tell.
fn dictionary_pays(array: &dyn Array) -> Option<bool> {
    let values = array.len() - array.null_count();
    if values < MIN_VALUES {
        return None;
    }
    let (distinct, distinct_bytes, plain_bytes) = match array.data_type() {
        DataType::Utf8 => {
            distinct_bytes(array.as_string::<i32>().iter().flatten().map(str::as_bytes))
        }
        DataType::LargeUtf8 => {
            distinct_bytes(array.as_string::<i64>().iter().flatten().map(str::as_bytes))
        }
        DataType::Binary => distinct_bytes(array.as_binary::<i32>().iter().flatten()),
        DataType::LargeBinary => distinct_bytes(array.as_binary::<i64>().iter().flatten()),
        data_type => {
            let width = data_type.primitive_width()?;
            // Narrow integers are stored as INT32.
            let stored = width.max(4);
            let data = array.to_data();
            let buffer = &data.buffers()[0].as_slice()[data.offset() * width..];
            let mut seen = HashSet::with_capacity(values);
            for row in (0..array.len()).filter(|&row| array.is_valid(row)) {
                seen.insert(&buffer[row * width..(row + 1) * width]);
            }
            (seen.len(), seen.len() * stored, values * stored)
        }
    };
    let index_bits = usize::BITS - distinct.max(1).leading_zeros();
    let indices_bytes = (values * index_bits as usize).div_ceil(8);
    Some(distinct_bytes + indices_bytes < plain_bytes)
}

/// The distinct values of `values`, the bytes they take plain-encoded, and the bytes all of
/// them take.
fn distinct_bytes<'a>(values: impl Iterator<Item = &'a [u8]>) -> (usize, usize, usize) {
    let mut seen = HashSet::new();
    let (mut distinct_bytes, mut plain_bytes) = (0, 0);
    for value in values {
        plain_bytes += value.len() + LENGTH_PREFIX;
        if seen.insert(value) {
            distinct_bytes += value.len() + LENGTH_PREFIX;
        }
    }
    (seen.len(), distinct_bytes, plain_bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray, StructArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn path(parts: &[&str]) -> ColumnPath {
        ColumnPath::new(parts.iter().map(|p| p.to_string()).collect())
    }

    /// 4,096 rows: ids all distinct, 50 countries, 500 users, a measurement per row, and
    /// a struct holding a distinct and a repeated string.
    fn batch(rows: usize) -> RecordBatch {
        let ids: StringArray = (0..rows).map(|i| Some(format!("id-{i:032}"))).collect();
        let countries: StringArray = (0..rows).map(|i| Some(format!("c{}", i % 50))).collect();
        let users = Int64Array::from_iter_values((0..rows as i64).map(|i| (i * 7919) % 500));
        let measured = Float64Array::from_iter_values((0..rows).map(|i| i as f64 * 1.37));
        let inner = StructArray::from(vec![
            (
                Arc::new(Field::new("url", DataType::Utf8, true)),
                Arc::new(ids.clone()) as ArrayRef,
            ),
            (
                Arc::new(Field::new("os", DataType::Utf8, true)),
                Arc::new(countries.clone()) as ArrayRef,
            ),
        ]);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("user", DataType::Int64, false),
            Field::new("measured", DataType::Float64, false),
            Field::new("device", inner.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(ids),
                Arc::new(countries),
                Arc::new(users),
                Arc::new(measured),
                Arc::new(inner),
            ],
        )
        .unwrap()
    }

    #[test]
    fn distinct_values_go_plain_and_repeated_ones_keep_their_dictionary() {
        let batch = batch(4096);
        let undecided = judged_columns(&batch.schema());
        assert_eq!(undecided.len(), 6, "{undecided:?}");
        let mut judged = judge(&batch, &undecided);
        judged.sort_by_key(|(path, _)| path.string());
        let expected = [
            (path(&["country"]), true),
            (path(&["device", "os"]), true),
            (path(&["device", "url"]), false),
            (path(&["id"]), false),
            (path(&["measured"]), false),
            (path(&["user"]), true),
        ];
        assert_eq!(judged, expected);
    }

    #[test]
    fn a_few_rows_decide_nothing() {
        let batch = batch(MIN_VALUES - 1);
        let undecided = judged_columns(&batch.schema());
        assert_eq!(judge(&batch, &undecided), []);
    }

    #[test]
    fn a_sliced_column_is_judged_on_its_own_rows() {
        // Distinct values, then one value repeated.
        let values = Int64Array::from_iter_values((0..4096).map(|i| if i < 2048 { i } else { 7 }));
        let schema = Schema::new(vec![Field::new("v", DataType::Int64, false)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(values)]).unwrap();
        let undecided = judged_columns(&batch.schema());
        assert_eq!(
            judge(&batch.slice(0, 2048), &undecided),
            [(path(&["v"]), false)]
        );
        assert_eq!(
            judge(&batch.slice(2048, 2048), &undecided),
            [(path(&["v"]), true)]
        );
    }
}
