//! A caller that waits (EXIT, FATAL) waits at most the timeout in all, whatever the
//! collector and the disk do: a collector that accepts and never answers, a port that
//! refuses, a listener that never accepts, and a disk whose syncs stall.

mod common;

use anonstats_client::{Client, FatalSite, Outcome};
use common::Recorder;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(400);
/// Far longer than the timeout, far shorter than any stall the tests make.
const BOUND: Duration = Duration::from_millis(2500);

fn client(dir: &Path, url: &str) -> Client {
    Client::builder()
        .product("bounded", "1.0.0")
        .endpoint(url)
        .token("tok")
        .config_dir(dir.join("etc"))
        .state_dir(dir.join("state"))
        .timeout(TIMEOUT)
        .env(|_| None)
        .build()
        .unwrap()
}

fn site() -> FatalSite {
    FatalSite {
        process: "bounded".into(),
        thread: "main".into(),
        function: "bounded::run".into(),
        file: "src/main.rs".into(),
        line: 7,
        errno: 0,
        message: "stalled".into(),
    }
}

/// A listener whose accept queue is full, so that a new connection is never set up.
/// Holds the listener and the connections that fill its queue.
struct NeverAccepts {
    url: String,
    _held: (TcpListener, Vec<TcpStream>),
}

fn never_accepts() -> NeverAccepts {
    // SAFETY: plain socket calls on a descriptor owned here; listen(0) leaves room for one
    // pending connection.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, (&raw const addr).cast(), len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        TcpListener::from_raw_fd(fd)
    };
    let addr = listener.local_addr().unwrap();
    let probe = |ms| TcpStream::connect_timeout(&addr, Duration::from_millis(ms));
    let mut held = Vec::new();
    // Fill the queue until a connection can no longer be made: the state every client
    // meets from then on.
    loop {
        match probe(300) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
        assert!(held.len() < 16, "the accept queue never filled");
    }
    NeverAccepts {
        url: format!("http://{addr}"),
        _held: (listener, held),
    }
}

fn refusing_port() -> String {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn timed(f: impl FnOnce() -> Outcome) -> (Duration, Outcome) {
    let t = Instant::now();
    let o = f();
    (t.elapsed(), o)
}

#[test]
fn exit_and_fatal_wait_at_most_the_timeout_whatever_the_collector_does() {
    let silent = Recorder::gated();
    let queue_full = never_accepts();
    let cases = [
        ("accepts and never answers", silent.url.clone()),
        ("refuses", refusing_port()),
        ("never accepts", queue_full.url.clone()),
    ];
    for (what, url) in cases {
        let dir = tempfile::tempdir().unwrap();
        let c = client(dir.path(), &url);
        assert_eq!(c.start(), Outcome::Queued);
        let (t, exit) = timed(|| c.exit());
        assert!(t < BOUND, "{what}: EXIT took {t:?}");
        assert!(matches!(exit, Outcome::Spooled(_)), "{what}: {exit:?}");
        let c = client(dir.path(), &url);
        let (t, fatal) = timed(|| c.fatal(site()));
        assert!(t < BOUND, "{what}: FATAL took {t:?}");
        assert!(matches!(fatal, Outcome::Spooled(_)), "{what}: {fatal:?}");
    }
    silent.release();
}

/// Events captured behind a stalled disk, more than the client's queue holds.
const EXTRA: usize = 1100;
/// What the client queues at most (`intake::QUEUE`).
const QUEUE: usize = 1024;

/// Run in a child process under strace, which holds every fsync for 6 s: FATAL returns
/// after the timeout, before its spool file is in place, and events captured meanwhile
/// fill the client's queue and then are dropped, without waiting.
#[test]
fn fatal_waits_at_most_the_timeout_while_the_disk_stalls() {
    if let Some(dir) = std::env::var_os("ANONSTATS_STALLED_CHILD") {
        let rec = Recorder::start();
        let c = client(Path::new(&dir), &rec.url);
        let (t, outcome) = timed(|| c.fatal(site()));
        let spooled = std::fs::read_dir(Path::new(&dir).join("state/spool"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension() == Some("json".as_ref()))
            })
            .unwrap_or(false);
        // Behind the held FATAL, the queue fills; what does not fit is dropped, not waited for.
        let (mut dropped, mut slowest) = (0, Duration::ZERO);
        for _ in 0..EXTRA {
            let (t, o) = timed(|| c.capture("AFTER", Default::default()));
            dropped += usize::from(matches!(o, Outcome::Dropped(_)));
            slowest = slowest.max(t);
        }
        println!("\nqueue: {dropped} {}", slowest.as_millis());
        println!("\nchild: {} {spooled} {outcome:?}", t.as_millis());
        // Leave at once, with the client's thread still held in its fsync.
        std::process::exit(0);
    }
    if !tool("strace") {
        assert!(std::env::var_os("CI").is_none(), "strace is missing");
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fsync,fdatasync",
        ])
        .args(["-e", "inject=fsync,fdatasync:delay_enter=6000000"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fatal_waits_at_most_the_timeout_while_the_disk_stalls",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ANONSTATS_STALLED_CHILD", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("child: ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "no report from the child: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let (ms, rest) = line.split_once(' ').unwrap();
    let (spooled, outcome) = rest.split_once(' ').unwrap();
    let ms: u64 = ms.parse().unwrap();
    // The stall is real: the event was not yet in place when FATAL returned...
    assert_eq!(spooled, "false", "the fsync was not held: {line}");
    // ...and FATAL did not wait for it.
    assert!(
        ms < BOUND.as_millis() as u64,
        "FATAL took {ms} ms: {outcome}"
    );
    assert!(outcome.contains("Spooled"), "{outcome}");
    let queue = stdout
        .lines()
        .find_map(|l| l.strip_prefix("queue: "))
        .expect("no queue report");
    let (dropped, slowest) = queue.split_once(' ').unwrap();
    assert_eq!(dropped.parse::<usize>().unwrap(), EXTRA - QUEUE, "{queue}");
    assert!(
        slowest.parse::<u64>().unwrap() < 100,
        "a capture waited {slowest} ms"
    );
}

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}
