//! The transform stage of weir, on Apache DataFusion: validation rules, SQL transforms,
//! event-time windows and watermarks, partition paths.
//!
//! [`Transforms`] takes each batch ingest hands on ([`weir_schemas::SourceBatch`]): the rules
//! dead-letter the rows that fail them, then every output's SQL runs over the rest. Each
//! batch becomes, for the length of one call, the source table that analysts' SQL selects
//! from. A transform is planned once at start-up (so a wrong column or a typo fails before
//! any message is read) and its optimized logical plan is turned into a physical plan per
//! batch over a table whose content is the batch in flight. Stateless transforms are exactly
//! that. Windowed transforms group by an event-time window ([`windows`]); their aggregation
//! is kept across batches in a [`WindowState`], owned by the transform's [`Output`], and
//! emitted when the [`Watermarks`] pass each window.

mod bisect;
mod current;
mod engine;
mod error;
pub mod functions;
mod output;
pub mod partition;
pub mod rules;
mod stage;
mod watermark;
pub mod windows;

pub use engine::{SqlEngine, Transform, TransformKind, Window};
pub use error::{TransformError, locate};
pub use functions::HashKeys;
pub use output::{Emitted, Output, Rows};
pub use partition::{PartitionSpec, Partitioner};
pub use rules::{RuleOutcome, ValidationRules};
pub use stage::{Processed, Transforms};
pub use watermark::{Now, Watermarks};
pub use windows::{Checkpointed, WindowKind, WindowState};
