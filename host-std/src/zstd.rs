//! [`ZstdCompressor`]: the core's [`Compressor`] on libzstd.
//!
//! libzstd encodes; the core's ruzstd decoder reads everything it writes (the store checks every
//! record before committing it). Frames carry no checksum, no dictionary id and no content size:
//! the store seals every value and records sizes and which dictionary and references a frame
//! needs.

use synor_core::error::CompressError;
use synor_core::host::{Compressor, Level, Reference};
use zstd::zstd_safe::{CCtx, CParameter};

/// libzstd at every [`Level`], with dictionaries and raw-content prefixes, and dictionary
/// training (fastCover, as `zstd --train`).
#[derive(Debug, Clone, Copy)]
pub struct ZstdCompressor {
    /// Use long-distance matching when compressing against a reference (as `zstd --patch-from`
    /// does for large references).
    pub long_distance: bool,
}

impl Default for ZstdCompressor {
    fn default() -> Self {
        Self {
            long_distance: true,
        }
    }
}

fn fail(what: &str, code: usize) -> CompressError {
    CompressError {
        message: format!("{what}: {}", zstd::zstd_safe::get_error_name(code)),
    }
}

/// The window log that covers `bytes` bytes (at least zstd's minimum of 10).
pub fn window_log_for(bytes: usize) -> u32 {
    let bits = usize::BITS - bytes.saturating_sub(1).leading_zeros();
    bits.clamp(10, 30)
}

impl Compressor for ZstdCompressor {
    fn supports_references(&self) -> bool {
        true
    }

    fn compress(
        &self,
        input: &[u8],
        level: Level,
        reference: Reference<'_>,
    ) -> Result<Vec<u8>, CompressError> {
        let mut cctx = CCtx::create();
        let set = |cctx: &mut CCtx<'_>, p: CParameter| {
            cctx.set_parameter(p)
                .map(|_| ())
                .map_err(|c| fail("parameter", c))
        };
        set(&mut cctx, CParameter::CompressionLevel(level.zstd_level()))?;
        set(&mut cctx, CParameter::ChecksumFlag(false))?;
        // The store records every size itself: the frame need not repeat it.
        set(&mut cctx, CParameter::ContentSizeFlag(false))?;
        set(&mut cctx, CParameter::DictIdFlag(false))?;
        let mut combined = Vec::new();
        if !reference.prefix.is_empty() {
            // The window covers reference and input, so that every reference byte stays
            // addressable (the core's decoder bounds windows the same way).
            let dictionary_len = reference.dictionary.map_or(0, <[u8]>::len);
            let total = dictionary_len + reference.prefix.len() + input.len();
            set(&mut cctx, CParameter::WindowLog(window_log_for(total)))?;
            if self.long_distance && level >= Level::Balanced {
                set(&mut cctx, CParameter::EnableLongDistanceMatching(true))?;
            }
        }
        match (reference.dictionary, reference.prefix.is_empty()) {
            (None, true) => {}
            (None, false) => {
                cctx.ref_prefix(reference.prefix)
                    .map_err(|c| fail("prefix", c))?;
            }
            (Some(dictionary), _) => {
                // A formatted dictionary followed by the prefix is one dictionary whose content
                // is the dictionary's content then the prefix: what the core's decoder builds.
                combined.reserve(dictionary.len() + reference.prefix.len());
                combined.extend_from_slice(dictionary);
                combined.extend_from_slice(reference.prefix);
                cctx.load_dictionary(&combined)
                    .map_err(|c| fail("dictionary", c))?;
            }
        }
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
        cctx.compress2(&mut out, input)
            .map_err(|c| fail("compress", c))?;
        Ok(out)
    }

    fn train_dictionary(&self, samples: &[&[u8]], max_size: usize) -> Option<Vec<u8>> {
        zstd::dict::from_samples(samples, max_size).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synor_core::store::decode_frame;
    use synor_core::testing::text;

    #[test]
    fn every_level_decodes_with_the_core() {
        let data = text(1, 300_000);
        for level in [Level::Fast, Level::Balanced, Level::Maximum] {
            let frame = ZstdCompressor::default()
                .compress(&data, level, Reference::default())
                .unwrap();
            assert_eq!(
                decode_frame(&frame, Reference::default(), data.len()).unwrap(),
                data
            );
        }
    }

    #[test]
    fn prefix_frames_decode_with_the_core_and_are_small() {
        let old = text(2, 400_000);
        let mut new = old.clone();
        new[1000..1100].copy_from_slice(&text(3, 100));
        new.extend_from_slice(&text(4, 5000));
        let reference = Reference {
            dictionary: None,
            prefix: &old,
        };
        let frame = ZstdCompressor::default()
            .compress(&new, Level::Maximum, reference)
            .unwrap();
        assert!(frame.len() < 8000, "{}", frame.len());
        assert_eq!(decode_frame(&frame, reference, new.len()).unwrap(), new);
        // Without the reference the frame does not decode.
        assert!(decode_frame(&frame, Reference::default(), new.len()).is_err());
    }

    #[test]
    fn trained_dictionaries_with_and_without_prefix_decode_with_the_core() {
        let samples: Vec<Vec<u8>> = (0..40).map(|i| text(10 + i % 3, 20_000)).collect();
        let refs: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
        let c = ZstdCompressor::default();
        let dict = c.train_dictionary(&refs, 16 * 1024).expect("trainable");
        assert!(dict.len() <= 16 * 1024);
        // Training is deterministic.
        assert_eq!(c.train_dictionary(&refs, 16 * 1024).unwrap(), dict);
        let input = text(11, 30_000);
        let prefix = text(12, 10_000);
        for prefix in [&[][..], &prefix[..]] {
            let reference = Reference {
                dictionary: Some(&dict),
                prefix,
            };
            let frame = c.compress(&input, Level::Maximum, reference).unwrap();
            assert_eq!(decode_frame(&frame, reference, input.len()).unwrap(), input);
        }
    }

    #[test]
    fn window_log_covers_input() {
        assert_eq!(window_log_for(0), 10);
        assert_eq!(window_log_for(1024), 10);
        assert_eq!(window_log_for(1025), 11);
        assert_eq!(window_log_for(1 << 20), 20);
    }
}
