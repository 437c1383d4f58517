//! What the agent keeps on the machine about its events, for the person running it:
//!
//! - the local log (local mode): events appended to a log in the state directory and never
//!   sent;
//! - the receipts: the last events that left the machine, each with when it left, where
//!   to, the exact JSON sent and the collector's answer (`anonstats log` prints them).
//!   Bounded to [`RECEIPTS_MAX_ENTRIES`] entries and [`RECEIPTS_MAX_BYTES`] bytes, and
//!   replaced whole (a temporary file renamed into place), so that a crash never leaves a
//!   half-written file.
//!
//! Both are per product (they live in the product's state directory), are written only
//! while statistics are on (receipts) or local (the local log), and are deleted on opt-out.

use crate::{Error, fsutil};
use serde_json::{Value, json};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// File name inside the state directory: one JSON event per line.
pub const FILE: &str = "local-events.ndjson";
/// The local log's one old copy.
pub const OLD_FILE: &str = "local-events.ndjson.1";

/// When the log passes this size it is moved to [`OLD_FILE`] (one old copy kept).
pub const MAX_BYTES: u64 = 1 << 20;

/// The receipts' file name inside the state directory: one JSON object per line.
pub const RECEIPTS_FILE: &str = "sent-events.ndjson";
/// At most this many receipts are kept, the newest.
pub const RECEIPTS_MAX_ENTRIES: usize = 100;
/// At most this many bytes of receipts are kept; a receipt larger than this alone keeps
/// its event's `uuid` and `event` name only, and says so.
pub const RECEIPTS_MAX_BYTES: usize = 1 << 20;

/// Path of the local log.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Path of the receipts.
pub fn receipts_path(state_dir: &Path) -> PathBuf {
    state_dir.join(RECEIPTS_FILE)
}

/// Append one event (one line).
pub fn append(state_dir: &Path, event: &Value) -> Result<PathBuf, Error> {
    fsutil::ensure_dir(state_dir)?;
    let p = path(state_dir);
    if fs::metadata(&p).map(|m| m.len()).unwrap_or(0) > MAX_BYTES {
        let _ = fs::rename(&p, state_dir.join(OLD_FILE));
    }
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&p)
        .and_then(|mut f| f.write_all(&line))
        .map_err(|e| Error::io("append to", &p, e))?;
    Ok(p)
}

/// The files [`remove`] deletes.
pub(crate) fn files(state_dir: &Path) -> [PathBuf; 3] {
    [
        path(state_dir),
        state_dir.join(OLD_FILE),
        receipts_path(state_dir),
    ]
}

/// Delete the log, its old copy and the receipts (after an opt-out).
pub fn remove(state_dir: &Path) {
    for p in files(state_dir) {
        let _ = fs::remove_file(p);
    }
}

/// One request that left the machine: the body as sent and what came back.
pub(crate) struct Sent<'a> {
    /// The URL posted to.
    pub url: &'a str,
    /// The request body (`api_key`, `batch`, `sent_at`).
    pub body: &'a Value,
    /// True when the collector accepted the batch.
    pub accepted: bool,
    /// The collector's answer, in words.
    pub answer: String,
}

/// Add a receipt for each event of a request, dropping the oldest past the bounds. Waits
/// at most `wait` for another process writing receipts of the same product; after that,
/// or if the file cannot be written, the receipts of this request are not kept.
pub(crate) fn record(state_dir: &Path, sent: &Sent, wait: Duration) {
    let Some(_lock) = lock(state_dir, Instant::now() + wait) else {
        return;
    };
    let at = sent.body["sent_at"].clone();
    let events = sent.body["batch"].as_array().map(Vec::as_slice);
    let new = events.unwrap_or_default().iter().map(|event| {
        json!({
            "at": at,
            "endpoint": sent.url,
            "accepted": sent.accepted,
            "answer": sent.answer,
            "event": event,
        })
    });
    // The lines kept are copied as they are, not parsed again: only the new ones cost.
    let old = fs::read_to_string(receipts_path(state_dir)).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    lines.extend(new.map(|r| fit(&r)));
    let excess = lines.len().saturating_sub(RECEIPTS_MAX_ENTRIES);
    lines.drain(..excess);
    let mut bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut first = 0;
    while bytes > RECEIPTS_MAX_BYTES {
        bytes -= lines[first].len() + 1;
        first += 1;
    }
    let mut text = lines[first..].join("\n");
    text.push('\n');
    let _ = fsutil::replace_file(&receipts_path(state_dir), text.as_bytes(), 0o600, false);
}

