//! PostHog's capture V1 (`POST /i/v1/analytics/events`): the token in
//! `Authorization: Bearer`, and an answer per event, keyed by its uuid, so that the
//! sender resends only what may still be stored. The events go the one way every
//! capture request goes ([`super::capture::commit`]); only the answer differs.

use super::AppState;
use super::capture::{commit, off_worker, receive, resolve};
use super::error::ApiError;
use crate::metrics::Reject;
use crate::store::StoreError;
use anonstats_wire::{Keyed, Limits, Request, WireError, decode_v1_at, parse_timestamp_ms};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::time::Instant;

/// The path PostHog's SDKs send to in V1 mode; served with and without a trailing slash.
pub const CAPTURE_V1_PATH: &str = "/i/v1/analytics/events";

/// Which try of one batch this is (1 the first); the same batch keeps its request id.
const ATTEMPT: &str = "posthog-attempt";
const REQUEST_ID: &str = "posthog-request-id";
/// When the sender sent this try (RFC 3339): the clock-skew correction's send time.
const REQUEST_TIMESTAMP: &str = "posthog-request-timestamp";

/// What one event is told.
enum Verdict {
    /// Stored now, or already (a uuid the project had): never resend it.
    Ok,
    /// Refused for good: resending it changes nothing.
    Drop(String),
    /// Not stored, for a passing reason: resend it after `Retry-After`.
    Retry(&'static str),
}

pub async fn capture_v1(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let outcome = handle(&st, &headers, body).await;
    st.metrics.latency.observe(started.elapsed().as_secs_f64());
    let mut response = match outcome {
        Ok(answer) => answer,
        Err((err, events)) => {
            st.metrics.rejected(err.reject_reason(), events);
            err.into_response()
        }
    };
    // The sender matches answers to tries by its request id; echo it.
    if let Some(id) = headers.get(REQUEST_ID) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), id.clone());
    }
    response
}

async fn handle(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, (ApiError, usize)> {
    // Who sends is settled before the body is read.
    let token = bearer(headers).map_err(|e| (e, 0))?;
    let sent_at_ms = check_headers(headers).map_err(|e| (e, 0))?;
    let project = resolve(st, &token).await.map_err(|e| (e, 0))?;

    let limit = st.limits.batch_body;
    let (bytes, ticket) = receive(st, &headers, body, limit)
        .await
        .map_err(|e| (e, 0))?;
    let limits = Limits {
        max_payload: limit,
        max_event: st.limits.max_event,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let encoding = text(headers, header::CONTENT_ENCODING.as_str()).map(str::to_string);
    let inline = encoding.is_none() && bytes.len() <= super::capture::INLINE_DECODE_MAX;
    let keyed = off_worker(inline, move || {
        let req = Request {
            body: &bytes,
            content_type: Some("application/json"),
            content_encoding: encoding.as_deref(),
            query: None,
        };
        decode_v1_at(&req, &limits, sent_at_ms, now)
    })
    .await
    .map_err(|e| (e, 0))?;

    let lib = sdk_info(headers);
    let mut verdicts = Vec::with_capacity(keyed.len());
    let mut good = Vec::with_capacity(keyed.len());
    for Keyed { uuid, event } in keyed {
        match event {
            Ok(mut e) => {
                // V1 senders name themselves in a header instead of in each event.
                if let Some((name, version)) = lib {
                    e.properties.insert_str_if_absent("$lib", name);
                    e.properties.insert_str_if_absent("$lib_version", version);
                }
                verdicts.push((uuid, None));
                good.push(e);
            }
            Err(e) => {
                let why = e.to_string();
                st.metrics
                    .events_refused(ApiError::Wire(e).reject_reason(), 1);
                verdicts.push((uuid, Some(Verdict::Drop(why))));
            }
        }
    }
    let n = good.len();
    let (pending, retry_after) = if good.is_empty() {
        drop(ticket);
        st.metrics.accepted(0, 0);
        (Verdict::Ok, None)
    } else {
        match commit(st, &project, good, ticket, now).await {
            Ok(done) => {
                st.metrics.accepted(done.stored, done.duplicates);
                (Verdict::Ok, None)
            }
            Err((ApiError::RateLimited(l), _)) => {
                st.metrics.rejected(Reject::RateLimited, n);
                (Verdict::Retry("rate_limited"), Some(l.retry_after_secs()))
            }
            Err((ApiError::Store(e), _)) if sheds(&e) => {
                let why = shed_reason(&e);
                tracing::debug!(error = %e, events = n, "capture V1 batch shed");
                st.metrics.rejected(ApiError::Store(e).reject_reason(), n);
                (Verdict::Retry(why), Some(1))
            }
            Err(other) => return Err(other),
        }
    };
    let mut results = Map::with_capacity(verdicts.len());
    for (uuid, verdict) in verdicts {
        let v = match verdict.as_ref().unwrap_or(&pending) {
            Verdict::Ok => json!({"result": "ok"}),
            Verdict::Drop(why) => json!({"result": "drop", "details": why}),
            Verdict::Retry(why) => json!({"result": "retry", "details": why}),
        };
        results.insert(uuid.to_string(), v);
    }
    let mut response = axum::Json(json!({ "results": Value::Object(results) })).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Ok(response)
}

/// Store failures that pass: the events are answered `retry`, not the request refused.
fn sheds(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Overloaded
            | StoreError::DiskFull
            | StoreError::Unavailable(_)
            | StoreError::InUse(_)
    )
}

fn shed_reason(e: &StoreError) -> &'static str {
    match e {
        StoreError::Overloaded => "overloaded",
        StoreError::DiskFull => "disk_full",
        _ => "storage_unavailable",
    }
}

