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
//!   shutdown; its effects are front end requests (not wired to the network yet).
//! - [`log`]: the durable local metadata log of a single-node broker.
//! - [`controller`]: the shell around the front end: serialises requests, supplies real
//!   ids and limits, makes the records durable, applies them and publishes the image.
//! - [`topic_config`]: per-topic settings and their validation.
//! - [`raft`]: the metadata quorum's Raft log, vote and state machine storage, behind
//!   openraft (issue #14, in progress: not used by the broker yet).
//!
//! In a cluster, the same records will travel through a Raft quorum instead of the
//! local file; the front end, the image and everything that reads it stay as they are.

pub mod controller;
pub mod front_end;
pub mod image;
pub mod log;
pub mod membership;
pub mod position;
pub mod raft;
pub mod records;
pub mod topic_config;

pub use controller::Controller;
pub use front_end::{CreateTopic, MetadataRequest, TopicError};
pub use image::{BrokerInfo, ImageSnapshot, MetadataImage, PartitionImage, TopicImage};
pub use position::LogPosition;
pub use records::MetadataRecord;
