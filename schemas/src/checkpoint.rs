//! What a dataset commits at a checkpoint besides its files.

use arrow::array::RecordBatch;

use crate::{EmittedWatermark, OffsetRange, RecordedWatermark, WatermarkCoverage};

/// The offsets a dataset's files since the last commit cover, the event-time watermarks they
/// are complete up to, and for a windowed dataset the state of its open windows: everything
/// a commit makes durable in one step, so that a restart resumes from exactly one of them.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub ranges: Vec<OffsetRange>,
    pub watermarks: Vec<RecordedWatermark>,
    pub window_state: Option<WindowCheckpoint>,
    /// Whether the watermarks speak for every partition of the topics; time partitions are
    /// marked complete only when they do.
    pub coverage: WatermarkCoverage,
}

/// The open windows of a windowed dataset after a checkpoint, for the partitions it owns.
#[derive(Debug, Clone, Default)]
pub struct WindowCheckpoint {
    /// The open windows' partial aggregates; `None` when no window is open.
    pub snapshot: Option<RecordBatch>,
    /// Per owned partition, up to which watermark its windows were emitted.
    pub emitted: Vec<EmittedWatermark>,
}
