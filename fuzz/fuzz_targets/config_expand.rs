//! `${...}` expansion of pipeline.toml: any text expands or fails with a line, never a panic;
//! and any value put into a TOML string stays inside it, read back exactly.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[path = "../../src/config/expand.rs"]
#[allow(dead_code)]
mod expand;

fuzz_target!(|input: (&str, &str)| {
    let (text, value) = input;
    let vars = BTreeMap::from([("VALUE".to_owned(), value.to_owned())]);
    let file = Path::new("/nonexistent/pipeline.toml");

    if let Ok((expanded, _)) = expand::expand(text, file, &vars) {
        if !text.contains("${") {
            assert_eq!(expanded, text, "text without references changed");
        }
    }

    let (expanded, _) = expand::expand("a = \"${VALUE}\"\nb = 1\n", file, &vars)
        .expect("a set variable expands");
    let table: toml::Table = toml::from_str(&expanded).expect("the expanded text is TOML");
    assert_eq!(table["a"].as_str(), Some(value), "the value left its string");
    assert_eq!(table["b"].as_integer(), Some(1));
});
