//! `anonstats serve`: the collector on the embedded store, or on ClickHouse with
//! `--store clickhouse://HOST:PORT/DATABASE`.

use crate::migrate::ClickHouseArgs;
use anonstats_server::metrics::Metrics;
use anonstats_server::ratelimit::Limits;
use anonstats_server::store::KeyStore;
use anonstats_server::store::clickhouse::ClickHouseStore;
use anonstats_server::store::sqlite::SqliteStore;
use anonstats_server::{Backend, Settings};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The collector's default port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// A TOML file of settings (keys are these options' long names); flags and
    /// environment variables take precedence over it.
    #[arg(long, env = "ANONSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database, created (0700) when absent; the first start
    /// writes the new tokens to initial-tokens.txt there (on ClickHouse too).
    #[arg(long, env = "ANONSTATS_DATA_DIR", default_value = "./anonstats-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "ANONSTATS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Serve the dashboard, the APIs (`/api/v1/...`, the OpenAPI document included) and
    /// `/metrics` on this address only, e.g. `127.0.0.1:9471`; the --listen address then
    /// serves capture, flags, the browser script and `/healthz`, and answers 404 to the
    /// rest. Without it, --listen serves everything.
    #[arg(long, env = "ANONSTATS_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Serve every route under this path, e.g. `/stats` behind a proxy that forwards
    /// `https://example.org/stats/` with the path unchanged: the dashboard is then
    /// `/stats/` and capture `/stats/batch/`.
    #[arg(long, env = "ANONSTATS_BASE_PATH", value_name = "PATH", value_parser = base_path,
          default_value = "")]
    pub base_path: String,
    /// Capture requests that may wait for a commit before new ones get 503.
    #[arg(long, env = "ANONSTATS_QUEUE", default_value_t = 4096)]
    pub queue: usize,
    /// Events that may be in flight (read, decoded or waiting for their commit) before
    /// new capture requests get 503.
    #[arg(long, env = "ANONSTATS_QUEUE_EVENTS", default_value_t = 200_000)]
    pub queue_events: usize,
    /// Megabytes of request bodies and decoded events that may be in flight before new
    /// capture requests get 503.
    #[arg(long, env = "ANONSTATS_QUEUE_MB", default_value_t = 64)]
    pub queue_mb: usize,
    /// Connections served at once; more wait until one closes. The collector raises its
    /// open-file limit to fit, up to the hard limit; under a lower hard limit it serves
    /// fewer and says so.
    #[arg(long, env = "ANONSTATS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers; idle keep-alive
    /// connections are closed after as long.
    #[arg(long, env = "ANONSTATS_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a capture request's body may take to arrive; then it is answered 408.
    #[arg(long, env = "ANONSTATS_BODY_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Events one project may send a minute, up to a minute's worth at once; past it,
    /// capture answers 429 with Retry-After. 0: no limit.
    #[arg(long, env = "ANONSTATS_PROJECT_EVENTS_PER_MINUTE",
          default_value_t = Limits::DEFAULT.project_events)]
    pub project_events_per_minute: u32,
    /// Events one machine (distinct_id) may send a minute, up to a minute's worth at
    /// once; past it, capture answers 429. 0: no limit.
    #[arg(long, env = "ANONSTATS_MACHINE_EVENTS_PER_MINUTE",
          default_value_t = Limits::DEFAULT.machine_events)]
    pub machine_events_per_minute: u32,
    /// Machines (distinct_id) a project has not seen that may begin sending a minute;
    /// past it, their events get 429 while the machines it has seen go on. 0: no limit.
    #[arg(long, env = "ANONSTATS_NEW_MACHINES_PER_MINUTE",
          default_value_t = Limits::DEFAULT.new_machines)]
    pub new_machines_per_minute: u32,
    /// Purge events older than this many days (checked at start and hourly).
    #[arg(long, env = "ANONSTATS_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Longest time (milliseconds) a stored event waits before the embedded store's
    /// rollups count it; insights never see it waiting. Longer waits fold more events at
    /// once, which costs less per event.
    #[arg(long, env = "ANONSTATS_ROLLUP_FOLD_MS", default_value_t = 1000)]
    pub rollup_fold_ms: u64,
    /// Breakdown buckets seen on fewer distinct machines are folded into "other".
    #[arg(long, env = "ANONSTATS_K_ANONYMITY", default_value_t = 5)]
    pub k_anonymity: u64,
    /// Where events, projects and keys live: the embedded SQLite store in --data-dir
    /// (default, or `sqlite`), or `clickhouse://HOST:PORT/DATABASE` (ClickHouse's HTTP
    /// interface; any number of collectors may share it).
    #[arg(long, env = "ANONSTATS_STORE")]
    pub store: Option<String>,
    /// The URL browsers reach the collector at (e.g. behind a TLS proxy:
    /// `https://stats.example.org`). When it is https, the dashboard's session cookie is
    /// marked `Secure`, so a browser never sends it over plain http (as it is when
    /// --tls-cert serves https here).
    #[arg(long, env = "ANONSTATS_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM: the collector's certificate first,
    /// then its intermediates); needs --tls-key. Without both, plain HTTP (put a TLS
    /// proxy in front, or keep it on a private network).
    #[arg(
        long,
        env = "ANONSTATS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "ANONSTATS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Serve `/metrics` to anyone who can reach the collector; without it, a scrape
    /// needs `Authorization: Bearer <admin token>` (ANONSTATS_METRICS_PUBLIC=1, true, yes
    /// or on).
    #[arg(long, env = "ANONSTATS_METRICS_PUBLIC",
        value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_public: bool,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
}

