//! Power loss: a 200 means the events survive the machine losing power, and the store
//! opens clean afterwards.
//!
//! SIGKILL keeps the page cache, so it cannot lose a write that was never synced. Here the
//! collector runs under strace, which records every write, truncation, sync, creation and
//! removal of a file in its data dir, byte for byte, and every answer written to a socket.
//! The data dir is then rebuilt from the record, cut at many points in the manner of ALICE
//! and CrashMonkey: at a cut, what a sync finished making durable is kept; every other
//! change that had begun (a write or truncation no sync covers yet, a file whose directory
//! entry was not synced) may or may not have reached the disk, so a random subset of them is
//! kept, or none. Each copy is opened with SQLite: `PRAGMA integrity_check` must say `ok`,
//! and every uuid of every request answered 200 before the cut must be stored.

mod common;

use common::Collector;
use common::strace::{Call, calls};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What one system call did to the data dir, or said to a client.
#[derive(Debug, Clone)]
enum Effect {
    Create(PathBuf),
    Write {
        path: PathBuf,
        offset: u64,
        data: Vec<u8>,
    },
    Truncate(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
    /// An fsync or fdatasync of a file, or of a directory (its entries).
    Sync(PathBuf),
    /// A 200 written to a socket, with the request id it carries.
    Ack(String),
}

/// An effect and when it happened: the trace lines of its call's entry and exit.
#[derive(Debug, Clone)]
struct Op {
    effect: Effect,
    entry: usize,
    exit: usize,
}

/// The bytes of a string as `strace -xx` prints it (every byte `\xHH`; other escapes
/// too, for safety). Panics on a string strace cut short: the record must be whole.
fn unquote(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                    continue;
                }
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                other => out.push(other),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Every quoted string in a call's text, unquoted, in order.
fn strings(text: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('"') {
        let body = &rest[start + 1..];
        let mut end = 0;
        let bytes = body.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        assert!(
            !body[end + 1..].starts_with("..."),
            "strace cut a string short: raise -s"
        );
        out.push(unquote(&body[..end]));
        rest = &body[end + 1..];
    }
    out
}

/// The effects of the calls on files under `root` (paths as they were opened) and the
/// 200s written to sockets, in the order the calls began.
fn effects(calls: &[Call], root: &Path) -> Vec<Op> {
    let mut files: HashMap<i64, (PathBuf, u64)> = HashMap::new();
    let mut ops = Vec::new();
    let under = |p: &Path| p.starts_with(root);
    let path_of =
        |arg: &str| PathBuf::from(String::from_utf8(unquote(arg.trim_matches('"'))).unwrap());
    for c in calls {
        let args: Vec<&str> = c.args.split(", ").map(str::trim).collect();
        let fd = || args[0].parse::<i64>().unwrap_or(-1);
        let mut push = |effect| {
            ops.push(Op {
                effect,
                entry: c.entry,
                exit: c.exit,
            })
        };
        if c.ret < 0 {
            continue;
        }
        match c.name.as_str() {
            "openat" => {
                let path = path_of(args[1]);
                if under(&path) {
                    if args[2].contains("O_CREAT") {
                        push(Effect::Create(path.clone()));
                    }
                    if args[2].contains("O_TRUNC") {
                        push(Effect::Truncate(path.clone(), 0));
                    }
                    files.insert(c.ret, (path, 0));
                }
            }
            "close" => {
                files.remove(&fd());
            }
            "lseek" => {
                if let Some(f) = files.get_mut(&fd()) {
                    f.1 = c.ret as u64;
                }
            }
            "pwrite64" | "write" => match files.get_mut(&fd()) {
                Some((path, pos)) => {
                    let mut data = strings(&c.args).remove(0);
                    data.truncate(c.ret as usize);
                    let offset = if c.name == "pwrite64" {
                        args[args.len() - 1].parse().unwrap()
                    } else {
                        let at = *pos;
                        *pos += data.len() as u64;
                        at
                    };
                    push(Effect::Write {
                        path: path.clone(),
                        offset,
                        data,
                    });
                }
                None => ack(&c.args, &mut push),
            },
            "writev" | "sendto" | "sendmsg" if !files.contains_key(&fd()) => {
                ack(&c.args, &mut push)
            }
            "ftruncate" => {
                if let Some((path, _)) = files.get(&fd()) {
                    push(Effect::Truncate(path.clone(), args[1].parse().unwrap()));
                }
            }
            "fsync" | "fdatasync" if !c.injected => {
                if let Some((path, _)) = files.get(&fd()) {
                    push(Effect::Sync(path.clone()));
                }
            }
            "unlink" | "unlinkat" => {
                let path = path_of(args[if c.name == "unlink" { 0 } else { 1 }]);
                if under(&path) {
                    push(Effect::Unlink(path));
                }
            }
            "rename" | "renameat" | "renameat2" => {
                let (from, to) = if c.name == "rename" {
                    (path_of(args[0]), path_of(args[1]))
                } else {
                    (path_of(args[1]), path_of(args[3]))
                };
                if under(&from) || under(&to) {
                    push(Effect::Rename(from, to));
                }
            }
            _ => {}
        }
    }
    ops.sort_by_key(|op| op.entry);
    ops
}

/// A 200 among the bytes a call wrote to a socket, by the `x-request-id` it carries.
fn ack(args: &str, push: &mut impl FnMut(Effect)) {
    let bytes: Vec<u8> = strings(args).concat();
    let text = String::from_utf8_lossy(&bytes);
    if !text.starts_with("HTTP/1.1 200") {
        return;
    }
    if let Some(id) = text.lines().find_map(|l| l.strip_prefix("x-request-id: ")) {
        push(Effect::Ack(id.trim().to_string()));
    }
}

/// xorshift64*: a fixed sequence, so a failure is the same on every run of a trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What may have reached the disk of the changes no sync covers at a cut.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unsynced {
    /// None of them.
    Lost,
    /// Each with a chance of one half.
    Some,
}

