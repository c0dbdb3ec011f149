//! Helpers shared by the client's integration tests: running the built `fjord` tool as
//! a guarded child process. Nothing from the environment that could change its
//! behaviour (`FJORD_*`) is inherited, its output is piped (never the test's own), every
//! run has a deadline, and a process still running when its guard is dropped (the test
//! failed, or timed out) is killed and reaped.

#![allow(dead_code)]

pub mod docker;
pub mod records;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest one `fjord` run may take before the test fails.
pub const CLI_PATIENCE: Duration = Duration::from_secs(60);

/// The built `fjord` binary with no `FJORD_*` variable inherited.
pub fn fjord_command(arguments: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fjord"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FJORD_") {
            command.env_remove(name);
        }
    }
    command.args(arguments).stdin(Stdio::null());
    command
}

/// A child process, killed and reaped when dropped while still running.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn spawn(mut command: Command) -> Self {
        Self {
            child: Some(command.spawn().expect("the process starts")),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    /// Sends `signal` (e.g. "TERM", "INT") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit by itself, up to `patience`; fails the test (and
    /// the guard kills the process) otherwise.
    pub async fn wait(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                eprintln!("cannot kill process {}: {error}", child.id());
            }
            if let Err(error) = child.wait() {
                eprintln!("cannot reap process {}: {error}", child.id());
            }
        }
    }
}

/// Reads a pipe to its end on a thread of its own (not a runtime thread).
fn read_to_end(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Err(error) = pipe.read_to_end(&mut bytes) {
            eprintln!("reading a child's output failed: {error}");
        }
        bytes
    })
}

/// Runs the built `fjord` binary to its end (at most [`CLI_PATIENCE`]), collecting
/// its output.
pub async fn fjord(arguments: Vec<String>) -> Output {
    run_to_end(fjord_command(&arguments), CLI_PATIENCE).await
}

/// Runs `command` (e.g. `docker`) to its end, at most `patience`, with its output piped
/// and collected; fails the test (and the guard kills the process) after that.
pub async fn run_to_end(command: Command, patience: Duration) -> Output {
    run_with_input(command, &[], patience).await
}

/// [`run_to_end`] with `input` written to the command's stdin, which is then closed.
pub async fn run_with_input(mut command: Command, input: &[u8], patience: Duration) -> Output {
    command
        .stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(command);
    let writer = guard.child_mut().stdin.take().map(|mut stdin| {
        let input = input.to_vec();
        std::thread::spawn(move || {
            if let Err(error) = stdin.write_all(&input) {
                eprintln!("writing a child's input failed: {error}");
            }
        })
    });
    let stdout = read_to_end(guard.child_mut().stdout.take().unwrap());
    let stderr = read_to_end(guard.child_mut().stderr.take().unwrap());
    let status = guard.wait(patience).await;
    if let Some(writer) = writer {
        writer.join().expect("stdin writer");
    }
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// [`run_to_end`] without a runtime (for `Drop` guards): `Err` instead of a failed
/// test when the command cannot start or outlives `patience` (it is killed then).
pub fn run_to_end_blocking(mut command: Command, patience: Duration) -> Result<Output, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .map_err(|error| format!("cannot start {command:?}: {error}"))?;
    let mut guard = ChildGuard { child: Some(child) };
    let stdout = read_to_end(guard.child_mut().stdout.take().unwrap());
    let stderr = read_to_end(guard.child_mut().stderr.take().unwrap());
    let deadline = std::time::Instant::now() + patience;
    let status = loop {
        match guard.child_mut().try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => return Err(format!("{command:?} did not finish within {patience:?}")),
            Err(error) => return Err(format!("cannot wait for {command:?}: {error}")),
        }
    };
    guard.child = None;
    Ok(Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    })
}

/// A long-running `fjord` (e.g. `consume --follow`) whose stdout and stderr lines
/// arrive on channels as they are written. Killed and reaped when dropped.
pub struct FjordProcess {
    pub guard: ChildGuard,
    lines: mpsc::UnboundedReceiver<String>,
    stderr_lines: mpsc::UnboundedReceiver<String>,
    /// Every byte of stdout, once the pipe closed.
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    /// Every byte of stderr, once the pipe closed.
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// Sends each line of `pipe` (lossy UTF-8, without its line end) on `sender`, on a
/// thread of its own, and returns every byte read once the pipe closes.
fn forward_lines(
    pipe: impl Read + Send + 'static,
    sender: mpsc::UnboundedSender<String>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut all = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    eprintln!("reading a child's output failed: {error}");
                    break;
                }
            }
            all.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            // The receiver may be gone (the test stopped reading); keep collecting.
            sender.send(text.to_owned()).ok();
        }
        all
    })
}

impl FjordProcess {
    pub fn spawn(arguments: &[String]) -> Self {
        let mut command = fjord_command(arguments);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(command);
        let (sender, lines) = mpsc::unbounded_channel();
        let stdout = forward_lines(guard.child_mut().stdout.take().unwrap(), sender);
        let (sender, stderr_lines) = mpsc::unbounded_channel();
        let stderr = forward_lines(guard.child_mut().stderr.take().unwrap(), sender);
        Self {
            guard,
            lines,
            stderr_lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// The next line of stdout, or `None` at its end; fails the test after `patience`.
    pub async fn next_line(&mut self, patience: Duration) -> Option<String> {
        tokio::time::timeout(patience, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no output line within {patience:?}"))
    }

    /// The next line of stderr, or `None` at its end; fails the test after `patience`.
    pub async fn next_stderr_line(&mut self, patience: Duration) -> Option<String> {
        tokio::time::timeout(patience, self.stderr_lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no stderr line within {patience:?}"))
    }

    /// Waits for the exit; returns its status, the stdout lines not yet read and all
    /// of stderr.
    pub async fn finish(mut self, patience: Duration) -> (ExitStatus, Vec<String>, String) {
        let status = self.guard.wait(patience).await;
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(patience).await {
            rest.push(line);
        }
        let stderr = self.stderr.take().unwrap().join().expect("stderr reader");
        (status, rest, String::from_utf8_lossy(&stderr).into_owned())
    }

    /// Waits for the exit; returns its status, every byte of stdout (also the lines
    /// already read), the stdout lines not yet read and the stderr lines not yet read.
    pub async fn finish_with_stdout(
        mut self,
        patience: Duration,
    ) -> (ExitStatus, String, Vec<String>, Vec<String>) {
        let status = self.guard.wait(patience).await;
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(patience).await {
            rest.push(line);
        }
        let mut stderr = Vec::new();
        while let Some(line) = self.next_stderr_line(patience).await {
            stderr.push(line);
        }
        let stdout = self.stdout.take().unwrap().join().expect("stdout reader");
        self.stderr.take().unwrap().join().expect("stderr reader");
        (
            status,
            String::from_utf8(stdout).expect("stdout is UTF-8"),
            rest,
            stderr,
        )
    }
}

pub fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "fjord failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// An address that refuses connections for as long as the returned socket lives: it is
/// bound (so no other test can take the port) but not listening.
pub fn refusing_address() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}