/// An http:// or https:// URL with a host.
fn public_url(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or("must start with http:// or https://, e.g. https://stats.example.org")?;
    if rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .is_empty()
    {
        return Err("has no host, e.g. https://stats.example.org".into());
    }
    Ok(s.to_string())
}

/// `""`, or a path of one or more segments such as `/stats` (a trailing `/` is dropped).
fn base_path(s: &str) -> Result<String, String> {
    let p = s.trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if !p.starts_with('/') {
        return Err("must start with /, e.g. /stats".into());
    }
    if p.contains("//")
        || !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c))
    {
        return Err(
            "may hold only letters, digits, -, _, . and ~ between single /, e.g. /stats".into(),
        );
    }
    Ok(p.to_string())
}

/// The store a collector runs on.
enum Store {
    Sqlite(Arc<SqliteStore>),
    ClickHouse(Arc<ClickHouseStore>),
}

impl Store {
    fn open(args: &ServeArgs) -> anyhow::Result<Store> {
        Ok(match args.store.as_deref() {
            None | Some("sqlite") => {
                let store = SqliteStore::open(&args.data_dir).with_context(|| {
                    format!("cannot open the store in {}", args.data_dir.display())
                })?;
                store.lock()?;
                let fold_after = std::time::Duration::from_millis(args.rollup_fold_ms);
                Store::Sqlite(Arc::new(store.with_fold_after(fold_after)))
            }
            Some(url) => {
                let mut config = args.clickhouse.config(url);
                config.queue = args.queue;
                Store::ClickHouse(Arc::new(
                    ClickHouseStore::open(config)
                        .with_context(|| format!("cannot open the ClickHouse store at {url}"))?,
                ))
            }
        })
    }

    fn keys(&self) -> &dyn KeyStore {
        match self {
            Store::Sqlite(s) => s.as_ref(),
            Store::ClickHouse(s) => s.as_ref(),
        }
    }

    fn start(&self, metrics: Arc<Metrics>, queue: usize) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(s) => {
                s.start_writer(metrics, queue)?;
                s.start_compactor()?;
            }
            Store::ClickHouse(s) => s.start_writer(metrics)?,
        }
        Ok(())
    }

    fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(s) => Backend {
                events: s.clone(),
                keys: s.clone(),
                insights: s.clone(),
            },
            Store::ClickHouse(s) => Backend {
                events: s.clone(),
                keys: s.clone(),
                insights: s.clone(),
            },
        }
    }

    fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close(),
            Store::ClickHouse(s) => s.close(),
        }
    }

    /// Where the data is, for the log (never a password).
    fn describe(&self, args: &ServeArgs) -> String {
        match self {
            Store::Sqlite(_) => args.data_dir.display().to_string(),
            Store::ClickHouse(_) => args.store.clone().unwrap_or_default(),
        }
    }
}

