//! Agent-side anonymous statistics: consent, machine id, events, delivery, FATAL reports.
//!
//! A host program builds one [`Client`], calls [`Client::start`] when it starts,
//! [`Client::exit`] when it stops cleanly and [`Client::fatal`] (or lets the panic hook do it)
//! when it dies. Consent is decided first ([`consent`]), and again before each event and each
//! delivery; when statistics are off nothing is built, written or sent, and after an opt-out
//! made while the program runs, what waited to be sent is deleted. Events are delivered in the
//! background to a PostHog-compatible `POST <endpoint>/batch/` under a total timeout (2 s by
//! default), with at most one retry; what cannot be delivered waits in a bounded spool and
//! goes first at the next start. What the spool has to drop, and what the collector refuses
//! for good, is counted and reported by the next delivered event (`dropped_events`).
//!
//! ```
//! use anonstats_client::{Client, Mode, Outcome};
//! let dir = tempfile::tempdir().unwrap();
//! let client = Client::builder()
//!     .product("my-daemon", "1.2.3")
//!     .config_dir(dir.path())
//!     .state_dir(dir.path().join("state"))
//!     .mode(Mode::Local) // record locally instead of sending
//!     .build()
//!     .unwrap();
//! assert_eq!(client.start(), Outcome::Queued); // written by the client's own thread
//! assert!(matches!(client.exit(), Outcome::Logged(_))); // waits until written
//! ```
//!
//! The host's thread only queues an event, waking no thread (the client's file-work thread
//! takes what waits every 20 ms, and at once when a caller waits): the client's own threads
//! (one for the file work, one for delivery) read the system facts, scrub, spool and send,
//! so that a slow disk or network never slows the host; a caller that waits (EXIT, FATAL) waits at most the timeout
//! in all, file I/O included.
//!
//! No async runtime, no database: two background threads per client and a small blocking
//! HTTP client (`ureq`; HTTPS with rustls, verified against the system's roots or a
//! `ca-file`, see [`Builder::ca_file`]).

mod builder;
pub mod ci;
mod client;
pub mod config_file;
pub mod consent;
pub mod delivery;
pub mod detach;
mod dispatch;
mod error;
pub mod event;
pub mod facts;
pub mod fatal;
mod fsutil;
mod intake;
pub mod local_log;
pub mod machine_id;
pub mod product;
pub mod scrub;
pub mod spool;
pub mod status_file;
pub mod time;
mod tls;

pub use builder::{Builder, DEFAULT_CONFIG_DIR, DEFAULT_STATE_DIR, DEFAULT_TIMEOUT};
pub use client::{Client, Outcome};
pub use consent::{Consent, Mode, Reason};
pub use error::Error;
pub use event::{Event, FatalSite};
pub use spool::SpoolLimits;
