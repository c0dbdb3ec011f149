//! Storage errors.

use std::io;
use std::path::PathBuf;

use fjord_protocol::ErrorCode;

/// What went wrong in a partition log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed. Writes and fsyncs that fail also take the log offline.
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A previous write or fsync failed; the log refuses writes until the broker
    /// restarts and recovers it, because what reached the disk is unknown.
    #[error("log {path} is offline after an earlier failure: {reason}")]
    Offline { path: PathBuf, reason: String },
    /// A file Fjord wrote does not have the expected magic, version or checksum.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// Recovery found data below the recovery point (durable, so not a torn write)
    /// missing or damaged. The log is not opened, and nothing is deleted, until an
    /// operator chooses a [`RecoveryMode`](super::RecoveryMode).
    #[error("{path}: {reason}; the partition stays offline until an operator recovers it")]
    NeedsRecovery { path: PathBuf, reason: String },
    /// Replicated batches that do not continue the log where it ends: nothing of them
    /// was written.
    #[error("{path}: replicated batch at offset {found} does not follow the log end {expected}")]
    NonContiguous {
        path: PathBuf,
        expected: i64,
        found: i64,
    },
    /// The offset is below the log start or above the log end.
    #[error("offset {offset} is outside the log's range {log_start_offset}..{log_end_offset}")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// The log could not record at start-up that it is in use (the disk is full), so
    /// it serves reads and refuses writes until that record is written; the log
    /// manager's checkpoint pass retries it.
    #[error("log {path} is read-only: {reason}")]
    ReadOnly { path: PathBuf, reason: String },
    /// The log was closed or deleted.
    #[error("log {0} is closed")]
    Closed(PathBuf),
}

impl StorageError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    /// Whether the error is a full disk (or quota): no space for a write that needs it.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if matches!(source.raw_os_error(), Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
                || code == rustix::io::Errno::DQUOT.raw_os_error()))
    }

    /// The code a client gets for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::OffsetOutOfRange { .. } | Self::NonContiguous { .. } => {
                ErrorCode::OffsetOutOfRange
            }
            Self::Closed(_) => ErrorCode::NotLeaderOrFollower,
            Self::Io { .. }
            | Self::Offline { .. }
            | Self::ReadOnly { .. }
            | Self::Corrupt { .. }
            | Self::NeedsRecovery { .. } => ErrorCode::StorageError,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
