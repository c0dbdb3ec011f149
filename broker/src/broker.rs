//! The broker: storage, metadata and listeners wired together, with start-up and
//! graceful shutdown.
//!
//! This is the composition root: it opens storage and the metadata, builds the handles
//! the services share (see [`crate::topics`]) and hands each service the ones it uses
//! ([`crate::server::Handles`], [`crate::http::state::ApiHandles`], the
//! [`GroupService`]'s). No service imports this module back.
//!
//! Start-up order: bind the listeners (their addresses go into metadata) and start
//! serving the admin HTTP API at once, so that `/healthz` and `/readyz` answer during a
//! long recovery; take the data directory, start this broker's metadata quorum member on
//! the internal listener (a quorum of one, leading at once, its image rebuilt from its
//! snapshot and log), migrate a pre-Raft metadata log, register the broker with the
//! active controller (with an incarnation id drawn at start) and heartbeat until it is
//! unfenced, open and recover every partition log, create `__consumer_offsets` if
//! missing and replay it into the group coordinator, then accept client connections.
//! Shutdown reverses it: report not ready, ask the controller for a controlled shutdown
//! (its leaderships move away), stop accepting, let connections finish their in-flight
//! requests, flush and close every log, then stop the quorum member.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::bound_addresses::BoundAddresses;
use crate::config::BrokerConfig;
use crate::group::{GroupService, OFFSETS_TOPIC};
use crate::http::HttpState;
use crate::http::state::ApiHandles;
use crate::internal::ByKind;
use crate::internal::frame::kind;
use crate::lifecycle::{Lifecycle, Phase};
use crate::metadata::controller_endpoint::ControllerEndpoint;
use crate::metadata::front_end::BrokerRegistration;
use crate::metadata::heartbeats::{
    BrokerHeartbeats, HeartbeatTiming, HeartbeatsHandle, LocalController,
};
use crate::metadata::{
    Controller, CreateTopic, Endpoint, Listener, MetadataImage, MetadataLog, PartitionImage,
    TopicError, TopicImage,
};
use crate::replication::fetch_service::FetchService;
use crate::replication::{Proposal, Replicas};
use crate::server::{Handles, ServerSettings};
use crate::storage::manager::{BackgroundIntervals, FoundDir};
use crate::storage::node_identity::NodeIdentity;
use crate::storage::{LogManager, PartitionLog, RecoveryReport, SystemClock, TopicPartition};
use crate::topics::{MetadataView, Partitions, Reconciler, TopicAdmin};
use fjord_protocol::ErrorCode;

/// The running broker: the services it started, and the handles they share.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub logs: Arc<LogManager>,
    /// The partition logs this broker holds, found through the metadata.
    pub partitions: Partitions,
    /// Topic creation, deletion, reconfiguration and partition recovery.
    pub admin: TopicAdmin,
    /// This broker's member of the metadata quorum, for its status.
    pub metadata_log: Arc<MetadataLog>,
    /// The consumer group coordinator.
    pub groups: Arc<GroupService>,
    /// Makes the partition logs follow the metadata image.
    reconciler: Reconciler,
    /// Bytes of requests all connections may hold at once.
    pub request_memory: crate::server::memory::RequestPools,
    /// Bytes of fetched records all responses not yet written may hold at once.
    pub response_memory: Arc<Semaphore>,
    pub started_at: Instant,
    lifecycle: Lifecycle,
    /// Fetch requests parked until new data or their `max_wait_ms` (long polls).
    pub fetches_waiting: Arc<AtomicUsize>,
    /// What opening each existing partition log found at start-up.
    recovery_reports: OnceLock<Vec<(TopicPartition, RecoveryReport)>>,
}

