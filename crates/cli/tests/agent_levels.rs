//! Levels (`--mode all|crashes|local|off`) and CI runs (`is_ci`), through the CLI and the
//! library against the real collector (`anonstats serve`), read back with `export`.

mod agent_common;
mod common;

use anonstats_client::{Client, Mode, Outcome};
use common::Collector;
use serde_json::{Map, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// `anonstats ARGS` with no consent, level or CI variable from the test's own
/// environment (the suite itself runs with `CI` set), then `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(agent_common::BIN);
    cmd.args(args);
    let ci = anonstats_client::ci::VARIABLES.iter();
    for var in ci.chain(anonstats_client::ci::TOGETHER).chain([
        &anonstats_client::ci::OVERRIDE,
        &"DISABLE_TELEMETRY",
        &"DO_NOT_TRACK",
        &"ANONSTATS_MODE",
        &"ANONSTATS_ENDPOINT",
        &"ANONSTATS_TOKEN",
        &"ANONSTATS_CONFIG_DIR",
        &"ANONSTATS_STATE_DIR",
    ]) {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run anonstats")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `send ACTION [ARGS] --wait` for `product` at `url`, with `extra` flags.
fn send(
    url: &str,
    token: &str,
    dir: &Path,
    product: &str,
    action: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let (etc, state) = (dir.join("etc"), dir.join("state"));
    let mut args = vec!["send"];
    args.extend_from_slice(action);
    args.extend_from_slice(&["--wait", "--endpoint", url, "--token", token]);
    args.extend_from_slice(&["--product-name", product, "--product-version", "1.0.0"]);
    let (etc, state) = (etc.display().to_string(), state.display().to_string());
    args.extend_from_slice(&["--config-dir", &etc, "--system-dir", &etc]);
    args.extend_from_slice(&["--state-dir", &state]);
    args.extend_from_slice(extra);
    run(&args, env)
}

/// The names of the stored events of `product`, sorted.
fn names_of(events: &[Value], product: &str) -> Vec<String> {
    let mut names: Vec<String> = events
        .iter()
        .filter(|e| e["properties"]["product_name"] == product)
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

const FATAL: &[&str] = &["FATAL", "levels:main", "7@src/main.c:load/0"];

#[test]
fn the_cli_sends_at_each_level_what_the_level_allows() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let levels = ["all", "on", "crashes", "local", "off"];
    for level in levels {
        let product = format!("levels-{level}");
        let mode = ["--mode", level];
        for action in [
            &["START"][..],
            &["CONFIGURED"],
            FATAL,
            &["START"],
            &["EXIT"],
        ] {
            let out = send(
                &c.url,
                &c.write_token,
                dir.path(),
                &product,
                action,
                &mode,
                &[],
            );
            // Withheld is not a failure, and says nothing, as an opt-out does.
            assert!(
                out.status.success(),
                "{level} {action:?}: {}",
                text(&out.stderr)
            );
            assert_eq!(text(&out.stderr), "", "{level} {action:?}");
        }
    }
    // A START after a run that ended without EXIT or FATAL reports it under crashes too.
    let unfinished = ["--mode", "crashes"];
    for _ in 0..2 {
        let p = "levels-crashes-unfinished";
        let out = send(
            &c.url,
            &c.write_token,
            dir.path(),
            p,
            &["START"],
            &unfinished,
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // Every send waited for its delivery: what is not stored now was never sent.
    let events = c.export();
    assert_eq!(
        names_of(&events, "levels-all"),
        ["CONFIGURED", "EXIT", "FATAL", "START", "START"]
    );
    assert_eq!(
        names_of(&events, "levels-on"),
        names_of(&events, "levels-all")
    );
    assert_eq!(names_of(&events, "levels-crashes"), ["FATAL"]);
    assert_eq!(
        names_of(&events, "levels-crashes-unfinished"),
        ["INCOMPLETE_SHUTDOWN"]
    );
    assert!(names_of(&events, "levels-local").is_empty());
    assert!(names_of(&events, "levels-off").is_empty());
    // Local still keeps its log; off keeps nothing.
    let log = anonstats_client::local_log::path(&dir.path().join("state/levels-local"));
    assert!(log.exists(), "{}", log.display());
    assert!(!dir.path().join("state/levels-off/spool").exists());
}

#[test]
fn under_crashes_what_was_spooled_under_all_does_not_leave() {
    let mut c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let (url, token) = (c.url.clone(), c.write_token.clone());
    c.kill();
    let p = "levels-spooled";
    let out = send(
        &url,
        &token,
        dir.path(),
        p,
        &["CONFIGURED"],
        &["--mode", "all"],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "not delivered: {}",
        text(&out.stderr)
    );
    c.restart_on_same_port();
    let out = send(
        &url,
        &token,
        dir.path(),
        p,
        FATAL,
        &["--mode", "crashes"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(names_of(&c.export(), p), ["FATAL"]);
    // Nor does it wait for a later level to send it.
    let out = send(
        &url,
        &token,
        dir.path(),
        p,
        &["EXIT"],
        &["--mode", "all"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(names_of(&c.export(), p), ["EXIT", "FATAL"]);
}

#[test]
fn the_config_files_crashes_and_the_opt_outs_over_it() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("anonstats.toml"), "mode = \"crashes\"\n").unwrap();
    let p = "levels-file";
    // The user's file wins over the host's all.
    for action in [&["START"][..], FATAL] {
        let out = send(
            &c.url,
            &c.write_token,
            dir.path(),
            p,
            action,
            &["--mode", "all"],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(names_of(&c.export(), p), ["FATAL"]);
    // Each opt-out still stops the crash reports.
    for env in [&[("DO_NOT_TRACK", "1")][..], &[("DISABLE_TELEMETRY", "1")]] {
        let out = send(&c.url, &c.write_token, dir.path(), p, FATAL, &[], env);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    std::fs::write(etc.join(".opt-out-from-anonymous-statistics"), "").unwrap();
    let out = send(&c.url, &c.write_token, dir.path(), p, FATAL, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(names_of(&c.export(), p), ["FATAL"]);
}

#[test]
fn status_and_show_name_the_level() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let etc_s = etc.display().to_string();
    let status = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["status", "--config-dir", &etc_s, "--system-dir", &etc_s];
        args.extend_from_slice(extra);
        text(&run(&args, env).stdout).trim().to_string()
    };
    assert_eq!(
        status(&[], &["--mode", "crashes"]),
        "crashes (the host configuration says crashes)"
    );
    assert_eq!(
        status(&[("ANONSTATS_MODE", "crashes")], &[]),
        "crashes (the host configuration says crashes)"
    );
    // `all` is `on`, named as before.
    assert_eq!(
        status(&[("ANONSTATS_MODE", "all")], &[]),
        "on (the host configuration says on)"
    );
    assert_eq!(
        status(&[("DO_NOT_TRACK", "1")], &["--mode", "crashes"]),
        "off (DO_NOT_TRACK is set)"
    );
    std::fs::create_dir_all(&etc).unwrap();
    let file = etc.join("anonstats.toml");
    std::fs::write(&file, "mode = \"crashes\"\n").unwrap();
    assert_eq!(
        status(&[], &["--mode", "all"]),
        format!("crashes ({} says mode = \"crashes\")", file.display())
    );
    let out = run(&["status", "--mode", "sometimes"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("use all (or on), crashes, local or off"),
        "{}",
        text(&out.stderr)
    );

    let show = |action: &[&str]| {
        let mut args = vec!["show"];
        args.extend_from_slice(action);
        args.extend_from_slice(&["--product-name", "levels-show", "--config-dir", &etc_s]);
        let state = dir.path().join("state").display().to_string();
        args.extend_from_slice(&["--system-dir", &etc_s, "--state-dir", &state]);
        run(&args, &[])
    };
    let out = show(&["START"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    let why = text(&out.stderr);
    assert!(
        why.contains("statistics are crashes (")
            && why.contains("only crash reports (FATAL, INCOMPLETE_SHUTDOWN) are sent")
            && why.contains("START would not be sent"),
        "{why}"
    );
    let out = show(FATAL);
    assert!(out.status.success());
    let body: Value = serde_json::from_slice(&out.stdout).expect("the JSON of the FATAL");
    assert_eq!(body["batch"][0]["event"], "FATAL");
}

/// A library client for `product` at the collector, at `level`, with `env` as its whole
/// environment.
fn library(
    c: &Collector,
    dir: &Path,
    product: &str,
    level: Mode,
    env: &'static [(&'static str, &'static str)],
) -> Client {
    Client::builder()
        .product(product, "2.0.0")
        .endpoint(&c.url)
        .token(&c.write_token)
        .config_dir(dir.join("etc"))
        .system_dir(dir.join("etc"))
        .state_dir(dir.join("state"))
        .env(move |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).into())
        })
        .mode(level)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn the_library_sends_at_each_level_what_the_level_allows() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    for level in [Mode::On, Mode::Crashes, Mode::Local, Mode::Off] {
        let product = format!("lib-{level}");
        let client = library(&c, dir.path(), &product, level, &[]);
        assert_eq!(client.sends(), level == Mode::On);
        let start = client.send_action("START", None, None);
        let custom = client.capture_and_wait("CONFIGURED", Map::new());
        let fatal = client.send_action(FATAL[0], Some(FATAL[1]), Some(FATAL[2]));
        match level {
            Mode::On => assert!(matches!(start, Outcome::Delivered(_)), "{start:?}"),
            Mode::Crashes => {
                assert_eq!((&start, &custom), (&Outcome::Off, &Outcome::Off));
                assert!(matches!(fatal, Outcome::Delivered(_)), "{fatal:?}");
                assert!(client.preview("START", None, None).is_none());
                assert!(
                    client
                        .preview("FATAL", FATAL.get(1).copied(), None)
                        .is_some()
                );
            }
            Mode::Local => assert!(matches!(start, Outcome::Logged(_)), "{start:?}"),
            Mode::Off => assert_eq!(start, Outcome::Off),
        }
    }
    // A run of the crashes client that ended without EXIT: the next START reports it.
    let again = library(&c, dir.path(), "lib-crashes", Mode::Crashes, &[]);
    let reported = again.send_action("START", None, None);
    let events = c.export();
    assert_eq!(
        names_of(&events, "lib-on"),
        ["CONFIGURED", "FATAL", "START"]
    );
    // The FATAL closed the run: no INCOMPLETE_SHUTDOWN, and the START is not sent.
    assert_eq!(reported, Outcome::Off);
    assert_eq!(names_of(&events, "lib-crashes"), ["FATAL"]);
    let _ = again.send_action("START", None, None);
    let events = c.export();
    assert_eq!(
        names_of(&events, "lib-crashes"),
        ["FATAL", "INCOMPLETE_SHUTDOWN"]
    );
    assert!(names_of(&events, "lib-local").is_empty());
    assert!(names_of(&events, "lib-off").is_empty());
}

type Case = (&'static str, &'static [(&'static str, &'static str)], bool);

#[test]
fn events_of_a_ci_run_carry_is_ci() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    // Product, its environment, and whether it is a CI run.
    let cases: [Case; 5] = [
        ("ci-none", &[], false),
        ("ci-github", &[("GITHUB_ACTIONS", "true")], true),
        ("ci-generic", &[("CI", "1")], true),
        (
            "ci-overridden",
            &[("CI", "1"), ("ANONSTATS_IS_CI", "0")],
            false,
        ),
        (
            "ci-said-false",
            &[("CI", "false"), ("GITLAB_CI", "true")],
            false,
        ),
    ];
    for (product, env, _) in cases {
        let out = send(
            &c.url,
            &c.write_token,
            dir.path(),
            product,
            &["START"],
            &[],
            env,
        );
        assert!(out.status.success(), "{product}: {}", text(&out.stderr));
    }
    let client = library(
        &c,
        dir.path(),
        "ci-library",
        Mode::On,
        &[("BUILDKITE", "true")],
    );
    assert!(matches!(
        client.capture_and_wait("CONFIGURED", Map::new()),
        Outcome::Delivered(_)
    ));
    let events = c.export();
    let is_ci = |product: &str| {
        let e = events
            .iter()
            .find(|e| e["properties"]["product_name"] == product)
            .unwrap_or_else(|| panic!("no event of {product}: {events:?}"));
        e["properties"].get("is_ci").cloned()
    };
    for (product, _, ci) in cases {
        let expected = ci.then_some(Value::Bool(true));
        assert_eq!(is_ci(product), expected, "{product}");
    }
    assert_eq!(is_ci("ci-library"), Some(Value::Bool(true)));
}
