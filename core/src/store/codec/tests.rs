use super::*;
use alloc::vec;

fn sample() -> Vec<u8> {
    (0..50_000u32)
        .map(|i| (i % 97) as u8 ^ ((i / 1000) as u8))
        .collect()
}

#[test]
fn raw_content_header_is_a_valid_dictionary() {
    let d = Dictionary::decode_dict(&RAW_CONTENT_HEADER).expect("valid header");
    assert_eq!(d.offset_hist, [1, 4, 8]);
    assert!(d.dict_content.is_empty());
    check_dictionary(&RAW_CONTENT_HEADER).unwrap();
}

#[test]
fn ruzstd_frames_round_trip() {
    let data = sample();
    let frame = RuzstdCompressor
        .compress(&data, Level::Fast, Reference::default())
        .unwrap();
    assert!(frame.len() < data.len() / 4);
    assert_eq!(
        decode_frame(&frame, Reference::default(), data.len()).unwrap(),
        data
    );
}

#[test]
fn ruzstd_compressor_refuses_references() {
    let r = Reference {
        dictionary: None,
        prefix: b"abc",
    };
    assert!(RuzstdCompressor.compress(b"x", Level::Fast, r).is_err());
}

#[test]
fn wrong_declared_size_is_an_error() {
    let data = sample();
    let frame = RuzstdCompressor
        .compress(&data, Level::Fast, Reference::default())
        .unwrap();
    for declared in [0, 1, data.len() - 1, data.len() + 1, 10 * data.len()] {
        match decode_frame(&frame, Reference::default(), declared) {
            Err(Corruption::Size { .. }) => {}
            other => panic!("declared {declared}: {other:?}"),
        }
    }
}

#[test]
fn truncation_and_trailing_bytes_are_errors() {
    let data = sample();
    let frame = RuzstdCompressor
        .compress(&data, Level::Fast, Reference::default())
        .unwrap();
    for cut in 0..frame.len() {
        assert!(decode_frame(&frame[..cut], Reference::default(), data.len()).is_err());
    }
    let mut longer = frame.clone();
    longer.push(0);
    assert!(matches!(
        decode_frame(&longer, Reference::default(), data.len()),
        Err(Corruption::Zstd(_))
    ));
}

#[test]
fn bomb_is_stopped_at_the_declared_size() {
    // A frame of 64 MiB of zeros is a few hundred bytes; declared as 1 KiB it must fail early.
    let zeros = vec![0u8; 64 << 20];
    let frame = RuzstdCompressor
        .compress(&zeros, Level::Fast, Reference::default())
        .unwrap();
    assert!(frame.len() < 64 << 10);
    match decode_frame(&frame, Reference::default(), 1024) {
        Err(Corruption::Size { declared: 1024, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn window_limit_covers_reference_and_content() {
    assert_eq!(window_limit(0, 0), 8 << 20);
    assert_eq!(window_limit(1000, 100), 8 << 20);
    assert_eq!(window_limit(8 << 20, 1 << 20), 16 << 20);
}
