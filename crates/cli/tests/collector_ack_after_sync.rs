//! A 200 is written to a socket only after the log that holds its events was synced.
//! SIGKILL keeps the page cache, so a kill test cannot catch a missing sync; the
//! collector's own system calls can. Traced under load, every acknowledgement must come
//! after an fdatasync of the write-ahead log that began after the request's events were
//! written to it.

mod common;

use common::Collector;
use common::strace::{Call, calls};
use serde_json::json;
use std::collections::HashSet;

/// Every 200 answered before a sync of its events' log: (the 200's position, why).
/// Returns the violations and how many 200s were checked.
fn acknowledged_before_sync(calls: &[Call]) -> (Vec<String>, usize) {
    let wal: HashSet<String> = calls
        .iter()
        .filter(|c| c.name == "openat" && c.args.contains("-wal\"") && c.ret >= 0)
        .map(|c| c.ret.to_string())
        .collect();
    let ok = |c: &Call| c.ret >= 0;
    let syncs: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            matches!(c.name.as_str(), "fdatasync" | "fsync")
                && wal.contains(c.fd())
                && c.ret == 0
                && !c.injected
        })
        .collect();
    let log_writes: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            matches!(c.name.as_str(), "pwrite64" | "write") && wal.contains(c.fd()) && ok(c)
        })
        .collect();
    let mut violations = Vec::new();
    let mut checked = 0;
    for answer in calls.iter().filter(|c| {
        matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg")
            && c.args.contains("HTTP/1.1 200")
    }) {
        checked += 1;
        // The request was read in full by its last read on that socket before the answer.
        let read = calls
            .iter()
            .filter(|c| {
                matches!(c.name.as_str(), "read" | "recvfrom" | "readv")
                    && c.fd() == answer.fd()
                    && c.exit < answer.entry
                    && c.ret > 0
            })
            .map(|c| c.exit)
            .max();
        let Some(read) = read else {
            violations.push(format!(
                "line {}: a 200 on fd {} with no request read",
                answer.entry,
                answer.fd()
            ));
            continue;
        };
        let Some(commit) = log_writes
            .iter()
            .map(|w| w.entry)
            .filter(|&e| e > read)
            .min()
        else {
            violations.push(format!(
                "line {}: a 200 with no log write after its request (line {read})",
                answer.entry
            ));
            continue;
        };
        let synced = syncs
            .iter()
            .any(|s| s.entry > commit && s.exit < answer.entry);
        if !synced {
            violations.push(format!(
                "line {}: a 200 on fd {} with no log sync between its commit (line {commit}) and the answer",
                answer.entry, answer.fd()
            ));
        }
    }
    (violations, checked)
}

/// Runs a collector under strace (with `extra` strace arguments) while six senders
/// send 40 requests each; returns the answers that came before their sync, how many
/// 200s were checked and how many the senders saw.
fn traced_load(extra: &[&str]) -> Option<(Vec<String>, usize, usize)> {
    if !common::require(std::path::Path::new("/usr/bin/strace").exists(), "strace") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trace");
    let log_arg = log.display().to_string();
    let mut wrapper = vec![
        "strace",
        "-f",
        "-qq",
        "-s",
        "24",
        "-o",
        &log_arg,
        "-e",
        "trace=openat,pwrite64,write,writev,sendto,sendmsg,read,recvfrom,readv,fdatasync,fsync",
    ];
    wrapper.extend_from_slice(extra);
    // A load generator, not a fleet: six machines sending 1,600 events each at once, past
    // the default limit of 1,000 a minute per machine.
    let mut c = Collector::start_under(&wrapper, &["--machine-events-per-minute", "0"]);
    let url = c.url("/batch/");
    let senders: Vec<_> = (0..6)
        .map(|t| {
            let (url, token) = (url.clone(), c.write_token.clone());
            std::thread::spawn(move || {
                let agent = common::agent();
                let mut acked = 0;
                for n in 0..40 {
                    let size = [1, 20, 100][n % 3];
                    let batch: Vec<_> = (0..size)
                        .map(|i| json!({"event": "load", "distinct_id": format!("t{t}"), "properties": {"n": n * 1000 + i}}))
                        .collect();
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    let r = agent.post(&url).header("content-type", "application/json").send(body.as_bytes());
                    if r.is_ok_and(|r| r.status().as_u16() == 200) {
                        acked += 1;
                    }
                }
                acked
            })
        })
        .collect();
    let acked: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
    // Stopped by its own pid, so that strace writes the rest of its record and exits: a
    // SIGKILL of strace loses what it had not written out, the last answers with it.
    let pid = c.serve_pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    c.stop();
    let calls = calls(&std::fs::read_to_string(&log).expect("trace"));
    let (violations, checked) = acknowledged_before_sync(&calls);
    Some((violations, checked, acked))
}

#[test]
fn every_200_follows_a_sync_of_the_log_that_holds_its_events() {
    let Some((violations, checked, acked)) = traced_load(&[]) else {
        return;
    };
    assert_eq!(acked, 240);
    assert!(
        checked >= acked,
        "checked {checked} answers of {acked} acknowledged"
    );
    assert!(
        violations.is_empty(),
        "{} of {checked} answers came before their sync:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// The same load with every fdatasync skipped (strace answers it without running it)
/// stands for a collector built without the sync: the check must see it.
#[test]
fn a_collector_whose_syncs_are_skipped_fails_the_check() {
    let Some((violations, checked, _)) = traced_load(&["-e", "inject=fdatasync:retval=0"]) else {
        return;
    };
    assert!(checked > 0);
    assert_eq!(
        violations.len(),
        checked,
        "answers passed the check without a real sync"
    );
}

/// The check itself: a trace in which the collector answers without syncing fails it,
/// the same trace with the sync passes.
#[test]
fn the_check_catches_an_answer_before_the_sync() {
    let synced = "\
1 openat(AT_FDCWD, \"/d/anonstats.db-wal\", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 7
2 openat(AT_FDCWD, \"/d/anonstats.db-wal\", O_RDONLY|O_CLOEXEC) = 9
3 recvfrom(12, \"POST /batch/ HTTP/1.1\\r\\n\"..., 8192, 0, NULL, NULL) = 300
4 pwrite64(7, \"\\0\\0\"..., 4096, 0) = 4096
5 fdatasync(9 <unfinished ...>
3 write(12, \"HTTP/1.1 200 OK\\r\\n\"..., 120 <unfinished ...>
5 <... fdatasync resumed>) = 0
3 <... write resumed>) = 120
";
    let (v, n) = acknowledged_before_sync(&calls(synced));
    assert_eq!(n, 1);
    assert_eq!(v.len(), 1, "the answer began before the sync ended: {v:?}");
    let fixed = synced.replace(
        "5 fdatasync(9 <unfinished ...>\n3 write(12, \"HTTP/1.1 200 OK\\r\\n\"..., 120 <unfinished ...>\n5 <... fdatasync resumed>) = 0\n",
        "5 fdatasync(9) = 0\n3 write(12, \"HTTP/1.1 200 OK\\r\\n\"..., 120 <unfinished ...>\n",
    );
    let (v, n) = acknowledged_before_sync(&calls(&fixed));
    assert_eq!((v.len(), n), (0, 1), "{v:?}");
    let unsynced = fixed.replace("5 fdatasync(9) = 0\n", "");
    assert_eq!(acknowledged_before_sync(&calls(&unsynced)).0.len(), 1);
}