/// The broker's listeners, bound.
#[derive(Debug)]
pub struct Listeners {
    pub client: TcpListener,
    pub internal: TcpListener,
    pub http: TcpListener,
    /// The second client listener (`external_listen`), if any.
    pub external: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `listen`, `internal_listen` and `http_listen`.
    pub async fn bind(config: &BrokerConfig) -> anyhow::Result<Self> {
        let client = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot bind the client listener to {}", config.listen))?;
        let internal = TcpListener::bind(config.internal_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot bind the internal listener to {}",
                    config.internal_listen
                )
            })?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot bind the HTTP listener to {}", config.http_listen))?;
        let external = match config.external_listener()? {
            Some(external) => {
                Some(TcpListener::bind(external.listen).await.with_context(|| {
                    format!(
                        "cannot bind the external client listener to {}",
                        external.listen
                    )
                })?)
            }
            None => None,
        };
        Ok(Self {
            client,
            internal,
            http,
            external,
        })
    }
}

/// A started broker: its addresses, and the way to stop it.
#[derive(Debug)]
pub struct BrokerHandle {
    broker: Arc<Broker>,
    client_addr: SocketAddr,
    internal_addr: SocketAddr,
    http_addr: SocketAddr,
    external_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// This broker's heartbeats to the active controller; `None` when the metadata
    /// could not be written at start (see [`Broker::start`]).
    heartbeats: Option<HeartbeatsHandle>,
    /// The HTTP server stops last, so that `/readyz` answers 503 (shutting down) for as
    /// long as the rest of the broker is stopping.
    http_shutdown: watch::Sender<bool>,
    http_task: JoinHandle<()>,
}