pub fn run(mut args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    no_huge_pages();
    args.max_connections = fit_open_files(args.max_connections);
    // Checked before the store is opened, so a bad file changes nothing.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(anonstats_server::tls::server_config(cert, key)?),
        _ => None,
    };
    let store = Store::open(&args)?;
    first_start(store.keys(), &args.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Decoding big or compressed bodies runs on the blocking pool: as many threads as
        // requests in flight would only share the same cores, each holding its decoded
        // events meanwhile.
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::default());
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}: {e}; give --listen a free HOST:PORT (port 0 picks one)",
                    args.listen
                )
            })?;
        let admin = match &args.admin_listen {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {a}: {e}; give --admin-listen a free HOST:PORT (port 0 picks one)"
                )
            })?),
            None => None,
        };
        let shutdown = shutdown()?;
        store.start(metrics.clone(), args.queue)?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = &args.base_path;
        // Printed before the public address, which ends the start-up lines.
        if let Some(admin) = &admin {
            println!(
                "admin listening on {scheme}://{}{base}",
                admin.local_addr()?
            );
        }
        println!("listening on {scheme}://{addr}{base}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, store = %store.describe(&args), "collector started");
        let backend = store.backend();
        let mut settings = Settings {
            retention_days: args.retention_days,
            connections: anonstats_server::connections::ConnectionLimits {
                max_connections: args.max_connections,
                header_timeout: std::time::Duration::from_secs(args.header_timeout_secs),
            },
            in_flight: anonstats_server::admission::Bounds {
                events: args.queue_events,
                bytes: args.queue_mb << 20,
            },
            rate: Limits {
                project_events: args.project_events_per_minute,
                machine_events: args.machine_events_per_minute,
                new_machines: args.new_machines_per_minute,
            },
            ..Settings::default()
        };
        settings.api.k = args.k_anonymity;
        settings.limits.body_timeout = std::time::Duration::from_secs(args.body_timeout_secs);
        // A browser reaches a collector that serves TLS itself over https only.
        settings.api.secure_cookie = tls.is_some()
            || args
                .public_url
                .as_deref()
                .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
        settings.tls = tls;
        settings.base_path = args.base_path.clone();
        settings.api.metrics_public = args.metrics_public;
        anonstats_server::serve(listener, admin, backend, metrics, settings, shutdown).await?;
        anyhow::Ok(())
    });
    // Commits what the writer still holds before the process ends.
    store.close();
    tracing::info!("collector stopped");
    result.map(|()| ExitCode::SUCCESS)
}

/// mimalloc asks for transparent huge pages for its arenas, and where the kernel grants
/// them (THP "madvise" or "always"), a few bytes touched in a 2 MB region make all of it
/// resident: 3,000 idle connections held 21 KB each with them, 13 KB without, and 3x
/// overload peaked 50 MB higher.
fn no_huge_pages() {
    // SAFETY: prctl on this process with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        tracing::debug!("cannot turn transparent huge pages off");
    }
}

/// Threads of the blocking pool (decoding, store look-ups, ClickHouse calls).
const BLOCKING_THREADS: usize = 64;

/// File descriptors kept for everything but connections: the store, its log, the
/// listener, ClickHouse connections, the blocking pool.
const RESERVED_FILES: u64 = 256;

/// Raise the soft open-file limit as far as the connection cap needs (service managers
/// start processes at 1024, far under the default cap), up to the hard limit. Where the
/// hard limit is too low, the cap is lowered to fit, and the log says so: past the limit
/// every accept would fail instead of waiting for a free slot.
fn fit_open_files(max_connections: usize) -> usize {
    let want = max_connections as u64 + RESERVED_FILES;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on this process, with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return max_connections;
        }
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    if lim.rlim_cur >= want {
        return max_connections;
    }
    let fits = lim.rlim_cur.saturating_sub(RESERVED_FILES).max(16) as usize;
    tracing::warn!(
        max_connections,
        open_file_limit = lim.rlim_cur,
        lowered_to = fits,
        "the open-file limit (ulimit -n, LimitNOFILE= under systemd) is too low for \
         --max-connections; serving at most {fits} connections at once"
    );
    fits
}

/// On the very first start, creates the default project and an admin token, and hands
/// both over once (see initial_tokens.rs).
fn first_start(store: &dyn KeyStore, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if !store.projects()?.is_empty() {
        return Ok(());
    }
    let (project, write) = store.create_project("default")?;
    crate::initial_tokens::hand_over(store, data_dir, &project.name, &write)
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed before it is returned, so a
/// signal that arrives right after start-up still shuts down cleanly.
fn shutdown() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}
