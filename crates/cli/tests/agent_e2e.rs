//! End to end: the `demo-agent` example against the real collector (`anonstats serve`),
//! read back with `anonstats export`.

mod agent_common;
mod common;

use agent_common::demo_agent;

use common::Collector;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

struct Demo {
    dir: PathBuf,
}

/// The line the demo agent prints once its SIGTERM and SIGINT handlers are installed.
const READY: &str = "demo-agent: ready";

impl Demo {
    /// Starts the agent and returns once it handles SIGTERM: a signal sent before would
    /// kill it instead of making it send EXIT.
    fn start(&self, url: &str, token: &str) -> Child {
        let mut child = self
            .command(url, token, false)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start demo-agent");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in lines.by_ref().map_while(Result::ok) {
                if line == READY
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("demo-agent did not say it handles signals");
        child
    }

    /// Runs the agent with `--crash`; it exits on its own.
    fn crash(&self, url: &str, token: &str) -> Child {
        self.command(url, token, true)
            .spawn()
            .expect("start demo-agent")
    }

    fn command(&self, url: &str, token: &str, crash: bool) -> Command {
        let mut cmd = Command::new(demo_agent());
        cmd.args(["--endpoint", url, "--token", token, "--config-dir"])
            .arg(self.dir.join("etc"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .env_remove("DISABLE_TELEMETRY")
            .env_remove("DO_NOT_TRACK")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if crash {
            cmd.arg("--crash");
        }
        cmd
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait(child: &mut Child) -> ExitStatus {
    common::wait_timeout(child, Duration::from_secs(20)).expect("demo-agent did not exit")
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// Polls the export until `n` events named `name` are stored.
fn wait_for(c: &Collector, name: &str, n: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let events = c.export();
        if named(&events, name).len() >= n || Instant::now() > until {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn start_exit_and_fatal_arrive_with_their_fields() {
    let c = Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo {
        dir: dir.path().into(),
    };

    let mut agent = demo.start(&c.url, &c.write_token);
    wait_for(&c, "START", 1);
    signal(&agent, "-TERM");
    assert!(wait(&mut agent).success());
    let events = wait_for(&c, "EXIT", 1);
    let start = named(&events, "START")[0];
    let p = &start["properties"];
    assert_eq!(p["product_name"], "demo-agent");
    assert_eq!(p["action"], "START");
    assert!(p["system_kernel_name"].is_string());
    assert!(p.get("$ip").is_none_or(|ip| ip == "127.0.0.1"));
    let machine = std::fs::read_to_string(
        agent_common::id_dir(&dir.path().join("state/demo-agent"), &c.url).join("machine-id"),
    )
    .expect("machine id");
    assert_eq!(start["distinct_id"], machine.trim());

    let mut crashing = demo.crash(&c.url, &c.write_token);
    assert_eq!(wait(&mut crashing).code(), Some(101));
    let events = wait_for(&c, "FATAL", 1);
    let fatal = named(&events, "FATAL");
    assert_eq!(fatal.len(), 1);
    let p = &fatal[0]["properties"];
    assert_eq!(p["fatal_process"], "demo-agent");
    assert_eq!(p["fatal_thread"], "config-loader");
    assert_eq!(p["fatal_function"], "demo_agent::load_configuration");
    assert_eq!(p["fatal_file"], "crates/client/examples/demo-agent.rs");
    let line = p["fatal_line"].as_u64().expect("fatal_line is a number");
    assert!(line > 0);
    let expected =
        format!("{line}@crates/client/examples/demo-agent.rs:demo_agent::load_configuration/0");
    assert_eq!(p["action_data"], expected);
    assert_eq!(p["action_result"], "demo-agent:config-loader");
    assert_eq!(named(&events, "START").len(), 2);
    assert!(named(&events, "INCOMPLETE_SHUTDOWN").is_empty());
}

#[test]
fn fatal_spooled_while_the_collector_is_down_arrives_once() {
    let mut c = Collector::start();
    let old_url = c.url.clone();
    c.kill();
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo {
        dir: dir.path().into(),
    };

    let mut crashing = demo.crash(&old_url, &c.write_token);
    assert_eq!(wait(&mut crashing).code(), Some(101));
    let spooled: Vec<Value> = std::fs::read_dir(dir.path().join("state/demo-agent/spool"))
        .expect("spool dir")
        .flatten()
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json"))
        .collect();
    let fatal_uuid = spooled
        .iter()
        .find(|e| e["event"] == "FATAL")
        .map(|e| e["uuid"].clone())
        .expect("FATAL is in the spool");

    // Back at the address the events were made for.
    c.restart_on_same_port();
    // Each run waits for counts new to it: the spooled START, then one START and one
    // EXIT per run.
    for run in 1..=2 {
        let mut agent = demo.start(&c.url, &c.write_token);
        wait_for(&c, "START", 1 + run);
        signal(&agent, "-TERM");
        assert!(wait(&mut agent).success());
        wait_for(&c, "EXIT", run);
    }
    let events = c.export();
    let fatal = named(&events, "FATAL");
    assert_eq!(fatal.len(), 1, "FATAL stored exactly once");
    assert_eq!(fatal[0]["uuid"], fatal_uuid);
    assert_eq!(fatal[0]["properties"]["fatal_thread"], "config-loader");
    // The START of the crashed run was spooled too and arrives once; the run closed by FATAL
    // is not an incomplete shutdown.
    assert_eq!(named(&events, "START").len(), 3);
    assert!(named(&events, "INCOMPLETE_SHUTDOWN").is_empty());
}

#[test]
fn kill_9_is_reported_once_as_incomplete_shutdown() {
    let c = Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo {
        dir: dir.path().into(),
    };

    let mut agent = demo.start(&c.url, &c.write_token);
    wait_for(&c, "START", 1);
    signal(&agent, "-KILL");
    let _ = wait(&mut agent);

    for n in 1..=2 {
        let mut agent = demo.start(&c.url, &c.write_token);
        wait_for(&c, "START", n + 1);
        signal(&agent, "-TERM");
        assert!(wait(&mut agent).success());
        wait_for(&c, "EXIT", n);
    }
    let events = c.export();
    let incomplete = named(&events, "INCOMPLETE_SHUTDOWN");
    assert_eq!(incomplete.len(), 1, "reported exactly once");
    let first_start = named(&events, "START")
        .into_iter()
        .min_by_key(|e| e["timestamp"].as_str().unwrap_or("").to_string())
        .expect("a START");
    assert_eq!(
        incomplete[0]["properties"]["action_data"],
        first_start["uuid"]
    );
    assert_eq!(named(&events, "START").len(), 3);
    assert_eq!(named(&events, "EXIT").len(), 2);
}

#[test]
fn opt_out_while_the_agent_runs_stops_its_events() {
    let c = Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo {
        dir: dir.path().into(),
    };
    let mut agent = demo.start(&c.url, &c.write_token);
    wait_for(&c, "START", 1);
    let before = capture_requests(&c);
    let out = Command::new(common::BIN)
        .arg("opt-out")
        .arg("--config-dir")
        .arg(dir.path().join("etc"))
        .env_remove("DISABLE_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .output()
        .expect("run opt-out");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    signal(&agent, "-TERM");
    assert!(wait(&mut agent).success());
    // The agent has exited: whatever it delivered is stored by now.
    let events = c.export();
    assert_eq!(events.len(), 1, "only START: {events:?}");
    assert_eq!(events[0]["event"], "START");
    assert_eq!(
        capture_requests(&c),
        before,
        "no request reached the collector after the opt-out"
    );
    let spool = dir.path().join("state/demo-agent/spool");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Capture requests the collector has answered, whatever the answer (`/metrics`).
fn capture_requests(c: &Collector) -> u64 {
    common::admin_metrics(c)
        .lines()
        .filter(|l| l.starts_with("anonstats_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
