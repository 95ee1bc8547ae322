//! What the log records: its entries (claims and commits), and the offset ranges, files,
//! watermarks and window state a commit names.

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
    },
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
