//! The metadata log as the rest of the broker sees it: propose records, wait until they
//! are applied, and watch the image they make. The controller writes through it; every
//! reader of metadata follows its images.
//!
//! Behind it is this broker's member of the metadata quorum ([`super::raft`]), serving
//! on the internal listener with its files in `<data_dir>/__cluster_metadata/`. A single
//! broker is a quorum of one whose only voter is itself, so there is one code path for
//! metadata whether the broker is alone or not.
//!
//! The published image names the quorum's current leader as the active controller
//! (`controller_id`, -1 while none is known): the image the quorum applies is the same
//! on every member, who leads is each member's own view.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::image::MetadataImage;
use super::log::METADATA_DIR;
use super::raft::{AppliedImage, QuorumConfig, QuorumNode, QuorumTiming};
pub use super::raft::{Leadership, ProposeError, QuorumError, QuorumStatus, Role, VoterStatus};
use super::records::MetadataRecord;
use crate::config::BrokerConfig;
use crate::internal::{InternalService, NoService};

/// This broker's way to the metadata: its quorum member and the images it publishes.
#[derive(Debug)]
pub struct MetadataLog {
    node: QuorumNode,
    images: watch::Receiver<Arc<MetadataImage>>,
    /// Copies the quorum's applied images, stamped with the leader, to `images`.
    publisher: Mutex<Option<JoinHandle<()>>>,
    /// See [`MetadataLog::learner_address`].
    learner_address: Option<String>,
}

impl MetadataLog {
    /// Starts this broker's quorum member on `listener` (the bound internal listener),
    /// with its files in `<data_dir>/__cluster_metadata/`. Its voters are
    /// `controller_quorum_voters`, or when that is empty this node alone at the
    /// listener's address. A quorum of one leads as soon as this returns; a member of
    /// several voters returns once it has joined, and learns its leader by election.
    pub async fn start(config: &BrokerConfig, listener: TcpListener) -> Result<Self, QuorumError> {
        Self::start_serving(config, listener, Arc::new(NoService)).await
    }

    /// [`start`](Self::start), with `controller` answering the calls other brokers
    /// make to this node's controller on the internal listener (see
    /// [`super::forwarding`]).
    pub async fn start_serving<C: InternalService>(
        config: &BrokerConfig,
        listener: TcpListener,
        controller: Arc<C>,
    ) -> Result<Self, QuorumError> {
        let address = listener.local_addr().map_err(QuorumError::Listener)?;
        let mut voters = crate::quorum_voters::parse(&config.controller_quorum_voters)
            .map_err(|error| QuorumError::Config(error.to_string()))?;
        crate::quorum_voters::check_own_address(config.node_id, &voters, address)
            .map_err(|error| QuorumError::Config(error.to_string()))?;
        let learner_address = learner_address(config, address)?;
        if voters.is_empty() {
            voters.insert(config.node_id, address.to_string());
        }
        let quorum = QuorumConfig {
            node_id: config.node_id,
            voter: config.roles().controller,
            data_dir: config.data_dir.join(METADATA_DIR),
            voters,
            timing: quorum_timing(config),
            snapshot_every_entries: config.metadata_snapshot_entries,
        };
        let listener = crate::internal::InternalListener::from_listener(listener);
        let node = QuorumNode::start(quorum, listener, controller).await?;
        let mut applied = node.image();
        let mut leadership = node.leadership();
        let (publish, images) =
            watch::channel(stamped(&applied.borrow_and_update(), leadership.leader()));
        let publisher = tokio::spawn(publish_images(applied, leadership, publish));
        Ok(Self {
            node,
            images,
            publisher: Mutex::new(Some(publisher)),
            learner_address,
        })
    }

    /// Where the leader reaches this node when it is a learner (a broker-only node):
    /// its internal listener; `None` for a voter, which the voter list gives.
    pub fn learner_address(&self) -> Option<&str> {
        self.learner_address.as_deref()
    }

    /// Adds the broker-only node `node_id` as a learner at `address`, on the leader.
    pub async fn add_learner(&self, node_id: i32, address: String) -> Result<(), ProposeError> {
        self.node.add_learner(node_id, address).await
    }

    /// The ids of the voters, in order.
    pub fn voter_ids(&self) -> Vec<i32> {
        self.node.voter_ids()
    }

