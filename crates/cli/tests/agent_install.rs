//! install.sh into a temporary prefix, with and without --disable-telemetry.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_anonstats");

fn install(prefix: &Path, etc: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../install.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(["--binary", BIN, "--prefix"])
        .arg(prefix)
        .arg("--config-dir")
        .arg(etc)
        .args(extra)
        .env_remove("DISABLE_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .envs(env.iter().copied());
    cmd.output().expect("run install.sh")
}

fn status(prefix: &Path, etc: &Path) -> String {
    let out = Command::new(prefix.join("bin/anonstats"))
        .arg("status")
        .arg("--config-dir")
        .arg(etc)
        .env_remove("DISABLE_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .output()
        .expect("run installed anonstats");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn installs_and_disables_telemetry_on_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (prefix, etc) = (dir.path().join("prefix"), dir.path().join("etc"));
    let out = install(&prefix, &etc, &["--disable-telemetry"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(etc.join(".opt-out-from-anonymous-statistics").exists());
    assert!(status(&prefix, &etc).starts_with("off (opt-out file"));

    let dir = tempfile::tempdir().expect("temp dir");
    let (prefix, etc) = (dir.path().join("prefix"), dir.path().join("etc"));
    let out = install(&prefix, &etc, &[], &[("DISABLE_TELEMETRY", "1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(etc.join(".opt-out-from-anonymous-statistics").exists());
}

#[test]
fn installs_with_statistics_on_and_explains_opting_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (prefix, etc) = (dir.path().join("prefix"), dir.path().join("etc"));
    let out = install(&prefix, &etc, &[], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("opt-out"), "{text}");
    assert!(!etc.exists(), "nothing is written to the config dir");
    assert_eq!(status(&prefix, &etc), "on (no opt-out is set)");
}

#[test]
fn bad_options_say_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = install(dir.path(), dir.path(), &["--frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--help"));
}

/// What the installer configures is what the installed agent reads, with no flags:
/// the opt-out file in the chosen config dir, and anonstats.toml there for the rest.
#[test]
fn what_the_installer_configures_is_what_the_installed_agent_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (prefix, etc) = (dir.path().join("prefix"), dir.path().join("my etc"));
    let out = install(&prefix, &etc, &["--disable-telemetry"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = |prefix: &Path, args: &[&str]| {
        Command::new(prefix.join("bin/anonstats"))
            .args(args)
            .env_remove("DISABLE_TELEMETRY")
            .env_remove("DO_NOT_TRACK")
            .env_remove("ANONSTATS_CONFIG_DIR")
            .env("ANONSTATS_STATE_DIR", dir.path().join("state"))
            .output()
            .expect("run installed anonstats")
    };
    let status = String::from_utf8_lossy(&installed(&prefix, &["status"]).stdout).to_string();
    let want = format!(
        "off (opt-out file {}",
        etc.join(".opt-out-from-anonymous-statistics").display()
    );
    assert!(status.starts_with(&want), "{status}");

    let c = common::Collector::start();
    let prefix = dir.path().join("prefix2");
    let etc = dir.path().join("etc2");
    let out = install(
        &prefix,
        &etc,
        &[
            "--endpoint",
            &c.url,
            "--token",
            &c.write_token,
            "--product-name",
            "mydaemon",
            "--product-version",
            "2.1",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("anonstats.toml"), "{said}");
    assert!(said.contains("opt-out --config-dir"), "{said}");
    assert!(said.contains("--product mydaemon"), "{said}");
    let show = installed(&prefix, &["show", "START"]);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show prints JSON");
    assert_eq!(body["api_key"], c.write_token.as_str());
    assert_eq!(body["batch"][0]["properties"]["product_name"], "mydaemon");
    let send = installed(&prefix, &["send", "START", "--wait"]);
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let stored = c.export();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["properties"]["product_version"], "2.1");
    // The user's mode in the file is obeyed by the installed agent.
    std::fs::write(etc.join("anonstats.toml"), "mode = \"off\"\n").unwrap();
    let status = String::from_utf8_lossy(&installed(&prefix, &["status"]).stdout).to_string();
    assert!(status.starts_with("off ("), "{status}");
    assert!(
        status.contains("anonstats.toml says mode = \"off\""),
        "{status}"
    );
}
