//! Errors of the metadata quorum's storage.

use crate::metadata::image::ApplyError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    /// A file could not be read or written, or is damaged beyond a torn tail.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An entry would leave a hole in the log or repeat an index.
    #[error("log entry {index} cannot follow {previous}")]
    NotContiguous { index: u64, previous: String },
    /// An entry larger than the log accepts.
    #[error("log entry {index} is {bytes} bytes, more than the {limit_bytes} allowed")]
    EntryTooLarge {
        index: u64,
        bytes: usize,
        limit_bytes: u32,
    },
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task did not finish: {0}")]
    TaskFailed(String),
    /// An entry at or before the position the image has applied: openraft applies
    /// each committed entry once, in order, so this is a bug, never an operating error.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A snapshot received from the leader cannot be read.
    #[error("snapshot cannot be read: {0}")]
    BadSnapshot(String),
}