    /// Appends `records` as one entry of the log and waits until it is applied and
    /// published: the image returned holds the change (and any entry applied after it).
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, ProposeError> {
        let applied = self.node.propose(records).await?;
        let mut images = self.images.clone();
        let published = images
            .wait_for(|image| {
                image
                    .applied_position()
                    .is_some_and(|position| position.index >= applied.index)
            })
            .await
            .map_err(|_| ProposeError::ShutDown)?;
        Ok(published.clone())
    }

    /// The image now.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// A receiver of the current image and every later one.
    pub fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.clone()
    }

    /// Who leads the quorum as this broker's member sees it (the active controller),
    /// in which term, and a way to wait for a change.
    pub fn leadership(&self) -> Leadership {
        self.node.leadership()
    }

    /// The internal listener address of voter `node_id`, where its controller is
    /// called.
    pub fn voter_address(&self, node_id: i32) -> Option<String> {
        self.node.voter_address(node_id).map(str::to_owned)
    }

    /// How long a proposal waits to be committed before it fails.
    pub fn propose_timeout(&self) -> std::time::Duration {
        self.node.propose_timeout()
    }

    /// How long connecting to another voter may take.
    pub fn connect_timeout(&self) -> std::time::Duration {
        self.node.connect_timeout()
    }

    /// The quorum as this broker sees it: leader, term, positions, voters.
    pub async fn status(&self) -> QuorumStatus {
        self.node.status().await
    }

    /// Stops the quorum member; later proposals fail with [`ProposeError::ShutDown`]
    /// and the last image stays readable.
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
        let publisher = self
            .publisher
            .lock()
            .expect("publisher lock poisoned")
            .take();
        if let Some(publisher) = publisher {
            publisher.abort();
            let _aborted = publisher.await;
        }
    }
}

/// The applied image with `leader` as its active controller (-1 for none).
fn stamped(applied: &AppliedImage, leader: Option<i32>) -> Arc<MetadataImage> {
    let controller_id = leader.unwrap_or(-1);
    if applied.image.controller_id == controller_id {
        return applied.image.clone();
    }
    let mut image = (*applied.image).clone();
    image.controller_id = controller_id;
    Arc::new(image)
}

/// Publishes every new applied image, and every change of leader, until the quorum
/// member stops.
async fn publish_images(
    mut applied: watch::Receiver<AppliedImage>,
    mut leadership: Leadership,
    publish: watch::Sender<Arc<MetadataImage>>,
) {
    loop {
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            alive = leadership.changed() => if !alive { return },
        }
        let leader = leadership.leader();
        let next = applied.borrow_and_update();
        publish.send_if_modified(|image| {
            let same = image.applied_position() == next.image.applied_position()
                && image.controller_id == leader.unwrap_or(-1);
            if !same {
                *image = stamped(&next, leader);
            }
            !same
        });
    }
}

/// The address a learner gives the leader: its internal listener's, with
/// `advertised_host` for a listener bound to every interface; `None` for a voter.
fn learner_address(
    config: &BrokerConfig,
    bound: SocketAddr,
) -> Result<Option<String>, QuorumError> {
    if config.roles().controller {
        return Ok(None);
    }
    if !bound.ip().is_unspecified() {
        return Ok(Some(bound.to_string()));
    }
    if config.advertised_host.is_empty() {
        return Err(QuorumError::Config(format!(
            "a broker-only node whose internal listener is bound to {bound} needs advertised_host: the leader must be told where to reach it"
        )));
    }
    Ok(Some(format!("{}:{}", config.advertised_host, bound.port())))
}

