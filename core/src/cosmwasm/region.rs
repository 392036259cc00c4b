//! Regions: how a CosmWasm contract and its host pass bytes. A region is a 12-byte struct in
//! the contract's memory, `{offset, capacity, length}` (each a little-endian `u32`), naming
//! `length` used bytes of a buffer of `capacity` bytes at `offset`. The contract allocates
//! them (its `allocate` export returns a pointer to one); the host reads and fills them.
//!
//! Every check cosmwasm-vm makes is made here, and more: the struct and its bytes must lie in
//! memory, `offset` must not be 0, `length` must not exceed `capacity` nor the limit the
//! caller sets, and `offset + capacity` must fit in 32 bits. A failed check is a [`Trap`]
//! with a message; nothing here panics or allocates more than the bytes asked for.

use alloc::format;

use crate::abi::{Memory, Trap};

/// The size of a region struct in memory.
pub const REGION_BYTES: u32 = 12;

/// A region struct as read from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// Where its buffer starts.
    pub offset: u32,
    /// The buffer's size.
    pub capacity: u32,
    /// How many of its bytes are used.
    pub length: u32,
}

impl Region {
    /// The struct's 12 bytes.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..8].copy_from_slice(&self.capacity.to_le_bytes());
        b[8..12].copy_from_slice(&self.length.to_le_bytes());
        b
    }

    /// The struct from its 12 bytes.
    pub fn from_bytes(b: [u8; 12]) -> Region {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Region {
            offset: word(0),
            capacity: word(4),
            length: word(8),
        }
    }
}

/// `start..start + len` within a memory of `size` bytes, or `None`.
fn span(size: usize, start: u32, len: u32) -> Option<core::ops::Range<usize>> {
    let start = start as usize;
    let end = start.checked_add(len as usize)?;
    (end <= size).then_some(start..end)
}

/// The region struct at `ptr`, checked as cosmwasm-vm checks it: it lies in memory, its
/// offset is not 0, its length is at most its capacity, and `offset + capacity` fits in 32
/// bits.
///
/// # Errors
/// [`Trap::Host`] naming what is wrong.
pub fn get(mem: &[u8], ptr: u32) -> Result<Region, Trap> {
    let Some(at) = span(mem.len(), ptr, REGION_BYTES) else {
        return Err(Trap::Host(format!(
            "region pointer {ptr} lies outside memory of {} bytes",
            mem.len()
        )));
    };
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&mem[at]);
    let region = Region::from_bytes(bytes);
    let bad = |why: &str| Err(Trap::Host(format!("region at {ptr}: {why}")));
    if region.offset == 0 {
        return bad("offset is 0");
    }
    if region.length > region.capacity {
        let (l, c) = (region.length, region.capacity);
        return bad(&format!("length {l} exceeds capacity {c}"));
    }
    if region.capacity > u32::MAX - region.offset {
        let (o, c) = (region.offset, region.capacity);
        return bad(&format!("offset {o} + capacity {c} overflows 32 bits"));
    }
    Ok(region)
}

/// The length of the region at `ptr` (what reading it would copy), checked against `max`
/// before anything is copied; `what` names the argument in a [`Trap::TooLarge`].
///
/// # Errors
/// As [`get`]; [`Trap::TooLarge`] when the length exceeds `max`.
pub fn len(mem: &[u8], ptr: u32, max: u32, what: &'static str) -> Result<u32, Trap> {
    let region = get(mem, ptr)?;
    if region.length > max {
        return Err(Trap::TooLarge {
            what,
            len: region.length,
            max,
        });
    }
    Ok(region.length)
}

