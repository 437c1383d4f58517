//! HTTP delivery: one `POST <endpoint>/batch/` under a total deadline, at most one retry.

use crate::Error;
use crate::tls::Trust;
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why a batch was not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// The deadline passed (connect, send and receive together).
    Timeout(Duration),
    /// The endpoint could not be reached.
    Connect(String),
    /// The endpoint answered with a non-2xx status; the start of its body.
    Status(u16, String),
    /// TLS failed: the certificate did not verify, or no roots could be read.
    Tls(String),
    /// Anything else.
    Other(String),
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            DeliveryError::Connect(e) => write!(f, "cannot connect: {e}"),
            DeliveryError::Status(s, _) => write!(
                f,
                "the collector answered HTTP {s}{}",
                match s {
                    401 | 403 => " (check the project write token)",
                    404 => " (check the endpoint URL: it should be the collector's base URL)",
                    _ => "",
                }
            ),
            DeliveryError::Tls(e) | DeliveryError::Other(e) => f.write_str(e),
        }
    }
}

impl DeliveryError {
    /// Refused for good: the same request would be refused again (a 4xx answer other than
    /// 408 and 429: a bad token, a malformed or too large batch). Anything else (no
    /// connection, no answer in time, 5xx, 429) may succeed later.
    pub fn refused(&self) -> bool {
        matches!(self, DeliveryError::Status(s, _) if (400..500).contains(s) && *s != 408 && *s != 429)
    }

    /// One line for the person who runs the agent: what happened at `url`.
    pub fn explain(&self, url: &str) -> String {
        match self {
            DeliveryError::Timeout(d) => {
                format!("no answer from {url} within {} ms", d.as_millis())
            }
            DeliveryError::Connect(e) => format!("cannot connect to {url}: {e}"),
            DeliveryError::Status(s @ (401 | 403), _) => {
                format!("the collector refused the token ({s}): check the project write token")
            }
            DeliveryError::Status(400, _) => {
                "the collector refused the events as malformed (400)".to_string()
            }
            DeliveryError::Status(413, _) => {
                "the collector refused the events as too large (413)".to_string()
            }
            DeliveryError::Status(404, _) => format!(
                "{url} answered 404: check the endpoint URL, it should be the collector's base URL"
            ),
            DeliveryError::Status(s, _) => format!("the collector at {url} answered HTTP {s}"),
            DeliveryError::Tls(e) => format!("cannot send to {url}: {e}"),
            DeliveryError::Other(e) => format!("cannot send to {url}: {e}"),
        }
    }

    /// Worth one more try: the network or the server, not the request.
    fn retryable(&self) -> bool {
        match self {
            DeliveryError::Status(s, _) => *s == 429 || *s >= 500,
            // The same certificate would fail the same way a moment later.
            DeliveryError::Timeout(_) | DeliveryError::Tls(_) => false,
            _ => true,
        }
    }
}

/// How much of the collector's answer is kept (its body's start).
const ANSWER_MAX: usize = 1024;

/// Sends batches to one endpoint.
#[derive(Debug)]
pub struct Transport {
    url: String,
    trust: Trust,
    /// Made at the first post, so that start-up reads no certificate store.
    agent: OnceLock<ureq::Agent>,
}

impl Transport {
    /// A transport for `endpoint` (the collector's base URL; `/batch/` is appended). An
    /// `https://` endpoint's certificate is verified against the system's roots, or, with
    /// `ca_file`, against the CAs in that PEM file only; the file is read here, so that a
    /// missing or unusable one is an error at start.
    pub fn new(endpoint: &str, ca_file: Option<&Path>) -> Result<Transport, Error> {
        let url = batch_url(endpoint)?;
        let trust = match ca_file {
            Some(path) => Trust::ca_file(path)?,
            None => Trust::System,
        };
        Ok(Transport {
            url,
            trust,
            agent: OnceLock::new(),
        })
    }

