//! Bad input over HTTP: every capture endpoint, body form and codec is sent malformed,
//! oversized, ambiguous or hostile payloads through the real collector. Each is answered
//! 4xx with a JSON `detail` naming what was wrong, nothing of it is stored, and the
//! collector keeps answering (a control event is accepted after every case).

mod common;

use base64::Engine as _;
use common::{Collector, request};
use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Write;

const PATHS: &[&str] = &["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];
const JSON: (&str, &str) = ("content-type", "application/json");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A gzip stream that inflates to `mb` megabytes of spaces: one member holding 1 MB,
/// repeated (gzip readers read concatenated members as one stream), so building it
/// costs one megabyte of compression however large it inflates.
fn gzip_bomb(mb: usize) -> Vec<u8> {
    let member = gzip(&vec![b' '; 1 << 20]);
    member.repeat(mb)
}

/// 64 MB of spaces, zlib-wrapped: about 64 KB to send.
fn deflate_bomb() -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::best());
    for _ in 0..64 {
        e.write_all(&[b' '; 1 << 20]).unwrap();
    }
    e.finish().unwrap()
}

/// 64 MB of spaces in brotli: a few hundred bytes to send.
fn brotli_bomb() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = brotli::CompressorWriter::new(&mut out, 1 << 16, 5, 22);
        for _ in 0..64 {
            e.write_all(&[b' '; 1 << 20]).unwrap();
        }
    }
    out
}

/// 64 MB of spaces in one zstd frame.
fn zstd_bomb() -> Vec<u8> {
    let spaces = vec![b' '; 64 << 20];
    ruzstd::encoding::compress_to_vec(&spaces[..], ruzstd::encoding::CompressionLevel::Fastest)
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn urlencode(v: &[u8]) -> String {
    v.iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An LZString base64 text that decompresses to about `chars` copies of `a`: each code
/// refers to the dictionary entry being made (the previous entry plus its first
/// character), so the output grows by one more character per code, as lz-string's own
/// encoder writes a long run of one character. Written directly, it costs a few
/// thousand codes to make instead of compressing megabytes.
fn lz64_bomb(chars: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    let (mut acc, mut filled) = (0u8, 0u8);
    let mut put = |value: u32, bits: u32, out: &mut String| {
        for i in 0..bits {
            acc = (acc << 1) | ((value >> i) & 1) as u8;
            filled += 1;
            if filled == 6 {
                out.push(ALPHABET[acc as usize] as char);
                (acc, filled) = (0, 0);
            }
        }
    };
    put(0, 2, &mut out);
    put(u32::from(b'a'), 8, &mut out);
    let (mut dict_len, mut enlarge_in, mut num_bits) = (4u32, 4u32, 3u32);
    let (mut produced, mut entry) = (1usize, 1usize);
    while produced < chars {
        put(dict_len, num_bits, &mut out);
        entry += 1;
        produced += entry;
        dict_len += 1;
        enlarge_in -= 1;
        if enlarge_in == 0 {
            enlarge_in = 1 << num_bits;
            num_bits += 1;
        }
    }
    put(2, num_bits, &mut out);
    put(0, 5, &mut out);
    out
}

struct Case {
    what: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    detail: String,
}

fn post(what: &str, path: &str, body: impl Into<Vec<u8>>, status: u16, detail: &str) -> Case {
    Case {
        what: what.to_string(),
        method: "POST",
        path: path.to_string(),
        headers: vec![JSON],
        body: body.into(),
        status,
        detail: detail.to_string(),
    }
}

fn get(what: &str, path: &str, status: u16, detail: &str) -> Case {
    Case {
        what: what.to_string(),
        method: "GET",
        path: path.to_string(),
        headers: vec![],
        body: Vec::new(),
        status,
        detail: detail.to_string(),
    }
}

impl Case {
    fn headers(mut self, headers: &[(&'static str, &'static str)]) -> Case {
        self.headers = headers.to_vec();
        self
    }
}

/// Sends control events, each with its own uuid, and remembers what was accepted.
struct Control<'a> {
    c: &'a Collector,
    accepted: HashSet<String>,
    n: usize,
}

impl Control<'_> {
    fn uuid(&mut self) -> String {
        self.n += 1;
        format!("00000000-0000-4000-8000-{:012}", self.n)
    }

    fn event(&mut self) -> Value {
        let uuid = self.uuid();
        json!({"event": "control", "distinct_id": "ctl", "uuid": uuid, "properties": {"n": self.n}})
    }

    /// Sends `body` and expects it stored: each of its events' uuids is remembered.
    fn accepted(&mut self, what: &str, path: &str, body: &Value) -> Result<(), String> {
        let a = request(
            "POST",
            &self.c.url(path),
            &[JSON],
            Some(body.to_string().as_bytes()),
        );
        if a.status != 200 {
            return Err(format!("{what}: want 200, got {} {}", a.status, a.body));
        }
        let events = match body.get("batch") {
            Some(b) => b.as_array().unwrap().clone(),
            None => vec![body.clone()],
        };
        for e in events {
            self.accepted
                .insert(e["uuid"].as_str().unwrap().to_string());
        }
        Ok(())
    }

    /// A control event is accepted and the collector's process is still running.
    fn still_up(&mut self, after: &str) {
        let mut e = self.event();
        e["api_key"] = json!(self.c.write_token);
        self.accepted(&format!("control after {after}"), "/e/", &e)
            .unwrap_or_else(|e| panic!("the collector stopped accepting events: {e}"));
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.c.serve_pid()))
            .unwrap_or_else(|_| panic!("the collector's process is gone after {after}"));
        let state = stat.rsplit(')').next().unwrap().trim_start().chars().next();
        assert!(
            !matches!(state, Some('Z' | 'X')),
            "the collector died after {after}"
        );
    }
}

