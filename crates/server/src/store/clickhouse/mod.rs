//! The scale-out store: events, projects and keys in ClickHouse over its HTTP interface,
//! so that any number of stateless collectors can run in front of one server or a
//! cluster. The SQL keeps to what both Debian's 18.16 and current releases accept
//! (docs/clickhouse-dialect.md).

mod adhoc;
pub mod http;
mod insights;
mod keys;
pub mod schema;
mod writer;

pub use writer::Batching;

use crate::metrics::{Metrics, QueueDepth, StoreVitals};
use crate::store::{
    BoxFuture, EventStore, ExportQuery, Inserted, KeyStore, LastAdmin, NewEvent, NewSecret,
    PrivacyMode, Project, Role, SecretKey, StoreError, StoredEvent, WriteKey,
};
use http::{Client, Kind, Node, SqlLog, lit, num};
use keys::Keys;
use schema::Layout;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How to reach ClickHouse.
#[derive(Debug, Clone)]
pub struct Config {
    /// `clickhouse://HOST:PORT/DATABASE` (or `http://`): the HTTP interface.
    pub url: String,
    pub user: String,
    pub password: String,
    /// Spread events over this cluster's shards (a Distributed table).
    pub cluster: Option<String>,
    /// HTTP URLs of the cluster's nodes, when they are not all at the primary's port.
    pub nodes: Vec<String>,
    pub batching: Batching,
    /// Requests that may wait for an insert before new ones get 503.
    pub queue: usize,
    /// Append every statement sent to this file (JSON lines), for replaying elsewhere.
    pub sql_log: Option<PathBuf>,
    /// Longest a read may take.
    pub read_timeout: Duration,
}

impl Config {
    pub fn new(url: &str) -> Config {
        Config {
            url: url.to_string(),
            user: "default".into(),
            password: String::new(),
            cluster: None,
            nodes: vec![],
            batching: Batching::default(),
            queue: 4096,
            sql_log: None,
            read_timeout: Duration::from_secs(600),
        }
    }
}

