//! Events and the properties the client itself sets.

use serde_json::{Map, Value, json};
use std::time::SystemTime;
use uuid::Uuid;

/// The host started.
pub const START: &str = "START";
/// The host stopped cleanly.
pub const EXIT: &str = "EXIT";
/// The host hit a fatal condition (a panic or an explicit [`fatal!`](crate::fatal!)).
pub const FATAL: &str = "FATAL";
/// A dependency needed for cloud features failed to build.
pub const CLOUD_BUILD_FAIL: &str = "CLOUD_BUILD_FAIL";
/// Cloud features are not available in this build.
pub const CLOUD_UNAVAILABLE: &str = "CLOUD_UNAVAILABLE";
/// Connecting to the cloud failed; carries an error code.
pub const CLOUD_CONNECT_FAIL: &str = "CLOUD_CONNECT_FAIL";
/// The previous run ended without EXIT or FATAL (killed, out of memory, power lost).
pub const INCOMPLETE_SHUTDOWN: &str = "INCOMPLETE_SHUTDOWN";

/// The events that are crash reports, the only ones sent under
/// [`Mode::Crashes`](crate::Mode::Crashes): a FATAL, and the report that the previous run
/// ended without EXIT or FATAL. They say how the product failed, not how it is used.
pub const CRASH_REPORTS: &[&str] = &[FATAL, INCOMPLETE_SHUTDOWN];

/// True for a crash report ([`CRASH_REPORTS`]).
///
/// ```
/// use anonstats_client::event::is_crash_report;
/// assert!(is_crash_report("FATAL") && is_crash_report("INCOMPLETE_SHUTDOWN"));
/// assert!(!is_crash_report("START") && !is_crash_report("EXIT"));
/// ```
pub fn is_crash_report(name: &str) -> bool {
    CRASH_REPORTS.contains(&name)
}

/// Property set to `true` on the events of a run in a CI environment
/// ([`crate::ci::detected`]); absent otherwise.
pub const IS_CI: &str = "is_ci";

/// Masks set on every event so that even a stock PostHog stores nothing identifying.
pub const MASKS: [(&str, &str); 4] = [
    ("$ip", "127.0.0.1"),
    ("$current_url", "agent backend"),
    ("$pathname", "anonstats-agent"),
    ("$host", "agent.anonstats.invalid"),
];

/// Value of `event_source` on every agent event.
pub const EVENT_SOURCE: &str = "agent backend";

/// Every property the client sets itself (the system facts come from
/// [`anonstats_probe::PROPERTY_NAMES`]).
pub const PROPERTY_NAMES: &[&str] = &[
    "action",
    "action_result",
    "action_data",
    "event_source",
    "product_name",
    "product_version",
    "release_channel",
    "install_type",
    "error_code",
    "fatal_process",
    "fatal_thread",
    "fatal_function",
    "fatal_file",
    "fatal_line",
    "fatal_message",
    "dropped_events",
    "is_ci",
    "$ip",
    "$current_url",
    "$pathname",
    "$host",
];

/// Property of the first event delivered after the spool dropped events unsent: how many.
pub const DROPPED_EVENTS: &str = "dropped_events";

/// One event, ready to send: PostHog's shape without the project token.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Event name, e.g. `START`.
    pub name: String,
    /// Unique id (v7, time-ordered); a resend never counts twice.
    pub uuid: Uuid,
    /// RFC 3339 time the event was made.
    pub timestamp: String,
    /// The machine id.
    pub distinct_id: String,
    /// Flat, snake_case properties.
    pub properties: Map<String, Value>,
}

impl Event {
    /// A new event with a fresh uuid and the current time.
    pub fn new(name: &str, distinct_id: &str, properties: Map<String, Value>) -> Event {
        Event::at(name, distinct_id, properties, SystemTime::now())
    }

    /// A new event with a fresh uuid, made at `time` by the sender's clock.
    pub fn at(
        name: &str,
        distinct_id: &str,
        properties: Map<String, Value>,
        time: SystemTime,
    ) -> Event {
        Event {
            name: name.to_string(),
            uuid: Uuid::now_v7(),
            timestamp: crate::time::rfc3339(time),
            distinct_id: distinct_id.to_string(),
            properties,
        }
    }

    /// The JSON object as it appears in a batch.
    ///
    /// ```
    /// let e = anonstats_client::Event::new("START", "id-1", Default::default());
    /// let v = e.to_json();
    /// assert_eq!(v["event"], "START");
    /// assert_eq!(v["distinct_id"], "id-1");
    /// ```
    pub fn to_json(&self) -> Value {
        json!({
            "event": self.name,
            "distinct_id": self.distinct_id,
            "properties": self.properties,
            "timestamp": self.timestamp,
            "uuid": self.uuid.to_string(),
        })
    }
}

/// The body of a `POST <endpoint>/batch/` request sent at `sent_at` by the sender's clock
/// (PostHog's `sent_at`): the collector moves each event's `timestamp` by the difference
/// between its own clock and `sent_at`, so that a sender's wrong clock does not misdate
/// its events.
pub fn batch_body(token: &str, events: &[Value], sent_at: SystemTime) -> Value {
    json!({ "api_key": token, "batch": events, "sent_at": crate::time::rfc3339(sent_at) })
}

