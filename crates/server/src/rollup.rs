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
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.len() <= MAX_VALUE_LEN => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The (property, value) pairs one event contributes.
pub fn dims(event: &str, props: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = props
        .iter()
        .filter(|(k, _)| !PER_EVENT.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), value_text(v)?)))
        .collect();
    if event == "FATAL" {
        let text = |k: &str| props.get(k).and_then(value_text).unwrap_or_default();
        let site = serde_json::json!([
            text("fatal_function"),
            text("fatal_file"),
            text("fatal_line"),
            text("product_version")
        ]);
        out.push((FATAL_SITE.to_string(), site.to_string()));
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
        let mut d = dims("FATAL", props.as_object().unwrap());
        d.sort();
        let names: Vec<&str> = d.iter().map(|(k, _)| k.as_str()).collect();
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
        assert!(d.contains(&("ok".into(), "true".into())));
    }
}
