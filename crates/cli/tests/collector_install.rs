//! install-collector.sh into a temporary root: the unit passes `systemd-analyze verify`,
//! the data dir and config have the modes and owners promised, completions and the man
//! page are there, the installed binary started with the installed config answers
//! /healthz, what the unit's sandbox allows covers every system call, mapping and socket
//! of the collector (under strace), and --uninstall removes what was installed but the
//! data, which --purge removes too.

mod common;

use common::{BIN, require};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../install-collector.sh");

const INSTALLED: &[&str] = &[
    "usr/local/bin/anonstats",
    "etc/systemd/system/anonstats.service",
    "etc/anonstats/collector.toml",
    "usr/lib/sysusers.d/anonstats.conf",
    "usr/lib/tmpfiles.d/anonstats.conf",
    "usr/local/share/bash-completion/completions/anonstats",
    "usr/local/share/zsh/site-functions/_anonstats",
    "usr/local/share/fish/vendor_completions.d/anonstats.fish",
    "usr/local/share/man/man1/anonstats.1",
];

fn script(root: &Path, args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run install-collector.sh");
    assert!(
        out.status.success(),
        "install-collector.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether this test can install: the systemd tools the script uses, and root, which
/// owns the files it installs and gives the data dir to the service's user.
fn can_install() -> bool {
    let tools = ["systemd-sysusers", "systemd-tmpfiles", "systemd-analyze"]
        .iter()
        .all(|t| {
            Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    require(
        tools,
        "systemd (systemd-sysusers, systemd-tmpfiles, systemd-analyze)",
    ) && require(root, "running as root (the installer sets owners)")
}

fn install() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp root");
    script(
        root.path(),
        &["--binary", BIN, "--public-url", "https://stats.example.org"],
    );
    root
}

/// The numeric id of `name` in the root's passwd or group file.
fn id_in(root: &Path, file: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(root.join("etc").join(file)).expect("read");
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == name)
        .unwrap_or_else(|| panic!("no {name} in etc/{file}: {text}"))[2]
        .parse()
        .expect("numeric id")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if !can_install() {
        return;
    }
    let root = install();
    // Verify resolves the unit's targets and its ExecStart inside the root, so it needs
    // systemd's own units there, as on a real system.
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for entry in std::fs::read_dir("/usr/lib/systemd/system").expect("systemd's units") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), units.join(entry.file_name())).unwrap();
        }
    }
    let verify = || {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            // Documentation=man:anonstats(1) would be looked up on this machine's manpath,
            // not in the root; another test checks the installed page.
            .arg("--man=no")
            .arg("anonstats.service")
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .expect("systemd-analyze")
    };
    let out = verify();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && said.trim().is_empty(),
        "verify: {said}"
    );

    // It does look: without the binary the unit fails verification.
    std::fs::remove_file(root.path().join("usr/local/bin/anonstats")).unwrap();
    let out = verify();
    assert!(!out.status.success(), "verify passed without the binary");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/usr/local/bin/anonstats"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_install_sets_owners_modes_completions_and_man_page() {
    if !can_install() {
        return;
    }
    let root = install();
    let r = root.path();
    for f in INSTALLED {
        assert!(r.join(f).is_file(), "{f} was not installed");
    }
    let uid = id_in(r, "passwd", "anonstats");
    let gid = id_in(r, "group", "anonstats");
    assert_ne!(uid, 0);

    let data = r.join("var/lib/anonstats");
    let meta = std::fs::metadata(&data).expect("data dir");
    assert!(meta.is_dir());
    assert_eq!(mode(&data), 0o700);
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));

    let config = r.join("etc/anonstats/collector.toml");
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(mode(&config), 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, gid));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("data-dir = \"/var/lib/anonstats\""), "{text}");
    assert!(
        text.contains("public-url = \"https://stats.example.org\""),
        "{text}"
    );

    let unit = std::fs::read_to_string(r.join("etc/systemd/system/anonstats.service")).unwrap();
    for line in [
        "User=anonstats",
        "ExecStart=/usr/local/bin/anonstats serve --config /etc/anonstats/collector.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/anonstats",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "no {line} in the unit: {unit}"
        );
    }

    for f in &INSTALLED[5..] {
        let text = std::fs::read_to_string(r.join(f)).unwrap();
        assert!(text.contains("serve"), "{f} does not mention serve");
    }

    // A second install (an upgrade) keeps the config as the operator left it.
    std::fs::write(&config, "data-dir = \"/var/lib/anonstats\"\n# mine\n").unwrap();
    let out = script(r, &["--binary", BIN]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept the existing"));
    assert!(std::fs::read_to_string(&config).unwrap().contains("# mine"));
}

