//! From payload JSON to validated events and the request's one token.

use crate::Properties;
use crate::error::size;
use crate::props::PropsField;
use crate::time::{parse_timestamp_ms, range_text, timestamp_in_range};
use crate::{Limits, WireError};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

/// One validated event, ready for the privacy filter and storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The sender's uuid, or a fresh time-ordered (v7) one when it sent none.
    pub uuid: Uuid,
    pub event: String,
    pub distinct_id: String,
    /// When the event happened, Unix milliseconds, corrected for sender clock skew.
    pub timestamp_ms: i64,
    pub properties: Properties,
}

/// A decoded request: the project token and the events it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub token: String,
    pub events: Vec<Event>,
}

/// Longest accepted event name and distinct id, in characters.
const MAX_NAME: usize = 200;

/// An event's fields, or an envelope's: a body that is one object is read once, and is
/// an envelope when it has a `batch`.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    batch: Batch<'a>,
    #[serde(borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    distinct_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "$distinct_id")]
    dollar_distinct_id: Option<&'a RawValue>,
    #[serde(borrow)]
    properties: Option<PropsField<'a>>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    offset: Option<&'a RawValue>,
    #[serde(borrow)]
    uuid: Option<&'a RawValue>,
    #[serde(borrow)]
    api_key: Option<&'a RawValue>,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow, rename = "$token")]
    dollar_token: Option<&'a RawValue>,
}

/// The envelope's `batch`, read in the same pass as the envelope.
#[derive(Default)]
enum Batch<'a> {
    #[default]
    Absent,
    Events(Vec<&'a RawValue>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Batch<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct Events<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Events<'a> {
            type Value = Batch<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch<'a>, A::Error> {
                let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(64));
                while let Some(e) = seq.next_element::<&'a RawValue>()? {
                    events.push(e);
                }
                Ok(Batch::Events(events))
            }
            // Anything else is read over, so that the error can name the field.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Batch::Other)
            }
            fn visit_unit<E: Error>(self) -> Result<Batch<'a>, E> {
                Ok(Batch::Other)
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<Batch<'a>, E> {
                Ok(Batch::Other)
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<Batch<'a>, E> {
                Ok(Batch::Other)
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<Batch<'a>, E> {
                Ok(Batch::Other)
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<Batch<'a>, E> {
                Ok(Batch::Other)
            }
            fn visit_str<E: Error>(self, _: &str) -> Result<Batch<'a>, E> {
                Ok(Batch::Other)
            }
        }
        d.deserialize_any(Events(std::marker::PhantomData))
    }
}

/// Collects the one token a request may carry, wherever the client put it.
#[derive(Default)]
struct TokenSlot(Option<String>);

impl TokenSlot {
    fn offer(&mut self, token: Option<String>) -> Result<(), WireError> {
        match (token.filter(|t| !t.is_empty()), &self.0) {
            (None, _) => Ok(()),
            (Some(t), None) => {
                self.0 = Some(t);
                Ok(())
            }
            (Some(t), Some(have)) if &t == have => Ok(()),
            _ => Err(WireError::MixedTokens),
        }
    }
}

pub(crate) fn parse(
    json: &str,
    sent_at_ms: Option<i64>,
    limits: &Limits,
    now_ms: i64,
) -> Result<Decoded, WireError> {
    let bad_json =
        |e: serde_json::Error| WireError::invalid(format!("body is not valid JSON: {e}"));
    let mut tokens = TokenSlot::default();
    let mut sent_at_ms = sent_at_ms;
    let events = match json.trim_start().as_bytes().first() {
        Some(b'[') => {
            let raws: Vec<&RawValue> = serde_json::from_str(json).map_err(bad_json)?;
            each_event(raws, limits, &mut tokens, sent_at_ms, now_ms)?
        }
        Some(b'{') => {
            let mut top: RawEvent = serde_json::from_str(json).map_err(bad_json)?;
            match std::mem::take(&mut top.batch) {
                Batch::Absent => {
                    fits(0, json.trim().len(), limits)?;
                    vec![event(0, top, &mut tokens, sent_at_ms, now_ms)?]
                }
                Batch::Other => {
                    return Err(WireError::invalid(
                        "`batch` must be an array of event objects",
                    ));
                }
                Batch::Events(raws) => {
                    tokens.offer(opt_string(top.api_key, "api_key", None)?)?;
                    tokens.offer(opt_string(top.token, "token", None)?)?;
                    if let Some(s) = opt_string(top.sent_at, "sent_at", None)? {
                        sent_at_ms = parse_timestamp_ms(&s).or(sent_at_ms);
                    }
                    each_event(raws, limits, &mut tokens, sent_at_ms, now_ms)?
                }
            }
        }
        _ => {
            return Err(WireError::invalid(
                "body must be a JSON object or array of events",
            ));
        }
    };
    let token = tokens.0.ok_or(WireError::MissingToken)?;
    Ok(Decoded { token, events })
}

