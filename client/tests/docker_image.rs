//! The container image (docker/Dockerfile, built by docker/build.sh) under a real
//! Docker daemon, used from the host through a published port as an operator would:
//! health check, produce and consume with the client library, graceful stop, restart
//! on the same volume, and a bad setting refused at once.
//!
//! Ignored by default: the static build takes minutes. `docker/test.sh` runs it. Without
//! a Docker daemon (`docker info` fails) it prints "skipped: no docker daemon" and
//! passes. Every container, volume and image tag it creates is removed when it ends,
//! failed or not.

mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{run_to_end, run_to_end_blocking};
use fjord_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};

/// Longest one ordinary `docker` command may take.
const DOCKER_PATIENCE: Duration = Duration::from_secs(120);
/// Longest docker/build.sh may take (a static build from nothing on a busy machine).
const BUILD_PATIENCE: Duration = Duration::from_secs(60 * 60);
/// Longest a container may take to become healthy, or to exit.
const CONTAINER_PATIENCE: Duration = Duration::from_secs(120);
/// Longest a client operation against the container may take.
const CLIENT_PATIENCE: Duration = Duration::from_secs(60);

const TOPIC: &str = "greetings";
const PARTITIONS: i32 = 2;
const RECORDS: usize = 10;

/// Everything the test creates in the Docker daemon, removed on drop.
#[derive(Default)]
struct DockerResources {
    containers: Vec<String>,
    volumes: Vec<String>,
    image: Option<String>,
}

impl Drop for DockerResources {
    fn drop(&mut self) {
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

async fn docker(arguments: &[&str]) -> Output {
    let mut command = Command::new("docker");
    command.args(arguments);
    run_to_end(command, DOCKER_PATIENCE).await
}

/// Runs `docker arguments…`, fails the test unless it succeeds, returns its stdout.
async fn docker_ok(arguments: &[&str]) -> String {
    let output = docker(arguments).await;
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, container]).await
}