#[test]
fn the_installed_binary_with_the_installed_config_serves() {
    if !can_install() {
        return;
    }
    let root = install();
    let r = root.path();
    // As the service's user, who must be able to reach the binary in the temporary root.
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = (
        id_in(r, "passwd", "anonstats"),
        id_in(r, "group", "anonstats"),
    );
    let bin = r.join("usr/local/bin/anonstats");
    let data = r.join("var/lib/anonstats");
    // The config names /var/lib/anonstats and port 9470 of the real system; the flags,
    // which win over the file, point them into the root and at a free port.
    let mut child = Command::new(&bin)
        .uid(uid)
        .gid(gid)
        .arg("serve")
        .arg("--config")
        .arg(r.join("etc/anonstats/collector.toml"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the installed anonstats");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        .expect("the installed collector did not start");
    let answer = common::request("GET", &format!("{url}/healthz"), &[], None);
    // The README's way to an admin token while the service runs, as its user.
    let keys = Command::new(&bin)
        .uid(uid)
        .gid(gid)
        .arg("keys")
        .arg("--data-dir")
        .arg(&data)
        .arg("create-admin")
        .output()
        .unwrap();
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(status.success(), "{status}");
    assert!(
        keys.status.success(),
        "keys create-admin: {}",
        String::from_utf8_lossy(&keys.stderr)
    );
    assert!(!String::from_utf8_lossy(&keys.stdout).trim().is_empty());
    // What the service wrote is its user's.
    for entry in std::fs::read_dir(&data).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.uid(), uid);
    }
}

