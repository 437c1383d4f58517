//! ClickHouse's HTTP interface: one statement per request, settings as URL parameters,
//! errors read from the body (`Code: N`), as docs/clickhouse-dialect.md prescribes.

use crate::store::StoreError;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings sent with every request; both 18.16 and current releases know them.
const COMMON: &[(&str, &str)] = &[("output_format_json_quote_64bit_integers", "0")];

/// Where a ClickHouse server answers and who we are to it.
#[derive(Clone)]
pub struct Node {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Node").field("base", &self.base).finish()
    }
}

/// Appends every statement sent, and the answers of reads, to a file as JSON lines, so
/// that the same SQL can be replayed on another ClickHouse release.
pub struct SqlLog {
    file: Mutex<std::fs::File>,
}

impl SqlLog {
    pub fn open(path: &std::path::Path) -> Result<Arc<SqlLog>, StoreError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                StoreError::Backend(format!("cannot open the SQL log {}: {e}", path.display()))
            })?;
        Ok(Arc::new(SqlLog {
            file: Mutex::new(file),
        }))
    }

    fn write(&self, kind: &str, sql: &str, result: Option<&str>) {
        let line = serde_json::json!({"kind": kind, "sql": sql, "result": result});
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{line}");
    }
}

/// A blocking client for one node.
#[derive(Clone)]
pub struct Client {
    pub node: Node,
    agent: ureq::Agent,
    log: Option<Arc<SqlLog>>,
}

/// What kind of statement a request carries (for the SQL log).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ddl,
    Insert,
    Select,
    /// A read whose answer depends on timing (mutation polls); not compared on replay.
    Poll,
    Mutation,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Ddl => "ddl",
            Kind::Insert => "insert",
            Kind::Select => "select",
            Kind::Poll => "poll",
            Kind::Mutation => "mutation",
        }
    }
}

impl Client {
    pub fn new(node: Node, timeout: Duration, log: Option<Arc<SqlLog>>) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(timeout))
            .max_idle_connections_per_host(16)
            .build()
            .new_agent();
        Client { node, agent, log }
    }

    /// The same node with another timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client::new(self.node.clone(), timeout, self.log.clone())
    }

    fn url(&self, settings: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in COMMON.iter().chain(settings) {
            q.append_pair(k, v);
        }
        format!("{}/?{}", self.node.base, q.finish())
    }

    fn post(
        &self,
        settings: &[(&str, &str)],
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, StoreError> {
        let resp = self
            .agent
            .post(self.url(settings))
            .header("X-ClickHouse-User", &self.node.user)
            .header("X-ClickHouse-Key", &self.node.password)
            .send(body)
            .map_err(|e| unreachable(&self.node, e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let mut resp = resp;
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Err(server_error(&self.node, status, &text))
    }

    /// Runs a statement that returns nothing (DDL, mutations).
    pub fn execute(&self, kind: Kind, sql: &str) -> Result<(), StoreError> {
        if let Some(log) = &self.log {
            log.write(kind.as_str(), sql, None);
        }
        let mut resp = self.post(&[], sql.as_bytes())?;
        let _ = resp.body_mut().read_to_vec();
        Ok(())
    }

    /// Inserts JSONEachRow `rows` (one object per line) into `table`.
    pub fn insert(
        &self,
        table: &str,
        rows: &[u8],
        settings: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let query = format!("INSERT INTO {table} FORMAT JSONEachRow");
        if let Some(log) = &self.log {
            log.write(
                Kind::Insert.as_str(),
                &format!("{query}\n{}", String::from_utf8_lossy(rows)),
                None,
            );
        }
        let mut all: Vec<(&str, &str)> =
            vec![("query", &query), ("input_format_skip_unknown_fields", "0")];
        all.extend_from_slice(settings);
        let mut resp = self.post(&all, rows)?;
        let _ = resp.body_mut().read_to_vec();
        Ok(())
    }

    /// Runs a read and parses every JSONEachRow line of its answer.
    pub fn rows<T: DeserializeOwned>(&self, kind: Kind, sql: &str) -> Result<Vec<T>, StoreError> {
        let text = self.text(kind, &format!("{sql}\nFORMAT JSONEachRow"), &[])?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    StoreError::Backend(format!(
                        "unexpected answer from ClickHouse ({e}): {l:.200}"
                    ))
                })
            })
            .collect()
    }

    /// Runs a read and returns its whole answer as text.
    pub fn text(
        &self,
        kind: Kind,
        sql: &str,
        settings: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        self.text_capped(kind, sql, settings, 1 << 30)?
            .ok_or_else(|| StoreError::Backend("ClickHouse answered more than 1 GiB".into()))
    }

    /// Runs a read and returns its whole answer as text, or None when the answer is
    /// longer than `cap` bytes (read no further).
    pub fn text_capped(
        &self,
        kind: Kind,
        sql: &str,
        settings: &[(&str, &str)],
        cap: u64,
    ) -> Result<Option<String>, StoreError> {
        let mut all: Vec<(&str, &str)> = vec![("wait_end_of_query", "1")];
        all.extend_from_slice(settings);
        let mut resp = self.post(&all, sql.as_bytes())?;
        let mut bytes = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreachable(&self.node, ureq::Error::Io(e)))?;
        if bytes.len() as u64 > cap {
            return Ok(None);
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            StoreError::Backend(format!(
                "{} answered text that is not UTF-8",
                self.node.base
            ))
        })?;
        if let Some(log) = &self.log {
            log.write(kind.as_str(), sql, Some(&text));
        }
        Ok(Some(text))
    }

    /// Streams a JSONEachRow answer line by line to `each`.
    pub fn stream(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        each: &mut dyn FnMut(&str) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let sql = format!("{sql}\nFORMAT JSONEachRow");
        if let Some(log) = &self.log {
            log.write(Kind::Select.as_str(), &sql, None);
        }
        let resp = self.post(settings, sql.as_bytes())?;
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| {
                StoreError::Unavailable(format!("reading from {}: {e}", self.node.base))
            })?;
            if line.starts_with("Code: ") {
                // An error after the answer had started: ClickHouse appends it to the body.
                return Err(server_error(&self.node, 500, &line));
            }
            if !line.trim().is_empty() {
                each(&line)?;
            }
        }
        Ok(())
    }
}

