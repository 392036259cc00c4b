//! Similarity sketches: which stored contracts share the most content with a new one.
//!
//! Features are 64-byte shingles, sampled where five bits of their gear hash (see
//! [`super::chunk`]) are clear, so the same content yields the same features wherever it sits. One-permutation MinHash keeps, in each of [`BINS`] bins, the smallest feature hash; one
//! byte of it is stored (b-bit MinHash). Two sketches agree in a bin with probability close to
//! the Jaccard similarity of the two feature sets (plus 1/256 for unrelated bytes).

use super::chunk::GEAR;

/// Bins per sketch.
pub const BINS: usize = 64;

/// Encoded size of a sketch.
pub const ENCODED_LEN: usize = 8 + BINS;

/// Sample one position in 32: bits 61..57 of the hash clear.
const SAMPLE_MASK: u64 = 0x1F << 57;

/// A similarity sketch of some content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sketch {
    occupied: u64,
    values: [u8; BINS],
}

/// Scale of [`Sketch::similarity`]: 1024 means identical sketches.
pub const SIMILARITY_ONE: u32 = 1024;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
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
        let mut values = [0u8; BINS];
        for (v, m) in values.iter_mut().zip(mins) {
            *v = m as u8;
        }
        Self { occupied, values }
    }

    /// Estimated similarity, from 0 (nothing shared) to [`SIMILARITY_ONE`].
    pub fn similarity(&self, other: &Sketch) -> u32 {
        let union = (self.occupied | other.occupied).count_ones();
        if union == 0 {
            return 0;
        }
        let both = self.occupied & other.occupied;
        let matches = (0..BINS)
            .filter(|&i| both & (1 << i) != 0 && self.values[i] == other.values[i])
            .count() as u32;
        matches * SIMILARITY_ONE / union
    }

    /// The encoded sketch.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[..8].copy_from_slice(&self.occupied.to_le_bytes());
        out[8..].copy_from_slice(&self.values);
        out
    }

    /// Decodes [`Sketch::encode`]'s output.
    pub fn decode(bytes: &[u8; ENCODED_LEN]) -> Self {
        let mut occupied = [0u8; 8];
        occupied.copy_from_slice(&bytes[..8]);
        let mut values = [0u8; BINS];
        values.copy_from_slice(&bytes[8..]);
        Self {
            occupied: u64::from_le_bytes(occupied),
            values,
        }
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
    fn encode_round_trip_and_empty() {
        let s = Sketch::of(&noise(3, 5000));
        assert_eq!(Sketch::decode(&s.encode()), s);
        let empty = Sketch::of(&[]);
        assert_eq!(empty.similarity(&empty), 0);
    }
}
