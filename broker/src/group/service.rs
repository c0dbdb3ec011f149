//! The runtime of the group coordinator: everything [`GroupCoordinator`] must not do
//! itself.
//!
//! - Start-up and leadership ([`GroupService::load`] and
//!   [`GroupService::follow_leadership`], in [`super::loading`]): creates
//!   `__consumer_offsets` when it is missing; replays each partition of it when this
//!   broker comes to lead it and forgets its groups when it stops, so that committed
//!   offsets survive restarts and move with the coordinator.
//! - Requests: checks that this broker coordinates the group, feeds the request to the
//!   coordinator under its lock, and carries out the effects. An offset commit is
//!   validated and appended under the lock (so that its checks hold for what is
//!   written), becomes durable outside it, and is applied once durable; only then is it
//!   answered.
//! - Background ([`GroupService::run`]): wakes the coordinator when a session or
//!   rebalance timeout is due, hands it every new topic metadata image, and follows
//!   the leadership of the offsets partitions.
//!
//! Time for the coordinator is monotonic milliseconds since the service was created,
//! so that a wall-clock jump can neither expire every session nor keep one alive; the
//! commit timestamps stored with offsets are wall-clock time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fjord_protocol::ErrorCode;
use fjord_protocol::RecordBatch;
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use fjord_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, DescribedGroup, FindCoordinatorRequest, FindCoordinatorResponse,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use tokio::sync::{Notify, watch};

use super::effect::Effect;
use super::records::OffsetRecord;
use super::{
    CoordinatorConfig, GroupCoordinator, HeartbeatContext, OFFSETS_TOPIC, TopicInfo,
    offsets_partition,
};
use crate::config::BrokerConfig;
use crate::metadata::{Listener, MetadataImage};
use crate::replication::{CommitError, PartitionLeader};
use crate::storage::{AppendInfo, Clock, SystemClock, TopicPartition};
use crate::topics::{Partitions, TopicAdmin};

/// The longest the background task sleeps without looking at the coordinator; a
/// safety net only, since every event that moves a deadline closer wakes it.
const IDLE_WAKE_INTERVAL: Duration = Duration::from_secs(10);

/// How often the background task compares the offsets partitions this broker leads
/// with those whose groups it has loaded (a leadership arrives with the reconciler,
/// after the metadata that names it).
const LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Records appended to the offsets topic, waiting to become durable.
#[derive(Debug)]
struct Appended {
    leader: Arc<PartitionLeader>,
    info: AppendInfo,
    records: Vec<OffsetRecord>,
}

#[derive(Debug)]
pub struct GroupService {
    pub(super) coordinator: Mutex<GroupCoordinator>,
    /// The offsets partitions this broker leads, and the metadata that says which.
    pub(super) partitions: Partitions,
    /// Creates `__consumer_offsets` when it is missing.
    pub(super) admin: TopicAdmin,
    /// Partitions of `__consumer_offsets` when it is created (`offsets_topic_partitions`).
    pub(super) offsets_topic_partitions: i32,
    /// Whether start-up creates `__consumer_offsets`: only a quorum of one does. In a
    /// cluster the first FindCoordinator does, once the brokers have registered, so
    /// that the topic gets its replicas on several of them.
    pub(super) offsets_topic_at_start: bool,
    /// Longest an offsets write waits to be replicated (`request_timeout_ms`).
    commit_timeout: Duration,
    /// The origin of the coordinator's monotonic milliseconds.
    origin: Instant,
    wall_clock: Arc<dyn Clock>,
    /// Wakes the background task when a deadline may have moved closer.
    deadline_changed: Notify,
    /// Set once start-up has made sure the offsets topic exists; until then the
    /// coordinator is not available.
    pub(super) started: AtomicBool,
    /// The partitions of the offsets topic whose groups this broker has loaded, with
    /// the leader epoch it loaded them in: it coordinates their groups only while it
    /// leads them in that epoch ([`GroupService::follow_leadership`]).
    pub(super) loaded: Mutex<BTreeMap<i32, i32>>,
    /// When loading a partition of the offsets topic last failed.
    load_failures: Mutex<BTreeMap<i32, Instant>>,
}

