//! Event-time windows: how SQL names them and which windows an event falls in.
//!
//! A windowed transform groups by one window call over the event-time column, in the style
//! of Flink's group windows:
//!
//! ```sql
//! SELECT window_start, window_end, page, count(*) AS views
//! FROM events
//! GROUP BY tumble(ts, INTERVAL '1 minute'), page
//! ```
//!
//! Before planning, the call is replaced by the columns `window_start` and `window_end`,
//! which the windowed source table carries; weir fills them in as events arrive (one row per
//! window for hopping windows), so DataFusion plans an ordinary aggregation.

use std::ops::ControlFlow;

use arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::TimestampMillisecondType;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, SetExpr, Spanned,
    Statement, visit_expressions,
};

use crate::error::Location;

/// The columns a windowed transform selects to name its window.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// The shape of a transform's windows; all lengths in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed windows `[k·size, (k+1)·size)`, each event in exactly one.
    Tumble { size: i64 },
    /// Windows of `size` starting every `slide`; an event is in `size / slide` of them.
    Hop { slide: i64, size: i64 },
    /// Per key, events closer than `gap` to each other form one window, which ends `gap`
    /// after its last event.
    Session { gap: i64 },
}

impl WindowKind {
    /// How long a window lasts, when that is fixed.
    pub fn size(&self) -> Option<i64> {
        match *self {
            WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => Some(size),
            WindowKind::Session { .. } => None,
        }
    }

    /// Calls `window(start, end)` for every window an event at `ts` falls in. A session
    /// window starts as `[ts, ts + gap)` and grows as events of its key join it.
    pub fn assign(&self, ts: i64, mut window: impl FnMut(i64, i64)) {
        match *self {
            WindowKind::Tumble { size } => {
                let start = ts - ts.rem_euclid(size);
                window(start, start + size);
            }
            WindowKind::Hop { slide, size } => {
                let mut start = ts - ts.rem_euclid(slide);
                while start > ts - size {
                    window(start, start + size);
                    start -= slide;
                }
            }
            WindowKind::Session { gap } => window(ts, ts + gap),
        }
    }

    pub fn describe(&self) -> String {
        let d = |ms: i64| humanize(ms);
        match *self {
            WindowKind::Tumble { size } => format!("tumbling {}", d(size)),
            WindowKind::Hop { slide, size } => format!("hopping {} every {}", d(size), d(slide)),
            WindowKind::Session { gap } => format!("session, gap {}", d(gap)),
        }
    }
}

fn humanize(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string()
}

/// A window call found in a query, before its intervals are evaluated.
pub(crate) struct WindowCall {
    pub name: String,
    pub time_column: String,
    /// The interval arguments as SQL text.
    pub intervals: Vec<String>,
    pub location: Option<Location>,
}

/// What is wrong with a window call, and where.
pub(crate) struct WindowSyntaxError {
    pub message: String,
    pub location: Option<Location>,
}

fn is_window_function(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "tumble" | "hop" | "session"
    )
}

fn location_of(expr: &Expr) -> Option<Location> {
    let span = expr.span();
    (span.start.line > 0).then_some(Location {
        line: span.start.line,
        column: span.start.column,
    })
}

/// Takes the window call out of the outermost SELECT's GROUP BY, putting `window_start` and
/// `window_end` in its place. A window call anywhere else is an error.
pub(crate) fn extract_window(
    statement: &mut DfStatement,
) -> Result<Option<WindowCall>, WindowSyntaxError> {
    let DfStatement::Statement(statement) = statement else {
        return Ok(None);
    };
    let mut call = None;
    if let Statement::Query(query) = statement.as_mut()
        && let SetExpr::Select(select) = query.body.as_mut()
        && let GroupByExpr::Expressions(exprs, _) = &mut select.group_by
    {
        let mut rewritten = Vec::with_capacity(exprs.len() + 1);
        for expr in exprs.drain(..) {
            match &expr {
                Expr::Function(f) if is_window_function(&f.name.to_string()) => {
                    if call.is_some() {
                        return Err(WindowSyntaxError {
                            message: "a transform can group by one window only".into(),
                            location: location_of(&expr),
                        });
                    }
                    call = Some(parse_call(&expr)?);
                    rewritten.push(Expr::Identifier(Ident::new(WINDOW_START)));
                    rewritten.push(Expr::Identifier(Ident::new(WINDOW_END)));
                }
                _ => rewritten.push(expr),
            }
        }
        *exprs = rewritten;
    }
    // Anywhere else (SELECT list, WHERE, a subquery) a window call has no meaning.
    let misplaced = visit_expressions(statement.as_ref(), |expr| match expr {
        Expr::Function(f) if is_window_function(&f.name.to_string()) => {
            ControlFlow::Break(location_of(expr))
        }
        _ => ControlFlow::Continue(()),
    });
    if let ControlFlow::Break(location) = misplaced {
        return Err(WindowSyntaxError {
            message: "a window function (tumble, hop, session) belongs in the GROUP BY of the \
                      outermost SELECT; select window_start and window_end to name the window"
                .into(),
            location,
        });
    }
    Ok(call)
}

