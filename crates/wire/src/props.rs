//! An event's properties with each value as the sender wrote it, less any whitespace
//! between the tokens of an object or array (so that the stored text is one line, and an
//! NDJSON export one object per line): found in the pass that reads the event, written
//! out compactly once, and written again only when something was removed or changed. Building a map of values for every event, and serializing it
//! again, cost more than everything else ingest does with an event.

use crate::MAX_DEPTH;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A JSON object's entries, each key decoded and each value kept as its JSON text.
///
/// Keys are unique: when the sender repeats one, the last value wins, as it does for a
/// JSON map.
#[derive(Debug, Clone)]
pub struct Properties {
    /// The object's JSON text, written compactly from the sent values.
    text: String,
    /// Decoded keys that were written with escapes, and values set after parsing.
    spill: String,
    entries: Vec<Entry>,
    /// Whether `entries` no longer say exactly what `text` says.
    edited: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Span,
    value: Span,
}

/// Where a piece of text lives: in the sent text or in the spill.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
    spilled: bool,
}

impl Span {
    fn of<'t>(self, text: &'t str, spill: &'t str) -> &'t str {
        let from = if self.spilled { spill } else { text };
        &from[self.start as usize..self.end as usize]
    }
}

/// One property value: its JSON text, valid and free of lone surrogates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropValue<'a>(&'a str);

impl<'a> PropValue<'a> {
    /// The value's JSON text.
    pub fn json(self) -> &'a str {
        self.0
    }

    pub fn is_null(self) -> bool {
        self.0 == "null"
    }

    /// The decoded string, when the value is a string.
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(self.0).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    }

    /// The number as JSON writes it, when the value is a number.
    pub fn as_number(self) -> Option<String> {
        match self.0.as_bytes().first()? {
            b'-' | b'0'..=b'9' => serde_json::from_str::<serde_json::Number>(self.0)
                .ok()
                .map(|n| n.to_string()),
            _ => None,
        }
    }

    /// The value as text when it is a scalar: a string's content, a number as JSON
    /// writes it, `true` or `false`. `None` for null, objects and arrays.
    pub fn scalar(self) -> Option<Cow<'a, str>> {
        match self.0.as_bytes().first()? {
            b'"' => self.as_str(),
            b't' => Some(Cow::Borrowed("true")),
            b'f' => Some(Cow::Borrowed("false")),
            _ => self.as_number().map(Cow::Owned),
        }
    }
}