impl Broker {
    /// Starts a broker and returns once it accepts connections.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<BrokerHandle> {
        config.validate()?;
        let listeners = Listeners::bind(&config).await?;
        Self::start_on(config, listeners).await
    }

    /// [`start`](Self::start) on listeners already bound (the settings' addresses are
    /// not bound again): a cluster's voters must know each other's internal addresses
    /// before any of them starts.
    pub async fn start_on(
        config: BrokerConfig,
        listeners: Listeners,
    ) -> anyhow::Result<BrokerHandle> {
        config.validate()?;
        let Listeners {
            client: client_listener,
            internal: internal_listener,
            http: http_listener,
            external: external_listener,
        } = listeners;
        let client_addr = client_listener.local_addr()?;
        let internal_addr = internal_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let external_addr = match &external_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let external_advertised = match (&external_listener, config.external_listener()?) {
            (Some(_), Some(external)) => Some(Endpoint {
                host: external.advertised_host,
                port: external.advertised_port,
            }),
            (Some(_), None) => anyhow::bail!(
                "an external client listener was given, but external_listen is not set"
            ),
            (None, _) => None,
        };
        let bound = BoundAddresses {
            listen: client_addr,
            http_listen: http_addr,
            internal_listen: internal_addr,
            external_listen: external_addr,
        };
        bound
            .report(&config.bound_addresses_file)
            .with_context(|| {
                format!(
                    "cannot write the bound addresses to {}",
                    config.bound_addresses_file.display()
                )
            })?;
        crate::metrics::install();
        crate::storage::open_files::open_segment_files()
            .set_capacity(crate::resources::segment_files_max(&config));

        // Every task stops when `shutdown` turns true, or when it is dropped because
        // start-up failed half way.
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mut tasks = Vec::new();
        let http_state = HttpState::starting();
        let (http_shutdown, http_shutdown_receiver) = watch::channel(false);
        let http_task = tokio::spawn(crate::http::serve(
            http_listener,
            http_state.clone(),
            http_shutdown_receiver,
            Duration::from_millis(config.shutdown_timeout_ms),
        ));
        tasks.push(tokio::spawn(crate::metrics::run_upkeep(
            shutdown_receiver.clone(),
        )));
        let host = if config.advertised_host.is_empty() {
            client_addr.ip().to_string()
        } else {
            config.advertised_host.clone()
        };
        // Behind a port mapping clients reach the listener on another port than it bound.
        let port = match config.advertised_port {
            0 => client_addr.port(),
            port => port,
        };

        let opened = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<(LogManager, NodeIdentity)> {
                // Taking the data directory comes first: two brokers must never open
                // the same metadata quorum files.
                let logs = LogManager::open(&config.data_dir, Arc::new(SystemClock)).with_context(
                    || format!("cannot use data directory {}", config.data_dir.display()),
                )?;
                // Before the controller registers this node: a directory of another
                // node must not get this node's registration.
                let identity = NodeIdentity::claim(&config.data_dir, config.node_id)?;
                Ok((logs, identity))
            })
            .await??
        };
        let (logs, identity) = opened;
        // Other brokers call this node's controller (when it is the active one) on the
        // internal listener from the start; the calls wait until it exists.
        let controller_endpoint = Arc::new(ControllerEndpoint::new());
        // Followers fetch from this node's partition leaders there too, once they exist.
        let fetch_service = Arc::new(FetchService::new());
        let services = Arc::new(ByKind::new(
            kind::REPLICATION,
            fetch_service.clone(),
            controller_endpoint.clone(),
        ));
        let metadata_log = Arc::new(
            MetadataLog::start_serving(&config, internal_listener, services)
                .await
                .context("cannot start the metadata quorum")?,
        );
        // This process: a restart is a new incarnation of the node.
        let incarnation_id = uuid::Uuid::new_v4();
        let controller =
            match start_controller(&config, &metadata_log, identity, incarnation_id).await {
                Ok(controller) => Arc::new(controller),
                Err(error) => {
                    metadata_log.shutdown().await;
                    return Err(error);
                }
            };
        controller_endpoint.serve(&controller);
        tasks.push(tokio::spawn(controller.clone().run_broker_sessions(
            Duration::from_millis(config.broker_heartbeat_interval_ms),
            shutdown_receiver.clone(),
        )));
        // Other brokers reach the internal listener at its bound address, or, when it is
        // bound to every interface, at the host clients are given.
        let internal_address = if internal_addr.ip().is_unspecified() {
            format!("{host}:{}", internal_addr.port())
        } else {
            internal_addr.to_string()
        };
        let held = match held_replicas(&logs, &controller.image()) {
            Ok(held) => {
                report_lost_replicas(&controller.image(), config.node_id, &held);
                held
            }
            Err(error) => {
                metadata_log.shutdown().await;
                return Err(error);
            }
        };
        let registration = BrokerRegistration {
            node_id: config.node_id,
            incarnation_id,
            host: host.clone(),
            port,
            internal_address,
            rack: Some(config.broker_rack.trim().to_owned()).filter(|rack| !rack.is_empty()),
            external: external_advertised,
            held_replicas: Some(held),
        };
        // A controller-only node does not register: it holds no partitions and
        // coordinates no groups.
        let heartbeats = if !config.roles().broker {
            None
        } else {
            match BrokerHeartbeats::start(
                Arc::new(LocalController(controller.clone())),
                registration,
                HeartbeatTiming::from_config(&config),
                controller.subscribe(),
            )
            .await
            {
                Ok(heartbeats) => Some(heartbeats),
                // On a full disk the new registration cannot be written. A broker that the
                // metadata shows serving at this address (its previous process, stopped
                // gracefully) still starts and serves reads, as before registrations had
                // incarnations; its metadata stays read-only until it is restarted.
                Err(error)
                    if error.is_metadata_unwritable()
                        && serves_at(&controller.image(), config.node_id, &host, port) =>
                {
                    tracing::error!(
                        %error,
                        "cannot record this process's registration; serving under the previous process's until restarted"
                    );
                    None
                }
                Err(error) => {
                    metadata_log.shutdown().await;
                    return Err(error.into());
                }
            }
        };
        logs.set_parallelism(config.recovery_threads);
        let logs = Arc::new(logs);
        let metadata = MetadataView::new(controller.subscribe());
        let partitions = Partitions::new(metadata, logs.clone(), Arc::new(config.clone()));
        let reconciler = Reconciler::new(partitions.clone());
        fetch_service.serve(partitions.replicas());
        if let Some(proposals) = partitions.replicas().take_proposals() {
            tasks.push(tokio::spawn(propose_isr_changes(
                proposals,
                partitions.replicas().clone(),
                controller.clone(),
                shutdown_receiver.clone(),
            )));
        }
        tasks.push(tokio::spawn(partitions.replicas().clone().run_ticks(
            Duration::from_millis((config.replica_lag_ms / 4).max(25)),
            shutdown_receiver.clone(),
        )));
        let admin = TopicAdmin::new(
            controller,
            partitions.clone(),
            reconciler.clone(),
            config.auto_create_topics,
            [OFFSETS_TOPIC.to_owned()],
        );
        let groups = Arc::new(GroupService::new(
            &config,
            partitions.clone(),
            admin.clone(),
        ));
        let broker = Arc::new(Broker {
            groups,
            reconciler,
            request_memory: crate::server::memory::RequestPools::new(&config),
            response_memory: Arc::new(Semaphore::new(config.response_memory_bytes)),
            config,
            logs,
            partitions,
            admin,
            metadata_log,
            started_at: Instant::now(),
            lifecycle: Lifecycle::recovering(),
            fetches_waiting: Arc::new(AtomicUsize::new(0)),
            recovery_reports: OnceLock::new(),
        });
        http_state.set_handles(ApiHandles {
            partitions: broker.partitions.clone(),
            admin: broker.admin.clone(),
            groups: broker.groups.clone(),
            metadata_log: broker.metadata_log.clone(),
            lifecycle: broker.lifecycle.clone(),
            started_at: broker.started_at,
        });
        let recovering = broker.clone();
        let opened = tokio::task::spawn_blocking(move || recovering.open_logs()).await?;
        let loaded = match opened {
            Ok(image) => {
                // From here on the reconciler follows every image published.
                tasks.push(tokio::spawn(
                    broker
                        .reconciler
                        .clone()
                        .run(image, shutdown_receiver.clone()),
                ));
                broker.groups.load().await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = loaded {
            // Close what was opened cleanly, or the next start would take every log
            // for crashed and scan it again.
            let logs = broker.logs.clone();
            if let Err(close_error) = tokio::task::spawn_blocking(move || logs.close_all()).await? {
                tracing::error!(%close_error, "closing logs after a failed start failed");
            }
            broker.metadata_log.shutdown().await;
            return Err(error);
        }
        tasks.push(tokio::spawn(
            broker.groups.clone().run(shutdown_receiver.clone()),
        ));

        let server = Handles {
            settings: ServerSettings::new(&broker.config),
            partitions: broker.partitions.clone(),
            admin: broker.admin.clone(),
            groups: broker.groups.clone(),
            request_memory: broker.request_memory.clone(),
            response_memory: broker.response_memory.clone(),
            fetches_waiting: broker.fetches_waiting.clone(),
        };
        let mut client_listeners = vec![(client_listener, Listener::Primary)];
        client_listeners.extend(external_listener.map(|listener| (listener, Listener::External)));
        tasks.push(tokio::spawn(crate::server::serve(
            client_listeners,
            Arc::new(server),
            shutdown_receiver.clone(),
        )));
        let background = BackgroundIntervals {
            retention_check: std::time::Duration::from_millis(
                broker.config.log_retention_check_interval_ms,
            ),
            ..BackgroundIntervals::default()
        };
        let mut stop = shutdown_receiver.clone();
        tasks.push(tokio::spawn(broker.logs.clone().run_background(
            background,
            async move {
                let _stopped = stop.wait_for(|stop| *stop).await;
            },
        )));
        broker.lifecycle.set(Phase::Ready);
        tracing::info!(
            node_id = broker.config.node_id,
            %client_addr,
            %http_addr,
            data_dir = %broker.config.data_dir.display(),
            cluster_id = %broker.metadata().cluster_id,
            "broker started"
        );
        Ok(BrokerHandle {
            broker,
            client_addr,
            internal_addr,
            http_addr,
            external_addr,
            shutdown,
            tasks,
            heartbeats,
            http_shutdown,
            http_task,
        })
    }

    /// Opens every partition log (recovering them) and creates the missing ones; on a
    /// single node everything in the log is committed, so the high watermark is the end.
    /// Returns the image the logs now follow.
    fn open_logs(&self) -> anyhow::Result<Arc<MetadataImage>> {
        let image = self.metadata();
        let node_id = self.config.node_id;
        let reports = self.logs.open_all(|partition| {
            let Some(topic) = image.topic(&partition.topic) else {
                return FoundDir::Unknown;
            };
            match topic.partition(partition.partition) {
                Some(held) if held.replicas.contains(&node_id) => FoundDir::Held {
                    topic_id: topic.topic_id,
                    config: self.partitions.topic_config(topic).log,
                },
                Some(_) => FoundDir::NotHeld {
                    topic_id: topic.topic_id,
                },
                None => FoundDir::Unknown,
            }
        })?;
        for (partition, report) in &reports {
            if !report.clean_shutdown {
                tracing::info!(%partition, scanned = report.segments_scanned, truncated_bytes = report.truncated_bytes, "recovered partition after unclean shutdown");
            }
        }
        self.recovery_reports
            .set(reports)
            .expect("start-up opens the logs once");
        // The reconciler takes this broker from nothing to the image, as it takes it
        // from any image to the next: partitions whose directory is missing are
        // created; one that cannot be (or must not be: its data is lost) stays offline,
        // and the others start.
        self.reconciler.reconcile(&MetadataImage::default(), &image);
        let offline = self.logs.offline_partitions();
        if !offline.is_empty() {
            tracing::error!(
                count = offline.len(),
                "partitions are offline until an operator recovers them (POST /v1/topics/{{topic}}/partitions/{{partition}}/recover)"
            );
        }
        Ok(image)
    }

    /// What opening each partition log that existed at start-up found: whether its
    /// last shutdown was clean, how much was scanned and truncated.
    pub fn recovery_reports(&self) -> &[(TopicPartition, RecoveryReport)] {
        self.recovery_reports.get().map_or(&[], Vec::as_slice)
    }

    /// The current metadata image.
    pub fn metadata(&self) -> Arc<MetadataImage> {
        self.partitions.metadata().current()
    }

    /// Creates a topic and its partition logs (see [`TopicAdmin::create_topic`]).
    pub async fn create_topic(
        &self,
        request: CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        self.admin.create_topic(request, validate_only).await
    }

    /// The log of a partition this broker leads (see [`Partitions::leader_log`]).
    pub fn leader_log_now(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<TopicImage>, PartitionImage, Arc<PartitionLog>), ErrorCode> {
        self.partitions.leader_log(topic, partition)
    }
}