/// The data dir as the disk holds it when the power goes at trace line `cut`: the files
/// under `root`, by name. The write-ahead log's shared-memory index (`-shm`) is left out:
/// SQLite rebuilds it from the log.
fn replay(ops: &[Op], cut: usize, unsynced: Unsynced, rng: &mut Rng) -> HashMap<PathBuf, Vec<u8>> {
    let synced_after = |path: &Path, exit: usize| {
        ops.iter().any(|s| {
            matches!(&s.effect, Effect::Sync(p) if p == path) && s.entry > exit && s.exit < cut
        })
    };
    let mut files: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    for op in ops.iter().filter(|op| op.entry < cut) {
        // A file's data is durable once the file is synced; a name, once its directory is.
        let target = match &op.effect {
            Effect::Create(p) | Effect::Unlink(p) => p.parent().unwrap().to_path_buf(),
            Effect::Rename(_, to) => to.parent().unwrap().to_path_buf(),
            Effect::Write { path, .. } | Effect::Truncate(path, _) => path.clone(),
            Effect::Sync(_) | Effect::Ack(_) => continue,
        };
        let durable = synced_after(&target, op.exit);
        let applied = durable
            || match unsynced {
                Unsynced::Lost => false,
                Unsynced::Some => rng.below(2) == 0,
            };
        if !applied {
            continue;
        }
        match &op.effect {
            Effect::Create(p) => {
                files.entry(p.clone()).or_default();
            }
            Effect::Unlink(p) => {
                files.remove(p);
            }
            Effect::Rename(from, to) => {
                if let Some(data) = files.remove(from) {
                    files.insert(to.clone(), data);
                }
            }
            // Writes to a file whose name never reached the disk are lost with it.
            Effect::Write { path, offset, data } => {
                if let Some(file) = files.get_mut(path) {
                    let end = *offset as usize + data.len();
                    if file.len() < end {
                        file.resize(end, 0);
                    }
                    file[*offset as usize..end].copy_from_slice(data);
                }
            }
            Effect::Truncate(path, len) => {
                if let Some(file) = files.get_mut(path) {
                    file.resize(*len as usize, 0);
                }
            }
            Effect::Sync(_) | Effect::Ack(_) => {}
        }
    }
    files.retain(|p, _| !p.to_string_lossy().ends_with("-shm"));
    files
}

