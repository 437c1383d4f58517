//! Event parsing and validation, on JSON bodies: what is accepted holds to
//! `check_decoded`, and sent again as it was stored (its uuid, name, distinct id,
//! timestamp and properties) it is accepted again as the same events.
#![no_main]

use anonstats_fuzz::{LIMITS, NOW_MS, check_decoded, check_error};
use anonstats_wire::{Limits, Request, decode_at, format_rfc3339_ms};
use libfuzzer_sys::fuzz_target;

fn body(data: &[u8]) -> Request<'_> {
    Request {
        body: data,
        content_type: Some("application/json"),
        ..Request::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let decoded = match decode_at(&body(data), &LIMITS, NOW_MS) {
        Ok(d) => d,
        Err(e) => return check_error(&e),
    };
    check_decoded(&decoded, &LIMITS);

    let events: Vec<String> = decoded
        .events
        .iter()
        .map(|e| {
            format!(
                r#"{{"uuid":"{}","event":{},"distinct_id":{},"timestamp":"{}","properties":{}}}"#,
                e.uuid,
                serde_json::to_string(&e.event).unwrap(),
                serde_json::to_string(&e.distinct_id).unwrap(),
                format_rfc3339_ms(e.timestamp_ms),
                e.properties.clone().into_json()
            )
        })
        .collect();
    let resent = format!(
        r#"{{"api_key":{},"batch":[{}]}}"#,
        serde_json::to_string(&decoded.token).unwrap(),
        events.join(",")
    );
    // The stored form is compact, but the envelope around it adds its own fields.
    let roomy = Limits {
        max_payload: LIMITS.max_payload * 2,
        ..LIMITS
    };
    let again = decode_at(&body(resent.as_bytes()), &roomy, NOW_MS)
        .unwrap_or_else(|e| panic!("what was accepted is refused when sent again ({e}): {resent}"));
    assert_eq!(again, decoded, "{resent}");
});
