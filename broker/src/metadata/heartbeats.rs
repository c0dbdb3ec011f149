//! This broker's membership of the cluster, as the broker keeps it (Kafka's broker
//! lifecycle manager): register with the active controller, heartbeat to it, and ask it
//! for a controlled shutdown.
//!
//! Each process draws an incarnation id at start and registers with it; the controller
//! answers with a broker epoch, which every heartbeat carries. A heartbeat says
//! whether the broker is caught up: its own applied metadata reaches the index the
//! controller gave in its previous answer. Start-up ([`BrokerHeartbeats::start`])
//! returns once the broker is registered and unfenced: at once for a single broker,
//! which is its own controller. A registration refused because another process of the
//! node holds a live session is retried for about one session timeout (a quick restart
//! of the same node looks the same), then start-up fails. Afterwards a task heartbeats
//! every `broker_heartbeat_interval_ms` and registers again when the controller no
//! longer knows the registration (a stale broker epoch). On shutdown
//! ([`HeartbeatsHandle::controlled_shutdown`]) it heartbeats asking to shut down until
//! the controller says the broker's leaderships have moved away (those that can: a
//! single broker keeps them), then stops.
//!
//! The controller is reached through [`ControllerLink`]: [`LocalController`] calls this
//! node's own [`Controller`]; a link to a controller on another node carries the same
//! plain, serializable calls and answers.

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::broker_sessions::{HeartbeatAnswer, MembershipCallError, Registered, applied_index};
use super::controller::Controller;
use super::front_end::BrokerRegistration;
use super::image::MetadataImage;
use super::membership::{Heartbeat, MembershipError};
use crate::config::BrokerConfig;

/// Longest start-up waits to be registered and unfenced while the controller cannot
/// take the registration (no quorum leader, proposals timing out).
pub const START_WAIT_MAX: Duration = Duration::from_secs(120);

/// First wait before retrying a failed registration or heartbeat at start-up; it
/// doubles up to the heartbeat interval.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// How the broker reaches the active controller.
pub trait ControllerLink: Debug + Send + Sync {
    fn register<'a>(
        &'a self,
        registration: &'a BrokerRegistration,
    ) -> BoxFuture<'a, Result<Registered, MembershipCallError>>;

    fn heartbeat(
        &self,
        heartbeat: Heartbeat,
    ) -> BoxFuture<'_, Result<HeartbeatAnswer, MembershipCallError>>;
}

/// The controller of this node, called directly.
#[derive(Debug, Clone)]
pub struct LocalController(pub Arc<Controller>);

impl ControllerLink for LocalController {
    fn register<'a>(
        &'a self,
        registration: &'a BrokerRegistration,
    ) -> BoxFuture<'a, Result<Registered, MembershipCallError>> {
        Box::pin(self.0.register_broker(registration))
    }

    fn heartbeat(
        &self,
        heartbeat: Heartbeat,
    ) -> BoxFuture<'_, Result<HeartbeatAnswer, MembershipCallError>> {
        Box::pin(self.0.broker_heartbeat(heartbeat))
    }
}

/// How often to heartbeat, how long a session lives, how long start-up may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatTiming {
    pub interval: Duration,
    pub session_timeout: Duration,
    pub start_wait: Duration,
}

impl HeartbeatTiming {
    pub fn from_config(config: &BrokerConfig) -> Self {
        Self {
            interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
            session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
            start_wait: START_WAIT_MAX,
        }
    }
}

/// Why the broker could not join the cluster at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "broker {node_id} was refused registration for {waited_ms} ms (about one session \
         timeout, broker_session_timeout_ms): {refusal}"
    )]
    DuplicateNodeId {
        node_id: i32,
        waited_ms: u128,
        refusal: MembershipCallError,
    },
    #[error("broker {node_id} cannot register with the controller: {refusal}")]
    Refused {
        node_id: i32,
        refusal: MembershipCallError,
    },
    #[error("broker {node_id} was not registered and unfenced within {waited_ms} ms: {last}")]
    TimedOut {
        node_id: i32,
        waited_ms: u128,
        last: String,
    },
}

