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
use std::time::{Duration, Instant};

use common::docker::*;
use common::records::{consume_from_beginning, produce_round_robin};
use fjord_client::{Admin, Client, ClientConfig, NewTopic};

/// Longest a client operation against the container may take.
const CLIENT_PATIENCE: Duration = Duration::from_secs(60);

const TOPIC: &str = "greetings";
const PARTITIONS: i32 = 2;
const RECORDS: usize = 10;

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

/// The image built by docker/build.sh runs as a non-root user; its health check turns
/// healthy; a client on the host creates a topic, produces (acks=all) and consumes
/// through the published, advertised port; `docker stop` shuts the broker down
/// cleanly (exit 0, "stopped cleanly" in the log); started again on the same volume
/// it still has every record; and a container with a bad setting exits at once,
/// non-zero, with a one-line error as its whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds static binaries and an image (minutes); run by docker/test.sh"]
async fn image_serves_clients_stops_cleanly_and_keeps_its_data() {
    if !daemon_answers() {
        println!("skipped: no docker daemon");
        return;
    }
    let unique = unique("fjord-docker-test");
    let mut resources = DockerResources::default();
    let image = format!("fjord-test:{unique}");
    build_image(&mut resources, &image).await;
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
    let acknowledged = produce_round_robin(&client, TOPIC, PARTITIONS, "hello", RECORDS).await;
    assert_eq!(
        consume_from_beginning(&client, TOPIC, PARTITIONS, RECORDS, CLIENT_PATIENCE).await,
        acknowledged
    );
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
    assert_eq!(
        consume_from_beginning(&client, TOPIC, PARTITIONS, RECORDS, CLIENT_PATIENCE).await,
        acknowledged
    );
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
