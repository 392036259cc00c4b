//! Similarity sketches: which stored contracts share the most content with a new one.
//!
//! Features are 64-byte shingles, sampled where three bits of their gear hash (see
//! [`super::chunk`]) are clear, so the same content yields the same features wherever it sits.
//! One-permutation MinHash keeps, in each of [`BINS`] bins, the smallest feature hash; eight
//! bits of it are stored (b-bit MinHash). Two sketches agree in a bin with probability close to
//! the Jaccard similarity of the two feature sets (plus 1/256 for unrelated values).
//!
//! Small contents keep only the first [`SMALL_BINS`] bins: bins partition the feature hashes,
//! so these are an unbiased sample of the full sketch, and any two sketches compare on the bins
//! both keep. A small record's sketch costs 18 bytes instead of 72; small inputs choose their
//! references by trial compression, so they need the sketch only to be found at all.

use super::chunk::GEAR;

/// Bins of a full sketch.
pub const BINS: usize = 64;

/// Bins kept for contents smaller than [`SMALL_BELOW`].
pub const SMALL_BINS: usize = 16;

/// Contents smaller than this keep [`SMALL_BINS`] bins.
pub const SMALL_BELOW: u64 = 16 * 1024;

/// Sample one position in 8: bits 61..59 of the hash clear (dense enough that a contract of a
/// few kilobytes still yields hundreds of features).
const SAMPLE_MASK: u64 = 0x7 << 59;

/// Scale of [`Sketch::similarity`]: 1024 means identical sketches.
pub const SIMILARITY_ONE: u32 = 1024;

/// A similarity sketch of some content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sketch {
    /// Bins kept: [`BINS`] or [`SMALL_BINS`].
    bins: usize,
    /// Which bins saw a feature.
    occupied: u64,
    values: [u8; BINS],
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// Bins a sketch of `len` bytes of content keeps.
pub fn bins_for(len: u64) -> usize {
    if len < SMALL_BELOW { SMALL_BINS } else { BINS }
}

/// Encoded size of a sketch of `len` bytes of content: the occupied bins, then a byte per bin.
pub fn encoded_len(len: u64) -> usize {
    let bins = bins_for(len);
    bins / 8 + bins
}

impl Sketch {
    /// Sketches `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut mins = [u64::MAX; BINS];
        let mut occupied = 0u64;
        let mut h = 0u64;
        for &b in data {
            h = (h << 1).wrapping_add(GEAR[b as usize]);
            if h & SAMPLE_MASK == 0 {
                let f = mix(h);
                let bin = (f >> 58) as usize;
                occupied |= 1 << bin;
                if f < mins[bin] {
                    mins[bin] = f;
                }
            }
        }
        let bins = bins_for(data.len() as u64);
        let mut values = [0u8; BINS];
        for (v, m) in values.iter_mut().zip(mins).take(bins) {
            *v = m as u8;
        }
        Self {
            bins,
            occupied: occupied & mask(bins),
            values,
        }
    }

    /// Estimated similarity, from 0 (nothing shared) to [`SIMILARITY_ONE`], over the bins both
    /// sketches keep.
    pub fn similarity(&self, other: &Sketch) -> u32 {
        let n = self.bins.min(other.bins);
        let (a, b) = (self.occupied & mask(n), other.occupied & mask(n));
        let union = (a | b).count_ones();
        if union == 0 {
            return 0;
        }
        let both = a & b;
        let matches = (0..n)
            .filter(|&i| both & (1 << i) != 0 && self.values[i] == other.values[i])
            .count() as u32;
        matches * SIMILARITY_ONE / union
    }

    /// Appends the encoded sketch ([`encoded_len`] bytes for its content's size) to `out`.
    pub fn encode(&self, out: &mut alloc::vec::Vec<u8>) {
        out.extend_from_slice(&self.occupied.to_le_bytes()[..self.bins / 8]);
        out.extend_from_slice(&self.values[..self.bins]);
    }

    /// Decodes the sketch of `len` bytes of content from [`Sketch::encode`]'s output, which
    /// must be [`encoded_len`]`(len)` bytes.
    pub fn decode(bytes: &[u8], len: u64) -> Option<Self> {
        let bins = bins_for(len);
        if bytes.len() != bins / 8 + bins {
            return None;
        }
        let mut occupied = [0u8; 8];
        occupied[..bins / 8].copy_from_slice(&bytes[..bins / 8]);
        let mut values = [0u8; BINS];
        values[..bins].copy_from_slice(&bytes[bins / 8..]);
        Some(Self {
            bins,
            occupied: u64::from_le_bytes(occupied),
            values,
        })
    }
}

fn mask(bins: usize) -> u64 {
    if bins >= 64 {
        u64::MAX
    } else {
        (1 << bins) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = mix(s.wrapping_add(0x9E37_79B9_7F4A_7C15));
                s as u8
            })
            .collect()
    }

    #[test]
    fn similar_content_scores_higher_than_unrelated() {
        let a = noise(1, 200_000);
        let mut b = a.clone();
        // Edit 2% of the content in a few places.
        for i in (0..b.len()).step_by(10_000) {
            for byte in &mut b[i..i + 200] {
                *byte ^= 0x5a;
            }
        }
        let c = noise(2, 200_000);
        let (sa, sb, sc) = (Sketch::of(&a), Sketch::of(&b), Sketch::of(&c));
        assert_eq!(sa.similarity(&sa), SIMILARITY_ONE);
        let near = sa.similarity(&sb);
        let far = sa.similarity(&sc);
        assert!(near > SIMILARITY_ONE / 2, "near = {near}");
        assert!(far < SIMILARITY_ONE / 8, "far = {far}");
    }

    #[test]
    fn small_and_full_sketches_compare() {
        let big = noise(4, 100_000);
        let small = &big[40_000..52_000];
        let (sb, ss) = (Sketch::of(&big), Sketch::of(small));
        assert_eq!(ss.bins, SMALL_BINS);
        assert_eq!(sb.bins, BINS);
        let unrelated = Sketch::of(&noise(5, 12_000));
        assert!(ss.similarity(&sb) > unrelated.similarity(&sb));
        assert_eq!(ss.similarity(&sb), sb.similarity(&ss));
    }

    #[test]
    fn encode_round_trip_and_empty() {
        for n in [0usize, 100, 5000, 16 * 1024, 70_000] {
            let data = noise(3, n);
            let s = Sketch::of(&data);
            let mut enc = Vec::new();
            s.encode(&mut enc);
            assert_eq!(enc.len(), encoded_len(n as u64));
            assert_eq!(Sketch::decode(&enc, n as u64), Some(s));
            assert_eq!(Sketch::decode(&enc[1..], n as u64), None);
        }
        let empty = Sketch::of(&[]);
        assert_eq!(empty.similarity(&empty), 0);
    }
}