impl StartError {
    /// The controller could not write the metadata at all (its storage failed, say
    /// on a full disk): retrying in this process cannot help.
    pub fn is_metadata_unwritable(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                refusal: MembershipCallError::Metadata {
                    retriable: false,
                    ..
                },
                ..
            }
        )
    }
}

/// What the heartbeat task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    ShuttingDown,
}

/// The broker's side of its membership: its registration and what it last heard.
#[derive(Debug)]
struct Member {
    link: Arc<dyn ControllerLink>,
    registration: BrokerRegistration,
    /// This broker's own metadata images.
    images: watch::Receiver<Arc<MetadataImage>>,
    /// The epoch of the registration the controller gave; `None` before (or once it
    /// said the registration is gone).
    broker_epoch: Option<u64>,
    /// The controller's applied metadata index in its last answer.
    controller_index: u64,
    fenced: bool,
}

impl Member {
    fn node_id(&self) -> i32 {
        self.registration.node_id
    }

    fn caught_up(&self) -> bool {
        applied_index(&self.images.borrow()) >= self.controller_index
    }

    /// Registers when not registered, else heartbeats; `None` for a registration.
    async fn call(
        &mut self,
        wants_shutdown: bool,
    ) -> Result<Option<HeartbeatAnswer>, MembershipCallError> {
        let Some(broker_epoch) = self.broker_epoch else {
            let registered = self.link.register(&self.registration).await?;
            tracing::info!(
                node_id = self.node_id(),
                broker_epoch = registered.broker_epoch,
                incarnation_id = %self.registration.incarnation_id,
                "registered with the controller"
            );
            self.broker_epoch = Some(registered.broker_epoch);
            self.controller_index = registered.metadata_index;
            self.fenced = true;
            return Ok(None);
        };
        let heartbeat = Heartbeat {
            node_id: self.node_id(),
            broker_epoch,
            caught_up: self.caught_up(),
            wants_shutdown,
        };
        let answer = self.link.heartbeat(heartbeat).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(MembershipCallError::Refused(_)) => "refused",
            Err(_) => "failed",
        };
        metrics::counter!("fjord_broker_heartbeats_total", "outcome" => outcome).increment(1);
        match answer {
            Ok(answer) => {
                self.controller_index = answer.metadata_index;
                if answer.fenced != self.fenced && !wants_shutdown {
                    if answer.fenced {
                        tracing::warn!(broker_epoch, "the controller fenced this broker");
                    } else {
                        tracing::info!(broker_epoch, "the controller unfenced this broker");
                    }
                }
                self.fenced = answer.fenced;
                Ok(Some(answer))
            }
            Err(error) => {
                if error.needs_registration() {
                    self.broker_epoch = None;
                }
                Err(error)
            }
        }
    }

    /// Waits, up to `limit`, until this broker has applied the metadata up to the
    /// controller's last index.
    async fn catch_up(&mut self, limit: Duration) {
        let target = self.controller_index;
        let _waited = tokio::time::timeout(
            limit,
            self.images.wait_for(|image| applied_index(image) >= target),
        )
        .await;
    }
}

/// Starts this broker's membership.
#[derive(Debug)]
pub struct BrokerHeartbeats;