/// `PostHog-Sdk-Info: <$lib>/<$lib_version>`, split at its last `/`.
fn sdk_info(headers: &HeaderMap) -> Option<(&str, &str)> {
    let info = text(headers, "posthog-sdk-info").filter(|v| v.len() <= 200)?;
    let (name, version) = info.rsplit_once('/')?;
    let (name, version) = (name.trim(), version.trim());
    (!name.is_empty() && !version.is_empty()).then_some((name, version))
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The write token of `Authorization: Bearer <token>` (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let how = "send the project's write token as `Authorization: Bearer <token>`";
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized(format!("no Authorization header: {how}")))?;
    let value = value.to_str().unwrap_or("");
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_string())
        }
        _ => Err(ApiError::Unauthorized(format!(
            "the Authorization header is not a Bearer token: {how}"
        ))),
    }
}

/// Checks the V1 headers a sender gives, and returns the send time it states. Each is
/// optional (curl sends none), but one that is given must be well-formed.
fn check_headers(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let mime = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "capture V1 takes a JSON body: send `Content-Type: application/json`, not {:?}",
                ct.to_str().unwrap_or("(not text)")
            )));
        }
    }
    let bad = |name: &str, what: &str, value: &str| {
        ApiError::Wire(WireError::Invalid(format!(
            "the {name} header must be {what}, not {value:?}"
        )))
    };
    let given = |name: &'static str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    if let Some(v) = given(ATTEMPT)
        && !v.trim().parse::<u32>().is_ok_and(|n| n >= 1)
    {
        return Err(bad("PostHog-Attempt", "a whole number from 1", v));
    }
    if let Some(v) = given(REQUEST_ID)
        && uuid::Uuid::parse_str(v.trim()).is_err()
    {
        return Err(bad("PostHog-Request-Id", "a UUID", v));
    }
    match given(REQUEST_TIMESTAMP) {
        None => Ok(None),
        Some(v) => parse_timestamp_ms(v.trim())
            .map(Some)
            .ok_or_else(|| bad("PostHog-Request-Timestamp", "an RFC 3339 time", v)),
    }
}
