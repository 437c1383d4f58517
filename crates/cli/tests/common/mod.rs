//! Test harness: runs the real `anonstats` binary on 127.0.0.1 with a fresh data dir.
#![allow(dead_code)]

pub mod clickhouse;
pub mod proxy;
pub mod strace;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_anonstats");

/// A running collector.
pub struct Collector {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The `--admin-listen` address's URL, when it was given.
    pub admin_url: Option<String>,
    pub write_token: String,
    pub admin_token: String,
    child: Option<Child>,
    pub stderr_log: PathBuf,
    extra_args: Vec<String>,
    /// The address `serve` listens on (`127.0.0.1:0` until [`Collector::restart_on_same_port`]).
    listen: String,
    /// A command the collector runs under (e.g. strace injecting faults).
    wrapper: Vec<String>,
}

impl Collector {
    pub fn start() -> Collector {
        Collector::start_with(&[])
    }

    /// Starts with extra `serve` arguments, kept across restarts.
    pub fn start_with(args: &[&str]) -> Collector {
        Collector::start_under(&[], args)
    }

    /// Starts as `WRAPPER... anonstats serve ARGS`, kept across restarts.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Collector {
        Collector::start_prepared(wrapper, args, |_| {})
    }

    /// Starts under strace, which injects `fault` into the collector's fdatasync calls
    /// (strace's `inject=` syntax after `fdatasync:`, e.g. `error=EIO` or
    /// `delay_enter=5000000:when=3..6`).
    pub fn start_with_fdatasync_fault(fault: &str, args: &[&str]) -> Collector {
        let inject = format!("inject=fdatasync:{fault}");
        Collector::start_under(
            &[
                "strace",
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=fdatasync",
                "-e",
                &inject,
            ],
            args,
        )
    }

    /// Starts after `prepare` was given the data dir's path (e.g. to mount something
    /// there).
    pub fn start_prepared(
        wrapper: &[&str],
        args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Collector {
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(&dir.path().join("data"));
        let mut c = Collector {
            stderr_log: dir.path().join("serve.log"),
            dir,
            url: String::new(),
            admin_url: None,
            write_token: String::new(),
            admin_token: String::new(),
            child: None,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            listen: "127.0.0.1:0".into(),
            wrapper: wrapper.iter().map(|a| a.to_string()).collect(),
        };
        c.spawn();
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("log file");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(["serve", "--listen", &self.listen, "--data-dir"])
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env("ANONSTATS_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start anonstats serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        loop {
            let line = lines
                .next()
                .expect("serve ended before listening")
                .expect("read stdout");
            if let Some(t) = line.strip_prefix("write token: ") {
                self.write_token = t.to_string();
            } else if let Some(t) = line.strip_prefix("admin token: ") {
                self.admin_token = t.to_string();
            } else if let Some(url) = line.strip_prefix("admin listening on ") {
                self.admin_url = Some(url.to_string());
            } else if let Some(url) = line.strip_prefix("listening on ") {
                self.url = url.to_string();
                break;
            }
        }
        // A new store's tokens are in its data dir (stdout is no terminal here).
        if let Some((write, admin)) = initial_tokens(&self.data_dir()) {
            if self.write_token.is_empty() {
                self.write_token = write;
            }
            if self.admin_token.is_empty() {
                self.admin_token = admin;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// The running collector's process id (under a wrapper, the wrapper's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The collector's own process id, as it wrote it into its data dir's lock file.
    pub fn serve_pid(&self) -> u32 {
        let text =
            std::fs::read_to_string(self.data_dir().join("anonstats.lock")).expect("lock file");
        text.trim().parse().expect("pid in the lock file")
    }

    /// The collector's peak resident memory, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.serve_pid())).expect("status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Stops with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let status = wait_timeout(&mut child, Duration::from_secs(20));
            assert!(
                status.is_some_and(|s| s.success()),
                "serve did not exit cleanly: {status:?}"
            );
        }
    }

    /// Kills with SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Under a wrapper such as strace, killing the wrapper leaves the collector
            // running on its own.
            let own = (!self.wrapper.is_empty())
                .then(|| std::fs::read_to_string(self.data_dir().join("anonstats.lock")).ok())
                .flatten();
            let _ = child.kill();
            if let Some(pid) = own.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Restarts at the address it had, so that senders configured with its URL reach it
    /// again (after a [`Collector::stop`], that URL refuses connections).
    pub fn restart_on_same_port(&mut self) {
        self.listen = self.url.trim_start_matches("http://").to_string();
        self.restart();
    }

    /// Runs `anonstats ARGS --data-dir DIR` and returns stdout; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .expect("run cli");
        assert!(
            out.status.success(),
            "anonstats {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// Every stored event, through `anonstats export`.
    pub fn export(&self) -> Vec<Value> {
        self.cli(&["export", "--format", "ndjson"])
            .lines()
            .map(|l| serde_json::from_str(l).expect("export line is JSON"))
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends a request and collects the answer; `headers` are (name, value) pairs.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let agent = agent();
    let result = match method {
        "GET" | "OPTIONS" | "DELETE" => {
            let mut req = match method {
                "GET" => agent.get(url),
                "DELETE" => agent.delete(url),
                _ => agent.options(url),
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
        _ => {
            let mut req = agent.post(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(body.unwrap_or_default())
        }
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let mut body = String::new();
    let _ = resp.body_mut().as_reader().read_to_string(&mut body);
    Answer {
        status,
        headers,
        body,
    }
}

/// GET with the admin token.
pub fn admin_get(c: &Collector, path: &str) -> Value {
    let auth = format!("Bearer {}", c.admin_token);
    let a = request("GET", &c.url(path), &[("authorization", &auth)], None);
    assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    a.json()
}

/// `/metrics`, scraped with the admin token as Prometheus would.
pub fn admin_metrics(c: &Collector) -> String {
    let auth = format!("Bearer {}", c.admin_token);
    let a = request("GET", &c.url("/metrics"), &[("authorization", &auth)], None);
    assert_eq!(a.status, 200, "GET /metrics: {}", a.body);
    a.body
}

/// Runs read-only SQL through the admin API; returns the rows.
pub fn admin_sql(c: &Collector, sql: &str) -> Vec<Vec<Value>> {
    let auth = format!("Bearer {}", c.admin_token);
    let body = serde_json::json!({ "sql": sql }).to_string();
    let a = request(
        "POST",
        &c.url("/api/v1/sql"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 200, "sql {sql}: {}", a.body);
    serde_json::from_value(a.json()["rows"].clone()).expect("rows")
}

pub fn post_json(url: &str, body: &Value) -> Answer {
    request(
        "POST",
        url,
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

/// Whether an external tool the test needs is present. In CI its absence fails the
/// test; elsewhere the test is skipped with the reason printed.
pub fn require(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required in CI but missing; scripts/test.sh installs it");
    }
    eprintln!("skipped: {what} is missing (scripts/test.sh installs it)");
    false
}

/// The write and admin tokens a new store was given, from `<data dir>/initial-tokens.txt`.
pub fn initial_tokens(data_dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(data_dir.join("initial-tokens.txt")).ok()?;
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
    };
    Some((find("write token: ")?, find("admin token: ")?))
}

/// Every byte of the database files in a data dir (`anonstats.db` and its log).
pub fn store_bytes(data_dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir).expect("read dir").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("anonstats.db")
        {
            out.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    out
}

/// Every byte of every file under `dir`.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Eight senders send single events and batches (1, 10 and 100 events) while `c` is killed
/// with SIGKILL at moments chosen at random and restarted, `ANONSTATS_CRASH_TRIALS` times
/// (3 by default; the choice is replayed with `ANONSTATS_TEST_SEED`). A sender resends what
/// was not acknowledged with the same uuids, as the SDKs do. Returns every uuid answered 200.
pub fn killed_during_load(c: &mut Collector) -> Vec<String> {
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let url = Arc::new(Mutex::new(c.url("/batch/")));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8u64)
        .map(|t| {
            let (url, token, acked, stop) =
                (url.clone(), c.write_token.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0u64;
                let mut unsent: Option<Vec<serde_json::Value>> = None;
                while !stop.load(Ordering::SeqCst) {
                    let batch = unsent.take().unwrap_or_else(|| {
                        let size = [1, 1, 10, 100][(n % 4) as usize];
                        (0..size)
                            .map(|i| {
                                n += 1;
                                let uuid = format!("0190f000-0000-7000-8000-{:04x}{:08x}", t, n * 1000 + i);
                                json!({"event": "load", "distinct_id": format!("t{t}-{}", n % 256), "uuid": uuid})
                            })
                            .collect()
                    });
                    let target = url.lock().unwrap().clone();
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    let ok = agent
                        .post(&target)
                        .header("content-type", "application/json")
                        .send(body.as_bytes())
                        .is_ok_and(|r| r.status().as_u16() == 200);
                    if ok {
                        let mut a = acked.lock().unwrap();
                        a.extend(batch.iter().map(|e| e["uuid"].as_str().unwrap().to_string()));
                    } else {
                        unsent = Some(batch);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    // A seeded choice of moments, so a failure can be replayed.
    let mut seed = std::env::var("ANONSTATS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("ANONSTATS_TEST_SEED={seed}");
    // CI runs three trials; bench/soak/run.sh runs more.
    let trials: usize = std::env::var("ANONSTATS_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for _ in 0..trials {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let more = 200 + (seed >> 33) as usize % 2000;
        let target = acked.lock().unwrap().len() + more;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while acked.lock().unwrap().len() < target {
            assert!(std::time::Instant::now() < deadline, "senders stalled");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        c.kill();
        c.restart();
        *url.lock().unwrap() = c.url("/batch/");
    }
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }
    acked.lock().unwrap().clone()
}

/// Every acknowledged uuid is among the stored ones, and none is stored twice.
pub fn assert_stored_once(acked: &[String], stored: &[String]) {
    let mut count: std::collections::HashMap<&str, usize> = Default::default();
    for u in stored {
        *count.entry(u).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<_> = acked
        .iter()
        .filter(|u| !count.contains_key(u.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged uuids are missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}
