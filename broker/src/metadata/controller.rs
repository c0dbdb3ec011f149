//! The controller: the only writer of metadata, and the shell around the pure
//! [front end](super::front_end). For each request it takes its lock, asks the front end
//! for the records (with real ids and this broker's limits), proposes them to the
//! [metadata log](super::metadata_log) and waits until they are applied, then answers
//! from the image they made.
//!
//! The lock is held from the front end's decision until the records are applied, so that
//! no two requests are decided against the same image. On a single broker this is the
//! only controller; with several, only the node whose quorum member leads (the active
//! controller) decides: every other node [forwards](super::forwarding) its requests
//! there, retrying with a backoff while no leader is known or the leader moves, and
//! answers once its own image holds the change.
//!
//! It also keeps the brokers' sessions ([`BrokerSessions`]): brokers register and
//! heartbeat here (this broker too, through [`super::heartbeats`]), and a task of the
//! broker's ticks it so that brokers whose sessions expire are fenced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::broker_sessions::{
    BrokerSessions, HeartbeatAnswer, MembershipCallError, MonotonicClock, Registered, SessionClock,
    applied_index,
};
use super::forwarding::{ControllerCall, ControllerClient, ControllerReply, ForwardError};
use super::front_end::{self, BrokerRegistration, Inputs, IsrChange, MetadataRequest, Randomness};
pub use super::front_end::{CreateTopic, TOPIC_PARTITIONS_MAX, TopicError, validate_topic_name};
use super::image::{MetadataImage, TopicImage};
use super::membership::{Heartbeat, MembershipError};
use super::metadata_log::{MetadataLog, ProposeError};
use super::position::LogPosition;
use super::records::MetadataRecord;
use crate::config::BrokerConfig;

/// The controller's randomness: ids and placement offsets from the operating system's
/// random source (through `uuid`'s version 4 ids).
struct SystemRandomness;

impl Randomness for SystemRandomness {
    fn new_id(&mut self) -> uuid::Uuid {
        uuid::Uuid::new_v4()
    }

    fn below(&mut self, bound: usize) -> usize {
        // 122 random bits: the bias of the remainder is far below anything placement
        // could notice.
        (uuid::Uuid::new_v4().as_u128() % bound as u128) as usize
    }
}

/// Applies records to a copy of the image as if they were the next entry, so that the
/// front end can decide the next request of a batch, or a validate-only request, against
/// the image they would make. The position is only the copy's; the log gives the real
/// one.
fn apply_preview(image: &mut MetadataImage, records: &[MetadataRecord]) {
    let next = image.applied_position().map_or(
        LogPosition {
            term: 0,
            leader: 0,
            index: 1,
        },
        |position| LogPosition {
            index: position.index + 1,
            ..position
        },
    );
    image
        .apply_batch(next, records)
        .expect("the next index always follows the applied position");
}

