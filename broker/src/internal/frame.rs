//! The frame of the internal listener: how one broker's request or response travels to
//! another. Pure: encoding into a buffer and decoding from bytes, no I/O.
//!
//! ```text
//! frame   length:uint32   the bytes that follow, header included (20 + body)
//!         magic:[4]       "FJIN"
//!         version:uint8   1
//!         kind:uint8      what the body is (see `kind`); a response is its request's
//!                         kind with the high bit set
//!         reserved:uint16 0
//!         request_id:uint64  chosen by the caller, echoed in the response
//!         crc:uint32      CRC-32C (Castagnoli) of the body
//!         body            JSON of the kind's message
//! ```
//!
//! All integers are big-endian, as in the client protocol. A frame whose length is below
//! the header or above [`FRAME_BYTES_MAX`], whose magic, version or reserved bytes are
//! wrong, or whose body fails its checksum cannot be trusted, and neither can anything
//! after it on the connection: the reader closes the connection.

use bytes::{BufMut, BytesMut};

/// Bytes of the header after the length field.
pub const HEADER_BYTES: usize = 20;
/// The length field itself.
pub const LENGTH_BYTES: usize = 4;
/// The largest frame (header and body, without the length field): one Raft entry of
/// the largest size the Raft log accepts (32 MiB) with room for its JSON encoding.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
pub const MAGIC: [u8; 4] = *b"FJIN";
pub const VERSION: u8 = 1;
/// Set on the kind of every response.
pub const RESPONSE_BIT: u8 = 0x80;

const _: () = assert!(HEADER_BYTES < FRAME_BYTES_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);

/// Request kinds, in ranges by who answers them (see [`super::dispatch`]): 0x01–0x1f
/// the metadata quorum's Raft messages, 0x20–0x2f calls to the active controller,
/// 0x30–0x3f partition replication; 0x40–0x7f are free.
pub mod kind {
    use std::ops::RangeInclusive;

    pub const QUORUM: RangeInclusive<u8> = 0x01..=0x1f;
    pub const RAFT_VOTE: u8 = 0x01;
    pub const RAFT_APPEND_ENTRIES: u8 = 0x02;
    pub const RAFT_INSTALL_SNAPSHOT: u8 = 0x03;

    pub const CONTROLLER: RangeInclusive<u8> = 0x20..=0x2f;
    /// A broker's call to the active controller (a metadata change, a registration,
    /// a heartbeat) from a node that does not lead the quorum.
    pub const CONTROLLER_CALL: u8 = 0x20;

    pub const REPLICATION: RangeInclusive<u8> = 0x30..=0x3f;
    /// A follower's fetch of the partitions it follows on the receiving leader.
    pub const REPLICA_FETCH: u8 = 0x30;
}

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub request_id: u64,
    pub body: Vec<u8>,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {length} is outside {HEADER_BYTES}..={FRAME_BYTES_MAX}")]
    BadLength { length: u32 },
    #[error("bad magic {found:02x?} (not a Fjord internal connection)")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported internal protocol version {found} (this broker speaks {VERSION})")]
    BadVersion { found: u8 },
    #[error("reserved header bytes are {found:#06x}, not 0")]
    BadReserved { found: u16 },
    #[error("body checksum {found:#010x} does not match {expected:#010x}")]
    BadChecksum { found: u32, expected: u32 },
    #[error("body of {bytes} bytes is over the {FRAME_BYTES_MAX}-byte frame limit")]
    TooLarge { bytes: usize },
}

impl Frame {
    /// The frame's length field: header and body.
    pub fn length(&self) -> usize {
        HEADER_BYTES + self.body.len()
    }

    /// Appends the frame, length field included, to `buffer`.
    pub fn encode(&self, buffer: &mut BytesMut) -> Result<(), FrameError> {
        let length = self.length();
        if length > FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge {
                bytes: self.body.len(),
            });
        }
        buffer.reserve(LENGTH_BYTES + length);
        buffer.put_u32(u32::try_from(length).expect("bounded by FRAME_BYTES_MAX"));
        buffer.put_slice(&MAGIC);
        buffer.put_u8(VERSION);
        buffer.put_u8(self.kind);
        buffer.put_u16(0);
        buffer.put_u64(self.request_id);
        buffer.put_u32(crc32c::crc32c(&self.body));
        buffer.put_slice(&self.body);
        Ok(())
    }
}

/// Checks a length field before the rest of the frame is read (or allocated).
pub fn check_length(length_field: [u8; LENGTH_BYTES]) -> Result<usize, FrameError> {
    let length = u32::from_be_bytes(length_field);
    let bytes = usize::try_from(length).unwrap_or(usize::MAX);
    if !(HEADER_BYTES..=FRAME_BYTES_MAX).contains(&bytes) {
        return Err(FrameError::BadLength { length });
    }
    Ok(bytes)
}

