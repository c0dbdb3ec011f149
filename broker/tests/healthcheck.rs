//! `fjord-broker healthcheck` (the container image's health check) against a real
//! broker process: exit 0 while it is ready, 1 with a one-line reason otherwise.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Instant;

use common::blocking_client::wait_ready;
use common::{BrokerProcess, broker_command, run_to_end};

/// `fjord-broker healthcheck` with `arguments` after the subcommand and `environment`.
fn healthcheck(environment: &[(&str, &str)], arguments: &[&str]) -> Output {
    let mut command: Command = broker_command();
    command.envs(environment.iter().copied());
    command.arg("healthcheck").args(arguments);
    run_to_end(command).expect("fjord-broker runs")
}

/// The exit code, stdout and stderr of a check, with stderr checked to be one line.
fn outcome(output: &Output) -> (Option<i32>, String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.lines().count() <= 1, "one line at most: {stderr:?}");
    (output.status.code(), stdout, stderr)
}

/// A ready broker passes, whether the address is given or comes from the broker's own
/// settings (`FJORD_HTTP_LISTEN` on 0.0.0.0, asked on 127.0.0.1); once the broker has
/// stopped, the check fails with status 1 and says it cannot connect.
#[test]
fn ready_broker_passes_and_stopped_broker_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::spawn(dir.path(), &dir.path().join("data"), &[]);
    let http = broker.addresses_blocking().http_listen;
    wait_ready(http);

    let given = healthcheck(&[], &["--http", &http.to_string()]);
    let (code, stdout, stderr) = outcome(&given);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(stdout.trim(), format!("ready: {http}"));

    let wildcard = format!("0.0.0.0:{}", http.port());
    let from_settings = healthcheck(&[("FJORD_HTTP_LISTEN", &wildcard)], &[]);
    let (code, stdout, stderr) = outcome(&from_settings);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(stdout.trim(), format!("ready: {http}"));

    assert!(broker.terminate_blocking().success(), "{}", broker.log());
    let stopped = healthcheck(&[], &["--http", &http.to_string()]);
    let (code, stdout, stderr) = outcome(&stopped);
    assert_eq!(code, Some(1), "stdout: {stdout}");
    assert!(
        stderr.starts_with(&format!("unhealthy: cannot connect to {http}")),
        "{stderr}"
    );
}

/// A broker that accepts the connection but never answers (frozen) fails the check
/// once `--timeout-ms` has passed, rather than hanging it.
#[test]
fn silent_broker_fails_after_the_timeout() {
    // Listening, never accepting: the kernel completes the connection, nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let output = healthcheck(&[], &["--http", &address, "--timeout-ms", "300"]);
    println!("the check gave up after {:?}", started.elapsed());
    let (code, _, stderr) = outcome(&output);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(&format!("unhealthy: no answer from {address} within 300ms")),
        "{stderr}"
    );
}

/// One check that must fail: its environment, its arguments, how stderr starts.
struct FailingCase {
    environment: &'static [(&'static str, &'static str)],
    arguments: &'static [&'static str],
    stderr_start: &'static str,
}

/// Settings the broker would refuse make the check fail with status 1 (never clap's
/// 2, which Docker reserves) and one line naming the problem; so does a bad address.
#[test]
fn bad_settings_and_addresses_fail_with_one_line() {
    let cases = [
        FailingCase {
            environment: &[("FJORD_MAX_CONNECTIONS", "0")],
            arguments: &[],
            stderr_start: "unhealthy: invalid configuration: invalid setting `max_connections`",
        },
        FailingCase {
            environment: &[("FJORD_MAX_CONNECTIONS", "many")],
            arguments: &[],
            stderr_start: "unhealthy: error: invalid value 'many'",
        },
        FailingCase {
            environment: &[],
            arguments: &["--http", "no-port-here"],
            stderr_start: "unhealthy: cannot resolve no-port-here",
        },
        FailingCase {
            environment: &[],
            arguments: &["--timeout-ms", "soon"],
            stderr_start: "unhealthy: error: invalid value 'soon'",
        },
    ];
    for case in cases {
        let output = healthcheck(case.environment, case.arguments);
        let (code, _, stderr) = outcome(&output);
        let what = format!("{:?} {:?}: {stderr}", case.environment, case.arguments);
        assert_eq!(code, Some(1), "{what}");
        assert!(stderr.starts_with(case.stderr_start), "{what}");
    }
}
