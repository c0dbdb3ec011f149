//! The three-broker compose cluster (docker/compose.yml) under a real Docker daemon:
//! clients on the host and in other containers of its network each reach every broker
//! (the advertised-listeners problem), and a chaos run that kills, freezes and cuts off
//! brokers while producers and consumers run, checked by [`chaos::History`].
//!
//! Ignored by default: the static build takes minutes. `docker/test.sh` runs it. Without
//! a Docker daemon it prints "skipped: no docker daemon" and passes. Every compose
//! project, container, volume and image it creates is removed when it ends, failed or
//! not; nothing leaves the machine (the host ports are published on 127.0.0.1 only).

mod chaos;
mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::docker::*;
use common::records::{consume_from_beginning, produce_round_robin};
use common::run_with_input;
use fjord_client::{Admin, Client, ClientConfig, NewTopic};

/// Longest a client operation against the cluster may take.
const CLIENT_PATIENCE: Duration = Duration::from_secs(90);

/// One run of docker/compose.yml as its own compose project, on host ports of its own.
#[derive(Debug)]
pub struct Compose {
    pub project: String,
    pub image: String,
    /// Host ports of the brokers' external client listeners and HTTP APIs, by node.
    pub ports: [u16; 3],
    pub http_ports: [u16; 3],
    /// The container ids of brokers 1, 2 and 3.
    pub containers: Vec<String>,
    /// The compose network, which other containers join to reach the brokers by name.
    pub network: String,
}

impl Compose {
    /// Compose `up`, on random host ports below the ephemeral range (taken ports make
    /// Docker refuse, and other ones are tried), then waits until every broker is
    /// healthy. Noted in `resources` for `down`.
    pub async fn up(resources: &mut DockerResources, image: &str, unique: &str) -> Self {
        let random = RandomState::new();
        let project = format!("fjord-test-{unique}");
        resources.compose_projects.push(project.clone());
        for attempt in 0u64.. {
            let port = |index: u64| {
                20_000 + (random.hash_one((attempt, index)) % 1_600) as u16 * 6 + index as u16
            };
            let mut compose = Self {
                project: project.clone(),
                image: image.to_owned(),
                ports: [port(0), port(2), port(4)],
                http_ports: [port(1), port(3), port(5)],
                containers: Vec::new(),
                network: String::new(),
            };
            let started = Instant::now();
            let output = compose.run(&["up", "--detach"]).await;
            if output.status.success() {
                for service in ["fjord-1", "fjord-2", "fjord-3"] {
                    let id = compose.run(&["ps", "--quiet", service]).await;
                    let id = String::from_utf8(id.stdout).unwrap().trim().to_owned();
                    assert!(!id.is_empty(), "no container for {service}");
                    compose.containers.push(id);
                }
                compose.network = inspect(
                    &compose.containers[0],
                    "{{range $name, $network := .NetworkSettings.Networks}}{{$name}}{{end}}",
                )
                .await;
                for container in &compose.containers {
                    wait_healthy(container).await;
                }
                println!(
                    "compose project {project} up and healthy in {:?}: clients at {:?}, network {}",
                    started.elapsed(),
                    compose.bootstrap(),
                    compose.network
                );
                return compose;
            }
            let error = String::from_utf8_lossy(&output.stderr).into_owned();
            let port_taken = error.contains("already allocated")
                || error.contains("address already in use")
                || error.contains("port is already");
            assert!(port_taken && attempt < 20, "compose up failed: {error}");
            compose.run(&["down", "--volumes", "--timeout", "1"]).await;
        }
        unreachable!("the loop returns or fails")
    }

    /// Compose with this project's file, name and environment.
    pub async fn run(&self, arguments: &[&str]) -> Output {
        let mut command = compose_command(&self.project);
        command.args(arguments).env("FJORD_IMAGE", &self.image);
        for (index, (port, http_port)) in self.ports.iter().zip(&self.http_ports).enumerate() {
            command.env(format!("FJORD_BROKER_{}_PORT", index + 1), port.to_string());
            command.env(
                format!("FJORD_BROKER_{}_HTTP_PORT", index + 1),
                http_port.to_string(),
            );
        }
        common::run_to_end(command, CONTAINER_PATIENCE).await
    }

