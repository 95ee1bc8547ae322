//! The errors of the commit log.

use super::Violation;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("dataset `{dataset}`: cannot {action} {path}: {source}")]
    Store {
        dataset: String,
        action: &'static str,
        path: String,
        source: Box<object_store::Error>,
    },
    #[error("dataset `{dataset}`: {path} is not a valid commit log object: {reason}")]
    Corrupt {
        dataset: String,
        path: String,
        reason: String,
    },
    #[error(
        "dataset `{dataset}`: commit refused, this instance no longer owns its partitions: {}; \
         its uncommitted rows are dropped and read again by the owner",
        join(violations)
    )]
    Fenced {
        dataset: String,
        violations: Vec<Violation>,
    },
    #[error(
        "dataset `{dataset}`: commit would break the log: {}",
        join(violations)
    )]
    Invalid {
        dataset: String,
        violations: Vec<Violation>,
    },
    #[error(
        "dataset `{dataset}`: the object store let an object be created twice; weir's commit \
         log needs conditional writes (create only if absent: If-None-Match on S3) to order and \
         fence commits"
    )]
    NoConditionalPut { dataset: String },
    #[error(
        "dataset `{dataset}`: committed file {path} is missing, and so is its staged copy {staging}"
    )]
    MissingFile {
        dataset: String,
        path: String,
        staging: String,
    },
    /// Publishing a commit to the dataset's table format (Delta) failed; the next start
    /// publishes it.
    #[error(transparent)]
    Table(Box<dyn std::error::Error + Send + Sync>),
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
