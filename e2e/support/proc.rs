//! A child process that cannot outlive its test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tempfile::TempDir;

/// Lines of each process's log printed when a test panics.
const PANIC_TAIL_LINES: usize = 40;

/// A spawned process with stdout+stderr captured to `DIR/NAME.log`.
///
/// Drop sends SIGKILL and reaps it, also while a test unwinds from a panic;
/// then it keeps the directory and prints the log tail (unless a message
/// already quoted it), so the failure report shows what the process said.
pub struct Proc {
    name: String,
    child: Mutex<Child>,
    log_path: PathBuf,
    dir: TempDir,
    tail_quoted: AtomicBool,
}

/// A fresh temp directory for one process's log and files.
pub fn workdir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rudder-e2e-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temp dir for {name}: {e}"))
}

impl Proc {
    pub fn spawn(name: &str, cmd: Command) -> Proc {
        Proc::spawn_in(name, cmd, workdir(name))
    }

    /// Spawns with its log in `dir`, for callers that put files there first
    /// (Envoy's bootstrap). The working directory stays the test's (the
    /// package root), so relative paths in arguments keep working.
    pub fn spawn_in(name: &str, mut cmd: Command, dir: TempDir) -> Proc {
        let log_path = dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("cloning the log file handle");
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Mutex::new(child),
            log_path,
            dir,
            tail_quoted: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// The last `n` log lines under a header naming the process and log file;
    /// meant to be appended to assertion messages.
    pub fn log_tail(&self, n: usize) -> String {
        self.tail_quoted.store(true, Ordering::Relaxed);
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        format!(
            "\n--- last {n} lines of {} (pid {}, {}) ---\n{tail}\n--- end of {} ---",
            self.name,
            self.pid(),
            self.log_path.display(),
            self.name
        )
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits until the log contains `needle`; panics with the log tail on
    /// timeout or when the process exits first.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let found = super::poll(timeout, || {
            self.assert_running(&format!("waiting for {needle:?} in its log"));
            self.log().contains(needle).then_some(())
        });
        if found.is_none() {
            panic!(
                "{} did not log {needle:?} within {timeout:?}{}",
                self.name,
                self.log_tail(30)
            );
        }
    }

    /// Panics (with the log tail) if the process has exited; `doing` says
    /// what the caller was waiting for.
    pub fn assert_running(&self, doing: &str) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} exited ({status}) while {doing}{}",
                self.name,
                self.log_tail(40)
            );
        }
    }

    /// SIGTERM, then waits up to `grace` for a clean exit (SIGKILL after it);
    /// the exit status, `None` when it had to be killed.
    pub fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()) || !self.is_running(),
            "kill -TERM {} ({}) failed",
            self.pid(),
            self.name
        );
        let exited = super::poll(grace, || self.exit_status());
        if exited.is_none() {
            self.kill();
        }
        exited
    }

    /// SIGKILL and reap; idempotent.
    pub fn kill(&self) {
        let mut child = self.child();
        // Err means it already exited; wait() below reaps it either way.
        let _ = child.kill();
        let _ = child.wait();
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        // A poisoned lock only means another thread panicked while holding
        // it; the Child itself is still usable, and cleanup must go on.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            return;
        }
        self.dir.disable_cleanup(true);
        if self.tail_quoted.load(Ordering::Relaxed) {
            eprintln!("{} log kept at {}", self.name, self.log_path.display());
        } else {
            eprintln!("{}", self.log_tail(PANIC_TAIL_LINES));
        }
    }
}
