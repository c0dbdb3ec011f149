//! The broker: storage, metadata and listeners wired together, with start-up and
//! graceful shutdown.
//!
//! Start-up order: bind the listeners (their addresses go into metadata) and start
//! serving the admin HTTP API at once, so that `/healthz` and `/readyz` answer during a
//! long recovery; take the data directory, open the metadata log (replaying it), open
//! and recover every partition log, create `__consumer_offsets` if missing and replay it
//! into the group coordinator, then accept client connections. Shutdown reverses
//! it: report not ready, stop accepting, let connections finish their in-flight
//! requests, then flush and close every log.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
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
use crate::metadata::controller::validate_topic_name;
use crate::metadata::topic_config::{self, TopicConfig};
use crate::metadata::{
    Controller, CreateTopic, MetadataImage, PartitionImage, TopicError, TopicImage,
};
use crate::storage::manager::BackgroundIntervals;
use crate::storage::node_identity::NodeIdentity;
use crate::storage::{
    LogManager, PartitionLog, RecoverError, RecoveryAction, RecoveryReport, StorageError,
    SystemClock, TopicPartition,
};
use fjord_protocol::ErrorCode;

/// The running broker's shared state.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub controller: Controller,
    pub logs: Arc<LogManager>,
    /// The consumer group coordinator.
    pub groups: GroupService,
    /// Bytes of requests all connections may hold at once.
    pub request_memory: crate::server::memory::RequestPools,
    /// Bytes of fetched records all responses not yet written may hold at once.
    pub response_memory: Arc<Semaphore>,
    pub started_at: Instant,
    /// A [`Phase`] as its `u8`.
    phase: AtomicU8,
    /// Fetch requests parked until new data or their `max_wait_ms` (long polls).
    pub fetches_waiting: AtomicUsize,
    /// What opening each existing partition log found at start-up.
    recovery_reports: OnceLock<Vec<(TopicPartition, RecoveryReport)>>,
}

/// Where a broker is in its life; the readiness probe reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Partition logs are being opened and recovered.
    Recovering = 0,
    /// Storage recovered, metadata loaded, every listener bound and serving.
    Ready = 1,
    /// Graceful shutdown has begun.
    ShuttingDown = 2,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Recovering,
            1 => Self::Ready,
            _ => Self::ShuttingDown,
        }
    }

    /// Why a broker in this phase is not ready, for the readiness probe.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Recovering => "recovering partition logs",
            Self::Ready => "ready",
            Self::ShuttingDown => "shutting down",
        }
    }
}

/// A started broker: its addresses, and the way to stop it.
#[derive(Debug)]
pub struct BrokerHandle {
    broker: Arc<Broker>,
    client_addr: SocketAddr,
    internal_addr: SocketAddr,
    http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The HTTP server stops last, so that `/readyz` answers 503 (shutting down) for as
    /// long as the rest of the broker is stopping.
    http_shutdown: watch::Sender<bool>,
    http_task: JoinHandle<()>,
}

