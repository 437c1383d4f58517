//! Two products on one host, through the real `anonstats` binary and real collectors:
//! each has its own machine id and spool, an event spooled for one endpoint and token is
//! only ever delivered there, a product's opt-out stops that product and the machine's
//! stops them all; a state root one product used alone before keeps its machine id.

mod agent_common;
mod common;

use agent_common::{anonstats, strs};
use common::Collector;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// One product's agent on a host whose directories are under `host`: the machine's
/// directory `host/etc` (also the default configuration directory) and the state root
/// `host/state`.
struct Product<'a> {
    name: &'a str,
    host: &'a Path,
    /// The product's own configuration directory, when it has one.
    config_dir: Option<PathBuf>,
}

impl Product<'_> {
    fn system_dir(&self) -> PathBuf {
        self.host.join("etc")
    }

    fn config_dir(&self) -> PathBuf {
        self.config_dir.clone().unwrap_or_else(|| self.system_dir())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "ANONSTATS_SYSTEM_DIR",
                self.system_dir().display().to_string(),
            ),
            (
                "ANONSTATS_CONFIG_DIR",
                self.config_dir().display().to_string(),
            ),
            (
                "ANONSTATS_STATE_DIR",
                self.host.join("state").display().to_string(),
            ),
        ]
    }

    fn run(&self, args: &[&str]) -> Output {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        anonstats(args, &env)
    }

    /// `send ACTION... --wait` to `url` under `token`.
    fn send(&self, action: &[&str], url: &str, token: &str) -> Output {
        let mut args = self.args("send", action, url, token);
        args.push("--wait".into());
        self.run(&strs(&args))
    }

    /// The `distinct_id` that `show START` prints for `url` and `token`.
    fn shown_id(&self, url: &str, token: &str) -> String {
        let out = self.run(&strs(&self.args("show", &["START"], url, token)));
        ok(&out);
        let body: Value = serde_json::from_slice(&out.stdout).expect("show prints JSON");
        body["batch"][0]["distinct_id"]
            .as_str()
            .expect("a distinct_id")
            .to_string()
    }

    fn args(&self, command: &str, action: &[&str], url: &str, token: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![command.into()];
        args.extend(action.iter().map(|a| a.to_string()));
        for (flag, value) in [
            ("--endpoint", url),
            ("--token", token),
            ("--product-name", self.name),
            ("--product-version", "1.0.0"),
            ("--timeout", "5"),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
        args
    }

    fn state_dir(&self) -> PathBuf {
        self.host.join("state").join(self.name)
    }
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (event, product_name) of every stored event.
fn stored(c: &Collector) -> Vec<(String, String)> {
    c.export()
        .iter()
        .map(|e| {
            let name = e["properties"]["product_name"].as_str().unwrap_or("?");
            (e["event"].as_str().unwrap().to_string(), name.to_string())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn two_products_on_one_host_have_their_own_machine_id() {
    let host = tempfile::tempdir().expect("temp dir");
    let c = Collector::start();
    let (a, b) = (
        Product {
            name: "vendor-a",
            host: host.path(),
            config_dir: None,
        },
        Product {
            name: "vendor-b",
            host: host.path(),
            config_dir: None,
        },
    );
    ok(&a.send(&["START"], &c.url, &c.write_token));
    ok(&b.send(&["START"], &c.url, &c.write_token));
    let events = c.export();
    assert_eq!(events.len(), 2, "{events:?}");
    let id = |product: &str| {
        events
            .iter()
            .find(|e| e["properties"]["product_name"] == product)
            .map(|e| e["distinct_id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no event of {product}: {events:?}"))
    };
    assert_ne!(
        id("vendor-a"),
        id("vendor-b"),
        "one id would link both vendors' data"
    );
    let on_disk = |p: &Product| {
        std::fs::read_to_string(agent_common::id_dir(&p.state_dir(), &c.url).join("machine-id"))
            .expect("the product's machine id")
            .trim()
            .to_string()
    };
    assert_eq!(on_disk(&a), id("vendor-a"));
    assert_eq!(on_disk(&b), id("vendor-b"));
}

#[test]
fn a_spooled_event_only_goes_to_the_endpoint_and_token_it_was_made_for() {
    let host = tempfile::tempdir().expect("temp dir");
    let mut ca = Collector::start();
    let cb = Collector::start();
    let a = Product {
        name: "vendor-a",
        host: host.path(),
        config_dir: None,
    };
    let b = Product {
        name: "vendor-b",
        host: host.path(),
        config_dir: None,
    };
    // Vendor A's collector is down: its FATAL waits in A's spool.
    ca.stop();
    let fatal = a.send(
        &["FATAL", "a:main", "42@src/a.c:load/2"],
        &ca.url,
        &ca.write_token,
    );
    assert_eq!(fatal.status.code(), Some(1), "A's collector is down");
    // Vendor B's next send delivers B's event only.
    ok(&b.send(&["START"], &cb.url, &cb.write_token));
    assert_eq!(stored(&cb), pairs(&[("START", "vendor-b")]));
    // Neither does A itself send it to another endpoint under another token.
    ok(&a.send(&["START"], &cb.url, &cb.write_token));
    assert_eq!(
        stored(&cb),
        pairs(&[("START", "vendor-b"), ("START", "vendor-a")])
    );
    // Once A's collector is back, the FATAL goes there, under A's token.
    ca.restart_on_same_port();
    ok(&a.send(&["EXIT"], &ca.url, &ca.write_token));
    let mut at_a = stored(&ca);
    at_a.sort();
    assert_eq!(at_a, pairs(&[("EXIT", "vendor-a"), ("FATAL", "vendor-a")]));
    assert_eq!(stored(&cb).len(), 2, "nothing more reached B's collector");
    let state = common::all_bytes(&host.path().join("state"));
    for token in [&ca.write_token, &cb.write_token] {
        assert!(
            !common::contains(&state, token),
            "a token was written to the state"
        );
    }
}

/// The `distinct_id`s of the events `c` stored, by event name.
fn ids(c: &Collector) -> Vec<(String, String)> {
    c.export()
        .iter()
        .map(|e| {
            let id = e["distinct_id"].as_str().unwrap_or("?");
            (e["event"].as_str().unwrap().to_string(), id.to_string())
        })
        .collect()
}

#[test]
fn one_product_reporting_to_two_collectors_has_an_unrelated_id_at_each() {
    let host = tempfile::tempdir().expect("temp dir");
    let (c1, mut c2) = (Collector::start(), Collector::start());
    let a = Product {
        name: "vendor-a",
        host: host.path(),
        config_dir: None,
    };
    // An installation made before ids were per endpoint: one id for the product.
    let old = "5f0c2a4e-1111-4222-8333-444455556666";
    std::fs::create_dir_all(a.state_dir()).unwrap();
    std::fs::write(a.state_dir().join("machine-id"), format!("{old}\n")).unwrap();
    assert_eq!(a.shown_id(&c1.url, &c1.write_token), old);

    // START at both, then EXIT at both: two runs side by side, as a product and its fork
    // that report to two vendors would make.
    for action in ["START", "EXIT"] {
        ok(&a.send(&[action], &c1.url, &c1.write_token));
        ok(&a.send(&[action], &c2.url, &c2.write_token));
    }
    let (at1, at2) = (ids(&c1), ids(&c2));
    let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    // Neither run is reported to the other's collector as unfinished (its START's uuid
    // would link the two).
    assert_eq!(names(&at1), ["START", "EXIT"], "{at1:?}");
    assert_eq!(names(&at2), ["START", "EXIT"], "{at2:?}");
    assert!(
        at1.iter().all(|(_, id)| id == old),
        "the first endpoint keeps the id: {at1:?}"
    );
    let other = at2[0].1.clone();
    assert!(at2.iter().all(|(_, id)| *id == other), "{at2:?}");
    assert_ne!(other, old, "one id would link both collectors' data");
    assert_eq!(a.shown_id(&c1.url, &c1.write_token), old);
    assert_eq!(a.shown_id(&c2.url, &c2.write_token), other);
    let starts = |c: &Collector| -> Vec<String> {
        c.export()
            .iter()
            .filter(|e| e["event"] == "START")
            .map(|e| e["uuid"].as_str().unwrap().to_string())
            .collect()
    };
    let all2 = c2.export().iter().map(Value::to_string).collect::<String>();
    assert!(starts(&c1).iter().all(|u| !all2.contains(u.as_str())));

    // Each id stays across runs.
    ok(&a.send(&["START"], &c1.url, &c1.write_token));
    ok(&a.send(&["START"], &c2.url, &c2.write_token));
    assert!(ids(&c1).iter().all(|(_, id)| id == old), "{:?}", ids(&c1));
    assert!(
        ids(&c2).iter().all(|(_, id)| *id == other),
        "{:?}",
        ids(&c2)
    );

    // An opt-out deletes what waits for either endpoint.
    c2.stop();
    assert_eq!(
        a.send(&["EXIT"], &c2.url, &c2.write_token).status.code(),
        Some(1)
    );
    ok(&a.run(&["opt-out", "--product", "vendor-a"]));
    let spool = a.state_dir().join("spool");
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left,
        0,
        "{} holds events after the opt-out",
        spool.display()
    );
}

/// `status` for one product, or for the machine.
fn status(p: &Product, product: Option<&str>) -> String {
    let mut args = vec!["status"];
    if let Some(name) = product {
        args.extend(["--product", name]);
    }
    let out = p.run(&args);
    ok(&out);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_products_opt_out_stops_that_product_and_the_machines_stops_every_product() {
    let host = tempfile::tempdir().expect("temp dir");
    let c = Collector::start();
    let a = Product {
        name: "vendor-a",
        host: host.path(),
        config_dir: None,
    };
    // B keeps its configuration in a directory of its own.
    let b = Product {
        name: "vendor-b",
        host: host.path(),
        config_dir: Some(host.path().join("etc-b")),
    };
    let out = a.run(&["opt-out", "--product", "vendor-a"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("vendor-a/.opt-out-from-anonymous-statistics"),
        "{text}"
    );
    assert!(
        text.contains("this stops the product \"vendor-a\" only"),
        "{text}"
    );
    assert!(status(&a, Some("vendor-a")).starts_with("off (opt-out file"));
    assert!(status(&a, Some("vendor-b")).starts_with("on ("));
    ok(&a.send(&["START"], &c.url, &c.write_token));
    ok(&b.send(&["START"], &c.url, &c.write_token));
    assert_eq!(stored(&c), pairs(&[("START", "vendor-b")]));
    assert!(!a.state_dir().exists(), "A, opted out, wrote nothing");

    // The machine's opt-out file stops B too, although B reads another directory.
    let out = a.run(&["opt-out"]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("this stops every product on this machine")
    );
    let b_status = status(&b, Some("vendor-b"));
    let machine = host.path().join("etc/.opt-out-from-anonymous-statistics");
    assert!(
        b_status.starts_with(&format!("off (opt-out file {}", machine.display())),
        "{b_status}"
    );
    ok(&b.send(&["EXIT"], &c.url, &c.write_token));
    assert_eq!(stored(&c).len(), 1, "nothing more arrived");
    ok(&a.run(&["opt-in"]));
    ok(&b.send(&["EXIT"], &c.url, &c.write_token));
    assert_eq!(stored(&c).len(), 2, "B sends again");

    // So does the machine's policy file, whatever B's own file says.
    std::fs::create_dir_all(b.config_dir()).unwrap();
    std::fs::write(b.config_dir().join("anonstats.toml"), "mode = \"on\"\n").unwrap();
    std::fs::write(host.path().join("etc/anonstats.toml"), "mode = \"off\"\n").unwrap();
    let b_status = status(&b, Some("vendor-b"));
    assert!(
        b_status.contains("says mode = \"off\" for every product on this machine"),
        "{b_status}"
    );
    ok(&b.send(&["EXIT"], &c.url, &c.write_token));
    assert_eq!(stored(&c).len(), 2, "nothing more arrived");
    // `local` there keeps every product local: nothing leaves.
    std::fs::write(host.path().join("etc/anonstats.toml"), "mode = \"local\"\n").unwrap();
    assert!(status(&b, Some("vendor-b")).starts_with("local ("));
    ok(&b.send(&["EXIT"], &c.url, &c.write_token));
    assert_eq!(stored(&c).len(), 2, "nothing more arrived");
    assert!(b.state_dir().join("local-events.ndjson").exists());
}

/// A spool file as versions with one state dir for everything wrote it.
fn legacy_spooled(root: &Path, n: u32, product: &str, id: &str) -> String {
    let uuid = uuid_like(n);
    let event = serde_json::json!({
        "event": "LEGACY_EVENT",
        "distinct_id": id,
        "uuid": uuid,
        "timestamp": "2024-05-01T10:00:00.000Z",
        "properties": {"product_name": product, "product_version": "0.9"},
    });
    std::fs::create_dir_all(root.join("spool")).unwrap();
    let name = format!(
        "{:020}-{uuid}.json",
        1_700_000_000_000_000_000u64 + u64::from(n)
    );
    std::fs::write(root.join("spool").join(name), event.to_string()).unwrap();
    uuid
}

fn uuid_like(n: u32) -> String {
    format!("0190f000-0000-7000-8000-{n:012}")
}

#[test]
fn an_installed_product_keeps_its_machine_id_on_upgrade() {
    let host = tempfile::tempdir().expect("temp dir");
    let c = Collector::start();
    let root = host.path().join("state");
    std::fs::create_dir_all(&root).unwrap();
    let id = "5f0c2a4e-1111-4222-8333-444455556666";
    std::fs::write(root.join("machine-id"), format!("{id}\n")).unwrap();
    let mine = legacy_spooled(&root, 1, "vendor-a", id);
    let theirs = legacy_spooled(&root, 2, "vendor-b", id);
    let a = Product {
        name: "vendor-a",
        host: host.path(),
        config_dir: None,
    };
    let b = Product {
        name: "vendor-b",
        host: host.path(),
        config_dir: None,
    };
    ok(&a.send(&["START"], &c.url, &c.write_token));
    let events = c.export();
    let find =
        |name: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == name).collect() };
    assert_eq!(find("START").len(), 1, "{events:?}");
    assert_eq!(find("START")[0]["distinct_id"], id, "the id is kept");
    let legacy = find("LEGACY_EVENT");
    assert_eq!(
        legacy.len(),
        1,
        "only A's own spooled event went: {events:?}"
    );
    assert_eq!(legacy[0]["uuid"], mine.as_str());
    assert!(
        !root.join("machine-id").exists(),
        "the root holds no id any more"
    );
    assert!(!root.join("spool").exists());
    assert_eq!(
        std::fs::read_to_string(agent_common::id_dir(&a.state_dir(), &c.url).join("machine-id"))
            .unwrap()
            .trim(),
        id
    );
    // B's spooled event went to B's spool, and B, which gets an id of its own, sends it.
    ok(&b.send(&["START"], &c.url, &c.write_token));
    let events = c.export();
    let b_start = events
        .iter()
        .find(|e| e["event"] == "START" && e["properties"]["product_name"] == "vendor-b")
        .expect("B's START");
    assert_ne!(b_start["distinct_id"], id);
    assert!(
        events.iter().any(|e| e["uuid"] == theirs.as_str()),
        "{events:?}"
    );
}
