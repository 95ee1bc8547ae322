//! A schema registry on loopback (tests/py/registry.py), with basic authentication, and the
//! Avro clicks produced into it by confluent-kafka's own serializer (tests/py/avrotest.py).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::net::{free_port, wait_for_listener};
use super::process::Process;
use super::{repo, tool};

pub const REGISTRY_USER: &str = "weir";

/// A registry that wants `REGISTRY_USER` and the password in the returned file.
pub struct Registry {
    pub process: Process,
    pub url: String,
    pub password_file: PathBuf,
}

impl Registry {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let password_file = dir.join("registry-password");
        std::fs::write(&password_file, "s3cret-registry-password\n").unwrap();
        let mut command = Command::new(tool("WEIR_TEST_PYTHON"));
        command
            .arg(repo().join("tests/py/registry.py"))
            .args(["--port", &port.to_string(), "--user", REGISTRY_USER])
            .arg("--password-file")
            .arg(&password_file);
        let mut process = Process::start("registry", command, dir.join("registry.log"));
        wait_for_listener(&mut process, port);
        Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            password_file,
        }
    }

    /// Makes requests starting with `matching` (method and path, e.g. `GET /schemas/ids/`)
    /// fail with 503, or (`None`) ends the outage.
    pub fn outage(&self, matching: Option<&str>) {
        let script = match matching {
            Some(m) => format!(
                "import urllib.request as u, json; u.urlopen(u.Request('{}/_test/outage', \
                 data=json.dumps({{'match': '{m}'}}).encode(), method='POST'))",
                self.url
            ),
            None => format!(
                "import urllib.request as u; u.urlopen(u.Request('{}/_test/outage', \
                 method='DELETE'))",
                self.url
            ),
        };
        let status = Command::new(tool("WEIR_TEST_PYTHON"))
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "setting the registry's outage");
    }

    /// avrotest.py's `command` for `topic` on this registry, as its user, then `args`.
    fn avrotest(&self, command: &str, topic: &str, args: &[&str]) -> String {
        let mut all = vec![command, "--topic", topic, "--registry", &self.url];
        all.extend(["--user", REGISTRY_USER, "--password-file"]);
        all.push(self.password_file.to_str().unwrap());
        all.extend(args);
        avrotest(&all)
    }

    /// Registers the click schema versions of `topic` without producing anything.
    pub fn register(&self, topic: &str) {
        self.avrotest("register", topic, &[]);
    }

    /// Produces Avro clicks with avrotest.py; `args` after the connection ones. Returns what
    /// it printed.
    pub fn produce(&self, bootstrap: &str, topic: &str, expected: &Path, args: &[&str]) -> String {
        let mut all = vec![
            "--bootstrap",
            bootstrap,
            "--expected",
            expected.to_str().unwrap(),
        ];
        all.extend(args);
        self.avrotest("produce", topic, &all)
    }

    /// The environment of examples/avro/pipeline.toml for this registry.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SCHEMA_REGISTRY_URL", self.url.clone()),
            ("SCHEMA_REGISTRY_USER", REGISTRY_USER.to_owned()),
            (
                "SCHEMA_REGISTRY_PASSWORD",
                std::fs::read_to_string(&self.password_file)
                    .unwrap()
                    .trim()
                    .to_owned(),
            ),
        ]
    }
}

/// Reads the Avro datasets under `out` back with DuckDB and compares them with `expected`;
/// returns avrotest.py's report (JSON: rows, dead letters, Parquet column types).
pub fn verify_avro(expected: &Path, out: &Path) -> serde_json::Value {
    avrotest_verify("verify", expected, out)
}

/// [`verify_avro`] for tests/fixtures/avro-file, whose schema file keeps some of the fields.
pub fn verify_avro_file(expected: &Path, out: &Path) -> serde_json::Value {
    avrotest_verify("verify-file", expected, out)
}

fn avrotest_verify(command: &str, expected: &Path, out: &Path) -> serde_json::Value {
    let stdout = avrotest(&[
        command,
        "--expected",
        expected.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    serde_json::from_str(stdout.trim()).unwrap()
}

/// Runs tests/py/avrotest.py with `args`; panics with its output unless it succeeds.
fn avrotest(args: &[&str]) -> String {
    let output = Command::new(tool("WEIR_TEST_PYTHON"))
        .arg(repo().join("tests/py/avrotest.py"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "avrotest.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