/// Splits `clickhouse://host:port/db` into the HTTP base URL and the database.
pub fn parse_url(url: &str) -> Result<(String, String), StoreError> {
    let bad = || {
        StoreError::Invalid(format!(
            "{url:?} is not a ClickHouse URL; use clickhouse://HOST:PORT/DATABASE (the HTTP port, 8123 by default)"
        ))
    };
    let rest = url
        .strip_prefix("clickhouse://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (host, db) = rest.split_once('/').unwrap_or((rest, "anonstats"));
    let db = db.trim_end_matches('/');
    let db = if db.is_empty() { "anonstats" } else { db };
    if host.is_empty() || host.contains('@') {
        return Err(bad());
    }
    let host = if host.contains(':') && !host.ends_with(']') {
        host.to_string()
    } else {
        format!("{host}:8123")
    };
    schema::valid_name("the database name", db)?;
    Ok((format!("http://{host}"), db.to_string()))
}

pub struct ClickHouseStore {
    primary: Client,
    /// One client per node (every shard); the primary alone without a cluster.
    nodes: Vec<Client>,
    layout: Layout,
    config: Config,
    writer: RwLock<Option<SyncSender<writer::Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    seq: Arc<writer::Seq>,
    /// The writers' queue, as `/metrics` shows it.
    queued: RwLock<Arc<QueueDepth>>,
    /// The tables' sizes and when they were read: `system.parts` is asked at most once
    /// per [`SIZE_EVERY`], however often `/metrics` is scraped.
    sizes: Mutex<Option<(Instant, TableSizes)>>,
    /// Held while one scrape reads the sizes.
    sizing: Mutex<()>,
}

/// Bytes on disk by table.
type TableSizes = Vec<(String, u64)>;

/// How long the tables' sizes are shown before they are read again.
const SIZE_EVERY: Duration = Duration::from_secs(60);
/// How long a node may take to tell its tables' sizes.
const SIZE_TIMEOUT: Duration = Duration::from_secs(5);

impl ClickHouseStore {
    /// Connects, finds the cluster's nodes and creates every table that is missing.
    pub fn open(config: Config) -> Result<Self, StoreError> {
        let (base, db) = parse_url(&config.url)?;
        let log = match &config.sql_log {
            Some(p) => Some(SqlLog::open(p)?),
            None => None,
        };
        let make = |base: &str| {
            Client::new(
                Node {
                    base: base.to_string(),
                    user: config.user.clone(),
                    password: config.password.clone(),
                },
                config.read_timeout,
                log.clone(),
            )
        };
        let primary = make(&base);
        if let Some(c) = &config.cluster {
            schema::valid_name("the cluster name", c)?;
        }
        let layout = Layout {
            db,
            cluster: config.cluster.clone(),
        };
        let nodes = match &layout.cluster {
            Some(c) => schema::cluster_nodes(&primary, c, &config.nodes, &make)?,
            None => vec![primary.clone()],
        };
        schema::create(&nodes, &layout)?;
        let store = ClickHouseStore {
            primary,
            nodes,
            layout,
            config,
            writer: RwLock::new(None),
            threads: Mutex::new(Vec::new()),
            seq: Arc::default(),
            queued: RwLock::default(),
            sizes: Mutex::new(None),
            sizing: Mutex::new(()),
        };
        let hashed = store.keys().hash_plaintext_tokens()?;
        if hashed > 0 {
            tracing::info!(
                tokens = hashed,
                "write tokens stored whole were replaced by their hashes"
            );
        }
        Ok(store)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// How many nodes the store writes its schema and mutations to.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Starts the batching writers.
    pub fn start_writer(&self, metrics: Arc<Metrics>) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(self.config.queue.max(1));
        metrics.store_queue.set_bound(self.config.queue.max(1));
        *self.queued.write().unwrap_or_else(|p| p.into_inner()) = metrics.store_queue.clone();
        let rx = Arc::new(Mutex::new(rx));
        let mut settings: Vec<(&'static str, &'static str)> = vec![];
        if self.layout.cluster.is_some() {
            // The insert returns only once every shard has its rows.
            settings.push(("insert_distributed_sync", "1"));
        }
        let batching = self.config.batching;
        let mut handles = Vec::new();
        for i in 0..batching.writers.max(1) {
            let (rx, client, table) = (rx.clone(), self.insert_client(), self.layout.events());
            let (settings, seq, metrics) = (settings.clone(), self.seq.clone(), metrics.clone());
            let handle = std::thread::Builder::new()
                .name(format!("anonstats-ch-writer-{i}"))
                .spawn(move || writer::run(rx, client, table, settings, batching, seq, metrics))
                .map_err(|e| StoreError::Backend(format!("cannot start a writer thread: {e}")))?;
            handles.push(handle);
        }
        *self.writer.write().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        *self.threads.lock().unwrap_or_else(|p| p.into_inner()) = handles;
        Ok(())
    }

    /// A client with a shorter timeout: an insert that hangs is answered 503.
    fn insert_client(&self) -> Client {
        self.primary.with_timeout(Duration::from_secs(30))
    }

    /// Stops accepting inserts, lets the writers send what is queued, and waits for them.
    pub fn close(&self) {
        self.writer
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    fn keys(&self) -> Keys<'_> {
        Keys {
            primary: &self.primary,
            nodes: &self.nodes,
            layout: &self.layout,
        }
    }

    /// Inserts rows synchronously, bypassing the batching writers (for migrations).
    /// `seq` keeps the source's order.
    pub fn insert_now(&self, events: &[(NewEvent, u64)]) -> Result<(), StoreError> {
        let mut body = Vec::new();
        for (e, seq) in events {
            writer::encode(&mut body, e, *seq);
        }
        if body.is_empty() {
            return Ok(());
        }
        let settings: &[(&str, &str)] = if self.layout.cluster.is_some() {
            &[("insert_distributed_sync", "1")]
        } else {
            &[]
        };
        self.primary.insert(&self.layout.events(), &body, settings)
    }

    /// Events stored (one per uuid), optionally of one project.
    pub fn count(&self, project_id: Option<i64>) -> Result<u64, StoreError> {
        match project_id {
            Some(p) => self.count_where(&format!("project_id = {p}")),
            None => self.count_where("1"),
        }
    }

    /// A named number kept in ClickHouse (migration checkpoints).
    pub fn checkpoint(&self, name: &str) -> Result<Option<i64>, StoreError> {
        #[derive(Deserialize)]
        struct V {
            #[serde(deserialize_with = "num")]
            value: i64,
        }
        let rows: Vec<V> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT value FROM {} FINAL WHERE name = {}",
                self.layout.table("checkpoints"),
                lit(name)
            ),
        )?;
        Ok(rows.first().map(|r| r.value))
    }

    pub fn set_checkpoint(&self, name: &str, value: i64) -> Result<(), StoreError> {
        let row = serde_json::json!({"name": name, "value": value,
            "version": chrono::Utc::now().timestamp_micros()});
        self.primary.insert(
            &self.layout.table("checkpoints"),
            format!("{row}\n").as_bytes(),
            &[],
        )
    }

    /// Copies a project, a write token or an admin or viewer token as they are (for
    /// migrations).
    pub fn import_project(&self, p: &Project) -> Result<(), StoreError> {
        self.keys().import_project(p)
    }
    pub fn import_write_key(&self, k: &WriteKey) -> Result<(), StoreError> {
        self.keys().import_write_key(k)
    }
    pub fn import_admin(&self, key: &SecretKey, hash: &[u8]) -> Result<(), StoreError> {
        self.keys().import_admin(key, hash)
    }

    /// Runs `ALTER TABLE <local events> <command>` on every node and waits until every
    /// node has finished it.
    fn mutate(&self, command: &str) -> Result<(), StoreError> {
        for node in &self.nodes {
            node.execute(
                Kind::Mutation,
                &format!("ALTER TABLE {} {command}", self.layout.events_local()),
            )?;
        }
        for node in &self.nodes {
            wait_for_mutations(
                node,
                &self.layout.db,
                self.layout.local_name(),
                self.config.read_timeout,
            )?;
        }
        Ok(())
    }

    /// Drops, on every node, the month partitions whose events all lie before `cutoff_ms`.
    fn drop_months_before(&self, cutoff_ms: i64) -> Result<(), StoreError> {
        #[derive(Deserialize)]
        struct Part {
            #[serde(deserialize_with = "num")]
            p: i64,
        }
        for node in &self.nodes {
            let parts: Vec<Part> = node.rows(
                Kind::Poll,
                &format!(
                    "SELECT toYYYYMM(ts) AS p FROM {} GROUP BY p HAVING max(ts_ms) < {cutoff_ms} ORDER BY p",
                    self.layout.events_local()
                ),
            )?;
            for part in parts {
                node.execute(
                    Kind::Mutation,
                    &format!(
                        "ALTER TABLE {} DROP PARTITION {}",
                        self.layout.events_local(),
                        part.p
                    ),
                )?;
            }
        }
        Ok(())
    }
}

