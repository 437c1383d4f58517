//! Every way a request can fail, turned into PostHog-style JSON answers.

use crate::metrics::Reject;
use crate::ratelimit::Limited;
use crate::store::StoreError;
use anonstats_wire::WireError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Wire(WireError),
    BodyTooLarge {
        limit: usize,
    },
    BodyRead(String),
    /// The body did not arrive within this long.
    BodyTimeout(std::time::Duration),
    UnknownToken,
    RevokedToken,
    /// The sender passed a rate limit (429); see [`crate::ratelimit`].
    RateLimited(Limited),
    Store(StoreError),
    Unauthorized(String),
    /// A valid credential whose role does not grant the route (403).
    Forbidden(String),
    BadRequest(String),
    NotFound(String),
    /// The path exists, but not for this method (405).
    MethodNotAllowed(String),
    /// The body is not of the one Content-Type the route accepts.
    UnsupportedMediaType(String),
}

impl ApiError {
    pub fn reject_reason(&self) -> Reject {
        match self {
            ApiError::Wire(WireError::Invalid(_))
            | ApiError::BodyRead(_)
            | ApiError::BodyTimeout(_)
            | ApiError::BadRequest(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::Store(StoreError::Invalid(_)) => Reject::Invalid,
            ApiError::Wire(WireError::TooLarge(_)) | ApiError::BodyTooLarge { .. } => {
                Reject::TooLarge
            }
            ApiError::Wire(WireError::MissingToken) => Reject::MissingToken,
            ApiError::Wire(WireError::MixedTokens) => Reject::MixedTokens,
            ApiError::UnknownToken
            | ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_) => Reject::UnknownToken,
            ApiError::RevokedToken => Reject::RevokedToken,
            ApiError::RateLimited(_) => Reject::RateLimited,
            ApiError::Store(StoreError::Overloaded) => Reject::Overloaded,
            ApiError::Store(StoreError::DiskFull) => Reject::DiskFull,
            ApiError::Store(_) => Reject::Unavailable,
        }
    }

    /// The machine-readable `code` of the answer.
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::NotFound(_) | ApiError::Store(StoreError::NotFound(_)) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            _ => self.reject_reason().as_str(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Wire(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UnknownToken | ApiError::RevokedToken | ApiError::Unauthorized(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) | ApiError::Store(StoreError::NotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Store(StoreError::Invalid(_)) => StatusCode::BAD_REQUEST,
            ApiError::Store(
                StoreError::Overloaded
                | StoreError::DiskFull
                | StoreError::Unavailable(_)
                | StoreError::InUse(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(
                StoreError::Backend(_) | StoreError::NewerSchema { .. } | StoreError::NoStore(_),
            ) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Wire(e) => e.to_string(),
            ApiError::BodyTooLarge { limit } => {
                format!(
                    "request body is larger than the {} MB limit of this endpoint: split the \
                     events over several requests, or send them gzipped",
                    limit / (1024 * 1024)
                )
            }
            ApiError::BodyRead(e) => format!("could not read the request body: {e}"),
            ApiError::BodyTimeout(t) => format!(
                "the request body did not arrive within {} s; send it at once",
                t.as_secs()
            ),
            ApiError::UnknownToken => "project token is not known to this collector: send a \
                write token of one of its projects (`anonstats keys list` on the collector \
                shows them)"
                .into(),
            ApiError::RevokedToken => "project token has been revoked: send another write \
                token of its project (`anonstats keys create-write-key PROJECT` on the \
                collector makes one)"
                .into(),
            ApiError::RateLimited(l) => l.to_string(),
            ApiError::Store(e) => e.to_string(),
            ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::UnsupportedMediaType(m) => m.clone(),
        }
    }
}

impl ApiError {
    /// An admin or viewer token that is not known or was revoked.
    pub fn unknown_secret() -> Self {
        ApiError::Unauthorized(
            "admin or viewer token is unknown or revoked: `anonstats keys list` on the \
             collector shows the tokens, `anonstats keys create-admin` or `create-viewer` \
             makes one"
                .into(),
        )
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError::Wire(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

/// What a client is told of a server-side failure: its class, never its detail (node
/// addresses, a store's reply, paths are for the operator's log).
pub fn public_detail(e: &StoreError) -> &'static str {
    match e {
        StoreError::Overloaded => "the collector is overloaded; retry in a moment",
        StoreError::DiskFull => "the collector's disk is full: nothing was stored; retry later",
        StoreError::Unavailable(_) | StoreError::InUse(_) => "storage is unavailable; retry later",
        _ => "internal error",
    }
}

/// A 5xx answer on its way out: the JSON body the client gets and the detail for the
/// log. The request-id layer adds the request id to the body and logs the detail with
/// it, once.
#[derive(Debug, Clone)]
pub struct Fault {
    pub body: serde_json::Value,
    /// `None` when there is nothing to tell the operator beyond the answer itself.
    pub detail: Option<String>,
}

/// A 5xx answer: `body` goes to the client (with the request id), `detail` to the log.
pub fn fault(status: StatusCode, body: serde_json::Value, detail: Option<String>) -> Response {
    let mut response = (status, Json(&body)).into_response();
    response.extensions_mut().insert(Fault { body, detail });
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            400 | 404 | 405 | 408 | 413 | 415 => "validation_error",
            429 => "throttled_error",
            _ => "server_error",
        };
        let mut response = if status.is_server_error() {
            let (public, detail) = match &self {
                // Shedding load is no failure to investigate, and its message says all.
                ApiError::Store(e @ StoreError::Overloaded) => (public_detail(e), None),
                ApiError::Store(e) => (public_detail(e), Some(self.detail())),
                _ => ("internal error", Some(self.detail())),
            };
            let body = json!({"type": kind, "code": self.code(), "detail": public});
            fault(status, body, detail)
        } else {
            let body = json!({"type": kind, "code": self.code(), "detail": self.detail()});
            (status, Json(body)).into_response()
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited(l) = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(l.retry_after_secs()));
        }
        response
    }
}