impl Default for Properties {
    fn default() -> Self {
        Properties {
            text: "{}".to_string(),
            spill: String::new(),
            entries: Vec::new(),
            edited: false,
        }
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Properties {
    /// Parses a JSON object. The error says what is wrong with the text.
    pub fn parse(text: &str) -> Result<Properties, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let field = PropsField::deserialize(&mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        match field {
            PropsField::Object(entries) => {
                Properties::from_entries(entries, false).map_err(|e| match e {
                    PropsError::Json(e) => e,
                    PropsError::TooDeep(k)
                    | PropsError::Repeated(k)
                    | PropsError::ControlInKey(k) => {
                        format!("property `{k}` is refused")
                    }
                })
            }
            _ => Err("not a JSON object".to_string()),
        }
    }

    /// Keeps the entries of an object found while parsing a larger text, written
    /// compactly; the values keep the sender's text.
    ///
    /// `strict` is for what a sender sends: a key given twice, a key with a control
    /// character and a value nested deeper than [`MAX_DEPTH`] are refused. Otherwise
    /// (text this program wrote, or another store's) the last of a repeated key wins.
    pub(crate) fn from_entries(
        entries: Vec<(Key<'_>, &RawValue)>,
        strict: bool,
    ) -> Result<Properties, PropsError> {
        let size: usize = entries
            .iter()
            .map(|(k, v)| k.text().len() + v.get().len() + 4)
            .sum();
        let mut props = Properties {
            text: String::with_capacity(size + 2),
            spill: String::new(),
            entries: Vec::with_capacity(entries.len()),
            edited: false,
        };
        props.text.push('{');
        for (i, (key, value)) in entries.into_iter().enumerate() {
            let value = value.get();
            // Depth first: the check below recurses, and refuses deep values with
            // serde_json's message, not ours.
            let (compact, depth) = compacted(value);
            if strict {
                if depth > MAX_DEPTH {
                    return Err(PropsError::TooDeep(key.text().to_string()));
                }
                if let Key::Decoded(k) = &key
                    && k.chars().any(char::is_control)
                {
                    return Err(PropsError::ControlInKey(k.clone()));
                }
            }
            validate(value).map_err(PropsError::Json)?;
            if i > 0 {
                props.text.push(',');
            }
            let key = match key {
                Key::Borrowed(k) => {
                    props.text.push('"');
                    let span = props.push(k, false);
                    props.text.push('"');
                    span
                }
                Key::Decoded(k) => {
                    let encoded = serde_json::to_string(&k).expect("a string serializes");
                    props.text.push_str(&encoded);
                    props.push(&k, true)
                }
            };
            props.text.push(':');
            let value = props.push(compact.as_deref().unwrap_or(value), false);
            props.entries.push(Entry { key, value });
        }
        props.text.push('}');
        if let Some(key) = props.repeated_key() {
            if strict {
                return Err(PropsError::Repeated(key));
            }
            props.dedupe();
        }
        Ok(props)
    }

    /// Builds the properties of a JSON map.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> Properties {
        let text = serde_json::Value::Object(map.clone()).to_string();
        Properties::parse(&text).expect("a serialized map is a valid JSON object")
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each key and its value, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, PropValue<'_>)> {
        self.entries
            .iter()
            .map(|e| (self.piece(e.key), PropValue(self.piece(e.value))))
    }

    pub fn get(&self, key: &str) -> Option<PropValue<'_>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, PropValue<'_>) -> bool) {
        let before = self.entries.len();
        let (text, spill) = (&self.text, &self.spill);
        self.entries
            .retain(|e| keep(e.key.of(text, spill), PropValue(e.value.of(text, spill))));
        self.edited |= self.entries.len() != before;
    }

    pub fn remove(&mut self, key: &str) {
        self.retain(|k, _| k != key);
    }

    /// Sets an existing key's value to a string; does nothing when the key is absent.
    pub fn set_str(&mut self, key: &str, value: &str) {
        let Some(i) = self.iter().position(|(k, _)| k == key) else {
            return;
        };
        let json = serde_json::to_string(value).expect("a string serializes");
        self.entries[i].value = self.push(&json, true);
        self.edited = true;
    }

    /// Adds a key with a string value when the object has no such key.
    pub fn insert_str_if_absent(&mut self, key: &str, value: &str) {
        if self.contains_key(key) {
            return;
        }
        let key = self.push(key, true);
        let json = serde_json::to_string(value).expect("a string serializes");
        let value = self.push(&json, true);
        self.entries.push(Entry { key, value });
        self.edited = true;
    }

    /// The object's JSON text, compact: the sender's values when nothing changed.
    pub fn into_json(self) -> String {
        if !self.edited {
            return self.text;
        }
        let mut out = String::with_capacity(self.text.len() + self.spill.len());
        out.push('{');
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let key = self.piece(e.key);
            if e.key.spilled {
                out.push_str(&serde_json::to_string(key).expect("a string serializes"));
            } else {
                // Keys found in the sent text had no escapes, so their text is the key.
                out.push('"');
                out.push_str(key);
                out.push('"');
            }
            out.push(':');
            out.push_str(self.piece(e.value));
        }
        out.push('}');
        out
    }

    fn piece(&self, s: Span) -> &str {
        s.of(&self.text, &self.spill)
    }

    /// Appends `piece` to the text, or to the spill.
    fn push(&mut self, piece: &str, spilled: bool) -> Span {
        let to = if spilled {
            &mut self.spill
        } else {
            &mut self.text
        };
        let start = to.len() as u32;
        to.push_str(piece);
        Span {
            start,
            end: to.len() as u32,
            spilled,
        }
    }

    /// A key given more than once (the first in sort order), if any.
    fn repeated_key(&self) -> Option<String> {
        if self.entries.len() < 2 {
            return None;
        }
        let mut keys: Vec<&str> = self.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        keys.windows(2)
            .find(|w| w[0] == w[1])
            .map(|w| w[0].to_string())
    }

    /// Drops all but the last entry of a repeated key.
    fn dedupe(&mut self) {
        let keys: Vec<String> = self.iter().map(|(k, _)| k.to_string()).collect();
        let mut i = 0;
        self.entries.retain(|_| {
            let repeated_later = keys[i + 1..].contains(&keys[i]);
            i += 1;
            !repeated_later
        });
        self.edited = true;
    }
}

