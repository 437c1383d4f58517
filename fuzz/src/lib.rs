//! What every fuzz target that decodes checks of what it gets back.

use anonstats_wire::{
    Decoded, Limits, MAX_EVENTS_PER_REQUEST, MAX_PROPERTIES, Properties, WireError,
    timestamp_in_range,
};

/// Small limits, so that bombs and long inputs reach them quickly.
pub const LIMITS: Limits = Limits {
    max_payload: 64 * 1024,
    max_event: 16 * 1024,
};

/// A fixed receive time: the same input decodes the same on every run.
pub const NOW_MS: i64 = 1_764_000_000_000;

/// Longest event name and distinct id, in characters.
const MAX_NAME: usize = 200;

/// What a decoded request holds to, whatever the input: a token, at most
/// [`MAX_EVENTS_PER_REQUEST`] events, each named, with a time in the accepted range, at
/// most [`MAX_PROPERTIES`] properties whose stored JSON text says what iterating them says,
/// within the event limit; and, all together, no more text than the payload limit lets in.
pub fn check_decoded(decoded: &Decoded, limits: &Limits) {
    assert!(!decoded.token.is_empty(), "a request without a token");
    assert!(decoded.events.len() <= MAX_EVENTS_PER_REQUEST);
    let mut total = 0;
    for e in &decoded.events {
        for name in [&e.event, &e.distinct_id] {
            assert!(!name.is_empty(), "an empty event name or distinct id");
            assert!(name.chars().count() <= MAX_NAME, "{name:?} is too long");
            assert!(
                !name.chars().any(char::is_control),
                "{name:?} has a control"
            );
        }
        assert!(timestamp_in_range(e.timestamp_ms), "{}", e.timestamp_ms);
        assert!(e.properties.len() <= MAX_PROPERTIES);
        let json = check_properties(&e.properties);
        assert!(json.len() <= limits.max_event, "{} bytes", json.len());
        total += json.len();
    }
    assert!(
        total <= limits.max_payload,
        "{total} bytes of properties from a payload of at most {}",
        limits.max_payload
    );
}

/// The stored JSON text of `props` is one object that holds exactly what iterating them
/// gives, and parses back to equal properties. Returns that text.
pub fn check_properties(props: &Properties) -> String {
    let json = props.clone().into_json();
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("stored properties are not a JSON object ({e}): {json}"));
    assert_eq!(parsed.len(), props.len(), "{json}");
    for (key, value) in props.iter() {
        let sent: serde_json::Value = serde_json::from_str(value.json()).unwrap();
        assert_eq!(parsed.get(key), Some(&sent), "{key} in {json}");
    }
    let again = Properties::parse(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(&again == props, "a round trip changed {json}");
    json
}

/// An error a client can act on: a 4xx with words.
pub fn check_error(e: &WireError) {
    assert!(matches!(e.status(), 400 | 401 | 413), "{e}");
    assert!(!e.to_string().is_empty());
}
