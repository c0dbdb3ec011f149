//! `<partition dir>/topic-id`: the id of the topic a partition directory belongs to.
//!
//! A directory is named after its topic's name, and a name can be reused: a topic
//! deleted and re-created while this broker was down leaves a directory of the old
//! topic under the new topic's name. The recorded id tells them apart, so the old data
//! is removed instead of being served as the new topic's (see
//! [`LogManager`](super::LogManager)). The payload is the id's 16 bytes, in a state
//! file (see [`file_format`](super::file_format)); it is written once, when the
//! directory is created or adopted.

use std::path::Path;

use uuid::Uuid;

use super::error::{Result, StorageError};
use super::file_format::{StateKind, read_state_file, write_state_file};

pub const FILE_NAME: &str = "topic-id";

/// The topic id recorded in the partition directory `dir`; `None` when there is none
/// (a new directory, or one written by a release before topic ids were recorded).
pub fn load(dir: &Path) -> Result<Option<Uuid>> {
    let Some(payload) = read_state_file(dir, FILE_NAME, StateKind::TopicId)? else {
        return Ok(None);
    };
    let bytes: [u8; 16] = payload
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::Corrupt {
            path: dir.join(FILE_NAME),
            reason: format!("a topic id is 16 bytes, this one {}", payload.len()),
        })?;
    Ok(Some(Uuid::from_bytes(bytes)))
}

/// Records `topic_id` in the partition directory `dir` (which must exist).
pub fn store(dir: &Path, topic_id: Uuid) -> Result<()> {
    write_state_file(dir, FILE_NAME, StateKind::TopicId, topic_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id round-trips; a missing file is `None`; a payload of the wrong size (a
    /// valid state file that is not an id) is refused.
    #[test]
    fn round_trip_and_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let id = Uuid::from_u128(0x86db_57d6_e871_49bb_8c71_3ab2_2c99_2b7f);
        store(dir.path(), id).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(id));
        write_state_file(dir.path(), FILE_NAME, StateKind::TopicId, b"short").unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("16 bytes"), "{error}");
    }
}
