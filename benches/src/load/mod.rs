//! `fjord-bench`, the load generator: producers and consumers against a running broker
//! over real TCP, with throughput and HDR-histogram latency per role and in total.
//!
//! - [`options`]: the command line.
//! - [`wire`]: a raw pipelined connection (the bench builds its own batches).
//! - [`producer`], [`consumer`]: the actors.
//! - [`report`]: results for people and as JSON.

pub mod consumer;
pub mod options;
pub mod producer;
pub mod report;
pub mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fjord_protocol::messages::{
    ConfigEntry, CreateTopic, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, MetadataRequest, MetadataResponse,
};
use fjord_protocol::{ApiKey, ErrorCode};
use indicatif::{ProgressBar, ProgressStyle};

use consumer::ConsumerPlan;
use options::{DurabilityOption, Options, Scenario};
use producer::ProducerPlan;
use report::RoleReport;

/// The outcome of a run.
#[derive(Debug)]
pub struct Outcome {
    pub scenario: Scenario,
    pub topic: String,
    pub roles: Vec<RoleReport>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn print(&self, options: &Options) {
        if options.json {
            let roles: Vec<_> = self
                .roles
                .iter()
                .map(|role| role.to_json(role.elapsed))
                .collect();
            let total = self.total();
            let output = serde_json::json!({
                "scenario": format!("{:?}", self.scenario).to_lowercase(),
                "topic": self.topic,
                "message_size": options.message_size,
                "batch_messages": options.batch_messages,
                "acks": format!("{:?}", options.acks).to_lowercase(),
                "roles": roles,
                "total": total.to_json(self.elapsed),
            });
            println!("{output:#}");
            return;
        }
        println!(
            "scenario {:?} on topic '{}' ({} B messages, {} per batch)",
            self.scenario, self.topic, options.message_size, options.batch_messages
        );
        for role in &self.roles {
            role.print(role.elapsed);
        }
        self.total().print(self.elapsed);
    }

    fn total(&self) -> RoleReport {
        let mut total = RoleReport::new("total", "all roles");
        for role in &self.roles {
            total.merge(role);
        }
        total
    }
}

fn resolve(bootstrap: &str) -> anyhow::Result<SocketAddr> {
    bootstrap
        .to_socket_addrs()
        .with_context(|| format!("invalid --bootstrap `{bootstrap}`"))?
        .next()
        .context("--bootstrap resolves to no address")
}

/// Creates the bench's topic; returns its name and partitions.
async fn prepare_topic(addr: SocketAddr, options: &Options) -> anyhow::Result<(String, Vec<i32>)> {
    let mut connection = wire::connect(addr).await?;
    let name = match &options.topic {
        Some(name) => name.clone(),
        None => {
            let name = format!(
                "bench-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis()
            );
            let durability = match options.durability {
                DurabilityOption::Fsync => "fsync",
                DurabilityOption::Interval => "interval",
            };
            let request = CreateTopicsRequest {
                topics: vec![CreateTopic {
                    name: name.clone(),
                    partitions: options.partitions,
                    replication_factor: options.replication_factor,
                    configs: vec![ConfigEntry {
                        key: "durability".into(),
                        value: durability.into(),
                    }],
                }],
                timeout_ms: 30_000,
                validate_only: false,
            };
            let response: CreateTopicsResponse =
                wire::call(&mut connection, ApiKey::CreateTopics, &request).await?;
            let result = &response.topics[0];
            if result.error_code != ErrorCode::None {
                bail!(
                    "cannot create topic {name}: {}",
                    result
                        .error_message
                        .clone()
                        .unwrap_or_else(|| result.error_code.to_string())
                );
            }
            name
        }
    };
    let metadata: MetadataResponse = wire::call(
        &mut connection,
        ApiKey::Metadata,
        &MetadataRequest {
            topics: Some(vec![name.clone()]),
        },
    )
    .await?;
    let topic = &metadata.topics[0];
    if topic.error_code != ErrorCode::None {
        bail!("topic '{name}': {}", topic.error_code);
    }
    Ok((
        name,
        topic
            .partitions
            .iter()
            .map(|partition| partition.partition)
            .collect(),
    ))
}

