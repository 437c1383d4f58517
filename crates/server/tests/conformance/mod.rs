//! One conformance suite for every store: the same events in, the same answers out.
//! [`conformance`] writes a transcript of every answer; the stores must produce equal
//! transcripts, and the embedded store's is also checked against known numbers.
#![allow(dead_code)]

use anonstats_server::insights::floor::{Answer, KFloor};
use anonstats_server::insights::{self, InsightStore, Interval, Scope, SqlLimits};
use anonstats_server::rollup::dims;
use anonstats_server::store::{
    EventStore, ExportQuery, KeyStore, LastAdmin, NewEvent, NewSecret, PrivacyMode, Role,
};

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

/// 2024-02-26 00:00 UTC, a Monday.
pub const T0: i64 = 1_708_905_600_000;
pub const DAY: i64 = 86_400_000;
pub const HOUR: i64 = 3_600_000;

/// A store under test.
pub struct Backend {
    pub events: Arc<dyn EventStore>,
    pub keys: Arc<dyn KeyStore>,
    pub insights: Arc<dyn InsightStore>,
    /// Run after every write (the embedded store compacts its rollups here in one run).
    pub after_write: Option<Box<dyn Fn()>>,
}

impl Backend {
    fn written(&self) {
        if let Some(f) = &self.after_write {
            f();
        }
    }
}

/// Answers in order, each labelled.
#[derive(Default, Debug)]
pub struct Transcript(pub Vec<(String, String)>);

