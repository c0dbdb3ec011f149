//! Settings shared by every part of the client: where the cluster is, how long to wait
//! for it, how to back off when it is away.
//!
//! The producer and consumer have their own settings
//! ([`ProducerConfig`](crate::ProducerConfig), [`ConsumerConfig`](crate::ConsumerConfig));
//! this struct holds what the connection and metadata layers need.

use std::time::Duration;

use fjord_protocol::limits::CLIENT_ID_BYTES_MAX;

use crate::error::{Error, Result};

/// The address the `fjord` tool and the examples use when none is given.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9192";

/// Most bootstrap addresses accepted; a longer list is a configuration mistake.
pub const BOOTSTRAP_ADDRESSES_MAX: usize = 1_024;

/// Connection and metadata settings.
///
/// ```
/// use fjord_client::ClientConfig;
///
/// let mut config = ClientConfig::new(["127.0.0.1:9192"]);
/// config.request_timeout_ms = 10_000;
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `host:port` addresses of brokers to learn the cluster from. One reachable broker
    /// is enough; the others are tried in order when it is not.
    pub bootstrap: Vec<String>,
    /// Sent in every request header so that broker logs and metrics can tell clients
    /// apart. At most 255 bytes.
    pub client_id: String,
    /// How long a request may wait for its response (on top of any long-poll wait the
    /// request itself asks the broker for).
    pub request_timeout_ms: u64,
    /// How long opening a TCP connection and negotiating API versions may take.
    pub connect_timeout_ms: u64,
    /// The first wait before reconnecting to a broker that failed; doubled on every
    /// further failure up to `reconnect_backoff_max_ms`.
    pub reconnect_backoff_ms: u64,
    /// The longest wait between reconnection attempts.
    pub reconnect_backoff_max_ms: u64,
    /// How often cached metadata is refreshed even when nothing went wrong.
    pub metadata_refresh_ms: u64,
    /// Requests one connection may have waiting for a response; more wait their turn.
    pub in_flight_requests_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec![DEFAULT_BOOTSTRAP.to_owned()],
            client_id: "fjord-client".to_owned(),
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            reconnect_backoff_ms: 50,
            reconnect_backoff_max_ms: 2_000,
            metadata_refresh_ms: 5 * 60 * 1_000,
            in_flight_requests_max: 64,
        }
    }
}

impl ClientConfig {
    /// Default settings with the given bootstrap addresses.
    pub fn new<I, S>(bootstrap: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Default settings with bootstrap addresses from a comma-separated list, as given
    /// to `--bootstrap` or `FJORD_BOOTSTRAP` (`"a:9192,b:9192"`).
    pub fn from_bootstrap_list(list: &str) -> Self {
        Self::new(
            list.split(',')
                .map(str::trim)
                .filter(|address| !address.is_empty()),
        )
    }

    /// Rejects settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(Error::Config("no bootstrap address given".into()));
        }
        if self.bootstrap.len() > BOOTSTRAP_ADDRESSES_MAX {
            return Err(Error::Config(format!(
                "{} bootstrap addresses given, at most {BOOTSTRAP_ADDRESSES_MAX} allowed",
                self.bootstrap.len()
            )));
        }
        for address in &self.bootstrap {
            if !address.contains(':') {
                return Err(Error::Config(format!(
                    "bootstrap address '{address}' has no port (expected host:port)"
                )));
            }
        }
        if self.client_id.len() > CLIENT_ID_BYTES_MAX {
            return Err(Error::Config(format!(
                "client_id is {} bytes, at most {CLIENT_ID_BYTES_MAX} allowed",
                self.client_id.len()
            )));
        }
        for (name, value) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("reconnect_backoff_ms", self.reconnect_backoff_ms),
            ("metadata_refresh_ms", self.metadata_refresh_ms),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be positive")));
            }
        }
        if self.reconnect_backoff_max_ms < self.reconnect_backoff_ms {
            return Err(Error::Config(
                "reconnect_backoff_max_ms must not be below reconnect_backoff_ms".into(),
            ));
        }
        if self.in_flight_requests_max == 0 {
            return Err(Error::Config(
                "in_flight_requests_max must be positive".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A comma-separated list tolerates spaces and empty entries; nonsense is refused.
    #[test]
    fn bootstrap_list_and_validation() {
        let config = ClientConfig::from_bootstrap_list(" a:1, b:2,,");
        assert_eq!(config.bootstrap, ["a:1", "b:2"]);
        config.validate().unwrap();
        assert!(ClientConfig::from_bootstrap_list("").validate().is_err());
        assert!(ClientConfig::new(["nohost"]).validate().is_err());
        let inverted = ClientConfig {
            reconnect_backoff_max_ms: 1,
            ..ClientConfig::default()
        };
        assert!(inverted.validate().is_err());
    }
}
