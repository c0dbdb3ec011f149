//! API version negotiation.
//!
//! The first request on every connection is ApiVersions. For each API the client uses
//! the highest version inside both its own range and the broker's; an API without a
//! common version is marked unavailable, and a request for it fails with
//! [`Error::UnsupportedApi`](crate::Error::UnsupportedApi). Failing per API rather
//! than per connection lets a client produce to a broker that, say, refuses topic
//! administration.

use fjord_protocol::ApiKey;
use fjord_protocol::api::VersionRange;
use fjord_protocol::messages::ApiVersionsResponse;

/// The version to speak for each API on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NegotiatedVersions {
    /// Indexed like [`ApiKey::ALL`].
    versions: [Option<i16>; ApiKey::ALL.len()],
}

impl NegotiatedVersions {
    /// Picks, for every API this build knows, the highest version both sides speak.
    /// `ours` gives this build's range (a parameter so that tests can vary it).
    pub(crate) fn negotiate(
        broker: &ApiVersionsResponse,
        ours: impl Fn(ApiKey) -> VersionRange,
    ) -> Self {
        let mut versions = [None; ApiKey::ALL.len()];
        for (slot, api) in versions.iter_mut().zip(ApiKey::ALL) {
            let own = ours(api);
            // A broker that lists an API twice is odd; the first entry wins.
            let Some(theirs) = broker.apis.iter().find(|entry| entry.api_key == api.code()) else {
                continue;
            };
            let low = own.min.max(theirs.min_version);
            let high = own.max.min(theirs.max_version);
            if low <= high {
                *slot = Some(high);
            }
        }
        Self { versions }
    }

    /// The version to use for `api`, or `None` when the two sides share none.
    pub(crate) fn version(&self, api: ApiKey) -> Option<i16> {
        let index = ApiKey::ALL.iter().position(|known| *known == api)?;
        self.versions[index]
    }
}

#[cfg(test)]
mod tests {
    use fjord_protocol::messages::ApiVersion;

    use super::*;

    fn broker(apis: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse {
            apis: apis
                .iter()
                .map(|(api, min, max)| ApiVersion {
                    api_key: api.code(),
                    min_version: *min,
                    max_version: *max,
                })
                .collect(),
        }
    }

    /// The highest version inside both ranges is chosen for each API.
    #[test]
    fn highest_common_version() {
        let ours = |_| VersionRange { min: 0, max: 3 };
        let negotiated = NegotiatedVersions::negotiate(
            &broker(&[(ApiKey::Produce, 1, 5), (ApiKey::Fetch, 0, 2)]),
            ours,
        );
        assert_eq!(negotiated.version(ApiKey::Produce), Some(3));
        assert_eq!(negotiated.version(ApiKey::Fetch), Some(2));
    }

    /// Disjoint ranges and APIs the broker does not list have no version; unknown
    /// keys from a newer broker are ignored.
    #[test]
    fn no_common_version() {
        let ours = |_| VersionRange { min: 2, max: 3 };
        let negotiated = NegotiatedVersions::negotiate(
            &broker(&[(ApiKey::Produce, 0, 1), (ApiKey::Fetch, 3, 9)]),
            ours,
        );
        assert_eq!(negotiated.version(ApiKey::Produce), None);
        assert_eq!(negotiated.version(ApiKey::Fetch), Some(3));
        assert_eq!(negotiated.version(ApiKey::Metadata), None);
    }

    /// Against a broker of this very build every API negotiates to its version.
    #[test]
    fn same_build_speaks_everything() {
        let negotiated =
            NegotiatedVersions::negotiate(&ApiVersionsResponse::current(), ApiKey::versions);
        for api in ApiKey::ALL {
            assert_eq!(negotiated.version(api), Some(api.versions().max));
        }
    }
}
