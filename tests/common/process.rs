//! Child processes: the weir binary and the Python side, killed when a test ends.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{repo, tool};

/// Runs tests/py/weirtest.py with `args`; panics with its output unless it succeeds.
pub fn weirtest(args: &[&str]) -> String {
    let output = Command::new(tool("WEIR_TEST_PYTHON"))
        .arg(repo().join("tests/py/weirtest.py"))
        .args(args)
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "weirtest.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The weir binary. Tests run side by side, so each serves its telemetry on a port of its own.
pub fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.env("WEIR_LISTEN", "127.0.0.1:0");
    command
}

/// Runs `command` to the end; panics with its stderr unless it succeeds. Returns stdout.
pub fn output_ok(command: &mut Command) -> Vec<u8> {
    let output = command.output().expect("running a command");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A child process that is killed when the test ends, whatever happens.
pub struct Process {
    pub child: Child,
    pub name: &'static str,
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr going to `log`.
    pub fn start(name: &'static str, mut command: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("creating a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { child, name, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("polling a child") {
            panic!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM", timeout)
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit.
    pub fn interrupt(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("INT", timeout)
    }

    fn signal(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
        self.wait_for_exit(&format!("SIG{signal}"), timeout)
    }

    /// Waits for the process to exit of itself, or after `what`; panics with the log if it
    /// has not within `timeout`.
    pub fn wait_for_exit(&mut self, what: &str, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling a child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} of {what}:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (e.g. "STOP", "CONT") to the process.
pub fn signal(process: &Process, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(process.child.id().to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} failed");
}
