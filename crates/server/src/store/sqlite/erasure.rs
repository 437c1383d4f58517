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
    let started = std::time::Instant::now();
    let mut plan = plan(store, project_id, distinct_id)?;
    let planned = started.elapsed();
    let recount = catch_up(store, &mut plan)?;
    tracing::info!(
        plan_ms = planned.as_millis() as u64,
        catch_up_ms = (started.elapsed() - planned).as_millis() as u64,
        "planned an erasure"
    );
    apply(store, plan, recount)
}

/// What erasing a machine removes and what the rollups of its days become, worked out on
/// a reader while ingest goes on: no index leads from a machine to its events (it would
/// slow every insert), and recounting its days means reading every event of them.
struct Plan {
    project_id: i64,
    distinct_id: String,
    /// The machine's events up to the plan's snapshot, as (sequence number, day): the
    /// days to recount.
    found: Vec<(i64, i64)>,
    /// Its events stored after those, up to `scanned`, as the catch-up found them.
    since: Vec<(i64, i64)>,
    scanned: i64,
    /// The rollups of the days in `found`, without the machine, over the events up to
    /// `counted`: the rollup mark when the plan was made or caught up; of each event
    /// only the (property, value)s the machine had that day, the rows it touched.
    recount: rollup::Agg,
    counted: i64,
    /// What the machine's events in `found` add to the rollups: the rows to replace.
    touched: rollup::Agg,
    /// The (property, value)s of `touched` on each day: those the recount keeps.
    values: rollup::Values,
    /// Erasures and retention passes before the plan; another one since spoils it.
    generation: i64,
}

fn plan(store: &SqliteStore, project_id: i64, distinct_id: &str) -> Result<Plan, StoreError> {
    let mut reader = store.reader()?;
    // One read transaction: every number below is of the same snapshot.
    let tx = reader.transaction()?;
    let scanned: i64 =
        tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    let counted = rollup::folded_upto(&tx)?;
    let generation = rollup::meta(&tx, GENERATION)?.unwrap_or(0);
    let found = machine_events(&tx, project_id, distinct_id, 0, scanned)?;
    let mut touched = rollup::Agg::default();
    count_found(&tx, &found, &mut touched)?;
    let values = rollup::Values::of(&touched);
    let mut recount = rollup::Agg::default();
    for day in days_of(&found) {
        rollup::count_events_at(
            &tx,
            "project_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 AND seq <= ?4 AND distinct_id != ?5",
            params![
                project_id,
                day * DAY_MS,
                (day + 1) * DAY_MS,
                counted,
                distinct_id
            ],
            &|_| true,
            Some(&values),
            &mut recount,
        )?;
    }
    Ok(Plan {
        project_id,
        distinct_id: distinct_id.to_string(),
        found,
        since: Vec::new(),
        scanned,
        recount,
        counted,
        touched,
        values,
        generation,
    })
}

/// Counts into the plan's recount what was folded since its snapshot (the recount takes
/// long enough for many events to arrive), so that little is left to count under the
/// write lock, and expands it into the rows it adds up to; then reads the pages the
/// write will change.
fn catch_up(store: &SqliteStore, plan: &mut Plan) -> Result<rollup::Rows, StoreError> {
    let mut reader = store.reader()?;
    let tx = reader.transaction()?;
    let upto = rollup::folded_upto(&tx)?;
    let days = days_of(&plan.found);
    rollup::count_events_at(
        &tx,
        "seq > ?1 AND seq <= ?2 AND +project_id = ?3 AND distinct_id != ?4",
        params![plan.counted, upto, plan.project_id, plan.distinct_id],
        &|ts| days.binary_search(&ts.div_euclid(DAY_MS)).is_ok(),
        Some(&plan.values),
        &mut plan.recount,
    )?;
    plan.counted = upto;
    let recount = std::mem::take(&mut plan.recount).into_rows();
    // The machine's events stored meanwhile are found here rather than by a scan under
    // the lock; what they add is worked out there, with the few stored after.
    let scanned: i64 =
        tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    let since = machine_events(
        &tx,
        plan.project_id,
        &plan.distinct_id,
        plan.scanned,
        scanned,
    )?;
    plan.since.extend(since);
    plan.scanned = scanned;
    // Last, so that reading the days' events does not push these pages out again.
    warm_indexes(&tx, plan.project_id, &plan.found)?;
    warm_indexes(&tx, plan.project_id, &plan.since)?;
    plan.touched.warm(&tx)?;
    Ok(recount)
}