/// First wait before trying a forwarded call again; it doubles up to
/// [`FORWARD_BACKOFF_MAX`].
const FORWARD_BACKOFF_MIN: Duration = Duration::from_millis(50);
const FORWARD_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long start-up waits for the quorum to give the cluster its identity (a leader
/// must be elected, which needs a majority of the voters running).
const INITIALIZE_WAIT_MAX: Duration = Duration::from_secs(120);

/// A change and the images before and after it.
type Applied = (Arc<MetadataImage>, Arc<MetadataImage>);

#[derive(Debug)]
pub struct Controller {
    node_id: i32,
    defaults: BrokerConfig,
    /// Most partitions this broker may hold.
    partitions_max: usize,
    log: Arc<MetadataLog>,
    /// Held from a request's decision until its records are applied.
    deciding: Mutex<()>,
    /// The brokers' sessions, kept while this node's quorum member leads.
    sessions: BrokerSessions,
    /// Calls to the active controller when it is another node.
    forwarding: ControllerClient,
}

impl Controller {
    /// Takes over the metadata log and initialises a new cluster (a log without a
    /// cluster id). `incarnation_id` is this process's: its broker registers with it
    /// (see [`super::heartbeats`]), like every other broker.
    pub async fn start(
        config: &BrokerConfig,
        log: Arc<MetadataLog>,
        incarnation_id: uuid::Uuid,
    ) -> Result<Self, TopicError> {
        Self::start_with_clock(config, log, incarnation_id, Arc::new(MonotonicClock::new())).await
    }

    /// [`start`](Self::start) with the clock broker sessions are timed by.
    pub async fn start_with_clock(
        config: &BrokerConfig,
        log: Arc<MetadataLog>,
        incarnation_id: uuid::Uuid,
        clock: Arc<dyn SessionClock>,
    ) -> Result<Self, TopicError> {
        let sessions = BrokerSessions::new(
            config.node_id,
            incarnation_id,
            config.broker_session_timeout_ms,
            config.auto_leader_rebalance,
            log.leadership(),
            clock,
        );
        let controller = Self {
            node_id: config.node_id,
            defaults: config.clone(),
            partitions_max: crate::resources::partitions_max(config),
            forwarding: ControllerClient::new(log.connect_timeout()),
            log,
            deciding: Mutex::new(()),
            sessions,
        };
        if let Some(address) = controller.log.learner_address() {
            controller.join_as_learner(address.to_owned()).await?;
        }
        controller.initialize_cluster().await?;
        Ok(controller)
    }

    /// A broker-only node asks the voters, in turn, to add it as a learner, until the
    /// leader has (or [`INITIALIZE_WAIT_MAX`] has passed); a voter that does not lead
    /// names the one that does, which is asked next.
    async fn join_as_learner(&self, address: String) -> Result<(), TopicError> {
        let started = Instant::now();
        let call = ControllerCall::AddLearner {
            node_id: self.node_id,
            address,
        };
        let timeout = self.log.propose_timeout();
        let mut backoff = FORWARD_BACKOFF_MIN;
        loop {
            let mut last_error = None;
            let mut asked = Vec::new();
            let mut candidates = self.log.voter_ids();
            while let Some(voter) = candidates.pop() {
                if asked.contains(&voter) {
                    continue;
                }
                asked.push(voter);
                match self.call_controller(voter, &call, timeout).await {
                    Ok(ControllerReply::LearnerAdded(Ok(()))) => {
                        tracing::info!(
                            voter,
                            "joined the metadata quorum as a learner (a broker-only node)"
                        );
                        return Ok(());
                    }
                    Ok(ControllerReply::LearnerAdded(Err(ProposeError::NotLeader {
                        leader: Some(leader),
                        ..
                    }))) => candidates.push(leader.node_id),
                    Ok(ControllerReply::LearnerAdded(Err(error))) => {
                        last_error = Some(TopicError::Metadata(error));
                    }
                    Ok(other) => {
                        last_error = Some(unreachable_controller(voter, &format!("{other:?}")));
                    }
                    Err(error) => last_error = Some(unreachable_controller(voter, &error.reason())),
                }
            }
            let error = last_error.unwrap_or(TopicError::Metadata(ProposeError::NotLeader {
                node_id: self.node_id,
                leader: None,
            }));
            if started.elapsed() >= INITIALIZE_WAIT_MAX || !is_retriable(&error) {
                return Err(error);
            }
            tracing::warn!(%error, waited_ms = started.elapsed().as_millis(), "waiting to join the metadata quorum as a learner (a majority of controller_quorum_voters must be running)");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(FORWARD_BACKOFF_MAX);
        }
    }

    /// [`join_as_learner`](Self::join_as_learner), answered by this node when it is the
    /// active controller.
    pub(crate) async fn add_learner_here(
        &self,
        node_id: i32,
        address: String,
    ) -> Result<(), ProposeError> {
        self.log.add_learner(node_id, address).await
    }

    /// Gives a new cluster its identity, waiting (at most [`INITIALIZE_WAIT_MAX`]) for
    /// a quorum leader to do it at; nothing to do once the image has one.
    async fn initialize_cluster(&self) -> Result<(), TopicError> {
        let started = Instant::now();
        loop {
            if !self.image().cluster_id.is_empty() {
                return Ok(());
            }
            match self.submit(&[MetadataRequest::InitializeCluster]).await {
                Ok(_) => return Ok(()),
                Err(error) if is_retriable(&error) && started.elapsed() < INITIALIZE_WAIT_MAX => {
                    tracing::warn!(
                        %error,
                        waited_ms = started.elapsed().as_millis(),
                        "waiting for the metadata quorum to initialize the cluster (a majority of controller_quorum_voters must be running)"
                    );
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.log.image()
    }

    /// A receiver of the current image and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.log.images()
    }

    /// Asks the front end for the records of `requests` against `image`, each request
    /// seeing the records of those before it; returns them and the image they would
    /// make.
    fn records_for(
        &self,
        image: &MetadataImage,
        requests: &[MetadataRequest],
    ) -> Result<(Vec<MetadataRecord>, MetadataImage), TopicError> {
        // Only this broker's budget is known here; in a cluster every broker will
        // report its own.
        let partition_budgets = BTreeMap::from([(self.defaults.node_id, self.partitions_max)]);
        let leaving = self.sessions.leaving(image);
        let mut after = image.clone();
        let mut records = Vec::new();
        for request in requests {
            // Every registered broker that is not shutting down; the front end skips
            // those the image shows fenced (their sessions expired, or they have not
            // caught up yet).
            let live_brokers: BTreeSet<i32> = after
                .brokers
                .keys()
                .copied()
                .filter(|node_id| !leaving.contains(node_id))
                .collect();
            let inputs = Inputs {
                defaults: &self.defaults,
                live_brokers: &live_brokers,
                partition_budgets: &partition_budgets,
                replication_factor_max: crate::config::REPLICATION_FACTOR_MAX,
            };
            let more = front_end::records_for(request, &after, &inputs, &mut SystemRandomness)?;
            apply_preview(&mut after, &more);
            records.extend(more);
        }
        Ok((records, after))
    }

    /// Who leads the quorum now, as this node knows it.
    fn active_controller(&self) -> Option<i32> {
        self.log.leadership().leader()
    }

    /// Carries out requests as one entry of the log, here when this node is the
    /// active controller and at the active controller otherwise, and returns the image
    /// before and after (this node's, which holds the change). While no leader is
    /// known, the leader moves or cannot be reached, it tries again with a backoff
    /// until the propose timeout has passed.
    async fn submit(&self, requests: &[MetadataRequest]) -> Result<Applied, TopicError> {
        let before = self.image();
        let timeout = self.log.propose_timeout();
        let deadline = Instant::now() + timeout;
        let mut backoff = FORWARD_BACKOFF_MIN;
        loop {
            let retry = match self.active_controller() {
                Some(leader) if leader == self.node_id => match self.submit_here(requests).await {
                    Err(TopicError::Metadata(error @ ProposeError::NotLeader { .. })) => {
                        TopicError::Metadata(error)
                    }
                    done => return done,
                },
                Some(leader) => match self.forward_submit(leader, requests, deadline).await {
                    Ok(index) => {
                        let after = self.wait_applied(index, deadline, timeout).await?;
                        return Ok((before, after));
                    }
                    Err(Forwarded::Final(error)) => return Err(error),
                    Err(Forwarded::Retry(error)) => error,
                },
                None => TopicError::Metadata(ProposeError::NotLeader {
                    node_id: self.node_id,
                    leader: None,
                }),
            };
            if Instant::now() + backoff >= deadline {
                return Err(retry);
            }
            tracing::debug!(error = %retry, retry_in_ms = backoff.as_millis(), "metadata change not carried out yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(FORWARD_BACKOFF_MAX);
        }
    }

    /// Sends requests to the active controller `leader`; its answer is the index the
    /// change was applied at.
    async fn forward_submit(
        &self,
        leader: i32,
        requests: &[MetadataRequest],
        deadline: Instant,
    ) -> Result<u64, Forwarded> {
        let call = ControllerCall::Submit(requests.to_vec());
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.call_controller(leader, &call, timeout).await {
            Ok(ControllerReply::Submitted(Ok(index))) => Ok(index),
            // It stopped leading, or is stopping: the next leader will take it.
            Ok(ControllerReply::Submitted(Err(TopicError::Metadata(
                error @ (ProposeError::NotLeader { .. } | ProposeError::ShutDown),
            )))) => Err(Forwarded::Retry(TopicError::Metadata(error))),
            Ok(ControllerReply::Submitted(Err(error))) => Err(Forwarded::Final(error)),
            Ok(ControllerReply::NotReady) => Err(Forwarded::Retry(unreachable_controller(
                leader,
                "its controller is still starting",
            ))),
            Ok(other) => Err(Forwarded::Final(unreachable_controller(
                leader,
                &format!("it answered a change with {other:?}"),
            ))),
            Err(error) => Err(Forwarded::Retry(unreachable_controller(
                leader,
                &error.reason(),
            ))),
        }
    }

    /// Sends a call to the controller of node `leader`.
    async fn call_controller(
        &self,
        leader: i32,
        call: &ControllerCall,
        timeout: Duration,
    ) -> Result<ControllerReply, ForwardError> {
        let Some(address) = self.log.voter_address(leader) else {
            return Err(ForwardError::BadReply {
                node_id: leader,
                reason: "it is not among controller_quorum_voters".to_owned(),
            });
        };
        self.forwarding.call(leader, &address, call, timeout).await
    }

    /// Waits until this node has applied the log up to `index` (a change the active
    /// controller made), at most until `deadline`.
    async fn wait_applied(
        &self,
        index: u64,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Arc<MetadataImage>, TopicError> {
        let mut images = self.subscribe();
        let applied = tokio::time::timeout_at(
            deadline,
            images.wait_for(|image| applied_index(image) >= index),
        )
        .await;
        match applied {
            Ok(Ok(image)) => Ok(image.clone()),
            Ok(Err(_)) => Err(TopicError::Metadata(ProposeError::ShutDown)),
            Err(_) => Err(TopicError::Metadata(ProposeError::TimedOut { timeout })),
        }
    }

    /// Carries out requests as one entry of the log, on this node, which must be the
    /// active controller, and returns the image before and after. The lock is held from
    /// the front end's decision until the entry is applied, so two concurrent requests
    /// (two creations of one name, two config changes of one topic) cannot both be
    /// decided against the same image.
    pub(crate) async fn submit_here(
        &self,
        requests: &[MetadataRequest],
    ) -> Result<Applied, TopicError> {
        let _deciding = self.deciding.lock().await;
        let before = self.image();
        let (records, _) = self.records_for(&before, requests)?;
        if records.is_empty() {
            return Ok((before.clone(), before));
        }
        let unclean = front_end::leadership::unclean_elections(&before, &records);
        let after = self.log.propose(records).await?;
        if unclean > 0 {
            tracing::warn!(
                partitions = unclean,
                "unclean leader election: leaders taken from outside the in-sync sets; acknowledged records they lack are lost"
            );
            metrics::counter!("fjord_controller_unclean_leader_elections_total")
                .increment(unclean as u64);
        }
        Ok((before, after))
    }

    /// Creates a topic (or only checks that it could be created).
    pub async fn create_topic(
        &self,
        request: &CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let create = MetadataRequest::CreateTopic(request.clone());
        let after = if validate_only {
            let (_, after) = self.records_for(&self.image(), std::slice::from_ref(&create))?;
            Arc::new(after)
        } else {
            self.submit(std::slice::from_ref(&create)).await?.1
        };
        topic_of(&after, &request.name)
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        self.submit(&[MetadataRequest::DeleteTopic {
            name: name.to_owned(),
        }])
        .await?;
        Ok(())
    }

    /// Bumps a partition's leader epoch, keeping its leader and in-sync set: its log
    /// was recreated after a loss, and followers and consumers that check epochs must
    /// see that the history changed.
    pub async fn bump_leader_epoch(&self, name: &str, partition: i32) -> Result<i32, TopicError> {
        let (_, after) = self
            .submit(&[MetadataRequest::BumpLeaderEpoch {
                name: name.to_owned(),
                partition,
            }])
            .await?;
        topic_of(&after, name)?
            .partition(partition)
            .map(|partition| partition.leader_epoch)
            .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))
    }

    /// Records a partition leader's in-sync set change, if the partition is still as
    /// the leader saw it (see [`MetadataRequest::AlterPartition`]); returns the image
    /// that holds it.
    pub async fn alter_partition(
        &self,
        change: IsrChange,
    ) -> Result<Arc<MetadataImage>, TopicError> {
        let (_, after) = self
            .submit(&[MetadataRequest::AlterPartition(change)])
            .await?;
        Ok(after)
    }

    /// Changes a topic's config overrides incrementally, like Kafka's
    /// IncrementalAlterConfigs: a key with a value sets that override, a key with `None`
    /// removes it (the broker default applies again), keys not named keep their
    /// overrides. The merged result is validated as a whole and committed under the
    /// controller's lock, so concurrent changes of different keys are never lost.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let (_, after) = self
            .submit(&[MetadataRequest::AlterTopicConfig {
                name: name.to_owned(),
                changes: changes.clone(),
            }])
            .await?;
        topic_of(&after, name)
    }
}

/// The topic named `name` in an image that holds a change of it: gone only when a
/// later change (another request) deleted it meanwhile.
fn topic_of(image: &MetadataImage, name: &str) -> Result<Arc<TopicImage>, TopicError> {
    image
        .topic(name)
        .cloned()
        .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))
}

