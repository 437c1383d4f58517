//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// What went wrong while configuring the client or touching its state directory.
///
/// Delivery failures are not errors: they end up in the spool and are reported as
/// [`Outcome::Spooled`](crate::Outcome::Spooled), or, when the collector refused the
/// events for good, are dropped, counted and reported as
/// [`Outcome::Dropped`](crate::Outcome::Dropped).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No product name was given while statistics are on or local.
    #[error(
        "no product name: call Builder::product(NAME, VERSION) (CLI: --product-name / --product-version)"
    )]
    MissingProduct,
    /// No endpoint was given while statistics are on.
    #[error(
        "no endpoint: call Builder::endpoint(URL) (CLI: --endpoint URL or ANONSTATS_ENDPOINT), \
         or opt out if statistics are not wanted"
    )]
    MissingEndpoint,
    /// No project write token was given while statistics are on.
    #[error(
        "no project write token: call Builder::token(TOKEN) (CLI: --token T or ANONSTATS_TOKEN); \
         `anonstats keys create-project NAME` prints one"
    )]
    MissingToken,
    /// The endpoint is not a usable URL.
    #[error("endpoint {endpoint:?} {why}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it and what to do.
        why: &'static str,
    },
    /// The CA file given for the collector's certificate cannot be used.
    #[error(
        "cannot use the CA file {path}: it {why}; give the PEM certificate of the CA that \
         signed the collector's certificate (--ca-file, or ca-file in anonstats.toml)"
    )]
    CaFile {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// An event name that is empty or too long.
    #[error("event name {0:?} is empty or longer than 200 bytes; use a short name such as START")]
    InvalidEventName(String),
    /// A file or directory under the state or config directory could not be used.
    #[error(
        "cannot {action} {path}: {source}; check that the directory exists and this user may write it"
    )]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An event too large for the spool.
    #[error(
        "event of {size} bytes exceeds the spool limit of {limit} bytes; send fewer or smaller properties"
    )]
    TooLarge {
        /// Serialised size of the event.
        size: u64,
        /// The spool's byte limit.
        limit: u64,
    },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
