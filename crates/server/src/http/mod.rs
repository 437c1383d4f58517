//! Routes and nothing else: one table of every route and who may call it, and the
//! router built from it. Handlers live in their own modules.

pub mod api;
mod auth;
mod capture;
mod capture_v1;
mod dashboard;
pub mod error;
mod ops;
mod params;
pub mod request_id;
mod static_files;

use crate::http::error::ApiError;
use crate::insights::floor::KFloor;
use crate::keycache::KeyCache;
use crate::metrics::{Metrics, RouteClass};
use crate::store::{EventStore, KeyStore};
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodFilter, MethodRouter, on};
use std::sync::Arc;
use tower_http::cors::CorsLayer;

/// The capture paths PostHog clients use; each is served with and without a trailing slash.
pub const CAPTURE_PATHS: &[&str] = &["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];

pub use capture_v1::CAPTURE_V1_PATH;

/// Size limits, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub request_body: usize,
    pub batch_body: usize,
    pub max_event: usize,
    /// How long a capture request's body may take to arrive (408 after).
    pub body_timeout: std::time::Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            request_body: 2 << 20,
            batch_body: 20 << 20,
            max_event: 1 << 20,
            body_timeout: std::time::Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub admission: Arc<crate::admission::Admission>,
    pub rate: Arc<crate::ratelimit::RateLimiter>,
    pub events: Arc<dyn EventStore>,
    pub key_store: Arc<dyn KeyStore>,
    pub keys: Arc<KeyCache>,
    /// The only way to the insights: every answer passes the k floor.
    pub insights: Arc<KFloor>,
    pub metrics: Arc<Metrics>,
    pub limits: HttpLimits,
    pub sessions: Arc<auth::Sessions>,
    pub settings: api::ApiSettings,
    /// The path every route is served under (`""` at the root): the session cookie's.
    pub base_path: Arc<str>,
}

/// Who may call a route, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Senders of events, from any origin: the write token travels in the request, and
    /// the capture handler checks it.
    Capture,
    /// Anyone, from any origin: feature flags and remote config, which posthog-js asks
    /// for before it sends.
    Open,
    /// Anyone, with no CORS for other origins: the dashboard's files, the browser
    /// script, health, the API description, log-in and log-out.
    Public,
    /// Viewers and admins: the insights, and what the dashboard reads.
    Viewer,
    /// Admins only: raw events, SQL, erasure.
    Admin,
    /// Admins, or anyone when the collector runs with `--metrics-public`.
    Metrics,
}

/// Where a route is served when `serve --admin-listen` gives the dashboard, the APIs and
/// `/metrics` an address of their own; without it one listener serves every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public address: what senders and web pages that embed the script call.
    Public,
    /// The admin address: the dashboard, every `/api/v1` route and `/metrics`.
    Admin,
    /// Both addresses (health checks).
    Both,
}

impl Listener {
    /// Whether a route placed at `self` is served by a router for `side` (`None`: the
    /// one listener that serves everything).
    pub fn serves(self, side: Option<Listener>) -> bool {
        match side {
            None => true,
            Some(side) => self == Listener::Both || self == side,
        }
    }
}

/// One method on one path, who may call it, where it is served, and its handler.
pub struct Route {
    pub method: Method,
    pub path: String,
    pub access: Access,
    pub listener: Listener,
    handler: MethodRouter<AppState>,
}

impl Route {
    fn on(mut self, listener: Listener) -> Route {
        self.listener = listener;
        self
    }
}

fn route<H, T>(method: Method, path: &str, access: Access, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    // What senders call is public; everything else is on the admin address unless the
    // table says otherwise, so a new route is never exposed by mistake.
    let listener = match access {
        Access::Capture | Access::Open => Listener::Public,
        _ => Listener::Admin,
    };
    Route {
        method,
        path: path.to_string(),
        access,
        listener,
        handler: on(filter, handler),
    }
}