#[test]
fn uninstall_keeps_the_data_and_purge_removes_it() {
    if !can_install() {
        return;
    }
    let root = install();
    let r = root.path();
    let data: PathBuf = r.join("var/lib/anonstats");
    std::fs::write(data.join("events.db"), "kept").unwrap();

    let out = script(r, &["--uninstall"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("its data stays in /var/lib/anonstats"),
        "{said}"
    );
    for f in INSTALLED {
        assert!(!r.join(f).exists(), "{f} is still there");
    }
    assert!(!r.join("etc/anonstats").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("events.db")).unwrap(),
        "kept"
    );
    id_in(r, "passwd", "anonstats");

    let out = script(r, &["--uninstall", "--purge"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("its data"));
    assert!(!data.exists(), "purge left the data");
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(!passwd.contains("anonstats"), "{passwd}");
}

/// Every system call in `group` (`@system-service`), its nested groups expanded.
fn syscall_group(group: &str, into: &mut std::collections::BTreeSet<String>) {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .expect("systemd-analyze syscall-filter");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in text.lines().skip(1) {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if name.starts_with('@') {
            syscall_group(name, into);
        } else {
            into.insert(name.to_string());
        }
    }
}

#[test]
fn the_collector_stays_inside_the_units_sandbox() {
    sandboxed(None);
}

#[test]
fn the_collector_on_clickhouse_stays_inside_the_units_sandbox() {
    let Some(ch) = common::clickhouse::env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    // By name, so that resolving it is part of the trace.
    let port = ch.rsplit(':').next().unwrap().trim_end_matches('/');
    let db = common::clickhouse::unique_db("sandbox");
    sandboxed(Some(format!("clickhouse://localhost:{port}/{db}")));
    common::clickhouse::ch(&ch, &format!("DROP DATABASE IF EXISTS {db}"));
}

/// The installed collector under strace, on the embedded store or on `store`.
fn sandboxed(store: Option<String>) {
    // The unit cannot be started here (no systemd as PID 1), so what its sandbox would
    // stop is checked on the installed collector under strace: every system call it
    // makes is in the unit's SystemCallFilter, no memory is writable and executable
    // (MemoryDenyWriteExecute), no socket is outside RestrictAddressFamilies, and it
    // writes in the data dir only (ProtectSystem=strict, ReadWritePaths).
    if !can_install() || !require(tool_runs("strace"), "strace") {
        return;
    }
    let root = install();
    let r = root.path();
    let unit = std::fs::read_to_string(r.join("etc/systemd/system/anonstats.service")).unwrap();
    let filter = unit
        .lines()
        .find_map(|l| l.strip_prefix("SystemCallFilter="))
        .expect("a SystemCallFilter line");
    let mut allowed = std::collections::BTreeSet::new();
    syscall_group(filter, &mut allowed);
    assert!(allowed.len() > 200, "{filter}: {allowed:?}");

    let bin = r.join("usr/local/bin/anonstats");
    let data = r.join("var/lib/anonstats");
    let key = |args: &[&str]| {
        let out = Command::new(&bin)
            .arg("keys")
            .arg("--data-dir")
            .arg(&data)
            .args(store.iter().flat_map(|s| ["--store", s.as_str()]))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.trim().lines().last().unwrap().trim().to_string()
    };
    if store.is_none() {
        // Only serve and gen make a store; keys refuse a dir without one.
        let made = Command::new(&bin)
            .args(["gen", "--events", "1", "--machines", "1", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let write = key(&["create-project", "sandbox"]);
    let admin = key(&["create-admin"]);

    let trace = r.join("trace");
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(&bin)
        .arg("serve")
        .arg("--config")
        .arg(r.join("etc/anonstats/collector.toml"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .args(store.iter().flat_map(|s| ["--store", s.as_str()]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace");
    let url = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        .expect("the collector did not start under strace");
    // Capture, a commit, the dashboard's log-in and an insight, and metrics.
    let sent = common::post_json(
        &format!("{url}/batch/"),
        &serde_json::json!({"api_key": write, "batch": [{"event": "START", "distinct_id": "m1"}]}),
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    let bearer = format!("Bearer {admin}");
    for path in [
        "/healthz",
        "/api/v1/insights/trend?project=sandbox",
        "/metrics",
        "/",
    ] {
        let a = common::request(
            "GET",
            &format!("{url}{path}"),
            &[("authorization", &bearer)],
            None,
        );
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    // SIGTERM to the collector itself, strace's child; strace ends with it.
    let pid = child_of(child.id());
    // SAFETY: a signal to the collector this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    let text = std::fs::read_to_string(&trace).unwrap();
    let mut outside = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut writes_seen = 0;
    for line in text.lines() {
        let call = line
            .split_once(' ')
            .map_or("", |(_, rest)| rest.trim_start());
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || name.is_empty()
        {
            continue;
        }
        seen.insert(name.to_string());
        // execve is strace starting the collector, before any filter would apply.
        if !allowed.contains(name) && name != "execve" {
            outside.insert(name.to_string());
        }
        if matches!(name, "mmap" | "mprotect" | "pkey_mprotect")
            && args.contains("PROT_WRITE")
            && args.contains("PROT_EXEC")
        {
            panic!("writable and executable memory: {line}");
        }
        // ProtectSystem=strict: nothing but the data dir (ReadWritePaths) is writable.
        let writes = (matches!(name, "open" | "openat" | "creat")
            && ["O_WRONLY", "O_RDWR", "O_CREAT"]
                .iter()
                .any(|f| args.contains(f)))
            || name.starts_with("mkdir")
            || name.starts_with("unlink")
            || name.starts_with("rename");
        if writes {
            let path = args.split('"').nth(1).unwrap_or_default();
            assert!(
                path.starts_with(data.to_str().unwrap()) || path == "/dev/null",
                "written outside the data dir: {line}"
            );
            writes_seen += 1;
        }
        if name == "socket" {
            assert!(
                ["AF_INET,", "AF_INET6,", "AF_UNIX,"]
                    .iter()
                    .any(|f| args.starts_with(f)),
                "a socket outside RestrictAddressFamilies: {line}"
            );
        }
    }
    // The trace was read: it holds the calls that serving and committing need.
    assert!(writes_seen > 0 || store.is_some());
    let needed: &[&str] = match store {
        None => &["accept4", "epoll_wait", "pwrite64", "prlimit64"],
        Some(_) => &["accept4", "epoll_wait", "connect", "sendto"],
    };
    for call in needed {
        assert!(seen.contains(*call), "no {call} in {seen:?}");
    }
    assert!(
        outside.is_empty(),
        "system calls outside {filter}: {outside:?}"
    );
}

/// The one process whose parent is `parent`.
fn child_of(parent: u32) -> i32 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        if after.split_whitespace().nth(1) == Some(&parent.to_string()) {
            return pid;
        }
    }
    panic!("no child of {parent}");
}

/// Whether `tool -V` runs (strace).
fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}
