//! `serve --admin-listen`: every route of the route table on exactly the listener this
//! file expects, 404 on the other; `serve --base-path`: the dashboard, its files, its API
//! calls and capture under the prefix, nothing outside it.

mod common;

use anonstats_server::http::{Listener, table};
use common::{Collector, post_json, request};
use serde_json::json;

/// Where a route is served with --admin-listen, as this test states it.
fn expected(method: &str, path: &str) -> Listener {
    let capture = [
        "/e",
        "/i/v0/e",
        "/capture",
        "/track",
        "/engage",
        "/batch",
        "/i/v1/analytics/events",
    ]
    .iter()
    .any(|p| path == *p || path == format!("{p}/"));
    let flags = [
        "/array/{token}/config",
        "/decide",
        "/decide/",
        "/flags",
        "/flags/",
    ];
    match path {
        _ if capture || flags.contains(&path) => Listener::Public,
        "/static/anonstats.js" | "/static/anonstats.mjs" => Listener::Public,
        "/healthz" => Listener::Both,
        "/" | "/dashboard/{*path}" | "/metrics" => Listener::Admin,
        _ if path.starts_with("/api/v1/") => Listener::Admin,
        _ => panic!("{method} {path} is not in this test; say where it belongs"),
    }
}

fn concrete(path: &str) -> String {
    path.replace("{token}", "phc_none")
        .replace("{*path}", "app.js")
        .replace("{id}", "no-such-machine")
}

#[test]
fn with_admin_listen_each_route_is_served_on_its_listener_only() {
    let c = Collector::start_with(&["--admin-listen", "127.0.0.1:0"]);
    let admin = c
        .admin_url
        .clone()
        .expect("serve printed its admin address");
    assert_ne!(admin, c.url);
    let mut checked = 0;
    for r in table() {
        let (method, path) = (r.method.as_str(), r.path.as_str());
        let want = expected(method, path);
        assert_eq!(r.listener, want, "{method} {path}");
        let p = concrete(path);
        for (side, base) in [(Listener::Public, &c.url), (Listener::Admin, &admin)] {
            let a = request(method, &format!("{base}{p}"), &[], Some(b""));
            let served = want == Listener::Both || want == side;
            if served {
                assert_ne!(
                    a.status, 404,
                    "{method} {path} on the {side:?} listener: {a:?}"
                );
            } else {
                assert_eq!(
                    a.status, 404,
                    "{method} {path} on the {side:?} listener: {a:?}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 40, "{checked} routes");

    // The admin side works as before: metrics and the API with the admin token.
    let bearer = format!("Bearer {}", c.admin_token);
    let metrics = request(
        "GET",
        &format!("{admin}/metrics"),
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(metrics.status, 200);
    let projects = request(
        "GET",
        &format!("{admin}/api/v1/projects"),
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(projects.status, 200, "{}", projects.body);
    // And capture on the public side.
    let sent = post_json(
        &c.url("/batch/"),
        &json!({"api_key": c.write_token, "batch": [{"event": "START", "distinct_id": "m1"}]}),
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
}

#[test]
fn without_admin_listen_one_listener_serves_every_route() {
    let c = Collector::start();
    assert!(c.admin_url.is_none());
    for r in table() {
        let a = request(
            r.method.as_str(),
            &c.url(&concrete(&r.path)),
            &[],
            Some(b""),
        );
        assert_ne!(a.status, 404, "{} {}: {a:?}", r.method, r.path);
    }
}

/// The files the page links, relative to it: `href="dashboard/..."` and `src="..."`.
fn linked(html: &str) -> Vec<String> {
    html.split(['"', '\''])
        .filter(|part| part.starts_with("dashboard/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn under_a_base_path_the_dashboard_its_api_and_capture_work() {
    let c = Collector::start_with(&["--base-path", "/stats/"]);
    assert!(c.url.ends_with("/stats"), "{}", c.url);
    let root = c.url.trim_end_matches("/stats").to_string();

    // The page at /stats/, and /stats sends there so that its relative links resolve.
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let moved = no_redirects.get(c.url.as_str()).call().unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "/stats/");
    let page = request("GET", &c.url("/"), &[], None);
    assert_eq!(page.status, 200);
    let files = linked(&page.body);
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let a = request("GET", &c.url(&format!("/{f}")), &[], None);
        assert_eq!(a.status, 200, "{f}");
    }
    // api.js makes every API path relative to the page.
    let api = request("GET", &c.url("/dashboard/api.js"), &[], None);
    assert!(
        api.body.contains("path.replace(/^\\//, '')"),
        "{}",
        api.body
    );

    // The dashboard's calls, as api.js makes them relative to /stats/.
    let login = post_json(&c.url("/api/v1/session"), &json!({"token": c.admin_token}));
    assert_eq!(login.status, 200, "{}", login.body);
    let set_cookie = login.header("set-cookie").unwrap();
    // The session is the sub-path's alone: other sites on the host never receive it.
    assert!(set_cookie.contains("; Path=/stats;"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    for path in [
        "/api/v1/projects",
        "/api/v1/session",
        "/api/v1/insights/trend",
    ] {
        let a = request("GET", &c.url(path), &[("cookie", &cookie)], None);
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    let sent = post_json(
        &c.url("/batch/"),
        &json!({"api_key": c.write_token, "batch": [{"event": "START", "distinct_id": "m1"}]}),
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(request("GET", &c.url("/healthz"), &[], None).status, 200);

    // Nothing outside the prefix.
    for path in [
        "/",
        "/api/v1/projects",
        "/healthz",
        "/batch/",
        "/dashboard/app.js",
    ] {
        let a = request(
            "GET",
            &format!("{root}{path}"),
            &[("cookie", &cookie)],
            None,
        );
        assert_eq!(a.status, 404, "{path}");
    }
}

#[test]
fn a_base_path_that_is_not_a_path_is_refused_at_start() {
    for bad in ["stats", "/st ats", "/a//b", "/a?b"] {
        let out = std::process::Command::new(common::BIN)
            .args(["serve", "--base-path", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--base-path") && err.contains("/stats"),
            "{err}"
        );
    }
}
