//! From payload JSON to validated events and the request's one token.

use crate::Properties;
use crate::error::size;
use crate::props::{Key, PropsError, PropsField};
use crate::time::{parse_timestamp_ms, range_text, timestamp_in_range};
use crate::{Limits, MAX_DEPTH, MAX_EVENTS_PER_REQUEST, MAX_PROPERTIES, WireError};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
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
#[derive(Default)]
struct RawEvent<'a> {
    batch: Batch<'a>,
    sent_at: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    distinct_id: Option<&'a RawValue>,
    dollar_distinct_id: Option<&'a RawValue>,
    properties: Option<PropsField<'a>>,
    timestamp: Option<&'a RawValue>,
    offset: Option<&'a RawValue>,
    uuid: Option<&'a RawValue>,
    api_key: Option<&'a RawValue>,
    token: Option<&'a RawValue>,
    dollar_token: Option<&'a RawValue>,
    /// The first of these fields the sender gave more than once: which value it meant
    /// is anyone's guess, so the request is refused.
    repeated: Option<&'static str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawEvent<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Fields<'a> {
            type Value = RawEvent<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent<'a>, A::Error> {
                let mut ev = RawEvent::default();
                let mut seen_batch = false;
                while let Some(key) = map.next_key::<Key<'a>>()? {
                    let (slot, name) = match key.text() {
                        "batch" => {
                            if std::mem::replace(&mut seen_batch, true) {
                                ev.repeated.get_or_insert("batch");
                            }
                            ev.batch = map.next_value()?;
                            continue;
                        }
                        "properties" => {
                            if ev.properties.is_some() {
                                ev.repeated.get_or_insert("properties");
                            }
                            ev.properties = Some(map.next_value()?);
                            continue;
                        }
                        "sent_at" => (&mut ev.sent_at, "sent_at"),
                        "event" => (&mut ev.event, "event"),
                        "distinct_id" => (&mut ev.distinct_id, "distinct_id"),
                        "$distinct_id" => (&mut ev.dollar_distinct_id, "$distinct_id"),
                        "timestamp" => (&mut ev.timestamp, "timestamp"),
                        "offset" => (&mut ev.offset, "offset"),
                        "uuid" => (&mut ev.uuid, "uuid"),
                        "api_key" => (&mut ev.api_key, "api_key"),
                        "token" => (&mut ev.token, "token"),
                        "$token" => (&mut ev.dollar_token, "$token"),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.replace(map.next_value()?).is_some() {
                        ev.repeated.get_or_insert(name);
                    }
                }
                Ok(ev)
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// The envelope's `batch`, or a top-level array, read in the same pass as the rest.
#[derive(Default)]
enum Batch<'a> {
    #[default]
    Absent,
    Events(Vec<&'a RawValue>),
    /// More than [`MAX_EVENTS_PER_REQUEST`] events: this many.
    TooMany(usize),
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
                let hint = seq.size_hint().unwrap_or(64).min(MAX_EVENTS_PER_REQUEST);
                let mut events = Vec::with_capacity(hint);
                while let Some(e) = seq.next_element::<&'a RawValue>()? {
                    if events.len() == MAX_EVENTS_PER_REQUEST {
                        // Past the limit the rest is only counted, for the message.
                        let mut n = events.len() + 1;
                        while seq.next_element::<IgnoredAny>()?.is_some() {
                            n += 1;
                        }
                        return Ok(Batch::TooMany(n));
                    }
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

fn too_many(n: usize) -> WireError {
    WireError::TooLarge(format!(
        "the request holds {n} events; the limit is {MAX_EVENTS_PER_REQUEST} per request"
    ))
}

/// serde_json's message without the position it appends (which, for an event read on
/// its own, would be relative to the event, not the body).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&at).unwrap_or(&text).to_string()
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
        Some(b'[') => match serde_json::from_str::<Batch>(json).map_err(bad_json)? {
            Batch::Events(raws) => each_event(raws, limits, &mut tokens, sent_at_ms, now_ms)?,
            Batch::TooMany(n) => return Err(too_many(n)),
            Batch::Absent | Batch::Other => {
                return Err(WireError::invalid("body is not valid JSON"));
            }
        },
        Some(b'{') => {
            let mut top: RawEvent = serde_json::from_str(json).map_err(bad_json)?;
            let batch = std::mem::take(&mut top.batch);
            if let Some(field) = top.repeated {
                return Err(WireError::invalid(match batch {
                    Batch::Absent => format!("event 0: `{field}` is given twice"),
                    _ => format!("`{field}` is given twice"),
                }));
            }
            match batch {
                Batch::Absent => {
                    fits(0, json.trim().len(), limits)?;
                    vec![event(0, top, &mut tokens, sent_at_ms, now_ms)?]
                }
                Batch::Other => {
                    return Err(WireError::invalid(
                        "`batch` must be an array of event objects",
                    ));
                }
                Batch::TooMany(n) => return Err(too_many(n)),
                Batch::Events(raws) => {
                    tokens.offer(opt_string(top.api_key, "api_key", None)?)?;
                    tokens.offer(opt_string(top.token, "token", None)?)?;
                    if let Some(s) = opt_string(top.sent_at, "sent_at", None)? {
                        let at = parse_timestamp_ms(&s).ok_or_else(|| {
                            WireError::invalid(format!("`sent_at` is not an ISO 8601 date: {s:?}"))
                        })?;
                        sent_at_ms = Some(at);
                    }
                    each_event(raws, limits, &mut tokens, sent_at_ms, now_ms)?
                }
            }
        }
        _ => {
            use serde::de::IgnoredAny;
            let what = match json.trim_start().as_bytes().first() {
                _ if serde_json::from_str::<IgnoredAny>(json).is_err() => None,
                Some(b'n') => Some("null"),
                Some(b't' | b'f') => Some("a boolean"),
                Some(b'"') => Some("a string"),
                Some(_) => Some("a number"),
                None => None,
            };
            return Err(WireError::invalid(match what {
                Some(what) => format!("body must be a JSON object or array of events, not {what}"),
                None => "body must be a JSON object or array of events".to_string(),
            }));
        }
    };
    let token = tokens.0.ok_or(WireError::MissingToken)?;
    Ok(Decoded { token, events })
}