/// The partitions whose directory is in the data directory, by topic id: the one the
/// directory records, or else (a directory of an earlier release) the one its name has
/// in `image`. Any other replica the metadata gives this node has lost its data.
fn held_replicas(
    logs: &LogManager,
    image: &MetadataImage,
) -> anyhow::Result<BTreeSet<(uuid::Uuid, i32)>> {
    let found = logs
        .partition_dirs_found()
        .context("cannot list the partition directories")?;
    Ok(found
        .into_iter()
        .filter_map(|(partition, recorded)| {
            let topic_id =
                recorded.or_else(|| image.topic(&partition.topic).map(|topic| topic.topic_id))?;
            Some((topic_id, partition.partition))
        })
        .collect())
}

/// Says which replicas of replicated partitions this node had, by the metadata it
/// kept, but found no directory of: their data is lost here (a replaced disk, a
/// deleted directory). Each is recreated empty and copies the log from its leader; the
/// controller keeps it out of the in-sync set and the eligible leaders until then. (A
/// partition of one replica has no other copy: it goes offline instead.)
fn report_lost_replicas(image: &MetadataImage, node_id: i32, held: &BTreeSet<(uuid::Uuid, i32)>) {
    for topic in image.topics.values() {
        for partition in &topic.partitions {
            if partition.replicas.len() > 1
                && partition.replicas.contains(&node_id)
                && !held.contains(&(topic.topic_id, partition.partition))
            {
                tracing::error!(
                    topic = %topic.name,
                    partition = partition.partition,
                    "the partition directory is missing: this replica's data is lost; it is recreated empty and copies the log from the partition's leader, and neither leads nor counts as in sync until it has caught up"
                );
                metrics::counter!("fjord_replication_lost_replicas_total").increment(1);
            }
        }
    }
}

