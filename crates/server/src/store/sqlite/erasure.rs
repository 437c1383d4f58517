//! Erasure of one machine and retention: events removed together with their share of
//! the rollups.

use super::SqliteStore;
use super::rollup::{self, DAY_MS};
use crate::store::StoreError;
use rusqlite::{Connection, params};

pub(super) fn erase_machine(
    store: &SqliteStore,
    project_id: i64,
    distinct_id: &str,
) -> Result<u64, StoreError> {
    // No index leads from a machine to its events (it would slow every insert), so
    // finding them scans the table: on a reader, while ingest goes on. Events stored
    // after that scan are found again by sequence number under the write lock.
    let reader = store.reader()?;
    let scanned: i64 =
        reader.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    let mut found = machine_events(&reader, project_id, distinct_id, 0, scanned)?;
    store.control(|conn| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        found.extend(machine_events(
            &tx,
            project_id,
            distinct_id,
            scanned,
            i64::MAX,
        )?);
        let mut delete = tx.prepare_cached("DELETE FROM events WHERE seq = ?1")?;
        for (seq, _) in &found {
            delete.execute([seq])?;
        }
        let mut days: Vec<i64> = found.iter().map(|(_, day)| *day).collect();
        days.sort_unstable();
        days.dedup();
        rollup::rebuild_days(&tx, project_id, &days)?;
        drop(delete);
        tx.commit()?;
        Ok(found.len() as u64)
    })
}

pub(super) fn purge_before(store: &SqliteStore, cutoff_ms: i64) -> Result<u64, StoreError> {
    let day = cutoff_ms.div_euclid(DAY_MS);
    store.control(|conn| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Project by project, so that every delete seeks its index rather than
        // reading whole tables while it holds the write lock.
        let mut n = 0;
        for project in project_ids(&tx)? {
            let at = |sql: &str, bound: i64| tx.execute(sql, params![project, bound]);
            n += at(
                "DELETE FROM events WHERE project_id = ?1 AND ts_ms < ?2",
                day * DAY_MS,
            )?;
            for table in super::rollup::ROLLUP_HOUR_TABLES {
                at(
                    &format!("DELETE FROM {table} WHERE project_id = ?1 AND hour < ?2"),
                    day * 24,
                )?;
            }
            for table in super::rollup::ROLLUP_DAY_TABLES {
                at(
                    &format!("DELETE FROM {table} WHERE project_id = ?1 AND day < ?2"),
                    day,
                )?;
            }
            super::spans::invalidate_before(&tx, project, day)?;
        }
        tx.commit()?;
        Ok(n as u64)
    })
}

/// Every project that has events, found by seeking from one id to the next.
fn project_ids(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut next =
        conn.prepare_cached("SELECT MIN(project_id) FROM events WHERE project_id > ?1")?;
    let mut out = Vec::new();
    let mut last = i64::MIN;
    while let Some(p) = next.query_row([last], |r| r.get::<_, Option<i64>>(0))? {
        out.push(p);
        last = p;
    }
    Ok(out)
}

/// The (sequence number, day) of one machine's events stored after `after` and up to
/// `upto`.
fn machine_events(
    conn: &Connection,
    project: i64,
    distinct_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, ts_ms FROM events
         WHERE seq > ?3 AND seq <= ?4 AND project_id = ?1 AND distinct_id = ?2",
    )?;
    let rows = stmt.query_map(params![project, distinct_id, after, upto], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)?.div_euclid(DAY_MS)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
