//! The admin API under `/api/v1/`: insights, raw data, erasure, the dashboard's session.
//! Who may call each handler is said once, in the route table (`super::table`).

use super::AppState;
use super::auth::{SESSION_COOKIE, SESSION_TTL, role_of, session_id};
use super::error::ApiError;
use super::params::{Params, buckets};
use crate::insights::floor::{Answer, Folded, KFloor};
use crate::insights::{Group, Interval, Scope, SqlLimits};
use crate::store::StoreError;
use crate::tokens::Role;
use anonstats_wire::format_rfc3339_ms;
use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Properties whose shares the systems insight reports.
pub const SYSTEM_PROPERTIES: &[&str] = &[
    "host_os_name",
    "host_os_id",
    "system_kernel_name",
    "system_kernel_version",
    "system_architecture",
    "system_virtualization",
    "system_container",
];

/// Events of the cloud features and the property that carries their error code.
pub const CLOUD_EVENTS: &[&str] = &[
    "CLOUD_BUILD_FAIL",
    "CLOUD_UNAVAILABLE",
    "CLOUD_CONNECT_FAIL",
];
pub const ERROR_CODE: &str = "error_code";

const ACCURACY: &str =
    "exact up to 512 machines per bucket; above, a HyperLogLog estimate (typical error 1.6%)";

/// Every admin request that changes something (any method but GET, HEAD and OPTIONS)
/// must say `Content-Type: application/json`, with or without a body. A page on another
/// origin can make a browser send a form or a `text/plain` body, with the session
/// cookie of a sibling origin, without asking first; it cannot send this Content-Type
/// without a CORS preflight, which the admin API never answers.
pub(super) async fn json_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || is_json(req.headers())
    {
        return next.run(req).await;
    }
    ApiError::UnsupportedMediaType(format!(
        "{} {} requires `Content-Type: application/json` (also without a body)",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The session cookie's attributes; `Secure` when the collector is reached over https.
/// Under a base path, the cookie is that path's alone: the other sites of the host never
/// receive it.
fn cookie(st: &AppState, value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    let secure = if st.settings.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let path = if st.base_path.is_empty() {
        "/"
    } else {
        &st.base_path
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Store(StoreError::Backend(e.to_string())))?
        .map_err(ApiError::Store)
}

/// The scope of a question, aligned to the resolution `align` needs.
async fn scope_of(st: &AppState, p: &Params, align: Interval) -> Result<Scope, ApiError> {
    let keys = st.key_store.clone();
    let projects = blocking(move || keys.projects()).await?;
    p.scope(&projects, align, chrono::Utc::now().timestamp_millis())
}

fn range(scope: &Scope) -> Value {
    json!({"from": format_rfc3339_ms(scope.from_ms), "to": format_rfc3339_ms(scope.to_ms)})
}

/// A series with a point for every bucket of the range, zero where nothing happened.
fn filled(points: &[(i64, u64)], interval: Interval, scope: &Scope, name: &str) -> Vec<Value> {
    let by: HashMap<i64, u64> = points.iter().copied().collect();
    buckets(interval, scope.from_ms, scope.to_ms)
        .into_iter()
        .map(|t| json!({"t": format_rfc3339_ms(t), name: by.get(&t).copied().unwrap_or(0)}))
        .collect()
}

/// Adds why the floor withheld (part of) an answer, when it did.
fn with_folded(mut answer: Value, folded: Option<&Folded>) -> Value {
    if let (Some(obj), Some(f)) = (answer.as_object_mut(), folded) {
        obj.insert("folded".into(), json!(f));
    }
    answer
}

fn groups_json(groups: &[Group]) -> Vec<Value> {
    groups
        .iter()
        .map(|g| json!({"value": g.value, "count": g.count, "machines": g.machines}))
        .collect()
}

pub(super) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// Opens a dashboard session for an admin or viewer token; the answer says which.
pub(super) async fn login(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token")?.as_str().map(str::to_string))
        .ok_or_else(|| {
            ApiError::BadRequest("send {\"token\": \"<admin or viewer token>\"}".into())
        })?;
    let role = role_of(&st, token.clone()).await?;
    let id = st.sessions.open(&token);
    let mut resp = Json(json!({"status": "ok", "role": role})).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&st, &id, SESSION_TTL.as_secs())?);
    Ok(resp)
}

