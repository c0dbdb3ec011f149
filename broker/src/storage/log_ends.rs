//! `<data_dir>/log-ends`: the last known log end offset of every partition of the
//! broker, kept outside the partition directories. A partition directory that
//! disappears (a replaced disk, an operator's mistake) while its partition held data is
//! then noticed at start-up, instead of being recreated empty as if nothing happened.
//!
//! The payload is JSON (`[{"topic", "partition", "log_end_offset"}]`) in a state file
//! (see [`file_format`](super::file_format)); it is rewritten by the log manager's
//! checkpoint pass, when a partition is deleted, and at shutdown.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{Result, StorageError};
use super::file_format::{StateKind, read_state_file, write_state_file};
use super::topic_partition::TopicPartition;

const FILE_NAME: &str = "log-ends";

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    topic: String,
    partition: i32,
    log_end_offset: i64,
}

/// The log ends recorded in `data_dir`; empty when the file does not exist yet.
pub fn load(data_dir: &Path) -> Result<BTreeMap<TopicPartition, i64>> {
    let Some(payload) = read_state_file(data_dir, FILE_NAME, StateKind::LogEnds)? else {
        return Ok(BTreeMap::new());
    };
    let entries: Vec<Entry> =
        serde_json::from_slice(&payload).map_err(|error| StorageError::Corrupt {
            path: data_dir.join(FILE_NAME),
            reason: error.to_string(),
        })?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            (
                TopicPartition::new(entry.topic, entry.partition),
                entry.log_end_offset,
            )
        })
        .collect())
}

/// Replaces the file with `ends`.
pub fn store(data_dir: &Path, ends: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    let entries: Vec<Entry> = ends
        .iter()
        .map(|(partition, end)| Entry {
            topic: partition.topic.clone(),
            partition: partition.partition,
            log_end_offset: *end,
        })
        .collect();
    let payload = serde_json::to_vec(&entries).expect("log ends serialize");
    write_state_file(data_dir, FILE_NAME, StateKind::LogEnds, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let ends = BTreeMap::from([
            (TopicPartition::new("orders", 0), 4711),
            (TopicPartition::new("a-b", 3), 0),
        ]);
        store(dir.path(), &ends).unwrap();
        assert_eq!(load(dir.path()).unwrap(), ends);
    }
}
