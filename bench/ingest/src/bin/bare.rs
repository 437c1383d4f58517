//! The baseline: axum on the collector's runtime configuration, answering every capture
//! path with 200 `{"status":1}` after reading the body, and doing nothing else.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::routing::{MethodRouter, get};
use serde_json::json;
use std::io::Write;

/// The collector's capture paths (`anonstats_server::http::CAPTURE_PATHS`).
const CAPTURE_PATHS: &[&str] = &["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];

async fn ok(_body: Bytes) -> Json<serde_json::Value> {
    Json(json!({"status": 1}))
}

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .skip_while(|a| a != "--listen")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    // As `anonstats serve` builds it: multi-thread, default worker count.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let route: MethodRouter = get(ok).post(ok);
        let mut app = Router::new();
        for path in CAPTURE_PATHS {
            app = app
                .route(path, route.clone())
                .route(&format!("{path}/"), route.clone());
        }
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        axum::serve(listener, app).await
    })
}
