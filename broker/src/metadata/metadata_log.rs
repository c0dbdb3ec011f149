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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::image::MetadataImage;
use super::log::METADATA_DIR;
use super::raft::{AppliedImage, Leadership, QuorumConfig, QuorumNode, QuorumTiming};
pub use super::raft::{ProposeError, QuorumError, QuorumStatus, Role, VoterStatus};
use super::records::MetadataRecord;
use crate::config::BrokerConfig;

/// This broker's way to the metadata: its quorum member and the images it publishes.
#[derive(Debug)]
pub struct MetadataLog {
    node: QuorumNode,
    images: watch::Receiver<Arc<MetadataImage>>,
    /// Copies the quorum's applied images, stamped with the leader, to `images`.
    publisher: Mutex<Option<JoinHandle<()>>>,
}

impl MetadataLog {
    /// Starts this broker's quorum member on `listener` (the bound internal listener)
    /// as a quorum of one, leading as soon as this returns, with its files in
    /// `<data_dir>/__cluster_metadata/`.
    pub async fn start(config: &BrokerConfig, listener: TcpListener) -> Result<Self, QuorumError> {
        let address = listener.local_addr().map_err(QuorumError::Listener)?;
        let quorum = QuorumConfig {
            node_id: config.node_id,
            data_dir: config.data_dir.join(METADATA_DIR),
            voters: BTreeMap::from([(config.node_id, address.to_string())]),
            timing: QuorumTiming::default(),
            snapshot_every_entries: config.metadata_snapshot_entries,
        };
        let listener = crate::internal::InternalListener::from_listener(listener);
        let node = QuorumNode::start(quorum, listener).await?;
        let mut applied = node.image();
        let mut leadership = node.leadership();
        let (publish, images) =
            watch::channel(stamped(&applied.borrow_and_update(), leadership.leader()));
        let publisher = tokio::spawn(publish_images(applied, leadership, publish));
        Ok(Self {
            node,
            images,
            publisher: Mutex::new(Some(publisher)),
        })
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