/// Decodes what follows the length field: exactly one header and its body.
pub fn decode(mut bytes: Vec<u8>) -> Result<Frame, FrameError> {
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    if !(HEADER_BYTES..=FRAME_BYTES_MAX).contains(&bytes.len()) {
        return Err(FrameError::BadLength { length });
    }
    let header = &bytes[..HEADER_BYTES];
    let magic: [u8; 4] = header[0..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    if header[4] != VERSION {
        return Err(FrameError::BadVersion { found: header[4] });
    }
    let kind = header[5];
    let reserved = u16::from_be_bytes([header[6], header[7]]);
    if reserved != 0 {
        return Err(FrameError::BadReserved { found: reserved });
    }
    let request_id = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
    let expected = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes"));
    let body = bytes.split_off(HEADER_BYTES);
    let found = crc32c::crc32c(&body);
    if found != expected {
        return Err(FrameError::BadChecksum { found, expected });
    }
    Ok(Frame {
        kind,
        request_id,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        frame.encode(&mut buffer).unwrap();
        buffer.to_vec()
    }

    fn sample() -> Frame {
        Frame {
            kind: kind::RAFT_VOTE,
            request_id: 7,
            body: br#"{"a":1}"#.to_vec(),
        }
    }

    /// The layout drawn in the module documentation, byte for byte.
    #[test]
    fn layout_matches_the_documentation() {
        let bytes = encoded(&sample());
        assert_eq!(&bytes[0..4], &27u32.to_be_bytes());
        assert_eq!(&bytes[4..8], b"FJIN");
        assert_eq!(bytes[8], 1);
        assert_eq!(bytes[9], kind::RAFT_VOTE);
        assert_eq!(&bytes[10..12], &[0, 0]);
        assert_eq!(&bytes[12..20], &7u64.to_be_bytes());
        assert_eq!(&bytes[20..24], &crc32c::crc32c(br#"{"a":1}"#).to_be_bytes());
        assert_eq!(&bytes[24..], br#"{"a":1}"#);
    }

    /// What is encoded decodes to the same frame, its length field included.
    #[test]
    fn round_trip() {
        let frame = sample();
        let bytes = encoded(&frame);
        let length = check_length(bytes[..4].try_into().unwrap()).unwrap();
        assert_eq!(length, bytes.len() - 4);
        assert_eq!(decode(bytes[4..].to_vec()).unwrap(), frame);
    }

    /// A length below the header or above the limit is refused from the four length
    /// bytes alone, before anything is allocated for the frame.
    #[test]
    fn lengths_outside_the_bounds_are_refused_before_reading() {
        for length in [0u32, 19, (FRAME_BYTES_MAX + 1) as u32, u32::MAX] {
            assert_eq!(
                check_length(length.to_be_bytes()),
                Err(FrameError::BadLength { length })
            );
        }
        assert_eq!(check_length(20u32.to_be_bytes()), Ok(20));
    }

    /// Each damaged field is named by its own error.
    #[test]
    fn damaged_headers_and_bodies_are_refused() {
        let good = encoded(&sample())[4..].to_vec();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(matches!(
            decode(bad_magic),
            Err(FrameError::BadMagic { .. })
        ));
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        assert_eq!(
            decode(bad_version),
            Err(FrameError::BadVersion { found: 2 })
        );
        let mut bad_reserved = good.clone();
        bad_reserved[7] = 1;
        assert_eq!(
            decode(bad_reserved),
            Err(FrameError::BadReserved { found: 1 })
        );
        let mut bad_body = good.clone();
        *bad_body.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode(bad_body),
            Err(FrameError::BadChecksum { .. })
        ));
        assert!(matches!(
            decode(good[..10].to_vec()),
            Err(FrameError::BadLength { length: 10 })
        ));
    }

    /// The worked example of docs/protocol.md (section 10.3), byte for byte.
    #[test]
    fn the_documented_example_is_what_the_codec_writes() {
        const DOCUMENT: &str = include_str!("../../../docs/protocol.md");
        let section = DOCUMENT
            .split("### 10.3 Worked example")
            .nth(1)
            .expect("protocol.md has the internal frame example");
        let block = section
            .split("```text")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        let digits: String = block
            .lines()
            .map(|line| line.split('#').next().unwrap().trim())
            .collect();
        let documented: Vec<u8> = (0..digits.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&digits[at..at + 2], 16).unwrap())
            .collect();
        let body = br#"{"vote":{"term":2,"node_id":1,"committed":false},"last_log":{"term":1,"leader":1,"index":3}}"#;
        let frame = Frame {
            kind: kind::RAFT_VOTE,
            request_id: 7,
            body: body.to_vec(),
        };
        assert_eq!(encoded(&frame), documented);
        assert_eq!(decode(documented[4..].to_vec()).unwrap(), frame);
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..64))| {
            if let Ok(frame) = decode(bytes.clone()) {
                prop_assert_eq!(frame.body.len() + HEADER_BYTES, bytes.len());
            }
            if let Ok(length) = check_length(bytes[..4.min(bytes.len())].try_into().unwrap_or([0; 4])) {
                prop_assert!(length >= HEADER_BYTES);
            }
        });
    }
}
