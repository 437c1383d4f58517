//! Decoding of PostHog-compatible capture requests into validated events.
//!
//! A capture request arrives in many shapes: a single event, an array, or a
//! `{"api_key", "batch": [...]}` envelope; as a JSON body, a `data=` form field or a
//! `?data=` query parameter; plain, base64, gzip, deflate, brotli, zstd or lz64 (LZString base64). [`decode`]
//! turns any of them into one token and a list of [`Event`]s, bounded in size while it
//! decompresses, and says exactly what was wrong when it cannot.
//!
//! ```
//! use anonstats_wire::{decode, Limits, Request};
//! let body = br#"{"api_key":"t1","batch":[{"event":"START","distinct_id":"m1"}]}"#;
//! let req = Request { body, ..Request::default() };
//! let decoded = decode(&req, &Limits::default()).unwrap();
//! assert_eq!(decoded.token, "t1");
//! assert_eq!(decoded.events[0].event, "START");
//! ```

mod error;
mod event;
mod lz64;
mod payload;
pub(crate) mod props;
mod time;

pub use error::WireError;
pub use event::{Decoded, Event, Keyed};
pub use lz64::decompress_base64 as decompress_lz64;
pub use payload::Request;
pub use props::{PropValue, Properties};
pub use time::{
    MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, format_rfc3339_ms, parse_timestamp_ms, timestamp_in_range,
};

/// Most events one request may carry, in a top-level array or a `batch`.
///
/// PostHog's SDKs send small batches (posthog-python and the agent 100 events,
/// posthog-js a few at a time), and nothing that sends over HTTP needs more than a few
/// thousand. Within the 20 MB batch limit, tiny events (`{"event":"e","distinct_id":"d"}`)
/// would fit 650 000 to a request, and each decoded event costs some hundreds of bytes
/// until it is committed: 10 000 keeps that to a few megabytes per request. Counted
/// while the array is read; the events past the limit are only stepped over.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// Most properties one event may carry, counted as sent (before repeated keys or the
/// privacy filter remove any).
///
/// PostHog sets no hard limit; the agent sends about 30 and posthog-js about 60 with
/// autocapture. Every property is a possible breakdown in the insights and a column
/// for whoever reads the export, and lookups in an event's properties are linear:
/// 1 000 is more than ten times what any real sender needs.
pub const MAX_PROPERTIES: usize = 1_000;

/// Deepest nesting of arrays and objects within one property value (`[1]` is one
/// level).
///
/// Senders nest a level or two (`$set`); serde_json would refuse at 128 levels with its
/// own message, and SQLite's JSON functions at 1 000. Counted in the pass that writes
/// the value compactly, before anything recurses into it.
pub const MAX_DEPTH: usize = 32;

/// Size bounds applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest decoded (decompressed) payload, in bytes.
    pub max_payload: usize,
    /// Largest single event, in bytes of its JSON text.
    pub max_event: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: 2 * 1024 * 1024,
            max_event: 1024 * 1024,
        }
    }
}

/// Decodes one capture request into its token and events.
///
/// `now_ms` is the receive time (Unix milliseconds), used for events without a
/// timestamp and for clock-skew correction when the sender says when it sent.
pub fn decode_at(req: &Request<'_>, limits: &Limits, now_ms: i64) -> Result<Decoded, WireError> {
    let payload = payload::extract(req, limits)?;
    event::parse(&payload.json, payload.sent_at_ms, limits, now_ms)
}

/// Decodes one capture V1 request (`POST /i/v1/analytics/events`) into its events,
/// each decoded on its own and keyed by its uuid; the token travels in the
/// `Authorization` header. `sent_at_ms` is when the sender says it sent the request
/// (its `PostHog-Request-Timestamp`), for clock-skew correction.
pub fn decode_v1_at(
    req: &Request<'_>,
    limits: &Limits,
    sent_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<Vec<Keyed>, WireError> {
    let payload = payload::extract(req, limits)?;
    event::parse_v1(
        &payload.json,
        sent_at_ms.or(payload.sent_at_ms),
        limits,
        now_ms,
    )
}

/// [`decode_at`] with the current time.
pub fn decode(req: &Request<'_>, limits: &Limits) -> Result<Decoded, WireError> {
    decode_at(req, limits, time::now_ms())
}
