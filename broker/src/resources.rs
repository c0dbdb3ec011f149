//! What the operating system lets the broker hold, and the budgets derived from it.
//!
//! The open-file limit is shared by three kinds of user: partitions, sealed segments
//! being read, and connections. A partition holds its active segment's `.log` open
//! (its indexes are memory-mapped and keep no descriptor) and opens a few more files
//! for a moment when it rolls a segment or writes a checkpoint. Sealed segments hold
//! no descriptor of their own: reads open them through a bounded least-recently-used
//! set ([`segment_files_max`], see `storage::open_files`), so a topic with thousands of
//! small segments costs no more descriptors than one with a single segment. A topic
//! created with more partitions than the limit allows would fail half way, and the
//! broker could not even restart with it, so topic creation is checked against a
//! partition budget first (see [`partitions_max`]).

use crate::config::BrokerConfig;
use crate::http::listener::{HTTP_CONNECTIONS_MAX, HTTP_PROBE_CONNECTIONS_MAX};

/// Files counted per partition: the active segment's `.log` held open, and room for
/// the `.index` and `.timeindex` (or a checkpoint and its directory) it opens for a
/// moment when it rolls or checkpoints.
pub const FILES_PER_PARTITION: u64 = 3;

/// Files kept aside for everything but partitions and connections: the metadata log,
/// the data directory lock, standard streams, the runtime's own descriptors.
const FILES_RESERVED: u64 = 64;

/// Most sealed-segment files the derived budget keeps open; more rarely helps reads,
/// which mostly go to the newest segments.
const SEGMENT_FILES_DERIVED_MAX: u64 = 4096;

/// The soft limit on open files of this process; `None` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Open files left after the reserve and the HTTP connections.
fn files_shared(limit: u64) -> u64 {
    let http = (HTTP_CONNECTIONS_MAX + HTTP_PROBE_CONNECTIONS_MAX) as u64;
    limit.saturating_sub(FILES_RESERVED + http)
}

/// Most sealed-segment files kept open: `max_open_segment_files` when set; else an
/// eighth of the shared open files, between 16 and [`SEGMENT_FILES_DERIVED_MAX`].
pub fn segment_files_max(config: &BrokerConfig) -> usize {
    if config.max_open_segment_files > 0 {
        return config.max_open_segment_files;
    }
    let derived = open_files_limit().map_or(SEGMENT_FILES_DERIVED_MAX, |limit| {
        (files_shared(limit) / 8).clamp(16, SEGMENT_FILES_DERIVED_MAX)
    });
    derived as usize
}

/// Most partitions this broker takes: `max_partitions` when set; else half of the open
/// files left after a reserve, the HTTP connections and the sealed-segment files, at
/// [`FILES_PER_PARTITION`] each. The other half is for client connections, which the
/// limit has to serve too.
pub fn partitions_max(config: &BrokerConfig) -> usize {
    if config.max_partitions > 0 {
        return config.max_partitions;
    }
    let Some(limit) = open_files_limit() else {
        return usize::MAX;
    };
    let shared = files_shared(limit).saturating_sub(segment_files_max(config) as u64);
    usize::try_from(shared / 2 / FILES_PER_PARTITION).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings win; without them the budgets follow the process's open-file
    /// limit, and partitions and sealed-segment files together stay within it.
    #[test]
    fn budget_from_setting_or_open_file_limit() {
        let set = BrokerConfig {
            max_partitions: 7,
            max_open_segment_files: 9,
            ..BrokerConfig::default()
        };
        assert_eq!(partitions_max(&set), 7);
        assert_eq!(segment_files_max(&set), 9);
        let defaults = BrokerConfig::default();
        let derived = partitions_max(&defaults);
        let segment_files = segment_files_max(&defaults) as u64;
        match open_files_limit() {
            None => assert_eq!(derived, usize::MAX),
            Some(limit) => {
                assert!(
                    derived as u64 * FILES_PER_PARTITION * 2 + segment_files <= limit,
                    "{derived} partitions and {segment_files} segment files of {limit}"
                )
            }
        }
    }
}