/// A receipt's line, within [`RECEIPTS_MAX_BYTES`]: one too large keeps its event's name
/// and uuid.
fn fit(receipt: &Value) -> String {
    let line = receipt.to_string();
    let size = line.len() + 1;
    if size <= RECEIPTS_MAX_BYTES {
        return line;
    }
    let mut small = receipt.clone();
    let event = &receipt["event"];
    small["event"] = json!({
        "event": event["event"],
        "uuid": event["uuid"],
        "omitted": format!("{size} bytes, more than the receipts keep ({RECEIPTS_MAX_BYTES})"),
    });
    small.to_string()
}

/// The receipts, oldest first. Creates nothing; a line that is not a receipt is skipped.
pub fn receipts(state_dir: &Path) -> Vec<Value> {
    let Ok(text) = fs::read_to_string(receipts_path(state_dir)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some_and(Value::is_object))
        .collect()
}

/// An exclusive lock on the state directory itself, so that two processes of one product
/// do not both rewrite the receipts from the same old copy (one's would be lost).
fn lock(state_dir: &Path, deadline: Instant) -> Option<File> {
    let dir = File::open(state_dir).ok()?;
    loop {
        if dir.try_lock().is_ok() {
            return Some(dir);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(dir: &Path, uuids: std::ops::Range<usize>, pad: usize) {
        let events: Vec<Value> = uuids
            .map(|i| json!({"event": "E", "uuid": i.to_string(), "p": "x".repeat(pad)}))
            .collect();
        let body = json!({"api_key": "t", "batch": events, "sent_at": "2024-01-01T00:00:00.000Z"});
        let s = Sent {
            url: "http://c/batch/",
            body: &body,
            accepted: true,
            answer: "accepted".into(),
        };
        record(dir, &s, Duration::from_secs(5));
    }

    fn uuids(dir: &Path) -> Vec<String> {
        receipts(dir)
            .iter()
            .map(|r| r["event"]["uuid"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn bounded_by_entries_and_bytes_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(receipts(dir.path()).is_empty());
        sent(dir.path(), 0..60, 0);
        sent(dir.path(), 60..130, 0);
        let kept = uuids(dir.path());
        assert_eq!(kept.len(), RECEIPTS_MAX_ENTRIES);
        assert_eq!(kept[0], "30");
        assert_eq!(kept.last().unwrap(), "129");
        // 100 KB each: about ten fit in the byte bound.
        sent(dir.path(), 200..215, 100_000);
        let len = fs::metadata(receipts_path(dir.path())).unwrap().len();
        assert!(len <= RECEIPTS_MAX_BYTES as u64, "{len}");
        let kept = uuids(dir.path());
        assert_eq!(kept.last().unwrap(), "214");
        assert!(kept.len() < 15 && kept.len() >= 9, "{kept:?}");
        // One larger than the bound keeps its name and uuid.
        sent(dir.path(), 300..301, RECEIPTS_MAX_BYTES);
        let last = receipts(dir.path()).pop().unwrap();
        assert_eq!(last["event"]["uuid"], "300");
        assert!(last["event"]["omitted"].as_str().unwrap().contains("bytes"));
    }

    #[test]
    fn concurrent_writers_lose_nothing_and_leave_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let dir = dir.path();
                s.spawn(move || {
                    for i in 0..10 {
                        sent(dir, t * 100 + i..t * 100 + i + 1, 10);
                    }
                });
            }
        });
        assert_eq!(receipts(dir.path()).len(), 40);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RECEIPTS_FILE], "no temporary file is left");
        // A line that is not a receipt (a hand edit, a foreign file) is skipped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(receipts_path(dir.path()))
            .unwrap();
        f.write_all(b"{\"at\": \"half").unwrap();
        assert_eq!(receipts(dir.path()).len(), 40);
    }
}