/// A membership call answered with something else than its answer: a controller
/// that does not speak this release's protocol.
fn unexpected_reply(leader: i32, reply: &ControllerReply) -> MembershipCallError {
    MembershipCallError::Metadata {
        message: format!("the active controller, node {leader}, answered {reply:?}"),
        retriable: false,
    }
}

/// Whether the same change may succeed when asked again (at the same or a new
/// leader).
fn is_retriable(error: &TopicError) -> bool {
    match error {
        TopicError::Metadata(error) => error.is_retriable(),
        TopicError::ControllerUnreachable { .. } => true,
        _ => false,
    }
}

/// What a forwarded change came to, when it did not succeed.
enum Forwarded {
    /// Worth trying again (at the same or a new leader).
    Retry(TopicError),
    /// The active controller's answer.
    Final(TopicError),
}

/// The error of a change the active controller could not be asked to make.
fn unreachable_controller(leader: i32, reason: &str) -> TopicError {
    TopicError::ControllerUnreachable {
        node_id: leader,
        reason: reason.to_owned(),
    }
}

impl Controller {
    /// A broker process registers (see [`super::membership`]): it is recorded fenced,
    /// with the next broker epoch, which is returned once applied. Refused while
    /// another process of the node has a live session.
    pub async fn register_broker(
        &self,
        registration: &BrokerRegistration,
    ) -> Result<Registered, MembershipCallError> {
        let Some(leader) = self.membership_target()? else {
            return self.register_here(registration).await;
        };
        let call = ControllerCall::Register(registration.clone());
        let timeout = self.log.propose_timeout() + FORWARD_BACKOFF_MAX;
        match self.forward_membership(leader, &call, timeout).await? {
            ControllerReply::Registered(answer) => answer,
            other => Err(unexpected_reply(leader, &other)),
        }
    }

