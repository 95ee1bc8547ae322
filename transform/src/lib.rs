//! SQL for weir, on Apache DataFusion: transforms, validation rules and partition paths.
//!
//! Every batch that ingest decodes becomes, for the length of one call, the source table
//! that analysts' SQL selects from. A transform is planned once at start-up (so a wrong
//! column or a typo fails before any message is read) and its optimized logical plan is
//! turned into a physical plan per batch over [`CurrentBatch`], a table whose content is the
//! batch in flight. Stateless transforms are exactly that. Windowed transforms group by an
//! event-time window ([`window`]); their aggregation is kept across batches in a
//! [`WindowState`] and emitted when the watermark passes each window.

mod current;
mod error;
pub mod functions;
pub mod partition;
pub mod rules;
mod transform;
pub mod window;
mod windowed;

pub use datafusion::error::DataFusionError;
pub use error::{TransformError, locate};
pub use functions::HashKeys;
pub use partition::{PartitionSpec, Partitioner};
pub use rules::{RuleOutcome, ValidationRules};
pub use transform::{SqlEngine, Transform, TransformKind, Window};
pub use window::WindowKind;
pub use windowed::{Checkpointed, WindowState};