/// The role of the caller's credential, so that the dashboard shows only what it may use.
pub(super) async fn session(Extension(role): Extension<Role>) -> Json<Value> {
    Json(json!({"role": role}))
}

pub(super) async fn logout(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        st.sessions.close(&id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = cookie(&st, "", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub(super) async fn projects(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let keys = st.key_store.clone();
    let list = blocking(move || keys.projects()).await?;
    Ok(Json(
        json!({"projects": list.iter().map(|p| json!({"id": p.id, "name": p.name})).collect::<Vec<_>>()}),
    ))
}

/// The floor's answer to a time-series question.
type Series = Result<Answer<Vec<(i64, u64)>>, StoreError>;

/// A time-series insight: scope and interval from the query, the store's points, a point
/// for every bucket of the range; no points when the floor folded the answer.
async fn series_of(
    st: &AppState,
    q: Option<String>,
    name: &str,
    ask: fn(&KFloor, &Scope, Interval) -> Series,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let interval = p.interval()?;
    let scope = scope_of(st, &p, interval).await?;
    let (store, s) = (st.insights.clone(), scope.clone());
    let a = blocking(move || ask(&store, &s, interval)).await?;
    let series = match a.folded {
        Some(_) => vec![],
        None => filled(&a.value, interval, &scope, name),
    };
    let answer = json!({"range": range(&scope), "interval": interval, "source": a.source,
        "series": series});
    let answer = with_folded(answer, a.folded.as_ref());
    Ok(answer.as_object().cloned().unwrap_or_default())
}

pub(super) async fn trend(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Object(
        series_of(&st, q, "count", |s, scope, i| s.trend(scope, i)).await?,
    )))
}

pub(super) async fn breakdown(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let property = p
        .get("property")
        .ok_or_else(|| {
            ApiError::BadRequest(
                "`property` is required, e.g. property=product_version (GET /api/v1/properties \
                 lists the properties seen)"
                    .into(),
            )
        })?
        .to_string();
    let limit = p.limit(10)?;
    let scope = scope_of(&st, &p, Interval::Day).await?;
    let store = st.insights.clone();
    let (s, prop) = (scope.clone(), property.clone());
    let a = blocking(move || store.breakdown(&s, &prop, None, limit)).await?;
    let answer = json!({"range": range(&scope), "property": property, "k": st.settings.k,
        "source": a.source, "rows": groups_json(&a.value.0)});
    Ok(Json(with_folded(answer, a.folded.as_ref())))
}

pub(super) async fn active(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut answer = series_of(&st, q, "machines", |s, scope, i| s.active(scope, i)).await?;
    answer.insert("accuracy".into(), ACCURACY.into());
    Ok(Json(Value::Object(answer)))
}

/// Shares of `property` values among the machines of each bucket, k-folded.
async fn shares_over_time(st: &AppState, p: &Params, property: &str) -> Result<Value, ApiError> {
    let interval = match p.interval()? {
        Interval::Hour => {
            return Err(ApiError::BadRequest(
                "`interval` hour is not offered for shares: use day, week or month".into(),
            ));
        }
        i => i,
    };
    let scope = scope_of(st, p, interval).await?;
    let limit = p.limit(10)?;
    let (store, s, prop) = (st.insights.clone(), scope.clone(), property.to_string());
    let (shares, totals) = blocking(move || {
        Ok((
            store.breakdown(&s, &prop, Some(interval), limit)?,
            store.active(&s, interval)?,
        ))
    })
    .await?;
    let folded = shares.value.0;
    let totals: HashMap<i64, u64> = totals.value.into_iter().collect();
    let series: Vec<Value> = buckets(interval, scope.from_ms, scope.to_ms)
        .into_iter()
        .filter(|_| shares.folded.is_none())
        .map(|t| {
            let total = totals.get(&t).copied().unwrap_or(0);
            let values: Vec<Value> = folded
                .iter()
                .filter(|g| g.bucket_ms == t)
                .map(|g| {
                    let share = if total == 0 { 0.0 } else { g.machines as f64 / total as f64 };
                    json!({"value": g.value, "machines": g.machines, "count": g.count, "share": share})
                })
                .collect();
            json!({"t": format_rfc3339_ms(t), "machines": total, "values": values})
        })
        .collect();
    let answer = json!({"range": range(&scope), "interval": interval, "property": property,
        "k": st.settings.k, "source": shares.source, "series": series});
    Ok(with_folded(answer, shares.folded.as_ref()))
}

pub(super) async fn versions(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    Ok(Json(shares_over_time(&st, &p, "product_version").await?))
}

pub(super) async fn systems(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let limit = p.limit(10)?;
    // `property` picks some of them, so that each can be asked for on its own.
    let wanted: Vec<&str> = p.all("property").collect();
    if let Some(bad) = wanted.iter().find(|w| !SYSTEM_PROPERTIES.contains(w)) {
        return Err(ApiError::BadRequest(format!(
            "`property` {bad:?} is not a system property; use one of {}",
            SYSTEM_PROPERTIES.join(", ")
        )));
    }
    let props: Vec<&'static str> = SYSTEM_PROPERTIES
        .iter()
        .copied()
        .filter(|p| wanted.is_empty() || wanted.contains(p))
        .collect();
    let scope = scope_of(&st, &p, Interval::Day).await?;
    // One blocking task per property, so that they run side by side.
    let tasks: Vec<_> = props
        .into_iter()
        .map(|prop| {
            let (store, s) = (st.insights.clone(), scope.clone());
            tokio::spawn(blocking(move || {
                Ok((prop, store.breakdown(&s, prop, None, limit)?))
            }))
        })
        .collect();
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        all.push(
            task.await
                .map_err(|e| ApiError::Store(StoreError::Backend(e.to_string())))??,
        );
    }
    let mut out = serde_json::Map::new();
    // The question is folded as a whole or not at all, so one reason covers every property.
    let folded = all.iter().find_map(|(_, a)| a.folded.clone());
    for (prop, a) in all {
        let (groups, totals) = a.value;
        let total: u64 = totals.values().sum();
        let rows: Vec<Value> = groups
            .iter()
            .map(|g| {
                let share = if total == 0 {
                    0.0
                } else {
                    g.machines as f64 / total as f64
                };
                json!({"value": g.value, "count": g.count, "machines": g.machines, "share": share})
            })
            .collect();
        out.insert(prop.to_string(), Value::Array(rows));
    }
    let answer = json!({"range": range(&scope), "k": st.settings.k, "properties": out});
    Ok(Json(with_folded(answer, folded.as_ref())))
}