/// The quorum timing a broker's settings give: the election timeout ranges from
/// `metadata_election_timeout_ms` to twice that.
fn quorum_timing(config: &BrokerConfig) -> QuorumTiming {
    let election_timeout = Duration::from_millis(config.metadata_election_timeout_ms);
    QuorumTiming {
        heartbeat_interval: Duration::from_millis(config.metadata_heartbeat_interval_ms),
        election_timeout_min: election_timeout,
        election_timeout_max: election_timeout * 2,
        propose_timeout: Duration::from_millis(config.metadata_propose_timeout_ms),
        ..QuorumTiming::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    async fn start(config: &BrokerConfig) -> (MetadataLog, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let log = MetadataLog::start(config, listener).await.unwrap();
        println!("a quorum of one started leading in {:?}", started.elapsed());
        (log, address)
    }

    /// A quorum of one leads as soon as it has started, every time: new, and restarted
    /// (here on another port, which a quorum of one does not depend on). A proposal
    /// returns the image with the change, published to every watcher, naming this node
    /// as controller.
    #[tokio::test]
    async fn a_quorum_of_one_leads_at_once_on_every_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_tests(dir.path());
        config.node_id = 4;
        let (log, address) = start(&config).await;
        let mut watcher = log.images();
        let record = MetadataRecord::ClusterInitialized {
            cluster_id: "one".to_owned(),
        };
        let image = log.propose(vec![record]).await.unwrap();
        assert_eq!(image.cluster_id, "one");
        assert_eq!(image.controller_id, 4);
        assert_eq!(watcher.borrow_and_update().cluster_id, "one");
        let status = log.status().await;
        assert_eq!((status.role, status.leader), (Role::Leader, Some(4)));
        assert_eq!(status.voters.len(), 1);
        assert_eq!(status.voters[0].address, address);
        log.shutdown().await;

        for _ in 0..2 {
            let (log, _) = start(&config).await;
            let status = log.status().await;
            assert_eq!((status.role, status.leader), (Role::Leader, Some(4)));
            assert_eq!(status.voters.len(), 1);
            assert_eq!(log.image().cluster_id, "one");
            assert_eq!(log.image().controller_id, 4);
            log.shutdown().await;
        }
    }

    /// Three members given one voter list form one quorum: every member's images name
    /// the same active controller, a proposal to a member that does not lead is refused
    /// with the leader's id and address, and one to the leader reaches every image.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_listed_voters_agree_on_one_controller() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addresses: Vec<String> = listeners
            .iter()
            .map(|listener| listener.local_addr().unwrap().to_string())
            .collect();
        let voters = (1..=3)
            .zip(&addresses)
            .map(|(node_id, address)| format!("{node_id}@{address}"))
            .collect::<Vec<_>>()
            .join(",");
        let started = Instant::now();
        let mut logs = Vec::new();
        for ((node_id, dir), listener) in (1..=3).zip(&dirs).zip(listeners) {
            let mut config = BrokerConfig::for_tests(dir.path());
            config.node_id = node_id;
            config.controller_quorum_voters = voters.clone();
            logs.push(MetadataLog::start(&config, listener).await.unwrap());
        }

        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        let leader = loop {
            let controllers: Vec<i32> = logs.iter().map(|log| log.image().controller_id).collect();
            if controllers[0] != -1 && controllers.iter().all(|id| *id == controllers[0]) {
                break controllers[0];
            }
            assert!(
                Instant::now() < deadline,
                "no agreed controller: {controllers:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        println!(
            "three voters agreed on controller {leader} in {:?}",
            started.elapsed()
        );
        let record = |cluster_id: &str| {
            vec![MetadataRecord::ClusterInitialized {
                cluster_id: cluster_id.to_owned(),
            }]
        };
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        match logs[(follower - 1) as usize]
            .propose(record("refused"))
            .await
        {
            Err(ProposeError::NotLeader {
                node_id,
                leader: Some(hint),
            }) => {
                assert_eq!(node_id, follower);
                assert_eq!(hint.node_id, leader);
                assert_eq!(hint.address, addresses[(leader - 1) as usize]);
            }
            other => panic!("a follower took a proposal: {other:?}"),
        }
        let proposed = Instant::now();
        let image = logs[(leader - 1) as usize]
            .propose(record("three"))
            .await
            .unwrap();
        assert_eq!(image.cluster_id, "three");
        for log in &logs {
            let mut images = log.images();
            let applied = tokio::time::timeout_at(
                deadline.into(),
                images.wait_for(|image| image.cluster_id == "three"),
            )
            .await;
            assert!(applied.is_ok(), "a member never applied the proposal");
        }
        println!(
            "a proposal reached all three images in {:?}",
            proposed.elapsed()
        );
        for log in &logs {
            log.shutdown().await;
        }
    }

    /// A voter list naming only this node makes the same quorum of one, with the
    /// listed address as the voter's.
    #[tokio::test]
    async fn a_listed_single_voter_is_a_quorum_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_tests(dir.path());
        config.node_id = 2;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        config.controller_quorum_voters = format!("2@localhost:{port}");
        let log = MetadataLog::start(&config, listener).await.unwrap();
        let status = log.status().await;
        assert_eq!((status.role, status.leader), (Role::Leader, Some(2)));
        assert_eq!(status.voters.len(), 1);
        assert_eq!(status.voters[0].address, format!("localhost:{port}"));
        log.shutdown().await;

        // Listed at another port than it listens on: refused, saying so.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = MetadataLog::start(&config, listener).await.unwrap_err();
        assert!(error.to_string().contains("node 2 is listed at"), "{error}");
    }
}