    /// Where a membership call is carried out: `None` here (this node is the active
    /// controller), else at the active controller it names.
    fn membership_target(&self) -> Result<Option<i32>, MembershipCallError> {
        match self.active_controller() {
            Some(leader) if leader == self.node_id => Ok(None),
            Some(leader) => Ok(Some(leader)),
            None => Err(MembershipCallError::NoActiveController {
                node_id: self.node_id,
            }),
        }
    }

    /// [`register_broker`](Self::register_broker) on this node, which must be the
    /// active controller.
    pub(crate) async fn register_here(
        &self,
        registration: &BrokerRegistration,
    ) -> Result<Registered, MembershipCallError> {
        let requests = self.sessions.register(&self.image(), registration)?;
        let (_, after) = self.submit_here(&requests).await?;
        let node_id = registration.node_id;
        match after.brokers.get(&node_id) {
            Some(broker) if broker.incarnation_id == registration.incarnation_id => {
                Ok(Registered {
                    broker_epoch: broker.broker_epoch,
                    metadata_index: applied_index(&after),
                })
            }
            // Another process of the node registered between the decision and now.
            other => Err(MembershipError::DuplicateNodeId {
                node_id,
                live_incarnation: other
                    .map(|broker| broker.incarnation_id)
                    .unwrap_or_default(),
            }
            .into()),
        }
    }

