//! The privacy filter every event passes before storage.
//!
//! The peer address is never read. `$ip` and the [`DENYLIST`] are dropped; the page
//! location properties are forced to constant masks; a project may further restrict
//! itself to an allowlist; the free text of crash and action reports ([`anonstats_scrub::PROPERTIES`]) is
//! scrubbed by the rules the agent applies before sending ([`anonstats_scrub`]), for
//! what an old agent or a hand-written request sends.

use anonstats_wire::Properties;
use std::collections::HashSet;

/// Properties dropped by default: addresses, free-form locations and device traits that
/// can single out a machine or a person.
pub const DENYLIST: &[&str] = &[
    "$ip",
    "$raw_user_agent",
    "$user_agent",
    "$referrer",
    "$referring_domain",
    "$initial_referrer",
    "$initial_referring_domain",
    "$initial_current_url",
    "$initial_pathname",
    "$session_entry_url",
    "$session_entry_host",
    "$session_entry_pathname",
    "$session_entry_referrer",
    "$session_entry_referring_domain",
    "$screen_height",
    "$screen_width",
    "$viewport_height",
    "$viewport_width",
    "$device_id",
    "$timezone",
    "$set",
    "$set_once",
    "$unset",
    "$initial_person_info",
    "$anon_distinct_id",
    "$window_id",
    "$session_id",
    "$pageview_id",
    "$prev_pageview_pathname",
    "$title",
    "$elements_chain",
    "hostname",
    "host_name",
    "ip",
    "ip_address",
    "mac",
    "mac_address",
    "email",
    "$email",
    "username",
    "user_name",
];

/// Dropped by prefix: GeoIP enrichment of other pipelines must never land here.
pub const DENY_PREFIXES: &[&str] = &["$geoip_"];

/// Location properties that are kept only as one of the known constant masks; any other
/// value becomes [`MASKED`].
pub const MASKED_PROPERTIES: &[&str] = &["$current_url", "$pathname", "$host"];

/// Mask values the anonstats agent, anonstats.js and Netdata's dashboard send.
pub const KNOWN_MASKS: &[&str] = &[
    "agent backend",
    "agent dashboard",
    "anonstats-agent",
    "anonstats-dashboard",
    "agent.anonstats.invalid",
    "dashboard.anonstats.invalid",
    "netdata-dashboard",
    "dashboard.netdata.io",
];

pub const MASKED: &str = "masked";

/// What a project keeps, resolved once per key-cache refresh.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allowlist: Option<HashSet<String>>,
}

