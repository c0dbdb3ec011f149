//! Helpers shared by the client's integration tests: running the built `fjord` tool.

use std::process::Output;

/// Runs the built `fjord` binary off the async workers.
pub async fn fjord(arguments: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(&arguments)
            .env_remove("FJORD_BOOTSTRAP")
            .output()
            .expect("fjord runs")
    })
    .await
    .unwrap()
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
