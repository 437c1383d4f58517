//! Local mode: events are appended to a log in the state directory and never sent.

use crate::{Error, fsutil};
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File name inside the state directory: one JSON event per line.
pub const FILE: &str = "local-events.ndjson";

/// When the log passes this size it is moved to `local-events.ndjson.1` (one old copy kept).
pub const MAX_BYTES: u64 = 1 << 20;

/// Path of the local log.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Append one event (one line).
pub fn append(state_dir: &Path, event: &Value) -> Result<PathBuf, Error> {
    fsutil::ensure_dir(state_dir)?;
    let p = path(state_dir);
    if fs::metadata(&p).map(|m| m.len()).unwrap_or(0) > MAX_BYTES {
        let _ = fs::rename(&p, p.with_extension("ndjson.1"));
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

/// Delete the log and its old copy (after an opt-out).
pub fn remove(state_dir: &Path) {
    let p = path(state_dir);
    let _ = fs::remove_file(p.with_extension("ndjson.1"));
    let _ = fs::remove_file(p);
}