/// Properties in the reference script's form: `action`, `action_result`, `action_data`.
pub fn action_properties(
    action: &str,
    result: Option<&str>,
    data: Option<&str>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("action".into(), action.into());
    m.insert("action_result".into(), result.unwrap_or("").into());
    m.insert("action_data".into(), data.unwrap_or("").into());
    m
}

/// Set the masks (last, so nothing can override them).
pub fn apply_masks(props: &mut Map<String, Value>) {
    props.insert("event_source".into(), EVENT_SOURCE.into());
    for (k, v) in MASKS {
        props.insert(k.into(), v.into());
    }
}

/// Where a fatal condition happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatalSite {
    /// Process name (`/proc/self/comm`, else the file name of argv\[0\]).
    pub process: String,
    /// Thread name.
    pub thread: String,
    /// Function, e.g. `my_daemon::config::load`.
    pub function: String,
    /// Source file.
    pub file: String,
    /// Source line.
    pub line: u32,
    /// `errno` at the time (0 for panics).
    pub errno: i32,
    /// A short message (its first line); empty if none. Like the other fields, it is
    /// scrubbed when the event is built ([`crate::scrub`]): identifying parts masked, at
    /// most 200 characters.
    pub message: String,
}

impl FatalSite {
    /// The reference form of `action_data`: `LINE@FILE:FUNCTION/ERRNO`.
    ///
    /// ```
    /// let s = anonstats_client::FatalSite {
    ///     process: "d".into(), thread: "main".into(), function: "d::run".into(),
    ///     file: "src/main.rs".into(), line: 42, errno: 2, message: String::new(),
    /// };
    /// assert_eq!(s.action_data(), "42@src/main.rs:d::run/2");
    /// ```
    pub fn action_data(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.line, self.file, self.function, self.errno
        )
    }

    /// The reference form of `action_result`: `PROCESS:THREAD`.
    pub fn action_result(&self) -> String {
        format!("{}:{}", self.process, self.thread)
    }

    /// Parse the reference forms back (`PROCESS:THREAD`, `LINE@FILE:FUNCTION/ERRNO`), as the
    /// drop-in CLI receives them. Missing parts stay empty.
    ///
    /// ```
    /// let s = anonstats_client::FatalSite::from_reference("netdata:MAIN", "0042@main.c:main/2");
    /// assert_eq!((s.process.as_str(), s.thread.as_str()), ("netdata", "MAIN"));
    /// assert_eq!((s.line, s.file.as_str(), s.function.as_str(), s.errno), (42, "main.c", "main", 2));
    /// ```
    pub fn from_reference(result: &str, data: &str) -> FatalSite {
        let (process, thread) = result.split_once(':').unwrap_or((result, ""));
        let (line, rest) = data.split_once('@').unwrap_or(("", data));
        let (rest, errno) = rest.rsplit_once('/').unwrap_or((rest, ""));
        let (file, function) = rest.split_once(':').unwrap_or((rest, ""));
        FatalSite {
            process: process.trim().to_string(),
            thread: thread.trim().to_string(),
            function: function.trim().to_string(),
            file: file.trim().to_string(),
            line: line.trim().parse().unwrap_or(0),
            errno: errno.trim().parse().unwrap_or(0),
            message: String::new(),
        }
    }

    /// The FATAL properties, `action*` included.
    pub fn properties(&self) -> Map<String, Value> {
        let mut m = action_properties(
            FATAL,
            Some(&self.action_result()),
            Some(&self.action_data()),
        );
        m.insert("fatal_process".into(), self.process.clone().into());
        m.insert("fatal_thread".into(), self.thread.clone().into());
        m.insert("fatal_function".into(), self.function.clone().into());
        m.insert("fatal_file".into(), self.file.clone().into());
        m.insert("fatal_line".into(), self.line.into());
        if !self.message.is_empty() {
            m.insert("fatal_message".into(), self.message.clone().into());
        }
        m
    }
}

/// Keep the first line of `text`, at most `max` bytes (on a character boundary).
pub(crate) fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut end = line.len().min(max);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_shape_and_masks() {
        let mut p = action_properties(START, None, None);
        p.insert("$ip".into(), "10.1.2.3".into());
        apply_masks(&mut p);
        let e = Event::new(START, "abc", p).to_json();
        assert_eq!(e["properties"]["$ip"], "127.0.0.1");
        assert_eq!(e["properties"]["$host"], "agent.anonstats.invalid");
        assert_eq!(e["properties"]["action_result"], "");
        assert_eq!(
            Uuid::parse_str(e["uuid"].as_str().unwrap())
                .unwrap()
                .get_version_num(),
            7
        );
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
        let sent = std::time::UNIX_EPOCH + std::time::Duration::from_secs(4_102_444_799);
        let body = batch_body("tok", &[e], sent);
        assert_eq!(body["api_key"], "tok");
        assert_eq!(body["sent_at"], "2099-12-31T23:59:59.000Z");
        assert_eq!(body["batch"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn reference_forms() {
        let s = FatalSite::from_reference("proc", "garbage");
        assert_eq!(s.process, "proc");
        assert_eq!(s.line, 0);
        let p = FatalSite::from_reference("a:b", "7@f.rs:m::f/0").properties();
        assert_eq!(p["fatal_line"], 7);
        assert_eq!(p["action_data"], "7@f.rs:m::f/0");
        assert_eq!(first_line("héllo\nworld", 2), "h");
    }
}