/// Migrates a data directory of the pre-Raft release, then starts the controller
/// (which initialises a new cluster) and records the cluster in the data directory's
/// identity.
/// Takes leaders' in-sync set changes to the controller, each on a task of its own:
/// one retried (every 500 ms, while its leader still leads) until the controller
/// answers, one refused outright reported back so that its leader may propose again.
/// A change made from a stale state is not reported: the metadata brings the newer
/// state, and with it the leader's next decision.
async fn propose_isr_changes(
    mut proposals: tokio::sync::mpsc::UnboundedReceiver<Proposal>,
    replicas: Arc<Replicas>,
    controller: Arc<Controller>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let proposal = tokio::select! {
            proposal = proposals.recv() => match proposal {
                Some(proposal) => proposal,
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let replicas = replicas.clone();
        let controller = controller.clone();
        tokio::spawn(async move {
            loop {
                match controller.alter_partition(proposal.change.clone()).await {
                    Ok(_) => return,
                    Err(TopicError::StalePartitionState(reason)) => {
                        tracing::debug!(partition = %proposal.partition, reason, "in-sync set change made from a stale state");
                        return;
                    }
                    Err(
                        error @ (TopicError::PartitionChangeRefused(_)
                        | TopicError::UnknownTopic(_)),
                    ) => {
                        tracing::warn!(partition = %proposal.partition, %error, "in-sync set change refused");
                        replicas.proposal_refused(&proposal);
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(partition = %proposal.partition, %error, "in-sync set change not recorded yet; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if !replicas.still_leads(&proposal) {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn start_controller(
    config: &BrokerConfig,
    metadata_log: &Arc<MetadataLog>,
    mut identity: NodeIdentity,
    incarnation_id: uuid::Uuid,
) -> anyhow::Result<Controller> {
    crate::metadata::migration::migrate(&config.data_dir, metadata_log).await?;
    let controller = Controller::start(config, metadata_log.clone(), incarnation_id)
        .await
        .context("cannot initialise the cluster's metadata")?;
    let data_dir = config.data_dir.clone();
    let cluster_id = controller.image().cluster_id.clone();
    tokio::task::spawn_blocking(move || identity.confirm_cluster(&data_dir, &cluster_id)).await??;
    Ok(controller)
}

/// Whether the image shows `node_id` registered unfenced at `host:port`.
fn serves_at(image: &MetadataImage, node_id: i32, host: &str, port: u16) -> bool {
    image
        .brokers
        .get(&node_id)
        .is_some_and(|broker| !broker.fenced && broker.host == host && broker.port == port)
}

impl BrokerHandle {
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The external client listener's bound address, if it has one.
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external_addr
    }

    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The address of the admin HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Graceful shutdown: a controlled shutdown (the controller moves this broker's
    /// leaderships to other in-sync replicas, for at most half of
    /// `shutdown_timeout_ms`; a single broker has none and keeps them), stop
    /// accepting, finish in-flight requests, flush and checkpoint every log, and only
    /// then stop the HTTP server (whose `/readyz` answers 503 meanwhile).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.broker.lifecycle.set(Phase::ShuttingDown);
        if let Some(heartbeats) = &mut self.heartbeats {
            let limit = Duration::from_millis(self.broker.config.shutdown_timeout_ms / 2);
            let asked = Instant::now();
            if heartbeats.controlled_shutdown(limit).await {
                tracing::info!(
                    elapsed_ms = asked.elapsed().as_millis(),
                    "controlled shutdown done"
                );
            } else {
                tracing::warn!(
                    limit_ms = limit.as_millis(),
                    "the controller did not confirm the controlled shutdown in time; stopping anyway"
                );
            }
        }
        self.shutdown.send_replace(true);
        self.broker.partitions.replicas().fetchers().stop();
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "broker task failed during shutdown");
            }
        }
        let logs = self.broker.logs.clone();
        let closed = tokio::task::spawn_blocking(move || logs.close_all()).await;
        self.broker.metadata_log.shutdown().await;
        self.http_shutdown.send_replace(true);
        if let Err(error) = self.http_task.await {
            tracing::error!(%error, "the HTTP server failed during shutdown");
        }
        closed??;
        tracing::info!("broker stopped cleanly");
        Ok(())
    }
}
