//! Schema evolution met mid-run: a writer schema with fields the reader schema lacks, or one
//! the reader cannot read (a type it widened).
//!
//! With `evolution = "add_columns"` the decoders do not read such a writer's messages with
//! the reader they have (that would leave the new fields out of every row, or dead-letter
//! every message). The first time such a writer schema id is met, its batch is given up
//! undecided and the pipeline is told ([`ReaderEvolution::take`]): it commits what came
//! before, decides whether the subject's latest version becomes the reader, and reads the
//! batch again. Each id is reported once per set of decoders: when the pipeline keeps its
//! reader, a second meeting reads the messages as before (or dead-letters them).

use std::sync::Mutex;

use arrow::datatypes::{DataType, Fields};

/// A writer schema ahead of the reader schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterAhead {
    pub schema_id: u32,
    /// How, in words: `adds order.coupon, channel`, or why the reader cannot read it.
    pub change: String,
}

/// Where the decoders leave the first writer schema with new fields they met, for the
/// pipeline to take.
#[derive(Debug, Default)]
pub struct ReaderEvolution {
    met: Mutex<Option<WriterAhead>>,
}

impl ReaderEvolution {
    /// The decoders met `new`; the first one met is kept until taken.
    pub(crate) fn meet(&self, new: WriterAhead) {
        let mut met = self.met.lock().expect("not poisoned");
        if met.is_none() {
            *met = Some(new);
        }
    }

    /// The writer schema ahead of the reader the decoders met, if they met one since last
    /// asked.
    pub fn take(&self) -> Option<WriterAhead> {
        self.met.lock().expect("not poisoned").take()
    }
}

/// The paths of the fields of `writer` that `reader` lacks, looking inside structs (also in
/// lists and maps): `prefix.name`, `list[].name`, `map{}.name`.
pub fn fields_beyond(reader: &Fields, writer: &Fields, prefix: &str) -> Vec<String> {
    let mut beyond = Vec::new();
    for field in writer {
        let path = format!("{prefix}{}", field.name());
        match reader.iter().find(|r| r.name() == field.name()) {
            None => beyond.push(path),
            Some(known) => beyond.extend(types_beyond(known.data_type(), field.data_type(), &path)),
        }
    }
    beyond
}

fn types_beyond(reader: &DataType, writer: &DataType, path: &str) -> Vec<String> {
    match (reader, writer) {
        (DataType::Struct(r), DataType::Struct(w)) => fields_beyond(r, w, &format!("{path}.")),
        (DataType::List(r), DataType::List(w))
        | (DataType::LargeList(r), DataType::LargeList(w)) => {
            types_beyond(r.data_type(), w.data_type(), &format!("{path}[]"))
        }
        (DataType::Map(r, _), DataType::Map(w, _)) => {
            types_beyond(r.data_type(), w.data_type(), &format!("{path}{{}}"))
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Field;

    use super::*;

    #[test]
    fn new_fields_are_found_inside_structs_lists_and_maps() {
        let item = |fields: Vec<Field>| DataType::Struct(fields.into());
        let reader: Fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "order",
                item(vec![Field::new("total", DataType::Float64, true)]),
                true,
            ),
            Field::new_list(
                "items",
                Field::new(
                    "item",
                    item(vec![Field::new("sku", DataType::Utf8, true)]),
                    true,
                ),
                true,
            ),
        ]
        .into();
        let writer: Fields = vec![
            Field::new("id", DataType::Int32, false),
            Field::new(
                "order",
                item(vec![
                    Field::new("total", DataType::Float64, true),
                    Field::new("coupon", DataType::Utf8, true),
                ]),
                true,
            ),
            Field::new_list(
                "items",
                Field::new(
                    "item",
                    item(vec![
                        Field::new("sku", DataType::Utf8, true),
                        Field::new("count", DataType::Int32, true),
                    ]),
                    true,
                ),
                true,
            ),
            Field::new("channel", DataType::Utf8, true),
        ]
        .into();
        assert_eq!(
            fields_beyond(&reader, &writer, ""),
            ["order.coupon", "items[].count", "channel"]
        );
        // Fields the writer lacks, and other types, are not new fields.
        assert!(fields_beyond(&writer, &reader, "").is_empty());
        let evolution = Arc::new(ReaderEvolution::default());
        evolution.meet(WriterAhead {
            schema_id: 7,
            change: "adds channel".into(),
        });
        evolution.meet(WriterAhead {
            schema_id: 8,
            change: "adds other".into(),
        });
        assert_eq!(evolution.take().map(|n| n.schema_id), Some(7));
        assert_eq!(evolution.take(), None);
    }
}