/// One event of a capture V1 batch: the uuid its verdict is keyed by, and the event, or
/// why it is refused.
#[derive(Debug, PartialEq)]
pub struct Keyed {
    pub uuid: Uuid,
    pub event: Result<Event, WireError>,
}

/// A capture V1 body, `{"batch": [events], "created_at": ...}`: each event is decoded on
/// its own, so that a bad one is refused alone and the sender resends nothing of it. The
/// token comes from the `Authorization` header, not the body. The request as a whole is
/// refused only when an answer per event cannot be given: a body that is not such an
/// envelope, an event that is not an object, or one without a uuid, or a uuid twice.
pub(crate) fn parse_v1(
    json: &str,
    sent_at_ms: Option<i64>,
    limits: &Limits,
    now_ms: i64,
) -> Result<Vec<Keyed>, WireError> {
    let shape = || WireError::invalid("a capture V1 body is an object: {\"batch\": [events]}");
    if !json.trim_start().starts_with('{') {
        return Err(shape());
    }
    let top: RawEvent = serde_json::from_str(json)
        .map_err(|e| WireError::invalid(format!("body is not valid JSON: {e}")))?;
    if let Some(field) = top.repeated {
        return Err(WireError::invalid(format!("`{field}` is given twice")));
    }
    let raws = match top.batch {
        Batch::Events(raws) if raws.is_empty() => {
            return Err(WireError::invalid("the batch holds no events"));
        }
        Batch::Events(raws) => raws,
        Batch::TooMany(n) => return Err(too_many(n)),
        Batch::Absent | Batch::Other => return Err(shape()),
    };
    let mut seen = std::collections::HashSet::with_capacity(raws.len());
    let mut keyed = Vec::with_capacity(raws.len());
    for (i, raw) in raws.into_iter().enumerate() {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(WireError::invalid(format!(
                "event {i} is not a JSON object"
            )));
        }
        let ev: RawEvent = serde_json::from_str(text).map_err(|e| {
            WireError::invalid(format!("event {i} is not valid JSON: {}", json_message(&e)))
        })?;
        let uuid = opt_string(ev.uuid, "uuid", Some(i))?
            .and_then(|s| Uuid::parse_str(s.trim()).ok())
            .ok_or_else(|| {
                WireError::invalid(format!(
                    "event {i} has no `uuid`: capture V1 answers each event by its uuid"
                ))
            })?;
        if !seen.insert(uuid) {
            return Err(WireError::invalid(format!(
                "event {i}: uuid {uuid} is given to more than one event of the batch"
            )));
        }
        let event = match (fits(i, text.len(), limits), ev.repeated) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(field)) => Err(WireError::invalid(format!(
                "event {i}: `{field}` is given twice"
            ))),
            // Tokens inside an event are stepped over: the header names the project.
            (Ok(()), None) => event(i, ev, &mut TokenSlot::default(), sent_at_ms, now_ms)
                .map(|e| Event { uuid, ..e }),
        };
        keyed.push(Keyed { uuid, event });
    }
    Ok(keyed)
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
        if !text.starts_with('{') {
            return Err(WireError::invalid(format!(
                "event {i} is not a JSON object"
            )));
        }
        let ev: RawEvent = serde_json::from_str(text).map_err(|e| {
            WireError::invalid(format!("event {i} is not valid JSON: {}", json_message(&e)))
        })?;
        if let Some(field) = ev.repeated {
            return Err(WireError::invalid(format!(
                "event {i}: `{field}` is given twice"
            )));
        }
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
        Some(PropsField::Object(entries)) if entries.len() > MAX_PROPERTIES => {
            return Err(WireError::TooLarge(format!(
                "event {i} has {} properties; the limit is {MAX_PROPERTIES} per event",
                entries.len()
            )));
        }
        Some(PropsField::Object(entries)) => {
            Properties::from_entries(entries, true).map_err(|e| {
                WireError::invalid(match e {
                    PropsError::Json(e) => format!("event {i}: `properties` is not valid JSON: {e}"),
                    PropsError::TooDeep(k) => format!(
                        "event {i}: property `{k}` nests arrays and objects deeper than {MAX_DEPTH} levels"
                    ),
                    PropsError::Repeated(k) => format!("event {i}: property `{k}` is given twice"),
                    PropsError::ControlInKey(k) => format!(
                        "event {i}: property key {} {CONTROL}",
                        serde_json::to_string(&k).expect("a string serializes")
                    ),
                })
            })?
        }
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
            None => match properties.get("distinct_id") {
                None => None,
                Some(v) => match v.as_str() {
                    Some(s) => Some(s.into_owned()),
                    None if v.as_number().is_some() => Some(whole_number(i, v.json())?),
                    None => None,
                },
            },
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

