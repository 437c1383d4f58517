//! The anonstats collector: PostHog-compatible capture, privacy filter, durable storage.

pub mod http;
pub mod keycache;
pub mod metrics;
pub mod privacy;
pub mod store;
pub mod tokens;

use http::{AppState, HttpLimits};
use keycache::KeyCache;
use metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::{EventStore, KeyStore, StoreError};

/// How often the collector looks for key changes made by other processes.
const KEY_REFRESH: Duration = Duration::from_millis(100);

/// Serves the collector on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    events: Arc<dyn EventStore>,
    key_store: Arc<dyn KeyStore>,
    metrics: Arc<Metrics>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let keys = Arc::new(KeyCache::load(key_store.clone())?);
    let refresher = {
        let keys = keys.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEY_REFRESH).await;
                let keys = keys.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || keys.refresh_if_changed()).await
                {
                    tracing::warn!(error = %e, "cannot refresh keys");
                }
            }
        })
    };
    let state = AppState {
        events,
        key_store,
        keys,
        metrics,
        limits,
    };
    let result = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| StoreError::Unavailable(format!("server error: {e}")));
    refresher.abort();
    result
}
