//! zstd frames: bounded decoding with ruzstd, and the core's own (fastest-level) encoder.
//!
//! Every frame the store keeps is decoded here, whatever encoder wrote it. A frame may refer to
//! a [`Reference`]: a trained dictionary (zstd dictionary format) and/or a raw-content prefix
//! (earlier versions or similar contracts). ruzstd has no constructor for raw-content
//! dictionaries, so a prefix without a dictionary is loaded through [`RAW_CONTENT_HEADER`]: a
//! minimal, valid dictionary header whose entropy tables no frame ever uses (libzstd's
//! `ZSTD_CCtx_refPrefix` starts with no entropy tables to repeat) and whose repeat offsets are
//! zstd's defaults for raw content, 1, 4 and 8.

use alloc::format;
use alloc::vec::Vec;

use ruzstd::decoding::{BlockDecodingStrategy, Dictionary, FrameDecoder};

use crate::error::{CompressError, Corruption};
use crate::host::{Compressor, Level, Reference};

/// zstd dictionary magic number, little-endian.
pub const DICT_MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];

/// A dictionary header with no content, used to give ruzstd a raw-content prefix.
///
/// Layout (zstd format, "Dictionary Format"): magic, dictionary id 1, a Huffman table in direct
/// representation (one explicit weight of 1 plus the implied last symbol: two 1-bit codes), three
/// FSE tables (accuracy log 5, all probability on symbol 0: the value 33 in six bits after the
/// four-bit log), and the repeat offsets 1, 4, 8.
pub const RAW_CONTENT_HEADER: [u8; 28] = [
    0x37, 0xA4, 0x30, 0xEC, // magic
    0x01, 0x00, 0x00, 0x00, // dictionary id
    0x80, 0x10, // Huffman: direct representation, weights [1]
    0xF0, 0x03, // offset codes: FSE table
    0xF0, 0x03, // match lengths: FSE table
    0xF0, 0x03, // literal lengths: FSE table
    0x01, 0x00, 0x00, 0x00, // repeat offset 1
    0x04, 0x00, 0x00, 0x00, // repeat offset 2
    0x08, 0x00, 0x00, 0x00, // repeat offset 3
];

/// The id under which a frame's reference is registered with the decoder.
const REFERENCE_ID: u32 = 1;

/// How much one decoding step may produce before output is checked against the declared size.
const STEP_BYTES: usize = 256 * 1024;

/// A window every frame may declare: 8 MiB, the largest libzstd picks by itself at levels up to
/// 19 (ruzstd's encoder always declares 128 KiB, whatever the input size).
const MIN_WINDOW: u64 = 8 << 20;

/// The largest window a frame decoded with `reference_len` bytes of reference and `declared`
/// bytes of output may declare: `MIN_WINDOW` (8 MiB), or reference and content rounded up to
/// a power of two, which is how the store's encoders size windows that must reach a reference.
pub fn window_limit(reference_len: usize, declared: usize) -> u64 {
    let need = (reference_len as u64).saturating_add(declared as u64);
    need.max(MIN_WINDOW)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
}

/// Decodes one zstd frame that must produce exactly `declared` bytes.
///
/// Decoding is bounded: the frame's window may not exceed [`window_limit`], output beyond
/// `declared` stops decoding at once, and bytes after the frame are an error.
///
/// # Errors
/// [`Corruption::Zstd`] when the frame or the dictionary is malformed, [`Corruption::Size`] when
/// the frame's declared or actual size differs from `declared`.
pub fn decode_frame(
    frame: &[u8],
    reference: Reference<'_>,
    declared: usize,
) -> Result<Vec<u8>, Corruption> {
    let zstd = |what: &str, e: &dyn core::fmt::Display| Corruption::Zstd(format!("{what}: {e}"));
    let dictionary_len = reference.dictionary.map_or(0, <[u8]>::len);
    let limit = window_limit(dictionary_len + reference.prefix.len(), declared);

    let mut decoder = FrameDecoder::new();
    decoder.set_max_window_size(limit);
    if !reference.is_none() {
        let header = reference.dictionary.unwrap_or(&RAW_CONTENT_HEADER);
        let mut dictionary = Dictionary::decode_dict(header).map_err(|e| zstd("dictionary", &e))?;
        dictionary.id = REFERENCE_ID;
        dictionary.dict_content.extend_from_slice(reference.prefix);
        decoder
            .add_dict(dictionary)
            .map_err(|e| zstd("dictionary", &e))?;
    }

    let mut source = frame;
    decoder
        .init(&mut source)
        .map_err(|e| zstd("frame header", &e))?;
    if !reference.is_none() {
        decoder
            .force_dict(REFERENCE_ID)
            .map_err(|e| zstd("dictionary", &e))?;
    }
    let header_size = decoder.content_size();
    if header_size != 0 && header_size != declared as u64 {
        return Err(Corruption::Size {
            declared: declared as u64,
            actual: header_size,
        });
    }

    let mut out = Vec::with_capacity(declared);
    loop {
        let finished = decoder
            .decode_blocks(&mut source, BlockDecodingStrategy::UptoBytes(STEP_BYTES))
            .map_err(|e| zstd("block", &e))?;
        if let Some(bytes) = decoder.collect() {
            if out.len() + bytes.len() > declared {
                return Err(Corruption::Size {
                    declared: declared as u64,
                    actual: (out.len() + bytes.len()) as u64,
                });
            }
            out.extend_from_slice(&bytes);
        }
        if finished && decoder.can_collect() == 0 {
            break;
        }
    }
    if !source.is_empty() {
        return Err(Corruption::Zstd(format!(
            "{} bytes after the end of the frame",
            source.len()
        )));
    }
    if out.len() != declared {
        return Err(Corruption::Size {
            declared: declared as u64,
            actual: out.len() as u64,
        });
    }
    Ok(out)
}

/// Whether `bytes` start like a zstd dictionary that ruzstd accepts.
pub fn check_dictionary(bytes: &[u8]) -> Result<(), Corruption> {
    if bytes.get(..4) != Some(&DICT_MAGIC[..]) {
        return Err(Corruption::Zstd("dictionary: bad magic number".into()));
    }
    Dictionary::decode_dict(bytes)
        .map(|_| ())
        .map_err(|e| Corruption::Zstd(format!("dictionary: {e}")))
}

/// The core's encoder: ruzstd at its fastest level, the only one it implements.
///
/// It takes no references; a store that uses it keeps full records and chunks only. Hosts with
/// libzstd provide a [`Compressor`] that takes references and every level.
#[derive(Debug, Default, Clone, Copy)]
pub struct RuzstdCompressor;

impl Compressor for RuzstdCompressor {
    fn supports_references(&self) -> bool {
        false
    }

    fn compress(
        &self,
        input: &[u8],
        _level: Level,
        reference: Reference<'_>,
    ) -> Result<Vec<u8>, CompressError> {
        if !reference.is_none() {
            return Err(CompressError {
                message: "ruzstd's encoder takes no dictionary or prefix".into(),
            });
        }
        Ok(ruzstd::encoding::compress_to_vec(
            input,
            ruzstd::encoding::CompressionLevel::Fastest,
        ))
    }
}

#[cfg(test)]
mod tests;
