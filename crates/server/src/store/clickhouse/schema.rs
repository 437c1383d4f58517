//! Tables of the ClickHouse store, created on every node when the store opens, and the
//! discovery of a cluster's shards.
//!
//! Events live in a `ReplacingMergeTree(ver)` partitioned by month and ordered by
//! `(project_id, event, uuid)`: the sorting key is what ReplacingMergeTree collapses on, so
//! every copy of one event (same project, name and uuid) becomes one row, whatever its
//! timestamp (a resend may carry a different `sent_at` and so a different time). `ver`
//! decreases with the insertion order, so the first copy wins, as in the embedded store.
//! Reads use `FINAL`. Time ranges are pruned by the month partitions and by each part's
//! min/max of `ts`; parts are written per insert batch, so they cover short time spans.
//!
//! The properties the dashboards break down and filter by most ([`INDEXED_DIMS`]) also get
//! a column of their own, `MATERIALIZED` from the dims arrays (NULL when the event lacks
//! the property): an insight on one of them reads that narrow column instead of the two
//! arrays of every property, which is most of the cost of a breakdown. The columns are
//! added to existing tables when the store opens; parts written before are computed from
//! the arrays on read until a merge writes the column out. In cluster mode only the
//! shards' local tables have them: 18.16's Distributed table would forward a
//! `MATERIALIZED` column to the shards, which refuse it, so reads through it use the arrays.

use super::http::{Client, Kind, lit};
use crate::store::StoreError;
use serde::Deserialize;

/// Names of the tables of one store.
#[derive(Debug, Clone)]
pub struct Layout {
    pub db: String,
    /// The cluster name when the events are spread over shards.
    pub cluster: Option<String>,
}

impl Layout {
    /// The table that takes inserts and reads (Distributed in cluster mode).
    pub fn events(&self) -> String {
        format!("{}.events", self.db)
    }
    /// The name (without database) of the table that holds rows on each node.
    pub fn local_name(&self) -> &'static str {
        if self.cluster.is_some() {
            "events_local"
        } else {
            "events"
        }
    }
    /// The table mutations run on, on every node.
    pub fn events_local(&self) -> String {
        format!("{}.{}", self.db, self.local_name())
    }
    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.db)
    }
}

/// Checks a database or cluster name: letters, digits and `_` only, so that it can be
/// written into SQL as it is.
pub fn valid_name(what: &str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} {name:?} must be letters, digits and '_' (not starting with a digit)"
        )))
    }
}

pub const EVENT_COLUMNS: &str = "
    project_id Int64,
    uuid UUID,
    event String,
    distinct_id String,
    ts DateTime,
    ts_ms Int64,
    received_ms Int64,
    seq UInt64,
    ver UInt64,
    properties String,
    dim_keys Array(String),
    dim_values Array(String),
    crash_site String,
    crash_version String";

/// Properties with a column of their own (`d_<name>`): the version, the systems insight's
/// properties, the cloud error code and the release channel.
pub const INDEXED_DIMS: &[&str] = &[
    "product_version",
    "host_os_name",
    "host_os_id",
    "system_kernel_name",
    "system_kernel_version",
    "system_architecture",
    "system_virtualization",
    "system_container",
    "error_code",
    "release_channel",
];

impl Layout {
    /// The column of the read table that holds property `p`, when it has one.
    pub fn dim_column(&self, p: &str) -> Option<String> {
        (self.cluster.is_none() && INDEXED_DIMS.contains(&p)).then(|| format!("d_{p}"))
    }
}

/// Column definitions of the indexed properties, in the order of [`INDEXED_DIMS`].
fn dim_column_defs() -> Vec<(String, String)> {
    INDEXED_DIMS
        .iter()
        .map(|p| {
            let k = lit(p);
            (
                format!("d_{p}"),
                format!(
                    "Nullable(String) MATERIALIZED if(has(dim_keys, {k}), dim_values[indexOf(dim_keys, {k})], NULL)"
                ),
            )
        })
        .collect()
}

#[derive(Deserialize)]
struct ColumnName {
    name: String,
}

/// Adds the columns `table` lacks (plain `ADD COLUMN`: 18.16 has no `IF NOT EXISTS`
/// there).
fn add_columns(
    node: &Client,
    db: &str,
    table: &str,
    columns: &[(String, String)],
) -> Result<(), StoreError> {
    let have: Vec<ColumnName> = node.rows(
        Kind::Select,
        &format!(
            "SELECT name FROM system.columns WHERE database = {} AND table = {}",
            lit(db),
            lit(table)
        ),
    )?;
    for (name, def) in columns {
        if !have.iter().any(|c| &c.name == name) {
            node.execute(
                Kind::Ddl,
                &format!("ALTER TABLE {db}.{table} ADD COLUMN {name} {def}"),
            )?;
        }
    }
    Ok(())
}

