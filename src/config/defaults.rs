//! What a pipeline gets for what its file leaves out, and the least it may ask for: one place
//! to read every default that docs/configuration.md lists.

use std::num::NonZeroU64;
use std::time::Duration;

use bytesize::ByteSize;
use weir_ingest::StartPosition;

use super::sections::{DeliveryConfig, TelemetryConfig, WatermarkConfig};

/// Keys shorter than this would let a guessed value's hash be searched for.
pub(super) const MIN_HASH_KEY_BYTES: usize = 16;

/// Shorter, and an instance paused for a fraction of it would have to start over too often.
pub(super) const MIN_LOG_RETENTION: Duration = Duration::from_secs(3600);

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            otlp_endpoint: None,
            otlp_interval: default_otlp_interval(),
            log_end_interval: default_log_end_interval(),
            history: default_history(),
            ready_max_checkpoint_age: None,
            wedged_after: None,
        }
    }
}

pub(super) fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
pub(super) fn default_otlp_interval() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_log_end_interval() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_history() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            out_of_orderness: default_out_of_orderness(),
            idle_timeout: default_idle_timeout(),
            max_ahead_of_clock: default_max_ahead_of_clock(),
        }
    }
}

pub(super) fn default_out_of_orderness() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

pub(super) fn default_max_ahead_of_clock() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            commit_interval: default_commit_interval(),
            max_buffered: default_max_buffered(),
            max_memory: default_max_memory(),
            max_query_memory: default_max_query_memory(),
            log_retention: default_log_retention(),
            snapshot_every: default_snapshot_every(),
        }
    }
}

pub(super) fn default_snapshot_every() -> NonZeroU64 {
    NonZeroU64::new(weir_sink::commit_log::SNAPSHOT_EVERY).expect("a positive interval")
}

pub(super) fn default_start() -> StartPosition {
    StartPosition::Earliest
}
pub(super) fn default_table() -> String {
    "events".into()
}
pub(super) fn default_batch_messages() -> usize {
    20_000
}
pub(super) fn default_batch_bytes() -> ByteSize {
    ByteSize::mib(16)
}
pub(super) fn default_batch_wait() -> Duration {
    Duration::from_millis(250)
}
pub(super) fn default_row_group_rows() -> usize {
    128 * 1024
}
pub(super) fn default_file_size() -> ByteSize {
    ByteSize::mib(128)
}
pub(super) fn default_file_rows() -> u64 {
    10_000_000
}
pub(super) fn default_file_age() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_open_files() -> usize {
    256
}
pub(super) fn default_partitions_per_checkpoint() -> usize {
    10_000
}
pub(super) fn default_commit_interval() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_log_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
pub(super) fn default_max_buffered() -> ByteSize {
    ByteSize::mib(256)
}
/// What weir holds before it buffers a row (its SQL engine, librdkafka's queues, a decoded
/// batch on its way) is about 50 MiB: a smaller `max_memory` would leave nothing to buffer.
pub(super) const MIN_MEMORY: ByteSize = ByteSize::mib(128);
pub(super) fn default_max_memory() -> ByteSize {
    ByteSize::gib(1)
}
pub(super) fn default_max_query_memory() -> ByteSize {
    ByteSize::mib(256)
}

/// Long enough for a registry across a region; short enough that a hung one is retried.
pub(super) fn default_registry_timeout() -> Duration {
    Duration::from_secs(10)
}
