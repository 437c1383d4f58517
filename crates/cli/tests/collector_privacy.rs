//! What the privacy filter removes never reaches the disk, and the peer address is
//! neither stored nor logged.

mod common;

use common::{Collector, all_bytes, contains, post_json};
use serde_json::json;
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddr;

/// Sends a raw HTTP request from the loopback address `from`, so the test knows the
/// peer address the collector sees.
fn post_from(from: &str, url: &str, body: &str) -> String {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    write!(
        stream,
        "POST /batch/ HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

const SECRETS: &[&str] = &[
    "198.51.100.77",
    "secret-host-4242",
    "Paris-Secret-City",
    "alice@example.org",
    "10.9.8.7",
    "private-path-xyz",
    "Mozilla/5.0 SecretAgent",
    "https://referrer.example/private",
];

#[test]
fn identifying_values_and_peer_address_are_nowhere_in_the_data_dir_or_logs() {
    let mut c = Collector::start();
    let props = json!({
        "$ip": "198.51.100.77", "hostname": "secret-host-4242", "$geoip_city_name": "Paris-Secret-City",
        "email": "alice@example.org", "$current_url": "http://10.9.8.7:19999/private-path-xyz",
        "$pathname": "/private-path-xyz", "$host": "10.9.8.7:19999", "$raw_user_agent": "Mozilla/5.0 SecretAgent",
        "$referrer": "https://referrer.example/private", "$set": {"email": "alice@example.org"},
        "product_version": "v1.2.3-kept"
    });
    let body = json!({"api_key": c.write_token, "batch": (0..50).map(|i| json!({
        "event": "START", "distinct_id": format!("m{i}"), "properties": props
    })).collect::<Vec<_>>()})
    .to_string();
    let answer = post_from("127.0.0.2", &c.url, &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    c.stop();

    let exported = c.export();
    assert_eq!(exported.len(), 50);
    let p = &exported[0]["properties"];
    assert_eq!(p["product_version"], "v1.2.3-kept");
    assert_eq!(p["$current_url"], "masked");
    assert!(p.get("$ip").is_none() && p.get("hostname").is_none() && p.get("$set").is_none());

    let data = all_bytes(&c.data_dir());
    assert!(
        contains(&data, "v1.2.3-kept"),
        "the check reads the real files"
    );
    for secret in SECRETS.iter().chain(&["127.0.0.2"]) {
        assert!(!contains(&data, secret), "{secret:?} is in the data dir");
    }
    let log = std::fs::read(&c.stderr_log).unwrap();
    assert!(
        !contains(&log, "127.0.0.2"),
        "the peer address is in the log"
    );
}

#[test]
fn allowlist_keeps_only_listed_properties() {
    let c = Collector::start();
    c.cli(&[
        "keys",
        "allowlist",
        "default",
        "--property",
        "product_version,action",
    ]);
    let ev = json!({"api_key": c.write_token, "event": "START", "distinct_id": "m",
        "properties": {"product_version": "1", "action": "START", "system_kernel_name": "Linux", "$ip": "1.2.3.4"}});
    // The key cache picks the change up within its refresh interval, or at once when it
    // meets a token it does not know: such a request makes it reload before it answers,
    // so the allowlist applies from the next request on, instead of after a guessed time.
    let unknown = json!({"api_key": "aw_unknown", "event": "probe", "distinct_id": "m"});
    assert_eq!(post_json(&c.url("/e/"), &unknown).status, 401);
    assert_eq!(post_json(&c.url("/e/"), &ev).status, 200);
    let p = &c.export()[0]["properties"];
    assert_eq!(p, &json!({"product_version": "1", "action": "START"}));
    let metrics = common::admin_metrics(&c);
    assert!(
        metrics.contains("anonstats_properties_dropped_total{property=\"allowlist\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("anonstats_properties_dropped_total{property=\"$ip\"} 1"),
        "{metrics}"
    );
}
