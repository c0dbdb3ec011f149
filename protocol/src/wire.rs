//! Primitive wire types: big-endian integers, strings, byte strings and arrays.
//!
//! ```text
//! int8/16/32/64   two's complement, big-endian
//! bool            int8, 0 = false, 1 = true (anything else is invalid)
//! string          int16 length N (>= 0), then N bytes of UTF-8
//! nullable string int16 length N, -1 = null
//! bytes           int32 length N, -1 = null, then N bytes
//! array           int32 count N, then N elements (-1 = null where the message says so)
//! uuid            16 bytes
//! ```
//!
//! Readers work on a complete frame body: running out of bytes inside a body is
//! [`DecodeError::Truncated`], never "incomplete" (only the frame layer can be
//! incomplete).

use bytes::{BufMut, Bytes, BytesMut};

use crate::limits::STRING_BYTES_MAX;

/// Why a frame or message body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{field}: body ends after {available} of {needed} bytes")]
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{field}: length or count {value} exceeds the limit of {max}")]
    TooLarge {
        field: &'static str,
        value: i64,
        max: usize,
    },
    #[error("{field}: invalid value {value}")]
    InvalidValue { field: &'static str, value: i64 },
    #[error("{field}: not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{trailing} unexpected bytes after the end of the message")]
    TrailingBytes { trailing: usize },
}

/// A cursor over a complete frame body. Byte strings come out as zero-copy slices.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    position: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Self { buf, position: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    /// Fails unless every byte has been read: trailing garbage is a malformed message.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes { trailing }),
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                available: self.remaining(),
            });
        }
        let start = self.position;
        self.position += n;
        Ok(&self.buf[start..start + n])
    }

    fn take_array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub fn i8(&mut self, field: &'static str) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.take_array(field)?))
    }
    pub fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take_array(field)?))
    }
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take_array(field)?))
    }
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array(field)?))
    }
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.i8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidValue {
                field,
                value: other.into(),
            }),
        }
    }
    pub fn uuid(&mut self, field: &'static str) -> Result<[u8; 16], DecodeError> {
        self.take_array(field)
    }

    /// A non-negative `i32` (partition index, byte budget, timeout).
    pub fn u31(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let value = self.i32(field)?;
        if value < 0 {
            return Err(DecodeError::InvalidValue {
                field,
                value: value.into(),
            });
        }
        Ok(value)
    }

    pub fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.bounded_string(field, STRING_BYTES_MAX)
    }

    /// A string no longer than `max` bytes.
    pub fn bounded_string(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<String, DecodeError> {
        self.nullable_bounded_string(field, max)?
            .ok_or(DecodeError::InvalidValue { field, value: -1 })
    }

    pub fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        self.nullable_bounded_string(field, STRING_BYTES_MAX)
    }

    fn nullable_bounded_string(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<String>, DecodeError> {
        let length = self.i16(field)?;
        if length == -1 {
            return Ok(None);
        }
        if length < 0 {
            return Err(DecodeError::InvalidValue {
                field,
                value: length.into(),
            });
        }
        let length = length as usize;
        if length > max {
            return Err(DecodeError::TooLarge {
                field,
                value: length as i64,
                max,
            });
        }
        let raw = self.take(field, length)?;
        let text = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { field })?;
        Ok(Some(text.to_owned()))
    }

    /// A nullable byte string no longer than `max`, as a zero-copy slice of the body.
    pub fn nullable_bytes(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<Bytes>, DecodeError> {
        let length = self.i32(field)?;
        if length == -1 {
            return Ok(None);
        }
        if length < 0 {
            return Err(DecodeError::InvalidValue {
                field,
                value: length.into(),
            });
        }
        let length = length as usize;
        if length > max {
            return Err(DecodeError::TooLarge {
                field,
                value: length as i64,
                max,
            });
        }
        if self.remaining() < length {
            return Err(DecodeError::Truncated {
                field,
                needed: length,
                available: self.remaining(),
            });
        }
        let slice = self.buf.slice(self.position..self.position + length);
        self.position += length;
        Ok(Some(slice))
    }

    /// The element count of an array, checked against `max` and against the bytes
    /// left (each element takes at least `element_bytes_min`), so a caller may
    /// reserve capacity for it safely.
    pub fn count(
        &mut self,
        field: &'static str,
        max: usize,
        element_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        self.nullable_count(field, max, element_bytes_min)?
            .ok_or(DecodeError::InvalidValue { field, value: -1 })
    }

    /// Like [`Reader::count`], with -1 meaning a null array.
    pub fn nullable_count(
        &mut self,
        field: &'static str,
        max: usize,
        element_bytes_min: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let count = self.i32(field)?;
        if count == -1 {
            return Ok(None);
        }
        if count < 0 {
            return Err(DecodeError::InvalidValue {
                field,
                value: count.into(),
            });
        }
        let count = count as usize;
        if count > max {
            return Err(DecodeError::TooLarge {
                field,
                value: count as i64,
                max,
            });
        }
        let needed = count.saturating_mul(element_bytes_min.max(1));
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                needed,
                available: self.remaining(),
            });
        }
        Ok(Some(count))
    }

    /// Reads an array whose elements `read` decodes.
    pub fn array<T>(
        &mut self,
        field: &'static str,
        max: usize,
        element_bytes_min: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.count(field, max, element_bytes_min)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(read(self)?);
        }
        Ok(items)
    }
}

/// Writers append to the caller's buffer. Lengths were validated when the value was
/// built, so a value too long for its length field is a programming error and panics.
pub fn put_string(out: &mut BytesMut, value: &str) {
    let length = i16::try_from(value.len()).expect("string longer than i16::MAX");
    out.put_i16(length);
    out.put_slice(value.as_bytes());
}

pub fn put_nullable_string(out: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(out, value),
        None => out.put_i16(-1),
    }
}

pub fn put_nullable_bytes(out: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        Some(value) => {
            out.put_i32(i32::try_from(value.len()).expect("byte string longer than i32::MAX"));
            out.put_slice(value);
        }
        None => out.put_i32(-1),
    }
}

pub fn put_bool(out: &mut BytesMut, value: bool) {
    out.put_i8(value as i8);
}

pub fn put_count(out: &mut BytesMut, count: usize) {
    out.put_i32(i32::try_from(count).expect("array longer than i32::MAX"));
}

/// Writes an array: its count, then each element through `write`.
pub fn put_array<T>(out: &mut BytesMut, items: &[T], mut write: impl FnMut(&mut BytesMut, &T)) {
    put_count(out, items.len());
    for item in items {
        write(out, item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count larger than what is left in the body is refused before any allocation.
    #[test]
    fn count_is_checked_against_remaining_bytes() {
        let mut reader = Reader::new(Bytes::from_static(&[0, 0, 0x10, 0, 1, 2]));
        assert!(matches!(
            reader.count("items", 1 << 20, 4),
            Err(DecodeError::Truncated { .. })
        ));
    }

    /// Negative lengths other than -1 are invalid, -1 is null.
    #[test]
    fn nullable_string_lengths() {
        let mut reader = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]));
        assert_eq!(reader.nullable_string("s"), Ok(None));
        assert!(matches!(
            reader.nullable_string("s"),
            Err(DecodeError::InvalidValue { .. })
        ));
    }
}
