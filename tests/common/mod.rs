//! Harness for end-to-end tests: external tools, child processes and waiting on conditions.
//!
//! The tools (Python with DuckDB, pyarrow, confluent-kafka and moto; the Tansu broker) are
//! installed by `scripts/test`, which passes their paths in `WEIR_TEST_PYTHON` and
//! `WEIR_TEST_TANSU`. A test never skips when one is missing: it fails and says how to get it.
// Each test binary compiles the whole harness and uses a part of it.
#![allow(dead_code)]

pub mod blob_stores;
pub mod cli;
pub mod datasets;
pub mod fixtures;
pub mod kafka;
pub mod net;
pub mod process;
pub mod registry;
pub mod s3;

use std::path::{Path, PathBuf};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by scripts/test.
pub fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if Path::new(&path).exists() => PathBuf::from(path),
        _ => panic!(
            "{var} does not name an installed tool. Run the suite with `scripts/test`, which \
             installs Python's duckdb, pyarrow, confluent-kafka, moto, fake-gcs-server, PyYAML \
             and rotel, Azurite, the Tansu broker, and Debian's chromium, prometheus, openssl \
             and socat."
        ),
    }
}