impl Broker {
    /// Starts a broker and returns once it accepts connections.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<BrokerHandle> {
        config.validate()?;
        let client_listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot bind the client listener to {}", config.listen))?;
        let internal_listener = TcpListener::bind(config.internal_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot bind the internal listener to {}",
                    config.internal_listen
                )
            })?;
        let http_listener = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot bind the HTTP listener to {}", config.http_listen))?;
        let client_addr = client_listener.local_addr()?;
        let internal_addr = internal_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let bound = BoundAddresses {
            listen: client_addr,
            http_listen: http_addr,
            internal_listen: internal_addr,
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

        let opened = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<(LogManager, Controller)> {
                let logs = LogManager::open(&config.data_dir, Arc::new(SystemClock)).with_context(
                    || format!("cannot use data directory {}", config.data_dir.display()),
                )?;
                // Before the controller registers this node: a directory of another
                // node must not get this node's registration.
                let mut identity = NodeIdentity::claim(&config.data_dir, config.node_id)?;
                let controller = Controller::open(&config, &host, client_addr.port())
                    .context("cannot open the metadata log")?;
                identity.confirm_cluster(&config.data_dir, &controller.image().cluster_id)?;
                Ok((logs, controller))
            })
            .await??
        };
        let (logs, controller) = opened;
        logs.set_parallelism(config.recovery_threads);
        let broker = Arc::new(Broker {
            request_memory: crate::server::memory::RequestPools::new(&config),
            response_memory: Arc::new(Semaphore::new(config.response_memory_bytes)),
            groups: GroupService::new(&config),
            config,
            controller,
            logs: Arc::new(logs),
            started_at: Instant::now(),
            phase: AtomicU8::new(Phase::Recovering as u8),
            fetches_waiting: AtomicUsize::new(0),
            recovery_reports: OnceLock::new(),
        });
        http_state.set_broker(broker.clone());
        let recovering = broker.clone();
        let opened = tokio::task::spawn_blocking(move || recovering.open_logs()).await?;
        let loaded = match opened {
            Ok(()) => GroupService::load(&broker).await,
            Err(error) => Err(error),
        };
        if let Err(error) = loaded {
            // Close what was opened cleanly, or the next start would take every log
            // for crashed and scan it again.
            let logs = broker.logs.clone();
            if let Err(close_error) = tokio::task::spawn_blocking(move || logs.close_all()).await? {
                tracing::error!(%close_error, "closing logs after a failed start failed");
            }
            return Err(error);
        }
        tasks.push(tokio::spawn(GroupService::run(
            broker.clone(),
            shutdown_receiver.clone(),
        )));

        tasks.push(tokio::spawn(crate::server::serve(
            client_listener,
            broker.clone(),
            shutdown_receiver.clone(),
        )));
        tasks.push(tokio::spawn(reserved_listener(
            internal_listener,
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
        broker.set_phase(Phase::Ready);
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
            shutdown,
            tasks,
            http_shutdown,
            http_task,
        })
    }

    /// Opens every partition log (recovering them) and creates the missing ones; on a
    /// single node everything in the log is committed, so the high watermark is the end.
    fn open_logs(&self) -> anyhow::Result<()> {
        let image = self.metadata();
        let reports = self.logs.open_all(|partition| {
            image
                .topic(&partition.topic)
                .filter(|topic| topic.partition(partition.partition).is_some())
                .map(|topic| (topic.topic_id, self.topic_config(topic).log))
        })?;
        for (partition, report) in &reports {
            if !report.clean_shutdown {
                tracing::info!(%partition, scanned = report.segments_scanned, truncated_bytes = report.truncated_bytes, "recovered partition after unclean shutdown");
            }
        }
        self.recovery_reports
            .set(reports)
            .expect("start-up opens the logs once");
        // Partitions whose directory is missing are created now; one that cannot be
        // (or must not be: its data is lost) stays offline, and the others start.
        for topic in image.topics.values() {
            let config = self.topic_config(topic).log;
            for partition in &topic.partitions {
                if !partition.replicas.contains(&self.config.node_id) {
                    continue;
                }
                let partition = TopicPartition::new(topic.name.clone(), partition.partition);
                if self.logs.offline_reason(&partition).is_some() {
                    continue; // reported when its log failed to open
                }
                if let Err(error) =
                    self.logs
                        .get_or_create(&partition, topic.topic_id, config.clone())
                {
                    tracing::error!(%partition, %error, "partition is offline");
                    self.logs.mark_offline(&partition, error.to_string());
                }
            }
        }
        for (_, log) in self.logs.logs() {
            log.set_high_watermark(log.log_end_offset());
        }
        let offline = self.logs.offline_partitions();
        if !offline.is_empty() {
            tracing::error!(
                count = offline.len(),
                "partitions are offline until an operator recovers them (POST /v1/topics/{{topic}}/partitions/{{partition}}/recover)"
            );
        }
        Ok(())
    }

    /// Carries out an operator's decision for an offline partition (see
    /// [`LogManager::recover`]); `accept_loss` also bumps the partition's leader epoch.
    pub async fn recover_partition(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        action: RecoveryAction,
    ) -> Result<Arc<PartitionLog>, RecoverError> {
        let broker = self.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let image = broker.metadata();
            let topic_image = image
                .topic(&topic)
                .filter(|image| image.partition(partition).is_some())
                .ok_or_else(|| RecoverError::NotOffline(format!("{topic}-{partition}")))?;
            let config = broker.topic_config(topic_image).log;
            let partition_id = TopicPartition::new(topic.clone(), partition);
            let log =
                broker
                    .logs
                    .recover(&partition_id, topic_image.topic_id, action, config)?;
            if action == RecoveryAction::AcceptLoss
                && let Err(error) = broker.controller.bump_leader_epoch(&topic, partition)
            {
                tracing::error!(partition = %partition_id, %error, "cannot bump the leader epoch of a recreated partition");
            }
            log.set_high_watermark(log.log_end_offset());
            if let Err(error) = broker.logs.write_log_ends() {
                tracing::warn!(%error, "recording log ends failed");
            }
            Ok(log)
        })
        .await
        .expect("partition recovery panicked")
    }

    /// Creates the logs of a new topic's partitions.
    fn create_logs(&self, topic: &TopicImage) -> Result<(), StorageError> {
        let config = self.topic_config(topic).log;
        for partition in &topic.partitions {
            if partition.replicas.contains(&self.config.node_id) {
                let partition = TopicPartition::new(topic.name.clone(), partition.partition);
                self.logs.forget_log_end(&partition);
                self.logs
                    .get_or_create(&partition, topic.topic_id, config.clone())?;
            }
        }
        Ok(())
    }

    /// What opening each partition log that existed at start-up found: whether its
    /// last shutdown was clean, how much was scanned and truncated.
    pub fn recovery_reports(&self) -> &[(TopicPartition, RecoveryReport)] {
        self.recovery_reports.get().map_or(&[], Vec::as_slice)
    }

    /// The current metadata image.
    pub fn metadata(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// Storage recovered, metadata loaded and every listener bound and serving.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// A topic's effective configuration. Its overrides were validated when set.
    pub fn topic_config(&self, topic: &TopicImage) -> TopicConfig {
        topic_config::resolve(&self.config, &topic.config).unwrap_or_else(|error| {
            tracing::error!(topic = %topic.name, %error, "stored topic config no longer validates; using defaults");
            topic_config::resolve(&self.config, &Default::default()).expect("defaults are valid")
        })
    }

    /// Creates a topic and its partition logs.
    pub async fn create_topic(
        self: &Arc<Self>,
        request: CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let broker = self.clone();
        tokio::task::spawn_blocking(move || {
            let topic = broker.controller.create_topic(&request, validate_only)?;
            if !validate_only {
                if let Err(error) = broker.create_logs(&topic) {
                    broker.undo_topic(&topic);
                    return Err(error.into());
                }
                for (_, log) in broker
                    .logs
                    .logs()
                    .into_iter()
                    .filter(|(partition, _)| partition.topic == topic.name)
                {
                    log.set_high_watermark(log.log_end_offset());
                }
            }
            Ok(topic)
        })
        .await
        .expect("topic creation panicked")
    }

    /// Removes a topic whose partition logs could not all be created. Left in the
    /// metadata it would be listed but unusable, and every start would try (and may
    /// fail) to create its logs again.
    fn undo_topic(&self, topic: &TopicImage) {
        if let Err(error) = self.controller.delete_topic(&topic.name) {
            tracing::error!(topic = %topic.name, %error, "cannot undo a topic whose logs failed");
        }
        for partition in &topic.partitions {
            let partition = TopicPartition::new(topic.name.clone(), partition.partition);
            // A log it opened, or a directory a failed open left: the topic's own. A
            // file in the way (the likely cause of the failure) is not touched.
            let directory = self.logs.data_dir().join(partition.to_string());
            if self.logs.get(&partition).is_none() && !directory.is_dir() {
                continue;
            }
            if let Err(error) = self.logs.delete(&partition) {
                tracing::error!(%partition, %error, "cannot remove the log of an undone topic");
            }
        }
    }

    /// Deletes a topic and its data. The committed offsets of consumer groups cannot
    /// be deleted this way.
    pub async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<(), TopicError> {
        if name == OFFSETS_TOPIC {
            return Err(TopicError::Protected(name.to_owned()));
        }
        let broker = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let topic = broker.controller.delete_topic(&name)?;
            for partition in &topic.partitions {
                broker.logs.delete(&TopicPartition::new(
                    topic.name.clone(),
                    partition.partition,
                ))?;
            }
            Ok(())
        })
        .await
        .expect("topic deletion panicked")
    }

    /// Changes a topic's config overrides incrementally (`Some` sets a key, `None`
    /// removes its override; see [`Controller::alter_topic_config`]) and applies the
    /// result to the topic's open logs.
    pub async fn alter_topic_config(
        self: &Arc<Self>,
        name: &str,
        changes: std::collections::BTreeMap<String, Option<String>>,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let broker = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let topic = broker.controller.alter_topic_config(&name, &changes)?;
            let log_config = broker.topic_config(&topic).log;
            for (_, log) in broker
                .logs
                .logs()
                .into_iter()
                .filter(|(partition, _)| partition.topic == topic.name)
            {
                log.set_config(log_config.clone());
            }
            Ok(topic)
        })
        .await
        .expect("config change panicked")
    }

    /// The topic, created on the fly when automatic creation is on.
    pub async fn topic_or_auto_create(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Arc<TopicImage>, ErrorCode> {
        if let Some(topic) = self.metadata().topic(name) {
            return Ok(topic.clone());
        }
        // An invalid name is INVALID_TOPIC whether or not topics are created on demand.
        validate_topic_name(name).map_err(|error| error.error_code())?;
        if !self.config.auto_create_topics {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        match self
            .create_topic(
                CreateTopic {
                    name: name.to_owned(),
                    ..Default::default()
                },
                false,
            )
            .await
        {
            Ok(topic) => Ok(topic),
            Err(TopicError::AlreadyExists(_)) => self
                .metadata()
                .topic(name)
                .cloned()
                .ok_or(ErrorCode::UnknownTopicOrPartition),
            Err(error) => Err(error.error_code()),
        }
    }

    /// The log of a partition this broker leads, creating the topic on the fly if
    /// `auto_create` and the broker's setting allow.
    pub async fn leader_log(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        auto_create: bool,
    ) -> Result<(Arc<TopicImage>, PartitionImage, Arc<PartitionLog>), ErrorCode> {
        if auto_create {
            self.topic_or_auto_create(topic).await?;
        }
        self.leader_log_now(topic, partition)
    }

    /// Like [`Broker::leader_log`], without creating anything.
    pub fn leader_log_now(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<TopicImage>, PartitionImage, Arc<PartitionLog>), ErrorCode> {
        let image = self.metadata();
        let topic = image
            .topic(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?
            .clone();
        let partition = topic
            .partition(partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?
            .clone();
        if partition.leader != self.config.node_id {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let id = TopicPartition::new(topic.name.clone(), partition.partition);
        let log = self.logs.get(&id).ok_or_else(|| {
            // Kafka's answer for a replica whose log directory is offline.
            match self.logs.offline_reason(&id) {
                Some(_) => ErrorCode::StorageError,
                None => ErrorCode::NotLeaderOrFollower,
            }
        })?;
        Ok((topic, partition, log))
    }
}

/// Holds the internal listener's address for clustering; connections are closed.
async fn reserved_listener(listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => if let Ok((_, peer)) = accepted {
                tracing::debug!(%peer, "the internal listener is reserved for clustering; closing connection");
            },
        }
    }
}

impl BrokerHandle {
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
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

    /// Graceful shutdown: stop accepting, finish in-flight requests, flush and
    /// checkpoint every log, and only then stop the HTTP server (whose `/readyz`
    /// answers 503 meanwhile).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.broker.set_phase(Phase::ShuttingDown);
        self.shutdown.send_replace(true);
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "broker task failed during shutdown");
            }
        }
        let logs = self.broker.logs.clone();
        let closed = tokio::task::spawn_blocking(move || logs.close_all()).await;
        self.http_shutdown.send_replace(true);
        if let Err(error) = self.http_task.await {
            tracing::error!(%error, "the HTTP server failed during shutdown");
        }
        closed??;
        tracing::info!("broker stopped cleanly");
        Ok(())
    }
}
