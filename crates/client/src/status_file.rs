//! The run status file: START marks a run, a clean EXIT or a FATAL closes it. A run still
//! marked at the next START ended without either (killed, out of memory, power lost) and is
//! reported once as `INCOMPLETE_SHUTDOWN`.

use crate::{Error, fsutil};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// File name inside the state directory.
pub const FILE: &str = "run-status.json";

/// How the last run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Started and not closed.
    Running,
    /// Closed by EXIT.
    Exited,
    /// Closed by FATAL.
    Fatal,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Exited => "exited",
            RunState::Fatal => "fatal",
        }
    }
}

/// The content of the status file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStatus {
    /// State of the run.
    pub state: RunState,
    /// The uuid of the run's START event.
    pub start_uuid: String,
    /// The process that sent START.
    pub pid: u32,
    /// When the run started (RFC 3339).
    pub started: String,
}

/// Path of the status file.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Read the status file; `None` when absent or unreadable.
pub fn read(state_dir: &Path) -> Option<RunStatus> {
    let bytes = std::fs::read(path(state_dir)).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let state = match v["state"].as_str()? {
        "running" => RunState::Running,
        "exited" => RunState::Exited,
        "fatal" => RunState::Fatal,
        _ => return None,
    };
    Some(RunStatus {
        state,
        start_uuid: v["start_uuid"].as_str().unwrap_or("").to_string(),
        pid: v["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        started: v["started"].as_str().unwrap_or("").to_string(),
    })
}

fn write(state_dir: &Path, s: &RunStatus) -> Result<(), Error> {
    fsutil::ensure_dir(state_dir)?;
    let v = json!({
        "state": s.state.as_str(),
        "start_uuid": s.start_uuid,
        "pid": s.pid,
        "started": s.started,
    });
    let bytes = serde_json::to_vec(&v).unwrap_or_default();
    // Renamed into place but not fsynced: a START or EXIT costs no disk flush. After a power
    // loss within the file system's commit interval the marker may be missing, and that run
    // goes unreported.
    fsutil::replace_file(&path(state_dir), &bytes, 0o600, false)
}

/// Mark a new run. Returns the previous run if it never closed (to report it once).
pub fn begin(state_dir: &Path, run: &RunStatus) -> Result<Option<RunStatus>, Error> {
    let previous = read(state_dir).filter(|p| p.state == RunState::Running);
    write(state_dir, run)?;
    Ok(previous)
}

/// Close the current run as `state`. Does nothing when no run is open.
pub fn close(state_dir: &Path, state: RunState) -> Result<(), Error> {
    match read(state_dir) {
        Some(mut s) if s.state == RunState::Running => {
            s.state = state;
            write(state_dir, &s)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(uuid: &str) -> RunStatus {
        RunStatus {
            state: RunState::Running,
            start_uuid: uuid.into(),
            pid: 7,
            started: "2024-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn clean_exit_is_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(begin(dir.path(), &run("a")).unwrap(), None);
        close(dir.path(), RunState::Exited).unwrap();
        assert_eq!(read(dir.path()).unwrap().state, RunState::Exited);
        assert_eq!(begin(dir.path(), &run("b")).unwrap(), None);
        close(dir.path(), RunState::Fatal).unwrap();
        assert_eq!(begin(dir.path(), &run("c")).unwrap(), None);
    }

    #[test]
    fn unclosed_run_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        begin(dir.path(), &run("a")).unwrap();
        let prev = begin(dir.path(), &run("b")).unwrap().unwrap();
        assert_eq!(prev.start_uuid, "a");
        assert_eq!(prev.pid, 7);
        close(dir.path(), RunState::Exited).unwrap();
        assert_eq!(begin(dir.path(), &run("c")).unwrap(), None);
        // A second close after EXIT keeps the first state.
        close(dir.path(), RunState::Exited).unwrap();
        close(dir.path(), RunState::Fatal).unwrap();
        assert_eq!(read(dir.path()).unwrap().state, RunState::Exited);
    }

    #[test]
    fn garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"\0\0").unwrap();
        assert_eq!(begin(dir.path(), &run("a")).unwrap(), None);
    }
}
