//! Opted out, nothing leaves the machine and nothing is left on it. For every way of opting
//! out and every path an event could take (the drop-in CLI, the library inside a running
//! host, its panic included, an agent installed with `install.sh --disable-telemetry`, and
//! `DISABLE_TELEMETRY` handed down to the program by an entrypoint, as Docker hands its
//! environment), the program runs in a network namespace of its own under `strace -f`: no
//! socket, no DNS lookup, no file created, changed or removed, no child process. The same
//! runs with statistics on show each of these, so the trace does see them.

mod agent_common;

use agent_common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// System calls that would show a socket, a name lookup, a change to the file system or a
/// new process.
const TRACED: &str = "trace=%network,%process,openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,unlink,unlinkat,symlink,symlinkat";

/// The endpoint is a name, so that sending would need a lookup.
const ENDPOINT: &str = "http://localhost:9";

/// Files the C library reads to look a name up.
const LOOKUP_FILES: [&str; 6] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/var/run/nscd/socket",
];

/// What `strace -f` saw.
struct Trace {
    lines: Vec<String>,
}

impl Trace {
    fn matching(&self, f: impl Fn(&str) -> bool) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| f(l))
            .collect()
    }

    /// A socket made, or one connected or bound (a host's own socket pair, made with
    /// `socketpair`, is neither).
    fn sockets(&self) -> Vec<&str> {
        self.matching(|l| {
            [" socket(", " connect(", " bind("]
                .iter()
                .any(|s| l.contains(s))
        })
    }

    fn lookups(&self) -> Vec<&str> {
        self.matching(|l| LOOKUP_FILES.iter().any(|f| l.contains(f)))
    }

    /// Files or directories created, written, renamed, linked or removed.
    fn file_changes(&self) -> Vec<&str> {
        self.matching(|l| {
            let opens_to_write = ["O_WRONLY", "O_RDWR", "O_CREAT"]
                .iter()
                .any(|s| l.contains(s))
                && !l.contains("\"/dev/");
            let changes = [
                " creat(", " mkdir", " rename", " link(", " linkat(", " unlink", " symlink",
            ]
            .iter()
            .any(|s| l.contains(s));
            opens_to_write || changes
        })
    }

    /// New processes: a fork, or a clone that is not a thread, or a program run by another
    /// process than the first.
    fn children(&self) -> Vec<&str> {
        let first = self.lines.first().and_then(|l| l.split(' ').next());
        self.matching(|l| {
            let fork = l.contains(" fork(") || l.contains(" vfork(");
            let clone = (l.contains(" clone(") || l.contains(" clone3("))
                && !l.contains("CLONE_THREAD")
                && !l.contains("resumed>");
            let exec = l.contains(" execve(") && l.split(' ').next() != first;
            fork || clone || exec
        })
    }

    fn assert_silent(&self, what: &str, dir: &Path) {
        let found = [
            ("sockets", self.sockets()),
            ("name lookups", self.lookups()),
            ("file changes", self.file_changes()),
            ("child processes", self.children()),
        ];
        for (kind, lines) in found {
            assert!(
                lines.is_empty(),
                "{what}: {} {kind}:\n{}",
                lines.len(),
                lines.join("\n")
            );
        }
        assert!(!dir.join("state").exists(), "{what}: a state dir was made");
    }
}