    /// A broker's heartbeat: renews its session, and unfences it (caught up) or fences
    /// it (shutting down) as membership decides. What that calls for is applied before
    /// the answer, which is then given from the image it made, so that a broker is
    /// unfenced, or told its controlled shutdown is done, by one heartbeat.
    pub async fn broker_heartbeat(
        &self,
        heartbeat: Heartbeat,
    ) -> Result<HeartbeatAnswer, MembershipCallError> {
        let Some(leader) = self.membership_target()? else {
            return self.heartbeat_here(heartbeat).await;
        };
        // Short, so that a controller that stopped answering (frozen, cut off) costs
        // this broker its session at none of its successors: the next heartbeat goes
        // to whoever leads the quorum by then, well within the session timeout.
        let timeout = Duration::from_millis(self.defaults.broker_session_timeout_ms / 3);
        match self
            .forward_membership(leader, &ControllerCall::Heartbeat(heartbeat), timeout)
            .await?
        {
            ControllerReply::Heartbeat(answer) => answer,
            other => Err(unexpected_reply(leader, &other)),
        }
    }

    /// [`broker_heartbeat`](Self::broker_heartbeat) on this node, which must be the
    /// active controller.
    pub(crate) async fn heartbeat_here(
        &self,
        heartbeat: Heartbeat,
    ) -> Result<HeartbeatAnswer, MembershipCallError> {
        let mut image = self.image();
        let mut reply = self.sessions.heartbeat(&image, heartbeat)?;
        if !reply.propose.is_empty() {
            image = self.submit_here(&reply.propose).await?.1;
            // Asked again of the new image: what the first answer called for is done,
            // so this one calls for nothing more (or a later heartbeat proposes it).
            reply = self.sessions.heartbeat(&image, heartbeat)?;
        }
        Ok(HeartbeatAnswer {
            fenced: reply.fenced,
            controlled_shutdown_done: reply.controlled_shutdown_done,
            metadata_index: applied_index(&image),
        })
    }