/// Reads the index entries that deleting the found events will change, so that the
/// deletes under the write lock find their pages in memory rather than on disk.
fn warm_indexes(conn: &Connection, project: i64, found: &[(i64, i64)]) -> rusqlite::Result<()> {
    let mut row = conn.prepare_cached("SELECT uuid, ts_ms FROM events WHERE seq = ?1")?;
    let mut by_uuid = conn.prepare_cached(
        "SELECT 1 FROM events INDEXED BY events_uuid WHERE project_id = ?1 AND uuid = ?2",
    )?;
    let mut by_time = conn.prepare_cached(
        "SELECT 1 FROM events INDEXED BY events_time WHERE project_id = ?1 AND ts_ms = ?2",
    )?;
    for (seq, _) in found {
        let (uuid, ts): (Vec<u8>, i64) = row.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
        by_uuid.query_row(params![project, uuid], |_| Ok(()))?;
        by_time.query_row(params![project, ts], |_| Ok(()))?;
    }
    Ok(())
}

/// Adds what the found events add to the rollups to `agg`.
fn count_found(
    conn: &Connection,
    found: &[(i64, i64)],
    agg: &mut rollup::Agg,
) -> rusqlite::Result<()> {
    for (seq, _) in found {
        rollup::count_events(conn, "seq = ?1", [seq], agg)?;
    }
    Ok(())
}

/// Removes the machine's events and puts the planned rows in place of the rollup rows they
/// added to, under the write lock: only what was stored or folded since the plan is read
/// there, and only the rows the machine added to are written.
fn apply(store: &SqliteStore, plan: Plan, recount: rollup::Rows) -> Result<u64, StoreError> {
    store.control(|conn| with_write_cache(conn, true, |conn| write(conn, plan, recount)))
}

/// Runs `f` with a page cache that holds the pages a large rewrite or delete changes:
/// with the connection's usual one, SQLite wrote them to the log in the middle of the
/// transaction and read them back, a millisecond a row. With `never_spill` (for changes
/// of a known, bounded size) changed pages stay in memory past the cache's size too. The
/// memory goes back after.
fn with_write_cache<T>(
    conn: &mut Connection,
    never_spill: bool,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let usual: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", -WRITE_CACHE_KIB)?;
    conn.pragma_update(None, "cache_spill", !never_spill)?;
    let done = f(conn);
    conn.pragma_update(None, "cache_spill", true)?;
    conn.pragma_update(None, "cache_size", usual)?;
    done
}

/// [`with_write_cache`]'s cache (KiB): room for the pages of the rows of a machine seen
/// on every day of months of data, or of a day of events.
const WRITE_CACHE_KIB: i64 = 512 << 10;

/// The write transaction of [`apply`].
fn write(conn: &mut Connection, plan: Plan, recount: rollup::Rows) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let locked = std::time::Instant::now();
    let (project, planned) = (plan.project_id, days_of(&plan.found));
    let mut found = plan.found;
    let mut since = plan.since;
    since.extend(machine_events(
        &tx,
        project,
        &plan.distinct_id,
        plan.scanned,
        i64::MAX,
    )?);
    let mut touched = plan.touched;
    let on_planned: Vec<_> = since
        .iter()
        .copied()
        .filter(|(_, day)| planned.binary_search(day).is_ok())
        .collect();
    // The recount kept only the values the machine had when planned.
    let mut later = rollup::Agg::default();
    count_found(&tx, &on_planned, &mut later)?;
    let same_values = plan.values.cover(&later);
    count_found(&tx, &on_planned, &mut touched)?;
    found.extend(since);
    let deleting = std::time::Instant::now();
    let mut delete = tx.prepare_cached("DELETE FROM events WHERE seq = ?1")?;
    for (seq, _) in &found {
        delete.execute([seq])?;
    }
    drop(delete);
    let delete_ms = deleting.elapsed().as_millis() as u64;
    let days = days_of(&found);
    let rewriting = std::time::Instant::now();
    if same_values && rollup::meta(&tx, GENERATION)?.unwrap_or(0) == plan.generation {
        rollup::replace_touched(
            &tx,
            project,
            &planned,
            recount,
            plan.counted,
            &plan.values,
            &touched,
        )?;
        // Days the machine reached only after the plan have no recount: built afresh.
        let unplanned: Vec<i64> = days
            .iter()
            .copied()
            .filter(|d| planned.binary_search(d).is_err())
            .collect();
        rollup::rebuild_days(&tx, project, &unplanned)?;
    } else {
        rollup::rebuild_days(&tx, project, &days)?;
    }
    bump_generation(&tx)?;
    tx.commit()?;
    tracing::info!(
        events = found.len(),
        days = days.len(),
        write_lock_ms = locked.elapsed().as_millis() as u64,
        delete_ms,
        rollups_ms = rewriting.elapsed().as_millis() as u64,
        "erased a machine's events"
    );
    Ok(found.len() as u64)
}

