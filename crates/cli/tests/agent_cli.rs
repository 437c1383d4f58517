//! `status`, `show`, `opt-out`, `opt-in`, local mode and the messages for missing settings.

mod agent_common;

use agent_common::*;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn status_names_the_deciding_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc").display().to_string();
    let status = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["status", "--config-dir", &etc];
        args.extend_from_slice(extra);
        stdout(&anonstats(&args, env)).trim().to_string()
    };
    assert_eq!(status(&[], &[]), "on (no opt-out is set)");
    assert_eq!(
        status(&[("DISABLE_TELEMETRY", "0")], &[]),
        "off (DISABLE_TELEMETRY is set)"
    );
    assert_eq!(
        status(&[("DO_NOT_TRACK", "1")], &[]),
        "off (DO_NOT_TRACK is set)"
    );
    assert_eq!(
        status(&[], &["--mode", "local"]),
        "local (the host configuration says local)"
    );
    assert_eq!(
        status(&[("ANONSTATS_MODE", "off")], &[]),
        "off (the host configuration says off)"
    );

    let out = anonstats(&["opt-out", "--config-dir", &etc], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("created"));
    let file = format!("{etc}/.opt-out-from-anonymous-statistics");
    assert_eq!(
        status(&[], &[]),
        format!("off (opt-out file {file} exists)")
    );
    assert_eq!(
        status(&[("DISABLE_TELEMETRY", "1")], &[]),
        "off (DISABLE_TELEMETRY is set)"
    );

    let out = anonstats(&["opt-in", "--config-dir", &etc], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("removed"));
    assert_eq!(status(&[], &[]), "on (no opt-out is set)");
    let out = anonstats(&["opt-in", "--config-dir", &etc], &[("DO_NOT_TRACK", "1")]);
    assert!(stdout(&out).contains("nothing to remove"));
    assert!(stderr(&out).contains("DO_NOT_TRACK"), "{}", stderr(&out));
}

#[test]
fn show_prints_what_send_sends_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = Recorder::start();
    let mut args = send_args("FATAL", &rec.url, dir.path());
    args[0] = "show".into();
    args.insert(2, "daemon:worker".into());
    args.insert(3, "0042@src/main.c:main/2".into());
    let out = anonstats(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("show prints JSON");
    assert_eq!(body["api_key"], "test-token");
    let p = &body["batch"][0]["properties"];
    assert_eq!(p["$ip"], "127.0.0.1");
    assert_eq!(p["fatal_process"], "daemon");
    assert_eq!(p["fatal_thread"], "worker");
    assert_eq!(p["fatal_function"], "main");
    assert_eq!(p["fatal_line"], 42);
    assert_eq!(p["product_name"], "agent-test");
    assert!(rec.events().is_empty());
    assert!(!dir.path().join("state").exists(), "show writes nothing");

    // The same property names as a real send.
    args[0] = "send".into();
    args.insert(1, "--wait".into());
    let out = anonstats(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = &rec.events()[0]["properties"];
    let keys = |v: &serde_json::Value| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(sent), keys(p));
}

#[test]
fn local_mode_logs_instead_of_sending() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = Recorder::start();
    let mut args = send_args("START", &rec.url, dir.path());
    args.extend(["--mode".into(), "local".into()]);
    let out = anonstats(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(dir.path().join("state/agent-test/local-events.ndjson"))
        .expect("log");
    let event: serde_json::Value = serde_json::from_str(log.trim()).expect("json line");
    assert_eq!(event["event"], "START");
    assert!(rec.events().is_empty());
}

#[test]
fn missing_settings_say_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state").display().to_string();
    let etc = dir.path().join("etc").display().to_string();
    let base = ["send", "START", "--config-dir", &etc, "--state-dir", &state];
    let out = anonstats(&base, &[]);
    assert!(!out.status.success());
    // The CLI's flags, variables and file, not the library's calls.
    assert_eq!(
        stderr(&out),
        format!(
            "anonstats: no product name: pass --product-name NAME (and --product-version \
             VERSION), set ANONSTATS_PRODUCT_NAME, or set product-name in {etc}/anonstats.toml\n"
        )
    );
    let mut args = base.to_vec();
    args.extend(["--product-name", "p"]);
    let out = anonstats(&args, &[]);
    assert_eq!(
        stderr(&out),
        format!(
            "anonstats: no endpoint: pass --endpoint URL, set ANONSTATS_ENDPOINT, or set \
             endpoint in {etc}/anonstats.toml; or opt out (`anonstats opt-out`) if statistics \
             are not wanted\n"
        )
    );
    let mut with_endpoint = args.clone();
    with_endpoint.extend(["--endpoint", "http://127.0.0.1:9"]);
    let out = anonstats(&with_endpoint, &[]);
    assert_eq!(
        stderr(&out),
        format!(
            "anonstats: no project write token: pass --token TOKEN, set ANONSTATS_TOKEN, or set \
             token in {etc}/anonstats.toml; `anonstats keys create-project NAME` on the \
             collector prints one\n"
        )
    );
    // `show` sends nothing, so it needs neither: it shows the event.
    let mut show = args.clone();
    show[0] = "show";
    let out = anonstats(&show, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("show prints JSON");
    assert_eq!(body["batch"][0]["event"], "START");
    assert_eq!(body["batch"][0]["properties"]["product_name"], "p");
    assert!(
        stderr(&out).contains(&format!(
            "note: without an endpoint and a write token `send` cannot send this (--endpoint, \
             --token, or endpoint and token in {etc}/anonstats.toml)"
        )),
        "{}",
        stderr(&out)
    );
    // Without a product name even `show` cannot say what would be sent.
    let mut show = base.to_vec();
    show[0] = "show";
    let out = anonstats(&show, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--product-name NAME"),
        "{}",
        stderr(&out)
    );
    let out = anonstats(&args, &[("ANONSTATS_ENDPOINT", "stats.example.org")]);
    assert!(stderr(&out).contains("http://"), "{}", stderr(&out));
    // Opted out, nothing else is needed.
    let out = anonstats(&base, &[("DO_NOT_TRACK", "1")]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty() && out.stdout.is_empty());
}

#[test]
fn an_unusable_state_dir_names_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc").display().to_string();
    // A regular file where the state root should be: nothing can be made under it.
    let state = dir.path().join("state");
    std::fs::write(&state, "").unwrap();
    let state = state.display().to_string();
    let out = anonstats(
        &[
            "send",
            "START",
            "--wait",
            "--product-name",
            "p",
            "--endpoint",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--config-dir",
            &etc,
            "--state-dir",
            &state,
        ],
        &[],
    );
    assert!(!out.status.success());
    // The directory that failed is the product's, or one under it (its endpoint's).
    let err = stderr(&out);
    let (failed, reason) = err
        .strip_prefix("anonstats: not delivered: cannot create directory ")
        .and_then(|rest| rest.split_once(": "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(failed.starts_with(&format!("{state}/p")), "{err}");
    assert_eq!(
        reason,
        format!(
            "Not a directory (os error 20); check that the directory exists and this user may \
             write it, or give another with --state-dir DIR (or state-dir in {etc}/anonstats.toml)\n"
        )
    );
}
