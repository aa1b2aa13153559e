//! Running `python3` scripts beside the tests that share memory with it,
//! every wait bounded and the interpreter killed on failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A `python3 -c SCRIPT ARGS..` process with its stdin, stdout and stderr
/// piped. Dropping it kills the interpreter if it still runs.
pub struct Python {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Receiver<Vec<u8>>,
    /// The interpreter's stderr, once the reader has finished.
    stderr_text: Option<String>,
}

impl Python {
    /// Starts `python3 -c script args..`. If there is no `python3`, prints
    /// `skipped: python3 not found` to stderr and returns `None`: the
    /// caller's test returns at once.
    pub fn start(script: &str, args: &[&str]) -> Option<Python> {
        let spawned = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: python3 not found");
                return None;
            }
            Err(e) => panic!("could not start python3: {e}"),
        };
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, stderr) = mpsc::channel();
        let mut from = child.stderr.take().expect("stderr");
        // The reader ends when every holder of the pipe has closed it: the
        // interpreter and its resource-tracker process, which inherits it.
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = from.read_to_end(&mut all);
            let _ = err_tx.send(all);
        });
        Some(Python {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            stderr_text: None,
        })
    }

    /// The next line the script prints, within `timeout`. Panics (the
    /// interpreter killed) with its stderr if none comes.
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let why = match e {
                    RecvTimeoutError::Timeout => format!("no line within {timeout:?}"),
                    RecvTimeoutError::Disconnected => "its stdout closed".to_string(),
                };
                panic!("python3: {why}; stderr:\n{}", self.stderr_text());
            }
        }
    }

    /// Writes `line` and a newline to the script's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to python3");
        stdin.flush().expect("flush python3's stdin");
    }

    /// Waits up to `timeout` for the script to exit, and for its stderr to
    /// close (so its resource tracker has finished too); panics with its
    /// stderr if it failed or ran over (it is killed then). Returns the
    /// lines it printed that were not read yet.
    pub fn finish(mut self, timeout: Duration) -> Vec<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "python3 did not finish within {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let stderr = match self
            .stderr
            .recv_timeout(remaining.max(Duration::from_secs(5)))
        {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => panic!("python3's stderr stayed open after it exited"),
        };
        assert!(status.success(), "python3 failed ({status}):\n{stderr}");
        self.lines.try_iter().collect()
    }

    /// The interpreter's stderr, after killing it (bounded: 5 s).
    fn stderr_text(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.stderr_text.is_none() {
            self.stderr_text = Some(match self.stderr.recv_timeout(Duration::from_secs(5)) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => "(stderr not closed within 5 s)".to_string(),
            });
        }
        self.stderr_text.clone().unwrap_or_default()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
