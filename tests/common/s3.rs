//! A real S3 API server (moto) on loopback, for datasets on `s3://`.

use std::path::Path;

use super::net::{free_port, wait_for_listener};
use super::process::{Process, weirtest};
use super::tool;

/// The bucket [`start_moto_with_bucket`] creates.
pub const BUCKET: &str = "weir-test";

/// A moto S3 server on a free loopback port, and its endpoint URL.
pub fn start_moto(dir: &Path) -> (Process, String) {
    let port = free_port();
    let mut command = std::process::Command::new(tool("WEIR_TEST_PYTHON"));
    command.args([
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    let mut moto = Process::start("moto", command, dir.join("moto.log"));
    wait_for_listener(&mut moto, port);
    (moto, format!("http://127.0.0.1:{port}"))
}

/// A moto S3 server with the bucket [`BUCKET`], and its endpoint URL.
pub fn start_moto_with_bucket(dir: &Path) -> (Process, String) {
    let (moto, endpoint) = start_moto(dir);
    weirtest(&["create-bucket", "--endpoint", &endpoint, "--bucket", BUCKET]);
    (moto, endpoint)
}
