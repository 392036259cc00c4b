//! Content-defined chunking: FastCDC (Xia et al., USENIX ATC '16 and TPDS '20) with a gear
//! rolling hash, cut-point skipping and normalized chunking.
//!
//! A cut point depends only on the bytes just before it, so an insertion shifts at most the
//! chunks around it and the rest of the data chunks identically. Before the normal size a
//! harder mask (two more bits) is used, after it an easier one (two fewer bits): chunk sizes
//! concentrate around the average. The hash advances two bytes per loop iteration (the
//! "rolling two bytes" optimisation of the TPDS paper), which is exact because no mask uses the
//! top bit of the hash.

use crate::wire::{Problem, WireError};

/// The gear table: 256 pseudo-random 64-bit values (splitmix64 from a fixed seed), the same on
/// every machine and in every build.
pub(crate) const GEAR: [u64; 256] = gear_table(0x5359_4E4F_525F_4745);

/// The gear table shifted left by one, for the two-bytes-per-iteration loop.
const GEAR_LS: [u64; 256] = shifted(&GEAR);

const fn gear_table(seed: u64) -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state = seed;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

const fn shifted(table: &[u64; 256]) -> [u64; 256] {
    let mut out = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = table[i] << 1;
        i += 1;
    }
    out
}

/// A mask of `bits` one-bits spread over bits 62 down to about 14 of the hash.
///
/// Spreading the bits widens the effective window of the gear hash (bit `k` depends on the last
/// `k + 1` bytes), as the FastCDC paper recommends; bit 63 is never used so that the shifted
/// comparison of the two-byte loop is exact.
const fn spread_mask(bits: u32) -> u64 {
    let span = 48u32;
    let step = match span.checked_div(bits) {
        Some(step) => step,
        None => 1,
    };
    let mut mask = 0u64;
    let mut i = 0;
    while i < bits {
        mask |= 1u64 << (62 - i * step);
        i += 1;
    }
    mask
}

/// Chunk size bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    /// No chunk is shorter, except the last one of the data.
    pub min: u32,
    /// The target average; rounded to a power of two for the masks.
    pub avg: u32,
    /// No chunk is longer.
    pub max: u32,
}

impl ChunkConfig {
    /// Smallest `min` accepted.
    pub const MIN_SIZE: u32 = 64;
    /// Largest `max` accepted.
    pub const MAX_SIZE: u32 = 16 << 20;

    /// Checks `min <= avg <= max` within [`ChunkConfig::MIN_SIZE`]..=[`ChunkConfig::MAX_SIZE`].
    ///
    /// # Errors
    /// Names the bound that is violated.
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, WireError> {
        let bad = |field, value: u32, limit: u32| {
            Err(WireError {
                field,
                offset: 0,
                problem: Problem::TooLarge {
                    value: value.into(),
                    limit: limit.into(),
                },
            })
        };
        if min < Self::MIN_SIZE {
            return Err(WireError {
                field: "min",
                offset: 0,
                problem: Problem::Invalid { value: min.into() },
            });
        }
        if min > avg {
            return bad("min", min, avg);
        }
        if avg > max {
            return bad("avg", avg, max);
        }
        if max > Self::MAX_SIZE {
            return bad("max", max, Self::MAX_SIZE);
        }
        Ok(Self { min, avg, max })
    }
}

impl Default for ChunkConfig {
    /// 1 KiB minimum, 4 KiB average, 16 KiB maximum: the fragment sizes of the original design
    /// (256 B to 16 KiB), shifted up so that per-chunk overhead stays small.
    fn default() -> Self {
        Self {
            min: 1024,
            avg: 4096,
            max: 16384,
        }
    }
}

/// Finds content-defined cut points.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    min: usize,
    normal: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    /// A chunker for `config` with normalization level 2.
    pub fn new(config: ChunkConfig) -> Self {
        let bits = 31 - config.avg.max(1).leading_zeros();
        let bits = if config.avg > (1 << bits) + (1 << bits) / 2 {
            bits + 1
        } else {
            bits
        };
        Self {
            min: config.min as usize,
            normal: config.avg as usize,
            max: config.max as usize,
            mask_s: spread_mask(bits + 2),
            mask_l: spread_mask(bits.saturating_sub(2)),
        }
    }

    /// Length of the first chunk of `data`: a cut point, or `data.len()` when shorter than the
    /// minimum, or the maximum.
    pub fn cut(&self, data: &[u8]) -> usize {
        let len = data.len();
        if len <= self.min {
            return len;
        }
        let max = len.min(self.max);
        let normal = len.min(self.normal).max(self.min);
        let mut hash = 0u64;
        if let Some(at) = scan(&data[self.min..normal], &mut hash, self.mask_s) {
            return self.min + at;
        }
        match scan(&data[normal..max], &mut hash, self.mask_l) {
            Some(at) => normal + at,
            None => max,
        }
    }

    /// The chunks of `data`, in order; they concatenate to `data`.
    pub fn chunks<'a>(&self, data: &'a [u8]) -> Chunks<'a> {
        Chunks {
            chunker: *self,
            rest: data,
        }
    }
}

/// Advances the gear hash over `bytes`; returns the length up to and including the first
/// position whose hash has no bit of `mask` set.
#[inline(always)]
fn scan(bytes: &[u8], hash: &mut u64, mask: u64) -> Option<usize> {
    let mask_ls = mask << 1;
    let mut h = *hash;
    let mut pairs = bytes.chunks_exact(2);
    let mut at = 0;
    for pair in &mut pairs {
        h = (h << 2).wrapping_add(GEAR_LS[pair[0] as usize]);
        if h & mask_ls == 0 {
            return Some(at + 1);
        }
        h = h.wrapping_add(GEAR[pair[1] as usize]);
        if h & mask == 0 {
            return Some(at + 2);
        }
        at += 2;
    }
    if let [last] = pairs.remainder() {
        h = (h << 1).wrapping_add(GEAR[*last as usize]);
        if h & mask == 0 {
            return Some(at + 1);
        }
    }
    *hash = h;
    None
}

/// Iterator over the chunks of a byte slice (see [`Chunker::chunks`]).
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    chunker: Chunker,
    rest: &'a [u8],
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = self.chunker.cut(self.rest);
        let (chunk, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests;