/// The answer to a body that is no JSON in any encoding the collector reads.
const UNRECOGNISED: &str = "payload is not JSON, nor any encoding of JSON the collector recognises (tried: JSON, gzip, base64); send a JSON event, an array of events or {\"api_key\": ..., \"batch\": [...]}, or name the encoding with `compression=gzip|lz64|base64` in the query";

#[test]
fn bad_input_is_answered_4xx_with_a_detail_and_nothing_is_stored() {
    let started = std::time::Instant::now();
    let c = Collector::start();
    let t = c.write_token.clone();
    // Raw JSON text with `TOK` for the write token: duplicates, escapes and surrogates
    // that a JSON value cannot carry.
    let raw = |s: &str| s.replace("TOK", &t).into_bytes();
    let ev = |extra: Value| {
        let mut e = json!({"event": "e", "distinct_id": "d", "api_key": t});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e.to_string().into_bytes()
    };
    let tiny = r#"{"event":"e","distinct_id":"d"}"#;
    let mut cases: Vec<Case> = Vec::new();

    // Every endpoint, with and without the trailing slash, by POST and by GET ?data=.
    let bodies: [(&[u8], &str); 6] = [
        (
            b"null",
            "body must be a JSON object or array of events, not null",
        ),
        (b"[]", "the batch holds no events"),
        (
            b"\"x\"",
            "body must be a JSON object or array of events, not a string",
        ),
        (
            b"1",
            "body must be a JSON object or array of events, not a number",
        ),
        (b"", "empty request"),
        (b"{\"api_key\":", "body is not valid JSON"),
    ];
    for (i, base) in PATHS.iter().enumerate() {
        for path in [base.to_string(), format!("{base}/")] {
            let (body, detail) = bodies[i % bodies.len()];
            let shown = String::from_utf8_lossy(body);
            cases.push(post(&format!("POST {shown}"), &path, body, 400, detail));
            let (body, detail) = bodies[(i + 1) % bodies.len()];
            let shown = String::from_utf8_lossy(body);
            let q = format!("{path}?data={}", urlencode(body));
            if body.is_empty() {
                cases.push(get("GET without data", &path, 400, detail));
            } else {
                cases.push(get(&format!("GET ?data={shown}"), &q, 400, detail));
            }
        }
    }

    // Every encoding and codec, damaged.
    let bad_gz = vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4];
    let mut short_gz = gzip(&ev(json!({})));
    short_gz.truncate(short_gz.len() - 6);
    cases.extend([
        post(
            "form data= empty array",
            "/e/",
            format!("data={}", urlencode(b"[]")),
            400,
            "the batch holds no events",
        )
        .headers(&[FORM]),
        post(
            "form without data",
            "/e/",
            "compression=gzip",
            400,
            "form body has no `data` field",
        )
        .headers(&[FORM]),
        post("form data= null", "/e/", "data=null", 400, "not null").headers(&[FORM]),
        post(
            "base64 that is not",
            "/e/?compression=base64",
            "@@not base64@@",
            400,
            "neither JSON nor valid base64",
        ),
        post(
            "base64 of null",
            "/e/?compression=base64",
            b64(b"null"),
            400,
            "not null",
        ),
        post(
            "base64 of a truncated object",
            "/e/",
            b64(b"{\"event\":"),
            400,
            "body is not valid JSON",
        ),
        post(
            "gzip magic, broken stream",
            "/e/",
            bad_gz.clone(),
            400,
            "payload is not valid gzip",
        ),
        post(
            "gzip stream cut short",
            "/e/?compression=gzip-js",
            short_gz.clone(),
            400,
            "payload is not valid gzip",
        ),
        post(
            "compression=gzip without gzip",
            "/e/?compression=gzip",
            "plain",
            400,
            "gzip magic bytes",
        ),
        post(
            "Content-Encoding gzip without gzip",
            "/e/",
            ev(json!({})),
            400,
            "gzip magic bytes",
        )
        .headers(&[("content-encoding", "gzip")]),
        post(
            "Content-Encoding br",
            "/e/",
            ev(json!({})),
            400,
            "payload is not valid brotli",
        )
        .headers(&[("content-encoding", "br")]),
        post(
            "Content-Encoding lz4",
            "/e/",
            ev(json!({})),
            400,
            "unsupported compression `lz4`",
        )
        .headers(&[("content-encoding", "lz4")]),
        post(
            "compression=zstd",
            "/e/?compression=zstd",
            ev(json!({})),
            400,
            "payload is not valid zstd",
        ),
        post(
            "lz64 garbage",
            "/e/?compression=lz64",
            "data=%21%21%21",
            400,
            "lz64 payload",
        )
        .headers(&[FORM]),
        post(
            "lz64 cut short",
            "/e/?compression=lz64",
            format!(
                "data={}",
                urlencode(&lz_str::compress_to_base64(tiny).as_bytes()[..6])
            ),
            400,
            "lz64 payload",
        )
        .headers(&[FORM]),
        get(
            "GET lz64 garbage",
            "/e/?compression=lz64&data=%21%21",
            400,
            "lz64 payload",
        ),
        get(
            "GET gzip in base64, broken",
            &format!("/e/?data={}", urlencode(b64(&bad_gz).as_bytes())),
            400,
            "payload is not valid gzip",
        ),
    ]);

    // A compression bomb for each codec that can inflate: refused once the decoded text
    // passes the limit, never inflated further.
    let bomb_2mb = gzip_bomb(50);
    let bomb_20mb = gzip_bomb(100);
    let lz_2mb = lz64_bomb(3_000_000);
    let lz_20mb = lz64_bomb(25_000_000);
    let over_2mb = "decoded payload is larger than the 2 MB limit";
    let over_20mb = "decoded payload is larger than the 20 MB limit";
    cases.extend([
        post(
            "gzip bomb by magic bytes",
            "/e/",
            bomb_2mb.clone(),
            413,
            over_2mb,
        )
        .headers(&[]),
        post(
            "gzip bomb, compression=gzip",
            "/batch/?compression=gzip",
            bomb_20mb.clone(),
            413,
            over_20mb,
        )
        .headers(&[]),
        post(
            "gzip bomb, compression=gzip-js",
            "/i/v0/e/?compression=gzip-js&ver=1.0",
            bomb_2mb.clone(),
            413,
            over_2mb,
        )
        .headers(&[("content-type", "text/plain")]),
        post(
            "gzip bomb, Content-Encoding gzip",
            "/batch",
            bomb_20mb.clone(),
            413,
            over_20mb,
        )
        .headers(&[("content-encoding", "gzip")]),
        post(
            "gzip bomb in a base64 form field",
            "/capture/",
            format!("data={}", urlencode(b64(&bomb_2mb).as_bytes())),
            413,
            over_2mb,
        )
        .headers(&[FORM]),
        post(
            "lz64 bomb in a form field",
            "/e/",
            format!("data={}&compression=lz64", urlencode(lz_2mb.as_bytes())),
            413,
            over_2mb,
        )
        .headers(&[FORM]),
        post(
            "lz64 bomb, compression in the query",
            "/batch/?compression=lz64",
            format!("data={}", urlencode(lz_20mb.as_bytes())),
            413,
            over_20mb,
        )
        .headers(&[FORM]),
        post(
            "deflate bomb, Content-Encoding deflate",
            "/batch/",
            deflate_bomb(),
            413,
            over_20mb,
        )
        .headers(&[("content-encoding", "deflate")]),
        post(
            "brotli bomb, Content-Encoding br",
            "/e/",
            brotli_bomb(),
            413,
            over_2mb,
        )
        .headers(&[("content-encoding", "br")]),
        post(
            "zstd bomb, compression=zstd",
            "/batch/?compression=zstd",
            zstd_bomb(),
            413,
            over_20mb,
        )
        .headers(&[]),
        get(
            "lz64 bomb in GET ?data=",
            &format!(
                "/track/?compression=lz64&data={}",
                urlencode(lz_2mb.as_bytes())
            ),
            413,
            over_2mb,
        ),
    ]);

    // Extreme and overflowing times, offsets and `_`.
    const RANGE: &str = "outside the accepted time range";
    cases.extend([
        post("offset i64::MAX", "/e/", ev(json!({"offset": i64::MAX})), 400, RANGE),
        post("offset i64::MIN", "/e/", ev(json!({"offset": i64::MIN})), 400, RANGE),
        post("offset 1e30", "/e/", ev(json!({"offset": 1e30})), 400, "`offset` must be a whole number of milliseconds"),
        post("offset \"NaN\"", "/e/", ev(json!({"offset": "NaN"})), 400, "`offset` must be a whole number of milliseconds"),
        post("offset 2^64", "/e/", raw(r#"{"event":"e","distinct_id":"d","api_key":"TOK","offset":18446744073709551616}"#), 400, "`offset` must be a whole number of milliseconds"),
        post("timestamp i64::MAX as a number", "/e/", ev(json!({"timestamp": i64::MAX})), 400, "`timestamp` must be a string"),
        post("timestamp \"NaN\"", "/e/", ev(json!({"timestamp": "NaN"})), 400, "`timestamp` is not an ISO 8601 date"),
        post("timestamp year 275760", "/e/", ev(json!({"timestamp": "+275760-09-13T00:00:00Z"})), 400, "`timestamp` is not an ISO 8601 date"),
        post("timestamp year 9999", "/e/", ev(json!({"timestamp": "9999-12-31T23:59:59Z"})), 400, RANGE),
        post("timestamp 1970", "/e/", ev(json!({"timestamp": "1970-01-01T00:00:00Z"})), 400, RANGE),
        post("_=i64::MIN", &format!("/e/?_={}", i64::MIN), ev(json!({"timestamp": "2024-01-01T00:00:00Z"})), 400, "corrected by the send time"),
        post("_=i64::MAX", &format!("/e/?_={}", i64::MAX), ev(json!({"timestamp": "2024-01-01T00:00:00Z"})), 400, "corrected by the send time"),
        post("_=-1 with a late timestamp", "/e/?_=-1", ev(json!({"timestamp": "2099-06-01T00:00:00Z"})), 400, "corrected by the send time"),
        post("_=NaN", "/e/?_=NaN", ev(json!({"timestamp": "2024-01-01T00:00:00Z"})), 400, "`_` in the query must be the send time in Unix milliseconds"),
        post("_=1e30", "/e/?_=1e30", ev(json!({"timestamp": "2024-01-01T00:00:00Z"})), 400, "`_` in the query must be the send time in Unix milliseconds"),
        post("_ past i64", "/e/?_=99999999999999999999", ev(json!({"timestamp": "2024-01-01T00:00:00Z"})), 400, "`_` in the query must be the send time in Unix milliseconds"),
        post("sent_at \"NaN\"", "/batch/", json!({"api_key": t, "sent_at": "NaN", "batch": [{"event": "e", "distinct_id": "d"}]}).to_string(), 400, "`sent_at` is not an ISO 8601 date"),
        post("sent_at a number", "/batch/", json!({"api_key": t, "sent_at": i64::MAX, "batch": [{"event": "e", "distinct_id": "d"}]}).to_string(), 400, "`sent_at` must be a string"),
    ]);

    // NUL bytes, invalid UTF-8 and lone surrogates, in names, ids, keys and values.
    let with_bytes = |before: &str, bytes: &[u8], after: &str| {
        let mut b = raw(before);
        b.extend_from_slice(bytes);
        b.extend_from_slice(&raw(after));
        b
    };
    let control = "contains a control character";
    cases.extend([
        post("raw NUL in the event name", "/e/", with_bytes(r#"{"api_key":"TOK","distinct_id":"d","event":"a"#, b"\0", r#""}"#), 400, "body is not valid JSON: control character"),
        post("raw NUL in a property key", "/batch/", with_bytes(r#"{"api_key":"TOK","batch":[{"event":"e","distinct_id":"d","properties":{"k"#, b"\0", r#"":1}}]}"#), 400, "body is not valid JSON: control character"),
        post("escaped NUL in the event name", "/e/", raw(r#"{"api_key":"TOK","distinct_id":"d","event":"a\u0000b"}"#), 400, &format!("event 0: `event` {control}")),
        post("escaped NUL in distinct_id", "/e/", raw(r#"{"api_key":"TOK","distinct_id":"\u0000","event":"e"}"#), 400, &format!("event 0: `distinct_id` {control}")),
        post("escaped NUL in $distinct_id", "/batch/", raw(r#"{"api_key":"TOK","batch":[{"event":"e","distinct_id":"d"},{"event":"e","$distinct_id":"d\u0000"}]}"#), 400, &format!("event 1: `distinct_id` {control}")),
        post("escaped NUL in properties.distinct_id", "/e/", raw(r#"{"api_key":"TOK","event":"e","properties":{"distinct_id":"x\u0000"}}"#), 400, &format!("event 0: `distinct_id` {control}")),
        post("escape character in the event name", "/e/", raw(r#"{"api_key":"TOK","distinct_id":"d","event":"a\u001b[31m"}"#), 400, &format!("event 0: `event` {control}")),
        post("escaped NUL in a property key", "/e/", raw(r#"{"api_key":"TOK","distinct_id":"d","event":"e","properties":{"a\u0000":1}}"#), 400, &format!("event 0: property key \"a\\u0000\" {control}")),
        post("escaped NUL in the token", "/e/", raw(r#"{"api_key":"TOK\u0000","distinct_id":"d","event":"e"}"#), 401, "project token is not known"),
        post("invalid UTF-8 in the event name", "/e/", with_bytes(r#"{"api_key":"TOK","distinct_id":"d","event":"a"#, b"\xff", r#""}"#), 400, "payload is not valid UTF-8 text"),
        post("invalid UTF-8 in distinct_id", "/e/", with_bytes(r#"{"api_key":"TOK","event":"e","distinct_id":""#, b"\xc3\x28", r#""}"#), 400, "payload is not valid UTF-8 text"),
        post("invalid UTF-8 in a property key", "/e/", with_bytes(r#"{"api_key":"TOK","event":"e","distinct_id":"d","properties":{""#, b"\xed\xa0\x80", r#"":1}}"#), 400, "payload is not valid UTF-8 text"),
        post("invalid UTF-8 in a property value", "/e/", with_bytes(r#"{"api_key":"TOK","event":"e","distinct_id":"d","properties":{"k":""#, b"\xf8\x88\x80\x80\x80", r#""}}"#), 400, "payload is not valid UTF-8 text"),
        post("invalid UTF-8 inside gzip", "/e/", gzip(&with_bytes(r#"{"api_key":"TOK","event":"e","distinct_id":""#, b"\x80", r#""}"#)), 400, "payload is not valid UTF-8 text").headers(&[]),
        post("invalid UTF-8 percent-encoded in a form field", "/e/", format!("data={}", urlencode(&with_bytes(r#"{"api_key":"TOK","event":"e","distinct_id":""#, b"\xff", r#""}"#))), 400, "payload is not valid UTF-8 text").headers(&[FORM]),
        get("invalid UTF-8 percent-encoded in ?data=", &format!("/e/?data={}", urlencode(&with_bytes(r#"{"api_key":"TOK","event":"e","distinct_id":""#, b"\xfe", r#""}"#))), 400, "payload is not valid UTF-8 text"),
        post("lone surrogate in the event name", "/e/", raw(r#"{"api_key":"TOK","distinct_id":"d","event":"\ud800"}"#), 400, "event 0: `event` is not a valid string: unexpected end of hex escape"),
        post("lone trailing surrogate in distinct_id", "/e/", raw(r#"{"api_key":"TOK","distinct_id":"\udc00x","event":"e"}"#), 400, "event 0: `distinct_id` is not a valid string"),
        post("lone surrogate in a property key", "/batch/", raw(r#"{"api_key":"TOK","batch":[{"event":"e","distinct_id":"d","properties":{"\ud83d":1}}]}"#), 400, "event 0 is not valid JSON: unexpected end of hex escape"),
        post("lone surrogate in a property value", "/e/", raw(r#"{"api_key":"TOK","event":"e","distinct_id":"d","properties":{"k":["\udfff"]}}"#), 400, "`properties` is not valid JSON: lone leading surrogate"),
        post("lone surrogate in the token", "/e/", raw(r#"{"api_key":"\ud800","distinct_id":"d","event":"e"}"#), 400, "`api_key` is not a valid string"),
    ]);

    // Sizes, depth, duplicates, counts, numbers, tokens and types.
    let props = |n: usize| {
        let p: serde_json::Map<String, Value> =
            (0..n).map(|i| (format!("p{i}"), json!(i))).collect();
        ev(json!({"properties": p}))
    };
    let nested = |open: &str, close: &str, depth: usize| {
        format!(
            r#"{{"api_key":"{t}","event":"e","distinct_id":"d","properties":{{"deep":{}1{}}}}}"#,
            open.repeat(depth),
            close.repeat(depth)
        )
    };
    let nested_obj = |depth: usize| {
        format!(
            r#"{{"api_key":"{t}","event":"e","distinct_id":"d","properties":{{"deep":{}1{}}}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        )
    };
    let tiny_batch = |n: usize| {
        let mut s = format!(r#"{{"api_key":"{t}","batch":["#);
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            s.push_str(tiny);
        }
        s.push_str("]}");
        s
    };
    let tiny_array = |n: usize| {
        let one = format!(r#"{{"event":"e","distinct_id":"d","token":"{t}"}}"#);
        format!("[{}]", vec![one; n].join(","))
    };
    let deep_body = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let batch_limit = "events; the limit is 10000 per request";
    cases.extend([
        post("10,000 properties", "/e/", props(10_000), 413, "event 0 has 10000 properties; the limit is 1000 per event"),
        post("1,001 properties", "/e/", props(1001), 413, "event 0 has 1001 properties; the limit is 1000 per event"),
        post("1,000-deep arrays in a property", "/e/", nested("[", "]", 1000), 400, "event 0: property `deep` nests arrays and objects deeper than 32 levels"),
        post("1,000-deep objects in a property", "/e/", nested_obj(1000), 400, "event 0: property `deep` nests arrays and objects deeper than 32 levels"),
        post("33-deep arrays in a property", "/e/", nested("[", "]", 33), 400, "deeper than 32 levels"),
        post("100-deep objects in a property", "/batch/", format!(r#"{{"api_key":"{t}","batch":[{tiny},{}]}}"#, nested_obj(100).replacen(&format!(r#""api_key":"{t}","#), "", 1)), 400, "event 1: property `deep` nests arrays and objects deeper than 32 levels"),
        post("1,000-deep arrays as the body", "/e/", deep_body.clone(), 400, "event 0 is not a JSON object"),
        post("1,000-deep array as distinct_id", "/e/", raw(&format!(r#"{{"api_key":"TOK","event":"e","distinct_id":{deep_body}}}"#)), 400, "`distinct_id` must be a string or number"),
        post("event given twice", "/e/", raw(r#"{"api_key":"TOK","event":"a","distinct_id":"d","event":"b"}"#), 400, "event 0: `event` is given twice"),
        post("distinct_id given twice", "/e/", raw(r#"{"api_key":"TOK","event":"a","distinct_id":"d","distinct_id":"e"}"#), 400, "event 0: `distinct_id` is given twice"),
        post("api_key given twice", "/batch/", raw(r#"{"api_key":"TOK","api_key":"aw_other","batch":[{"event":"a","distinct_id":"d"}]}"#), 400, "`api_key` is given twice"),
        post("token given twice in an event", "/batch/", raw(r#"{"batch":[{"event":"a","distinct_id":"d","token":"TOK","token":"aw_other"}]}"#), 400, "event 0: `token` is given twice"),
        post("timestamp given twice", "/e/", raw(r#"{"api_key":"TOK","event":"a","distinct_id":"d","timestamp":"2024-01-01T00:00:00Z","timestamp":"2025-01-01T00:00:00Z"}"#), 400, "event 0: `timestamp` is given twice"),
        post("uuid given twice", "/batch/", raw(r#"{"api_key":"TOK","batch":[{"event":"a","distinct_id":"d","uuid":"00000000-0000-4000-8000-000000000001","uuid":"00000000-0000-4000-8000-000000000002"}]}"#), 400, "event 0: `uuid` is given twice"),
        post("batch given twice", "/batch/", raw(r#"{"api_key":"TOK","batch":[{"event":"a","distinct_id":"d"}],"batch":[{"event":"b","distinct_id":"d"}]}"#), 400, "`batch` is given twice"),
        post("properties given twice", "/e/", raw(r#"{"api_key":"TOK","event":"a","distinct_id":"d","properties":{"a":1},"properties":{"a":2}}"#), 400, "event 0: `properties` is given twice"),
        post("escaped key repeats event", "/e/", raw(r#"{"api_key":"TOK","event":"a","distinct_id":"d","\u0065vent":"b"}"#), 400, "event 0: `event` is given twice"),
        post("a property key given twice", "/e/", raw(r#"{"api_key":"TOK","event":"a","distinct_id":"d","properties":{"k":1,"j":0,"k":2}}"#), 400, "event 0: property `k` is given twice"),
        post("a property key given twice, once escaped", "/batch/", raw(r#"{"api_key":"TOK","batch":[{"event":"a","distinct_id":"d","properties":{"$os":"a","\u0024os":"b"}}]}"#), 400, "event 0: property `$os` is given twice"),
        post("650,000 tiny events in one batch", "/batch/", tiny_batch(650_000), 413, &format!("the request holds 650000 {batch_limit}")),
        post("10,001 tiny events in one batch", "/batch/", tiny_batch(10_001), 413, &format!("the request holds 10001 {batch_limit}")),
        post("10,001 events as a top-level array", "/e/", tiny_array(10_001), 413, &format!("the request holds 10001 {batch_limit}")),
        post("mixed tokens", "/batch/", json!({"api_key": t, "batch": [{"event": "e", "distinct_id": "d"}, {"event": "e", "distinct_id": "d", "token": "aw_other"}]}).to_string(), 401, "more than one project token"),
        post("api_key and token differ", "/e/", ev(json!({"token": "aw_other"})), 401, "more than one project token"),
        post("no token", "/e/", tiny, 401, "no project token"),
        post("unknown token", "/e/", ev(json!({"api_key": "aw_nope"})), 401, "project token is not known"),
        post("a number out of range in a property", "/e/", raw(r#"{"api_key":"TOK","event":"e","distinct_id":"d","properties":{"n":1e400}}"#), 400, "`properties` is not valid JSON: number out of range"),
        post("a huge integer as distinct_id", "/e/", raw(r#"{"api_key":"TOK","event":"e","distinct_id":123456789012345678901234567890}"#), 400, "event 0: `distinct_id` number 123456789012345678901234567890 is not a whole number"),
        post("a fraction as distinct_id", "/e/", raw(r#"{"api_key":"TOK","event":"e","distinct_id":1.5}"#), 400, "event 0: `distinct_id` number 1.5 is not a whole number"),
        post("1e400 as distinct_id", "/e/", raw(r#"{"api_key":"TOK","event":"e","distinct_id":1e400}"#), 400, "`distinct_id` must be a string or number"),
        post("an event that is an array", "/e/", raw(r#"[[null,null,"e","d",null,null,null,null,null,"TOK"]]"#), 400, "event 0 is not a JSON object"),
        post("an event that is a string", "/batch/", raw(r#"{"api_key":"TOK","batch":["e"]}"#), 400, "event 0 is not a JSON object"),
        post("event name of 201 characters", "/e/", ev(json!({"event": "x".repeat(201)})), 400, "`event` is longer than 200 characters"),
        post("properties as a string", "/e/", ev(json!({"properties": "x"})), 400, "`properties` must be an object"),
        post("XML with an XML content type", "/e/", "<event name=\"e\"/>", 400, UNRECOGNISED).headers(&[("content-type", "application/xml")]),
        post("a PNG", "/e/", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), 400, UNRECOGNISED).headers(&[("content-type", "image/png")]),
        post("multipart form", "/e/", "--x\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{}\r\n--x--\r\n", 400, UNRECOGNISED).headers(&[("content-type", "multipart/form-data; boundary=x")]),
        post("JSON sent as a form", "/e/", "{\"api_key\":", 400, "body is not valid JSON").headers(&[FORM]),
        // Valid base64 by chance ("not+json"), decoding to bytes that are no JSON.
        post("plain text", "/e/", "not json", 400, UNRECOGNISED),
        post("plain text as JSON", "/batch/", "hello", 400, UNRECOGNISED).headers(&[("content-type", "application/json")]),
    ]);

    let n_cases = cases.len();
    eprintln!("{n_cases} cases, built in {:?}", started.elapsed());
    assert!(n_cases >= 80, "{n_cases} cases");
    let mut ctl = Control {
        c: &c,
        accepted: HashSet::new(),
        n: 0,
    };
    let mut failures = Vec::new();
    for case in &cases {
        let a = request(
            case.method,
            &c.url(&case.path),
            &case.headers,
            (case.method == "POST").then_some(case.body.as_slice()),
        );
        let detail = serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string));
        match detail {
            Some(d) if a.status == case.status && d.contains(&case.detail) => {}
            _ => failures.push(format!(
                "{} ({} {}): want {} with {:?}, got {} {}",
                case.what,
                case.method,
                &case.path[..case.path.len().min(40)],
                case.status,
                case.detail,
                a.status,
                &a.body[..a.body.len().min(300)]
            )),
        }
        ctl.still_up(&case.what);
    }

    // Edges that are accepted, so the limits are where they are said to be; an escaped
    // NUL inside a property value is legal JSON and is kept, escaped.
    let mut edge = |what: &str, path: &str, mut body: Value, ctl: &mut Control| {
        let each = match body.get_mut("batch") {
            Some(b) => b.as_array_mut().unwrap().iter_mut().collect::<Vec<_>>(),
            None => vec![&mut body],
        };
        for e in each {
            e["uuid"] = json!(ctl.uuid());
        }
        if let Err(e) = ctl.accepted(what, path, &body) {
            failures.push(e);
        }
    };
    let flat = |n: usize| -> serde_json::Map<String, Value> {
        (0..n).map(|i| (format!("p{i}"), json!(i))).collect()
    };
    let deep32: Value =
        serde_json::from_str(&format!("{}1{}", "[".repeat(32), "]".repeat(32))).unwrap();
    edge(
        "1,000 properties",
        "/e/",
        json!({"api_key": t, "event": "edge", "distinct_id": "d", "properties": flat(1000)}),
        &mut ctl,
    );
    edge(
        "32-deep arrays",
        "/e/",
        json!({"api_key": t, "event": "edge", "distinct_id": "d", "properties": {"deep": deep32}}),
        &mut ctl,
    );
    edge(
        "escaped NUL in a property value",
        "/e/",
        json!({"api_key": t, "event": "edge", "distinct_id": "d", "properties": {"nul": "a\u{0}b"}}),
        &mut ctl,
    );
    edge(
        "offset -1",
        "/e/",
        json!({"api_key": t, "event": "edge", "distinct_id": "d", "offset": -1}),
        &mut ctl,
    );
    edge(
        "10,000 events in one batch",
        "/batch/",
        // From a fleet: one machine may send only so much (the rate limits).
        json!({"api_key": t, "batch": (0..10_000)
            .map(|i| json!({"event": "edge", "distinct_id": format!("d{}", i % 100)}))
            .collect::<Vec<_>>()}),
        &mut ctl,
    );

    assert!(
        failures.is_empty(),
        "{} of {n_cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Only the control and edge events were stored, each once.
    let exported = c.export();
    let stored: HashSet<String> = exported
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(exported.len(), stored.len());
    assert_eq!(stored, ctl.accepted, "only the accepted events were stored");
    let nul = exported
        .iter()
        .find(|e| e["properties"].get("nul").is_some())
        .unwrap();
    assert_eq!(nul["properties"]["nul"], "a\u{0}b");
    let log = std::fs::read_to_string(&c.stderr_log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("{n_cases} cases in {:?}", started.elapsed());
}
