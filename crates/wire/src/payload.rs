//! From HTTP request parts to the JSON text of the payload: form fields, query
//! parameters, and every compression PostHog clients use.

use crate::error::size;
use crate::{Limits, WireError, lz64};
use base64::Engine as _;
use std::io::Read;

/// The parts of an HTTP capture request that decoding needs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    /// The request body (may be empty for GET).
    pub body: &'a [u8],
    /// The raw query string, without the leading `?`.
    pub query: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Content-Encoding` header.
    pub content_encoding: Option<&'a str>,
}

pub(crate) struct Payload {
    pub json: String,
    /// When the sender says it sent the request (posthog-js's `_` query parameter).
    pub sent_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Compression {
    None,
    Gzip,
    /// zlib-wrapped deflate (RFC 1950), what `Content-Encoding: deflate` means in HTTP.
    Deflate,
    Brotli,
    Zstd,
    Lz64,
    Base64,
}

fn compression_named(name: &str) -> Result<Compression, WireError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "" | "none" | "identity" => Ok(Compression::None),
        "gzip" | "gzip-js" => Ok(Compression::Gzip),
        "deflate" => Ok(Compression::Deflate),
        "br" | "brotli" => Ok(Compression::Brotli),
        "zstd" => Ok(Compression::Zstd),
        "lz64" | "lz-string" => Ok(Compression::Lz64),
        "base64" | "b64" => Ok(Compression::Base64),
        other => Err(WireError::invalid(format!(
            "unsupported compression `{other}`: use gzip, deflate, br, zstd, gzip-js, lz64 or base64"
        ))),
    }
}

pub(crate) fn extract(req: &Request<'_>, limits: &Limits) -> Result<Payload, WireError> {
    let mut compression = Compression::None;
    let mut query_data = None;
    let mut sent_at_ms = None;
    if let Some(enc) = req.content_encoding {
        compression = compression_named(enc)?;
    }
    for (key, value) in form_pairs(req.query.unwrap_or("").as_bytes()) {
        match &key[..] {
            b"compression" => compression = compression_named(&String::from_utf8_lossy(&value))?,
            b"data" => query_data = Some(value),
            b"_" if value.is_empty() => {}
            b"_" => {
                let text = String::from_utf8_lossy(&value);
                sent_at_ms = Some(text.parse::<i64>().map_err(|_| {
                    WireError::invalid(format!(
                        "`_` in the query must be the send time in Unix milliseconds, not {text:?}"
                    ))
                })?);
            }
            _ => {}
        }
    }

    // curl -d labels JSON as a form; a body that opens like JSON is taken as JSON.
    let looks_like_json = matches!(
        req.body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{') | Some(b'[')
    );
    let is_form = !looks_like_json
        && (req.content_type.is_some_and(|ct| {
            ct.trim_start()
                .starts_with("application/x-www-form-urlencoded")
        }) || req.body.starts_with(b"data="));
    let owned;
    let raw: &[u8] = if !req.body.is_empty() && is_form {
        let mut data = None;
        for (key, value) in form_pairs(req.body) {
            match &key[..] {
                b"data" => data = Some(value),
                b"compression" => {
                    compression = compression_named(&String::from_utf8_lossy(&value))?
                }
                _ => {}
            }
        }
        owned = data.ok_or_else(|| WireError::invalid("form body has no `data` field"))?;
        &owned
    } else if !req.body.is_empty() {
        req.body
    } else if let Some(data) = &query_data {
        data
    } else {
        return Err(WireError::invalid(
            "empty request: send events in the body or in the `data` query parameter",
        ));
    };

    let bytes = decompress(raw, compression, limits.max_payload)?;
    let json = String::from_utf8(bytes).map_err(|e| {
        WireError::invalid(format!(
            "payload is not valid UTF-8 text (at byte {}): send the JSON encoded as UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok(Payload { json, sent_at_ms })
}

/// The pairs of a query string or form body, each key and value percent-decoded to
/// bytes (`+` is a space). Unlike a decoder to text, nothing is replaced: a `data` value
/// that is not UTF-8 stays so, and is refused as such once decompressed.
fn form_pairs(input: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    fn unescape(part: &[u8]) -> Vec<u8> {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < part.len() => match (hex(part[i + 1]), hex(part[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        out
    }
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (unescape(key), unescape(value))
        })
}

/// Whether the text is one JSON scalar (`null`, `true`, a number, a string): taken as
/// JSON so that the answer can say what was sent. Base64 text never starts like one
/// unless it is `null`, `true` or `false`, which decode to no UTF-8 text.
fn is_json_scalar(raw: &[u8]) -> bool {
    let text = raw.trim_ascii();
    let opens_like_one = match text.first() {
        Some(b'"' | b'-' | b'0'..=b'9') => true,
        _ => matches!(text, b"null" | b"true" | b"false"),
    };
    opens_like_one && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

fn decompress(raw: &[u8], compression: Compression, max: usize) -> Result<Vec<u8>, WireError> {
    if raw.starts_with(&GZIP_MAGIC) {
        return gunzip(raw, max);
    }
    match compression {
        Compression::Gzip => Err(WireError::invalid(GZIP_NAMED)),
        // Each stream is read one byte past the limit, like gzip: a small bomb never
        // inflates to more than that.
        Compression::Deflate => inflate(
            flate2::read::ZlibDecoder::new(raw),
            max,
            "deflate (zlib, RFC 1950)",
        ),
        Compression::Brotli => inflate(
            brotli_decompressor::Decompressor::new(raw, 4096),
            max,
            "brotli",
        ),
        Compression::Zstd => {
            // No window larger than the payload limit (or zstd's usual 8 MB) is needed,
            // and the decoder would allocate what the frame header asks for.
            let window = (max as u64).max(8 << 20);
            let reader = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(raw, window)
                .map_err(|e| WireError::invalid(format!("payload is not valid zstd: {e}")))?;
            inflate(reader, max, "zstd")
        }
        Compression::Lz64 => {
            let text = std::str::from_utf8(raw).map_err(|_| WireError::invalid(LZ64_NOT_TEXT))?;
            lz64::decompress_base64(text.trim(), max).map(String::into_bytes)
        }
        Compression::Base64 => unbase64(raw, max, |e| {
            WireError::invalid(format!("payload is neither JSON nor valid base64: {e}"))
        }),
        Compression::None => {
            if opens_like_json(raw) {
                return bounded(raw.to_vec(), max);
            }
            // Older clients send base64 without saying so; what is neither JSON nor
            // base64 of JSON is answered with what was tried.
            let unrecognised = || WireError::invalid(UNRECOGNISED);
            match unbase64(raw, max, |_| unrecognised()) {
                Ok(bytes) if !opens_like_json(&bytes) => Err(unrecognised()),
                decoded => decoded,
            }
        }
    }
}

const GZIP_NAMED: &str = "compression is gzip but the payload does not start with the gzip \
    magic bytes: gzip the payload, or leave out `compression=gzip` and `Content-Encoding: gzip`";
const LZ64_NOT_TEXT: &str = "lz64 payload is not ASCII text: send LZString's \
    compressToBase64 output, or leave out `compression=lz64`";

/// The refusal of a body that is no JSON in any encoding the collector reads.
const UNRECOGNISED: &str = "payload is not JSON, nor any encoding of JSON the collector \
    recognises (tried: JSON, gzip, base64); send a JSON event, an array of events or \
    {\"api_key\": ..., \"batch\": [...]}, or name the encoding with \
    `compression=gzip|lz64|base64` in the query";

/// Whether the text opens as a JSON object or array, or is one JSON scalar.
fn opens_like_json(raw: &[u8]) -> bool {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    matches!(first, Some(b'{') | Some(b'[')) || is_json_scalar(raw)
}

fn bounded(bytes: Vec<u8>, max: usize) -> Result<Vec<u8>, WireError> {
    if bytes.len() > max {
        return Err(too_large(max));
    }
    Ok(bytes)
}

fn too_large(max: usize) -> WireError {
    WireError::TooLarge(format!(
        "decoded payload is larger than the {} limit",
        size(max)
    ))
}

fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    inflate(flate2::read::MultiGzDecoder::new(raw), max, "gzip")
}

/// Reads a decompressing stream to its end or to one byte past `max`: that byte tells
/// "too large" from "exactly at the limit" without ever inflating more than that.
fn inflate(reader: impl Read, max: usize, codec: &str) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| WireError::invalid(format!("payload is not valid {codec}: {e}")))?;
    bounded(out, max)
}

/// Decodes base64 (gzip inside it too); `not_base64` makes the refusal of what is not.
fn unbase64(
    raw: &[u8],
    max: usize,
    not_base64: impl FnOnce(base64::DecodeError) -> WireError,
) -> Result<Vec<u8>, WireError> {
    // Form decoding turns an unescaped `+` into a space; put it back.
    let cleaned: Vec<u8> = raw
        .iter()
        .filter(|b| !matches!(b, b'\n' | b'\r'))
        .map(|&b| if b == b' ' { b'+' } else { b })
        .collect();
    let engine = if cleaned.iter().any(|b| matches!(b, b'-' | b'_')) {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD_INDIFFERENT
    };
    if cleaned.len() / 4 * 3 > max + 3 {
        return Err(too_large(max));
    }
    let decoded = engine.decode(&cleaned).map_err(not_base64)?;
    if decoded.starts_with(&GZIP_MAGIC) {
        return gunzip(&decoded, max);
    }
    bounded(decoded, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression as Level, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Level::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn json_of(req: Request<'_>) -> Result<String, WireError> {
        extract(&req, &Limits::default()).map(|p| p.json)
    }

    #[test]
    fn text_that_is_no_json_says_what_was_tried() {
        // "not json" is valid base64 by chance ("not+json"), of bytes that are no text.
        for body in [&b"not json"[..], b"hello", b"<xml/>"] {
            let e = json_of(Request {
                body,
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(e.to_string(), UNRECOGNISED, "{body:?}");
        }
        // Base64 of JSON still decodes.
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"[1]");
        assert_eq!(
            json_of(Request {
                body: b64.as_bytes(),
                ..Default::default()
            })
            .unwrap(),
            "[1]"
        );
    }

    #[test]
    fn gzip_by_magic_bytes_and_by_name() {
        let body = gz(b"[1]");
        assert_eq!(
            json_of(Request {
                body: &body,
                ..Default::default()
            })
            .unwrap(),
            "[1]"
        );
        let q = Request {
            body: &body,
            query: Some("compression=gzip-js"),
            ..Default::default()
        };
        assert_eq!(json_of(q).unwrap(), "[1]");
    }

    #[test]
    fn gzip_stops_at_the_limit() {
        let big = vec![b' '; 10_000_000];
        let body = gz(&big);
        let err = extract(
            &Request {
                body: &body,
                ..Default::default()
            },
            &Limits {
                max_payload: 1000,
                max_event: 1000,
            },
        )
        .err();
        assert!(matches!(err, Some(WireError::TooLarge(_))));
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), Level::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            enc.write_all(data).unwrap();
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn deflate_brotli_and_zstd_by_content_encoding() {
        let json = r#"[{"event":"x","distinct_id":"héllo"}]"#.as_bytes();
        for (name, body) in [
            ("deflate", zlib(json)),
            ("br", br(json)),
            ("zstd", zstd(json)),
        ] {
            let req = Request {
                body: &body,
                content_encoding: Some(name),
                ..Default::default()
            };
            assert_eq!(json_of(req).unwrap().as_bytes(), json, "{name}");
            let req = Request {
                body: b"[1]",
                content_encoding: Some(name),
                ..Default::default()
            };
            let e = json_of(req).unwrap_err();
            assert!(e.to_string().contains("is not valid"), "{name}: {e}");
        }
    }

    #[test]
    fn every_codec_stops_at_the_limit() {
        let big = vec![b' '; 10_000_000];
        let limits = Limits {
            max_payload: 1000,
            max_event: 1000,
        };
        for (name, body) in [
            ("gzip", gz(&big)),
            ("deflate", zlib(&big)),
            ("br", br(&big)),
            ("zstd", zstd(&big)),
        ] {
            let req = Request {
                body: &body,
                content_encoding: Some(name),
                ..Default::default()
            };
            let err = extract(&req, &limits).err();
            assert!(
                matches!(err, Some(WireError::TooLarge(_))),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn form_base64_and_query_data() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(br#"{"a":1}"#);
        let form = format!("data={}", b64.replace('+', "%2B"));
        let req = Request {
            body: form.as_bytes(),
            content_type: Some("application/x-www-form-urlencoded"),
            ..Default::default()
        };
        assert_eq!(json_of(req).unwrap(), r#"{"a":1}"#);
        let q = format!("data={b64}&compression=base64&_=1700000000000");
        let p = extract(
            &Request {
                query: Some(&q),
                ..Default::default()
            },
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(p.json, r#"{"a":1}"#);
        assert_eq!(p.sent_at_ms, Some(1700000000000));
    }

    #[test]
    fn lz64_in_form_field() {
        let packed = lz_str::compress_to_base64(r#"[{"x":"héllo"}]"#);
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", &packed)
            .append_pair("compression", "lz64")
            .finish();
        let req = Request {
            body: form.as_bytes(),
            ..Default::default()
        };
        assert_eq!(json_of(req).unwrap(), r#"[{"x":"héllo"}]"#);
    }

    #[test]
    fn clear_errors() {
        let e = json_of(Request {
            body: b"%%%",
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), UNRECOGNISED);
        let e = json_of(Request {
            body: b"abc",
            query: Some("compression=gzip"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), GZIP_NAMED);
        let e = json_of(Request {
            body: b"\xff\xfe",
            query: Some("compression=lz64"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), LZ64_NOT_TEXT);
        let e = json_of(Request {
            body: b"[]",
            query: Some("compression=lz4"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("unsupported compression `lz4`"),
            "{e}"
        );
        let bad_gz = [0x1f, 0x8b, 0, 1, 2, 3];
        let e = json_of(Request {
            body: &bad_gz,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("not valid gzip"), "{e}");
        let e = json_of(Request::default()).unwrap_err();
        assert!(e.to_string().contains("empty request"), "{e}");
    }

    #[test]
    fn send_time_and_form_bytes() {
        let body = br#"{"a":1}"#;
        let e = extract(
            &Request {
                body,
                query: Some("_=soon"),
                ..Default::default()
            },
            &Limits::default(),
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .contains("`_` in the query must be the send time"),
            "{e}"
        );
        let p = extract(
            &Request {
                body,
                query: Some("_="),
                ..Default::default()
            },
            &Limits::default(),
        )
        .ok()
        .unwrap();
        assert_eq!(p.sent_at_ms, None);
        let e = json_of(Request {
            body: b"data=%7B%22a%22%3A%22%FF%22%7D",
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
        assert_eq!(
            json_of(Request {
                body: b"data=%7B%22a+b%22%3A1%7D&x",
                ..Default::default()
            })
            .unwrap(),
            r#"{"a b":1}"#
        );
        assert_eq!(
            json_of(Request {
                body: b"null",
                ..Default::default()
            })
            .unwrap(),
            "null"
        );
    }
}