fn each_event(
    raws: Vec<&RawValue>,
    limits: &Limits,
    tokens: &mut TokenSlot,
    sent_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<Vec<Event>, WireError> {
    if raws.is_empty() {
        return Err(WireError::invalid("the batch holds no events"));
    }
    let mut events = Vec::with_capacity(raws.len());
    for (i, raw) in raws.into_iter().enumerate() {
        let text = raw.get();
        fits(i, text.len(), limits)?;
        let ev: RawEvent = serde_json::from_str(text)
            .map_err(|_| WireError::invalid(format!("event {i} is not a JSON object")))?;
        events.push(event(i, ev, tokens, sent_at_ms, now_ms)?);
    }
    Ok(events)
}

fn fits(i: usize, len: usize, limits: &Limits) -> Result<(), WireError> {
    if len > limits.max_event {
        return Err(WireError::TooLarge(format!(
            "event {i} is {}; the limit per event is {}",
            size(len),
            size(limits.max_event)
        )));
    }
    Ok(())
}

fn event(
    i: usize,
    mut ev: RawEvent,
    tokens: &mut TokenSlot,
    sent_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<Event, WireError> {
    let at = Some(i);

    let mut properties = match ev.properties.take() {
        None | Some(PropsField::Null) => Properties::default(),
        Some(PropsField::Object(entries)) => Properties::from_entries(entries).map_err(|e| {
            WireError::invalid(format!("event {i}: `properties` is not valid JSON: {e}"))
        })?,
        Some(PropsField::Other) => {
            return Err(WireError::invalid(format!(
                "event {i}: `properties` must be an object"
            )));
        }
    };

    tokens.offer(opt_string(ev.api_key, "api_key", at)?)?;
    tokens.offer(opt_string(ev.token, "token", at)?)?;
    tokens.offer(opt_string(ev.dollar_token, "$token", at)?)?;
    if let Some(t) = properties.get("token") {
        match t.as_str() {
            Some(t) => tokens.offer(Some(t.into_owned()))?,
            None if t.is_null() => {}
            None => {
                return Err(WireError::invalid(format!(
                    "event {i}: `properties.token` must be a string"
                )));
            }
        }
        properties.remove("token");
    }

    let event = opt_string(ev.event, "event", at)?
        .filter(|e| !e.is_empty())
        .ok_or_else(|| WireError::invalid(format!("event {i}: missing event name (`event`)")))?;
    check_len(i, "event", &event)?;

    let distinct_id = match id_field(ev.distinct_id, i)? {
        Some(d) => Some(d),
        None => match id_field(ev.dollar_distinct_id, i)? {
            Some(d) => Some(d),
            None => properties
                .get("distinct_id")
                .and_then(|v| v.as_str().map(Cow::into_owned).or_else(|| v.as_number())),
        },
    }
    .filter(|d| !d.trim().is_empty())
    .ok_or_else(|| WireError::invalid(format!("event {i}: missing distinct_id")))?;
    check_len(i, "distinct_id", &distinct_id)?;

    let uuid = match opt_string(ev.uuid, "uuid", at)? {
        Some(s) => Uuid::parse_str(&s)
            .map_err(|_| WireError::invalid(format!("event {i}: `uuid` is not a UUID: {s:?}")))?,
        None => Uuid::now_v7(),
    };

    let timestamp_ms = event_time(i, &ev, sent_at_ms, now_ms)?;
    Ok(Event {
        uuid,
        event,
        distinct_id,
        timestamp_ms,
        properties,
    })
}

fn event_time(
    i: usize,
    ev: &RawEvent,
    sent_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<i64, WireError> {
    let outside = |what: String| {
        WireError::invalid(format!(
            "event {i}: {what} outside the accepted time range, {}",
            range_text()
        ))
    };
    let in_range = |ms: Option<i64>| ms.filter(|&ms| timestamp_in_range(ms));
    if let Some(offset) = ev.offset.filter(|o| o.get() != "null") {
        let ms: i64 = serde_json::from_str(offset.get()).map_err(|_| {
            WireError::invalid(format!(
                "event {i}: `offset` must be a whole number of milliseconds"
            ))
        })?;
        return in_range(now_ms.checked_sub(ms))
            .ok_or_else(|| outside(format!("`offset` {ms} puts the event")));
    }
    match opt_string(ev.timestamp, "timestamp", Some(i))? {
        None => Ok(now_ms),
        Some(s) => {
            let ts = parse_timestamp_ms(&s).ok_or_else(|| {
                WireError::invalid(format!(
                    "event {i}: `timestamp` is not an ISO 8601 date: {s:?}"
                ))
            })?;
            match sent_at_ms {
                None => in_range(Some(ts)).ok_or_else(|| outside(format!("`timestamp` {s:?} is"))),
                // The sender's clock may be off: keep the interval between event and send.
                Some(sent) => in_range(
                    now_ms
                        .checked_sub(sent)
                        .and_then(|skew| ts.checked_add(skew)),
                )
                .ok_or_else(|| {
                    outside(format!("`timestamp` {s:?}, corrected by the send time, is"))
                }),
            }
        }
    }
}

fn check_len(i: usize, field: &str, value: &str) -> Result<(), WireError> {
    if value.chars().count() > MAX_NAME {
        return Err(WireError::invalid(format!(
            "event {i}: `{field}` is longer than {MAX_NAME} characters"
        )));
    }
    Ok(())
}

fn opt_string(
    raw: Option<&RawValue>,
    field: &str,
    at: Option<usize>,
) -> Result<Option<String>, WireError> {
    let Some(raw) = raw else { return Ok(None) };
    match serde_json::from_str::<Option<String>>(raw.get()) {
        Ok(v) => Ok(v),
        Err(_) => Err(WireError::invalid(match at {
            Some(i) => format!("event {i}: `{field}` must be a string"),
            None => format!("`{field}` must be a string"),
        })),
    }
}

fn id_field(raw: Option<&RawValue>, i: usize) -> Result<Option<String>, WireError> {
    let Some(raw) = raw else { return Ok(None) };
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) => Ok(Some(s)),
        Ok(Value::Number(n)) => Ok(Some(n.to_string())),
        Ok(Value::Null) => Ok(None),
        _ => Err(WireError::invalid(format!(
            "event {i}: `distinct_id` must be a string or number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn p(json: &str) -> Result<Decoded, WireError> {
        parse(json, None, &Limits::default(), NOW)
    }

    #[test]
    fn all_three_shapes() {
        let single = p(r#"{"api_key":"t","event":"a","distinct_id":"d"}"#).unwrap();
        assert_eq!((single.token.as_str(), single.events.len()), ("t", 1));
        let arr = p(r#"[{"event":"a","distinct_id":"d","properties":{"token":"t"}},{"event":"b","distinct_id":7,"token":"t"}]"#).unwrap();
        assert_eq!(arr.events[1].distinct_id, "7");
        assert!(!arr.events[0].properties.contains_key("token"));
        let env = p(r#"{"api_key":"t","batch":[{"event":"a","$distinct_id":"d"}]}"#).unwrap();
        assert_eq!(env.events[0].distinct_id, "d");
        assert_eq!(env.events[0].timestamp_ms, NOW);
    }

    #[test]
    fn tokens() {
        assert_eq!(
            p(r#"{"event":"a","distinct_id":"d"}"#),
            Err(WireError::MissingToken)
        );
        assert_eq!(
            p(r#"{"api_key":"t","batch":[{"event":"a","distinct_id":"d","token":"u"}]}"#),
            Err(WireError::MixedTokens)
        );
    }

    #[test]
    fn times_and_uuids() {
        let d = p(r#"{"token":"t","event":"a","distinct_id":"d","timestamp":"2023-11-14T22:13:20Z","uuid":"0190a8e0-0000-7000-8000-000000000001"}"#).unwrap();
        assert_eq!(d.events[0].timestamp_ms, NOW);
        assert_eq!(
            d.events[0].uuid.to_string(),
            "0190a8e0-0000-7000-8000-000000000001"
        );
        let d = p(r#"{"token":"t","event":"a","distinct_id":"d","offset":500}"#).unwrap();
        assert_eq!(d.events[0].timestamp_ms, NOW - 500);
        let skewed = parse(
            r#"{"token":"t","event":"a","distinct_id":"d","timestamp":"2023-11-14T22:13:20Z"}"#,
            Some(NOW + 60_000),
            &Limits::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(skewed.events[0].timestamp_ms, NOW - 60_000);
    }

    /// Times outside the accepted range, and sums that would overflow, are refused with
    /// the field that gave them; the edges themselves are accepted.
    #[test]
    fn times_outside_the_accepted_range_are_refused() {
        const RANGE: &str = "2000-01-01T00:00:00.000Z to 2099-12-31T23:59:59.999Z";
        let ev = |extra: &str| format!(r#"{{"token":"t","event":"a","distinct_id":"d"{extra}}}"#);
        let cases: Vec<(String, Option<i64>, String)> = vec![
            (
                ev(r#","offset":9223372036854775807"#),
                None,
                format!("event 0: `offset` 9223372036854775807 puts the event outside the accepted time range, {RANGE}"),
            ),
            (
                ev(r#","offset":-9223372036854775808"#),
                None,
                format!("event 0: `offset` -9223372036854775808 puts the event outside the accepted time range, {RANGE}"),
            ),
            (
                ev(&format!(r#","offset":{}"#, NOW - 946_684_800_000 + 1)),
                None,
                format!("event 0: `offset` {} puts the event outside the accepted time range, {RANGE}", NOW - 946_684_800_000 + 1),
            ),
            (
                ev(r#","timestamp":"1999-12-31T23:59:59.999Z""#),
                None,
                format!("event 0: `timestamp` \"1999-12-31T23:59:59.999Z\" is outside the accepted time range, {RANGE}"),
            ),
            (
                ev(r#","timestamp":"2100-01-01T00:00:00Z""#),
                None,
                format!("event 0: `timestamp` \"2100-01-01T00:00:00Z\" is outside the accepted time range, {RANGE}"),
            ),
            (
                ev(r#","timestamp":"2024-01-01T00:00:00Z""#),
                Some(i64::MIN),
                format!("event 0: `timestamp` \"2024-01-01T00:00:00Z\", corrected by the send time, is outside the accepted time range, {RANGE}"),
            ),
            (
                ev(r#","timestamp":"2024-01-01T00:00:00Z""#),
                Some(i64::MAX),
                format!("event 0: `timestamp` \"2024-01-01T00:00:00Z\", corrected by the send time, is outside the accepted time range, {RANGE}"),
            ),
            (
                r#"{"token":"t","sent_at":"2000-01-01T00:00:00Z","batch":[{"event":"a","distinct_id":"d","timestamp":"2099-06-01T00:00:00Z"}]}"#.to_string(),
                None,
                format!("event 0: `timestamp` \"2099-06-01T00:00:00Z\", corrected by the send time, is outside the accepted time range, {RANGE}"),
            ),
        ];
        for (json, sent_at, want) in cases {
            let got = std::panic::catch_unwind(|| parse(&json, sent_at, &Limits::default(), NOW));
            let got =
                got.unwrap_or_else(|_| panic!("decoding panicked on {json} (sent at {sent_at:?})"));
            assert_eq!(
                got,
                Err(WireError::Invalid(want)),
                "{json} (sent at {sent_at:?})"
            );
        }
        for (ts, ms) in [
            ("2000-01-01T00:00:00.000Z", 946_684_800_000),
            ("2099-12-31T23:59:59.999Z", 4_102_444_799_999),
        ] {
            let d = p(&ev(&format!(r#","timestamp":"{ts}""#))).unwrap();
            assert_eq!(d.events[0].timestamp_ms, ms, "{ts}");
        }
        let d = p(&ev(&format!(r#","offset":{}"#, NOW - 946_684_800_000))).unwrap();
        assert_eq!(d.events[0].timestamp_ms, 946_684_800_000);
    }

    #[test]
    fn precise_errors() {
        let cases = [
            (
                r#"{"token":"t","distinct_id":"d"}"#,
                "event 0: missing event name",
            ),
            (
                r#"{"token":"t","event":"a"}"#,
                "event 0: missing distinct_id",
            ),
            (
                r#"{"token":"t","event":5,"distinct_id":"d"}"#,
                "event 0: `event` must be a string",
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":"d","properties":[]}"#,
                "`properties` must be an object",
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":"d","uuid":"nope"}"#,
                "`uuid` is not a UUID",
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":"d","timestamp":"soon"}"#,
                "not an ISO 8601 date",
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":{}}"#,
                "must be a string or number",
            ),
            (r#"{"token":"t","batch":{}}"#, "`batch` must be an array"),
            (r#"{"token":"t","batch":[]}"#, "holds no events"),
            (r#"{"token":"t""#, "not valid JSON"),
            (r#"[1]"#, "event 0 is not a JSON object"),
            ("42", "must be a JSON object or array"),
        ];
        for (json, want) in cases {
            let err = p(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn event_size_limit() {
        let big = format!(
            r#"{{"token":"t","event":"a","distinct_id":"d","properties":{{"x":"{}"}}}}"#,
            "y".repeat(2000)
        );
        let err = parse(
            &big,
            None,
            &Limits {
                max_payload: 1 << 20,
                max_event: 1000,
            },
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(err, WireError::TooLarge(ref m) if m.contains("limit per event")),
            "{err}"
        );
    }
}
