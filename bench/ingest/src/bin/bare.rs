//! The baseline: axum on the collector's runtime configuration, answering every capture
//! path with 200 `{"status":1}` after reading the body, and doing nothing else.
//!
//! With `--durable DIR` it answers only once the body is appended to a file in DIR and
//! synced, with group commit as the collector does it (one thread writes and syncs every
//! queued body at once, then answers them): the least any durable acknowledgement costs,
//! with no decoding and no database.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{MethodRouter, get};
use serde_json::json;
use std::io::Write;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// The collector's capture paths (`anonstats_server::http::CAPTURE_PATHS`).
const CAPTURE_PATHS: &[&str] = &["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];

type Log = Option<mpsc::Sender<(Bytes, oneshot::Sender<()>)>>;

async fn ok(State(log): State<Log>, body: Bytes) -> Json<serde_json::Value> {
    if let Some(log) = log {
        let (done, synced) = oneshot::channel();
        if log.send((body, done)).is_ok() {
            let _ = synced.await;
        }
    }
    Json(json!({"status": 1}))
}

/// Appends what arrives to `DIR/bare.log`, one `fdatasync` for everything queued.
fn start_log(dir: &str) -> std::io::Result<mpsc::Sender<(Bytes, oneshot::Sender<()>)>> {
    let mut file = std::fs::File::create(std::path::Path::new(dir).join("bare.log"))?;
    let (send, recv) = mpsc::channel::<(Bytes, oneshot::Sender<()>)>();
    std::thread::spawn(move || {
        while let Ok(first) = recv.recv() {
            let mut group = vec![first];
            group.extend(recv.try_iter());
            for (body, _) in &group {
                file.write_all(body).expect("the log is writable");
            }
            file.sync_data().expect("the log syncs");
            for (_, done) in group {
                let _ = done.send(());
            }
        }
    });
    Ok(send)
}

fn main() -> std::io::Result<()> {
    let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".to_string());
    let log = arg("--durable").map(|dir| start_log(&dir)).transpose()?;
    // As `anonstats serve` builds it: multi-thread, default worker count.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let route: MethodRouter<Log> = get(ok).post(ok);
        let mut app = Router::new();
        for path in CAPTURE_PATHS {
            app = app
                .route(path, route.clone())
                .route(&format!("{path}/"), route.clone());
        }
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        axum::serve(listener, app.with_state(log)).await
    })
}