impl GroupService {
    /// A service for the broker configured by `config`, whose offsets topic it finds
    /// through `partitions` and creates through `admin`. Not available until
    /// [`GroupService::load`] has replayed the offsets topic.
    pub fn new(config: &BrokerConfig, partitions: Partitions, admin: TopicAdmin) -> Self {
        let coordinator = GroupCoordinator::new(
            CoordinatorConfig {
                session_timeout_ms: i64::try_from(config.group_session_timeout_ms)
                    .unwrap_or(i64::MAX),
                heartbeat_interval_ms: i32::try_from(config.group_heartbeat_interval_ms)
                    .unwrap_or(i32::MAX),
                members_max: config.group_members_max,
            },
            config.group_assignor.build(),
        );
        Self {
            coordinator: Mutex::new(coordinator),
            partitions,
            admin,
            offsets_topic_partitions: config.offsets_topic_partitions,
            offsets_topic_at_start: config.controller_quorum_voters.trim().is_empty(),
            commit_timeout: Duration::from_millis(config.request_timeout_ms),
            origin: Instant::now(),
            wall_clock: Arc::new(SystemClock),
            deadline_changed: Notify::new(),
            started: AtomicBool::new(false),
            loaded: Mutex::new(BTreeMap::new()),
            load_failures: Mutex::new(BTreeMap::new()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, GroupCoordinator> {
        self.coordinator
            .lock()
            .expect("group coordinator lock poisoned")
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    // ----- requests ---------------------------------------------------------------

    /// Whether this broker coordinates `group_id` now.
    fn check_coordinator(&self, group_id: &str) -> Result<(), ErrorCode> {
        if !self.started.load(Ordering::Acquire) {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let partition = coordinator_partition(&self.partitions.metadata().current(), group_id)?;
        match self.partitions.leader_log(OFFSETS_TOPIC, partition) {
            Ok(_) => {}
            Err(ErrorCode::NotLeaderOrFollower) => return Err(ErrorCode::NotCoordinator),
            Err(_) => return Err(ErrorCode::CoordinatorNotAvailable),
        }
        // Leading is not enough: the partition's groups must have been loaded in this
        // leadership (until then, retriable: the client asks again shortly).
        let leader_epoch = self
            .partitions
            .replicas()
            .leader(&TopicPartition::new(OFFSETS_TOPIC, partition))
            .map(|leader| leader.leader_epoch());
        let loaded = self.loaded_lock().get(&partition).copied();
        if leader_epoch.is_some() && loaded == leader_epoch {
            Ok(())
        } else {
            Err(ErrorCode::CoordinatorNotAvailable)
        }
    }

    pub(super) fn loaded_lock(&self) -> MutexGuard<'_, BTreeMap<i32, i32>> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn load_failures_lock(&self) -> MutexGuard<'_, BTreeMap<i32, Instant>> {
        self.load_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A FindCoordinator that came in on `listener` (the coordinator is given at its
    /// address for that listener); creates `__consumer_offsets` first if it could not
    /// be created at start-up.
    pub async fn find_coordinator(
        &self,
        request: &FindCoordinatorRequest,
        listener: Listener,
    ) -> FindCoordinatorResponse {
        if request.group_id.is_empty() {
            return FindCoordinatorResponse::error(
                ErrorCode::InvalidGroupId,
                "the group id is empty",
            );
        }
        if let Err(error) = self.ensure_offsets_topic().await {
            return FindCoordinatorResponse::error(
                ErrorCode::CoordinatorNotAvailable,
                format!("cannot create {OFFSETS_TOPIC}: {error}"),
            );
        }
        let image = self.partitions.metadata().current();
        let leader = coordinator_partition(&image, &request.group_id)
            .ok()
            .and_then(|partition| {
                let leader = image.topic(OFFSETS_TOPIC)?.partition(partition)?.leader;
                image.brokers.get(&leader)
            });
        match leader {
            Some(leader) => {
                let (host, port) = leader.address_for(listener);
                FindCoordinatorResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    node_id: leader.node_id,
                    host: host.to_owned(),
                    port: i32::from(port),
                }
            }
            None => FindCoordinatorResponse::error(
                ErrorCode::CoordinatorNotAvailable,
                format!("the group's partition of {OFFSETS_TOPIC} has no leader"),
            ),
        }
    }

    pub async fn heartbeat(
        &self,
        client_id: Option<&str>,
        client_host: String,
        request: &ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        if let Err(code) = self.check_coordinator(&request.group_id) {
            return ConsumerGroupHeartbeatResponse::error(
                code,
                format!("group '{}'", request.group_id),
            );
        }
        let context = HeartbeatContext {
            now_ms: self.now_ms(),
            client_id: client_id.unwrap_or_default().to_owned(),
            client_host,
            new_member_id: uuid::Uuid::new_v4().to_string(),
        };
        let (response, effects) = self.lock().heartbeat(&context, request);
        self.deadline_changed.notify_one();
        self.execute(effects).await;
        response
    }

    pub async fn commit_offsets(&self, request: &OffsetCommitRequest) -> OffsetCommitResponse {
        if let Err(code) = self.check_coordinator(&request.group_id) {
            return OffsetCommitResponse::all(request, code);
        }
        let (mut response, appended) = {
            let coordinator = self.lock();
            let (response, effects) = coordinator.commit(request, self.wall_clock.now_ms());
            let appended = effects.into_iter().find_map(|effect| match effect {
                Effect::PersistRecords { group_id, records } => {
                    Some(self.append(&group_id, records))
                }
                _ => None,
            });
            (response, appended)
        };
        let outcome = match appended {
            None => Ok(()),
            Some(Ok(appended)) => self.complete(appended).await,
            Some(Err(code)) => Err(code),
        };
        if let Err(code) = outcome {
            for partition in response
                .topics
                .iter_mut()
                .flat_map(|topic| &mut topic.partitions)
            {
                if partition.error_code.is_ok() {
                    partition.error_code = code;
                }
            }
        }
        response
    }

    pub fn fetch_offsets(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        if let Err(error_code) = self.check_coordinator(&request.group_id) {
            return OffsetFetchResponse {
                error_code,
                topics: Vec::new(),
            };
        }
        self.lock().fetch_offsets(request)
    }

    pub fn list_groups(&self, request: &ListGroupsRequest) -> ListGroupsResponse {
        if !self.started.load(Ordering::Acquire) {
            return ListGroupsResponse {
                error_code: ErrorCode::CoordinatorNotAvailable,
                groups: Vec::new(),
            };
        }
        ListGroupsResponse {
            error_code: ErrorCode::None,
            groups: self.lock().list_groups(&request.states_filter),
        }
    }

    pub fn describe_groups(&self, request: &DescribeGroupsRequest) -> DescribeGroupsResponse {
        let groups = request
            .group_ids
            .iter()
            .map(|group_id| match self.check_coordinator(group_id) {
                Ok(()) => self.lock().describe_group(group_id),
                Err(code) => DescribedGroup::error(group_id.clone(), code),
            })
            .collect();
        DescribeGroupsResponse { groups }
    }

    /// Reads the coordinator (for the HTTP API and metrics).
    pub fn with_coordinator<T>(&self, read: impl FnOnce(&GroupCoordinator) -> T) -> T {
        read(&self.lock())
    }

    // ----- effects ----------------------------------------------------------------

    /// Carries out effects that nobody waits for (tombstones, rebalance notes).
    pub(super) async fn execute(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::PersistRecords { group_id, records } => {
                    let appended = {
                        let _serial = self.lock();
                        self.append(&group_id, records)
                    };
                    let outcome = match appended {
                        Ok(appended) => self.complete(appended).await,
                        Err(code) => Err(code),
                    };
                    if let Err(code) = outcome {
                        tracing::warn!(group = %group_id, %code, "cannot persist offsets records");
                    }
                }
                Effect::Rebalanced {
                    group_id,
                    group_epoch,
                    reason,
                } => {
                    tracing::debug!(group = %group_id, group_epoch, reason = reason.name(), "group rebalancing");
                    metrics::counter!("fjord_group_rebalances_total", "group" => group_id, "reason" => reason.name()).increment(1);
                }
                Effect::MemberRemoved {
                    group_id,
                    member_id,
                    reason,
                } => {
                    tracing::info!(group = %group_id, member = %member_id, reason = reason.name(), "member removed from group");
                }
            }
        }
    }

    /// Appends records to the group's offsets partition as one batch. Called with the
    /// coordinator locked, so that appends are in the order of the checks.
    fn append(&self, group_id: &str, records: Vec<OffsetRecord>) -> Result<Appended, ErrorCode> {
        let partition = coordinator_partition(&self.partitions.metadata().current(), group_id)?;
        let (_, _, leader) = self
            .partitions
            .leader(OFFSETS_TOPIC, partition)
            .map_err(|code| match code {
                ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
                _ => ErrorCode::CoordinatorNotAvailable,
            })?;
        let timestamp_ms = self.wall_clock.now_ms();
        let encoded: Vec<_> = records
            .iter()
            .map(|record| (record.encode_key(), record.encode_value()))
            .collect();
        let mut builder = BatchBuilder::new();
        for (key, value) in &encoded {
            builder.push(&RecordInput {
                key: Some(key),
                value: value.as_deref(),
                headers: &[],
                timestamp_ms,
            });
        }
        let batch = RecordBatch::new(builder.finish()).expect("the builder makes valid batches");
        let info = leader.append(&[batch]).map_err(|error| {
            tracing::error!(%error, "cannot append to {OFFSETS_TOPIC}");
            error.error_code()
        })?;
        Ok(Appended {
            leader,
            info,
            records,
        })
    }

    /// Waits until appended records are committed (durable on every in-sync replica,
    /// as acks=all), then applies them.
    async fn complete(&self, appended: Appended) -> Result<(), ErrorCode> {
        appended
            .leader
            .commit_replicated(&appended.info, 1, self.commit_timeout)
            .await
            .map_err(|error| match error {
                CommitError::Storage(error) => {
                    tracing::error!(%error, "cannot make {OFFSETS_TOPIC} records durable");
                    error.error_code()
                }
                CommitError::NotLeader => ErrorCode::NotCoordinator,
                CommitError::TimedOut(_) | CommitError::NotEnoughReplicasAfterAppend { .. } => {
                    ErrorCode::RequestTimedOut
                }
            })?;
        let mut coordinator = self.lock();
        for (offset, record) in (appended.info.base_offset..).zip(&appended.records) {
            coordinator.apply_record(record, offset);
        }
        Ok(())
    }

    // ----- background -------------------------------------------------------------

    /// Expires sessions and rebalance timeouts when they are due, and follows topic
    /// metadata, until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let service = &self;
        let mut metadata = self.partitions.metadata().subscribe();
        let mut leadership = tokio::time::interval(LEADERSHIP_CHECK_INTERVAL);
        leadership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake_at = {
                let now_ms = service.now_ms();
                let idle = now_ms.saturating_add(IDLE_WAKE_INTERVAL.as_millis() as i64);
                let due = service.lock().next_deadline_ms().unwrap_or(idle).min(idle);
                tokio::time::Instant::now()
                    + Duration::from_millis(u64::try_from(due - now_ms).unwrap_or(0))
            };
            // `None`: time to compare the offsets partitions led and loaded.
            let effects = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep_until(wake_at) => Some(service.lock().tick(service.now_ms())),
                _ = service.deadline_changed.notified() => continue,
                _ = leadership.tick() => None,
                changed = metadata.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let image = metadata.borrow_and_update().clone();
                    Some(service.lock().set_topics(topic_infos(&image)))
                }
            };
            match effects {
                Some(effects) => service.execute(effects).await,
                None => {
                    for (partition, error) in service.follow_leadership().await {
                        tracing::error!(%partition, error = format!("{error:#}"), "cannot load the groups of an offsets partition; they stay unavailable, tried again in 30 s");
                    }
                }
            }
        }
    }
}

/// The offsets partition of `group_id`, from the metadata image.
fn coordinator_partition(image: &MetadataImage, group_id: &str) -> Result<i32, ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let topic = image
        .topic(OFFSETS_TOPIC)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if partitions == 0 {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    Ok(offsets_partition(group_id, partitions))
}

/// Every topic of the image as the coordinator needs it.
pub(super) fn topic_infos(image: &MetadataImage) -> BTreeMap<String, TopicInfo> {
    image
        .topics
        .values()
        .map(|topic| {
            (
                topic.name.clone(),
                TopicInfo {
                    topic_id: topic.topic_id.as_u128(),
                    partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
                },
            )
        })
        .collect()
}
