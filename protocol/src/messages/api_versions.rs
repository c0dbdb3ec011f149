//! ApiVersions (key 10): which versions of which APIs the broker speaks.
//!
//! ```text
//! request  := (empty)
//! response := apis:array[api_key:int16 min_version:int16 max_version:int16]
//! ```

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::api::ApiKey;
use crate::limits::API_ENTRIES_MAX;
use crate::wire::{DecodeError, Reader, put_array};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiVersionsRequest;

impl Message for ApiVersionsRequest {
    fn encode(&self, _out: &mut BytesMut) {}
    fn decode(_reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    pub api_key: i16,
    pub min_version: i16,
    pub max_version: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersionsResponse {
    pub apis: Vec<ApiVersion>,
}

impl ApiVersionsResponse {
    /// The ranges of this build.
    pub fn current() -> Self {
        let apis = ApiKey::ALL
            .into_iter()
            .map(|api| ApiVersion {
                api_key: api.code(),
                min_version: api.versions().min,
                max_version: api.versions().max,
            })
            .collect();
        Self { apis }
    }
}

impl Message for ApiVersionsResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.apis, |out, api| {
            out.put_i16(api.api_key);
            out.put_i16(api.min_version);
            out.put_i16(api.max_version);
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let apis = reader.array("apis", API_ENTRIES_MAX, 6, |reader| {
            Ok(ApiVersion {
                api_key: reader.i16("api_key")?,
                min_version: reader.i16("min_version")?,
                max_version: reader.i16("max_version")?,
            })
        })?;
        Ok(Self { apis })
    }
}