/// The error of a request that got no answer.
fn unreachable(node: &Node, e: ureq::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "ClickHouse at {} cannot be reached: {e}",
        node.base
    ))
}

/// ClickHouse's error code from an error body (`Code: 62, e.displayText() = ...` on
/// 18.16, `Code: 62. DB::Exception: ...` on current releases).
pub fn error_code(body: &str) -> Option<u32> {
    let rest = body.trim_start().strip_prefix("Code: ")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Codes that mean "try again later" rather than "this request is wrong".
const TRANSIENT: &[u32] = &[
    159, // TIMEOUT_EXCEEDED
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    279, // ALL_CONNECTION_TRIES_FAILED
    319, // UNKNOWN_STATUS_OF_INSERT
];

fn server_error(node: &Node, status: u16, body: &str) -> StoreError {
    let body = body.trim();
    let short: String = body.chars().take(500).collect();
    match (status, error_code(body)) {
        (401 | 403, _) | (_, Some(192 | 193 | 516)) => StoreError::Unavailable(format!(
            "ClickHouse at {} refused the user; check --clickhouse-user and --clickhouse-password: {short}",
            node.base
        )),
        (_, Some(code)) if TRANSIENT.contains(&code) => {
            StoreError::Unavailable(format!("ClickHouse at {} is busy: {short}", node.base))
        }
        (502..=504, _) => {
            StoreError::Unavailable(format!("ClickHouse at {} answered {status}", node.base))
        }
        _ => StoreError::Backend(format!(
            "ClickHouse at {} answered {status}: {short}",
            node.base
        )),
    }
}

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A number that ClickHouse may render quoted (64-bit, on 18.16) or not.
pub fn num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        U(u64),
        S(String),
    }
    match N::deserialize(d)? {
        N::I(n) => Ok(n),
        N::U(n) => i64::try_from(n).map_err(serde::de::Error::custom),
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(lit(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn codes_from_both_releases() {
        assert_eq!(
            error_code("Code: 62, e.displayText() = DB::Exception: x"),
            Some(62)
        );
        assert_eq!(error_code("Code: 60. DB::Exception: y"), Some(60));
        assert_eq!(error_code("nope"), None);
    }
}