    /// The container of broker `node_id`.
    pub fn container(&self, node_id: i32) -> &str {
        &self.containers[(node_id - 1) as usize]
    }

    /// The brokers' external client listeners, as published on the host.
    pub fn bootstrap(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// Runs the `fjord` tool in a container of its own on the compose network.
    pub async fn fjord_in_network(&self, arguments: &[&str], input: &[u8]) -> Output {
        let mut command = Command::new("docker");
        command.args(["run", "--rm", "--network", &self.network]);
        if !input.is_empty() {
            command.arg("--interactive");
        }
        command
            .args(["--entrypoint", "/fjord", &self.image])
            .args(arguments);
        run_with_input(command, input, CLIENT_PATIENCE).await
    }
}

/// Connects with every broker's host address as bootstrap, retrying while none answers.
pub async fn connect(bootstrap: &[String]) -> Client {
    let started = Instant::now();
    loop {
        match Client::connect(ClientConfig::new(bootstrap.to_vec())).await {
            Ok(client) => return client,
            Err(error) => assert!(
                started.elapsed() < CLIENT_PATIENCE,
                "cannot connect to {bootstrap:?}: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The image, built once per test, or `None` (and "skipped") without a daemon.
async fn image(resources: &mut DockerResources, unique: &str) -> Option<String> {
    if !daemon_answers() {
        println!("skipped: no docker daemon");
        return None;
    }
    let image = format!("fjord-test:{unique}");
    build_image(resources, &image).await;
    Some(image)
}

/// `docker compose up` gives three healthy brokers that agree on a controller. A
/// client on the host is given the brokers' published addresses and creates a topic
/// (three replicas), produces and consumes through them; the `fjord` tool in a
/// container on the compose network is given the brokers' names, and reads those
/// records and writes more, which the host client reads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds static binaries and an image (minutes); run by docker/test.sh"]
async fn compose_cluster_serves_clients_on_the_host_and_on_its_network() {
    let unique = unique("fjord-compose-test");
    let mut resources = DockerResources::default();
    let Some(image) = image(&mut resources, &unique).await else {
        return;
    };
    let compose = Compose::up(&mut resources, &image, &unique).await;
    let client = connect(&compose.bootstrap()).await;
    let admin = Admin::new(&client);
    let started = Instant::now();
    let cluster = loop {
        let cluster = admin.describe_cluster().await.unwrap();
        if cluster.controller.is_some() && cluster.brokers.len() == 3 {
            break cluster;
        }
        assert!(started.elapsed() < CLIENT_PATIENCE, "{cluster:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let published: Vec<(i32, String)> = (1..=3).zip(compose.bootstrap()).collect();
    assert_eq!(
        cluster.brokers, published,
        "host clients get host addresses"
    );

    admin
        .create_topics(&[NewTopic::new("orders", 3, 3)])
        .await
        .expect("topic is created");
    let described = admin.describe_topic("orders").await.unwrap();
    for partition in &described.partitions {
        assert_eq!(partition.replicas.len(), 3, "{described:?}");
    }
    produce_round_robin(&client, "orders", 3, "host", 30).await;

    // From a container on the compose network, by the brokers' names.
    let read = compose
        .fjord_in_network(
            &[
                "--bootstrap",
                "fjord-2:9192",
                "consume",
                "orders",
                "--from-beginning",
                "--max-messages",
                "30",
            ],
            b"",
        )
        .await;
    assert!(
        read.status.success(),
        "consume in the network: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let mut values: Vec<String> = String::from_utf8(read.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    values.sort();
    let mut expected: Vec<String> = (0..30).map(|index| format!("host-{index}")).collect();
    expected.sort();
    assert_eq!(values, expected);
    let written = compose
        .fjord_in_network(
            &["--bootstrap", "fjord-3:9192", "produce", "orders"],
            b"net-0\nnet-1\nnet-2\n",
        )
        .await;
    assert!(
        written.status.success(),
        "produce in the network: {}",
        String::from_utf8_lossy(&written.stderr)
    );

    let seen: Vec<String> = consume_from_beginning(&client, "orders", 3, 33, CLIENT_PATIENCE)
        .await
        .into_iter()
        .map(|(_, _, value)| value)
        .collect();
    for value in ["net-0", "net-1", "net-2"] {
        assert!(seen.iter().any(|seen| seen == value), "{value} in {seen:?}");
    }
}

/// The chaos run: producers (acks=all), a consumer and a consumer group run while
/// brokers are killed, frozen, cut off and all restarted at once; then the history is
/// checked (see [`chaos::History::check`]). The report is printed and written as JSON
/// to `target/chaos-report.json` (or `$FJORD_CHAOS_REPORT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds static binaries and an image (minutes); run by docker/test.sh"]
async fn compose_cluster_loses_nothing_acknowledged_under_faults() {
    let unique = unique("fjord-chaos-test");
    let mut resources = DockerResources::default();
    let Some(image) = image(&mut resources, &unique).await else {
        return;
    };
    let compose = Compose::up(&mut resources, &image, &unique).await;
    let report = chaos::run(&compose).await;
    let path = std::env::var_os("FJORD_CHAOS_REPORT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/chaos-report.json"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report.json()).unwrap()).unwrap();
    println!("{}\nreport written to {}", report.summary(), path.display());
    if !report.violations().is_empty() {
        // The brokers' own account, for whoever looks into it.
        for node_id in 1..=3 {
            let file = path.with_file_name(format!("chaos-broker-{node_id}.log"));
            std::fs::write(&file, logs(compose.container(node_id)).await).unwrap();
            println!("broker {node_id}'s log written to {}", file.display());
        }
    }
    assert!(report.violations().is_empty(), "{}", report.summary());
}

/// The checker finds each kind of violation in a made-up history (so that a clean
/// chaos report means something), and counts duplicates apart. Needs no Docker.
#[test]
fn the_chaos_checker_finds_every_kind_of_violation() {
    let started = Instant::now();
    let mut history = chaos::History::default();
    for value in ["a", "b", "c", "d"] {
        history.attempted.insert(value.to_owned());
    }
    history.acknowledged = vec![
        (started, 0, 0, "a".to_owned()),
        (started, 0, 1, "b".to_owned()),
        (started, 0, 2, "c".to_owned()),
    ];
    history.record_seen("consumer", 0, 0, "a".to_owned());
    history.record_seen("consumer", 0, 1, "b".to_owned());
    history.record_seen("consumer", 0, 1, "b".to_owned());
    history.record_seen("member", 0, 0, "a".to_owned());
    history.forget_position("member", 0);
    history.record_seen("member", 0, 0, "a".to_owned());
    history.record_seen("other", 0, 3, "x".to_owned());
    let clean = history.violations.len();
    history.record_seen("final read", 0, 0, "a".to_owned());
    history.record_seen("final read", 0, 1, "d".to_owned());
    let log = [(0, 0), (0, 1), (0, 3), (0, 4)]
        .into_iter()
        .zip(["a", "d", "x", "a"])
        .map(|(at, value)| (at, value.to_owned()))
        .collect();
    let report = chaos::Report::new(history, Vec::new(), log, started);
    let violations = report.violations();
    println!("{}", report.summary());
    let expected = [
        "\"b\" acknowledged at 0-1, where the log holds \"d\"",
        "\"c\" acknowledged at 0-2, which the log does not hold",
        "consumer read offset 1 of partition 0 after offset 1, without a seek",
        "other read \"x\" at 0-3, which no producer sent",
        "two records at 0-1: \"b\" and \"d\" (final read)",
    ];
    for expected in expected {
        assert!(
            violations.iter().any(|violation| violation == expected),
            "missing {expected:?} in {violations:#?}"
        );
    }
    assert_eq!(violations.len(), expected.len(), "{violations:#?}");
    assert_eq!(
        clean, 2,
        "the member's re-read after its seek is no violation"
    );
    assert_eq!(report.duplicates, 1);
}