/// The request ids answered 200 before the cut: conservatively, every 200 whose write
/// had begun.
fn acked_before(ops: &[Op], cut: usize) -> Vec<&str> {
    ops.iter()
        .filter(|op| op.entry < cut)
        .filter_map(|op| match &op.effect {
            Effect::Ack(id) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

/// What a copy of the data dir rebuilt at a cut holds: SQLite's integrity check, and the
/// stored uuids.
fn open_copy(
    files: &HashMap<PathBuf, Vec<u8>>,
    root: &Path,
    into: &Path,
) -> (String, HashSet<String>) {
    for (path, data) in files {
        let rel = path.strip_prefix(root).unwrap();
        let to = into.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, data).unwrap();
    }
    let db = into.join("anonstats.db");
    if !db.exists() {
        // Cut before the store was created: a collector started again creates it, and
        // nothing can have been acknowledged (the missing uuids say so if it was).
        return ("ok".into(), HashSet::new());
    }
    let conn = rusqlite::Connection::open(&db).expect("open the copy");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| format!("integrity_check failed: {e}"));
    let has_events: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'events'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n == 1)
        .unwrap_or(false);
    let mut uuids = HashSet::new();
    if has_events {
        let mut stmt = conn.prepare("SELECT uuid FROM events").unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
        for blob in rows {
            let blob: [u8; 16] = blob.unwrap().try_into().expect("16-byte uuid");
            uuids.insert(uuid::Uuid::from_bytes(blob).to_string());
        }
    }
    (check, uuids)
}

/// A traced run: the collector's data dir, its operations, and each request's uuids by
/// request id, with the ids the senders saw answered 200.
struct Run {
    root: PathBuf,
    ops: Vec<Op>,
    uuids: HashMap<String, Vec<String>>,
    acked: HashSet<String>,
    _collector: Collector,
}

/// Runs a collector from an empty data dir under strace (with `extra` strace arguments)
/// while four senders send 24 batches each, every event with its own uuid and every
/// request with its own id; stops it and reads the record.
fn traced_run(run: usize, extra: &[&str]) -> Option<Run> {
    if !common::require(Path::new("/usr/bin/strace").exists(), "strace") {
        return None;
    }
    let trace_dir = tempfile::tempdir().unwrap();
    let log = trace_dir.path().join("trace");
    let log_arg = log.display().to_string();
    let mut wrapper = vec![
        "strace",
        "-f",
        "-qq",
        "-xx",
        "-s",
        "1000000",
        "-o",
        &log_arg,
        "-e",
        "trace=openat,close,lseek,write,pwrite64,writev,sendto,sendmsg,ftruncate,fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2",
    ];
    wrapper.extend_from_slice(extra);
    let mut c = Collector::start_under(&wrapper, &[]);
    let url = c.url("/batch/");
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (url, token) = (url.clone(), c.write_token.clone());
            std::thread::spawn(move || {
                let agent = common::agent();
                let mut sent = Vec::new();
                for n in 0..24 {
                    let id = format!("pl-{run}-{t}-{n}");
                    let uuids: Vec<String> = (0..[1, 10, 40][n % 3])
                        .map(|i| format!("00000000-0000-4000-8{run:03x}-{t:02x}{n:04x}{i:06x}"))
                        .collect();
                    let batch: Vec<_> = uuids
                        .iter()
                        .map(|u| json!({"event": "load", "distinct_id": format!("t{t}"), "uuid": u, "properties": {"n": n}}))
                        .collect();
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    let ok = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-request-id", &id)
                        .send(body.as_bytes())
                        .is_ok_and(|r| r.status().as_u16() == 200);
                    sent.push((id, uuids, ok));
                }
                sent
            })
        })
        .collect();
    let mut uuids = HashMap::new();
    let mut acked = HashSet::new();
    for s in senders {
        for (id, u, ok) in s.join().unwrap() {
            if ok {
                acked.insert(id.clone());
            }
            uuids.insert(id, u);
        }
    }
    // Stopped by its own pid: strace then writes the rest of its record and exits.
    let pid = c.serve_pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    c.stop();
    let root = c.data_dir();
    let ops = effects(
        &calls(&std::fs::read_to_string(&log).expect("trace")),
        &root,
    );
    Some(Run {
        root,
        ops,
        uuids,
        acked,
        _collector: c,
    })
}