/// Counts erasures and retention passes, so that a plan made before one is not applied.
const GENERATION: &str = "erasure_generation";

fn bump_generation(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, 1)
         ON CONFLICT (key) DO UPDATE SET value = value + 1",
        [GENERATION],
    )?;
    Ok(())
}

fn days_of(found: &[(i64, i64)]) -> Vec<i64> {
    let mut days: Vec<i64> = found.iter().map(|(_, day)| *day).collect();
    days.sort_unstable();
    days.dedup();
    days
}

/// Removes the events of the days before the one of `cutoff_ms`, with their rollups.
pub(super) fn purge_before(store: &SqliteStore, cutoff_ms: i64) -> Result<u64, StoreError> {
    let cutoff = cutoff_ms.div_euclid(DAY_MS);
    // A day at a time, oldest first, each in a transaction of its own: capture commits
    // between them, and after each the rollups equal the events left.
    let (mut purged, mut upto) = (0, i64::MIN);
    loop {
        // Always a later day than the last pass: events that arrive meanwhile for days
        // already purged wait for the next run, and the passes end at the cutoff.
        upto = match store.control(|conn| Ok(oldest_day(conn)?))? {
            Some(oldest) if oldest < cutoff => (oldest + 1).max(upto + 1),
            _ => cutoff,
        };
        purged += purge_days_before(store, upto)?;
        if upto == cutoff {
            return Ok(purged);
        }
    }
}

/// The day of the oldest event of any project.
fn oldest_day(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let mut oldest: Option<i64> = None;
    let mut first = conn.prepare_cached("SELECT MIN(ts_ms) FROM events WHERE project_id = ?1")?;
    for project in project_ids(conn)? {
        if let Some(ts) = first.query_row([project], |r| r.get::<_, Option<i64>>(0))? {
            oldest = Some(oldest.map_or(ts, |o| o.min(ts)));
        }
    }
    Ok(oldest.map(|ts| ts.div_euclid(DAY_MS)))
}