/// Waits until `node` has finished every mutation of `db.table`.
fn wait_for_mutations(
    node: &Client,
    db: &str,
    table: &str,
    limit: Duration,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + limit;
    loop {
        let rows: Vec<insights::Count> = node.rows(
            Kind::Poll,
            &format!(
                "SELECT count() AS n FROM system.mutations WHERE database = {} AND table = {} AND is_done = 0",
                lit(db),
                lit(table)
            ),
        )?;
        if rows.first().is_none_or(|r| r.n == 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StoreError::Unavailable(format!(
                "ClickHouse at {} has not finished the deletion yet; it goes on in the background",
                node.node.base
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl EventStore for ClickHouseStore {
    fn insert(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        let sender = self
            .writer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let queue = self
            .queued
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move {
            let sender = sender
                .ok_or_else(|| StoreError::Unavailable("the collector is shutting down".into()))?;
            let (reply, answer) = oneshot::channel();
            let queued = queue.enter(events.len(), events.iter().map(NewEvent::size).sum());
            sender
                .try_send(writer::Job {
                    events,
                    reply,
                    queued,
                })
                .map_err(|e| match e {
                    TrySendError::Full(_) => StoreError::Overloaded,
                    TrySendError::Disconnected(_) => {
                        StoreError::Unavailable("the collector is shutting down".into())
                    }
                })?;
            answer.await.map_err(|_| {
                StoreError::Unavailable("the writer stopped before ClickHouse confirmed".into())
            })?
        })
    }

    fn export(
        &self,
        q: &ExportQuery,
        each: &mut dyn FnMut(StoredEvent) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut cond = vec!["1".to_string()];
        if let Some(p) = q.project_id {
            cond.push(format!("project_id = {p}"));
        }
        if let Some(f) = q.from_ms {
            cond.push(format!(
                "ts >= toDateTime({}) AND ts_ms >= {f}",
                writer::ts_seconds(f)
            ));
        }
        if let Some(t) = q.to_ms {
            cond.push(format!(
                "ts <= toDateTime({}) AND ts_ms < {t}",
                writer::ts_seconds(t)
            ));
        }
        let sql = format!(
            "SELECT {} FROM {} FINAL WHERE {} ORDER BY seq",
            insights::EVENT_SELECT,
            self.layout.events(),
            cond.join(" AND ")
        );
        let mut n = 0;
        self.primary.stream(
            &sql,
            &[("max_bytes_before_external_sort", "1000000000")],
            &mut |line| {
                let row: insights::EventRow = serde_json::from_str(line).map_err(|e| {
                    StoreError::Backend(format!("unexpected answer from ClickHouse: {e}"))
                })?;
                each(row.stored()?)?;
                n += 1;
                Ok(())
            },
        )?;
        Ok(n)
    }

    fn vitals(&self) -> StoreVitals {
        let cached = || self.sizes.lock().unwrap_or_else(|p| p.into_inner());
        let stale = cached()
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= SIZE_EVERY);
        // One scrape asks at a time, without holding up the others, which show what was
        // read last (nothing before the first answer).
        if let (true, Ok(_asking)) = (stale, self.sizing.try_lock()) {
            let read = self.table_sizes();
            let mut cached = cached();
            let sizes = match read {
                Ok(sizes) => sizes,
                // Asked again only a minute later: an unreachable ClickHouse is not asked
                // at every scrape.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the tables' sizes from ClickHouse");
                    cached.take().map(|(_, s)| s).unwrap_or_default()
                }
            };
            *cached = Some((Instant::now(), sizes));
        }
        StoreVitals {
            size_bytes: cached()
                .as_ref()
                .map(|(_, s)| s.clone())
                .unwrap_or_default(),
            // Insights are answered from the events themselves.
            rollup_lag: Duration::ZERO,
        }
    }
}

impl ClickHouseStore {
    /// Bytes on disk of each table of the database, summed over the nodes.
    fn table_sizes(&self) -> Result<TableSizes, StoreError> {
        #[derive(Deserialize)]
        struct Size {
            table: String,
            #[serde(deserialize_with = "num")]
            bytes: i64,
        }
        let mut sizes = std::collections::BTreeMap::<String, u64>::new();
        for node in &self.nodes {
            // A scrape must not wait for as long as a query may take.
            let rows: Vec<Size> = node.with_timeout(SIZE_TIMEOUT).rows(
                Kind::Poll,
                &format!(
                    "SELECT table, sum(bytes_on_disk) AS bytes FROM system.parts WHERE database = {} AND active GROUP BY table",
                    lit(&self.layout.db)
                ),
            )?;
            for r in rows {
                *sizes.entry(r.table).or_default() += r.bytes.max(0) as u64;
            }
        }
        Ok(sizes.into_iter().collect())
    }
}

impl KeyStore for ClickHouseStore {
    fn generation(&self) -> Result<i64, StoreError> {
        self.keys().generation()
    }
    fn projects(&self) -> Result<Vec<Project>, StoreError> {
        self.keys().projects()
    }
    fn write_keys(&self) -> Result<Vec<WriteKey>, StoreError> {
        self.keys().write_keys()
    }
    fn secret_keys(&self) -> Result<Vec<SecretKey>, StoreError> {
        self.keys().secret_keys()
    }
    fn create_project(&self, name: &str) -> Result<(Project, String), StoreError> {
        self.keys().create_project(name)
    }
    fn create_write_key(&self, project: &str) -> Result<String, StoreError> {
        self.keys().create_write_key(project)
    }
    fn create_secret(&self, role: Role, new: &NewSecret) -> Result<String, StoreError> {
        self.keys().create_secret(role, new)
    }
    fn secret_of(&self, token: &str) -> Result<Option<SecretKey>, StoreError> {
        self.keys().secret_of(token)
    }
    fn revoke(&self, what: &str, last: LastAdmin) -> Result<String, StoreError> {
        self.keys().revoke(what, last)
    }
    fn set_privacy(&self, project: &str, mode: PrivacyMode) -> Result<(), StoreError> {
        self.keys().set_privacy(project, mode)
    }
    fn property_names(&self, project_id: i64) -> Result<Vec<String>, StoreError> {
        self.keys().property_names(project_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("clickhouse://127.0.0.1:18123/stats").unwrap(),
            ("http://127.0.0.1:18123".into(), "stats".into())
        );
        assert_eq!(
            parse_url("clickhouse://ch").unwrap(),
            ("http://ch:8123".into(), "anonstats".into())
        );
        assert!(parse_url("postgres://x/y").is_err());
        assert!(parse_url("clickhouse://h:1/bad-name").is_err());
    }
}
