//! The capture endpoints: decode, authenticate, filter, commit, answer.

use super::AppState;
use super::error::ApiError;
use crate::admission::Ticket;
use crate::keycache::{ProjectEntry, Resolved};
use crate::store::{Inserted, NewEvent, StoreError};
use crate::{privacy, rollup};
use anonstats_wire::{Decoded, Event, Limits, Request, decode_at};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Bodies above this are decoded on the blocking pool so a large gzip batch cannot stall
/// the small requests sharing its worker thread. A batch of 100 agent events (about
/// 80 KB) decodes in about half a millisecond: handing it to another thread costs more
/// than that stall (7% fewer events/s in `bench/ingest` at 64 KB).
pub(super) const INLINE_DECODE_MAX: usize = 128 * 1024;

pub async fn capture(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let outcome = handle(&st, uri, headers, body).await;
    st.metrics.latency.observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(done) => {
            st.metrics.accepted(done.stored, done.duplicates);
            Json(json!({"status": 1})).into_response()
        }
        Err((err, events)) => {
            st.metrics.rejected(err.reject_reason(), events);
            err.into_response()
        }
    }
}

async fn handle(
    st: &AppState,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Inserted, (ApiError, usize)> {
    let limit = if uri.path().starts_with("/batch") {
        st.limits.batch_body
    } else {
        st.limits.request_body
    };
    let (bytes, ticket) = receive(st, &headers, body, limit)
        .await
        .map_err(|e| (e, 0))?;
    let limits = Limits {
        max_payload: limit,
        max_event: st.limits.max_event,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let inline = decodes_inline(&bytes, &uri, &headers);
    let decoded = off_worker(inline, move || decode(&bytes, &uri, &headers, &limits, now))
        .await
        .map_err(|e| (e, 0))?;
    let n = decoded.events.len();
    let project = resolve(st, &decoded.token).await.map_err(|e| (e, n))?;
    commit(st, &project, decoded.events, ticket, now).await
}

/// Reads a capture body within the body timeout, its bytes counted in `ticket`. A
/// request whose announced body cannot fit is shed before it is read or decoded: a request
/// shed later has cost its read and decode for nothing, and under overload that work, not
/// the commits, took the cores. A body is held twice while it is decoded: itself and its
/// events.
pub(super) async fn receive(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(Bytes, Ticket), ApiError> {
    let mut ticket = st.admission.ticket();
    let announced = content_length(headers).filter(|&n| n <= limit);
    if st.admission.events_full() || announced.is_some_and(|n| ticket.grow(0, 2 * n).is_err()) {
        drop(ticket);
        tokio::time::timeout(st.limits.body_timeout, drain(body))
            .await
            .ok();
        return Err(ApiError::Store(StoreError::Overloaded));
    }
    let read = read_body(body, limit, announced.unwrap_or(0), &mut ticket);
    let bytes = tokio::time::timeout(st.limits.body_timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout(st.limits.body_timeout))??;
    Ok((bytes, ticket))
}

/// Runs a decode on the worker when `inline`, else on the blocking pool.
pub(super) async fn off_worker<T: Send + 'static>(
    inline: bool,
    decode: impl FnOnce() -> Result<T, anonstats_wire::WireError> + Send + 'static,
) -> Result<T, ApiError> {
    if inline {
        decode().map_err(ApiError::Wire)
    } else {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| ApiError::BodyRead(e.to_string()))?
            .map_err(ApiError::Wire)
    }
}

/// The project a write token names.
pub(super) async fn resolve(st: &AppState, token: &str) -> Result<Arc<ProjectEntry>, ApiError> {
    match st.keys.resolve(token).await {
        Resolved::Project(p) => Ok(p),
        Resolved::Revoked => Err(ApiError::RevokedToken),
        Resolved::Unknown => Err(ApiError::UnknownToken),
    }
}

/// The one way decoded events reach the store, whatever endpoint brought them: rate
/// limits, the privacy filter, the bound on bytes in flight, and a commit that is
/// durable before it resolves.
pub(super) async fn commit(
    st: &AppState,
    project: &ProjectEntry,
    events: Vec<Event>,
    mut ticket: Ticket,
    now: i64,
) -> Result<Inserted, (ApiError, usize)> {
    let n = events.len();
    // Before any work on the events: a sender past its limit costs the decode only.
    // Whatever fails after this gives the charge back.
    let charge = st
        .rate
        .admit(project.id, events.iter().map(|e| e.distinct_id.as_str()))
        .map_err(|l| (ApiError::RateLimited(l), n))?;
    let mut edits = privacy::Edits::default();
    let events: Vec<NewEvent> = events
        .into_iter()
        .map(|mut e| {
            privacy::apply(&mut e.properties, &project.policy, &mut edits);
            let dims = rollup::dims(&e.event, &e.properties);
            NewEvent {
                dims,
                project_id: project.id,
                uuid: e.uuid,
                event: e.event,
                distinct_id: e.distinct_id,
                timestamp_ms: e.timestamp_ms,
                received_ms: now,
                properties: e.properties.into_json(),
            }
        })
        .collect();
    // The body is gone once decoded: from here on the request holds its events.
    let held: usize = events.iter().map(NewEvent::size).sum();
    if ticket.hold(n, held).is_err() {
        st.rate.refund(charge);
        return Err((ApiError::Store(StoreError::Overloaded), n));
    }
    // The commit goes on when the sender gives up, and holds its share until then.
    let (store, rate) = (st.events.clone(), st.rate.clone());
    let inserted = tokio::spawn(async move {
        let inserted = store.insert(events).await;
        drop(ticket);
        if inserted.is_err() {
            rate.refund(charge);
        }
        inserted
    })
    .await
    .map_err(|e| (ApiError::Store(StoreError::Unavailable(e.to_string())), n))?
    .map_err(|e| (ApiError::Store(e), n))?;
    st.metrics.filtered(&edits);
    Ok(inserted)
}

/// Whether a body is decoded on the worker: only small JSON that no codec can inflate. A
/// 100 KB gzip or lz64 body may hold 20 MB of events, so its size says nothing about
/// the work; anything compressed (or a form, whose field may name a codec) goes to the
/// blocking pool.
fn decodes_inline(body: &[u8], uri: &Uri, headers: &HeaderMap) -> bool {
    let plain_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    body.len() <= INLINE_DECODE_MAX
        && plain_json
        && !headers.contains_key(header::CONTENT_ENCODING)
        && !uri.query().is_some_and(|q| q.contains("compression"))
}

/// A client that sent more than the limit still gets a readable answer: the rest of
/// its body is read and thrown away, up to this much, before the 413 goes out.
const DRAIN_MAX: usize = 64 << 20;

/// The body's size as its `Content-Length` announces it.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads a shed request's body and throws it away, so that its sender reads the 503
/// instead of a reset connection, and the connection stays open for its retry.
async fn drain(body: Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > DRAIN_MAX {
            break;
        }
    }
}

