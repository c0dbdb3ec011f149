//! Zig-zag base-128 varints, as used inside records.

use bytes::BufMut;

/// Most bytes a 64-bit varint takes.
pub const VARLONG_BYTES_MAX: usize = 10;
/// Most bytes a 32-bit varint takes.
pub const VARINT_BYTES_MAX: usize = 5;

pub fn put_varlong(out: &mut impl BufMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

pub fn put_varint(out: &mut impl BufMut, value: i32) {
    put_varlong(out, value.into());
}

pub fn varlong_len(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let bits = 64 - (zigzag | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub fn varint_len(value: i32) -> usize {
    varlong_len(value.into())
}

/// Reads a varlong from the start of `buf`: the value and the bytes it took, or `None`
/// when `buf` ends inside it or it is longer than `max_bytes`.
pub fn read_varlong(buf: &[u8], max_bytes: usize) -> Option<(i64, usize)> {
    let mut zigzag: u64 = 0;
    for (index, byte) in buf.iter().take(max_bytes).enumerate() {
        zigzag |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let value = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
            return Some((value, index + 1));
        }
    }
    None
}

/// Reads a 32-bit varint; values outside `i32` are refused.
pub fn read_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let (value, used) = read_varlong(buf, VARINT_BYTES_MAX)?;
    Some((i32::try_from(value).ok()?, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known encodings from the zig-zag definition, and lengths that match them.
    #[test]
    fn known_encodings() {
        let cases: [(i64, &[u8]); 6] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (64, &[0x80, 0x01]),
            (-65, &[0x81, 0x01]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
            assert_eq!(varlong_len(value), bytes.len());
            assert_eq!(
                read_varlong(bytes, VARLONG_BYTES_MAX),
                Some((value, bytes.len()))
            );
        }
        for value in [i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_len(value));
            assert_eq!(
                read_varlong(&out, VARLONG_BYTES_MAX),
                Some((value, out.len()))
            );
        }
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            None,
            "outside i32"
        );
        assert_eq!(read_varlong(&[0x80], VARLONG_BYTES_MAX), None, "truncated");
    }
}
