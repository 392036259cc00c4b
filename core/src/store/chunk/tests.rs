use super::*;
use crate::testing::noise;
use alloc::vec::Vec;

/// The two-bytes-per-iteration scan finds the same cut as the textbook one-byte loop.
fn reference_cut(c: &Chunker, data: &[u8]) -> usize {
    let len = data.len();
    if len <= c.min {
        return len;
    }
    let max = len.min(c.max);
    let normal = len.min(c.normal).max(c.min);
    let mut h = 0u64;
    for (i, &b) in data.iter().enumerate().take(max).skip(c.min) {
        h = (h << 1).wrapping_add(GEAR[b as usize]);
        let mask = if i < normal { c.mask_s } else { c.mask_l };
        if h & mask == 0 {
            return i + 1;
        }
    }
    max
}

#[test]
fn two_byte_scan_equals_one_byte_loop() {
    for (seed, config) in [
        (1, ChunkConfig::default()),
        (2, ChunkConfig::new(64, 256, 1024).unwrap()),
        (3, ChunkConfig::new(100, 300, 777).unwrap()),
    ] {
        let c = Chunker::new(config);
        let data = noise(seed, 300_000);
        let mut at = 0;
        while at < data.len() {
            let n = c.cut(&data[at..]);
            assert_eq!(n, reference_cut(&c, &data[at..]), "at {at}");
            at += n;
        }
    }
}

#[test]
fn chunks_cover_input_within_bounds() {
    let config = ChunkConfig::default();
    let data = noise(7, 1 << 20);
    let chunks: Vec<&[u8]> = Chunker::new(config).chunks(&data).collect();
    assert_eq!(chunks.concat(), data);
    for (i, c) in chunks.iter().enumerate() {
        assert!(c.len() <= config.max as usize);
        assert!(c.len() >= config.min as usize || i + 1 == chunks.len());
    }
    // Normalized chunking keeps the mean near the target (wide margin: this is random data).
    let mean = data.len() / chunks.len();
    assert!(
        (config.avg as usize / 2..config.avg as usize * 2).contains(&mean),
        "mean chunk {mean}"
    );
}

#[test]
fn insertion_changes_only_nearby_chunks() {
    let c = Chunker::new(ChunkConfig::default());
    let data = noise(9, 400_000);
    let mut edited = data[..200_000].to_vec();
    edited.extend_from_slice(b"inserted bytes");
    edited.extend_from_slice(&data[200_000..]);
    let a: Vec<&[u8]> = c.chunks(&data).collect();
    let b: Vec<&[u8]> = c.chunks(&edited).collect();
    let shared = a.iter().filter(|x| b.contains(x)).count();
    assert!(
        shared + 3 >= a.len(),
        "{shared} of {} chunks survived an insertion",
        a.len()
    );
}

#[test]
fn config_bounds_are_checked() {
    assert!(ChunkConfig::new(10, 100, 1000).is_err());
    assert!(ChunkConfig::new(200, 100, 1000).is_err());
    assert!(ChunkConfig::new(100, 2000, 1000).is_err());
    assert!(ChunkConfig::new(100, 200, ChunkConfig::MAX_SIZE + 1).is_err());
    assert!(ChunkConfig::new(64, 64, 64).is_ok());
}
