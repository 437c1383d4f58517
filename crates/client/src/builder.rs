//! [`Builder`]: configuration of a [`Client`].

use crate::Error;
use crate::client::{Client, Inner};
use crate::consent::{self, EnvFn, Mode, Recheck, Scope};
use crate::delivery::Transport;
use crate::dispatch::{Dispatcher, Route};
use crate::spool::{Spool, SpoolLimits};
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Default configuration directory (holds the opt-out file); also the machine's
/// ([`consent::SYSTEM_DIR`]).
pub const DEFAULT_CONFIG_DIR: &str = consent::SYSTEM_DIR;
/// Default state root: each product's state (machine id, spool, status file, local log,
/// receipts) is in `<state root>/<product>/` ([`crate::product`]).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/anonstats";
/// Default total delivery timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The sender's clock: event times and `sent_at`.
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Configures a [`Client`]. Nothing is read or written until [`Builder::build`], and when
/// statistics are off `build` only checks consent (two environment variables and one
/// `stat` of the opt-out file) and deletes what an earlier run left to send (the spool
/// and the local log), if anything.
///
/// ```
/// use anonstats_client::{Client, Mode};
/// let dir = tempfile::tempdir().unwrap();
/// let client = Client::builder()
///     .product("my-daemon", "1.2.3")
///     .endpoint("http://127.0.0.1:9")
///     .token("phc_example")
///     .config_dir(dir.path().join("etc"))
///     .state_dir(dir.path().join("state"))
///     .mode(Mode::Local)
///     .build()
///     .unwrap();
/// assert_eq!(client.consent().mode, Mode::Local);
/// ```
#[derive(Clone)]
pub struct Builder {
    product_name: Option<String>,
    product_version: Option<String>,
    release_channel: Option<String>,
    install_type: Option<String>,
    endpoint: Option<String>,
    token: Option<String>,
    ca_file: Option<PathBuf>,
    config_dir: PathBuf,
    system_dir: PathBuf,
    state_dir: Option<PathBuf>,
    probe_root: PathBuf,
    timeout: Duration,
    mode: Option<Mode>,
    env: EnvFn,
    clock: Clock,
    spool_limits: SpoolLimits,
    preview_only: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            product_name: None,
            product_version: None,
            release_channel: None,
            install_type: None,
            endpoint: None,
            token: None,
            ca_file: None,
            config_dir: DEFAULT_CONFIG_DIR.into(),
            system_dir: consent::SYSTEM_DIR.into(),
            state_dir: None,
            probe_root: "/".into(),
            timeout: DEFAULT_TIMEOUT,
            mode: None,
            env: Arc::new(consent::process_env),
            clock: Arc::new(SystemTime::now),
            spool_limits: SpoolLimits::default(),
            preview_only: false,
        }
    }
}

