//! A measured child process: its CPU time read from `/proc` while it runs, and its CPU time
//! and peak resident memory as the kernel accounts them when it is reaped. Measuring from
//! outside means every binary is measured the same way, an older weir or the Python peer
//! included, and the embedded cluster's threads are not counted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running child process under measurement.
pub struct Measured {
    child: Child,
    name: String,
    /// Lines the child printed on stdout, with when they were read.
    lines: mpsc::Receiver<(Instant, String)>,
    log: std::path::PathBuf,
}

/// What the kernel accounted for a child that has exited.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub at: Instant,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
}

impl Measured {
    /// Starts `command` with stdout read line by line and stderr written to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &std::path::Path) -> anyhow::Result<Self> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            name: name.to_owned(),
            lines,
            log: log.to_owned(),
        })
    }

    /// CPU time (user and system) the process has used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading the CPU time of {}", self.name))?;
        cpu_seconds_of_stat(&stat)
            .with_context(|| format!("reading the CPU time of {} from {stat:?}", self.name))
    }

    /// CPU seconds each kind of the process's threads has used so far: threads are grouped by
    /// name, without a trailing number (`weir-decoder-0` and `weir-decoder-1` are one kind);
    /// the process's first thread is `main`. Threads that have ended are not listed.
    pub fn cpu_by_thread(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let pid = self.child.id();
        let tasks = format!("/proc/{pid}/task");
        let mut kinds = BTreeMap::new();
        let listing =
            std::fs::read_dir(&tasks).with_context(|| format!("listing the threads in {tasks}"))?;
        for task in listing {
            let task = task?;
            // A thread that ends meanwhile is skipped.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let kind = match task.file_name().to_str() == Some(&pid.to_string()) {
                true => Some("main".to_owned()),
                false => thread_kind(&stat),
            };
            if let (Some(kind), Some(seconds)) = (kind, cpu_seconds_of_stat(&stat)) {
                *kinds.entry(kind).or_insert(0.0) += seconds;
            }
        }
        Ok(kinds)
    }

    /// The next line the child prints, waiting at most until `deadline`.
    pub fn next_line(&mut self, deadline: Instant) -> anyhow::Result<(Instant, String)> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => Ok(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("{} said nothing in time{}", self.name, self.log_tail())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("{} stopped{}", self.name, self.log_tail())
            }
        }
    }

    /// Fails if the child has exited already.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early ({status}){}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// Asks the child to stop, as a service manager would.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!(
                "cannot signal {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Waits for the child to exit, at most `timeout`, and reads what the kernel accounted.
    pub fn reap(mut self, timeout: Duration) -> anyhow::Result<Exit> {
        let deadline = Instant::now() + timeout;
        // Poll until it has exited, so that wait4 below does not block past the deadline.
        loop {
            if self.exited()? {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "{} did not exit within {timeout:?}{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = i32::try_from(self.child.id())?;
        let mut status = 0;
        // SAFETY: rusage is plain data the kernel fills in; wait4 reaps only our child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let at = Instant::now();
        if reaped != pid {
            bail!(
                "cannot reap {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok(Exit {
            at,
            cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            // Linux reports kilobytes.
            peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        })
    }

    /// Whether the child has exited, without reaping it (its accounting must stay readable).
    fn exited(&self) -> anyhow::Result<bool> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: waitid with WNOWAIT only looks; siginfo is plain data the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        if unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } != 0 {
            bail!(
                "cannot wait for {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: si_pid is set when a child changed state and left 0 otherwise.
        Ok(unsafe { info.si_pid() } == pid)
    }

    /// The end of the child's log, for errors.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.is_empty() {
            String::new()
        } else {
            format!("; the end of {}:\n{tail}", self.log.display())
        }
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        // A measurement that failed half-way leaves no process behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User plus system CPU seconds from the text of `/proc/PID/stat`.
fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the whole line: utime and stime, in clock ticks.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// A thread's name from the text of its `/proc/PID/task/TID/stat`, without a trailing number
/// or the separator before it.
fn thread_kind(stat: &str) -> Option<String> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let kind = name
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches(['-', '_', ':', '#']);
    Some(if kind.is_empty() { name } else { kind }.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (weir (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        // SAFETY: as above.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(cpu_seconds_of_stat(stat), Some(300.0 / tick));
        assert_eq!(cpu_seconds_of_stat("4242 (weir) S 1"), None);
    }

    #[test]
    fn threads_are_grouped_by_name_without_their_number() {
        let kind = |name: &str| thread_kind(&format!("7 ({name}) S 1 0 0")).unwrap();
        assert_eq!(kind("weir-decoder-0"), "weir-decoder");
        assert_eq!(kind("weir-decoder-11"), "weir-decoder");
        assert_eq!(kind("rdk:broker3"), "rdk:broker");
        assert_eq!(kind("tokio-runtime-w"), "tokio-runtime-w");
        assert_eq!(kind("1234"), "1234");
    }

    #[test]
    fn a_child_is_measured_from_outside() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        // Busy for a while, then says so and exits with a code of its own.
        command.args([
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done; exit 3",
        ]);
        let mut child = Measured::spawn("sh", command, &dir.path().join("sh.log")).unwrap();
        let before = child.cpu_seconds().unwrap();
        let (_, line) = child
            .next_line(Instant::now() + Duration::from_secs(60))
            .unwrap();
        assert_eq!(line, "done");
        let exit = child.reap(Duration::from_secs(60)).unwrap();
        assert_eq!(exit.code, Some(3));
        assert!(exit.cpu_seconds > before, "{exit:?}");
        assert!(exit.peak_rss_bytes > 0, "{exit:?}");
    }
}
