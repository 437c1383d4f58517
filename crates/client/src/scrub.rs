//! Scrubbing: where the agent removes identifying data from the free text of an event
//! (`fatal_*`, `action_result`, `action_data`) before it is written, logged or sent.
//!
//! Every event passes [`properties`] as it is built, whatever made it: the panic hook,
//! [`fatal!`](crate::fatal!), `anonstats send FATAL ...`, the cloud failures, or a host's
//! own [`Client::capture`](crate::Client::capture). The rules are the crate
//! [`anonstats_scrub`]'s, which the collector applies again to what it receives; here they
//! also know the current user's name and home directory ([`context`]). See docs/DATA.md.

pub use anonstats_scrub::{Context, PROPERTIES};
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// The current user's name and home directory, read from the environment once.
pub fn context() -> &'static Context {
    static CONTEXT: OnceLock<Context> = OnceLock::new();
    CONTEXT.get_or_init(Context::from_env)
}

/// Scrub the free-text properties in place with [`context`].
pub fn properties(props: &mut Map<String, Value>) {
    properties_with(props, context());
}

/// Scrub the free-text properties in place: strings by the rules, objects and arrays
/// (which no agent sends there) replaced by `masked`; numbers and booleans are kept.
pub fn properties_with(props: &mut Map<String, Value>, ctx: &Context) {
    let action = props
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_string);
    for key in PROPERTIES {
        let Some(value) = props.get_mut(*key) else {
            continue;
        };
        match value {
            Value::String(s) => {
                if let Some(clean) = anonstats_scrub::property(key, s, action.as_deref(), ctx) {
                    *s = clean;
                }
            }
            Value::Array(_) | Value::Object(_) => *value = "masked".into(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FatalSite;

    #[test]
    fn fatal_properties_are_scrubbed_together() {
        let ctx = Context::new(Some("alice"), Some("/home/alice"));
        let site = FatalSite {
            process: "alice-tool".into(),
            thread: "main".into(),
            function: "app::run".into(),
            file: "/home/alice/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.1/src/de.rs".into(),
            line: 7,
            errno: 0,
            message: "bad 10.0.0.1\nsecond line".into(),
        };
        let mut p = site.properties();
        p.insert("fatal_function".into(), serde_json::json!({"x": "alice"}));
        properties_with(&mut p, &ctx);
        assert_eq!(p["fatal_file"], "serde-1.0.1/src/de.rs");
        assert_eq!(p["action_data"], "7@serde-1.0.1/src/de.rs:app::run/0");
        assert_eq!(p["action_result"], "<user>-tool:main");
        assert_eq!(p["fatal_process"], "<user>-tool");
        assert_eq!(p["fatal_message"], "bad <ip>");
        assert_eq!(p["fatal_function"], "masked");
        assert_eq!(p["fatal_line"], 7);
    }
}
