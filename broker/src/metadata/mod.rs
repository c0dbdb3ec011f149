//! Cluster metadata: a log of [`MetadataRecord`]s applied to an immutable
//! [`MetadataImage`] that the rest of the broker reads through a watch channel.
//!
//! - [`records`]: the record types (the only way metadata changes).
//! - [`front_end`]: pure: turns a request (create/delete topic, change config, bump a
//!   leader epoch, initialise the cluster, register, fence or unfence a broker) and the
//!   current image into records or a refusal; ids, random choices, defaults, live
//!   brokers and partition budgets are injected. Places replicas and preferred leaders
//!   evenly, and elects partition leaders when brokers are fenced and unfenced.
//! - [`image`]: the image as a state machine: applies records at a log
//!   [`position`], refuses entries at or before the last applied one, snapshot and
//!   restore.
//! - [`membership`]: pure: the active controller's view of broker sessions: registration
//!   with an incarnation id, heartbeats, fencing on session expiry, unfencing, controlled
//!   shutdown; its effects are front end requests.
//! - [`broker_sessions`]: its shell on the controller: a clock, the quorum's leadership
//!   (sessions are kept by the node that leads, afresh from when it starts leading), and
//!   the serializable calls and answers brokers exchange with it.
//! - [`forwarding`]: calls of brokers whose node does not lead the quorum to the
//!   active controller (changes, registrations, heartbeats), over the internal
//!   listener.
//! - [`heartbeats`]: the broker's side: register with an incarnation id, heartbeat,
//!   controlled shutdown, through a [`heartbeats::ControllerLink`].
//! - [`metadata_log`]: [`MetadataLog`], the seam between the controller and the
//!   quorum: propose records and wait until they are applied, watch the images they
//!   make. Behind it is this broker's member of the metadata quorum ([`raft`]); a single
//!   broker is a quorum of one.
//! - [`controller`]: the shell around the front end: serialises requests, supplies real
//!   ids and limits, proposes the records to the metadata log and answers from the image
//!   they made; on a node that does not lead, forwards requests to the one that does.
//! - [`topic_config`]: per-topic settings and their validation.
//! - [`raft`]: the metadata quorum's Raft log, vote and state machine storage and its
//!   node, behind openraft.
//! - [`log`] and [`migration`]: the local metadata log of the pre-Raft release, read
//!   once to migrate its data directory into the quorum.

pub mod broker_sessions;
pub mod controller;
pub mod controller_endpoint;
pub mod forwarding;
pub mod front_end;
pub mod heartbeats;
pub mod image;
pub mod log;
pub mod membership;
pub mod metadata_log;
pub mod migration;
pub mod position;
pub mod raft;
pub mod records;
pub mod topic_config;

pub use controller::Controller;
pub use front_end::{CreateTopic, IsrChange, MetadataRequest, TopicError};
pub use image::{BrokerInfo, ImageSnapshot, Listener, MetadataImage, PartitionImage, TopicImage};
pub use metadata_log::MetadataLog;
pub use position::LogPosition;
pub use records::{Endpoint, MetadataRecord};
