//! What the operating system lets the broker hold, and the budgets derived from it.
//!
//! Every partition keeps files open: its active segment's log, offset index and time
//! index. A topic created with more partitions than the open-file limit allows would
//! fail half way, and the broker could not even restart with it, so topic creation is
//! checked against a partition budget first (see [`partitions_max`]).

use crate::config::BrokerConfig;
use crate::http::listener::{HTTP_CONNECTIONS_MAX, HTTP_PROBE_CONNECTIONS_MAX};

/// Files a partition keeps open: the active segment's `.log`, `.index` and
/// `.timeindex`. Sealed segments keep theirs open too, so a partition with many
/// segments holds more; the budget is for creation, not a guarantee.
pub const FILES_PER_PARTITION: u64 = 3;

/// Files kept aside for everything but partitions and connections: the metadata log,
/// the data directory lock, standard streams, the runtime's own descriptors.
const FILES_RESERVED: u64 = 64;

/// The soft limit on open files of this process; `None` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Most partitions this broker takes: `max_partitions` when set; else half of the open
/// files left after a reserve and the HTTP connections, at [`FILES_PER_PARTITION`]
/// each. The other half is for client connections, which the limit has to serve too.
pub fn partitions_max(config: &BrokerConfig) -> usize {
    if config.max_partitions > 0 {
        return config.max_partitions;
    }
    let Some(limit) = open_files_limit() else {
        return usize::MAX;
    };
    let http = (HTTP_CONNECTIONS_MAX + HTTP_PROBE_CONNECTIONS_MAX) as u64;
    let shared = limit.saturating_sub(FILES_RESERVED + http);
    usize::try_from(shared / 2 / FILES_PER_PARTITION).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setting wins; without it the budget follows the process's open-file limit.
    #[test]
    fn budget_from_setting_or_open_file_limit() {
        let set = BrokerConfig {
            max_partitions: 7,
            ..BrokerConfig::default()
        };
        assert_eq!(partitions_max(&set), 7);
        let derived = partitions_max(&BrokerConfig::default());
        match open_files_limit() {
            None => assert_eq!(derived, usize::MAX),
            Some(limit) => {
                assert!(
                    derived as u64 * FILES_PER_PARTITION * 2 <= limit,
                    "{derived} of {limit}"
                )
            }
        }
    }
}
