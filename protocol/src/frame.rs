//! Frames and headers.
//!
//! ```text
//! frame            := length:int32  payload:[length bytes]      0 < length <= FRAME_BYTES_MAX
//! request payload  := api_key:int16  api_version:int16  correlation_id:int32
//!                     client_id:nullable string (<= CLIENT_ID_BYTES_MAX)  body
//! response payload := correlation_id:int32  error_code:int16  body (only when error_code = 0)
//! ```
//!
//! The response header's error code reports failures of the request as a whole
//! (unknown API key, unsupported version, undecodable body, timeout, shutdown); when it
//! is not `NONE` no body follows, so a client can read it without knowing the body
//! layout. Errors about one topic or partition travel inside the body.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ErrorCode;
use crate::limits::{CLIENT_ID_BYTES_MAX, FRAME_BYTES_MAX};
use crate::wire::{DecodeError, Reader, put_nullable_string};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Bytes of a response header.
pub const RESPONSE_HEADER_BYTES: usize = 6;

/// The result of decoding from a buffer that may hold only part of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// A value, and how many bytes of the buffer it took.
    Complete { value: T, consumed: usize },
}

/// Finds the next frame in `buf`: its payload spans `buf[4..consumed]`.
///
/// A length of zero, a negative length or one above [`FRAME_BYTES_MAX`] is invalid, and
/// is reported as soon as the four length bytes have arrived, before the payload.
pub fn decode_frame(buf: &[u8]) -> Result<Decoded<()>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Ok(Decoded::Incomplete);
    };
    let length = i32::from_be_bytes(*prefix);
    if length <= 0 {
        return Err(DecodeError::InvalidValue {
            field: "frame length",
            value: length.into(),
        });
    }
    let length = length as usize;
    if length > FRAME_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            field: "frame length",
            value: length as i64,
            max: FRAME_BYTES_MAX,
        });
    }
    let consumed = LENGTH_PREFIX_BYTES + length;
    if buf.len() < consumed {
        return Ok(Decoded::Incomplete);
    }
    Ok(Decoded::Complete {
        value: (),
        consumed,
    })
}

/// The header of every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The raw API key: unknown keys must still be answered, so it is not an enum here.
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

impl RequestHeader {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_i16(self.api_key);
        out.put_i16(self.api_version);
        out.put_i32(self.correlation_id);
        put_nullable_string(out, self.client_id.as_deref());
    }

    pub fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            api_key: reader.i16("api_key")?,
            api_version: reader.i16("api_version")?,
            correlation_id: reader.i32("correlation_id")?,
            client_id: match reader.nullable_string("client_id")? {
                Some(id) if id.len() > CLIENT_ID_BYTES_MAX => {
                    return Err(DecodeError::TooLarge {
                        field: "client_id",
                        value: id.len() as i64,
                        max: CLIENT_ID_BYTES_MAX,
                    });
                }
                other => other,
            },
        })
    }
}

/// The header of every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: i32,
    pub error_code: ErrorCode,
}

impl ResponseHeader {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.correlation_id);
        out.put_i16(self.error_code.code());
    }

    pub fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            correlation_id: reader.i32("correlation_id")?,
            error_code: ErrorCode::from_code(reader.i16("error_code")?),
        })
    }
}

/// The bytes of `frame` after its length prefix; a frame too short to hold the prefix
/// is truncated rather than a panic.
fn payload(frame: &Bytes) -> Result<Bytes, DecodeError> {
    if frame.len() < LENGTH_PREFIX_BYTES {
        return Err(DecodeError::Truncated {
            field: "frame length",
            needed: LENGTH_PREFIX_BYTES,
            available: frame.len(),
        });
    }
    Ok(frame.slice(LENGTH_PREFIX_BYTES..))
}

/// Splits a complete request frame (as found by [`decode_frame`], length prefix
/// included) into its header and a zero-copy body.
pub fn split_request(frame: Bytes) -> Result<(RequestHeader, Bytes), DecodeError> {
    let mut reader = Reader::new(payload(&frame)?);
    let header = RequestHeader::decode(&mut reader)?;
    let body_start = frame.len() - reader.remaining();
    Ok((header, frame.slice(body_start..)))
}