/// An object's or array's text without whitespace between its tokens, or `None` when it
/// has none (scalars never do: the parser hands them over without the space around
/// them), and how deep its arrays and objects nest (0 for a scalar). Whitespace inside
/// strings is kept: JSON strings hold no raw control characters, so a string's spaces
/// are the only whitespace to step over.
fn compacted(value: &str) -> (Option<String>, usize) {
    let bytes = value.as_bytes();
    if !matches!(bytes.first(), Some(b'{' | b'[')) {
        return (None, 0);
    }
    let mut out: Option<Vec<u8>> = None;
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for (i, &c) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else if matches!(c, b'{' | b'[') {
            depth += 1;
            deepest = deepest.max(depth);
        } else if matches!(c, b'}' | b']') {
            depth = depth.saturating_sub(1);
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            out.get_or_insert_with(|| bytes[..i].to_vec());
            continue;
        }
        if let Some(out) = &mut out {
            out.push(c);
        }
    }
    let out = out.map(|o| String::from_utf8(o).expect("only ASCII whitespace was taken out"));
    (out, deepest)
}

/// Rejects what the JSON syntax allows but a JSON reader refuses: lone surrogate escapes
/// and numbers out of range. Plain strings and literals, nearly every value, need no
/// second look.
fn validate(value: &str) -> Result<(), String> {
    let plain = match value.as_bytes().first() {
        Some(b'"') => !value.contains('\\'),
        Some(b't' | b'f' | b'n') => true,
        Some(b'-' | b'0'..=b'9') => value.len() <= 15 && !value.contains(['e', 'E']),
        _ => false,
    };
    if plain {
        return Ok(());
    }
    serde_json::from_str::<serde_json::Value>(value)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Why an event's properties were refused.
#[derive(Debug)]
pub(crate) enum PropsError {
    /// A value a JSON reader refuses (lone surrogate, number out of range).
    Json(String),
    /// This key's value nests deeper than [`MAX_DEPTH`].
    TooDeep(String),
    /// This key is given more than once.
    Repeated(String),
    /// This key holds a control character.
    ControlInKey(String),
}

/// An event's `properties` field as the parser meets it: an object's entries, borrowed
/// from the text; null; or something that is not an object.
pub(crate) enum PropsField<'a> {
    Object(Vec<(Key<'a>, &'a RawValue)>),
    Null,
    Other,
}

/// A key as the parser hands it over: a slice of the text, or decoded when it had escapes.
pub(crate) enum Key<'a> {
    Borrowed(&'a str),
    Decoded(String),
}

impl Key<'_> {
    pub(crate) fn text(&self) -> &str {
        match self {
            Key::Borrowed(k) => k,
            Key::Decoded(k) => k,
        }
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key::Decoded(v.to_string()))
            }
        }
        d.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for PropsField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

