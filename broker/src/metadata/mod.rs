//! Cluster metadata: a log of [`MetadataRecord`]s applied to an immutable
//! [`MetadataImage`] that the rest of the broker reads through a watch channel.
//!
//! - [`records`]: the record types (the only way metadata changes).
//! - [`image`]: the image as a state machine: applies records at a log
//!   [`position`], refuses entries at or before the last applied one, snapshot and
//!   restore.
//! - [`log`]: the durable local metadata log of a single-node broker.
//! - [`controller`]: validates requests (create/delete topic, change config), turns
//!   them into records, makes them durable and publishes the new image.
//! - [`topic_config`]: per-topic settings and their validation.
//! - [`raft`]: the metadata quorum's Raft log, vote and state machine storage, behind
//!   openraft (issue #14, in progress: not used by the broker yet).
//!
//! In a cluster, the same records will travel through a Raft quorum instead of the
//! local file; the image and everything that reads it stay as they are.

pub mod controller;
pub mod image;
pub mod log;
pub mod position;
pub mod raft;
pub mod records;
pub mod topic_config;

pub use controller::{Controller, CreateTopic, TopicError};
pub use image::{BrokerInfo, ImageSnapshot, MetadataImage, PartitionImage, TopicImage};
pub use position::LogPosition;
pub use records::MetadataRecord;
