//! Store commands aimed at the wrong place fail loudly: without a store in the data dir
//! they refuse with "no store at ...; pass --data-dir" and create nothing. Every one of
//! them reads serve's `--config` file, so a data dir set there is seen by all; only
//! `serve` and `gen` create a store.

mod common;

use common::BIN;
use std::path::Path;
use std::process::{Command, Output};

fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("ANONSTATS_DATA_DIR")
        .env_remove("ANONSTATS_CONFIG")
        .env_remove("ANONSTATS_STORE")
        .output()
        .expect("run anonstats")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every command that reads or changes a store, with what it needs besides.
const COMMANDS: &[&[&str]] = &[
    &["keys", "list"],
    &["keys", "create-project", "p"],
    &["keys", "create-write-key", "default"],
    &["keys", "create-admin"],
    &["keys", "create-viewer"],
    &["keys", "revoke", "aw_x"],
    &["keys", "allowlist", "show", "default"],
    &["keys", "allowlist", "add", "default", "product_version"],
    &["export", "--format", "ndjson"],
    &["sql", "SELECT 1"],
    &["erase", "--machine", "m-1"],
    &["backup", "--to", "copy.db"],
];

#[test]
fn store_commands_in_a_dir_without_a_store_refuse_and_create_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    for args in COMMANDS {
        let out = run_in(cwd.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} exited 0: {err}");
        assert!(
            err.contains("no store at ./anonstats-data; pass --data-dir"),
            "{args:?}: {err}"
        );
        assert!(
            entries(cwd.path()).is_empty(),
            "{args:?} created {:?}",
            entries(cwd.path())
        );
    }
    // A mistyped --data-dir is named.
    let out = run_in(
        cwd.path(),
        &["keys", "list", "--data-dir", "/srv/anonstat-data"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at /srv/anonstat-data;"));
    assert!(!Path::new("/srv/anonstat-data").exists());
    // migrate names the directory it was given.
    let out = run_in(
        cwd.path(),
        &[
            "migrate",
            "--from",
            "nowhere",
            "--to",
            "clickhouse://127.0.0.1:1/x",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at nowhere"));
    assert!(entries(cwd.path()).is_empty());
}

#[test]
fn every_store_command_reads_the_data_dir_from_serves_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let config = dir.path().join("anonstats.toml");
    // serve's settings that other commands do not have (listen, retention) are ignored
    // by them, not refused.
    std::fs::write(
        &config,
        format!(
            "data-dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nretention-days = 400\n",
            data.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();

    // gen may create a store: it is a first use as serve is.
    let out = run_in(
        cwd.path(),
        &[
            "gen",
            "--config",
            cfg,
            "--events",
            "50",
            "--machines",
            "5",
            "--end",
            "2024-05-01",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        data.join("anonstats.db").is_file(),
        "gen wrote into the config's data dir"
    );

    let ok = |args: &[&str]| {
        let out = run_in(cwd.path(), args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(ok(&["keys", "--config", cfg, "list"]).contains("default"));
    assert!(
        ok(&["keys", "list", "--config", cfg]).contains("default"),
        "after the subcommand too"
    );
    assert_eq!(
        ok(&["export", "--config", cfg, "--format", "ndjson"])
            .lines()
            .count(),
        50
    );
    assert!(
        ok(&[
            "sql",
            "--config",
            cfg,
            "SELECT count(*) AS n FROM events",
            "--format",
            "csv"
        ])
        .contains("50")
    );
    assert!(ok(&["erase", "--config", cfg, "--machine", "nobody"]).contains("removed 0 events"));
    ok(&["backup", "--config", cfg, "--to", "copy.db"]);
    assert!(cwd.path().join("copy.db").is_file());
    assert_eq!(
        entries(cwd.path()),
        ["copy.db"],
        "nothing else was made here"
    );

    // A flag wins over the file, and the environment does too.
    let out = run_in(
        cwd.path(),
        &["keys", "--config", cfg, "--data-dir", "elsewhere", "list"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at elsewhere"));
    let out = Command::new(BIN)
        .args(["export", "--config", cfg])
        .current_dir(cwd.path())
        .env("ANONSTATS_DATA_DIR", "from-env")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at from-env"));

    // A setting serve does not know is refused, as serve refuses it.
    std::fs::write(&config, "data-dri = \"x\"\n").unwrap();
    let out = run_in(cwd.path(), &["keys", "--config", cfg, "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting `data-dri`"));
}

#[test]
fn help_says_which_commands_create_a_store() {
    let out = run_in(Path::new("."), &["gen", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("gen and serve are the only commands that create a store"),
        "{help}"
    );
    let out = run_in(Path::new("."), &["keys", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("it must hold a store"), "{help}");
}

/// migrate takes serve's ClickHouse settings from the file (its source and target stay
/// flags): a user set there is the one it connects as.
#[test]
fn migrate_reads_the_clickhouse_settings_from_serves_config_file() {
    let Some(url) = common::clickhouse::env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let out = run_in(
        dir.path(),
        &[
            "gen",
            "--data-dir",
            data.to_str().unwrap(),
            "--events",
            "10",
            "--machines",
            "2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("anonstats.toml");
    std::fs::write(
        &config,
        "clickhouse-user = \"no_such_user_here\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let to = format!(
        "{}/{}",
        url.replacen("http://", "clickhouse://", 1),
        common::clickhouse::unique_db("cfg")
    );
    let out = run_in(
        dir.path(),
        &[
            "migrate",
            "--config",
            config.to_str().unwrap(),
            "--from",
            data.to_str().unwrap(),
            "--to",
            &to,
            "--quiet",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "migrated as an unknown user");
    assert!(err.contains("no_such_user_here"), "{err}");
}
