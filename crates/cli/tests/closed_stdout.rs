//! Every command that prints ends quietly when its reader has gone (`anonstats keys list |
//! head -1`): by SIGPIPE or with status 0, never with a panic or an error about the pipe.

mod agent_common;

use agent_common::{Recorder, anonstats, send_args, strs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_anonstats");

/// The write end of a pipe whose read end is already closed: the first write fails.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two new descriptors, each owned once below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both are open descriptors this process owns and nothing else closes.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Runs `anonstats ARGS` into a closed pipe and checks that it ended quietly.
fn ends_quietly(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("ANONSTATS_ENDPOINT")
        .env_remove("ANONSTATS_TOKEN")
        .env_remove("DO_NOT_TRACK")
        .env_remove("DISABLE_TELEMETRY")
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("run anonstats");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let by_sigpipe = out.status.signal() == Some(libc::SIGPIPE);
    assert!(
        out.status.success() || by_sigpipe,
        "anonstats {args:?} ended {:?}: {stderr}",
        out.status
    );
    for bad in ["panicked", "Broken pipe", "os error 32"] {
        assert!(!stderr.contains(bad), "anonstats {args:?}: {stderr}");
    }
}

/// A data dir with a store holding events (through `anonstats gen`).
fn store(dir: &Path) -> String {
    let data = dir.join("data").display().to_string();
    let out = anonstats(
        &[
            "gen",
            "--data-dir",
            &data,
            "--events",
            "2000",
            "--machines",
            "50",
            "--days",
            "2",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

#[test]
fn collector_commands_end_quietly_when_stdout_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = store(dir.path());
    let d = data.as_str();
    ends_quietly(&["keys", "list", "--data-dir", d]);
    for format in ["ndjson", "csv"] {
        ends_quietly(&["export", "--format", format, "--data-dir", d]);
    }
    ends_quietly(&["sql", "SELECT uuid, event FROM events", "--data-dir", d]);
    ends_quietly(&[
        "sql",
        "SELECT uuid FROM events",
        "--format",
        "json",
        "--data-dir",
        d,
    ]);
}

#[test]
fn agent_commands_end_quietly_when_stdout_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = Recorder::start();
    // A receipt for `log` to print.
    let mut send = send_args("START", &rec.url, dir.path());
    send.insert(1, "--wait".into());
    let out = anonstats(&strs(&send), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut show = send_args("START", &rec.url, dir.path());
    show[0] = "show".into();
    ends_quietly(&strs(&show));
    let etc = dir.path().join("etc").display().to_string();
    let state = dir.path().join("state").display().to_string();
    let dirs = ["--config-dir", &etc, "--state-dir", &state];
    ends_quietly(&[&["status"][..], &dirs].concat());
    ends_quietly(&[&["log", "--product", "agent-test"][..], &dirs].concat());
}
