//! What goes wrong with SQL in weir: text that does not parse or plan (placed at its line
//! and column where DataFusion says), a SQL file that cannot be read, and a transform that
//! fails on a batch.

use std::fmt;
use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// A place in a SQL text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// SQL that does not parse or plan; `source_name` names the file or config key it came
    /// from.
    #[error("{source_name}{}: {message}", location.map(|l| format!(":{}:{}", l.line, l.column)).unwrap_or_default())]
    Sql {
        source_name: String,
        location: Option<Location>,
        message: String,
    },
    #[error("cannot read SQL file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("transform `{transform}` failed: {source}")]
    Execute {
        transform: String,
        source: DataFusionError,
    },
    #[error("transform `{transform}`: {detail}")]
    PartitionPath { transform: String, detail: String },
}

impl TransformError {
    /// The dead-letter reason of a row this error is about.
    pub fn reason(&self) -> weir_schemas::Reason {
        match self {
            TransformError::PartitionPath { .. } => weir_schemas::Reason::BadPartitionValue,
            _ => weir_schemas::Reason::TransformFailed,
        }
    }

    pub(crate) fn sql(source_name: &str, error: &DataFusionError) -> Self {
        Self::sql_in(source_name, "", error)
    }

    /// Like [`TransformError::sql`], with the SQL text to place errors at its end.
    pub(crate) fn sql_in(source_name: &str, text: &str, error: &DataFusionError) -> Self {
        let (mut location, message) = locate(error);
        if location.is_none() && message.ends_with("found: EOF") && !text.is_empty() {
            location = Some(end_of(text));
        }
        TransformError::Sql {
            source_name: source_name.to_owned(),
            location,
            message,
        }
    }
}

/// Where in the SQL text DataFusion says the error is, and its message without the
/// internal prefixes.
pub fn locate(error: &DataFusionError) -> (Option<Location>, String) {
    let root = error.find_root();
    let mut message = root.to_string();
    for prefix in [
        "SQL error: ",
        "Error during planning: ",
        "Schema error: ",
        "ParserError(\"",
        "Optimizer rule",
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_owned();
        }
    }
    if let Some(rest) = message.strip_suffix("\")") {
        message = rest.to_owned();
    }
    let location = error
        .diagnostic()
        .and_then(|d| d.span)
        .filter(|s| s.start.line > 0)
        .map(|s| Location {
            line: s.start.line,
            column: s.start.column,
        })
        .or_else(|| parser_location(&message));
    (location, message)
}

fn end_of(text: &str) -> Location {
    let text = text.trim_end();
    let line = text.lines().count().max(1) as u64;
    let column = text.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
    Location { line, column }
}

/// sqlparser reports "... at Line: 3, Column: 14".
fn parser_location(message: &str) -> Option<Location> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Location {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}