    /// Sends a registration or heartbeat to the active controller `leader`, once: the
    /// broker's heartbeats retry on their own schedule. Waits at most `timeout`.
    async fn forward_membership(
        &self,
        leader: i32,
        call: &ControllerCall,
        timeout: Duration,
    ) -> Result<ControllerReply, MembershipCallError> {
        match self.call_controller(leader, call, timeout).await {
            Ok(ControllerReply::NotReady) => Err(MembershipCallError::Metadata {
                message: format!("the controller of node {leader} is still starting"),
                retriable: true,
            }),
            Ok(reply) => Ok(reply),
            Err(error) => Err(MembershipCallError::Metadata {
                message: error.to_string(),
                retriable: true,
            }),
        }
    }

    /// Fences the brokers whose sessions expired, when this node is the active
    /// controller; returns how many requests that took.
    pub async fn expire_broker_sessions(&self) -> Result<usize, MembershipCallError> {
        let requests = self.sessions.tick(&self.image());
        if !requests.is_empty() {
            self.submit_here(&requests).await?;
        }
        Ok(requests.len())
    }

    /// Fences the brokers that missed heartbeats for `silence` and whose process is
    /// gone: a connection to their internal address is refused (nothing listens
    /// there, as after `kill -9`), which no live process, frozen or busy, answers, or
    /// its host name is no longer known (a stopped container's).
    /// Without waiting for their sessions to expire, their partitions get new
    /// leaders within about `silence`. Returns how many it fenced.
    pub async fn fence_gone_brokers(
        &self,
        silence: Duration,
    ) -> Result<usize, MembershipCallError> {
        let silent = self
            .sessions
            .silent(&self.image(), silence.as_millis() as u64);
        let mut requests = Vec::new();
        for broker in silent {
            if process_is_gone(&broker.internal_address).await {
                tracing::warn!(
                    node_id = broker.node_id,
                    address = %broker.internal_address,
                    "a silent broker's process is gone (its internal address refuses connections, or its host name is no longer known): fencing it without waiting for its session to expire"
                );
                requests.extend(self.sessions.gone(
                    &self.image(),
                    broker.node_id,
                    broker.incarnation_id,
                ));
            }
        }
        if !requests.is_empty() {
            self.submit_here(&requests).await?;
        }
        Ok(requests.len())
    }

    /// Every quarter of the heartbeat `interval` until `shutdown` turns true (or its
    /// sender is dropped): fences the brokers whose sessions expired, and those that
    /// missed a heartbeat and a half and whose process is gone
    /// ([`Self::fence_gone_brokers`]), while this node is the active controller. A
    /// node that starts leading gives every broker a fresh session first.
    pub async fn run_broker_sessions(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let silence = interval * 3 / 2;
        let mut ticks = tokio::time::interval(interval / 4);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                stop = shutdown.wait_for(|stop| *stop) => {
                    let _stopped = stop;
                    return;
                }
            }
            match self.expire_broker_sessions().await {
                Ok(0) => {}
                Ok(fenced) => tracing::info!(fenced, "fenced brokers whose sessions expired"),
                Err(error) => tracing::warn!(%error, "cannot fence brokers whose sessions expired"),
            }
            if let Err(error) = self.fence_gone_brokers(silence).await {
                tracing::warn!(%error, "cannot fence brokers whose process is gone");
            }
        }
    }
}

/// Whether the process at `address` is gone: nothing listens there (a connection is
/// refused at once), or its host name is no longer known (a stopped container's name
/// leaves Docker's DNS, as a deleted pod's leaves the cluster's). A connection that
/// succeeds, times out or fails otherwise (an unreachable network, a name server that
/// does not answer) proves nothing.
async fn process_is_gone(address: &str) -> bool {
    const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
        Ok(Err(error)) => {
            error.kind() == std::io::ErrorKind::ConnectionRefused || name_is_unknown(&error)
        }
        _ => false,
    }
}

/// The resolver's answer that a name does not exist (glibc's `EAI_NONAME` and
/// `EAI_NODATA`), which the standard library reports as text only. A temporary failure
/// ("Temporary failure in name resolution") is not one.
fn name_is_unknown(error: &std::io::Error) -> bool {
    let text = error.to_string();
    text.contains("Name or service not known")
        || text.contains("No address associated with hostname")
}