pub(super) async fn crashes(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let limit = p.limit(20)?;
    let scope = scope_of(&st, &p, Interval::Day).await?;
    let (store, s) = (st.insights.clone(), scope.clone());
    let a = blocking(move || store.crash_sites(&s, limit)).await?;
    let sites: Vec<Value> = a
        .value
        .into_iter()
        .map(|c| {
            json!({"function": c.function, "file": c.file, "line": c.line, "count": c.count, "machines": c.machines,
                "first_seen": format_rfc3339_ms(c.first_seen_ms), "last_seen": format_rfc3339_ms(c.last_seen_ms),
                "versions": c.versions})
        })
        .collect();
    let answer = json!({"range": range(&scope), "k": st.settings.k, "sites": sites});
    Ok(Json(with_folded(answer, a.folded.as_ref())))
}

pub(super) async fn cloud(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let interval = p.interval()?;
    let mut scope = scope_of(&st, &p, interval).await?;
    scope.events = CLOUD_EVENTS.iter().map(|e| e.to_string()).collect();
    let (store, s) = (st.insights.clone(), scope.clone());
    let (per_event, codes) = blocking(move || {
        let per_event = CLOUD_EVENTS
            .iter()
            .map(|e| {
                let one = Scope {
                    events: vec![e.to_string()],
                    ..s.clone()
                };
                Ok((*e, store.trend(&one, interval)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((
            per_event,
            store.breakdown(&s, ERROR_CODE, Some(interval), 10)?,
        ))
    })
    .await?;
    let events: serde_json::Map<String, Value> = per_event
        .iter()
        .map(|(e, a)| {
            let series = match a.folded {
                Some(_) => vec![],
                None => filled(&a.value, interval, &scope, "count"),
            };
            (e.to_string(), Value::Array(series))
        })
        .collect();
    // The question as a whole is `folded`; an event sent by fewer than k machines has
    // no points and its reason in `folded_events`.
    let folded_events: serde_json::Map<String, Value> = per_event
        .iter()
        .filter_map(|(e, a)| Some((e.to_string(), json!(a.folded.as_ref()?))))
        .collect();
    let codes_folded = codes.folded;
    let codes: Vec<Value> = codes
        .value
        .0
        .iter()
        .map(|g| json!({"t": format_rfc3339_ms(g.bucket_ms), "code": g.value, "count": g.count, "machines": g.machines}))
        .collect();
    let mut answer = json!({"range": range(&scope), "interval": interval, "k": st.settings.k,
        "events": events, "codes": codes});
    if codes_folded.is_none() && !folded_events.is_empty() {
        answer["folded_events"] = Value::Object(folded_events);
    }
    Ok(Json(with_folded(answer, codes_folded.as_ref())))
}

pub(super) async fn recent(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let limit = p.limit(50)?;
    let scope = scope_of(&st, &p, Interval::Day).await?;
    let (store, project) = (st.insights.clone(), scope.project_id);
    let events = blocking(move || store.recent(project, limit)).await?;
    let events: Vec<Value> = events
        .into_iter()
        .map(|e| {
            json!({"uuid": e.uuid.to_string(), "event": e.event, "distinct_id": e.distinct_id,
                "timestamp": format_rfc3339_ms(e.timestamp_ms),
                "properties": serde_json::from_str::<Value>(&e.properties).unwrap_or(Value::Null)})
        })
        .collect();
    Ok(Json(json!({"events": events})))
}

pub(super) async fn properties(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let scope = scope_of(&st, &p, Interval::Day).await?;
    let (store, s, k) = (st.insights.clone(), scope.clone(), st.settings.k);
    let props = blocking(move || store.properties(&s)).await?;
    Ok(Json(
        json!({"range": range(&scope), "k": k, "properties": props}),
    ))
}

pub(super) async fn sql(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let query = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("sql")?.as_str().map(str::to_string))
        .ok_or_else(|| ApiError::BadRequest("send {\"sql\": \"SELECT ...\"}".into()))?;
    let (store, limits) = (st.insights.clone(), st.settings.sql);
    let result = blocking(move || store.sql(&query, limits)).await?;
    Ok(Json(serde_json::to_value(result).unwrap_or(Value::Null)))
}

pub(super) async fn erase(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let scope = scope_of(&st, &p, Interval::Day).await?;
    let (store, project) = (st.insights.clone(), scope.project_id);
    let machine = id.clone();
    let deleted = blocking(move || store.erase_machine(project, &machine)).await;
    st.metrics.erasure_ran(deleted.as_ref().ok().copied());
    let deleted = deleted?;
    tracing::info!(deleted, "erased one machine's events");
    Ok(Json(json!({"machine": id, "deleted_events": deleted})))
}

/// Limits and knobs of the admin API.
#[derive(Debug, Clone, Copy)]
pub struct ApiSettings {
    /// The k-anonymity floor of every breakdown.
    pub k: u64,
    pub sql: SqlLimits,
    /// The session cookie carries `Secure` (the collector's public URL is https).
    pub secure_cookie: bool,
    /// `/metrics` answers without admin credentials.
    pub metrics_public: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            k: 5,
            sql: SqlLimits::default(),
            secure_cookie: false,
            metrics_public: false,
        }
    }
}