    fn agent(&self) -> Result<&ureq::Agent, DeliveryError> {
        if let Some(agent) = self.agent.get() {
            return Ok(agent);
        }
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("anonstats-client/", env!("CARGO_PKG_VERSION")));
        if self.url.starts_with("https://") {
            config = config.tls_config(self.trust.config().map_err(DeliveryError::Tls)?);
        }
        Ok(self.agent.get_or_init(|| config.build().new_agent()))
    }

    /// The full URL posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POST `body` before `deadline`, retrying once if the first try failed early enough.
    /// Accepted, the collector's answer as it came: `HTTP 200 {"status":1}`.
    pub fn post(&self, body: &Value, deadline: Instant) -> Result<String, DeliveryError> {
        let bytes = serde_json::to_vec(body).map_err(|e| DeliveryError::Other(e.to_string()))?;
        let first = self.post_once(&bytes, deadline);
        match first {
            Err(e) if e.retryable() => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(200) {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
                self.post_once(&bytes, deadline)
            }
            other => other,
        }
    }

    fn post_once(&self, bytes: &[u8], deadline: Instant) -> Result<String, DeliveryError> {
        // Reading the system's roots, the first time, counts against the deadline too.
        let agent = self.agent()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DeliveryError::Timeout(Duration::ZERO));
        }
        let response = agent
            .post(&self.url)
            .config()
            .timeout_global(Some(left))
            .build()
            .header("content-type", "application/json")
            .send(bytes);
        match response {
            Ok(mut r) => {
                let status = r.status().as_u16();
                // The start of the answer, for the receipts; reading it lets the
                // connection end cleanly too.
                let mut start = [0u8; ANSWER_MAX];
                let n = r.body_mut().as_reader().read(&mut start).unwrap_or(0);
                let text = String::from_utf8_lossy(&start[..n]).trim().to_string();
                if (200..300).contains(&status) {
                    Ok(format!("HTTP {status} {text}"))
                } else {
                    Err(DeliveryError::Status(status, text))
                }
            }
            Err(e) => Err(failure(e, left)),
        }
    }
}

/// Why a request that got no answer failed.
fn failure(e: ureq::Error, left: Duration) -> DeliveryError {
    if let Some(why) = crate::tls::failure(&e) {
        return DeliveryError::Tls(why);
    }
    match e {
        ureq::Error::Timeout(_) => DeliveryError::Timeout(left),
        ureq::Error::HostNotFound => DeliveryError::Connect("host not found".into()),
        ureq::Error::ConnectionFailed => DeliveryError::Connect("connection failed".into()),
        ureq::Error::Io(e) => DeliveryError::Connect(match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            _ => e.to_string(),
        }),
        e => DeliveryError::Other(e.to_string()),
    }
}

/// `<endpoint>/batch/`, after checking the scheme.
///
/// ```
/// assert_eq!(
///     anonstats_client::delivery::batch_url("http://127.0.0.1:8080/").unwrap(),
///     "http://127.0.0.1:8080/batch/"
/// );
/// ```
pub fn batch_url(endpoint: &str) -> Result<String, Error> {
    let e = endpoint.trim();
    let invalid = |why| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        why,
    };
    let rest = if let Some(r) = e.strip_prefix("http://") {
        r
    } else if let Some(r) = e.strip_prefix("https://") {
        r
    } else {
        return Err(invalid(
            "must start with http:// or https://, e.g. http://127.0.0.1:8080",
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("has no host, e.g. http://stats.example.org:8080"));
    }
    if e.contains(['?', '#', ' ']) {
        return Err(invalid(
            "must be a base URL without query, fragment or spaces",
        ));
    }
    Ok(format!("{}/batch/", e.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[test]
    fn urls() {
        assert!(batch_url("ftp://x").is_err());
        assert!(batch_url("http://").is_err());
        assert!(batch_url("http://x/?a").is_err());
        assert_eq!(batch_url("http://x/base").unwrap(), "http://x/base/batch/");
    }

    #[test]
    fn silent_server_times_out_on_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let t = Transport::new(&format!("http://{addr}"), None).unwrap();
        let started = Instant::now();
        let r = t.post(&serde_json::json!({}), started + Duration::from_millis(300));
        let took = started.elapsed();
        assert!(matches!(r, Err(DeliveryError::Timeout(_))), "{r:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        drop(hold);
    }

    #[test]
    fn a_stalled_tls_handshake_times_out_on_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let t = Transport::new(&format!("https://{addr}"), None).unwrap();
        let started = Instant::now();
        let r = t.post(&serde_json::json!({}), started + Duration::from_millis(300));
        let took = started.elapsed();
        assert!(matches!(r, Err(DeliveryError::Timeout(_))), "{r:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        drop(hold);
    }

    #[test]
    fn retries_once_after_a_server_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in ["500 Oops", "200 OK"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                std::io::Read::read_exact(&mut r, &mut body).unwrap();
                let reply = format!(
                    "HTTP/1.1 {answer}\r\ncontent-length: 12\r\nconnection: close\r\n\r\n{{\"status\":1}}"
                );
                s.write_all(reply.as_bytes()).unwrap();
            }
        });
        let t = Transport::new(&format!("http://{addr}"), None).unwrap();
        t.post(
            &serde_json::json!({"a": 1}),
            Instant::now() + Duration::from_secs(2),
        )
        .unwrap();
        server.join().unwrap();
    }
}