/// The correlation id to answer a request under when [`split_request`] refused its
/// header with `error`, or `None` when the header cannot be answered. A header whose
/// fields all lie inside the frame but hold a refused value (a client id longer than
/// `CLIENT_ID_BYTES_MAX`, invalid UTF-8, a negative length other than -1) is answered
/// with `INVALID_REQUEST`: the frame itself was read, so the stream is intact. A header
/// that runs past the end of its frame (or a payload too short for a correlation id)
/// means the peer's lengths disagree, and the connection is closed.
pub fn answerable_correlation_id(frame: &[u8], error: &DecodeError) -> Option<i32> {
    if matches!(error, DecodeError::Truncated { .. }) {
        return None;
    }
    // length prefix, api_key, api_version, then the correlation id.
    let start = LENGTH_PREFIX_BYTES + 4;
    let bytes = frame.get(start..start + 4)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// Splits a complete response frame into its header and body.
pub fn split_response(frame: Bytes) -> Result<(ResponseHeader, Bytes), DecodeError> {
    let mut reader = Reader::new(payload(&frame)?);
    let header = ResponseHeader::decode(&mut reader)?;
    Ok((
        header,
        frame.slice(LENGTH_PREFIX_BYTES + RESPONSE_HEADER_BYTES..),
    ))
}

/// Starts a frame in `out` and returns the position of its length prefix, to pass
/// to [`finish_frame`] once the payload has been written.
pub fn start_frame(out: &mut BytesMut) -> usize {
    let start = out.len();
    out.put_i32(0);
    start
}

/// Writes the length prefix of the frame started at `start`.
pub fn finish_frame(out: &mut BytesMut, start: usize) {
    let length = out.len() - start - LENGTH_PREFIX_BYTES;
    assert!(
        length <= FRAME_BYTES_MAX,
        "frame of {length} bytes exceeds FRAME_BYTES_MAX"
    );
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(length as i32).to_be_bytes());
}

/// Encodes a whole request frame: prefix, header and the body `write_body` writes.
pub fn encode_request(
    out: &mut BytesMut,
    header: &RequestHeader,
    write_body: impl FnOnce(&mut BytesMut),
) {
    let start = start_frame(out);
    header.encode(out);
    write_body(out);
    finish_frame(out, start);
}

/// Encodes a whole response frame. The body is written only when the header carries
/// no error, as the layout requires.
pub fn encode_response(
    out: &mut BytesMut,
    header: ResponseHeader,
    write_body: impl FnOnce(&mut BytesMut),
) {
    let start = start_frame(out);
    header.encode(out);
    if header.error_code.is_ok() {
        write_body(out);
    }
    finish_frame(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder waits for the prefix and the payload, and refuses bad lengths early.
    #[test]
    fn frame_boundaries() {
        assert_eq!(decode_frame(&[0, 0]), Ok(Decoded::Incomplete));
        assert_eq!(decode_frame(&[0, 0, 0, 2, 9]), Ok(Decoded::Incomplete));
        assert_eq!(
            decode_frame(&[0, 0, 0, 2, 9, 9, 7]),
            Ok(Decoded::Complete {
                value: (),
                consumed: 6
            })
        );
        assert!(decode_frame(&[0, 0, 0, 0]).is_err());
        assert!(decode_frame(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_frame(&(FRAME_BYTES_MAX as i32 + 1).to_be_bytes()).is_err());
    }

    /// A header that fits its frame but holds an over-long client id is answerable under
    /// its correlation id; one that runs past its frame is not.
    #[test]
    fn header_errors_answerable_only_inside_the_frame() {
        let mut out = BytesMut::new();
        let header = RequestHeader {
            api_key: 18,
            api_version: 0,
            correlation_id: 42,
            client_id: Some("c".repeat(CLIENT_ID_BYTES_MAX + 1)),
        };
        encode_request(&mut out, &header, |_| {});
        let frame = out.freeze();
        let error = split_request(frame.clone()).unwrap_err();
        assert!(matches!(error, DecodeError::TooLarge { .. }), "{error}");
        assert_eq!(answerable_correlation_id(&frame, &error), Some(42));

        let torn = Bytes::from_static(&[0, 0, 0, 10, 0, 3, 0, 0, 0, 0, 0, 1, 0, 50]);
        let error = split_request(torn.clone()).unwrap_err();
        assert!(matches!(error, DecodeError::Truncated { .. }), "{error}");
        assert_eq!(answerable_correlation_id(&torn, &error), None);
    }
}
