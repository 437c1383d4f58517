//! install.sh into a temporary prefix, with and without --disable-telemetry.

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
