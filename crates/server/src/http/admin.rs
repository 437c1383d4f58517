//! Admin authentication: `Authorization: Bearer <admin token>`, or the dashboard's
//! session cookie obtained by logging in with an admin token.

use super::AppState;
use super::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "anonstats_session";
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Dashboard sessions, in memory: a restart logs everyone out.
#[derive(Default)]
pub struct Sessions {
    /// Session id -> (the admin token it was opened with, expiry). The token is kept so a
    /// revoked admin token ends its sessions too.
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    pub fn open(&self, admin_token: &str) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, (_, expiry)| *expiry > Instant::now());
        open.insert(
            id.clone(),
            (admin_token.to_string(), Instant::now() + SESSION_TTL),
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

/// Proof that the request comes from an admin.
pub struct Admin;

pub fn session_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let token = match bearer {
            Some(t) => t,
            None => session_id(&parts.headers).and_then(|id| st.sessions.token(&id)).ok_or_else(|| {
                ApiError::Unauthorized(
                    "admin credentials required: send `Authorization: Bearer <admin token>` or log in to the dashboard"
                        .into(),
                )
            })?,
        };
        let keys = st.key_store.clone();
        let ok = tokio::task::spawn_blocking(move || keys.check_admin(&token))
            .await
            .map_err(|e| ApiError::BodyRead(e.to_string()))??;
        if ok {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized(
                "admin token is unknown or revoked".into(),
            ))
        }
    }
}
