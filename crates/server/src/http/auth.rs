//! Who is asking: `Authorization: Bearer <admin or viewer token>`, or the dashboard's
//! session cookie obtained by logging in with one. [`guard`] lets a request through to a
//! route only when its credential's role grants the route's [`Access`].

use super::error::ApiError;
use super::{Access, AppState};
use crate::store::SecretState;
use crate::tokens::Role;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "anonstats_session";
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Dashboard sessions, in memory: a restart logs everyone out.
#[derive(Default)]
pub struct Sessions {
    /// Session id -> (the token it was opened with, expiry). The token is kept, not its
    /// role, so that revoking the token ends its sessions too.
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    pub fn open(&self, token: &str) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, (_, expiry)| *expiry > Instant::now());
        open.insert(
            id.clone(),
            (token.to_string(), Instant::now() + SESSION_TTL),
        );
        id
    }

    pub fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn token(&self, id: &str) -> Option<String> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(id)
            .filter(|(_, expiry)| *expiry > Instant::now())
            .map(|(t, _)| t.clone())
    }
}

pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The role of a token, asked of the store on the blocking pool (on ClickHouse it is an
/// HTTP call); 401 for one that is unknown, revoked or expired, saying which.
pub async fn role_of(st: &AppState, token: String) -> Result<Role, ApiError> {
    let keys = st.key_store.clone();
    let state = tokio::task::spawn_blocking(move || keys.secret_state(&token))
        .await
        .map_err(|e| ApiError::Store(crate::store::StoreError::Backend(e.to_string())))?
        .map_err(ApiError::Store)?;
    match state {
        SecretState::Valid(role) => Ok(role),
        SecretState::Expired(at) => Err(ApiError::Unauthorized(format!(
            "admin or viewer token expired at {}; make a new one with `anonstats keys \
             create-admin` (or create-viewer)",
            anonstats_wire::format_rfc3339_ms(at)
        ))),
        SecretState::Unknown => Err(ApiError::unknown_secret()),
    }
}

/// The role of the request's credential: its bearer token, else its session's.
async fn credential(st: &AppState, headers: &HeaderMap) -> Result<Role, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let token = match bearer {
        Some(t) => t,
        None => session_id(headers)
            .and_then(|id| st.sessions.token(&id))
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "credentials required: send `Authorization: Bearer <admin or viewer token>` or log in to the dashboard"
                        .into(),
                )
            })?,
    };
    role_of(st, token).await
}

/// Lets a request through when its credential grants `access`; the role goes into the
/// request's extensions for the handler. 401 without a valid credential, 403 when a
/// viewer's asks for what only admins may do.
pub async fn guard(
    State((st, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let needed = match access {
        Access::Viewer => Role::Viewer,
        Access::Admin => Role::Admin,
        Access::Metrics if !st.settings.metrics_public => Role::Admin,
        Access::Metrics | Access::Capture | Access::Open | Access::Public => {
            return next.run(req).await;
        }
    };
    let role = match credential(&st, req.headers()).await {
        Ok(role) => role,
        Err(e) => return e.into_response(),
    };
    if !role.grants(needed) {
        return ApiError::Forbidden(format!(
            "this is a viewer's credential: it reads insights and the dashboard; {} {} needs an admin token",
            req.method(),
            req.uri().path()
        ))
        .into_response();
    }
    req.extensions_mut().insert(role);
    next.run(req).await
}
