//! Health and metrics.

use super::AppState;
use super::error::fault;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn healthz(State(st): State<AppState>) -> Response {
    let store = st.key_store.clone();
    let detail = match tokio::task::spawn_blocking(move || store.generation()).await {
        Ok(Ok(_)) => return Json(json!({"status": "ok"})).into_response(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("the health check failed: {e}"),
    };
    // The store's error names its nodes and their replies: the log gets it, not the prober.
    let body = json!({"status": "error", "detail": "storage is unavailable; retry later"});
    fault(StatusCode::SERVICE_UNAVAILABLE, body, Some(detail))
}

/// Prometheus text; for admins unless the collector runs with `--metrics-public` (see
/// [`super::Access::Metrics`]).
pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut text = st.metrics.render();
    st.rate.render(&mut text);
    crate::metrics::render_queues(&mut text, &st.admission, &st.metrics.store_queue);
    let store = st.events.clone();
    match tokio::task::spawn_blocking(move || store.vitals()).await {
        Ok(vitals) => vitals.render(&mut text),
        Err(e) => tracing::warn!(error = %e, "cannot read the store's size and rollup lag"),
    }
    crate::metrics::render_build_info(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