/// For tests elsewhere in the crate: a started controller whose own broker is
/// registered at `host:port` and unfenced, as `Broker::start` leaves it.
#[cfg(test)]
impl Controller {
    pub(crate) async fn start_registered(
        config: &BrokerConfig,
        log: Arc<MetadataLog>,
        host: &str,
        port: u16,
    ) -> Self {
        let incarnation_id = uuid::Uuid::new_v4();
        let controller = Self::start(config, log.clone(), incarnation_id)
            .await
            .expect("the controller starts");
        let registration = BrokerRegistration {
            node_id: config.node_id,
            incarnation_id,
            host: host.to_owned(),
            port,
            internal_address: String::new(),
            rack: None,
            external: None,
            held_replicas: None,
        };
        let registered = controller
            .register_broker(&registration)
            .await
            .expect("the broker registers");
        let answer = controller
            .broker_heartbeat(Heartbeat {
                node_id: config.node_id,
                broker_epoch: registered.broker_epoch,
                caught_up: true,
                wants_shutdown: false,
            })
            .await
            .expect("the broker heartbeats");
        assert!(
            !answer.fenced,
            "a caught-up broker is unfenced by one heartbeat"
        );
        controller
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::metadata_log::ProposeError;

    /// A process is gone when nothing listens at its address, or when its name no
    /// longer resolves; a live listener, or a name server that does not answer, is no
    /// proof.
    #[tokio::test]
    async fn gone_processes_are_told_from_live_ones() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap().to_string();
        assert!(!process_is_gone(&live).await);
        drop(listener);
        assert!(process_is_gone(&live).await, "nothing listens at {live}");
        let lookup = |text: &str| {
            std::io::Error::other(format!("failed to lookup address information: {text}"))
        };
        assert!(name_is_unknown(&lookup("Name or service not known")));
        assert!(name_is_unknown(&lookup(
            "No address associated with hostname"
        )));
        assert!(!name_is_unknown(&lookup(
            "Temporary failure in name resolution"
        )));
    }