fn parse_call(expr: &Expr) -> Result<WindowCall, WindowSyntaxError> {
    let Expr::Function(f) = expr else {
        unreachable!("called on function calls")
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let usage = match name.as_str() {
        "tumble" => "tumble(<event time>, INTERVAL '<size>')",
        "hop" => "hop(<event time>, INTERVAL '<slide>', INTERVAL '<size>')",
        _ => "session(<event time>, INTERVAL '<gap>')",
    };
    let wrong = |what: &str| WindowSyntaxError {
        message: format!("{what}; write {usage}"),
        location: location_of(expr),
    };
    let FunctionArguments::List(list) = &f.args else {
        return Err(wrong("the window has no arguments"));
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(wrong("window arguments are plain expressions")),
        })
        .collect::<Result<_, _>>()?;
    let expected = if name == "hop" { 3 } else { 2 };
    if args.len() != expected {
        return Err(wrong(&format!(
            "`{name}` takes {expected} arguments, not {}",
            args.len()
        )));
    }
    let time_column = match args[0] {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.last().expect("not empty").value.clone(),
        _ => {
            return Err(wrong(
                "the first argument of a window is the event-time column",
            ));
        }
    };
    Ok(WindowCall {
        name,
        time_column,
        intervals: args[1..].iter().map(|e| e.to_string()).collect(),
        location: location_of(expr),
    })
}

/// The rows of one batch placed in their windows.
pub(crate) struct Assigned {
    /// For each windowed row, the input row it came from.
    pub rows: UInt32Array,
    pub starts: TimestampMillisecondArray,
    pub ends: TimestampMillisecondArray,
    /// Input rows none of whose windows are still open.
    pub late: Vec<usize>,
}

/// Places every row of `times` (event time, milliseconds) in its windows, leaving out the
/// windows that were emitted: those ending at or before `emitted - lateness` (for sessions,
/// events before it).
pub(crate) fn assign(
    kind: &WindowKind,
    times: &ArrayRef,
    emitted: Option<i64>,
    lateness: i64,
) -> Assigned {
    let times = times.as_primitive::<TimestampMillisecondType>();
    let closed_until = emitted.map_or(i64::MIN, |e| e.saturating_sub(lateness));
    let mut rows = Vec::with_capacity(times.len());
    let mut starts = Vec::with_capacity(times.len());
    let mut ends = Vec::with_capacity(times.len());
    let mut late = Vec::new();
    for row in 0..times.len() {
        // The schema requires the event time of windowed transforms' events.
        let ts = times.value(row);
        let before = rows.len();
        kind.assign(ts, |start, end| {
            // A session closes only once the watermark is past its end (see the state), so
            // an event is late for one when it is before where sessions were closed.
            let open = match kind {
                WindowKind::Session { .. } => start >= closed_until,
                _ => end > closed_until,
            };
            if open {
                rows.push(row as u32);
                starts.push(start);
                ends.push(end);
            }
        });
        if rows.len() == before {
            late.push(row);
        }
    }
    // Window bounds are instants: UTC, whatever zone the event time was written in.
    Assigned {
        rows: UInt32Array::from(rows),
        starts: TimestampMillisecondArray::from(starts).with_timezone("UTC"),
        ends: TimestampMillisecondArray::from(ends).with_timezone("UTC"),
        late,
    }
}

/// `batch` with one row per (row, window) of `assigned` and the window columns appended.
pub(crate) fn windowed_batch(
    batch: &RecordBatch,
    assigned: &Assigned,
    schema: arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut columns = Vec::with_capacity(batch.num_columns() + 2);
    for column in batch.columns() {
        columns.push(take(column, &assigned.rows, None)?);
    }
    columns.push(std::sync::Arc::new(assigned.starts.clone()));
    columns.push(std::sync::Arc::new(assigned.ends.clone()));
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        kind.assign(ts, |s, e| out.push((s, e)));
        out.sort();
        out
    }

    #[test]
    fn assigns_events_to_windows() {
        let tumble = WindowKind::Tumble { size: 60 };
        assert_eq!(windows(tumble, 0), [(0, 60)]);
        assert_eq!(windows(tumble, 59), [(0, 60)]);
        assert_eq!(windows(tumble, 60), [(60, 120)]);
        assert_eq!(windows(tumble, -1), [(-60, 0)]);
        let hop = WindowKind::Hop {
            slide: 20,
            size: 60,
        };
        assert_eq!(windows(hop, 65), [(20, 80), (40, 100), (60, 120)]);
        assert_eq!(windows(hop, 60), [(20, 80), (40, 100), (60, 120)]);
        let uneven = WindowKind::Hop {
            slide: 40,
            size: 60,
        };
        assert_eq!(windows(uneven, 45), [(0, 60), (40, 100)]);
        assert_eq!(windows(uneven, 75), [(40, 100)]);
        assert_eq!(windows(WindowKind::Session { gap: 30 }, 100), [(100, 130)]);
    }
}