/// Reads the body into memory, refusing it once it passes `limit` or once the bytes in
/// flight pass their bound. `announced` bytes, its `Content-Length`, are held already
/// and taken at once, so that the buffer never grows past the body.
async fn read_body(
    body: Body,
    limit: usize,
    announced: usize,
    ticket: &mut Ticket,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = Vec::with_capacity(announced);
    let mut seen = 0usize;
    let mut shed = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        seen += chunk.len();
        // A body without a Content-Length is held as it arrives, twice (see above).
        if seen <= limit
            && !shed
            && ticket
                .grow(0, (2 * seen).saturating_sub(ticket.bytes()))
                .is_err()
        {
            // The rest is read and thrown away, so that the sender reads the 503.
            shed = true;
            let _ = ticket.hold(0, 0);
        }
        if seen <= limit && !shed {
            buf.extend_from_slice(&chunk);
        } else {
            buf = Vec::new();
            if seen > DRAIN_MAX {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::BodyTooLarge { limit });
    }
    if shed {
        return Err(ApiError::Store(StoreError::Overloaded));
    }
    Ok(Bytes::from(buf))
}

fn decode(
    body: &Bytes,
    uri: &Uri,
    headers: &HeaderMap,
    limits: &Limits,
    now: i64,
) -> Result<Decoded, anonstats_wire::WireError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    let req = Request {
        body,
        query: uri.query(),
        content_type: text(header::CONTENT_TYPE),
        content_encoding: text(header::CONTENT_ENCODING),
    };
    decode_at(&req, limits, now)
}

/// `/decide`, `/flags` and posthog-js's remote config: no feature flags, nothing
/// collected automatically, every compression we accept.
pub async fn no_flags() -> Json<serde_json::Value> {
    Json(json!({
        "featureFlags": {},
        "featureFlagPayloads": {},
        "flags": {},
        "errorsWhileComputingFlags": false,
        "quotaLimited": [],
        "supportedCompression": ["gzip", "gzip-js", "lz64", "base64"],
        "sessionRecording": false,
        "autocapture_opt_out": true,
        "capturePerformance": false,
        "heatmaps": false,
        "surveys": false,
        "toolbarParams": {},
        "config": {"enable_collect_everything": false}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_plain_json_is_decoded_on_the_worker() {
        let uri = |q: &str| q.parse::<Uri>().unwrap();
        let none = HeaderMap::new();
        let mut gzip = HeaderMap::new();
        gzip.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let json = br#" {"event": "x"}"#.as_slice();
        let big = [b"[".as_slice(), &vec![b' '; INLINE_DECODE_MAX]].concat();
        let gz = [0x1f, 0x8b, 8, 0].as_slice();
        for (body, u, h, inline) in [
            (json, "/batch/", &none, true),
            (b"[{}]".as_slice(), "/e/", &none, true),
            (json, "/batch/", &gzip, false),
            (json, "/e/?compression=lz64", &none, false),
            (gz, "/batch/", &none, false),
            (
                b"data=eyJ9&compression=lz64".as_slice(),
                "/e/",
                &none,
                false,
            ),
            (big.as_slice(), "/batch/", &none, false),
        ] {
            assert_eq!(
                decodes_inline(body, &uri(u), h),
                inline,
                "{u} {:?}",
                &body[..body.len().min(20)]
            );
        }
    }
}