/// The cut points of a run: half at random lines of the trace, half just after a 200
/// began (the moment a lost sync would show).
fn cuts(ops: &[Op], n: usize, rng: &mut Rng) -> Vec<usize> {
    let end = ops.iter().map(|op| op.exit).max().unwrap_or(0) + 1;
    let acks: Vec<usize> = ops
        .iter()
        .filter(|op| matches!(op.effect, Effect::Ack(_)))
        .map(|op| op.entry + 1)
        .collect();
    (0..n)
        .map(|i| {
            if i % 2 == 0 || acks.is_empty() {
                rng.below(end) + 1
            } else {
                acks[rng.below(acks.len())]
            }
        })
        .collect()
}

/// Cuts a run at `n` points, each replayed twice (unsynced changes all lost, and a random
/// half of them kept). Returns the failures: copies that do not open clean, and
/// acknowledged uuids missing; and how many acknowledged requests the cuts covered.
fn cut_and_check(run: &Run, n: usize, seed: u64) -> (Vec<String>, Vec<String>, usize) {
    let mut rng = Rng(seed);
    let (mut unclean, mut lost, mut covered) = (Vec::new(), Vec::new(), 0);
    for cut in cuts(&run.ops, n, &mut rng) {
        let acked = acked_before(&run.ops, cut);
        covered += acked.len();
        for unsynced in [Unsynced::Lost, Unsynced::Some] {
            let files = replay(&run.ops, cut, unsynced, &mut rng);
            let copy = tempfile::tempdir().unwrap();
            let (check, stored) = open_copy(&files, &run.root, copy.path());
            if check != "ok" {
                unclean.push(format!("cut at line {cut} ({unsynced:?}): {check}"));
            }
            let missing: Vec<&String> = acked
                .iter()
                .flat_map(|id| &run.uuids[*id])
                .filter(|u| !stored.contains(*u))
                .collect();
            if !missing.is_empty() {
                lost.push(format!(
                    "cut at line {cut} ({unsynced:?}): {} acknowledged uuids missing, e.g. {}",
                    missing.len(),
                    missing[0]
                ));
            }
        }
    }
    (unclean, lost, covered)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_uuid_answered_200_survives_power_loss_at_any_cut_and_the_store_opens_clean() {
    let (runs, per_run) = (env("POWER_LOSS_RUNS", 1), env("POWER_LOSS_CUTS", 50));
    let mut total = (0, 0);
    for run in 0..runs {
        let Some(r) = traced_run(run, &[]) else {
            return;
        };
        // The record is whole: every 200 the senders saw is in it.
        let traced: HashSet<&str> = acked_before(&r.ops, usize::MAX).into_iter().collect();
        assert_eq!(r.acked.len(), 96, "every request is answered 200");
        for id in &r.acked {
            assert!(
                traced.contains(id.as_str()),
                "the 200 of {id} is not in the trace"
            );
        }
        let (unclean, lost, covered) = cut_and_check(&r, per_run, 0x5eed + run as u64);
        assert!(unclean.is_empty(), "{}", unclean.join("\n"));
        assert!(lost.is_empty(), "{}", lost.join("\n"));
        assert!(covered > 0, "no cut came after a 200");
        total.0 += per_run;
        total.1 += covered;
    }
    eprintln!(
        "{} cuts of {runs} traced runs, each replayed twice: {} acknowledged requests checked, none lost, every copy ok",
        total.0, total.1
    );
}

/// The same record from a collector whose fdatasyncs never reach the disk (strace answers
/// them itself) stands for a collector that answers 200 before its sync: the cuts must
/// find acknowledged uuids lost.
#[test]
fn a_collector_whose_syncs_are_skipped_loses_acknowledged_uuids_at_the_cuts() {
    let Some(r) = traced_run(0, &["-e", "inject=fdatasync:retval=0"]) else {
        return;
    };
    assert!(!r.acked.is_empty());
    let n = env("POWER_LOSS_CUTS", 50);
    let (_, lost, _) = cut_and_check(&r, n, 0x5eed);
    eprintln!(
        "syncs skipped: {} of {} replays lost acknowledged uuids",
        lost.len(),
        2 * n
    );
    assert!(
        !lost.is_empty(),
        "no cut lost an acknowledged uuid although no fdatasync ran"
    );
}

/// The replayer itself, on a hand-made record: a write is kept at a cut after its file's
/// sync, may be lost before it, and a file created without a sync of its directory may
/// vanish.
#[test]
fn the_replayer_keeps_what_was_synced_and_only_that() {
    let root = PathBuf::from("/d");
    let db = root.join("anonstats.db");
    let op = |effect, line| Op {
        effect,
        entry: line,
        exit: line,
    };
    let ops = vec![
        op(Effect::Create(db.clone()), 1),
        op(Effect::Sync(root.clone()), 2),
        op(
            Effect::Write {
                path: db.clone(),
                offset: 0,
                data: b"abc".to_vec(),
            },
            3,
        ),
        op(Effect::Sync(db.clone()), 4),
        op(
            Effect::Write {
                path: db.clone(),
                offset: 3,
                data: b"def".to_vec(),
            },
            5,
        ),
        op(Effect::Create(root.join("new")), 6),
        op(Effect::Ack("r1".into()), 7),
    ];
    let mut rng = Rng(1);
    let at = |cut, unsynced, rng: &mut Rng| replay(&ops, cut, unsynced, rng);
    assert_eq!(
        at(4, Unsynced::Lost, &mut rng)[&db],
        b"",
        "the sync had not ended"
    );
    assert_eq!(at(5, Unsynced::Lost, &mut rng)[&db], b"abc");
    let lost = at(8, Unsynced::Lost, &mut rng);
    assert_eq!(lost[&db], b"abc");
    assert!(!lost.contains_key(&root.join("new")));
    let mut seen = HashSet::new();
    for _ in 0..64 {
        let files = at(8, Unsynced::Some, &mut rng);
        seen.insert((files[&db].clone(), files.contains_key(&root.join("new"))));
    }
    assert_eq!(
        seen.len(),
        4,
        "each unsynced change is kept or lost: {seen:?}"
    );
    assert_eq!(acked_before(&ops, 7), Vec::<&str>::new());
    assert_eq!(acked_before(&ops, 8), vec!["r1"]);

    let traced = "\
7 openat(AT_FDCWD, \"\\x2f\\x64\\x2f\\x61\", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 5
7 pwrite64(5, \"\\x61\\x62\", 2, 8 <unfinished ...>
8 fdatasync(5) = 0 (INJECTED)
7 <... pwrite64 resumed>) = 2
8 writev(9, [{iov_base=\"\\x48\\x54\\x54\\x50\\x2f\\x31\\x2e\\x31\\x20\\x32\\x30\\x30\\x0d\\x0a\", iov_len=14}, {iov_base=\"\\x78\\x2d\\x72\\x65\\x71\\x75\\x65\\x73\\x74\\x2d\\x69\\x64\\x3a\\x20\\x71\\x0d\\x0a\", iov_len=17}], 2) = 31
";
    let ops = effects(&calls(traced), &root);
    let kinds: Vec<String> = ops.iter().map(|o| format!("{:?}", o.effect)).collect();
    assert_eq!(
        kinds,
        [
            "Create(\"/d/a\")",
            "Write { path: \"/d/a\", offset: 8, data: [97, 98] }",
            "Ack(\"q\")"
        ],
        "an injected fdatasync is no sync"
    );
    assert_eq!((ops[1].entry, ops[1].exit), (1, 3));
}
