//! The real `fjord-broker` binary writing its log into a pipe: plain text, without ANSI
//! colour codes (those are for a terminal only).

mod common;

use std::time::{Duration, Instant};

use common::{BrokerProcess, broker_command};

/// Longest the test waits for the broker's start-up line.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = broker_command();
    command
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--internal-listen", "127.0.0.1:0"]);
    let (broker, lines_rx) = BrokerProcess::spawn_command_with_stdout_pipe(dir.path(), command);
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
    drop(broker);
}