struct FieldVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = PropsField<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(32));
        while let Some(key) = map.next_key::<Key<'a>>()? {
            entries.push((key, map.next_value::<&'a RawValue>()?));
        }
        Ok(PropsField::Object(entries))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(PropsField::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(PropsField::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(PropsField::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(PropsField::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(PropsField::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(PropsField::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(PropsField::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(PropsField::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn round_trip(text: &str) -> Value {
        serde_json::from_str(&Properties::parse(text).unwrap().into_json()).unwrap()
    }

    #[test]
    fn values_keep_the_senders_text() {
        let p = Properties::parse(r#"{ "b": 1.50, "a": "x",  "n": null }"#).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p.get("b").unwrap().json(), "1.50");
        assert_eq!(p.into_json(), r#"{"b":1.50,"a":"x","n":null}"#);
    }

    #[test]
    fn removing_and_setting_re_encode() {
        let mut p = Properties::parse(r#"{"$ip":"1.2.3.4","a":[1,{"b":2}],"u":"x"}"#).unwrap();
        p.remove("$ip");
        p.set_str("u", "masked \"q\"");
        assert_eq!(
            p.clone().into_json(),
            r#"{"a":[1,{"b":2}],"u":"masked \"q\""}"#
        );
        assert_eq!(p.get("u").unwrap().as_str().unwrap(), "masked \"q\"");
        p.set_str("absent", "z");
        assert!(!p.contains_key("absent"));
        p.insert_str_if_absent("u", "kept");
        p.insert_str_if_absent("$lib", "sdk \"x\"");
        assert_eq!(
            p.into_json(),
            r#"{"a":[1,{"b":2}],"u":"masked \"q\"","$lib":"sdk \"x\""}"#
        );
    }

    #[test]
    fn escaped_keys_are_decoded_and_re_escaped() {
        let p = Properties::parse(r#"{"\u0024ip":"1.2.3.4","tab\tkey":1}"#).unwrap();
        assert!(p.contains_key("$ip"));
        assert!(p.contains_key("tab\tkey"));
        assert_eq!(
            round_trip(r#"{"\u0024ip":"1.2.3.4","tab\tkey":1}"#),
            json!({"$ip": "1.2.3.4", "tab\tkey": 1})
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let p = Properties::parse(r#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.get("a").unwrap().json(), "3");
        assert_eq!(p.into_json(), r#"{"b":2,"a":3}"#);
    }

    #[test]
    fn scalars_read_as_a_json_map_would() {
        let text = r#"{"s":"caf\u00e9","n":1.50,"i":-7,"e":1E2,"t":true,"f":false,"z":null,"o":{},"l":[]}"#;
        let p = Properties::parse(text).unwrap();
        let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        for (k, v) in p.iter() {
            let want = match &map[k] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            assert_eq!(v.scalar().map(Cow::into_owned), want, "{k}");
        }
    }

    #[test]
    fn what_a_json_reader_refuses_is_refused() {
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":[1e400]}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"[1]"#,
            r#"{"a":"#,
        ] {
            assert!(Properties::parse(bad).is_err(), "{bad}");
        }
        assert!(Properties::parse(r#"{"a":"\ud83d\ude00"}"#).is_ok());
    }

    /// Stored text is one line whatever the sender's layout: whitespace between the
    /// tokens of nested values goes, whitespace inside strings stays.
    #[test]
    fn nested_values_are_written_compactly() {
        let sent = "{\n  \"a\" : [\n    1,\n\t2 ,\r\n    { \"b\" : \"x y\\\" ]\" }\n  ],\n  \"o\": { }\n, \"s\": \"  \"\n}";
        let p = Properties::parse(sent).unwrap();
        assert_eq!(p.get("a").unwrap().json(), r#"[1,2,{"b":"x y\" ]"}]"#);
        assert_eq!(
            p.into_json(),
            r#"{"a":[1,2,{"b":"x y\" ]"}],"o":{},"s":"  "}"#
        );
    }

    #[test]
    fn equality_ignores_order_and_spacing() {
        let a = Properties::parse(r#"{"a":1,"b":"x"}"#).unwrap();
        let b = Properties::parse(r#"{ "b":"x", "a":1 }"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(Properties::default().into_json(), "{}");
    }
}