    /// Starts the metadata log (a quorum of one on a port of 127.0.0.1 the system
    /// picks) and a controller that registers the broker at `port`.
    async fn start(config: &BrokerConfig, port: u16) -> (Arc<MetadataLog>, Controller) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log = Arc::new(MetadataLog::start(config, listener).await.unwrap());
        let controller = Controller::start_registered(config, log.clone(), "127.0.0.1", port).await;
        (log, controller)
    }

    /// Topics are created, refused when invalid, survive a restart, have their config
    /// changed incrementally (set, remove, invalid change refused whole) and are deleted.
    #[tokio::test]
    async fn topic_lifecycle_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let (log, controller) = start(&config, 9192).await;
        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(3),
            ..Default::default()
        };
        let topic = controller.create_topic(&request, false).await.unwrap();
        assert_eq!(topic.partitions.len(), 3);
        assert!(matches!(
            controller.create_topic(&request, false).await,
            Err(TopicError::AlreadyExists(_))
        ));
        let too_many = CreateTopic {
            name: "x".into(),
            replication_factor: Some(2),
            ..Default::default()
        };
        assert!(matches!(
            controller.create_topic(&too_many, false).await,
            Err(TopicError::NotEnoughBrokers { .. })
        ));
        let bad_name = CreateTopic {
            name: "a/b".into(),
            ..Default::default()
        };
        assert!(matches!(
            controller.create_topic(&bad_name, false).await,
            Err(TopicError::InvalidName(_))
        ));
        let cluster_id = controller.image().cluster_id.clone();
        log.shutdown().await;

        let (log, controller) = start(&config, 9192).await;
        assert_eq!(controller.image().cluster_id, cluster_id);
        assert_eq!(
            controller.image().topic("orders").unwrap().topic_id,
            topic.topic_id
        );
        let changed = controller
            .alter_topic_config(
                "orders",
                &[
                    ("retention.ms".to_string(), Some("1000".to_string())),
                    ("segment.bytes".to_string(), Some("16777216".to_string())),
                ]
                .into(),
            )
            .await
            .unwrap();
        assert_eq!(changed.config.len(), 2);
        let changed = controller
            .alter_topic_config("orders", &[("retention.ms".to_string(), None)].into())
            .await
            .unwrap();
        assert_eq!(
            changed.config,
            [("segment.bytes".to_string(), "16777216".to_string())].into()
        );
        assert!(matches!(
            controller
                .alter_topic_config(
                    "orders",
                    &[("segment.bytes".to_string(), Some("1".to_string()))].into()
                )
                .await,
            Err(TopicError::InvalidConfig(_))
        ));
        assert_eq!(controller.image().topic("orders").unwrap().config.len(), 1);
        controller.delete_topic("orders").await.unwrap();
        assert!(controller.image().topic("orders").is_none());
        assert!(matches!(
            controller.delete_topic("orders").await,
            Err(TopicError::UnknownTopic(_))
        ));
        log.shutdown().await;
    }

    /// A validate-only creation answers with the topic it would make and changes
    /// nothing; each change is one entry of the log, after which the image names this
    /// broker as the controller; the image rebuilt on restart (from the snapshot and the
    /// log after it) is the one published before, and a new process at a new address
    /// is registered at it with the next broker epoch.
    #[tokio::test]
    async fn restart_gives_the_published_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_tests(dir.path());
        config.node_id = 3;
        // A snapshot every few entries, so that restarts read one and the log after it.
        config.metadata_snapshot_entries = 3;
        let (log, controller) = start(&config, 9192).await;
        let started = controller.image();
        assert_eq!(started.controller_id, 3);
        assert_eq!(started.brokers[&3].port, 9192);
        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(2),
            ..Default::default()
        };
        let preview = controller.create_topic(&request, true).await.unwrap();
        assert_eq!(preview.partitions.len(), 2);
        assert_eq!(controller.image(), started);
        controller.create_topic(&request, false).await.unwrap();
        let created = controller.image().applied_position().unwrap();
        assert_eq!(created.index, started.applied_position().unwrap().index + 1);
        for epoch in 1..=5 {
            assert_eq!(
                controller.bump_leader_epoch("orders", 1).await.unwrap(),
                epoch
            );
        }
        let published = controller.image();
        log.shutdown().await;
        assert!(
            dir.path()
                .join("__cluster_metadata/raft.snapshot")
                .is_file()
        );

        // Started without registering its broker, which would change the image.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log = Arc::new(MetadataLog::start(&config, listener).await.unwrap());
        let controller = Controller::start(&config, log.clone(), uuid::Uuid::new_v4())
            .await
            .unwrap();
        let restarted = controller.image();
        assert_eq!(restarted.snapshot().records, published.snapshot().records);
        assert_eq!(restarted.records_applied, published.records_applied);
        assert_eq!(restarted.controller_id, 3);
        log.shutdown().await;
        let (log, controller) = start(&config, 9999).await;
        assert_eq!(controller.image().brokers[&3].port, 9999);
        assert_eq!(controller.image().brokers[&3].broker_epoch, 2);
        log.shutdown().await;
    }

    /// Requests from many tasks at once are decided one at a time, each against the
    /// image the one before it made: of eight creations of one name exactly one
    /// succeeds, and four changes of different keys all stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_decided_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let (log, controller) = start(&config, 9192).await;
        let controller = Arc::new(controller);
        let request = CreateTopic {
            name: "orders".into(),
            ..Default::default()
        };
        let creations: Vec<_> = (0..8)
            .map(|_| {
                let (controller, request) = (controller.clone(), request.clone());
                tokio::spawn(async move { controller.create_topic(&request, false).await.is_ok() })
            })
            .collect();
        let mut created = 0;
        for creation in creations {
            created += usize::from(creation.await.unwrap());
        }
        assert_eq!(created, 1);

        let keys = ["flush.bytes", "flush.ms", "retention.ms", "segment.ms"];
        let changes: Vec<_> = keys
            .into_iter()
            .map(|key| {
                let controller = controller.clone();
                tokio::spawn(async move {
                    let change = BTreeMap::from([(key.to_owned(), Some("5000".to_owned()))]);
                    controller
                        .alter_topic_config("orders", &change)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for change in changes {
            change.await.unwrap();
        }
        let image = controller.image();
        let config = &image.topic("orders").unwrap().config;
        assert_eq!(config.keys().collect::<Vec<_>>(), keys);
        log.shutdown().await;
    }

    /// Once the metadata log has stopped, a change fails with an error that says so
    /// and that clients may retry elsewhere, and the last image stays readable.
    #[tokio::test]
    async fn a_stopped_log_refuses_changes_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let (log, controller) = start(&config, 9192).await;
        log.shutdown().await;
        let error = controller
            .create_topic(
                &CreateTopic {
                    name: "orders".into(),
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, TopicError::Metadata(ProposeError::ShutDown)),
            "{error:?}"
        );
        assert_eq!(
            error.error_code(),
            fjord_protocol::ErrorCode::BrokerShuttingDown
        );
        assert!(!controller.image().cluster_id.is_empty());
    }
}