/// What the container wrote to stdout and stderr.
async fn logs(container: &str) -> String {
    let output = docker(&["logs", container]).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The host address Docker published `container_port` (e.g. "9193/tcp") on.
async fn published(container: &str, container_port: &str) -> String {
    let lines = docker_ok(&["port", container, container_port]).await;
    lines
        .lines()
        .find(|line| line.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("{container_port} not published on 127.0.0.1: {lines}"))
        .to_owned()
}

/// Waits until Docker's health check reports the container healthy; fails the test
/// with its log if it exits or is still not healthy after [`CONTAINER_PATIENCE`].
async fn wait_healthy(container: &str) -> Duration {
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
async fn wait_exited(container: &str) -> i64 {
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

/// Starts the broker container on `volume`, its client port published on a random host
/// port of 127.0.0.1 and advertised as that address (the `docker run -p` setup of
/// docs/operations.md); the HTTP port on a port Docker picks. Docker refuses a host
/// port something else holds, so another random one is tried then. Returns the
/// client address on the host.
async fn run_broker(image: &str, container: &str, volume: &str) -> String {
    let random = RandomState::new();
    for attempt in 0u64.. {
        // Below Linux's ephemeral range, where Docker's own picks (and outgoing
        // connections) take ports from.
        let host_port = 20_000 + random.hash_one(attempt) % 10_000;
        let client_mapping = format!("127.0.0.1:{host_port}:9192");
        let advertised_port = format!("FJORD_ADVERTISED_PORT={host_port}");
        let volume_mount = format!("{volume}:/var/lib/fjord");
        let output = docker(&[
            "run",
            "--detach",
            "--name",
            container,
            "--publish",
            &client_mapping,
            "--publish",
            "127.0.0.1::9193",
            "--volume",
            &volume_mount,
            "--env",
            "FJORD_ADVERTISED_HOST=127.0.0.1",
            "--env",
            &advertised_port,
            image,
        ])
        .await;
        if output.status.success() {
            return format!("127.0.0.1:{host_port}");
        }
        let error = String::from_utf8_lossy(&output.stderr);
        let port_taken =
            error.contains("already allocated") || error.contains("address already in use");
        assert!(port_taken && attempt < 20, "docker run failed: {error}");
        docker_ok(&["rm", "--force", container]).await;
    }
    unreachable!("the loop returns or fails")
}

async fn connect(address: &str) -> Client {
    let started = Instant::now();
    loop {
        match Client::connect(ClientConfig::new([address.to_owned()])).await {
            Ok(client) => return client,
            Err(error) => assert!(
                started.elapsed() < CLIENT_PATIENCE,
                "cannot connect to {address}: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every record of [`TOPIC`] as (partition, offset, value), from the beginning, once
/// `count` have arrived.
async fn consume_all(client: &Client, count: usize) -> Vec<(i32, i64, String)> {
    let mut consumer = Consumer::new(client, ConsumerConfig::default()).unwrap();
    let assignment: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|partition| TopicPartition::new(TOPIC, partition))
        .collect();
    consumer.assign(assignment.clone());
    consumer.seek_to_beginning(&assignment).await.unwrap();
    let started = Instant::now();
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            started.elapsed() < CLIENT_PATIENCE,
            "only {} of {count} records: {records:?}",
            records.len()
        );
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8(record.value.unwrap_or_default().to_vec()).unwrap();
            records.push((record.partition, record.offset, value));
        }
    }
    records.sort();
    records
}

/// The image built by docker/build.sh runs as a non-root user; its health check turns
/// healthy; a client on the host creates a topic, produces (acks=all) and consumes
/// through the published, advertised port; `docker stop` shuts the broker down
/// cleanly (exit 0, "stopped cleanly" in the log); started again on the same volume
/// it still has every record; and a container with a bad setting exits at once,
/// non-zero, with a one-line error as its whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds static binaries and an image (minutes); run by docker/test.sh"]
async fn image_serves_clients_stops_cleanly_and_keeps_its_data() {
    let mut info = Command::new("docker");
    info.arg("info");
    let daemon_answers =
        run_to_end_blocking(info, DOCKER_PATIENCE).is_ok_and(|output| output.status.success());
    if !daemon_answers {
        println!("skipped: no docker daemon");
        return;
    }
    let unique = format!(
        "{}-{:x}",
        std::process::id(),
        RandomState::new().hash_one("fjord-docker-test") & 0xffff_ffff
    );
    let mut resources = DockerResources::default();
    let image = format!("fjord-test:{unique}");
    resources.image = Some(image.clone());

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut build = Command::new(workspace.join("docker/build.sh"));
    build.arg(&image);
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
    assert_eq!(inspect(&image, "{{.Config.User}}").await, "10001:10001");

    let volume = format!("fjord-test-data-{unique}");
    resources.volumes.push(volume.clone());
    docker_ok(&["volume", "create", &volume]).await;
    let container = format!("fjord-test-broker-{unique}");
    resources.containers.push(container.clone());
    let started = Instant::now();
    let address = run_broker(&image, &container, &volume).await;
    let healthy = wait_healthy(&container).await;
    println!(
        "healthy {healthy:?} after docker run ({:?} in all); clients on {address}, HTTP on {}",
        started.elapsed(),
        published(&container, "9193/tcp").await
    );

    let client = connect(&address).await;
    Admin::new(&client)
        .create_topics(&[NewTopic::new(TOPIC, PARTITIONS, 1)])
        .await
        .expect("topic is created");
    let producer = Producer::new(
        &client,
        ProducerConfig {
            acks: Acks::All,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..RECORDS {
        let partition = (index % PARTITIONS as usize) as i32;
        let record = ProducerRecord::new(TOPIC, format!("hello-{index}")).with_partition(partition);
        deliveries.push((index, producer.send(record).await.unwrap()));
    }
    producer.flush().await.unwrap();
    let mut acknowledged = Vec::new();
    for (index, delivery) in deliveries {
        let (partition, offset) = delivery.await.expect("acknowledged");
        acknowledged.push((partition, offset, format!("hello-{index}")));
    }
    acknowledged.sort();
    assert_eq!(consume_all(&client, RECORDS).await, acknowledged);
    producer.close().await.unwrap();
    drop(client);

    let started = Instant::now();
    docker_ok(&["stop", &container]).await;
    let exit_code = wait_exited(&container).await;
    println!("docker stop took {:?}", started.elapsed());
    let log = logs(&container).await;
    assert_eq!(exit_code, 0, "exit code after docker stop; log:\n{log}");
    assert!(log.contains("stopped cleanly"), "log:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in the log:\n{log}"
    );

    docker_ok(&["start", &container]).await;
    let healthy = wait_healthy(&container).await;
    println!("healthy {healthy:?} after docker start on the same volume");
    let client = connect(&address).await;
    assert_eq!(consume_all(&client, RECORDS).await, acknowledged);
    drop(client);

    let bad = format!("fjord-test-bad-{unique}");
    resources.containers.push(bad.clone());
    docker_ok(&[
        "run",
        "--detach",
        "--name",
        &bad,
        "--env",
        "FJORD_MAX_CONNECTIONS=0",
        &image,
    ])
    .await;
    let exit_code = wait_exited(&bad).await;
    let log = logs(&bad).await;
    assert_ne!(exit_code, 0, "log:\n{log}");
    assert_eq!(log.trim().lines().count(), 1, "one line:\n{log}");
    assert!(log.contains("max_connections"), "log:\n{log}");
}