impl BrokerHeartbeats {
    /// Registers `registration` through `link` and heartbeats until the broker is
    /// unfenced, then leaves a task heartbeating every interval. `images` are this
    /// broker's own metadata images (for whether it is caught up).
    pub async fn start(
        link: Arc<dyn ControllerLink>,
        registration: BrokerRegistration,
        timing: HeartbeatTiming,
        images: watch::Receiver<Arc<MetadataImage>>,
    ) -> Result<HeartbeatsHandle, StartError> {
        let node_id = registration.node_id;
        let mut member = Member {
            link,
            registration,
            images,
            broker_epoch: None,
            controller_index: 0,
            fenced: true,
        };
        let started = Instant::now();
        let deadline = started + timing.start_wait;
        let mut refused_since: Option<Instant> = None;
        let mut backoff = RETRY_BACKOFF_MIN;
        loop {
            let error = match member.call(false).await {
                // Registered: heartbeat at once.
                Ok(None) => continue,
                Ok(Some(answer)) if !answer.fenced => break,
                Ok(Some(_fenced)) => {
                    if Instant::now() >= deadline {
                        return Err(StartError::TimedOut {
                            node_id,
                            waited_ms: started.elapsed().as_millis(),
                            last: "still fenced by the controller".to_owned(),
                        });
                    }
                    if member.caught_up() {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(timing.interval);
                    } else {
                        tracing::info!(
                            node_id,
                            controller_index = member.controller_index,
                            "registered; fenced until this broker's metadata catches up with the controller's"
                        );
                        member.catch_up(timing.interval).await;
                    }
                    continue;
                }
                Err(error) => error,
            };
            if !error.is_retriable() {
                return Err(StartError::Refused {
                    node_id,
                    refusal: error,
                });
            }
            let now = Instant::now();
            if let MembershipCallError::Refused(MembershipError::DuplicateNodeId { .. }) = error {
                let since = *refused_since.get_or_insert(now);
                if now - since >= timing.session_timeout + timing.interval {
                    return Err(StartError::DuplicateNodeId {
                        node_id,
                        waited_ms: (now - since).as_millis(),
                        refusal: error,
                    });
                }
            } else {
                refused_since = None;
            }
            if now >= deadline {
                return Err(StartError::TimedOut {
                    node_id,
                    waited_ms: started.elapsed().as_millis(),
                    last: error.to_string(),
                });
            }
            tracing::warn!(
                node_id,
                %error,
                retry_in_ms = backoff.as_millis(),
                "not registered with the controller yet; retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(timing.interval);
        }
        let broker_epoch = member.broker_epoch.unwrap_or_default();
        tracing::info!(
            node_id,
            broker_epoch,
            waited_ms = started.elapsed().as_millis(),
            "broker registered and unfenced"
        );
        let (mode, modes) = watch::channel(Mode::Running);
        let (done_sender, done) = watch::channel(false);
        let task = tokio::spawn(heartbeat(member, timing.interval, modes, done_sender));
        Ok(HeartbeatsHandle {
            mode,
            done,
            task,
            broker_epoch,
        })
    }
}

/// Heartbeats every `interval` (and at once when the mode changes) until a controlled
/// shutdown is done or the handle goes.
async fn heartbeat(
    mut member: Member,
    interval: Duration,
    mut modes: watch::Receiver<Mode>,
    done: watch::Sender<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = modes.changed() => if changed.is_err() { return },
        }
        let wants_shutdown = *modes.borrow_and_update() == Mode::ShuttingDown;
        match member.call(wants_shutdown).await {
            Ok(Some(answer)) if answer.controlled_shutdown_done => {
                tracing::info!(
                    "controlled shutdown done: no leadership of this broker can move any more"
                );
                done.send_replace(true);
                return;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "heartbeat to the controller failed"),
        }
    }
}

/// The running heartbeats; dropping it stops them.
#[derive(Debug)]
pub struct HeartbeatsHandle {
    mode: watch::Sender<Mode>,
    done: watch::Receiver<bool>,
    task: JoinHandle<()>,
    broker_epoch: u64,
}

impl HeartbeatsHandle {
    /// The epoch of the registration start-up got.
    pub fn broker_epoch(&self) -> u64 {
        self.broker_epoch
    }

    /// Heartbeats asking to shut down until the controller says no leadership of this
    /// broker can move any more, for at most `limit`; then stops heartbeating. Returns
    /// whether the controller said so.
    pub async fn controlled_shutdown(&mut self, limit: Duration) -> bool {
        self.mode.send_replace(Mode::ShuttingDown);
        let done = tokio::time::timeout(limit, self.done.wait_for(|done| *done))
            .await
            .is_ok_and(|done| done.is_ok());
        self.stop().await;
        done
    }

    /// Stops heartbeating.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _stopped = (&mut self.task).await;
    }
}

impl Drop for HeartbeatsHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