/// The used bytes of the region at `ptr` (borrowed, not copied), at most `max` of them.
///
/// # Errors
/// As [`len`]; [`Trap::Host`] when the bytes lie outside memory.
pub fn read<'m>(
    mem: &'m dyn Memory,
    ptr: u32,
    max: u32,
    what: &'static str,
) -> Result<&'m [u8], Trap> {
    let bytes = mem.bytes();
    let length = len(bytes, ptr, max, what)?;
    let region = get(bytes, ptr)?;
    match span(bytes.len(), region.offset, length) {
        Some(r) => Ok(&bytes[r]),
        None => Err(Trap::Host(format!(
            "region at {ptr}: {length} bytes at offset {} lie outside memory of {} bytes",
            region.offset,
            bytes.len()
        ))),
    }
}

/// Like [`read`], with a null pointer (0) meaning "none": how `db_scan` takes its optional
/// bounds.
///
/// # Errors
/// As [`read`].
pub fn read_optional<'m>(
    mem: &'m dyn Memory,
    ptr: u32,
    max: u32,
    what: &'static str,
) -> Result<Option<&'m [u8]>, Trap> {
    if ptr == 0 {
        return Ok(None);
    }
    read(mem, ptr, max, what).map(Some)
}

/// Writes `data` into the buffer of the region at `ptr` and sets its length: how the host
/// fills a region the contract allocated.
///
/// # Errors
/// As [`get`]; [`Trap::Host`] when `data` exceeds the region's capacity or its buffer lies
/// outside memory. Memory is unchanged then.
pub fn write(mem: &mut dyn Memory, ptr: u32, data: &[u8]) -> Result<(), Trap> {
    let bytes = mem.bytes_mut();
    let mut region = get(bytes, ptr)?;
    let Ok(n) = u32::try_from(data.len()) else {
        return Err(Trap::Host(format!(
            "{} bytes do not fit a region",
            data.len()
        )));
    };
    if n > region.capacity {
        return Err(Trap::Host(format!(
            "region at {ptr} too small: capacity {}, {n} bytes to write",
            region.capacity
        )));
    }
    let Some(target) = span(bytes.len(), region.offset, n) else {
        return Err(Trap::Host(format!(
            "region at {ptr}: {n} bytes at offset {} lie outside memory of {} bytes",
            region.offset,
            bytes.len()
        )));
    };
    bytes[target].copy_from_slice(data);
    region.length = n;
    // The struct was read from these 12 bytes, so they are in memory.
    if let Some(at) = span(bytes.len(), ptr, REGION_BYTES) {
        bytes[at].copy_from_slice(&region.to_bytes());
    }
    Ok(())
}

/// Encodes `sections` as cosmwasm-vm does for `db_next` and the batch verifications: each
/// section followed by its length as a big-endian `u32`.
pub fn encode_sections(sections: &[&[u8]]) -> alloc::vec::Vec<u8> {
    let total = sections.iter().map(|s| s.len() + 4).sum();
    let mut out = alloc::vec::Vec::with_capacity(total);
    for s in sections {
        out.extend_from_slice(s);
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    }
    out
}

/// The last section of `data` and what comes before it; `None` when its length points before
/// the start or fewer than 4 bytes are left.
fn last_section(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, len) = data.split_last_chunk::<4>()?;
    let start = body.len().checked_sub(u32::from_be_bytes(*len) as usize)?;
    Some((&body[..start], &body[start..]))
}

/// How many sections [`decode_sections`] would find in `data`, without allocating; `None`
/// when `data` is not a sequence of sections (a length points before the start, or bytes
/// are left outside any section).
pub fn count_sections(data: &[u8]) -> Option<usize> {
    let (mut rest, mut n) = (data, 0usize);
    while !rest.is_empty() {
        rest = last_section(rest)?.0;
        n += 1;
    }
    Some(n)
}

/// The sections of `data` (see [`encode_sections`]), first to last; `None` as for
/// [`count_sections`].
pub fn decode_sections(data: &[u8]) -> Option<alloc::vec::Vec<&[u8]>> {
    let mut out = alloc::vec::Vec::with_capacity(count_sections(data)?);
    let mut rest = data;
    while !rest.is_empty() {
        let (before, section) = last_section(rest)?;
        out.push(section);
        rest = before;
    }
    out.reverse();
    Some(out)
}
