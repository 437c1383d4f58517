//! The demo agent's own web dashboard: a tiny blocking HTTP server on `std::net`.
//!
//! - `GET /` (any path not below): the page, which loads `/anonstats.js` and sends its
//!   button clicks only when `/api/v1/info` says statistics are on;
//! - `GET /anonstats.js`: the browser script, served by the agent itself so that a
//!   dashboard with statistics off never contacts the collector, not even for the script;
//! - `GET /api/v1/info`: `{"anonymous_statistics", "machine_guid", "version", "api_host",
//!   "token", "statistics"}`.
//!
//! `anonymous_statistics` is true only while the client sends every event (mode all; under
//! crashes the dashboard's usage is not sent) and the consent
//! rules, checked again on every request, still say on: an `anonstats opt-out` made while
//! the agent runs turns the page's statistics off at its next load.

use anonstats_client::Client;
use anonstats_client::consent::{self, Mode};
use serde_json::json;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("../../../../web/dist/anonstats.min.js");
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What the info endpoint needs, copied out of the client so the server thread owns it.
struct Info {
    sends: bool,
    scope: consent::Scope,
    /// For the machine id it sends (read at each request: made by its first event).
    client: Client,
    host_mode: Option<Mode>,
    endpoint: Option<String>,
    token: Option<String>,
}

impl Info {
    fn statistics(&self) -> consent::Consent {
        let env = |name: &str| std::env::var_os(name);
        consent::decide(&env, &self.scope, self.host_mode)
    }

    fn to_json(&self) -> serde_json::Value {
        let now = self.statistics();
        let on = self.sends && now.mode == Mode::On;
        json!({
            "anonymous_statistics": on,
            "statistics": now.to_string(),
            "machine_guid": self.client.machine_id().map(|id| id.to_string()),
            "version": env!("CARGO_PKG_VERSION"),
            "api_host": if on { self.endpoint.clone() } else { None },
            "token": if on { self.token.clone() } else { None },
        })
    }
}

/// Binds `addr` and serves the dashboard on a background thread; returns the bound address.
pub fn start(
    addr: &str,
    client: &Client,
    host_mode: Option<Mode>,
    endpoint: Option<String>,
    token: Option<String>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let info = Arc::new(Info {
        sends: client.sends(),
        scope: client.scope().clone(),
        client: client.clone(),
        host_mode,
        endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
        token,
    });
    std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let info = Arc::clone(&info);
                // One short-lived thread per connection: a browser's idle preconnect
                // must not hold up the next request.
                let _ = std::thread::Builder::new()
                    .name("dashboard-conn".into())
                    .spawn(move || {
                        let _ = handle(stream, &info);
                    });
            }
        })?;
    Ok(local)
}

fn handle(stream: TcpStream, info: &Info) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut seen = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        seen += n;
        if n == 0 || line == "\r\n" || line == "\n" || seen > MAX_HEADER_BYTES {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/api/v1/info") => (
            "200 OK",
            "application/json",
            info.to_json().to_string().into_bytes(),
        ),
        ("GET" | "HEAD", "/anonstats.js") => (
            "200 OK",
            "text/javascript; charset=utf-8",
            SCRIPT.as_bytes().to_vec(),
        ),
        ("GET" | "HEAD", "/favicon.ico") => ("204 No Content", "text/plain", Vec::new()),
        ("GET" | "HEAD", _) => (
            "200 OK",
            "text/html; charset=utf-8",
            PAGE.as_bytes().to_vec(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"the dashboard only answers GET\n".to_vec(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\n\
         referrer-policy: no-referrer\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(&body)?;
    }
    out.flush()
}