/// `program ARGS` in a network namespace of its own under `strace -f`, with a clean
/// environment for consent plus `env`. `signal_when_ready`: the program is a daemon that
/// prints `demo-agent: ready` once it handles SIGTERM, and is then stopped with it.
fn traced(
    dir: &Path,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    signal_when_ready: bool,
) -> (Trace, String) {
    let log = dir.join("strace.log");
    // Root makes the namespace directly; anyone else makes it inside a user namespace.
    let unshare = if unsafe { libc::geteuid() } == 0 {
        "-n"
    } else {
        "-rn"
    };
    let mut cmd = Command::new("unshare");
    cmd.args([unshare, "--", "strace", "-f", "-qq", "-e", TRACED, "-o"])
        .arg(&log)
        .arg(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "DISABLE_TELEMETRY",
        "DO_NOT_TRACK",
        "ANONSTATS_MODE",
        "ANONSTATS_ENDPOINT",
        "ANONSTATS_TOKEN",
        "ANONSTATS_CONFIG_DIR",
        "ANONSTATS_STATE_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("run unshare and strace");
    let mut out = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    if signal_when_ready {
        let mut pid = None;
        for line in (&mut stdout).lines() {
            let line = line.expect("read the program's output");
            out.push_str(&line);
            out.push('\n');
            if let Some(rest) = line.split_once("running as pid ") {
                pid = rest
                    .1
                    .split(';')
                    .next()
                    .and_then(|p| p.trim().parse::<i32>().ok());
            }
            if line.contains("demo-agent: ready") {
                break;
            }
        }
        let pid = pid.unwrap_or_else(|| panic!("the program never said its pid:\n{out}"));
        // SAFETY: a signal to the traced program, which waits for it.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
    let rest = std::io::read_to_string(stdout).unwrap_or_default();
    out.push_str(&rest);
    let status = child.wait().expect("wait for the program");
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
    assert!(
        status.success() || !signal_when_ready,
        "{} failed: {stderr}\n{out}",
        program.display()
    );
    out.push_str(&stderr);
    let trace = std::fs::read_to_string(&log).expect("strace log");
    let trace = Trace {
        lines: trace.lines().map(String::from).collect(),
    };
    (trace, out)
}

/// A way of opting out: environment, and what it leaves in the config dir.
struct OptOut {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    setup: fn(&Path),
}

fn opt_outs() -> Vec<OptOut> {
    vec![
        OptOut {
            name: "DISABLE_TELEMETRY",
            env: &[("DISABLE_TELEMETRY", "1")],
            setup: |_| {},
        },
        OptOut {
            name: "DO_NOT_TRACK",
            env: &[("DO_NOT_TRACK", "1")],
            setup: |_| {},
        },
        OptOut {
            name: "the opt-out file",
            env: &[],
            setup: |etc| {
                std::fs::create_dir_all(etc).unwrap();
                std::fs::write(etc.join(".opt-out-from-anonymous-statistics"), "").unwrap();
            },
        },
        OptOut {
            name: "anonstats opt-out",
            env: &[],
            setup: |etc| {
                let out = anonstats(&["opt-out", "--config-dir", etc.to_str().unwrap()], &[]);
                assert!(out.status.success(), "{out:?}");
            },
        },
        OptOut {
            name: "mode = \"off\" in anonstats.toml",
            env: &[],
            setup: |etc| {
                std::fs::create_dir_all(etc).unwrap();
                std::fs::write(etc.join("anonstats.toml"), "mode = \"off\"\n").unwrap();
            },
        },
    ]
}

fn demo_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--endpoint".to_string(),
        ENDPOINT.into(),
        "--token".into(),
        "test-token".into(),
        "--config-dir".into(),
        dir.join("etc").display().to_string(),
        "--state-dir".into(),
        dir.join("state").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn tools_present() -> bool {
    tool_present("strace") && tool_present("unshare")
}

#[test]
fn opted_out_the_cli_opens_no_socket_looks_up_no_name_writes_nothing_and_starts_nothing() {
    if !tools_present() {
        return;
    }
    for opt_out in opt_outs() {
        let dir = tempfile::tempdir().unwrap();
        (opt_out.setup)(&dir.path().join("etc"));
        let args = send_args("START", ENDPOINT, dir.path());
        let (trace, _) = traced(dir.path(), Path::new(BIN), &args, opt_out.env, false);
        trace.assert_silent(&format!("send, {}", opt_out.name), dir.path());
    }
}

#[test]
fn opted_out_a_running_host_and_its_panic_send_nothing_and_write_nothing() {
    if !tools_present() {
        return;
    }
    let demo = demo_agent();
    for opt_out in opt_outs() {
        let dir = tempfile::tempdir().unwrap();
        (opt_out.setup)(&dir.path().join("etc"));
        let args = demo_args(dir.path(), &[]);
        let (trace, out) = traced(dir.path(), &demo, &args, opt_out.env, true);
        assert!(out.contains("statistics off"), "{out}");
        trace.assert_silent(&format!("demo agent, {}", opt_out.name), dir.path());

        let dir = tempfile::tempdir().unwrap();
        (opt_out.setup)(&dir.path().join("etc"));
        let args = demo_args(dir.path(), &["--crash"]);
        let (trace, out) = traced(dir.path(), &demo, &args, opt_out.env, false);
        assert!(
            out.contains("cannot load"),
            "the agent did not panic: {out}"
        );
        trace.assert_silent(&format!("demo agent's panic, {}", opt_out.name), dir.path());
    }
}

/// An entrypoint that hands the variable down, as `docker run -e DISABLE_TELEMETRY=1` does:
/// the program finds it in the environment it was started with.
#[test]
fn disable_telemetry_handed_down_by_an_entrypoint_stops_the_host() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let entrypoint = dir.path().join("entrypoint.sh");
    std::fs::write(&entrypoint, "#!/bin/sh\nexec \"$@\"\n").unwrap();
    let mut args = vec![demo_agent().display().to_string()];
    args.extend(demo_args(dir.path(), &[]));
    let sh = PathBuf::from("/bin/sh");
    let mut all = vec![entrypoint.display().to_string()];
    all.extend(args);
    let (trace, out) = traced(dir.path(), &sh, &all, &[("DISABLE_TELEMETRY", "1")], true);
    assert!(out.contains("statistics off (DISABLE_TELEMETRY"), "{out}");
    trace.assert_silent("entrypoint, DISABLE_TELEMETRY", dir.path());
}

#[test]
fn installed_with_disable_telemetry_the_agent_opens_no_socket_and_writes_nothing() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (prefix, etc) = (dir.path().join("prefix"), dir.path().join("etc"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../install.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(["--binary", BIN, "--prefix"])
        .arg(&prefix)
        .arg("--config-dir")
        .arg(&etc)
        .args([
            "--disable-telemetry",
            "--endpoint",
            ENDPOINT,
            "--token",
            "t",
        ])
        .args(["--product-name", "installed", "--product-version", "1.0"])
        .env_remove("DISABLE_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .output()
        .expect("run install.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The installed agent as its users run it: no flags, its configuration from the install.
    let args: Vec<String> = ["send", "START"].map(String::from).to_vec();
    let env = [("ANONSTATS_STATE_DIR", dir.path().join("state"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
    // The wrapper script becomes the binary (exec), which then does nothing.
    let (trace, _) = traced(
        dir.path(),
        &prefix.join("bin/anonstats"),
        &args,
        &env,
        false,
    );
    trace.assert_silent("installed with --disable-telemetry", dir.path());
}

/// The control: with statistics on, the same runs show sockets, a lookup, files and (for
/// the CLI's detached delivery) a child process, so the checks above would see them.
#[test]
fn with_statistics_on_the_trace_sees_each_kind() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = send_args("START", ENDPOINT, dir.path());
    let (trace, _) = traced(dir.path(), Path::new(BIN), &args, &[], false);
    assert!(!trace.file_changes().is_empty(), "no file seen");
    assert!(!trace.children().is_empty(), "no detached delivery seen");

    let dir = tempfile::tempdir().unwrap();
    let args = demo_args(dir.path(), &[]);
    let (trace, out) = traced(dir.path(), &demo_agent(), &args, &[], true);
    assert!(out.contains("statistics on"), "{out}");
    assert!(!trace.sockets().is_empty(), "no socket seen");
    assert!(!trace.lookups().is_empty(), "no lookup seen");
    assert!(!trace.file_changes().is_empty(), "no file seen");
}
