//! The wire decoder through every shape and codec.
//!
//! Raw bytes go in as each codec's payload (plain, base64, gzip, lz64, a `data=` form
//! field, a `?data=` query parameter): whatever comes back holds to `check_decoded`. A
//! payload that is JSON text is also encoded in every codec the way a client would: every
//! codec must then give the same events or the same error as the plain body, and one
//! larger than the payload limit is refused as too large by each.
#![no_main]

use anonstats_fuzz::{LIMITS, NOW_MS, check_decoded, check_error};
use anonstats_wire::{Request, WireError, decode_at};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use std::io::Write as _;

fn decode(
    body: &[u8],
    query: Option<&str>,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<anonstats_wire::Decoded, WireError> {
    let req = Request {
        body,
        query,
        content_type,
        content_encoding,
    };
    let out = decode_at(&req, &LIMITS, NOW_MS);
    match &out {
        Ok(d) => check_decoded(d, &LIMITS),
        Err(e) => check_error(e),
    }
    out
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn form(bytes: &[u8]) -> String {
    form_urlencoded::byte_serialize(bytes).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// What may differ between two decodes of the same events: the fresh uuids given to
/// events sent without one.
fn comparable(out: &Result<anonstats_wire::Decoded, WireError>) -> Result<String, String> {
    match out {
        Ok(d) => Ok(format!(
            "{} {:?}",
            d.token,
            d.events
                .iter()
                .map(|e| (&e.event, &e.distinct_id, e.timestamp_ms, &e.properties))
                .collect::<Vec<_>>()
        )),
        Err(e) => Err(format!("{} {e}", e.status())),
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as each codec's payload.
    let _ = decode(data, None, None, None);
    let _ = decode(data, None, Some("application/json"), Some("gzip"));
    for codec in ["base64", "lz64", "gzip-js"] {
        let _ = decode(data, Some(&format!("compression={codec}")), FORM, None);
    }
    let field = form(data);
    let _ = decode(format!("data={field}").as_bytes(), None, FORM, None);
    let _ = decode(
        &[],
        Some(&format!("data={field}&compression=lz64")),
        None,
        None,
    );
    let _ = decode(data, Some(&String::from_utf8_lossy(data)), None, None);

    // JSON text, as clients encode it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As the decoder reads it: JSON's own whitespace, then an object or an array.
    let json_start = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !matches!(json_start.as_bytes().first(), Some(b'{' | b'[')) {
        return;
    }
    let plain = decode(data, None, Some("application/json"), None);
    if data.len() > LIMITS.max_payload {
        assert!(matches!(plain, Err(WireError::TooLarge(_))), "{plain:?}");
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let lz = lz_str::compress_to_base64(text);
    let encoded = [
        decode(&gzip(data), None, None, Some("gzip")),
        decode(b64.as_bytes(), Some("compression=base64"), None, None),
        decode(
            format!("data={}", form(b64.as_bytes())).as_bytes(),
            None,
            FORM,
            None,
        ),
        decode(format!("data={field}").as_bytes(), None, FORM, None),
        decode(&[], Some(&format!("data={field}")), None, None),
        decode(lz.as_bytes(), Some("compression=lz64"), None, None),
        decode(
            format!("data={}&compression=lz64", form(lz.as_bytes())).as_bytes(),
            None,
            FORM,
            None,
        ),
    ];
    let want = comparable(&plain);
    for (i, out) in encoded.iter().enumerate() {
        assert_eq!(comparable(out), want, "encoding {i} of {text:?}");
    }
});
