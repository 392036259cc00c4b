//! The byte encoding shared by every persisted format: LEB128 varints, fixed-width little-endian
//! integers and length-checked slices.
//!
//! [`Reader`] never panics on untrusted input: every read returns a [`WireError`] naming the field
//! being read, the byte offset where it went wrong and what was wrong.

use alloc::vec::Vec;
use core::fmt;

/// What went wrong while reading an encoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The input ended inside the field.
    Truncated,
    /// A varint was longer than ten bytes or overflowed 64 bits.
    Overlong,
    /// The value is larger than the limit allowed for this field.
    TooLarge {
        /// The value read.
        value: u64,
        /// The largest value allowed.
        limit: u64,
    },
    /// The value is not one of those the format defines.
    Invalid {
        /// The value read.
        value: u64,
    },
    /// Bytes were left over after the last field.
    Trailing {
        /// How many bytes were left.
        bytes: usize,
    },
}

/// An encoded value could not be read: which field, at which byte offset, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    /// The field being read.
    pub field: &'static str,
    /// Byte offset of the field in its input.
    pub offset: usize,
    /// What was wrong.
    pub problem: Problem,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}` at byte {}: ", self.field, self.offset)?;
        match self.problem {
            Problem::Truncated => f.write_str("input ends inside the field"),
            Problem::Overlong => f.write_str("varint longer than 64 bits"),
            Problem::TooLarge { value, limit } => write!(f, "value {value} exceeds limit {limit}"),
            Problem::Invalid { value } => write!(f, "invalid value {value}"),
            Problem::Trailing { bytes } => write!(f, "{bytes} unexpected trailing bytes"),
        }
    }
}

impl core::error::Error for WireError {}

/// Appends a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a varint length followed by the bytes.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current byte offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn error(&self, field: &'static str, problem: Problem) -> WireError {
        WireError {
            field,
            offset: self.pos,
            problem,
        }
    }

    /// Reads exactly `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(self.error(field, Problem::Truncated));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Reads a LEB128 varint.
    pub fn varint(&mut self, field: &'static str) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&byte) = self.buf.get(self.pos) else {
                self.pos = start;
                return Err(self.error(field, Problem::Truncated));
            };
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 || shift > 63 {
                self.pos = start;
                return Err(self.error(field, Problem::Overlong));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// Reads a varint and checks it against `limit`.
    pub fn varint_max(&mut self, field: &'static str, limit: u64) -> Result<u64, WireError> {
        let start = self.pos;
        let value = self.varint(field)?;
        if value > limit {
            self.pos = start;
            return Err(self.error(field, Problem::TooLarge { value, limit }));
        }
        Ok(value)
    }

    /// Reads a varint that must fit in `usize` and be at most `limit`.
    pub fn len(&mut self, field: &'static str, limit: usize) -> Result<usize, WireError> {
        // `limit` fits in usize, so the checked value does too.
        Ok(self.varint_max(field, limit as u64)? as usize)
    }

    /// Reads a varint length (at most `limit`) followed by that many bytes.
    pub fn bytes(&mut self, field: &'static str, limit: usize) -> Result<&'a [u8], WireError> {
        let n = self.len(field, limit)?;
        self.take(field, n)
    }

    /// Returns everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Reports an invalid value for `field` at the current offset.
    pub fn invalid(&self, field: &'static str, value: u64) -> WireError {
        self.error(field, Problem::Invalid { value })
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self, field: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            bytes => Err(self.error(field, Problem::Trailing { bytes })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v").unwrap(), v);
            r.finish("end").unwrap();
        }
    }

    #[test]
    fn varint_errors_name_field_and_offset() {
        let mut r = Reader::new(&[0x80, 0x80]);
        let e = r.varint("size").unwrap_err();
        assert_eq!(e.problem, Problem::Truncated);
        assert_eq!(e.field, "size");
        let overlong = vec![0xff; 11];
        assert_eq!(
            Reader::new(&overlong).varint("x").unwrap_err().problem,
            Problem::Overlong
        );
        let mut out = Vec::new();
        put_varint(&mut out, 1000);
        let e = Reader::new(&out).varint_max("n", 999).unwrap_err();
        assert_eq!(
            e.problem,
            Problem::TooLarge {
                value: 1000,
                limit: 999
            }
        );
    }

    #[test]
    fn take_is_bounded() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(r.take("a", 4).is_err());
        assert_eq!(r.take("a", 3).unwrap(), &[1, 2, 3]);
    }
}
