//! Helpers for the agent tests: the real binary, a recording collector, a silent listener.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_anonstats");

/// `anonstats send|show ARGS` with a clean environment for consent.
pub fn anonstats(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for var in [
        "DISABLE_TELEMETRY",
        "DO_NOT_TRACK",
        "ANONSTATS_ENDPOINT",
        "ANONSTATS_TOKEN",
        "ANONSTATS_CA_FILE",
        "ANONSTATS_MODE",
        "ANONSTATS_CONFIG_DIR",
        "ANONSTATS_STATE_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run anonstats")
}

/// Where a product whose state directory is `state_dir` keeps the machine id it sends to
/// the collector at `endpoint`.
pub fn id_dir(state_dir: &Path, endpoint: &str) -> PathBuf {
    let url = anonstats_client::delivery::batch_url(endpoint).expect("an endpoint");
    anonstats_client::product::endpoint_dir(state_dir, &url)
}

/// The usual `send` arguments for a test directory.
pub fn send_args(action: &str, endpoint: &str, dir: &Path) -> Vec<String> {
    vec![
        "send".into(),
        action.into(),
        "--endpoint".into(),
        endpoint.into(),
        "--token".into(),
        "test-token".into(),
        "--product-name".into(),
        "agent-test".into(),
        "--product-version".into(),
        "1.0.0".into(),
        "--config-dir".into(),
        dir.join("etc").display().to_string(),
        "--state-dir".into(),
        dir.join("state").display().to_string(),
    ]
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether a tool the test needs is present: in CI its absence fails the test, elsewhere
/// the test is skipped with the reason printed.
pub fn tool_present(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required in CI but missing: apt-get install -y {tool}");
        }
        eprintln!("skipped: {tool} is missing (apt-get install -y {tool})");
    }
    ok
}

/// Accepts connections and never answers.
pub struct Silent {
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                held.push(s);
            }
        });
        Silent {
            url,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the listener and every connection it held; returns its address, free for a
    /// [`Recorder::at`] that answers there.
    pub fn stop(mut self) -> String {
        let addr = self.url.trim_start_matches("http://").to_string();
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, which then sees the flag.
        let _ = TcpStream::connect(&addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        addr
    }
}

/// Answers 200 `{"status":1}` and records every body.
pub struct Recorder {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<Value>>>,
    gate: Arc<Gate>,
}

/// Holds the answers until opened (see [`Recorder::gated`]).
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut closed = self.closed.lock().expect("lock");
        while *closed {
            closed = self.opened.wait(closed).expect("lock");
        }
    }
}

impl Recorder {
    pub fn start() -> Recorder {
        Recorder::with_gate(false)
    }

    /// Records each request at once but answers none until [`Recorder::release`].
    pub fn gated() -> Recorder {
        Recorder::with_gate(true)
    }

    /// Listens on `addr`, e.g. where a [`Silent`] was.
    pub fn at(addr: &str) -> Recorder {
        Recorder::listen(addr, false)
    }

    fn with_gate(closed: bool) -> Recorder {
        Recorder::listen("127.0.0.1:0", closed)
    }

    fn listen(addr: &str, closed: bool) -> Recorder {
        let listener = TcpListener::bind(addr).expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Gate {
            closed: Mutex::new(closed),
            opened: Condvar::new(),
        });
        let (b, g) = (bodies.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, g) = (b.clone(), g.clone());
                std::thread::spawn(move || serve(stream, &b, &g));
            }
        });
        Recorder { url, bodies, gate }
    }

    /// Answer the held requests, and every later one at once.
    pub fn release(&self) {
        *self.gate.closed.lock().expect("lock") = false;
        self.gate.opened.notify_all();
    }

    /// How many requests arrived (answered or held).
    pub fn requests(&self) -> usize {
        self.bodies.lock().expect("lock").len()
    }

    pub fn batches(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.batches()
            .iter()
            .flat_map(|b| b["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

fn serve(stream: TcpStream, bodies: &Mutex<Vec<Value>>, gate: &Gate) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if h == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(v) = serde_json::from_slice(&body) {
            bodies.lock().expect("lock").push(v);
        }
        gate.pass();
        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"status\":1}";
        if (&stream).write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Files under `dir` (recursively); empty when it does not exist.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Events waiting in a spool directory (`*.json`; the lock file is not one).
pub fn spooled(spool: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = files_under(spool)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Waits until no live process has `marker` (e.g. a test's state dir) in its command line:
/// the detached deliveries that `send` left behind have ended. Panics after `limit`.
pub fn wait_detached(marker: &Path, limit: Duration) {
    let marker = marker.display().to_string();
    let until = Instant::now() + limit;
    while running_with(&marker) {
        assert!(
            Instant::now() < until,
            "a detached delivery for {marker} still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while a process (not a zombie: those have an empty command line) mentions `marker`.
fn running_with(marker: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
    })
}

/// Polls `f` until it returns true; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds the example into this test's target directory (once) and returns its path.
pub fn demo_agent() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // <target>/<profile>/deps/agent_e2e-HASH
        let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
        let target_dir = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "anonstats-client",
            "--example",
            "demo-agent",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for demo-agent");
        assert!(status.success(), "cargo build --example demo-agent failed");
        profile_dir.join("examples/demo-agent")
    })
    .clone()
}