/// What the filter did to the events of one request, per property name: values removed
/// or masked (the allowlist's under "allowlist"), and values scrubbed.
#[derive(Debug, Default)]
pub struct Edits {
    pub dropped: Vec<(&'static str, u64)>,
    pub scrubbed: Vec<(&'static str, u64)>,
}

fn count(list: &mut Vec<(&'static str, u64)>, name: &'static str) {
    match list.iter_mut().find(|(n, _)| *n == name) {
        Some((_, c)) => *c += 1,
        None => list.push((name, 1)),
    }
}

/// Applies the filter in place, noting what it did in `edits`.
pub fn apply(props: &mut Properties, policy: &Policy, edits: &mut Edits) {
    let dropped = &mut edits.dropped;
    let mut note = |name: &'static str| count(dropped, name);
    // One pass over the event's properties, each looked up in the denylist.
    props.retain(|k, _| {
        if let Some(name) = denied(k) {
            note(name);
            return false;
        }
        true
    });
    for name in MASKED_PROPERTIES {
        if let Some(v) = props.get(name) {
            let known = v.as_str().is_some_and(|s| KNOWN_MASKS.contains(&&*s));
            if !known {
                props.set_str(name, MASKED);
                note(name);
            }
        }
    }
    if let Some(allow) = &policy.allowlist {
        let before = props.len();
        props.retain(|k, _| allow.contains(k));
        for _ in props.len()..before {
            note("allowlist");
        }
    }
    for name in scrub(props) {
        count(&mut edits.scrubbed, name);
    }
}

/// Scrubs the agent's free-text properties ([`anonstats_scrub::PROPERTIES`]) in place: strings by the rules (without the
/// agent's user name and home directory, which only it knows), numbers and other scalars
/// as their text (a long number is an id the rules mask), objects and arrays as
/// [`MASKED`]. Returns the names of those it changed.
fn scrub(props: &mut Properties) -> Vec<&'static str> {
    // The values are read first (the action may come after them), then changed.
    // (name, its text, whether it was a string); no text for an object or array.
    let mut found: Vec<(&'static str, Option<String>, bool)> = Vec::new();
    let mut action: Option<String> = None;
    for (k, v) in props.iter() {
        if k == "action" {
            action = v.as_str().map(|s| s.into_owned());
        }
        if let Some(key) = anonstats_scrub::PROPERTIES.iter().find(|name| **name == k) {
            if v.json().starts_with(['{', '[']) {
                found.push((key, None, false));
            } else if let Some(s) = v.as_str() {
                found.push((key, Some(s.into_owned()), true));
            } else {
                found.push((key, Some(v.json().to_string()), false));
            }
        }
    }
    let ctx = anonstats_scrub::Context::none();
    let mut changed = Vec::new();
    for (key, value, string) in found {
        let clean = match value {
            None => MASKED.to_string(),
            Some(v) => match anonstats_scrub::property(key, &v, action.as_deref(), &ctx) {
                Some(clean) if clean != v || !string => clean,
                _ => continue,
            },
        };
        props.set_str(key, &clean);
        changed.push(key);
    }
    changed
}

/// The denylist entry (or prefix rule) that removes `key`, if any.
fn denied(key: &str) -> Option<&'static str> {
    // FxHash: a fixed set of our own names, looked up for every property of every event.
    static SET: std::sync::LazyLock<rustc_hash::FxHashSet<&'static str>> =
        std::sync::LazyLock::new(|| DENYLIST.iter().copied().collect());
    if let Some(name) = SET.get(key) {
        return Some(name);
    }
    DENY_PREFIXES
        .iter()
        .any(|p| key.starts_with(p))
        .then_some("$geoip_*")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn props(v: Value) -> Properties {
        Properties::from_map(v.as_object().unwrap())
    }

    fn value(p: Properties) -> Value {
        serde_json::from_str(&p.into_json()).unwrap()
    }

    #[test]
    fn drops_denylist_and_masks_locations() {
        let mut props = props(json!({
            "$ip": "203.0.113.9", "$geoip_city_name": "Athens", "hostname": "db1",
            "$current_url": "http://10.1.2.3:19999/#menu", "$host": "dashboard.anonstats.invalid",
            "product_version": "1.2.3"
        }));
        let mut edits = Edits::default();
        apply(&mut props, &Policy::default(), &mut edits);
        let dropped = edits.dropped;
        assert_eq!(
            value(props),
            json!({"$current_url": "masked", "$host": "dashboard.anonstats.invalid", "product_version": "1.2.3"})
        );
        assert!(dropped.contains(&("$ip", 1)) && dropped.contains(&("$geoip_*", 1)));
    }

    #[test]
    fn scrubs_free_text_and_reports_what_changed() {
        let mut props = props(json!({
            "action": "FATAL",
            "fatal_message": "cannot reach db.example.com from 10.0.0.7",
            "fatal_file": "/home/bob/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.1/src/de.rs",
            "fatal_function": "app::run",
            "fatal_thread": {"name": "bob"},
            "action_data": "7@src/main.rs:app::run/0",
            "product_version": "10.0.0.7"
        }));
        let mut edits = Edits::default();
        apply(&mut props, &Policy::default(), &mut edits);
        assert_eq!(
            value(props),
            json!({
                "action": "FATAL",
                "fatal_message": "cannot reach <host> from <ip>",
                "fatal_file": "serde-1.0.1/src/de.rs",
                "fatal_function": "app::run",
                "fatal_thread": "masked",
                "action_data": "7@src/main.rs:app::run/0",
                "product_version": "10.0.0.7"
            })
        );
        edits.scrubbed.sort();
        assert_eq!(
            edits.scrubbed,
            vec![("fatal_file", 1), ("fatal_message", 1), ("fatal_thread", 1)]
        );
        assert!(edits.dropped.is_empty());
    }

    /// Found by `scripts/fuzz.sh privacy`: a number sent as crash text was kept as it came,
    /// past the rule that masks long numbers.
    #[test]
    fn crash_text_sent_as_a_number_is_scrubbed_as_text() {
        let mut props = props(json!({
            "action": "FATAL",
            "fatal_message": 4155550123456789u64,
            "fatal_line_hint": 2,
            "fatal_file": 2,
            "fatal_thread": true
        }));
        let mut edits = Edits::default();
        apply(&mut props, &Policy::default(), &mut edits);
        let v = value(props);
        assert_eq!(v["fatal_file"], "2");
        assert_eq!(v["fatal_thread"], "true");
        let message = v["fatal_message"].as_str().expect("a string");
        assert!(!message.contains("4155550123456789"), "{message}");
        assert_eq!(v["fatal_line_hint"], 2, "other properties keep their type");
    }

    #[test]
    fn allowlist_keeps_only_listed() {
        let mut props = props(json!({"a": 1, "b": 2, "$ip": "x"}));
        let policy = Policy {
            allowlist: Some(["a".to_string(), "$ip".to_string()].into()),
        };
        let mut edits = Edits::default();
        apply(&mut props, &policy, &mut edits);
        assert_eq!(value(props), json!({"a": 1}));
        assert_eq!(edits.dropped, vec![("$ip", 1), ("allowlist", 1)]);
    }
}