/// The address of the broker that leads every one of `partitions` of `topic`, once it
/// knows that it does (a broker applies a new topic a moment after the one that
/// created it). The bench sends everything to one broker, so partitions led by
/// different brokers are refused.
async fn leader_of(
    bootstrap: SocketAddr,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut asked = bootstrap;
    loop {
        let mut connection = wire::connect(asked).await?;
        let metadata: MetadataResponse = wire::call(
            &mut connection,
            ApiKey::Metadata,
            &MetadataRequest {
                topics: Some(vec![topic.to_owned()]),
            },
        )
        .await?;
        let mut leaders: Vec<i32> = metadata
            .topics
            .iter()
            .flat_map(|described| &described.partitions)
            .filter(|partition| partitions.contains(&partition.partition))
            .map(|partition| partition.leader)
            .collect();
        leaders.sort();
        leaders.dedup();
        match leaders.as_slice() {
            [leader] if *leader >= 0 => {
                let broker = metadata
                    .brokers
                    .iter()
                    .find(|broker| broker.node_id == *leader)
                    .with_context(|| format!("leader {leader} is not among the brokers"))?;
                let address = resolve(&format!("{}:{}", broker.host, broker.port))?;
                if address == asked {
                    return Ok(address);
                }
                // Ask the leader itself, until it knows.
                asked = address;
            }
            [_, _, ..] => bail!(
                "the partitions of {topic} are led by brokers {leaders:?}: this bench sends to one broker (use --partitions 1, or a topic led by one broker)"
            ),
            _ => asked = bootstrap,
        }
        if Instant::now() > deadline {
            bail!("no broker leads {topic} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_topic(addr: SocketAddr, topic: &str) -> anyhow::Result<()> {
    let mut connection = wire::connect(addr).await?;
    let request = DeleteTopicsRequest {
        names: vec![topic.to_owned()],
        timeout_ms: 30_000,
    };
    let response: DeleteTopicsResponse =
        wire::call(&mut connection, ApiKey::DeleteTopics, &request).await?;
    match response.topics.first() {
        Some(result) if result.error_code != ErrorCode::None => {
            bail!("cannot delete topic {topic}: {}", result.error_code)
        }
        _ => Ok(()),
    }
}

/// Partitions for actor `index` of `actors`: round-robin, and every actor gets at
/// least one (actors beyond the partition count share).
fn share(partitions: &[i32], index: usize, actors: usize) -> Vec<i32> {
    let mine: Vec<i32> = partitions
        .iter()
        .copied()
        .skip(index)
        .step_by(actors)
        .collect();
    if mine.is_empty() {
        vec![partitions[index % partitions.len()]]
    } else {
        mine
    }
}

fn split(total: u64, index: usize, actors: usize) -> u64 {
    total / actors as u64 + u64::from((index as u64) < total % actors as u64)
}

pub async fn run(options: Options) -> anyhow::Result<Outcome> {
    options.validate().map_err(anyhow::Error::msg)?;
    let bootstrap = resolve(&options.bootstrap)?;
    let (topic, partitions) = prepare_topic(bootstrap, &options).await?;
    let addr = leader_of(bootstrap, &topic, &partitions).await?;
    let epoch = Instant::now();
    let messages = if options.duration.is_some() {
        u64::MAX
    } else {
        options.messages
    };
    let scenario = options.scenario;

    if scenario == Scenario::Consume && options.topic.is_none() {
        // Fill the fresh topic first; only the reading is measured.
        let fill = ProgressBar::hidden();
        run_producers(
            &options,
            addr,
            &topic,
            &partitions,
            options.messages,
            None,
            None,
            epoch,
            &fill,
        )
        .await?;
    }
    let total_expected = match scenario {
        Scenario::Produce | Scenario::Consume => messages,
        Scenario::ProduceConsume | Scenario::Latency => messages.saturating_mul(2),
    };
    let progress = progress_bar(&options, total_expected);
    let deadline = options.duration.map(|duration| Instant::now() + duration);
    let rate = match scenario {
        Scenario::Latency => Some(options.rate.unwrap_or(50_000.0)),
        _ => options.rate,
    };
    let started = Instant::now();
    let producing = matches!(
        scenario,
        Scenario::Produce | Scenario::ProduceConsume | Scenario::Latency
    );
    let consuming = matches!(
        scenario,
        Scenario::Consume | Scenario::ProduceConsume | Scenario::Latency
    );
    // Consumers stop once the producers are done and they have caught up with the
    // high watermark of each of their partitions.
    let producers_done = Arc::new(AtomicBool::new(!producing));
    let mut consumers = Vec::new();
    if consuming {
        for index in 0..options.consumers {
            let plan = ConsumerPlan {
                addr,
                topic: topic.clone(),
                partitions: share(&partitions, index, options.consumers),
                producers_done: producers_done.clone(),
                message_size: options.message_size,
                read_stamps: scenario == Scenario::Latency,
                epoch,
                progress: progress.clone(),
            };
            consumers.push(tokio::spawn(consumer::run(plan)));
        }
    }
    let mut roles = Vec::new();
    if producing {
        let produced = run_producers(
            &options,
            addr,
            &topic,
            &partitions,
            messages,
            deadline,
            rate,
            epoch,
            &progress,
        )
        .await;
        producers_done.store(true, Ordering::Release);
        roles.push(produced?);
    }
    if consuming {
        let mut consumed = RoleReport::new(
            "consumer",
            if scenario == Scenario::Latency {
                "end to end"
            } else {
                "per fetch"
            },
        );
        for consumer in consumers {
            consumed.merge(&consumer.await??);
        }
        roles.push(consumed);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    if options.topic.is_none() && !options.keep_topic {
        delete_topic(bootstrap, &topic).await?;
    }
    Ok(Outcome {
        scenario,
        topic,
        roles,
        elapsed,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_producers(
    options: &Options,
    addr: SocketAddr,
    topic: &str,
    partitions: &[i32],
    messages: u64,
    deadline: Option<Instant>,
    rate: Option<f64>,
    epoch: Instant,
    progress: &ProgressBar,
) -> anyhow::Result<RoleReport> {
    let mut tasks = Vec::new();
    for index in 0..options.producers {
        let plan = ProducerPlan {
            addr,
            topic: topic.to_owned(),
            partitions: share(partitions, index, options.producers),
            messages: if messages == u64::MAX {
                u64::MAX
            } else {
                split(messages, index, options.producers)
            },
            deadline,
            batch_messages: options.batch_messages,
            message_size: options.message_size,
            acks: options.acks.code(),
            in_flight: options.in_flight,
            rate: rate.map(|rate| rate / options.producers as f64),
            stamp_values: options.scenario == Scenario::Latency,
            epoch,
            progress: progress.clone(),
        };
        tasks.push(tokio::spawn(producer::run(plan)));
    }
    let mut total = RoleReport::new(
        "producer",
        if rate.is_some() {
            "from intended send"
        } else {
            "per request"
        },
    );
    for task in tasks {
        total.merge(&task.await??);
    }
    Ok(total)
}

fn progress_bar(options: &Options, total: u64) -> ProgressBar {
    if options.json {
        return ProgressBar::hidden();
    }
    let bar = if total == u64::MAX || options.duration.is_some() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} msgs ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
