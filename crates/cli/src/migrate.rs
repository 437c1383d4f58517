//! `anonstats migrate --from DATA_DIR --to clickhouse://HOST:PORT/DATABASE`: copies an
//! embedded store (projects, write tokens, admin token hashes, events) into ClickHouse.
//!
//! Resumable: after every batch the last copied sequence number is stored in ClickHouse
//! (`checkpoints`), and a rerun goes on from there; a batch copied twice is collapsed by
//! uuid. At the end both counts are printed, and the exit is non-zero if they differ.

use anonstats_server::rollup::dims;
use anonstats_server::store::KeyStore;
use anonstats_server::store::NewEvent;
use anonstats_server::store::clickhouse::{Batching, ClickHouseStore, Config};
use anonstats_server::store::sqlite::SqliteStore;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How to reach ClickHouse (shared by `serve --store clickhouse://...` and `migrate`).
#[derive(clap::Args, Clone, Debug)]
pub struct ClickHouseArgs {
    /// ClickHouse user.
    #[arg(long, env = "ANONSTATS_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    /// ClickHouse password (better given in the environment; never logged).
    #[arg(
        long,
        env = "ANONSTATS_CLICKHOUSE_PASSWORD",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub clickhouse_password: String,
    /// Spread events over the shards of this cluster (from the server's <remote_servers>):
    /// local tables on every node, a Distributed table sharded by machine.
    #[arg(long, env = "ANONSTATS_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,
    /// HTTP URLs of the cluster's nodes (http://HOST:PORT,...), needed when they do not
    /// all listen on the --store URL's port.
    #[arg(long, env = "ANONSTATS_CLICKHOUSE_NODES", value_delimiter = ',')]
    pub clickhouse_nodes: Vec<String>,
    /// How long an insert waits for more requests to batch with (milliseconds).
    #[arg(long, env = "ANONSTATS_CLICKHOUSE_LINGER_MS", default_value_t = 20)]
    pub clickhouse_linger_ms: u64,
    /// An insert is sent at once when it holds this many events.
    #[arg(long, env = "ANONSTATS_CLICKHOUSE_BATCH", default_value_t = 10_000)]
    pub clickhouse_batch: usize,
    /// Inserts that may run at the same time.
    #[arg(long, env = "ANONSTATS_CLICKHOUSE_WRITERS", default_value_t = 2)]
    pub clickhouse_writers: usize,
}

impl ClickHouseArgs {
    pub fn config(&self, url: &str) -> Config {
        let mut c = Config::new(url);
        c.user = self.clickhouse_user.clone();
        c.password = self.clickhouse_password.clone();
        c.cluster = self.clickhouse_cluster.clone();
        c.nodes = self.clickhouse_nodes.clone();
        c.batching = Batching {
            linger: Duration::from_millis(self.clickhouse_linger_ms),
            max_events: self.clickhouse_batch.max(1),
            writers: self.clickhouse_writers.max(1),
        };
        c
    }
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Data directory of the embedded store to copy from.
    #[arg(long)]
    pub from: PathBuf,
    /// The ClickHouse store to copy into: clickhouse://HOST:PORT/DATABASE.
    #[arg(long)]
    pub to: String,
    /// Events per insert.
    #[arg(long, default_value_t = 50_000)]
    pub batch: usize,
    /// Start from the beginning, ignoring a stored checkpoint.
    #[arg(long)]
    pub restart: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// serve's TOML config file: its `clickhouse-*` settings (user, password, cluster,
    /// nodes, ...) apply here too, under flags and environment variables.
    #[arg(long, env = "ANONSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
}

