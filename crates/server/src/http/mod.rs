//! Routes and nothing else; handlers live in their own modules.

mod admin;
pub mod api;
mod capture;
mod dashboard;
pub mod error;
mod ops;
mod params;
pub mod request_id;
mod static_files;

use crate::insights::floor::KFloor;
use crate::keycache::KeyCache;
use crate::metrics::Metrics;
use crate::store::{EventStore, KeyStore};
use axum::Router;
use axum::routing::{MethodRouter, get};
use std::sync::Arc;
use tower_http::cors::CorsLayer;

/// The capture paths PostHog clients use; each is served with and without a trailing slash.
pub const CAPTURE_PATHS: &[&str] = &["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];

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
    pub events: Arc<dyn EventStore>,
    pub key_store: Arc<dyn KeyStore>,
    pub keys: Arc<KeyCache>,
    /// The only way to the insights: every answer passes the k floor.
    pub insights: Arc<KFloor>,
    pub metrics: Arc<Metrics>,
    pub limits: HttpLimits,
    pub sessions: Arc<admin::Sessions>,
    pub settings: api::ApiSettings,
}

pub fn router(state: AppState) -> Router {
    let capture: MethodRouter<AppState> = get(capture::capture).post(capture::capture);
    let flags: MethodRouter<AppState> = get(capture::no_flags).post(capture::no_flags);
    let mut public = Router::new();
    for path in CAPTURE_PATHS {
        public = public
            .route(path, capture.clone())
            .route(&format!("{path}/"), capture.clone());
    }
    // posthog-js reads its remote config (compression, features) from here.
    public = public.route("/array/{token}/config", flags.clone());
    for path in ["/decide", "/flags"] {
        public = public
            .route(path, flags.clone())
            .route(&format!("{path}/"), flags.clone());
    }
    // Capture is called from browsers on other origins; the admin API below is not.
    let public = public.layer(CorsLayer::very_permissive());
    Router::new()
        .merge(public)
        .merge(static_files::routes())
        .merge(dashboard::routes())
        .merge(api::routes())
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
