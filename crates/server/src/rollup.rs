//! What each event adds to the rollups: one (property, value) pair per scalar property,
//! plus the derived crash site of FATAL events. Shared by ingest and by rebuilds after
//! erasure, so both count exactly alike.

use serde_json::{Map, Value};

/// Longest property value kept as a rollup bucket; longer values are free text, not a
/// category, and are left to raw queries.
pub const MAX_VALUE_LEN: usize = 200;

/// Derived property of FATAL events: `[function, file, line, product_version]` as JSON.
pub const FATAL_SITE: &str = "$fatal_site";

/// Properties that are unique per event by nature; a rollup of them would be as large
/// as the events.
const PER_EVENT: &[&str] = &[
    "$insert_id",
    "$time",
    "$timestamp",
    "$sent_at",
    "$uuid",
    "uuid",
    "timestamp",
    "distinct_id",
    "$distinct_id",
    "fatal_message",
    "action_data",
];

/// The text a property value is bucketed under; `None` for values that are not
/// categories (null, objects, arrays, long strings).
pub fn value_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) if s.len() <= MAX_VALUE_LEN => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}

/// The (property, value) pairs of one event, kept in one buffer: an event has dozens of
/// them, and two allocations per pair were a large share of what ingest costs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dims {
    text: String,
    /// Where each pair's property and value end in `text`.
    ends: Vec<(u32, u32)>,
}

impl Dims {
    pub fn push(&mut self, prop: &str, value: &str) {
        self.text.push_str(prop);
        let prop_end = self.text.len() as u32;
        self.text.push_str(value);
        self.ends.push((prop_end, self.text.len() as u32));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(p, v)| {
            let (p, v) = (p as usize, v as usize);
            let pair = (&self.text[start..p], &self.text[p..v]);
            start = v;
            pair
        })
    }

    /// The value of `prop`, when the event has it.
    pub fn get(&self, prop: &str) -> Option<&str> {
        self.iter().find(|(p, _)| *p == prop).map(|(_, v)| v)
    }

    pub fn extend(&mut self, other: &Dims) {
        for (p, v) in other.iter() {
            self.push(p, v);
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// The (property, value) pairs one event contributes.
pub fn dims(event: &str, props: &Map<String, Value>) -> Dims {
    let mut out = Dims::default();
    for (k, v) in props {
        if PER_EVENT.contains(&k.as_str()) {
            continue;
        }
        if let Some(text) = value_text(v) {
            out.push(k, &text);
        }
    }
    if event == "FATAL" {
        let text = |k: &str| {
            props
                .get(k)
                .and_then(value_text)
                .map(|t| t.into_owned())
                .unwrap_or_default()
        };
        let site = serde_json::json!([
            text("fatal_function"),
            text("fatal_file"),
            text("fatal_line"),
            text("product_version")
        ]);
        out.push(FATAL_SITE, &site.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_become_dims_and_fatal_gets_a_site() {
        let props = json!({"product_version": "1.2", "n": 3, "ok": true, "obj": {}, "$insert_id": "x",
            "fatal_function": "f", "fatal_file": "a.rs", "fatal_line": 7, "long": "y".repeat(300)});
        let dims = dims("FATAL", props.as_object().unwrap());
        let mut d: Vec<(&str, &str)> = dims.iter().collect();
        d.sort();
        let names: Vec<&str> = d.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "$fatal_site",
                "fatal_file",
                "fatal_function",
                "fatal_line",
                "n",
                "ok",
                "product_version"
            ]
        );
        assert_eq!(d[0].1, r#"["f","a.rs","7","1.2"]"#);
        assert!(d.contains(&("ok", "true")));
        assert_eq!(dims.get("n"), Some("3"));
        assert_eq!(dims.len(), 7);
    }
}
