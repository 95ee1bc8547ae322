//! A schema registry on loopback (tests/py/registry.py), with basic authentication; clicks
//! produced into it by confluent-kafka's own serializers (tests/py/avrotest.py for Avro,
//! tests/py/prototest.py for Protobuf) and read back with DuckDB; and [`Setup`], a broker and
//! a registry for one codec's example pipeline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::cli::{Committed, run_until_committed};
use super::datasets::verify_datasets;
use super::kafka::{committed_total, start_tansu};
use super::net::{free_port, http_get, serving_port, wait_for_listener, wait_until};
use super::process::{Process, output_ok, weir};
use super::{repo, tool};

pub const REGISTRY_USER: &str = "weir";

/// A payload format whose schemas live in the registry: its example pipeline and the
/// Python tool that registers, produces and verifies its clicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Avro,
    Protobuf,
}

impl Codec {
    fn script(self) -> PathBuf {
        repo().join(match self {
            Codec::Avro => "tests/py/avrotest.py",
            Codec::Protobuf => "tests/py/prototest.py",
        })
    }

    /// The example pipeline's directory.
    pub fn example(self) -> PathBuf {
        repo().join(match self {
            Codec::Avro => "examples/avro",
            Codec::Protobuf => "examples/protobuf",
        })
    }

