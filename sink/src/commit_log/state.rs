//! The state the entries add up to (per Kafka partition: owner, offsets, watermark, window
//! state), and the checks an entry must pass to follow it. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use weir_schemas::PartitionKey;

use super::{Action, Entry, RecordedSchema};

/// What the log says about one Kafka partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Where the next commit continues: the end of the last committed range.
    pub next_offset: Option<i64>,
    /// Writer of the latest claim.
    pub owner: Option<String>,
    /// Sequence number of the latest claim.
    pub claimed_at: Option<u64>,
    /// Sequence number and time of the latest commit.
    pub last_commit: Option<u64>,
    pub committed_at: Option<String>,
    /// The committed event-time watermark, epoch milliseconds; only moves forward.
    pub watermark_ms: Option<i64>,
    /// The highest event time committed.
    pub max_event_ms: Option<i64>,
    /// Windowed datasets: the file holding the partition's open windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_state: Option<String>,
    /// Windowed datasets: the watermark up to which the partition's windows were emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_ms: Option<i64>,
}

/// Why an entry may not follow the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The committing writer does not hold the partition's latest claim.
    NotOwner {
        partition: PartitionKey,
        owner: Option<String>,
        claimed_at: Option<u64>,
    },
    /// The range does not start where the previous one ended (a gap or an overlap).
    Discontinuous {
        partition: PartitionKey,
        from: i64,
        expected: i64,
    },
    /// An empty or reversed range.
    EmptyRange {
        partition: PartitionKey,
        from: i64,
        to: i64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotOwner {
                partition,
                owner: Some(owner),
                claimed_at: Some(seq),
            } => write!(f, "{partition} was claimed by {owner} at entry {seq}"),
            Violation::NotOwner { partition, .. } => write!(f, "{partition} was never claimed"),
            Violation::Discontinuous {
                partition,
                from,
                expected,
            } => {
                let what = if from < expected { "overlap" } else { "gap" };
                write!(
                    f,
                    "{partition}: range starts at offset {from} but the previous one ended at {expected} ({what})"
                )
            }
            Violation::EmptyRange {
                partition,
                from,
                to,
            } => write!(f, "{partition}: empty range {from}..{to}"),
        }
    }
}

/// The dataset's schema as last recorded, with the entry that recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRecord {
    pub seq: u64,
    pub written_at: String,
    #[serde(flatten)]
    pub schema: RecordedSchema,
}

/// The state the log's entries add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    /// The sequence number the next entry gets.
    pub next_seq: u64,
    pub partitions: BTreeMap<PartitionKey, PartitionState>,
    /// The columns of the files committed last; `None` before the first commit that
    /// recorded them (logs written before commits recorded schemas have none).
    pub schema: Option<SchemaRecord>,
}

impl LogState {
    /// The dataset's committed watermark: the lowest over its partitions.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter_map(|p| p.watermark_ms)
            .min()
    }

    /// The window state files some partition still needs.
    pub fn window_state_files(&self) -> std::collections::BTreeSet<&str> {
        self.partitions
            .values()
            .filter_map(|p| p.window_state.as_deref())
            .collect()
    }

    /// Whether `entry` may follow this state.
    pub fn check(&self, entry: &Entry) -> Result<(), Vec<Violation>> {
        let Action::Commit { ranges, .. } = &entry.action else {
            return Ok(());
        };
        let mut violations = Vec::new();
        for partition in entry.touched_partitions() {
            let state = self.partitions.get(partition);
            let owner = state.and_then(|s| s.owner.clone());
            if owner.as_deref() != Some(entry.writer.as_str()) {
                violations.push(Violation::NotOwner {
                    partition: partition.clone(),
                    owner,
                    claimed_at: state.and_then(|s| s.claimed_at),
                });
            }
        }
        for range in ranges {
            let state = self.partitions.get(&range.partition);
            if range.to <= range.from {
                violations.push(Violation::EmptyRange {
                    partition: range.partition.clone(),
                    from: range.from,
                    to: range.to,
                });
            }
            if let Some(expected) = state.and_then(|s| s.next_offset)
                && expected != range.from
            {
                violations.push(Violation::Discontinuous {
                    partition: range.partition.clone(),
                    from: range.from,
                    expected,
                });
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Adds `entry` to the state.
    pub fn apply(&mut self, entry: &Entry) {
        self.next_seq = entry.seq + 1;
        match &entry.action {
            Action::Claim { partitions } => {
                for partition in partitions {
                    let state = self.partitions.entry(partition.clone()).or_default();
                    state.owner = Some(entry.writer.clone());
                    state.claimed_at = Some(entry.seq);
                }
            }
            Action::Commit {
                ranges,
                watermarks,
                window_state,
                schema,
                ..
            } => {
                if let Some(schema) = schema {
                    self.schema = Some(SchemaRecord {
                        seq: entry.seq,
                        written_at: entry.written_at.clone(),
                        schema: schema.clone(),
                    });
                }
                for emitted in window_state.iter().flat_map(|s| &s.partitions) {
                    let state = self
                        .partitions
                        .entry(emitted.partition.clone())
                        .or_default();
                    state.window_state = window_state.as_ref().and_then(|s| s.path.clone());
                    state.emitted_ms = state.emitted_ms.max(emitted.emitted_ms);
                }
                for range in ranges {
                    let state = self.partitions.entry(range.partition.clone()).or_default();
                    state.next_offset = Some(range.to);
                    state.last_commit = Some(entry.seq);
                    state.committed_at = Some(entry.written_at.clone());
                }
                for recorded in watermarks {
                    let state = self
                        .partitions
                        .entry(recorded.partition.clone())
                        .or_default();
                    let w = recorded.watermark;
                    state.watermark_ms = state.watermark_ms.max(Some(w.watermark_ms));
                    state.max_event_ms = state.max_event_ms.max(Some(w.max_event_ms));
                }
            }
        }
    }
}