/// Every route the collector serves. The router is built from this table alone, so
/// the tests that walk it (every route with every kind of credential) see every route.
pub fn table() -> Vec<Route> {
    use Access::*;
    use Method as M;
    let mut t = Vec::new();
    for path in CAPTURE_PATHS {
        for p in [path.to_string(), format!("{path}/")] {
            t.push(route(M::GET, &p, Capture, capture::capture));
            t.push(route(M::POST, &p, Capture, capture::capture));
        }
    }
    // PostHog's capture V1: Bearer token, an answer per event.
    for p in [CAPTURE_V1_PATH.to_string(), format!("{CAPTURE_V1_PATH}/")] {
        t.push(route(M::POST, &p, Capture, capture_v1::capture_v1));
    }
    // posthog-js reads its remote config (compression, features) from here.
    for p in [
        "/array/{token}/config",
        "/decide",
        "/decide/",
        "/flags",
        "/flags/",
    ] {
        t.push(route(M::GET, p, Open, capture::no_flags));
        t.push(route(M::POST, p, Open, capture::no_flags));
    }
    t.extend([
        route(
            M::GET,
            "/static/anonstats.js",
            Public,
            static_files::script_js,
        )
        .on(Listener::Public),
        route(
            M::GET,
            "/static/anonstats.mjs",
            Public,
            static_files::script_mjs,
        )
        .on(Listener::Public),
        route(M::GET, "/", Public, dashboard::index),
        route(M::GET, "/dashboard/{*path}", Public, dashboard::asset),
        route(M::GET, "/healthz", Public, ops::healthz).on(Listener::Both),
        route(M::GET, "/metrics", Metrics, ops::metrics),
        route(M::GET, "/api/v1/openapi.json", Public, api::openapi),
        route(M::POST, "/api/v1/session", Public, api::login),
        route(M::DELETE, "/api/v1/session", Public, api::logout),
        route(M::GET, "/api/v1/session", Viewer, api::session),
        route(M::GET, "/api/v1/projects", Viewer, api::projects),
        route(M::GET, "/api/v1/insights/trend", Viewer, api::trend),
        route(M::GET, "/api/v1/insights/breakdown", Viewer, api::breakdown),
        route(M::GET, "/api/v1/insights/active", Viewer, api::active),
        route(M::GET, "/api/v1/insights/versions", Viewer, api::versions),
        route(M::GET, "/api/v1/insights/systems", Viewer, api::systems),
        route(M::GET, "/api/v1/insights/crashes", Viewer, api::crashes),
        route(M::GET, "/api/v1/insights/cloud", Viewer, api::cloud),
        route(M::GET, "/api/v1/properties", Viewer, api::properties),
        // Raw events, unfolded: polled, the newest events are an export.
        route(M::GET, "/api/v1/events/recent", Admin, api::recent),
        route(M::POST, "/api/v1/sql", Admin, api::sql),
        route(M::DELETE, "/api/v1/machines/{id}", Admin, api::erase),
    ]);
    t
}

/// The latency class a route is timed under on `/metrics`, if any.
fn timed(access: Access) -> Option<RouteClass> {
    match access {
        Access::Viewer => Some(RouteClass::Insight),
        Access::Admin => Some(RouteClass::Admin),
        _ => None,
    }
}

/// Times a request from its arrival to its answer, refusals included.
async fn time_api(
    axum::extract::State((metrics, class)): axum::extract::State<(Arc<Metrics>, RouteClass)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.api_request(class, started.elapsed().as_secs_f64());
    response
}

/// The routes served on one listener (`side`; `None`: every route), each under the
/// state's base path (`""`, or `/stats` behind a proxy that forwards a sub-path).
pub fn router(state: AppState, side: Option<Listener>) -> Router {
    // Capture is called from browsers on other origins; nothing else is.
    let mut any_origin = Router::new();
    let mut own_origin = Router::new();
    let base_path = state.base_path.clone();
    for mut r in table().into_iter().filter(|r| r.listener.serves(side)) {
        if !base_path.is_empty() {
            if r.path == "/" {
                // The dashboard's links are relative to its page, which must end in `/`.
                let to = format!("{base_path}/");
                own_origin = own_origin.route(
                    &base_path,
                    axum::routing::get(
                        move || async move { axum::response::Redirect::permanent(&to) },
                    ),
                );
            }
            r.path = format!("{base_path}{}", r.path);
        }
        match r.access {
            Access::Capture | Access::Open => any_origin = any_origin.route(&r.path, r.handler),
            access => {
                // The credential is checked first, then the Content-Type of a write.
                let mut handler = r
                    .handler
                    .route_layer(from_fn(api::json_only))
                    .route_layer(from_fn_with_state((state.clone(), access), auth::guard));
                if let Some(class) = timed(access) {
                    handler = handler
                        .route_layer(from_fn_with_state((state.metrics.clone(), class), time_api));
                }
                own_origin = own_origin.route(&r.path, handler);
            }
        }
    }
    let described = format!("{base_path}/api/v1/openapi.json");
    let wrong_method = {
        let described = described.clone();
        move |method: Method, uri: axum::http::Uri| async move {
            ApiError::MethodNotAllowed(format!(
                "{} does not take {method}; every route and its methods are described at \
                 {described}",
                uri.path()
            ))
        }
    };
    // Inside the CORS layer, which answers a preflight (OPTIONS) before any route.
    let any_origin = any_origin
        .method_not_allowed_fallback(wrong_method.clone())
        .layer(CorsLayer::very_permissive());
    Router::new()
        .merge(any_origin)
        .merge(own_origin.method_not_allowed_fallback(wrong_method))
        .fallback(move |method: Method, uri: axum::http::Uri| async move {
            ApiError::NotFound(format!(
                "no route {method} {}; every route is described at {described}",
                uri.path()
            ))
        })
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