/// What the error says of a name, id or key with a control character in it.
const CONTROL: &str = "contains a control character (U+0000 to U+001F or U+007F to U+009F): names, ids and keys must be printable text";

/// An event name or distinct id: at most [`MAX_NAME`] characters, none of them a control
/// character (a NUL cuts the text short in C tools and terminals; others break lines
/// and tables of every export).
fn check_len(i: usize, field: &str, value: &str) -> Result<(), WireError> {
    let mut count = 0;
    for c in value.chars() {
        if c.is_control() {
            return Err(WireError::invalid(format!(
                "event {i}: `{field}` {CONTROL}"
            )));
        }
        count += 1;
    }
    if count > MAX_NAME {
        return Err(WireError::invalid(format!(
            "event {i}: `{field}` is longer than {MAX_NAME} characters"
        )));
    }
    Ok(())
}

/// A numeric distinct id as text: only whole numbers that fit 64 bits, which every
/// reader reads back the same; a fraction or a larger number would be rounded.
fn whole_number(i: usize, text: &str) -> Result<String, WireError> {
    match serde_json::from_str::<serde_json::Number>(text) {
        Ok(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        _ => Err(WireError::invalid(format!(
            "event {i}: `distinct_id` number {text} is not a whole number within 64 bits; send it as a string"
        ))),
    }
}

fn opt_string(
    raw: Option<&RawValue>,
    field: &str,
    at: Option<usize>,
) -> Result<Option<String>, WireError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = match at {
        Some(i) => format!("event {i}: "),
        None => String::new(),
    };
    match serde_json::from_str::<Option<String>>(raw.get()) {
        Ok(v) => Ok(v),
        Err(e) if raw.get().starts_with('"') => Err(WireError::invalid(format!(
            "{at}`{field}` is not a valid string: {}",
            json_message(&e)
        ))),
        Err(_) => Err(WireError::invalid(format!(
            "{at}`{field}` must be a string"
        ))),
    }
}

