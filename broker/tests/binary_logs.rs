//! The real `fjord-broker` binary writing its log into a pipe: plain text, without ANSI
//! colour codes (those are for a terminal only).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest the test waits for the broker's start-up line.
const PATIENCE: Duration = Duration::from_secs(60);

/// Kills and reaps the broker when dropped, so a failing test leaves no process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already exited is fine; the wait reaps it either way.
        if let Err(error) = self.0.kill() {
            eprintln!("kill fjord-broker: {error}");
        }
        if let Err(error) = self.0.wait() {
            eprintln!("wait for fjord-broker: {error}");
        }
    }
}

#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fjord-broker"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--internal-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    while let Ok(line) = lines_rx.recv_timeout(PATIENCE) {
        let done = line.contains("broker started");
        lines.push(line);
        if done {
            break;
        }
    }
    println!("start-up logged after {:?}", started.elapsed());
    assert!(
        lines.iter().any(|line| line.contains("broker started")),
        "the broker logged its start: {lines:?}"
    );
    assert!(
        lines.iter().all(|line| !line.contains('\u{1b}')),
        "no ANSI escape in the piped log: {lines:?}"
    );
    assert!(
        lines.iter().any(|line| line.contains(" INFO ")),
        "{lines:?}"
    );
    drop(child);
    reader.join().unwrap();
}
