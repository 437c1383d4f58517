//! Health and metrics.

use super::AppState;
use super::admin::Admin;
use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn healthz(State(st): State<AppState>) -> Response {
    let store = st.key_store.clone();
    match tokio::task::spawn_blocking(move || store.generation()).await {
        Ok(Ok(_)) => Json(json!({"status": "ok"})).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "detail": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "detail": e.to_string()})),
        )
            .into_response(),
    }
}

/// Prometheus text; for admins (Bearer token or dashboard session) unless the collector
/// runs with `--metrics-public`.
pub async fn metrics(State(st): State<AppState>, req: axum::extract::Request) -> Response {
    if !st.settings.metrics_public {
        let (mut parts, _) = req.into_parts();
        if let Err(e) = Admin::from_request_parts(&mut parts, &st).await {
            return e.into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}
