//! What each event adds to the rollups: one (property, value) pair per scalar property,
//! plus the derived crash site of FATAL events. Shared by ingest and by rebuilds after
//! erasure, so both count exactly alike.

use anonstats_wire::Properties;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Longest property value kept as a rollup bucket; longer values are free text, not a
/// category, and are left to raw queries.
pub const MAX_VALUE_LEN: usize = 200;

/// Derived property of FATAL events: `[function, file, line, product_version]` as JSON.
pub const FATAL_SITE: &str = "$fatal_site";

/// Property of the events of CI runs ([`is_ci`]).
pub const IS_CI: &str = "is_ci";

/// True for an event of a CI run. The embedded store's rollups leave these out, so that
/// the default answers (CI left out) come from them; an answer that includes CI runs
/// reads the raw events.
pub fn is_ci(dims: &Dims) -> bool {
    dims.get(IS_CI) == Some("true")
}

/// Properties also rolled up two at a time (store/sqlite/pairs.rs): the few a maintainer
/// filters and breaks down by together, a machine's system facts and its version, and
/// the crash site and error code of the few events that carry them, so that a breakdown
/// under a filter does not read every event. Each has tens of values at most. Sorted.
pub const PAIRED: &[&str] = &[
    FATAL_SITE,
    "error_code",
    "host_os_id",
    "host_os_name",
    "product_version",
    "system_architecture",
    "system_container",
    "system_kernel_name",
    "system_virtualization",
];

/// Properties paired with each of [`PAIRED`] for any event only: the kernel version has
/// thousands of values, and its pairs for each event as well would make about as many
/// rows as there are events.
pub const PAIRED_ANY_EVENT: &[&str] = &["system_kernel_version"];

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
pub fn value_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) if s.len() <= MAX_VALUE_LEN => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}

/// The (property, value) pairs of one event, kept in one buffer: an event has dozens of
/// them, and two allocations per pair were a large share of what ingest costs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
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

/// Properties as [`dims`] reads them: each key with its bucket text.
pub trait Scalars {
    fn each(&self, f: impl FnMut(&str, Option<Cow<'_, str>>));
}

impl Scalars for Map<String, Value> {
    fn each(&self, mut f: impl FnMut(&str, Option<Cow<'_, str>>)) {
        for (k, v) in self {
            f(k, value_text(v));
        }
    }
}

impl Scalars for Properties {
    fn each(&self, mut f: impl FnMut(&str, Option<Cow<'_, str>>)) {
        for (k, v) in self.iter() {
            f(k, v.scalar().filter(|s| s.len() <= MAX_VALUE_LEN));
        }
    }
}

/// The (property, value) pairs one event contributes.
pub fn dims(event: &str, props: &impl Scalars) -> Dims {
    let mut out = Dims::default();
    let fatal = event == "FATAL";
    // function, file, line, product_version
    let mut site: [String; 4] = Default::default();
    props.each(|k, text| {
        if fatal {
            let slot = match k {
                "fatal_function" => Some(0),
                "fatal_file" => Some(1),
                "fatal_line" => Some(2),
                "product_version" => Some(3),
                _ => None,
            };
            if let (Some(i), Some(t)) = (slot, &text) {
                site[i] = t.to_string();
            }
        }
        if PER_EVENT.contains(&k) {
            return;
        }
        if let Some(text) = text {
            out.push(k, &text);
        }
    });
    if fatal {
        out.push(FATAL_SITE, &serde_json::json!(site).to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_properties_are_sorted_and_apart() {
        assert!(PAIRED.is_sorted(), "binary searches rely on the order");
        assert!(PAIRED_ANY_EVENT.iter().all(|p| !PAIRED.contains(p)));
    }
    use serde_json::json;

    #[test]
    fn scalars_become_dims_and_fatal_gets_a_site() {
        let props = json!({"product_version": "1.2", "n": 3, "ok": true, "obj": {}, "$insert_id": "x",
            "fatal_function": "f", "fatal_file": "a.rs", "fatal_line": 7, "long": "y".repeat(300)});
        let dims = dims("FATAL", props.as_object().unwrap());
        let sent = Properties::parse(&props.to_string()).unwrap();
        assert_eq!(super::dims("FATAL", &sent), dims);
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
