//! The lz64 decoder alone: its output, in UTF-8 bytes, never passes the limit it is
//! given; text compressed by the reference encoder (lz-string) comes back exactly; and
//! the limit is exact: a text of N bytes decodes under a limit of N and is too large
//! under N - 1.
#![no_main]

use anonstats_wire::{WireError, decompress_lz64};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (limit, rest) = match data.split_first() {
        Some((&b, rest)) => (usize::from(b) * 64, rest),
        None => return,
    };
    // Arbitrary input as a compressed payload.
    let input = String::from_utf8_lossy(rest);
    match decompress_lz64(&input, limit) {
        Ok(text) => assert!(text.len() <= limit, "{} bytes under {limit}", text.len()),
        Err(WireError::TooLarge(_) | WireError::Invalid(_)) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
    // The input as text to compress.
    let packed = lz_str::compress_to_base64(&*input);
    let back = decompress_lz64(&packed, input.len()).expect("reference output decodes");
    assert_eq!(back, input);
    if !input.is_empty() {
        assert!(matches!(
            decompress_lz64(&packed, input.len() - 1),
            Err(WireError::TooLarge(_))
        ));
    }
});
