//! The anonstats collector: PostHog-compatible capture, privacy filter, durable storage.

pub mod admission;
pub mod connections;
pub mod http;
pub mod insights;
pub mod keycache;
pub mod metrics;
pub mod privacy;
pub mod ratelimit;
pub mod rollup;
pub mod sketch;
pub mod store;
pub mod tls;
pub mod tokens;

use http::api::ApiSettings;
use http::{AppState, HttpLimits};
use insights::InsightStore;
use keycache::KeyCache;
use metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::{EventStore, KeyStore, StoreError};

/// How often the collector looks for key changes made by other processes.
const KEY_REFRESH: Duration = Duration::from_millis(100);
/// How often retention runs (it also runs at start).
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// The stores a collector runs on.
#[derive(Clone)]
pub struct Backend {
    pub events: Arc<dyn EventStore>,
    pub keys: Arc<dyn KeyStore>,
    pub insights: Arc<dyn InsightStore>,
}

/// Everything `serve` can be told.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub limits: HttpLimits,
    /// How many connections may be open, and how slow they may be.
    pub connections: connections::ConnectionLimits,
    /// How much capture work may be in flight before new requests get 503.
    pub in_flight: admission::Bounds,
    /// How much one project and one machine may send before capture answers 429.
    pub rate: ratelimit::Limits,
    pub api: ApiSettings,
    /// Events older than this many days are purged, hourly.
    pub retention_days: Option<u32>,
    /// Serve TLS with these settings ([`tls::server_config`]); plain HTTP without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Every route is served under this path (`""`, or e.g. `/stats`).
    pub base_path: String,
}

/// Serves the collector on `listener` until `shutdown` resolves, then finishes the
/// requests in flight. With an `admin` listener, the dashboard, the APIs and `/metrics`
/// are served there only ([`http::Listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
    backend: Backend,
    metrics: Arc<Metrics>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let keys = Arc::new(KeyCache::load(backend.keys.clone())?);
    let mut tasks = vec![tokio::spawn(refresh_keys(keys.clone()))];
    if let Some(days) = settings.retention_days {
        tasks.push(tokio::spawn(retention(
            backend.insights.clone(),
            days,
            metrics.clone(),
        )));
    }
    let state = AppState {
        admission: admission::Admission::new(settings.in_flight),
        rate: Arc::new(ratelimit::RateLimiter::new(settings.rate)),
        events: backend.events,
        key_store: backend.keys,
        insights: Arc::new(insights::floor::KFloor::new(
            backend.insights,
            settings.api.k,
        )),
        keys,
        metrics,
        limits: settings.limits,
        sessions: Arc::default(),
        settings: settings.api,
        base_path: settings.base_path.as_str().into(),
    };
    match admin {
        None => {
            let router = http::router(state, None);
            connections::serve(
                listener,
                router,
                settings.connections,
                settings.tls,
                shutdown,
            )
            .await;
        }
        Some(admin) => {
            // One shutdown for both listeners.
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown.await;
                let _ = stop.send(true);
            });
            let until = || {
                let mut stopped = stopped.clone();
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }
            };
            let public = http::router(state.clone(), Some(http::Listener::Public));
            let private = http::router(state, Some(http::Listener::Admin));
            tokio::join!(
                connections::serve(
                    listener,
                    public,
                    settings.connections,
                    settings.tls.clone(),
                    until()
                ),
                connections::serve(admin, private, settings.connections, settings.tls, until()),
            );
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

async fn refresh_keys(keys: Arc<KeyCache>) {
    loop {
        tokio::time::sleep(KEY_REFRESH).await;
        let keys = keys.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || keys.refresh_if_changed()).await {
            tracing::warn!(error = %e, "cannot refresh keys");
        }
    }
}

/// Purges events older than `days` whole UTC days, now and every hour.
async fn retention(store: Arc<dyn InsightStore>, days: u32, metrics: Arc<Metrics>) {
    loop {
        let cutoff = chrono::Utc::now().timestamp_millis() - i64::from(days) * insights::DAY_MS;
        let s = store.clone();
        let outcome = tokio::task::spawn_blocking(move || s.purge_before(cutoff)).await;
        metrics.retention_ran(outcome.as_ref().ok().and_then(|r| r.as_ref().ok()).copied());
        match outcome {
            Ok(Ok(n)) => tracing::info!(purged = n, days, "retention ran"),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed; it runs again in an hour"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
        tokio::time::sleep(RETENTION_EVERY).await;
    }
}