impl Transcript {
    fn add(&mut self, label: impl Into<String>, value: impl std::fmt::Debug) {
        self.0.push((label.into(), format!("{value:#?}")));
    }
    pub fn get(&self, label: &str) -> &str {
        self.0
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no answer labelled {label}"))
    }
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

pub fn event(project: i64, n: u128, name: &str, machine: &str, ts: i64, props: Value) -> NewEvent {
    let map = props.as_object().cloned().unwrap_or_default();
    NewEvent {
        project_id: project,
        uuid: uuid(n),
        event: name.to_string(),
        distinct_id: machine.to_string(),
        timestamp_ms: ts,
        received_ms: ts + 1,
        dims: dims(name, &map),
        properties: Value::Object(map).to_string(),
    }
}

/// The conformance data: 40 machines over 8 days in two projects; versions spread so
/// that some values are seen on fewer than k=5 machines; crashes at three sites; cloud
/// failures with error codes; numbers, booleans, long strings and objects as properties.
pub fn batches() -> Vec<Vec<NewEvent>> {
    let versions = ["1.0", "1.1", "1.2", "2.0-beta"];
    let oses = ["debian", "ubuntu", "fedora"];
    let mut n = 0u128;
    let mut out = Vec::new();
    for day in 0..8i64 {
        let mut batch = Vec::new();
        for m in 0..40i64 {
            if (m + day) % 3 == 0 && m > 30 {
                continue;
            }
            let machine = format!("m-{m}");
            // 2.0-beta runs on 3 machines only: below the k-floor.
            let version = if m < 3 {
                versions[3]
            } else {
                versions[(m % 3) as usize]
            };
            let ts = T0 + day * DAY + (m % 24) * HOUR + m * 1000 + 7;
            // Some machines move to a newer kernel halfway.
            let kernel = if m % 5 == 3 && day >= 4 {
                "6.8.0".to_string()
            } else {
                format!("6.1.0-{}", m % 7)
            };
            let base = json!({
                "product_version": version,
                "host_os_name": oses[(m % 3) as usize],
                "system_kernel_version": kernel,
                "system_cpu_logical_cpu_count": (m % 4) * 2 + 2,
                "host_is_k8s_node": m % 5 == 0,
                "long": "x".repeat(if m == 7 { 300 } else { 10 }),
                "screen": {"w": 1920},
                "action_data": format!("per-event-{n}"),
            });
            n += 1;
            batch.push(event(1, n, "START", &machine, ts, base.clone()));
            if m % 4 == 1 {
                n += 1;
                let mut p = base.clone();
                p["fatal_function"] = json!(if m % 8 == 1 { "main" } else { "read_config" });
                p["fatal_file"] = json!("src/main.c");
                p["fatal_line"] = json!(if m % 8 == 1 { 42 } else { 7 });
                batch.push(event(1, n, "FATAL", &machine, ts + 60_000, p));
            }
            if m % 6 == 2 {
                n += 1;
                let mut p = base.clone();
                p["error_code"] = json!(if day % 2 == 0 {
                    "ECONNREFUSED"
                } else {
                    "ETIMEDOUT"
                });
                batch.push(event(1, n, "CLOUD_CONNECT_FAIL", &machine, ts + 120_000, p));
            }
            if m % 2 == 0 {
                n += 1;
                batch.push(event(1, n, "EXIT", &machine, ts + 3_600_000, base));
            }
        }
        // A second project, to be kept apart.
        for m in 0..5i64 {
            n += 1;
            batch.push(event(
                2,
                n,
                "START",
                &format!("other-{m}"),
                T0 + day * DAY + m * HOUR,
                json!({"product_version": "9.9"}),
            ));
        }
        out.push(batch);
    }
    // Resends: the first event again with a later time and other properties (the first
    // copy is kept), and a uuid twice in one request.
    let mut again = event(
        1,
        1,
        "START",
        "m-0",
        T0 + 3 * HOUR,
        json!({"product_version": "resent"}),
    );
    again.received_ms += 1000;
    let dup = event(
        1,
        100_000,
        "START",
        "m-1",
        T0 + 2 * DAY + 5 * HOUR,
        json!({"product_version": "1.1"}),
    );
    out.push(vec![again, dup.clone(), dup]);
    out
}

fn scope(project: i64, from: i64, to: i64) -> Scope {
    Scope {
        project_id: project,
        from_ms: from,
        to_ms: to,
        events: vec![],
        filters: vec![],
        include_ci: false,
    }
}

const K: u64 = 5;

fn questions(t: &mut Transcript, b: &Backend, tag: &str, from: i64, to: i64) {
    let all = scope(1, from, to);
    let starts = Scope {
        events: vec!["START".into()],
        ..all.clone()
    };
    let exits_fatal = Scope {
        events: vec!["EXIT".into(), "FATAL".into()],
        ..all.clone()
    };
    let v11 = Scope {
        filters: vec![("product_version".into(), "1.1".into())],
        ..all.clone()
    };
    let two = Scope {
        filters: vec![
            ("product_version".into(), "1.1".into()),
            ("host_os_name".into(), "ubuntu".into()),
        ],
        ..all.clone()
    };
    let kernel = Scope {
        filters: vec![("system_kernel_version".into(), "6.8.0".into())],
        ..all.clone()
    };
    let kernel_and_version = Scope {
        filters: vec![
            ("system_kernel_version".into(), "6.1.0-3".into()),
            ("product_version".into(), "1.1".into()),
        ],
        ..all.clone()
    };
    let num = Scope {
        filters: vec![("system_cpu_logical_cpu_count".into(), "4".into())],
        ..starts.clone()
    };
    let ins = &b.insights;
    for (name, s) in [
        ("all", &all),
        ("starts", &starts),
        ("exits_fatal", &exits_fatal),
        ("v11", &v11),
        ("two", &two),
        ("kernel", &kernel),
        ("kernel_and_version", &kernel_and_version),
        ("num", &num),
    ] {
        for iv in [
            Interval::Hour,
            Interval::Day,
            Interval::Week,
            Interval::Month,
        ] {
            t.add(
                format!("{tag} trend {name} {iv:?}"),
                ins.trend(s, iv).map(|r| r.0),
            );
            t.add(
                format!("{tag} active {name} {iv:?}"),
                ins.active(s, iv).map(|r| r.0),
            );
        }
        for over in [
            None,
            Some(Interval::Hour),
            Some(Interval::Day),
            Some(Interval::Week),
            Some(Interval::Month),
        ] {
            for prop in [
                "product_version",
                "host_os_name",
                "system_kernel_version",
                "host_is_k8s_node",
                "long",
                "screen",
            ] {
                let got = ins.breakdown(s, prop, over).map(|r| {
                    let mut g = r.0;
                    g.sort_by(|a, b| (a.bucket_ms, &a.value).cmp(&(b.bucket_ms, &b.value)));
                    g
                });
                if over.is_none() {
                    let folded = got.as_ref().map(|g| insights::fold(g.clone(), K, 10));
                    t.add(format!("{tag} k-floor {name} {prop}"), folded.ok());
                }
                t.add(format!("{tag} breakdown {name} {prop} {over:?}"), got);
            }
        }
        let sites = ins.crash_sites(s).map(|mut c| {
            c.sort_by(|a, b| (&a.function, &a.line).cmp(&(&b.function, &b.line)));
            c
        });
        t.add(
            format!("{tag} crashes k-floor {name}"),
            sites
                .as_ref()
                .map(|c| insights::fold_crashes(c.clone(), K, 10))
                .ok(),
        );
        t.add(format!("{tag} crashes {name}"), sites);
    }
    floor_questions(t, b, tag, &all);
    t.add(format!("{tag} properties"), ins.properties(&all, K));
    t.add(
        format!("{tag} properties starts"),
        ins.properties(&starts, K),
    );
    t.add(format!("{tag} recent 1"), ins.recent(1, 7));
    t.add(format!("{tag} recent 2"), ins.recent(2, 3));
    t.add(
        format!("{tag} other project"),
        ins.trend(&scope(2, from, to), Interval::Day).map(|r| r.0),
    );
    for (name, q) in [
        ("all", ExportQuery::default()),
        (
            "project 2",
            ExportQuery {
                project_id: Some(2),
                ..Default::default()
            },
        ),
        (
            "range",
            ExportQuery {
                project_id: Some(1),
                from_ms: Some(T0 + DAY + 5 * HOUR),
                to_ms: Some(T0 + 3 * DAY),
            },
        ),
    ] {
        let mut rows = Vec::new();
        let n = b.events.export(&q, &mut |e| {
            rows.push(e);
            Ok(())
        });
        t.add(format!("{tag} export {name} count"), n);
        t.add(format!("{tag} export {name}"), rows);
    }
}

/// The k floor's answers: what a filter on few machines, a pair of filters whose
/// difference is one machine, and a crash site's versions come to.
fn floor_questions(t: &mut Transcript, b: &Backend, tag: &str, all: &Scope) {
    let floor = KFloor::new(b.insights.clone(), K);
    let with = |filters: &[(&str, &str)]| Scope {
        filters: filters
            .iter()
            .map(|(p, v)| (p.to_string(), v.to_string()))
            .collect(),
        ..all.clone()
    };
    for (name, s) in [
        ("none", with(&[])),
        ("beta", with(&[("product_version", "2.0-beta")])),
        ("debian", with(&[("host_os_name", "debian")])),
        (
            "debian 1.0",
            with(&[("host_os_name", "debian"), ("product_version", "1.0")]),
        ),
        (
            "1.0 debian k8s",
            with(&[
                ("product_version", "1.0"),
                ("host_os_name", "debian"),
                ("host_is_k8s_node", "true"),
            ]),
        ),
        ("nobody", with(&[("host_os_name", "plan9")])),
        (
            "fatal",
            Scope {
                events: vec!["FATAL".into()],
                ..all.clone()
            },
        ),
    ] {
        let answer = |a: Result<Answer<Vec<(i64, u64)>>, _>| a.map(|a| (a.value, a.folded));
        t.add(
            format!("{tag} floor trend {name}"),
            answer(floor.trend(&s, Interval::Day)),
        );
        t.add(
            format!("{tag} floor active {name}"),
            answer(floor.active(&s, Interval::Week)),
        );
        for over in [None, Some(Interval::Week)] {
            t.add(
                format!("{tag} floor breakdown {name} {over:?}"),
                floor
                    .breakdown(&s, "system_kernel_version", over, 10)
                    .map(|a| {
                        let mut g = a.value.0;
                        g.sort_by(|a, b| (a.bucket_ms, &a.value).cmp(&(b.bucket_ms, &b.value)));
                        (g, a.folded)
                    }),
            );
        }
        t.add(
            format!("{tag} floor crashes {name}"),
            floor.crash_sites(&s, 10).map(|a| (a.value, a.folded)),
        );
    }
    check_floor(b, &floor, &with);
}

/// What the floor must do on every store, checked where the answers are made.
/// A scope with these property filters.
type WithFilters<'a> = &'a dyn Fn(&[(&str, &str)]) -> Scope;

fn check_floor(b: &Backend, floor: &KFloor, with: WithFilters<'_>) {
    let raw = &b.insights;
    let reason = |a: &Answer<Vec<(i64, u64)>>| a.folded.as_ref().map(|f| f.reason.clone());

    // 2.0-beta runs on 3 machines: the store answers, the floor folds and says why.
    let beta = with(&[("product_version", "2.0-beta")]);
    assert!(!raw.trend(&beta, Interval::Day).unwrap().0.is_empty());
    let a = floor.trend(&beta, Interval::Day).unwrap();
    assert!(a.value.is_empty(), "{a:?}");
    assert_eq!(
        reason(&a).as_deref(),
        Some("the filter product_version=2.0-beta matches fewer than k=5 machines in this range")
    );
    assert_eq!(a.folded.as_ref().map(|f| f.k), Some(K));

    // Differencing: every Debian machine runs 1.0 but m-0, which runs 2.0-beta, so
    // debian minus (debian and 1.0) is m-0 alone. The first is answered exactly, the
    // second is folded, so the two never subtract to one machine.
    let debian = with(&[("host_os_name", "debian")]);
    let debian_10 = with(&[("host_os_name", "debian"), ("product_version", "1.0")]);
    let split = raw.breakdown(&debian, "product_version", None).unwrap().0;
    let left_out: Vec<_> = split.iter().filter(|g| g.value != "1.0").collect();
    assert_eq!(left_out.len(), 1);
    assert_eq!(
        (left_out[0].value.as_str(), left_out[0].machines),
        ("2.0-beta", 1)
    );
    assert_ne!(
        raw.trend(&debian, Interval::Day).unwrap().0,
        raw.trend(&debian_10, Interval::Day).unwrap().0,
        "the store alone would answer both"
    );
    for (ask, name) in [
        (KFloor::trend as fn(&KFloor, &Scope, Interval) -> _, "trend"),
        (KFloor::active, "active"),
    ] {
        let whole = ask(floor, &debian, Interval::Day).unwrap();
        assert_eq!(whole.folded, None, "{name}");
        let store = if name == "trend" {
            raw.trend(&debian, Interval::Day)
        } else {
            raw.active(&debian, Interval::Day)
        };
        assert_eq!(whole.value, store.unwrap().0, "{name} is exact");
        let part = ask(floor, &debian_10, Interval::Day).unwrap();
        assert!(part.value.is_empty(), "{name}: {part:?}");
        assert_eq!(
            reason(&part).as_deref(),
            Some(
                "without the filter product_version=1.0 the answer would add events of fewer \
                 than k=5 machines, so the two answers together would single them out"
            ),
            "{name}"
        );
    }
    // A breakdown under the filter is folded likewise; under none, its values stand.
    let b10 = floor
        .breakdown(&debian_10, "system_kernel_version", None, 10)
        .unwrap();
    assert!(b10.value.0.is_empty() && b10.folded.is_some(), "{b10:?}");

    // A value no machine has singles no one out: an empty, exact answer.
    let nobody = floor
        .trend(&with(&[("host_os_name", "plan9")]), Interval::Day)
        .unwrap();
    assert_eq!((nobody.value.len(), nobody.folded), (0, None));

    // The crash site `main` is seen on 5 machines, each of its versions on fewer: the
    // store lists them, the floor folds them into "other".
    let stored = raw.crash_sites(&with(&[])).unwrap();
    let main = stored.iter().find(|c| c.function == "main").unwrap();
    assert!(main.versions.len() > 1, "{main:?}");
    let sites = floor.crash_sites(&with(&[]), 10).unwrap().value;
    let main = sites.iter().find(|c| c.function == "main").unwrap();
    assert_eq!(main.versions, [insights::OTHER], "{main:?}");
}

/// Runs the whole suite against one store and returns every answer.
pub fn conformance(b: &Backend) -> Transcript {
    let mut t = Transcript::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Keys.
    let g0 = b.keys.generation().expect("generation");
    let (p1, _w1) = b.keys.create_project("default").expect("project");
    let (p2, w2) = b.keys.create_project("second").expect("project");
    assert!(
        b.keys.create_project("default").is_err(),
        "duplicate project name"
    );
    let g1 = b.keys.generation().expect("generation");
    assert!(g1 > g0, "the generation grows with every change");
    t.add("projects", (p1.id, p2.id));
    let admin = b.keys.create_admin().expect("admin");
    t.add("admin ok", b.keys.role_of(&admin).ok());
    t.add("admin wrong", b.keys.role_of("as_admin_nope").ok());
    // A viewer's token sits beside the admins', hashed the same way, under its own role.
    let viewer = b
        .keys
        .create_secret(Role::Viewer, &NewSecret::default())
        .expect("viewer");
    t.add(
        "viewer ok",
        (viewer.starts_with("av_"), b.keys.role_of(&viewer).ok()),
    );
    let extra = b.keys.create_write_key("second").expect("write key");
    t.add(
        "revoke write",
        b.keys.revoke(&extra, LastAdmin::Keep).is_ok(),
    );
    t.add(
        "revoke unknown",
        b.keys.revoke("aw_nope", LastAdmin::Keep).is_err(),
    );
    // A write token by the prefix a listing shows.
    let third = b.keys.create_write_key("second").expect("write key");
    t.add(
        "revoke write by prefix",
        b.keys
            .revoke(&third[..11], LastAdmin::Keep)
            .is_ok_and(|m| m.contains(&third[..11])),
    );
    // Named, expiring admin tokens: an expired one grants nothing and says so.
    let soon = chrono_now_ms() + 3_600_000;
    let named = b
        .keys
        .create_secret(
            Role::Admin,
            &NewSecret {
                name: "grafana".into(),
                expires_ms: Some(soon),
            },
        )
        .expect("named admin");
    let listed = b.keys.secret_of(&named).expect("secret").expect("found");
    t.add(
        "named admin",
        (
            listed.name.clone(),
            listed.expires_ms == Some(soon),
            b.keys.role_of(&named).ok(),
        ),
    );
    let gone = b
        .keys
        .create_secret(
            Role::Admin,
            &NewSecret {
                name: "old".into(),
                expires_ms: Some(1_000),
            },
        )
        .expect("expired admin");
    t.add("expired admin", b.keys.secret_state(&gone).ok());
    b.keys
        .set_privacy(
            "second",
            PrivacyMode::Allowlist(vec!["product_version".into()]),
        )
        .expect("privacy");
    let keys: Vec<_> = b
        .keys
        .write_keys()
        .expect("keys")
        .into_iter()
        .map(|k| {
            (
                k.project.name,
                k.project.privacy,
                k.revoked,
                k.hash == anonstats_server::tokens::hash_secret(&w2),
                k.prefix == w2[..11],
            )
        })
        .collect();
    t.add("write keys", keys);
    let projects: Vec<_> = b
        .keys
        .projects()
        .expect("projects")
        .into_iter()
        .map(|p| (p.id, p.name, p.privacy))
        .collect();
    t.add("project list", projects);
    let admin2 = b.keys.create_admin().expect("admin");
    t.add(
        "admin keys",
        b.keys
            .secret_keys()
            .expect("admins")
            .iter()
            .map(|a| (a.id, a.role, a.revoked))
            .collect::<Vec<_>>(),
    );
    t.add(
        "revoke admin",
        b.keys.revoke(&admin2, LastAdmin::Keep).is_ok(),
    );
    t.add("admin revoked", b.keys.role_of(&admin2).ok());
    t.add(
        "revoke viewer",
        b.keys.revoke(&viewer[..11], LastAdmin::Keep).ok(),
    );
    // The last admin token that works is kept unless forced.
    b.keys
        .revoke(&named, LastAdmin::Keep)
        .expect("not the last");
    t.add(
        "revoke last admin",
        b.keys
            .revoke(&admin, LastAdmin::Keep)
            .map_err(|e| e.to_string()),
    );
    t.add("last admin kept", b.keys.role_of(&admin).ok());
    t.add(
        "revoke forced",
        b.keys.revoke(&admin, LastAdmin::MayRevoke).is_ok(),
    );
    t.add("forced admin revoked", b.keys.role_of(&admin).ok());
    t.add("viewer revoked", b.keys.role_of(&viewer).ok());
    t.add(
        "admin keys after",
        b.keys
            .secret_keys()
            .expect("admins")
            .iter()
            .map(|a| (a.id, a.role, a.revoked))
            .collect::<Vec<_>>(),
    );

    // Events, each batch one request, concurrently within a batch pair.
    for batch in batches() {
        let inserted = rt.block_on(b.events.insert(batch)).expect("insert");
        b.written();
        t.add(
            "inserted stored+dups",
            inserted.stored + inserted.duplicates,
        );
    }

    t.add("property names", b.keys.property_names(p1.id).ok());
    let (from, to) = (T0, T0 + 9 * DAY);
    questions(&mut t, b, "before", from, to);
    t.add(
        "sql",
        b.insights.sql(
            "SELECT 1 AS x",
            SqlLimits {
                max_rows: 10,
                timeout: std::time::Duration::from_secs(5),
                ..SqlLimits::default()
            },
        ),
    );

    // Erasure of one machine.
    t.add("erase m-5", b.insights.erase_machine(1, "m-5"));
    t.add("erase unknown", b.insights.erase_machine(1, "nobody"));
    b.written();
    questions(&mut t, b, "erased", from, to);

    // Retention: the cutoff is aligned down to a day (2024-03-01, a month boundary is
    // crossed on the way).
    t.add("purge", b.insights.purge_before(T0 + 4 * DAY + 13 * HOUR));
    b.written();
    questions(&mut t, b, "purged", from, to);
    t
}

/// Known numbers of the conformance data (checked on the embedded store).
pub fn check_known(t: &Transcript) {
    let exported = t.get("before export all count");
    // 8 days: project 1 has START + FATAL + CLOUD + EXIT per machine-day, project 2 5/day;
    // plus one new uuid from the resend batch.
    assert!(exported.contains("Ok("), "{exported}");
    assert!(t.get("erase m-5").contains("Ok("));
    assert!(t.get("admin ok").contains("Admin"));
    assert!(t.get("admin wrong").contains("None"));
    assert!(t.get("admin revoked").contains("None"));
    assert!(t.get("revoke write by prefix").contains("true"));
    assert!(t.get("named admin").contains("grafana") && t.get("named admin").contains("Admin"));
    assert!(t.get("expired admin").contains("Expired(") && t.get("expired admin").contains("1000"));
    assert!(
        t.get("revoke last admin")
            .contains("is the last admin token that works")
    );
    assert!(t.get("last admin kept").contains("Admin"));
    assert!(t.get("forced admin revoked").contains("None"));
    assert!(t.get("property names").contains("product_version"));
    assert!(t.get("viewer ok").contains("true") && t.get("viewer ok").contains("Viewer"));
    assert!(t.get("revoke viewer").contains("revoked viewer token"));
    assert!(t.get("viewer revoked").contains("None"));
    assert!(t.get("admin keys after").contains("Viewer"));
    assert!(
        t.get("before k-floor all product_version")
            .contains("\"other\"")
    );
    assert!(
        !t.get("before k-floor all product_version")
            .contains("2.0-beta")
    );
    assert!(
        !t.get("before breakdown all product_version None")
            .contains("resent")
    );
}

/// The first and last milliseconds the collector accepts, and one inside each.
pub fn edge_times() -> [i64; 4] {
    use anonstats_wire::{MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};
    [
        MIN_TIMESTAMP_MS,
        MIN_TIMESTAMP_MS + 1,
        MAX_TIMESTAMP_MS - 1,
        MAX_TIMESTAMP_MS,
    ]
}

/// Events at the edges of the accepted time range, and every answer about them: the
/// stores must give back the same times and count them in the same buckets.
pub fn time_edges(b: &Backend) -> Transcript {
    let mut t = Transcript::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (p, _) = b.keys.create_project("edges").expect("project");
    let events: Vec<NewEvent> = edge_times()
        .iter()
        .enumerate()
        .map(|(n, &ts)| {
            event(
                p.id,
                n as u128 + 1,
                "START",
                &format!("m-{}", n % 2),
                ts,
                json!({"product_version": "1.0"}),
            )
        })
        .collect();
    let inserted = rt.block_on(b.events.insert(events)).expect("insert");
    b.written();
    t.add("inserted", inserted.stored);
    let [first, _, _, last] = edge_times();
    for (name, from, to) in [
        ("first week", first, first + 7 * DAY),
        ("last week", last + 1 - 7 * DAY, last + 1),
        ("everything", first, last + 1),
    ] {
        let s = scope(p.id, from, to);
        for iv in [
            Interval::Hour,
            Interval::Day,
            Interval::Week,
            Interval::Month,
        ] {
            if name == "everything" && iv == Interval::Hour {
                continue;
            }
            t.add(
                format!("trend {name} {iv:?}"),
                b.insights.trend(&s, iv).map(|r| r.0),
            );
            t.add(
                format!("active {name} {iv:?}"),
                b.insights.active(&s, iv).map(|r| r.0),
            );
        }
        t.add(
            format!("breakdown {name}"),
            b.insights
                .breakdown(&s, "product_version", None)
                .map(|r| r.0),
        );
        let mut rows = Vec::new();
        let q = ExportQuery {
            project_id: Some(p.id),
            from_ms: Some(from),
            to_ms: Some(to),
        };
        let n = b.events.export(&q, &mut |e| {
            rows.push(e);
            Ok(())
        });
        t.add(format!("export {name} count"), n);
        t.add(format!("export {name}"), rows);
    }
    t.add("recent", b.insights.recent(p.id, 10));
    t
}

/// Events of CI runs (`is_ci = true`) beside others: every answer leaves them out by
/// default and counts them with `include_ci` (or a filter on `is_ci` itself, as the API
/// sets it). Checked against known numbers, so that each store is checked on its own.
pub fn ci_runs(b: &Backend) -> Transcript {
    let mut t = Transcript::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (p, _) = b.keys.create_project("ci-runs").expect("project");
    let mut events = Vec::new();
    let mut n = 0;
    let mut add = |name: &str, machine: String, day: i64, props: Value| {
        n += 1;
        events.push(event(p.id, n, name, &machine, T0 + day * DAY + HOUR, props));
    };
    let fatal = |ci: bool| {
        let mut p = json!({"product_version": "2.0", "fatal_function": "main::run",
            "fatal_file": "src/main.rs", "fatal_line": 7});
        if ci {
            p["is_ci"] = json!(true);
        }
        p
    };
    // Six machines in real use over two days, three CI runners on the first.
    for m in 0..6 {
        for day in 0..2 {
            add(
                "START",
                format!("user-{m}"),
                day,
                json!({"product_version": "2.0"}),
            );
        }
    }
    for m in 0..3 {
        let props = json!({"product_version": "2.0-ci", "is_ci": true});
        add("START", format!("ci-{m}"), 0, props);
        add("FATAL", format!("ci-{m}"), 0, fatal(true));
    }
    add("FATAL", "user-0".into(), 1, fatal(false));
    let inserted = rt.block_on(b.events.insert(events)).expect("insert");
    b.written();
    t.add("inserted", inserted.stored);
    let base = scope(p.id, T0, T0 + 2 * DAY);
    let with_ci = Scope {
        include_ci: true,
        ..base.clone()
    };
    let on_version = |s: &Scope| Scope {
        filters: vec![("product_version".into(), "2.0".into())],
        ..s.clone()
    };
    let two = |s: &Scope| Scope {
        filters: vec![
            ("product_version".into(), "2.0".into()),
            ("host_os_name".into(), "none".into()),
        ],
        ..s.clone()
    };
    let ins = &b.insights;
    for (tag, s) in [
        ("default", base.clone()),
        ("include", with_ci.clone()),
        ("default version", on_version(&base)),
        ("include version", on_version(&with_ci)),
        ("default two", two(&base)),
        ("include two", two(&with_ci)),
    ] {
        for iv in [Interval::Hour, Interval::Day] {
            let trend = ins.trend(&s, iv).expect("trend").0;
            t.add(
                format!("{tag} trend {iv:?}"),
                trend.iter().map(|r| r.1).sum::<u64>(),
            );
            let active = ins.active(&s, iv).expect("active").0;
            t.add(format!("{tag} active {iv:?}"), active);
        }
        let mut groups = ins
            .breakdown(&s, "product_version", None)
            .expect("breakdown")
            .0;
        groups.sort_by(|a, b| a.value.cmp(&b.value));
        let groups: Vec<_> = groups
            .iter()
            .map(|g| (g.value.clone(), g.count, g.machines))
            .collect();
        t.add(format!("{tag} breakdown"), groups);
        let sites = ins.crash_sites(&s).expect("crash sites");
        let sites: Vec<_> = sites
            .iter()
            .map(|c| (c.function.clone(), c.count, c.machines))
            .collect();
        t.add(format!("{tag} crash sites"), sites);
    }
    let names: Vec<String> = ins
        .properties(&with_ci, 1)
        .expect("properties")
        .into_iter()
        .map(|p| p.name)
        .collect();
    t.add("property names, CI or not", names);
    t
}