impl Builder {
    /// Product name and version (`product_name`, `product_version`). Required unless off.
    pub fn product(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.product_name = Some(name.into());
        self.product_version = Some(version.into());
        self
    }
    /// Release channel, e.g. `stable` or `nightly` (`release_channel`).
    pub fn release_channel(mut self, channel: impl Into<String>) -> Self {
        self.release_channel = Some(channel.into());
        self
    }
    /// How the product was installed, e.g. `binpkg-deb`, `docker` (`install_type`).
    pub fn install_type(mut self, install_type: impl Into<String>) -> Self {
        self.install_type = Some(install_type.into());
        self
    }
    /// The collector's base URL; events go to `<endpoint>/batch/`. Required when on.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }
    /// The project's write token (sent as `api_key`). Required when on.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Trust only the CAs in this PEM file for an `https://` endpoint (a private CA),
    /// instead of the system's root certificates. The file is read by `build`, which
    /// fails naming it when it holds no usable certificate. Certificates are always
    /// verified; there is no setting that turns that off.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
    /// Configuration directory, where the opt-out file and `anonstats.toml` live (default
    /// `/etc/anonstats`). What the builder is not told is taken from that file.
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = dir.into();
        self
    }
    /// The machine's directory (default `/etc/anonstats`): its opt-out file and the `mode`
    /// of its `anonstats.toml` hold for every product, whatever [`Builder::config_dir`] says
    /// ([`consent`]). Set it only where the machine keeps that policy elsewhere (or in
    /// tests).
    pub fn system_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.system_dir = dir.into();
        self
    }
    /// State root (default: `state-dir` in `anonstats.toml`, else `/var/lib/anonstats`);
    /// this product's state is in `<state root>/<product>/` ([`crate::product`]), created
    /// on first use, mode 0700. A root that one product used alone before is taken over by
    /// the first product that starts there, which keeps its machine id.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }
    /// Root of the file system the system facts are read from (default `/`).
    pub fn probe_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.probe_root = root.into();
        self
    }
    /// Total time one delivery may take, connect, send and receive together (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// The host's own setting (consent rule 4): it applies only when no opt-out is set.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }
    /// Replace the environment lookup used for consent (for tests).
    pub fn env(
        mut self,
        lookup: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(lookup);
        self
    }
    /// Replace the clock that dates events and sends (for tests: a sender whose clock is
    /// wrong).
    pub fn clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(now);
        self
    }
    /// Bounds of the spool (default 64 events, 1 MiB).
    pub fn spool_limits(mut self, limits: SpoolLimits) -> Self {
        self.spool_limits = limits;
        self
    }

    /// For a client that only shows what it would send ([`crate::Client::preview`]): a
    /// missing endpoint or token is then no error, and the client sends nothing.
    pub fn preview_only(mut self) -> Self {
        self.preview_only = true;
        self
    }

    /// Decide consent and make the client. When off, nothing else is checked, and nothing
    /// is touched but what waited to be sent: the spool and the local log are deleted.
    pub fn build(mut self) -> Result<Client, Error> {
        // What the host did not set comes from the configuration file. An unusable file
        // decides consent (off) below, so it sets nothing here.
        let file = crate::config_file::load(&self.config_dir).unwrap_or_default();
        let or_file = |mine: &mut Option<String>, theirs: Option<String>| {
            if mine.is_none() {
                *mine = theirs;
            }
        };
        if self.product_name.is_none() {
            self.product_name = file.product_name;
            or_file(&mut self.product_version, file.product_version);
        }
        or_file(&mut self.release_channel, file.release_channel);
        or_file(&mut self.install_type, file.install_type);
        or_file(&mut self.endpoint, file.endpoint);
        or_file(&mut self.token, file.token);
        if self.ca_file.is_none() {
            self.ca_file = file.ca_file;
        }
        let state_dir = self
            .state_dir
            .take()
            .or(file.state_dir)
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        self.build_with(state_dir)
    }

    fn build_with(self, root: PathBuf) -> Result<Client, Error> {
        let name = self.product_name.clone().filter(|n| !n.trim().is_empty());
        let recheck = Recheck {
            env: self.env.clone(),
            scope: Scope {
                system_dir: self.system_dir.clone(),
                config_dir: self.config_dir.clone(),
                product: name.clone(),
            },
            host: self.mode,
        };
        let consent = recheck.decide();
        let state_dir = match &name {
            Some(name) => crate::product::state_dir(&root, name),
            None => root.clone(),
        };
        let spool = Spool::new(state_dir.join(crate::spool::DIR), self.spool_limits);
        let mut product = Map::new();
        if consent.mode != Mode::Off {
            let name = name.clone().ok_or(Error::MissingProduct)?;
            product.insert("product_name".into(), Value::from(name));
            let fields = [
                ("product_version", self.product_version),
                ("release_channel", self.release_channel),
                ("install_type", self.install_type),
            ];
            for (key, value) in fields {
                if let Some(v) = value {
                    product.insert(key.into(), Value::from(v));
                }
            }
            // Decided where the event is made: a delivering process may run elsewhere.
            if crate::ci::detected(&*self.env) {
                product.insert(crate::event::IS_CI.into(), Value::Bool(true));
            }
        }
        let mut route = None;
        // In local mode too, so that the local log shows the id the endpoint would get.
        let id_dir = match self.endpoint.as_deref().map(crate::delivery::batch_url) {
            Some(Ok(url)) => crate::product::endpoint_dir(&state_dir, &url),
            _ => state_dir.clone(),
        };
        let unroutable = self.endpoint.is_none() || self.token.as_deref().is_none_or(str::is_empty);
        let sends = matches!(consent.mode, Mode::On | Mode::Crashes);
        if sends && !(self.preview_only && unroutable) {
            let endpoint = self.endpoint.ok_or(Error::MissingEndpoint)?;
            let transport = Transport::new(&endpoint, self.ca_file.as_deref())?;
            let token = self
                .token
                .filter(|t| !t.is_empty())
                .ok_or(Error::MissingToken)?;
            let key = crate::spool::route_key(transport.url(), &token);
            route = Some((transport, token, key));
        }
        if let Some(name) = &name {
            let key = route.as_ref().map(|(_, _, key)| key.as_str());
            crate::product::adopt_legacy(&root, name, key);
        }
        if consent.mode == Mode::Off {
            crate::client::forget_if_present(&state_dir, &spool);
        }
        let dispatcher = route.map(|(transport, token, key)| {
            let endpoint = crate::product::endpoint_key(transport.url());
            Dispatcher::new(Route {
                transport,
                token,
                timeout: self.timeout,
                spool: spool
                    .for_route(key, name.unwrap_or_default())
                    .at_endpoint(endpoint),
                probe_root: self.probe_root.clone(),
                state_dir: state_dir.clone(),
                recheck: recheck.clone(),
                clock: self.clock.clone(),
                unqueued: Default::default(),
            })
        });
        Ok(Client::from_inner(Inner {
            consent,
            config_dir: self.config_dir,
            state_dir,
            id_dir,
            claimed: OnceLock::new(),
            probe_root: self.probe_root,
            timeout: self.timeout,
            product,
            dispatcher,
            base: Default::default(),
            recheck,
            clock: self.clock,
            intake: Default::default(),
        }))
    }
}
