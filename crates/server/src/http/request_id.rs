//! Every answer carries an `x-request-id`: the sender's, when it is sane, or one made
//! here. A 5xx answer also names it in its JSON body, and its detail is logged once, at
//! error level, under that id, so an operator can find what a client was not told.

use super::error::Fault;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id accepted from a sender.
const MAX_LEN: usize = 128;

/// An id that is safe to log and to send back: 1 to 128 letters, digits and `-_.:`.
pub fn sane(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new id: random per process, then counted, so making one costs no system call.
fn new_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    format!("{prefix}-{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub async fn layer(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map_or_else(new_id, str::to_string);
    // The route, not the path: a path can name a machine.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let mut res = next.run(req).await;
    if let Some(Fault { mut body, detail }) = res.extensions_mut().remove::<Fault>() {
        let route = route.as_ref().map_or("?", MatchedPath::as_str);
        let status = res.status().as_u16();
        match detail {
            Some(error) => tracing::error!(request_id = %id, %method, %route, status, %error,
                "answered with a server error"),
            None => tracing::debug!(request_id = %id, %method, %route, status, "answered 5xx"),
        }
        body["request_id"] = id.clone().into();
        *res.body_mut() = Body::from(serde_json::to_vec(&body).unwrap_or_default());
        res.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_sane_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert!(sane(&a) && sane(&b), "{a} {b}");
        assert_ne!(a, b);
    }

    #[test]
    fn only_short_plain_ids_are_taken_from_the_sender() {
        assert!(sane("probe-7.a_b:c"));
        for bad in [
            "",
            "two words",
            "a\"b",
            "line\nbreak",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(!sane(bad), "{bad:?}");
        }
    }
}