fn key_tables(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.projects (id Int64, name String, created_ms Int64, \
             allowlist String, has_allowlist UInt8, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY id"
        ),
        // `token` holds the token's SHA-256 in hex (keys.rs).
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.write_tokens (token String, project_id Int64, \
             created_ms Int64, revoked_ms Int64, version UInt64, prefix String) \
             ENGINE = ReplacingMergeTree(version) ORDER BY token"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.admin_tokens (id Int64, hash String, prefix String, \
             created_ms Int64, revoked_ms Int64, version UInt64, name String, expires_ms Int64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.checkpoints (name String, value Int64, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY name"
        ),
    ]
}

/// Creates the database and every table on every node (`ON CLUSTER` would need
/// ZooKeeper, so each node gets the statements itself).
pub fn create(nodes: &[Client], layout: &Layout) -> Result<(), StoreError> {
    let db = &layout.db;
    for node in nodes {
        node.execute(Kind::Ddl, &format!("CREATE DATABASE IF NOT EXISTS {db}"))?;
        node.execute(
            Kind::Ddl,
            &format!(
                "CREATE TABLE IF NOT EXISTS {} ({EVENT_COLUMNS}\n) ENGINE = ReplacingMergeTree(ver)\n\
                 PARTITION BY toYYYYMM(ts)\nORDER BY (project_id, event, uuid)\n\
                 SETTINGS index_granularity = 8192",
                layout.events_local()
            ),
        )?;
        if let Some(cluster) = &layout.cluster {
            node.execute(
                Kind::Ddl,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {} AS {} ENGINE = Distributed({cluster}, {db}, {}, cityHash64(distinct_id))",
                    layout.events(),
                    layout.events_local(),
                    layout.local_name()
                ),
            )?;
        }
        // After the Distributed table, which must not copy these columns.
        add_columns(node, db, layout.local_name(), &dim_column_defs())?;
        for sql in key_tables(db) {
            node.execute(Kind::Ddl, &sql)?;
        }
        // Columns added since the key tables were first made (0 and "" for older rows:
        // no expiry, no name).
        let col = |n: &str, t: &str| (n.to_string(), t.to_string());
        add_columns(node, db, "write_tokens", &[col("prefix", "String")])?;
        add_columns(
            node,
            db,
            "admin_tokens",
            &[col("name", "String"), col("expires_ms", "Int64")],
        )?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct ShardRow {
    #[serde(deserialize_with = "super::http::num")]
    shard_num: i64,
    host_address: String,
}

/// One client per node of `cluster`: the nodes given (HTTP URLs) and, for shards none of
/// them serves, the shard's host at the primary's HTTP port. Fails unless every shard
/// has a node.
pub fn cluster_nodes(
    primary: &Client,
    cluster: &str,
    extra: &[String],
    make: &dyn Fn(&str) -> Client,
) -> Result<Vec<Client>, StoreError> {
    let shards: Vec<ShardRow> = primary.rows(
        Kind::Select,
        &format!(
            "SELECT shard_num, host_address FROM system.clusters WHERE cluster = {} ORDER BY shard_num, replica_num",
            lit(cluster)
        ),
    )?;
    if shards.is_empty() {
        return Err(StoreError::Invalid(format!(
            "ClickHouse at {} has no cluster named {cluster:?} in its <remote_servers>",
            primary.node.base
        )));
    }
    let port = primary
        .node
        .base
        .rsplit(':')
        .next()
        .unwrap_or("8123")
        .to_string();
    let mut candidates: Vec<String> = vec![primary.node.base.clone()];
    candidates.extend(extra.iter().map(|u| u.trim_end_matches('/').to_string()));
    for s in &shards {
        let host = if s.host_address.contains(':') {
            format!("[{}]", s.host_address)
        } else {
            s.host_address.clone()
        };
        candidates.push(format!("http://{host}:{port}"));
    }
    let mut nodes: Vec<(i64, Client)> = Vec::new();
    for base in candidates {
        if nodes.iter().any(|(_, c)| c.node.base == base) {
            continue;
        }
        let client = make(&base);
        let local: Vec<ShardRow> = match client.rows(
            Kind::Select,
            &format!(
                "SELECT shard_num, host_address FROM system.clusters WHERE cluster = {} AND is_local = 1",
                lit(cluster)
            ),
        ) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(node = %base, error = %e, "not a node of the cluster");
                continue;
            }
        };
        if let Some(row) = local.first() {
            nodes.push((row.shard_num, client));
        }
    }
    let missing: Vec<String> = shards
        .iter()
        .filter(|s| !nodes.iter().any(|(n, _)| *n == s.shard_num))
        .map(|s| format!("shard {} ({})", s.shard_num, s.host_address))
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Invalid(format!(
            "no HTTP endpoint found for {} of cluster {cluster:?}; list every node with --clickhouse-nodes http://HOST:PORT,...",
            missing.join(", ")
        )));
    }
    nodes.sort_by_key(|(n, _)| *n);
    Ok(nodes.into_iter().map(|(_, c)| c).collect())
}
