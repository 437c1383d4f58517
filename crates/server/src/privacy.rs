//! The privacy filter every event passes before storage.
//!
//! The peer address is never read. `$ip` and the [`DENYLIST`] are dropped; the page
//! location properties are forced to constant masks; a project may further restrict
//! itself to an allowlist.

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

/// Applies the filter in place; returns, per property, how many values it removed or masked.
pub fn apply(props: &mut Properties, policy: &Policy, dropped: &mut Vec<(&'static str, u64)>) {
    let mut note = |name: &'static str| match dropped.iter_mut().find(|(n, _)| *n == name) {
        Some((_, c)) => *c += 1,
        None => dropped.push((name, 1)),
    };
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
        let mut dropped = Vec::new();
        apply(&mut props, &Policy::default(), &mut dropped);
        assert_eq!(
            value(props),
            json!({"$current_url": "masked", "$host": "dashboard.anonstats.invalid", "product_version": "1.2.3"})
        );
        assert!(dropped.contains(&("$ip", 1)) && dropped.contains(&("$geoip_*", 1)));
    }

    #[test]
    fn allowlist_keeps_only_listed() {
        let mut props = props(json!({"a": 1, "b": 2, "$ip": "x"}));
        let policy = Policy {
            allowlist: Some(["a".to_string(), "$ip".to_string()].into()),
        };
        let mut dropped = Vec::new();
        apply(&mut props, &policy, &mut dropped);
        assert_eq!(value(props), json!({"a": 1}));
        assert_eq!(dropped, vec![("$ip", 1), ("allowlist", 1)]);
    }
}
