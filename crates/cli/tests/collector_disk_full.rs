//! A full disk: capture answers 503 saying so (never 500, never a crash), nothing it
//! acknowledged is lost, the database stays whole, and capture resumes by itself once
//! there is room again.

mod common;

use common::Collector;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_answered_503_loses_nothing_acknowledged_and_capture_resumes_when_space_is_freed()
{
    let mut disk = None;
    // A load generator, not a fleet: seven machines filling a disk as fast as they can,
    // past the default limit of 1,000 events a minute per machine.
    let c = Collector::start_prepared(&[], &["--machine-events-per-minute", "0"], |data| {
        disk = SmallDisk::mount(data, "12m");
        if let Some(d) = &disk {
            // Room to give back later.
            std::fs::write(d.0.join("ballast"), vec![0u8; 4 << 20]).unwrap();
        }
    });
    if !common::require(disk.is_some(), "a tmpfs mount (root and mount)") {
        return;
    }
    let url = c.url("/batch/");
    let mut acked = 0usize;
    let mut full = None;
    for round in 0..2000 {
        let batch: Vec<_> = (0..200)
            .map(|i| json!({"event": "fill", "distinct_id": format!("m{}", i % 7), "properties": {"round": round, "pad": "x".repeat(200)}}))
            .collect();
        let a = common::post_json(&url, &json!({"api_key": c.write_token, "batch": batch}));
        match a.status {
            200 => acked += 200,
            503 => {
                full = Some(a);
                break;
            }
            other => panic!("answered {other} on a filling disk: {}", a.body),
        }
    }
    let full = full.expect("the disk never filled");
    assert_eq!(full.json()["code"], "disk_full", "{}", full.body);
    assert!(full.detail().contains("disk is full"), "{}", full.body);
    assert!(full.header("retry-after").is_some());
    assert!(acked > 0);

    // Still full: still a clear 503, and the collector is up.
    let a = common::post_json(
        &url,
        &json!({"api_key": c.write_token, "event": "still", "distinct_id": "m"}),
    );
    assert!(
        a.status == 503 || a.status == 200,
        "{} {}",
        a.status,
        a.body
    );
    let health = common::request("GET", &c.url("/healthz"), &[], None);
    assert!(
        health.status == 200 || health.status == 503,
        "{}",
        health.body
    );

    // Room again: capture resumes without a restart.
    std::fs::remove_file(disk.as_ref().unwrap().0.join("ballast")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let a = common::post_json(
            &url,
            &json!({"api_key": c.write_token, "event": "after", "distinct_id": "m"}),
        );
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 503, "{}", a.body);
        assert!(
            std::time::Instant::now() < deadline,
            "capture did not resume: {}",
            a.body
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let events = c.export();
    let fill = events.iter().filter(|e| e["event"] == "fill").count();
    assert!(fill >= acked, "{fill} stored of {acked} acknowledged");
    assert_eq!(events.iter().filter(|e| e["event"] == "after").count(), 1);
    // Checked by SQLite itself, from outside the collector.
    let check = Command::new("python3")
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])"])
        .arg(c.data_dir().join("anonstats.db"))
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    drop(c);
}
