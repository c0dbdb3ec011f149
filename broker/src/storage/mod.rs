//! Storage: partitions as segmented, append-only logs of record batches.
//!
//! - [`log`]: [`PartitionLog`], the API the server, replication and groups use: append,
//!   commit (durability), read, offsets, high watermark, truncation, timestamps,
//!   retention, checkpoints, close.
//! - [`segment`]: one `.log` file with its two indexes; recovery scans.
//! - [`index`]: the memory-mapped sparse indexes (the only `unsafe` in the broker).
//! - [`epochs`]: the leader-epoch cache.
//! - [`log_ends`]: the broker-wide record of every partition's last log end.
//! - [`topic_id`]: the id of the topic a partition directory belongs to.
//! - [`node_identity`]: the node (and cluster) a data directory belongs to.
//! - [`open_files`]: the bounded, process-wide set of open sealed-segment files.
//! - [`manager`]: [`LogManager`], every partition of the broker, its background work.
//! - [`recovery`]: what recovery may do with lost durable data; gap batches.
//! - [`file_format`]: file headers and crash-safe state files.
//! - [`topic_partition`]: [`TopicPartition`], a partition's name and directory name.
//! - [`config`], [`clock`], [`error`].
//!
//! The on-disk layout is described in `docs/architecture.md`.

pub mod clock;
pub mod config;
pub mod epochs;
pub mod error;
pub mod file_format;
pub mod index;
pub mod log;
pub mod log_ends;
pub mod manager;
pub mod node_identity;
pub mod open_files;
pub mod recovery;
pub mod segment;
pub mod topic_id;
pub mod topic_partition;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Durability, LogConfig};
pub use error::StorageError;
pub use log::{AppendInfo, PartitionLog, ReadResult, RecoveryReport};
pub use manager::LogManager;
pub use recovery::{RecoverError, RecoveryAction, RecoveryMode};
pub use topic_partition::TopicPartition;