type Batch = Vec<(NewEvent, u64)>;

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let db = args.from.join(anonstats_server::store::sqlite::DB_FILE);
    anyhow::ensure!(
        db.exists(),
        "no store at {} ({} is missing); pass --from with the data dir `anonstats serve` uses",
        args.from.display(),
        db.display()
    );
    let source = SqliteStore::open(&args.from)
        .with_context(|| format!("cannot open the store in {}", args.from.display()))?;
    let dest = ClickHouseStore::open(args.clickhouse.config(&args.to))
        .with_context(|| format!("cannot open the ClickHouse store at {}", args.to))?;

    copy_keys(&source, &dest)?;

    let name = format!(
        "migrate:{}",
        std::fs::canonicalize(&db).unwrap_or(db.clone()).display()
    );
    let start = if args.restart {
        0
    } else {
        dest.checkpoint(&name)?.unwrap_or(0)
    };
    let conn = source.reader()?;
    let (total, left): (i64, i64) = conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE seq > ?1) FROM events",
        [start],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if start > 0 {
        println!("resuming after event #{start}: {left} of {total} events left");
    }
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(u64::try_from(left).unwrap_or(0))
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );

    // One thread reads SQLite while this one inserts into ClickHouse.
    let (tx, rx) = mpsc::sync_channel::<anyhow::Result<Batch>>(2);
    let from = args.from.clone();
    let batch_size = args.batch.max(1);
    let reader = std::thread::spawn(move || read_batches(&from, start, batch_size, &tx));
    let began = Instant::now();
    let mut copied = 0u64;
    for batch in rx {
        let batch = batch?;
        let Some(last) = batch.last().map(|(_, seq)| *seq) else {
            continue;
        };
        dest.insert_now(&batch)?;
        dest.set_checkpoint(&name, i64::try_from(last).unwrap_or(i64::MAX))?;
        copied += batch.len() as u64;
        bar.inc(batch.len() as u64);
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reading thread failed"))?;
    bar.finish_and_clear();
    let secs = began.elapsed().as_secs_f64();
    println!(
        "copied {copied} events in {secs:.1} s ({:.0} events/s)",
        copied as f64 / secs.max(0.001)
    );

    let source_count = u64::try_from(total).unwrap_or(0);
    let dest_count = dest.count(None)?;
    println!("events in {}: {source_count}", args.from.display());
    println!("events in {}: {dest_count}", args.to);
    if source_count != dest_count {
        eprintln!(
            "anonstats: the counts differ; run the migration again (it resumes), or with --restart"
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("the counts match");
    Ok(ExitCode::SUCCESS)
}

/// Projects, write tokens and admin token hashes, with their ids.
fn copy_keys(source: &SqliteStore, dest: &ClickHouseStore) -> anyhow::Result<()> {
    for p in source.projects()? {
        dest.import_project(&p)?;
    }
    for k in source.write_keys()? {
        dest.import_write_key(&k)?;
    }
    // The hashes are not part of a listing: read beside it.
    let conn = source.reader()?;
    let mut stmt = conn.prepare("SELECT hash FROM admin_tokens WHERE id = ?1")?;
    let mut admins = 0;
    for key in source.secret_keys()? {
        let hash: Vec<u8> = stmt.query_row([key.id], |r| r.get(0))?;
        dest.import_admin(&key, &hash)?;
        admins += 1;
    }
    println!(
        "copied {} projects, {} write tokens, {admins} admin tokens",
        source.projects()?.len(),
        source.write_keys()?.len()
    );
    Ok(())
}

fn read_batches(
    from: &std::path::Path,
    start: i64,
    size: usize,
    tx: &mpsc::SyncSender<anyhow::Result<Batch>>,
) {
    let result = (|| -> anyhow::Result<()> {
        let source = SqliteStore::open(from)?;
        let conn = source.reader()?;
        let mut stmt = conn.prepare(
            "SELECT seq, project_id, uuid, event, distinct_id, ts_ms, received_ms, properties
             FROM events WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query([start])?;
        let mut batch = Vec::with_capacity(size);
        while let Some(r) = rows.next()? {
            let uuid: Vec<u8> = r.get(2)?;
            let event: String = r.get(3)?;
            let properties: String = r.get(7)?;
            let map = anonstats_wire::Properties::parse(&properties).unwrap_or_default();
            let e = NewEvent {
                project_id: r.get(1)?,
                uuid: Uuid::from_slice(&uuid).context("a stored uuid is not 16 bytes")?,
                dims: dims(&event, &map),
                event,
                distinct_id: r.get(4)?,
                timestamp_ms: r.get(5)?,
                received_ms: r.get(6)?,
                properties,
            };
            batch.push((e, u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0)));
            if batch.len() == size && tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = tx.send(Err(e));
    }
}
