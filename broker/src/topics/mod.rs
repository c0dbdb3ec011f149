//! Topics as this broker serves them: the handles through which request handlers, the
//! group coordinator and the HTTP API reach metadata and partition logs, instead of
//! reaching the whole broker.
//!
//! - [`view`]: [`MetadataView`], the current metadata image and its changes, read-only.
//! - [`partitions`]: [`Partitions`], the log of a partition this broker leads, and a
//!   topic's effective configuration.
//! - [`reconciler`]: [`Reconciler`], which makes this broker's partition logs follow
//!   the metadata image, whoever changed it.
//! - [`admin`]: [`TopicAdmin`], creating, deleting and reconfiguring topics and
//!   recovering offline partitions: a metadata change together with what it does to
//!   the partition logs.
//!
//! Dependencies point one way: these handles use [`crate::metadata`] and
//! [`crate::storage`], and are used by the server, the group coordinator and the HTTP
//! API; the broker (`broker.rs`) builds them once at start-up and hands them out.

pub mod admin;
pub mod partitions;
pub mod reconciler;
pub mod view;

pub use admin::TopicAdmin;
pub use partitions::Partitions;
pub use reconciler::Reconciler;
pub use view::MetadataView;
