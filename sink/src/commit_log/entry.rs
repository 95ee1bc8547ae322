//! What the log records: its entries (claims and commits), and the offset ranges, files,
//! watermarks and window state a commit names.

use arrow::datatypes::{DataType, Field};
use serde::{Deserialize, Serialize};
use weir_schemas::{EmittedWatermark, OffsetRange, PartitionKey, RecordedWatermark};

/// The format version of entries and snapshots, written into each.
pub(super) const FORMAT_VERSION: u32 = 1;

/// The window state a commit of a windowed dataset leaves: it replaces the state of every
/// listed partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStateRef {
    /// The Arrow IPC file of the open windows' partial aggregates, relative to the dataset
    /// root; `None` when no window was open.
    pub path: Option<String>,
    pub partitions: Vec<EmittedWatermark>,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    pub seq: u64,
    /// Unique per entry, so a writer whose put timed out can tell whether it landed.
    pub id: String,
    pub writer: String,
    pub written_at: String,
    #[serde(flatten)]
    pub action: Action,
}

impl Entry {
    /// The partitions a commit writes for (its ranges and watermarks): only their owner may.
    pub fn touched_partitions(&self) -> std::collections::BTreeSet<&PartitionKey> {
        match &self.action {
            Action::Claim { .. } => Default::default(),
            Action::Commit {
                ranges,
                watermarks,
                window_state,
                ..
            } => ranges
                .iter()
                .map(|r| &r.partition)
                .chain(watermarks.iter().map(|w| &w.partition))
                .chain(
                    window_state
                        .iter()
                        .flat_map(|s| s.partitions.iter().map(|p| &p.partition)),
                )
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The writer owns these partitions from now on.
    Claim { partitions: Vec<PartitionKey> },
    /// The files hold exactly the rows derived from these offset ranges.
    Commit {
        ranges: Vec<OffsetRange>,
        files: Vec<WrittenFile>,
        /// The event-time watermarks the commit covers, for the writer's partitions.
        #[serde(default)]
        watermarks: Vec<RecordedWatermark>,
        /// Windowed datasets: the open windows after this commit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_state: Option<WindowStateRef>,
        /// The columns of the files, when they differ from those recorded last (and in the
        /// dataset's first commit with files): each change of the dataset's schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<RecordedSchema>,
    },
}

/// The columns of a dataset's files, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSchema {
    pub columns: Vec<RecordedColumn>,
    /// The source schema the columns follow: a registry subject's version, a schema file.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedColumn {
    pub name: String,
    /// The Arrow type, as [`type_name`] writes it (`Int64`, `Timestamp(Microsecond, UTC)`,
    /// `List<Utf8>`, `Struct<id: Int64 NOT NULL, name: Utf8>`).
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// An Arrow type in words that stay the same across Arrow releases (its `Display` has
/// changed between them): recorded types are compared with those of files read years later.
pub fn type_name(data_type: &DataType) -> String {
    let field = |f: &Field| {
        let null = if f.is_nullable() { "" } else { " NOT NULL" };
        format!("{}{null}", type_name(f.data_type()))
    };
    match data_type {
        DataType::Timestamp(unit, tz) => match tz {
            Some(tz) => format!("Timestamp({unit:?}, {tz})"),
            None => format!("Timestamp({unit:?})"),
        },
        DataType::Time32(unit) | DataType::Time64(unit) | DataType::Duration(unit) => {
            let kind = match data_type {
                DataType::Time32(_) => "Time32",
                DataType::Time64(_) => "Time64",
                _ => "Duration",
            };
            format!("{kind}({unit:?})")
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => {
            format!("List<{}>", field(f))
        }
        DataType::FixedSizeList(f, n) => format!("List<{}>[{n}]", field(f)),
        DataType::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), field(f)))
                .collect();
            format!("Struct<{}>", fields.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("Map<{}, {}>", field(&kv[0]), field(&kv[1]))
            }
            other => format!("Map<{}>", type_name(other)),
        },
        // Dictionary encoding is how values are held, not what they are.
        DataType::Dictionary(_, values) => type_name(values),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "Utf8".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "Binary".into(),
        other => format!("{other:?}"),
    }
}

/// How one column differs between two recorded schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ColumnChange {
    Added(RecordedColumn),
    Removed(RecordedColumn),
    /// Same name, another type or nullability.
    Changed {
        before: RecordedColumn,
        after: RecordedColumn,
    },
}

impl RecordedSchema {
    /// The columns of `schema`, following `source`.
    pub fn of(schema: &arrow::datatypes::Schema, source: &str) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| RecordedColumn {
                name: f.name().clone(),
                data_type: type_name(f.data_type()),
                nullable: f.is_nullable(),
            })
            .collect();
        Self {
            columns,
            source: source.to_owned(),
        }
    }

    /// Whether the files hold the same columns (the source may have another name).
    pub fn same_columns(&self, other: &RecordedSchema) -> bool {
        self.columns == other.columns
    }

    /// What changed from `before` to this schema, column by column, in this schema's order
    /// and then the removed ones.
    pub fn changes_from(&self, before: &RecordedSchema) -> Vec<ColumnChange> {
        let find = |columns: &[RecordedColumn], name: &str| {
            columns.iter().find(|c| c.name == name).cloned()
        };
        let mut changes: Vec<ColumnChange> = self
            .columns
            .iter()
            .filter_map(|after| match find(&before.columns, &after.name) {
                None => Some(ColumnChange::Added(after.clone())),
                Some(before) if before != *after => Some(ColumnChange::Changed {
                    before,
                    after: after.clone(),
                }),
                Some(_) => None,
            })
            .collect();
        changes.extend(
            before
                .columns
                .iter()
                .filter(|c| find(&self.columns, &c.name).is_none())
                .map(|c| ColumnChange::Removed(c.clone())),
        );
        changes
    }
}

impl std::fmt::Display for RecordedColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let null = if self.nullable { "" } else { " NOT NULL" };
        write!(f, "`{}` {}{null}", self.name, self.data_type)
    }
}

impl std::fmt::Display for ColumnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnChange::Added(c) => write!(f, "added {c}"),
            ColumnChange::Removed(c) => write!(f, "removed {c}"),
            ColumnChange::Changed { before, after } => write!(
                f,
                "changed `{}` from {} to {}",
                after.name,
                RecordedColumnType(before),
                RecordedColumnType(after)
            ),
        }
    }
}

/// A column's type and nullability, without its name.
struct RecordedColumnType<'a>(&'a RecordedColumn);

impl std::fmt::Display for RecordedColumnType<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let null = if self.0.nullable { "" } else { " NOT NULL" };
        write!(f, "{}{null}", self.0.data_type)
    }
}

/// A complete file: durable under its staged name, visible under `path` once committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    /// Final path, relative to the dataset root.
    pub path: String,
    /// Where the file is until its commit, relative to the dataset root.
    pub staging: String,
    /// Hive partition path, empty without partitioning.
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
}
