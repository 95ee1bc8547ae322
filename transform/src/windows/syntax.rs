//! How SQL names a window: the `tumble`, `hop` or `session` call in the GROUP BY of the
//! outermost SELECT, taken out of the statement before planning and replaced by the window
//! columns.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, SetExpr, Spanned,
    Statement, visit_expressions,
};

use super::{WINDOW_END, WINDOW_START};
use crate::error::Location;

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
