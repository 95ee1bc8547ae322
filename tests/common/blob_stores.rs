//! Emulators of Azure Blob Storage (Azurite) and Google Cloud Storage (fake-gcs-server) on
//! loopback, for datasets on `az://` and `gs://`.

use std::path::Path;

use super::net::{free_port, wait_for_listener};
use super::process::{Process, weirtest};
use super::tool;

/// The container or bucket the emulators are started with.
pub const CONTAINER: &str = "weir-test";

/// Azurite's well-known development account and key: public, the same in every installation.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's blob service on a free loopback port with the container [`CONTAINER`], and its
/// endpoint URL (without the account).
pub fn start_azurite(dir: &Path) -> (Process, String) {
    let port = free_port();
    let mut command = std::process::Command::new(tool("WEIR_TEST_AZURITE"));
    command
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args(["--skipApiVersionCheck", "--location"])
        .arg(dir.join("azurite"));
    let mut azurite = Process::start("azurite", command, dir.join("azurite.log"));
    wait_for_listener(&mut azurite, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    weirtest(&[
        "create-bucket",
        "--store",
        "azure",
        "--endpoint",
        &endpoint,
        "--bucket",
        CONTAINER,
    ]);
    (azurite, endpoint)
}

/// fake-gcs-server on a free loopback port with the bucket [`CONTAINER`], and its endpoint
/// URL.
pub fn start_fake_gcs(dir: &Path) -> (Process, String) {
    let port = free_port();
    let mut command = std::process::Command::new(tool("WEIR_TEST_FAKE_GCS"));
    command
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
        ])
        .args([
            "-public-host",
            &format!("127.0.0.1:{port}"),
            "-backend",
            "memory",
        ]);
    let mut server = Process::start("fake-gcs-server", command, dir.join("gcs.log"));
    wait_for_listener(&mut server, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    weirtest(&[
        "create-bucket",
        "--store",
        "gcs",
        "--endpoint",
        &endpoint,
        "--bucket",
        CONTAINER,
    ]);
    (server, endpoint)
}
