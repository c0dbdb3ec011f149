//! Docker for the container tests: every command with a deadline, failing the test
//! with what Docker said; the image built once per test by docker/build.sh; and
//! [`DockerResources`], which removes what a test created even when it fails.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{run_to_end, run_to_end_blocking};

/// Longest one ordinary `docker` command may take.
pub const DOCKER_PATIENCE: Duration = Duration::from_secs(120);
/// Longest docker/build.sh may take (a static build from nothing on a busy machine).
pub const BUILD_PATIENCE: Duration = Duration::from_secs(60 * 60);
/// Longest a container may take to become healthy, or to exit.
pub const CONTAINER_PATIENCE: Duration = Duration::from_secs(120);
/// Everything the test creates in the Docker daemon, removed on drop.
#[derive(Debug, Default)]
pub struct DockerResources {
    /// Compose projects of docker/compose.yml: taken down with their volumes first.
    pub compose_projects: Vec<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub image: Option<String>,
}

impl Drop for DockerResources {
    fn drop(&mut self) {
        for project in &self.compose_projects {
            // A paused container would hold `down` up (nothing paused is no error).
            for (arguments, report) in [
                (&["unpause"][..], false),
                (&["down", "--volumes", "--timeout", "5"][..], true),
            ] {
                let mut command = compose_command(project);
                command.args(arguments);
                match run_to_end_blocking(command, DOCKER_PATIENCE) {
                    Ok(output) if output.status.success() || !report => {}
                    Ok(output) => eprintln!(
                        "cleanup: compose {} of {project} failed: {}",
                        arguments.join(" "),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                    Err(error) => eprintln!("cleanup: {error}"),
                }
            }
        }
        let mut commands = Vec::new();
        for container in &self.containers {
            commands.push(vec!["rm", "--force", "--volumes", container.as_str()]);
        }
        for volume in &self.volumes {
            commands.push(vec!["volume", "rm", "--force", volume.as_str()]);
        }
        if let Some(image) = &self.image {
            commands.push(vec!["image", "rm", "--force", image.as_str()]);
        }
        for arguments in commands {
            let mut command = Command::new("docker");
            command.args(&arguments);
            match run_to_end_blocking(command, DOCKER_PATIENCE) {
                Ok(output) if output.status.success() => {}
                Ok(output) => eprintln!(
                    "cleanup: docker {} failed: {}",
                    arguments.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
                Err(error) => eprintln!("cleanup: {error}"),
            }
        }
    }
}

pub async fn docker(arguments: &[&str]) -> Output {
    let mut command = Command::new("docker");
    command.args(arguments);
    run_to_end(command, DOCKER_PATIENCE).await
}

/// Runs `docker arguments…`, fails the test unless it succeeds, returns its stdout.
pub async fn docker_ok(arguments: &[&str]) -> String {
    let output = docker(arguments).await;
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

pub async fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, container]).await
}

/// What the container wrote to stdout and stderr.
pub async fn logs(container: &str) -> String {
    let output = docker(&["logs", container]).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The host address Docker published `container_port` (e.g. "9193/tcp") on.
pub async fn published(container: &str, container_port: &str) -> String {
    let lines = docker_ok(&["port", container, container_port]).await;
    lines
        .lines()
        .find(|line| line.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("{container_port} not published on 127.0.0.1: {lines}"))
        .to_owned()
}

/// Waits until Docker's health check reports the container healthy; fails the test
/// with its log if it exits or is still not healthy after [`CONTAINER_PATIENCE`].
pub async fn wait_healthy(container: &str) -> Duration {
    let started = Instant::now();
    loop {
        let state = inspect(container, "{{.State.Status}} {{.State.Health.Status}}").await;
        if state == "running healthy" {
            return started.elapsed();
        }
        assert!(
            state.starts_with("running") || state.starts_with("created"),
            "container {container} is {state}; log:\n{}",
            logs(container).await
        );
        assert!(
            started.elapsed() < CONTAINER_PATIENCE,
            "container {container} not healthy within {CONTAINER_PATIENCE:?} ({state}); log:\n{}",
            logs(container).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the container has exited; returns its exit code.
pub async fn wait_exited(container: &str) -> i64 {
    let started = Instant::now();
    loop {
        let state = inspect(container, "{{.State.Status}} {{.State.ExitCode}}").await;
        if let Some(code) = state.strip_prefix("exited ") {
            return code.parse().unwrap();
        }
        assert!(
            started.elapsed() < CONTAINER_PATIENCE,
            "container {container} still {state} after {CONTAINER_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Compose tool for docker/compose.yml as project `project`: the `docker compose`
/// plugin where it is installed, else the standalone `docker-compose`.
pub fn compose_command(project: &str) -> Command {
    let mut version = Command::new("docker");
    version.args(["compose", "version"]);
    let plugin =
        run_to_end_blocking(version, DOCKER_PATIENCE).is_ok_and(|output| output.status.success());
    let mut command = if plugin {
        let mut command = Command::new("docker");
        command.arg("compose");
        command
    } else {
        Command::new("docker-compose")
    };
    let file = workspace().join("docker/compose.yml");
    command
        .args(["--file", file.to_str().unwrap()])
        .args(["--project-name", project]);
    command
}

/// Whether a Docker daemon answers (`docker info`); the container tests pass with
/// "skipped: no docker daemon" when none does.
pub fn daemon_answers() -> bool {
    let mut info = Command::new("docker");
    info.arg("info");
    run_to_end_blocking(info, DOCKER_PATIENCE).is_ok_and(|output| output.status.success())
}

/// A suffix for the names of this run's containers, volumes, images and projects.
pub fn unique(what: &str) -> String {
    format!(
        "{}-{:x}",
        std::process::id(),
        RandomState::new().hash_one(what) & 0xffff_ffff
    )
}

/// The workspace's top directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Builds the image `tag` with docker/build.sh (static binaries, then the image) and
/// notes it in `resources` for removal.
pub async fn build_image(resources: &mut DockerResources, tag: &str) {
    resources.image = Some(tag.to_owned());
    let mut build = Command::new(workspace().join("docker/build.sh"));
    build.arg(tag);
    let started = Instant::now();
    let built = run_to_end(build, BUILD_PATIENCE).await;
    assert!(
        built.status.success(),
        "docker/build.sh failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    println!(
        "docker/build.sh took {:?}:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&built.stdout).trim()
    );
}