    /// The example's default topic.
    pub fn topic(self) -> &'static str {
        match self {
            Codec::Avro => "clicks",
            Codec::Protobuf => "clicks-pb",
        }
    }

    /// Runs the codec's tool with `args`; panics with its output unless it succeeds.
    fn run(self, args: &[&str]) -> String {
        let output = Command::new(tool("WEIR_TEST_PYTHON"))
            .arg(self.script())
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{} {args:?} failed:\n{stdout}\n{}",
            self.script().display(),
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Reads the datasets under `out` back with DuckDB (`command`: `verify`, or another
    /// check the tool has) and compares them with `expected`; returns the tool's report
    /// (JSON: rows, dead letters, Parquet column types).
    pub fn verify_with(self, command: &str, expected: &Path, out: &Path) -> serde_json::Value {
        let stdout = self.run(&[
            command,
            "--expected",
            expected.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        serde_json::from_str(stdout.trim()).unwrap()
    }
}

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

    /// The codec tool's `command` for `topic` on this registry, as its user, then `args`.
    fn run(&self, codec: Codec, command: &str, topic: &str, args: &[&str]) -> String {
        let mut all = vec![command, "--topic", topic, "--registry", &self.url];
        all.extend(["--user", REGISTRY_USER, "--password-file"]);
        all.push(self.password_file.to_str().unwrap());
        all.extend(args);
        codec.run(&all)
    }

    /// Registers the click schema versions of `topic` without producing anything.
    pub fn register(&self, codec: Codec, topic: &str) {
        self.run(codec, "register", topic, &[]);
    }

    /// Produces clicks with the codec's tool; `args` after the connection ones. Returns what
    /// it printed.
    pub fn produce(
        &self,
        codec: Codec,
        bootstrap: &str,
        topic: &str,
        expected: &Path,
        args: &[&str],
    ) -> String {
        let mut all = vec![
            "--bootstrap",
            bootstrap,
            "--expected",
            expected.to_str().unwrap(),
        ];
        all.extend(args);
        self.run(codec, "produce", topic, &all)
    }

    /// The environment of the examples' pipeline.toml for this registry.
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

pub const PARTITIONS: i32 = 3;

/// A broker, a registry, one codec's example pipeline on the codec's topic, and where the
/// expected rows are kept.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub broker: Process,
    pub bootstrap: String,
    pub registry: Registry,
    pub expected: PathBuf,
    pub codec: Codec,
}

impl Setup {
    pub fn start(codec: Codec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let broker = start_tansu(dir.path(), port, false, "tansu.log");
        let registry = Registry::start(dir.path());
        let expected = dir.path().join("expected.json");
        Self {
            broker,
            bootstrap: format!("127.0.0.1:{port}"),
            registry,
            expected,
            dir,
            codec,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn topic(&self) -> &'static str {
        self.codec.topic()
    }

    /// Produces clicks (the tool's `produce` with `args`), the first time creating the topic.
    pub fn produce(&self, args: &[&str]) {
        let partitions = PARTITIONS.to_string();
        let mut all = args.to_vec();
        if !self.expected.exists() {
            all.extend(["--partitions", &partitions]);
        }
        self.registry.produce(
            self.codec,
            &self.bootstrap,
            self.topic(),
            &self.expected,
            &all,
        );
    }

    /// Registers the click schema versions without producing.
    pub fn register(&self) {
        self.registry.register(self.codec, self.topic());
    }

    /// `weir run` of the codec's example.
    pub fn weir(&self) -> Command {
        self.weir_with(&self.codec.example().join("pipeline.toml"))
    }

    pub fn weir_with(&self, config: &Path) -> Command {
        let mut command = weir();
        command
            .args(["run", "--config"])
            .arg(config)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("TOPIC", self.topic())
            .env("GROUP", self.group())
            .env("WEIR_OUT", self.path().join("out"))
            .envs(self.registry.env());
        command
    }

    fn group(&self) -> String {
        format!("weir-test-{}", self.topic())
    }

    pub fn committed(&self) -> i64 {
        committed_total(&self.bootstrap, &self.group(), self.topic(), PARTITIONS)
    }

    /// Runs `command` until all `messages` are committed, then stops it; returns its log.
    pub fn run_until_committed(&self, command: Command, log: &str, messages: i64) -> String {
        run_until_committed(
            command,
            self.path().join(log),
            Committed {
                bootstrap: &self.bootstrap,
                topic: self.topic(),
                partitions: PARTITIONS,
                messages,
                properties: &[],
            },
        )
    }

    /// The datasets read back with DuckDB against what was produced.
    pub fn verify(&self) -> serde_json::Value {
        self.codec
            .verify_with("verify", &self.expected, &self.path().join("out"))
    }

    /// Runs `config` (the example with `evolution = "add_columns"` and `SELECT *`) on 30
    /// clicks of version 1, then produces 30 of version 2 (adding `referrer`, widening
    /// `quantity`) while it runs, and checks that the reader follows: every click exactly
    /// once, `referrer` in the files written after the change only, the change in the commit
    /// log as `weir verify`, `weir check --datasets` and the status page show it.
    pub fn follows_a_newer_version(&self, config: &Path) {
        // Version 1 is the latest, so the reader, when weir starts.
        self.produce(&["--versions", "1", "--count", "30"]);
        let mut running =
            Process::start("weir", self.weir_with(config), self.path().join("weir.log"));
        let listen = serving_port(&mut running);
        let committed = |running: &mut Process, count| {
            wait_until(
                "the clicks to be committed",
                Duration::from_secs(120),
                || {
                    running.assert_running();
                    self.committed() == count
                },
            )
        };
        committed(&mut running, 30);
        // The producer registers version 2 and writes with it.
        self.produce(&["--versions", "2", "--first", "30", "--count", "30"]);
        committed(&mut running, 60);
        let (_, status) = http_get(listen, "/api/status");
        assert!(running.terminate(Duration::from_secs(30)).success());
        let subject = format!("subject `{}-value` version 2", self.topic());
        let log = running.log_text();
        assert!(
            log.contains(&format!(
                "the reader schema follows the subject, now {subject}"
            )),
            "{log}"
        );

        let report = self.verify();
        assert_eq!(report["rows"], 60, "{report}");
        assert_eq!(report["dead_letters"], 0, "{report}");
        assert_eq!(report["types"]["referrer"], "VARCHAR", "{report}");
        assert_eq!(report["types"]["quantity"], "BIGINT", "{report}");
        // Version 1's clicks were written before the change: only `referrer` is missing
        // from their files.
        let lacking = report["files_lacking"].as_object().unwrap();
        assert_eq!(lacking.keys().collect::<Vec<_>>(), ["referrer"], "{report}");
        assert!(lacking["referrer"].as_u64().unwrap() > 0, "{report}");

        let out = self.path().join("out").display().to_string();
        let mut env = self.registry.env();
        env.extend([("WEIR_OUT", out), ("TOPIC", self.topic().to_owned())]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let verified = verify_datasets(config, &env);
        assert!(
            verified.contains(&format!("to {subject} (schema id "))
                && verified.contains("added `referrer` Utf8")
                && verified.contains("changed `quantity` from Int32")
                && verified.contains("to Int64"),
            "{verified}"
        );
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let clicks = status["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["dataset"] == "clicks")
            .unwrap();
        let source = clicks["schema"]["source"].as_str().unwrap();
        assert!(source.starts_with(&subject), "{status}");

        // `weir check --datasets` compares what a config would write with what the dataset
        // recorded: this one, the same; the example's (its own column list), what changes.
        let check = |config: &Path| {
            let mut command = weir();
            command
                .args(["check", "--datasets", "--config"])
                .arg(config)
                .envs(env.iter().copied());
            String::from_utf8(output_ok(&mut command)).unwrap()
        };
        let same = check(config);
        assert!(
            same.contains("the same columns as the columns recorded at entry"),
            "{same}"
        );
        let other = check(&self.codec.example().join("pipeline.toml"));
        assert!(
            other.contains("the next commit records: ") && other.contains("removed `_topic`"),
            "{other}"
        );
    }

    /// Runs the example with small batches each checkpointed, kills it with SIGKILL after
    /// its first checkpoint, and runs it again on the same group until all `total` messages
    /// are committed; returns the report of [`Setup::verify`].
    pub fn killed_between_checkpoints_then_restarted(&self, total: i64) -> serde_json::Value {
        let config = self.checkpointing_every_batch();
        let mut weir = Process::start(
            "weir",
            self.weir_with(&config),
            self.path().join("weir-1.log"),
        );
        wait_until("a first checkpoint", Duration::from_secs(120), || {
            weir.assert_running();
            self.committed() > 0
        });
        weir.child.kill().unwrap();
        weir.child.wait().unwrap();
        assert!(
            self.committed() < total,
            "the kill came after the last checkpoint"
        );
        self.run_until_committed(self.weir(), "weir-2.log", total);
        self.verify()
    }

    /// The example's pipeline, copied with small batches each checkpointed on its own (so
    /// that a kill lands between checkpoints) and a short consumer session (so that a
    /// restarted instance need not wait long for the killed one's).
    fn checkpointing_every_batch(&self) -> PathBuf {
        let copy = self.path().join("example");
        std::fs::create_dir_all(copy.join("sql")).unwrap();
        std::fs::copy(
            self.codec.example().join("sql/clicks.sql"),
            copy.join("sql/clicks.sql"),
        )
        .unwrap();
        let text = std::fs::read_to_string(self.codec.example().join("pipeline.toml")).unwrap();
        let text = format!("{text}\n[source.properties]\n\"session.timeout.ms\" = \"6000\"\n");
        let config = copy.join("pipeline.toml");
        std::fs::write(
            &config,
            text.replace(
                "max_batch_wait = ",
                "max_batch_messages = 40\nmax_batch_wait = ",
            )
            .replace(
                "commit_interval = ",
                "max_buffered = \"1B\"\ncommit_interval = ",
            ),
        )
        .unwrap();
        config
    }
}
