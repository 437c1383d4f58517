//! Opted out, `send` makes no network system call, writes no file and starts no process,
//! whichever of the four mechanisms opted out. Checked with `strace -f`.

mod agent_common;

use agent_common::*;
use std::path::Path;
use std::process::Command;

/// Syscalls that would show a socket, a write to the file system or a new process.
const TRACED: &str = "trace=%network,openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,unlink,unlinkat,symlink,symlinkat,fork,vfork,clone,clone3";

/// Runs `send` under strace; returns the offending trace lines.
fn traced_send(dir: &Path, endpoint: &str, env: &[(&str, &str)]) -> Vec<String> {
    let log = dir.join("strace.log");
    let args = send_args("START", endpoint, dir);
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", TRACED, "-o"])
        .arg(&log)
        .arg(BIN)
        .args(&args);
    for var in ["DISABLE_TELEMETRY", "DO_NOT_TRACK", "ANONSTATS_MODE"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run strace");
    assert!(
        out.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(&log).expect("strace log");
    trace
        .lines()
        .filter(|l| {
            let network = ["socket(", "connect(", "sendto(", "sendmsg(", "bind("]
                .iter()
                .any(|s| l.contains(s));
            let writes = ["O_WRONLY", "O_RDWR", "O_CREAT"]
                .iter()
                .any(|s| l.contains(s))
                && !l.contains("/dev/");
            let changes = ["mkdir", "rename", "link(", "linkat(", "unlink", "symlink"]
                .iter()
                .any(|s| l.contains(s));
            let processes = ["fork(", "clone(", "clone3("].iter().any(|s| l.contains(s));
            network || writes || changes || processes
        })
        .map(String::from)
        .collect()
}

fn assert_untouched(name: &str, dir: &Path, rec: &Recorder, bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{name}: send made network or write system calls:\n{}",
        bad.join("\n")
    );
    assert!(
        !dir.join("state").exists(),
        "{name}: the state directory was created"
    );
    assert!(rec.events().is_empty(), "{name}: an event arrived");
}

#[test]
fn each_opt_out_mechanism_touches_neither_network_nor_disk() {
    if !tool_present("strace") {
        return;
    }
    let rec = Recorder::start();

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = traced_send(dir.path(), &rec.url, &[("DISABLE_TELEMETRY", "0")]);
    assert_untouched("DISABLE_TELEMETRY", dir.path(), &rec, &bad);

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = traced_send(dir.path(), &rec.url, &[("DO_NOT_TRACK", "1")]);
    assert_untouched("DO_NOT_TRACK", dir.path(), &rec, &bad);

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
    std::fs::write(
        dir.path().join("etc/.opt-out-from-anonymous-statistics"),
        "",
    )
    .expect("touch");
    let bad = traced_send(dir.path(), &rec.url, &[]);
    assert_untouched("opt-out file", dir.path(), &rec, &bad);

    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc").display().to_string();
    let out = anonstats(&["opt-out", "--config-dir", &etc], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = traced_send(dir.path(), &rec.url, &[]);
    assert_untouched("opt-out command", dir.path(), &rec, &bad);
}

#[test]
fn the_trace_does_see_a_send_when_on() {
    if !tool_present("strace") {
        return;
    }
    let rec = Recorder::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = traced_send(dir.path(), &rec.url, &[]);
    assert!(
        bad.iter().any(|l| l.contains("connect(")),
        "no connect seen:\n{}",
        bad.join("\n")
    );
    // The delivery runs in a detached process, which `strace -f` follows too.
    assert!(
        bad.iter()
            .any(|l| l.contains("clone(") || l.contains("fork(")),
        "no detached process seen:\n{}",
        bad.join("\n")
    );
    assert_eq!(rec.events().len(), 1);
    assert!(dir.path().join("state/agent-test/machine-id").exists());
}
