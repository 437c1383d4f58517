//! The README's deployment section: its nginx server blocks (docs/deploy/*.conf, shown
//! verbatim there) run by Debian's nginx with a certificate of a test CA, in front of the
//! real `anonstats serve`: an event sent through the proxy is stored, and the dashboard
//! loads through it, its files, its log-in (a Secure cookie) and its API calls, at the
//! site's root and under `--base-path /stats`.

mod agent_common;
mod common;

use agent_common::{anonstats, send_args, strs};
use common::Collector;
use common::proxy::{Nginx, TestCa, free_port, nginx_present};

const README: &str = include_str!("../../../README.md");
const ROOT_SITE: &str = include_str!("../../../docs/deploy/nginx.conf");
const SUB_PATH_SITE: &str = include_str!("../../../docs/deploy/nginx-base-path.conf");

/// The README shows `conf` as an nginx block, word for word.
fn assert_in_readme(conf: &str) {
    assert!(
        README.contains(&format!("```nginx\n{conf}```")),
        "the README does not show this block as it is in docs/deploy:\n{conf}"
    );
}

/// Runs `conf` in nginx in front of `c`, with only the listen address, the certificate
/// and the upstream port replaced; returns nginx and the proxy's https origin.
fn proxy(ca: &TestCa, c: &Collector, conf: &str, site: &str) -> (Nginx, String) {
    let (cert, key) = ca.server_cert("proxy", &[site, "127.0.0.1"]);
    let upstream = c.url.trim_start_matches("http://");
    let upstream = upstream.split('/').next().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    for original in [
        "listen 443 ssl;",
        "fullchain.pem",
        "privkey.pem",
        "127.0.0.1:9470",
    ] {
        assert!(conf.contains(original), "the block changed: {conf}");
    }
    let server = conf
        .replace("listen 443 ssl;", &format!("listen {listen} ssl;"))
        .replace(
            &format!("/etc/ssl/{site}/fullchain.pem"),
            cert.to_str().unwrap(),
        )
        .replace(
            &format!("/etc/ssl/{site}/privkey.pem"),
            key.to_str().unwrap(),
        )
        .replace("127.0.0.1:9470", upstream);
    let nginx = Nginx::start(&ca.dir.path().join("nginx"), &server, &listen);
    (nginx, format!("https://{listen}"))
}

/// `anonstats send --wait START` to `endpoint` trusting the test CA; the event is stored.
fn send_through(ca: &TestCa, c: &Collector, endpoint: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = send_args("START", endpoint, dir.path());
    args.insert(1, "--wait".into());
    let token = args.iter().position(|a| a == "--token").unwrap() + 1;
    args[token] = c.write_token.clone();
    args.extend(["--ca-file".into(), ca.ca_file().display().to_string()]);
    let out = anonstats(&strs(&args), &[]);
    assert!(
        out.status.success(),
        "send through nginx: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.export().iter().filter(|e| e["event"] == "START").count(),
        1
    );
}

/// The dashboard at `page` (ending in `/`) through the proxy: the page, every file it
/// links relative to itself, the log-in with a Secure cookie, and the API it calls.
fn load_dashboard(ca: &TestCa, c: &Collector, page: &str) {
    let http = ca.client();
    let mut res = http.get(page).call().unwrap();
    assert_eq!(res.status(), 200);
    let html = res.body_mut().read_to_string().unwrap();
    let files: Vec<&str> = html
        .split(['"', '\''])
        .filter(|p| p.starts_with("dashboard/"))
        .collect();
    assert!(files.len() >= 4, "{html}");
    for f in files {
        let res = http.get(format!("{page}{f}")).call().unwrap();
        assert_eq!(res.status(), 200, "{f}");
    }
    let login = http
        .post(format!("{page}api/v1/session"))
        .header("content-type", "application/json")
        .send(serde_json::json!({"token": c.admin_token}).to_string())
        .unwrap();
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.to_ascii_lowercase().contains("; secure"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap();
    for api in ["api/v1/projects", "api/v1/insights/trend"] {
        let mut res = http
            .get(format!("{page}{api}"))
            .header("cookie", cookie)
            .call()
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "{api}: {}",
            res.body_mut().read_to_string().unwrap()
        );
    }
}

#[test]
fn the_readme_nginx_site_proxies_capture_and_the_dashboard() {
    assert_in_readme(ROOT_SITE);
    if !nginx_present() {
        return;
    }
    let ca = TestCa::new();
    let c = Collector::start_with(&["--public-url", "https://stats.example.org"]);
    let (_nginx, origin) = proxy(&ca, &c, ROOT_SITE, "stats.example.org");
    send_through(&ca, &c, &origin);
    load_dashboard(&ca, &c, &format!("{origin}/"));
}

#[test]
fn the_readme_nginx_sub_path_proxies_capture_and_the_dashboard() {
    assert_in_readme(SUB_PATH_SITE);
    if !nginx_present() {
        return;
    }
    let ca = TestCa::new();
    let c = Collector::start_with(&[
        "--base-path",
        "/stats",
        "--public-url",
        "https://example.org/stats",
    ]);
    let (_nginx, origin) = proxy(&ca, &c, SUB_PATH_SITE, "example.org");
    send_through(&ca, &c, &format!("{origin}/stats"));
    load_dashboard(&ca, &c, &format!("{origin}/stats/"));
    // Without the trailing slash, nginx sends the browser to the page.
    let mut res = ca.client().get(format!("{origin}/stats")).call().unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.body_mut().read_to_string().unwrap().contains("<html"));
}
