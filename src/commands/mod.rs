//! One module per command: each takes its command's arguments and runs it. The clap types
//! and the dispatch are in [`crate::cli`].

pub mod bench;
pub mod check;
pub mod generate;
pub mod lag;
pub mod quickstart;
pub mod run;
pub mod sql;
pub mod verify;

/// Prints a tool's report on stdout: one JSON object on one line, or the text for people.
fn print_report<T: serde::Serialize + std::fmt::Display>(
    report: &T,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