fn purge_days_before(store: &SqliteStore, day: i64) -> Result<u64, StoreError> {
    store.control(|conn| {
        // A day of events has no bound: past the cache, SQLite may spill.
        with_write_cache(conn, false, |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let locked = std::time::Instant::now();
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
            bump_generation(&tx)?;
            tx.commit()?;
            tracing::debug!(
                before_day = day,
                events = n,
                write_lock_ms = locked.elapsed().as_millis() as u64,
                "purged the days before"
            );
            Ok(n as u64)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::{EventStore, NewEvent};
    use std::sync::Arc;

    fn event(machine: usize, day: i64, n: i64) -> NewEvent {
        let props = serde_json::json!({
            "product_version": format!("1.{}", (machine + n as usize) % 3),
            // Rows of this machine alone, which its erasure removes.
            "system_kernel_version": format!("6.{machine}"),
            "host_os_name": if machine.is_multiple_of(2) { "debian" } else { "ubuntu" },
            "system_architecture": "x86_64",
        });
        let props = props.as_object().expect("an object");
        NewEvent {
            project_id: 1,
            uuid: uuid::Uuid::new_v4(),
            event: ["START", "EXIT"][n as usize % 2].to_string(),
            distinct_id: format!("m{machine}"),
            timestamp_ms: 20_000 * DAY_MS + day * DAY_MS + n * 3_600_000,
            received_ms: 0,
            properties: serde_json::Value::Object(props.clone()).to_string(),
            dims: crate::rollup::dims("START", props),
        }
    }

    fn insert(store: &SqliteStore, events: Vec<NewEvent>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(store.insert(events)).expect("insert");
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path())
            .expect("open")
            .with_fold_after(std::time::Duration::from_secs(3600));
        store
            .start_writer(Arc::new(Metrics::default()), 64)
            .expect("writer");
        let events = (0..10)
            .flat_map(|m| (0..4).flat_map(move |d| (0..3).map(move |n| event(m, d, n))))
            .collect();
        insert(&store, events);
        store.settle().expect("settle");
        (dir, store)
    }

    /// Every rollup row, sorted.
    fn rollups(store: &SqliteStore) -> Vec<String> {
        let conn = store.reader().expect("reader");
        let mut out = Vec::new();
        for table in rollup::ROLLUP_DAY_TABLES
            .iter()
            .chain(&rollup::ROLLUP_HOUR_TABLES)
        {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table}"))
                .expect("select");
            let n = stmt.column_count();
            let mut rows = stmt.query([]).expect("query");
            while let Some(r) = rows.next().expect("row") {
                let values: Vec<rusqlite::types::Value> =
                    (0..n).map(|i| r.get(i).expect("value")).collect();
                out.push(format!("{table} {values:?}"));
            }
        }
        out.sort();
        out
    }

    /// The rollups after erasure equal a recount of every day from the events left.
    fn assert_recounted(store: &SqliteStore) {
        store.settle().expect("settle");
        let got = rollups(store);
        store
            .control(|conn| {
                let tx = conn.transaction()?;
                rollup::rebuild_days(&tx, 1, &(20_000..20_006).collect::<Vec<_>>())?;
                tx.commit()?;
                Ok(())
            })
            .expect("rebuild");
        assert_eq!(got, rollups(store));
    }

    #[test]
    fn a_plan_takes_in_what_is_stored_and_folded_after_it() {
        let (_dir, store) = store();
        let mut plan = plan(&store, 1, "m1").expect("plan");
        let recount = catch_up(&store, &mut plan).expect("catch up");
        assert_eq!(plan.found.len(), 12);
        // Folded after the plan: the erased machine on a planned day and on a new one,
        // others on planned days; then more that wait to be folded.
        insert(&store, vec![event(1, 1, 5), event(1, 5, 0), event(2, 1, 6)]);
        store.settle().expect("settle");
        insert(&store, vec![event(3, 2, 7), event(1, 2, 8)]);
        assert_eq!(apply(&store, plan, recount).expect("apply"), 15);
        let left: i64 = store
            .reader()
            .expect("reader")
            .query_row(
                "SELECT COUNT(*) FROM events WHERE distinct_id = 'm1'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(left, 0);
        assert_recounted(&store);
        store.close();
    }

    #[test]
    fn what_is_folded_before_the_catch_up_is_counted_once() {
        let (_dir, store) = store();
        let mut plan = plan(&store, 1, "m1").expect("plan");
        // Before the catch-up: others and the erased machine on planned days.
        insert(&store, vec![event(2, 1, 6), event(1, 2, 5), event(3, 3, 4)]);
        store.settle().expect("settle");
        let recount = catch_up(&store, &mut plan).expect("catch up");
        // After it: more of both.
        insert(&store, vec![event(4, 1, 7), event(1, 1, 8)]);
        store.settle().expect("settle");
        assert_eq!(apply(&store, plan, recount).expect("apply"), 14);
        assert_recounted(&store);
        store.close();
    }

    #[test]
    fn a_value_first_seen_after_the_plan_is_counted_in_full() {
        // The erased machine's event with the new value comes before the catch-up, or
        // after it.
        for before_catch_up in [true, false] {
            let (_dir, store) = store();
            // Another machine with a version the erased one does not have yet; after the
            // plan, the erased machine with it on the same day.
            let mut other = event(4, 2, 1);
            let mut new = event(1, 2, 0);
            for e in [&mut other, &mut new] {
                let mut props: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&e.properties).expect("json");
                props.insert("product_version".into(), "9.9".into());
                e.properties = serde_json::Value::Object(props.clone()).to_string();
                e.dims = crate::rollup::dims("START", &props);
            }
            insert(&store, vec![other]);
            store.settle().expect("settle");
            let mut plan = plan(&store, 1, "m1").expect("plan");
            let mut new = Some(new);
            if before_catch_up {
                insert(&store, new.take().into_iter().collect());
                store.settle().expect("settle");
            }
            let recount = catch_up(&store, &mut plan).expect("catch up");
            if let Some(new) = new {
                insert(&store, vec![new]);
                store.settle().expect("settle");
            }
            assert_eq!(apply(&store, plan, recount).expect("apply"), 13);
            assert_recounted(&store);
            store.close();
        }
    }

    #[test]
    fn retention_purges_day_by_day_down_to_the_cutoff() {
        let (_dir, store) = store();
        let events = |store: &SqliteStore| -> i64 {
            store
                .reader()
                .expect("reader")
                .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .expect("count")
        };
        assert_eq!(events(&store), 120);
        // The first two of the four days go, in a transaction each.
        let generation = |store: &SqliteStore| {
            rollup::meta(&store.reader().expect("reader"), GENERATION)
                .expect("meta")
                .unwrap_or(0)
        };
        let before = generation(&store);
        let purged = purge_before(&store, (20_000 + 2) * DAY_MS + 5).expect("purge");
        assert_eq!(purged, 60);
        assert_eq!(events(&store), 60);
        assert_eq!(generation(&store) - before, 2);
        assert_recounted(&store);
        store.close();
    }

    #[test]
    fn a_plan_made_before_another_erasure_is_recounted() {
        let (_dir, store) = store();
        let mut plan = plan(&store, 1, "m1").expect("plan");
        let recount = catch_up(&store, &mut plan).expect("catch up");
        erase_machine(&store, 1, "m2").expect("erase");
        assert_eq!(apply(&store, plan, recount).expect("apply"), 12);
        assert_recounted(&store);
        store.close();
    }
}
