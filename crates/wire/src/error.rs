use thiserror::Error;

/// Why a capture request could not be decoded. Each variant maps to one HTTP status.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The payload is malformed: bad JSON, bad encoding, missing or mistyped fields (400).
    #[error("{0}")]
    Invalid(String),
    /// The payload, once decoded, or one of its events, is over the size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// No project token anywhere in the request (401).
    #[error(
        "no project token: send it as `api_key` or `token` in the body, or as `token` in the event properties"
    )]
    MissingToken,
    /// More than one distinct token in one request (401).
    #[error(
        "the request carries more than one project token; send each project's events in its own request"
    )]
    MixedTokens,
}

impl WireError {
    /// The HTTP status code PostHog's capture answers for this error.
    pub fn status(&self) -> u16 {
        match self {
            WireError::Invalid(_) => 400,
            WireError::TooLarge(_) => 413,
            WireError::MissingToken | WireError::MixedTokens => 401,
        }
    }

    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Invalid(_) => "invalid",
            WireError::TooLarge(_) => "too_large",
            WireError::MissingToken => "missing_token",
            WireError::MixedTokens => "mixed_tokens",
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        WireError::Invalid(msg.into())
    }
}

/// Human-readable byte size for error messages.
pub(crate) fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MB", bytes / (1024 * 1024))
    } else if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{} KB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}