fn id_field(raw: Option<&RawValue>, i: usize) -> Result<Option<String>, WireError> {
    let Some(raw) = raw else { return Ok(None) };
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) => Ok(Some(s)),
        Ok(Value::Number(_)) => whole_number(i, raw.get()).map(Some),
        Ok(Value::Null) => Ok(None),
        Err(e) if raw.get().starts_with('"') => Err(WireError::invalid(format!(
            "event {i}: `distinct_id` is not a valid string: {}",
            json_message(&e)
        ))),
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
    fn v1_refuses_each_bad_event_alone() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let body = format!(
            r#"{{"created_at":"2023-11-14T22:13:20Z","batch":[
                {{"uuid":"{a}","event":"ok","distinct_id":"d","timestamp":"2023-11-14T22:13:19Z","options":{{}},"properties":{{"k":1}}}},
                {{"uuid":"{b}","event":"","distinct_id":"d"}},
                {{"uuid":" {c} ","event":"x","distinct_id":"d","properties":[]}}]}}"#
        );
        let keyed = parse_v1(&body, None, &Limits::default(), NOW).unwrap();
        assert_eq!(keyed.iter().map(|k| k.uuid).collect::<Vec<_>>(), [a, b, c]);
        let ok = keyed[0].event.as_ref().unwrap();
        assert_eq!((ok.uuid, ok.event.as_str()), (a, "ok"));
        assert_eq!(ok.timestamp_ms, NOW - 1000);
        let e = keyed[1].event.as_ref().unwrap_err();
        assert!(e.to_string().contains("missing event name"), "{e}");
        let e = keyed[2].event.as_ref().unwrap_err();
        assert!(e.to_string().contains("must be an object"), "{e}");
    }

    #[test]
    fn v1_refuses_what_it_cannot_answer_per_event() {
        let u = Uuid::new_v4();
        let ev = |uuid: &str| format!(r#"{{"uuid":{uuid},"event":"e","distinct_id":"d"}}"#);
        for (body, says) in [
            ("[]".to_string(), "a capture V1 body is an object"),
            (
                r#"{"batch":{}}"#.to_string(),
                "a capture V1 body is an object",
            ),
            (r#"{"batch":[]}"#.to_string(), "holds no events"),
            (
                r#"{"batch":[1]}"#.to_string(),
                "event 0 is not a JSON object",
            ),
            (format!(r#"{{"batch":[{}]}}"#, ev("null")), "has no `uuid`"),
            (
                format!(r#"{{"batch":[{}]}}"#, ev(r#""nope""#)),
                "has no `uuid`",
            ),
            (
                format!(r#"{{"batch":[{0},{0}]}}"#, ev(&format!(r#""{u}""#))),
                "more than one event",
            ),
        ] {
            let e = parse_v1(&body, None, &Limits::default(), NOW).unwrap_err();
            assert!(e.to_string().contains(says), "{body}: {e}");
        }
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

    /// Each limit: refused one past it with its own message, accepted at it.
    #[test]
    fn named_limits() {
        let props = |n: usize| {
            let p: Vec<String> = (0..n).map(|i| format!(r#""p{i}":1"#)).collect();
            format!(
                r#"{{"token":"t","event":"a","distinct_id":"d","properties":{{{}}}}}"#,
                p.join(",")
            )
        };
        assert!(p(&props(MAX_PROPERTIES)).is_ok());
        let e = p(&props(MAX_PROPERTIES + 1)).unwrap_err();
        assert_eq!(
            e,
            WireError::TooLarge("event 0 has 1001 properties; the limit is 1000 per event".into())
        );
        let deep = |n: usize| {
            format!(
                r#"{{"token":"t","event":"a","distinct_id":"d","properties":{{"x":{}1{}}}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(p(&deep(MAX_DEPTH)).is_ok());
        for n in [MAX_DEPTH + 1, 1000] {
            assert_eq!(
                p(&deep(n)).unwrap_err().to_string(),
                "event 0: property `x` nests arrays and objects deeper than 32 levels"
            );
        }
        let batch = |n: usize| {
            format!(
                r#"{{"token":"t","batch":[{}]}}"#,
                vec![r#"{"event":"a","distinct_id":"d"}"#; n].join(",")
            )
        };
        assert_eq!(
            p(&batch(MAX_EVENTS_PER_REQUEST)).unwrap().events.len(),
            MAX_EVENTS_PER_REQUEST
        );
        assert_eq!(
            p(&batch(MAX_EVENTS_PER_REQUEST + 5)).unwrap_err(),
            too_many(10_005)
        );
        let arr = format!(
            "[{}]",
            vec![r#"{"event":"a","distinct_id":"d","token":"t"}"#; MAX_EVENTS_PER_REQUEST + 1]
                .join(",")
        );
        assert_eq!(p(&arr).unwrap_err(), too_many(10_001));
    }

    #[test]
    fn repeated_fields_control_characters_and_numbers() {
        let cases = [
            (
                r#"{"token":"t","event":"a","distinct_id":"d","event":"a"}"#,
                "event 0: `event` is given twice",
            ),
            (
                r#"{"token":"t","token":"u","batch":[{"event":"a","distinct_id":"d"}]}"#,
                "`token` is given twice",
            ),
            (
                r#"{"token":"t","batch":[{"event":"a","distinct_id":"d","\u0075uid":"x","uuid":"y"}]}"#,
                "event 0: `uuid` is given twice",
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":"d","properties":{"k":1,"k":1}}"#,
                "event 0: property `k` is given twice",
            ),
            (
                r#"{"token":"t","event":"a\u0000","distinct_id":"d"}"#,
                "event 0: `event` contains a control character",
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":"x\u0085"}"#,
                "event 0: `distinct_id` contains a control character",
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":"d","properties":{"\u0000":1}}"#,
                r#"event 0: property key "\u0000" contains a control character"#,
            ),
            (
                r#"{"token":"t","event":"a","distinct_id":1e3}"#,
                "`distinct_id` number 1e3 is not a whole number",
            ),
            (
                r#"{"token":"t","event":"a","properties":{"distinct_id":2.5}}"#,
                "`distinct_id` number 2.5 is not a whole number",
            ),
            (
                r#"{"token":"t","event":"\udead","distinct_id":"d"}"#,
                "event 0: `event` is not a valid string",
            ),
            (
                r#"{"token":"t","sent_at":"later","batch":[{"event":"a","distinct_id":"d"}]}"#,
                "`sent_at` is not an ISO 8601 date",
            ),
            (
                "null",
                "body must be a JSON object or array of events, not null",
            ),
            (r#""x""#, "not a string"),
        ];
        for (json, want) in cases {
            let err = p(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
        // An escaped NUL inside a value is legal JSON and kept as sent.
        let d = p(r#"{"token":"t","event":"a","distinct_id":"d","properties":{"v":"\u0000"}}"#)
            .unwrap();
        assert_eq!(
            d.events[0].properties.get("v").unwrap().json(),
            r#""\u0000""#
        );
        assert_eq!(
            p(r#"{"token":"t","event":"a","distinct_id":18446744073709551615}"#)
                .unwrap()
                .events[0]
                .distinct_id,
            "18446744073709551615"
        );
    }
}
