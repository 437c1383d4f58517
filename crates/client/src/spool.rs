//! A bounded directory of events that are not yet delivered.
//!
//! One file per event, named `<nanoseconds>-r<route>-<uuid>.json` so that names sort oldest
//! first; `<route>` ([`route_key`]) names the endpoint and token the event was made for, and
//! a spool made for a route loads only that route's events, so that an event only ever
//! goes where it was meant to (files named `<nanoseconds>-<uuid>.json`, from versions that
//! did not name the route, are taken by the product named in their `product_name`).
//! Files are written to a temporary name and renamed into place (fsynced when asked, as for
//! FATAL). When the bounds are passed the oldest files are dropped, unsent, by whoever
//! holds the delivery lock: a write that can take the lock at once, or the delivering
//! process before it lets the lock go. Every dropped event is counted in
//! `<dir>-dropped.json` beside the directory, per route (with the names of the latest
//! ones), so that the count survives the process, the next event delivered to the same
//! endpoint reports it (`dropped_events`; no other endpoint is told), and a file
//! that vanished can be told from one that was delivered.

use crate::{Error, fsutil};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bounds of the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolLimits {
    /// At most this many events (default 64).
    pub max_files: usize,
    /// At most this many bytes in all (default 1 MiB).
    pub max_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        SpoolLimits {
            max_files: 64,
            max_bytes: 1 << 20,
        }
    }
}

/// The spool's directory name in a state directory.
pub const DIR: &str = "spool";
/// Its lock file, beside it.
pub const LOCK_FILE: &str = "spool.lock";
/// Its record of dropped events, beside it.
pub const DROPPED_FILE: &str = "spool-dropped.json";

/// The key of a route: 16 hex digits of the 64-bit FNV-1a hash of the URL posted to and
/// the token, stable across versions and builds. The token itself is not written.
///
/// ```
/// let a = anonstats_client::spool::route_key("http://a/batch/", "t1");
/// assert_eq!(a.len(), 16);
/// assert_ne!(a, anonstats_client::spool::route_key("http://a/batch/", "t2"));
/// assert_ne!(a, anonstats_client::spool::route_key("http://b/batch/", "t1"));
/// ```
pub fn route_key(url: &str, token: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes().chain([0]).chain(token.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A spool file name without a route (`<nanoseconds>-<uuid>.json`) with `key` added.
pub(crate) fn keyed_name(name: &str, key: &str) -> String {
    match name.split_once('-') {
        Some((nanos, rest)) if route_of(name).is_none() => format!("{nanos}-r{key}-{rest}"),
        _ => name.to_string(),
    }
}

/// The route key in a spool file name, if it has one.
fn route_of(name: &str) -> Option<&str> {
    let (_, rest) = name.split_once('-')?;
    let key = rest.strip_prefix('r')?.get(..16)?;
    let dash = rest.as_bytes().get(17) == Some(&b'-');
    (dash && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
}

/// Whose events a spool loads: one route's, and the unrouted ones of one product.
#[derive(Clone, Debug)]
struct Owner {
    key: String,
    product: String,
    /// The endpoint's key ([`crate::product::endpoint_key`]), when known: losses of every
    /// route to the same endpoint (another token) are reported by this one too.
    endpoint: Option<String>,
}

/// How many dropped files' names are kept, to tell a dropped event from a delivered one.
pub const RECENT_DROPS: usize = 1024;

/// The record of dropped events.
#[derive(Debug, Default)]
struct Ledger {
    /// Dropped and not yet reported by a delivered event, per route ([`route_key`]), so
    /// that a loss is reported to the endpoint whose events were lost, and to no other.
    routes: BTreeMap<String, u64>,
    /// The endpoint of each route that recorded one, so that a route reports the losses
    /// of the other routes to its endpoint (a token that was refused, then replaced).
    endpoints: BTreeMap<String, String>,
    /// Dropped events without a route (spooled by versions before routes, when a product
    /// had one endpoint): reported by the first route that delivers.
    count: u64,
    /// The names of the latest dropped files, oldest first.
    recent: Vec<String>,
}

/// An event found in the spool.
#[derive(Clone, Debug)]
pub struct Spooled {
    /// Its file; remove it once delivered.
    pub path: PathBuf,
    /// The event as it will be sent.
    pub event: Value,
}

/// The held delivery lock (an exclusive `flock` on the lock file); released on drop,
/// and by the kernel if the process dies.
#[derive(Debug)]
pub struct SpoolLock {
    _file: File,
}

/// The spool directory.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    owner: Option<Owner>,
}

impl Spool {
    /// A spool in `dir` (created on the first write, not before).
    pub fn new(dir: impl Into<PathBuf>, limits: SpoolLimits) -> Spool {
        Spool {
            dir: dir.into(),
            limits,
            owner: None,
        }
    }

    /// The same spool, but writing and loading only the events of route `key`
    /// ([`route_key`]) and product `product`. Other events stay where they are (and count
    /// in the bounds).
    pub fn for_route(mut self, key: impl Into<String>, product: impl Into<String>) -> Spool {
        self.owner = Some(Owner {
            key: key.into(),
            product: product.into(),
            endpoint: None,
        });
        self
    }

    /// The same spool, reporting the dropped events of every route to the endpoint whose
    /// key is `endpoint` ([`crate::product::endpoint_key`]), whatever their token. Only
    /// after [`Spool::for_route`].
    pub fn at_endpoint(mut self, endpoint: impl Into<String>) -> Spool {
        if let Some(o) = &mut self.owner {
            o.endpoint = Some(endpoint.into());
        }
        self
    }

    /// The routes whose losses this spool reports, its own first.
    fn reporting(&self, ledger: &Ledger) -> Vec<String> {
        let Some(o) = &self.owner else {
            return ledger.routes.keys().cloned().collect();
        };
        let mut keys = vec![o.key.clone()];
        keys.extend(
            ledger
                .routes
                .keys()
                .filter(|k| **k != o.key)
                .filter(|k| o.endpoint.is_some() && ledger.endpoints.get(*k) == o.endpoint.as_ref())
                .cloned(),
        );
        keys
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store one event; `durable` fsyncs the file and the directory before returning.
    /// If the spool is then past its bounds and the delivery lock is free, the oldest
    /// files are dropped (and counted); otherwise the process holding the lock does it.
    pub fn put(&self, uuid: &str, event: &Value, durable: bool) -> Result<PathBuf, Error> {
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        let size = bytes.len() as u64;
        if size > self.limits.max_bytes {
            return Err(Error::TooLarge {
                size,
                limit: self.limits.max_bytes,
            });
        }
        fsutil::ensure_dir(&self.dir)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let safe_uuid: String = uuid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let name = format!("{nanos:020}-{safe_uuid}.json");
        let name = match &self.owner {
            Some(o) => keyed_name(&name, &o.key),
            None => name,
        };
        let path = self.dir.join(name);
        fsutil::replace_file(&path, &bytes, 0o600, durable)?;
        if let Some(lock) = self.try_lock() {
            self.trim(&lock, Some(&path));
        }
        Ok(path)
    }

    /// Every spooled event of this spool's route, oldest first (all of them for a spool
    /// without a route). An unrouted file of this spool's product is renamed to its route.
    /// Unreadable or corrupt files are removed. Creates nothing when the directory does not
    /// exist.
    pub fn load(&self) -> Vec<Spooled> {
        let mut out = Vec::new();
        for path in self.own_files() {
            let parsed = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .filter(Value::is_object);
            let Some(event) = parsed else {
                let _ = fs::remove_file(&path);
                continue;
            };
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let path = match &self.owner {
                Some(o) if route_of(name).is_none() => {
                    let keyed = path.with_file_name(keyed_name(name, &o.key));
                    if fs::rename(&path, &keyed).is_err() {
                        continue;
                    }
                    keyed
                }
                _ => path,
            };
            out.push(Spooled { path, event });
        }
        out
    }

    /// This spool's files, oldest first: its route's, and the unrouted ones of its product.
    fn own_files(&self) -> Vec<PathBuf> {
        let mut files = self.files();
        if let Some(o) = &self.owner {
            files.retain(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                match route_of(name) {
                    Some(key) => key == o.key,
                    None => fs::read(p)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                        .is_some_and(|v| v["properties"]["product_name"] == o.product.as_str()),
                }
            });
        }
        files
    }

    /// Rewrite a spooled event in place (atomically), e.g. once its system facts are added.
    pub fn rewrite(&self, path: &Path, event: &Value) -> Result<(), Error> {
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        fsutil::replace_file(path, &bytes, 0o600, false)
    }

    /// True when no event of this spool's route waits. Creates nothing.
    pub fn is_empty(&self) -> bool {
        self.own_files().is_empty()
    }

    /// The delivery lock: held while a process sends from the spool and removes what was
    /// delivered, so that no event is sent by two processes. `None` when another process
    /// holds it (or the lock file cannot be made).
    pub fn try_lock(&self) -> Option<SpoolLock> {
        fsutil::ensure_dir(&self.dir).ok()?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.lock_path())
            .ok()?;
        match file.try_lock() {
            Ok(()) => Some(SpoolLock { _file: file }),
            Err(TryLockError::WouldBlock | TryLockError::Error(_)) => None,
        }
    }

    /// [`Spool::try_lock`], retried until `deadline`.
    pub fn lock_until(&self, deadline: Instant) -> Option<SpoolLock> {
        loop {
            if let Some(lock) = self.try_lock() {
                return Some(lock);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lock file, beside the spool directory (`spool.lock`), so that the directory
    /// holds events only.
    fn lock_path(&self) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        self.dir.with_file_name(name)
    }

    /// Remove delivered events.
    pub fn remove<'a>(&self, paths: impl IntoIterator<Item = &'a PathBuf>) {
        for p in paths {
            let _ = fs::remove_file(p);
        }
    }

    /// Drop events that will never be delivered (the collector refused them for good):
    /// their files are removed and they are counted as dropped, with `unspooled` more
    /// that had no file.
    pub fn drop_events<'a>(
        &self,
        _lock: &SpoolLock,
        paths: impl IntoIterator<Item = &'a PathBuf>,
        unspooled: u64,
    ) {
        let names: Vec<String> = paths
            .into_iter()
            .filter(|p| fs::remove_file(p).is_ok())
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect();
        self.count_dropped(&names, unspooled);
    }

    /// How many events of this spool's route were dropped, unsent, and not yet reported by
    /// a delivered event (for a spool without a route: of every route).
    pub fn dropped_count(&self) -> u64 {
        let ledger = self.ledger();
        let routes: u64 = self
            .reporting(&ledger)
            .iter()
            .filter_map(|k| ledger.routes.get(k))
            .sum();
        routes + ledger.count
    }

    /// True when the spool dropped the event of this file (among the latest
    /// [`RECENT_DROPS`] dropped), false when it never did, e.g. because it was delivered.
    pub fn was_dropped(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        self.ledger().recent.iter().any(|r| r == name)
    }

    /// A delivered event reported `n` dropped events: take them off the count (drops made
    /// since stay counted). Under the delivery lock, so that no two processes report the
    /// same drops.
    pub fn settle_dropped(&self, _lock: &SpoolLock, n: u64) {
        if n == 0 {
            return;
        }
        self.update_ledger(|l| {
            let mut left = n;
            for key in self.reporting(l) {
                if let Some(count) = l.routes.get_mut(&key) {
                    let taken = left.min(*count);
                    *count -= taken;
                    left -= taken;
                }
            }
            l.count = l.count.saturating_sub(left);
        });
    }

    /// Delete every waiting event and the count of dropped ones (after an opt-out).
    pub fn purge(&self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(self.ledger_path());
    }

    /// Drop the oldest files, unsent, until both bounds hold; `keep` is never dropped.
    /// Returns how many were dropped.
    pub fn trim(&self, _lock: &SpoolLock, keep: Option<&Path>) -> usize {
        let files: Vec<(PathBuf, u64)> = self
            .files()
            .into_iter()
            .map(|p| {
                let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, len)
            })
            .collect();
        let mut count = files.len();
        let mut bytes: u64 = files.iter().map(|(_, l)| l).sum();
        let mut dropped = Vec::new();
        for (path, len) in &files {
            if count <= self.limits.max_files && bytes <= self.limits.max_bytes {
                break;
            }
            if Some(path.as_path()) == keep {
                continue;
            }
            if fs::remove_file(path).is_ok() {
                count -= 1;
                bytes = bytes.saturating_sub(*len);
                if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    dropped.push(name.to_string());
                }
            }
        }
        if !dropped.is_empty() {
            self.count_dropped(&dropped, 0);
        }
        dropped.len()
    }

    /// The bounds.
    pub fn limits(&self) -> SpoolLimits {
        self.limits
    }

    fn count_dropped(&self, names: &[String], unspooled: u64) {
        let n = names.len() as u64 + unspooled;
        if n == 0 {
            return;
        }
        let own = self.owner.as_ref().map(|o| o.key.as_str());
        self.update_ledger(|l| {
            // Each dropped file counts for the route it was made for; events without a
            // file, for this spool's.
            let mut add = |route: Option<&str>, n: u64| match route {
                Some(key) => *l.routes.entry(key.to_string()).or_default() += n,
                None => l.count += n,
            };
            for name in names {
                add(route_of(name), 1);
            }
            add(own, unspooled);
            l.recent.extend(names.iter().cloned());
            let excess = l.recent.len().saturating_sub(RECENT_DROPS);
            l.recent.drain(..excess);
        });
    }

    /// The record of dropped events, beside the directory (`spool-dropped.json`).
    fn ledger_path(&self) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push("-dropped.json");
        self.dir.with_file_name(name)
    }

    fn ledger(&self) -> Ledger {
        fs::read(self.ledger_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| Ledger {
                routes: v["routes"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
                endpoints: v["endpoints"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, e)| Some((k.clone(), e.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
                count: v["count"].as_u64().unwrap_or(0),
                recent: v["recent"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .unwrap_or_default()
    }

    /// Read, change and atomically replace the record. Called under the delivery lock
    /// only, so that no two processes change it at once.
    fn update_ledger(&self, change: impl FnOnce(&mut Ledger)) {
        let mut ledger = self.ledger();
        change(&mut ledger);
        if let Some(Owner {
            key,
            endpoint: Some(endpoint),
            ..
        }) = &self.owner
        {
            ledger.endpoints.insert(key.clone(), endpoint.clone());
        }
        ledger.routes.retain(|_, n| *n > 0);
        let own = self.owner.as_ref().map(|o| o.key.as_str());
        let routes = &ledger.routes;
        ledger
            .endpoints
            .retain(|k, _| routes.contains_key(k) || Some(k.as_str()) == own);
        let v = serde_json::json!({
            "routes": ledger.routes,
            "endpoints": ledger.endpoints,
            "count": ledger.count,
            "recent": ledger.recent,
        });
        let _ = fsutil::replace_file(&self.ledger_path(), v.to_string().as_bytes(), 0o600, false);
    }

    /// Spool file names, oldest first.
    fn files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && name.ends_with(".json")
            })
            .collect();
        files.sort();
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(i: usize, pad: usize) -> Value {
        json!({"event": "E", "uuid": format!("u{i}"), "properties": {"pad": "x".repeat(pad)}})
    }

    #[test]
    fn a_spool_for_a_route_loads_that_routes_events_and_its_products_unrouted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let plain = Spool::new(dir.path().join("spool"), SpoolLimits::default());
        let a = plain
            .clone()
            .for_route(route_key("http://a/batch/", "t"), "p");
        let b = plain
            .clone()
            .for_route(route_key("http://b/batch/", "t"), "p");
        a.put("u1", &ev(1, 0), false).unwrap();
        b.put("u2", &ev(2, 0), false).unwrap();
        // Written by a version without routes, for this product and for another.
        let mine = json!({"event": "E", "uuid": "u3", "properties": {"product_name": "p"}});
        let theirs = json!({"event": "E", "uuid": "u4", "properties": {"product_name": "q"}});
        fs::write(
            plain.dir().join("00000000000000000001-u3.json"),
            mine.to_string(),
        )
        .unwrap();
        fs::write(
            plain.dir().join("00000000000000000002-u4.json"),
            theirs.to_string(),
        )
        .unwrap();
        let uuids = |s: &Spool| -> Vec<Value> {
            s.load()
                .into_iter()
                .map(|f| f.event["uuid"].clone())
                .collect()
        };
        assert_eq!(uuids(&a), ["u3", "u1"]);
        assert_eq!(uuids(&b), ["u2"]);
        assert_eq!(
            plain.load().len(),
            4,
            "a spool without a route sees them all"
        );
        let lock = a.try_lock().unwrap();
        a.remove(a.load().iter().map(|f| &f.path));
        drop(lock);
        assert!(a.is_empty());
        assert!(!b.is_empty());
    }

    #[test]
    fn absent_until_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"), SpoolLimits::default());
        assert!(spool.load().is_empty());
        assert!(!spool.dir().exists());
        spool.put("u1", &ev(1, 0), true).unwrap();
        let loaded = spool.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].event["uuid"], "u1");
        spool.remove(loaded.iter().map(|s| &s.path));
        assert!(spool.load().is_empty());
    }

    #[test]
    fn bounded_by_count_oldest_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            max_files: 5,
            max_bytes: 1 << 20,
        };
        let spool = Spool::new(dir.path().join("spool"), limits);
        for i in 0..12 {
            spool.put(&format!("u{i}"), &ev(i, 0), false).unwrap();
        }
        let uuids: Vec<_> = spool
            .load()
            .into_iter()
            .map(|s| s.event["uuid"].clone())
            .collect();
        assert_eq!(uuids, vec!["u7", "u8", "u9", "u10", "u11"]);
        assert_eq!(spool.dropped_count(), 7);
        let lock = spool.try_lock().unwrap();
        spool.settle_dropped(&lock, 5);
        assert_eq!(spool.dropped_count(), 2);
    }

    #[test]
    fn a_busy_lock_defers_the_bounds_to_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            max_files: 2,
            max_bytes: 1 << 20,
        };
        let spool = Spool::new(dir.path().join("spool"), limits);
        let first = spool.put("u0", &ev(0, 0), false).unwrap();
        let lock = spool.try_lock().unwrap();
        for i in 1..4 {
            spool.put(&format!("u{i}"), &ev(i, 0), false).unwrap();
        }
        assert_eq!(
            spool.load().len(),
            4,
            "nothing dropped while the lock is held"
        );
        assert_eq!(spool.trim(&lock, None), 2);
        assert!(spool.was_dropped(&first));
        assert_eq!(spool.dropped_count(), 2);
        let kept = spool.load();
        assert!(!spool.was_dropped(&kept[0].path));
        spool.drop_events(&lock, [&kept[0].path], 1);
        assert_eq!(spool.dropped_count(), 4);
        assert!(spool.was_dropped(&kept[0].path));
        spool.purge();
        assert!(spool.is_empty());
        assert_eq!(spool.dropped_count(), 0);
    }

    #[test]
    fn bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            max_files: 100,
            max_bytes: 3000,
        };
        let spool = Spool::new(dir.path().join("spool"), limits);
        for i in 0..10 {
            spool.put(&format!("u{i}"), &ev(i, 900), false).unwrap();
        }
        let loaded = spool.load();
        let total: u64 = loaded
            .iter()
            .map(|s| fs::metadata(&s.path).unwrap().len())
            .sum();
        assert!(total <= 3000, "{total}");
        assert_eq!(loaded.last().unwrap().event["uuid"], "u9");
        assert!(matches!(
            spool.put("big", &ev(0, 5000), false),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn lock_is_exclusive_and_not_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"), SpoolLimits::default());
        let held = spool.try_lock().unwrap();
        assert!(spool.try_lock().is_none());
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(spool.lock_until(soon).is_none());
        drop(held);
        assert!(spool.try_lock().is_some());
        assert!(spool.is_empty());
        assert_eq!(fs::read_dir(spool.dir()).unwrap().count(), 0);
        assert!(dir.path().join("spool.lock").exists());
    }

    #[test]
    fn corrupt_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"), SpoolLimits::default());
        spool.put("ok", &ev(0, 0), false).unwrap();
        fs::write(spool.dir().join("00000000000000000001-bad.json"), b"{trunc").unwrap();
        assert_eq!(spool.load().len(), 1);
        assert_eq!(fs::read_dir(spool.dir()).unwrap().count(), 1);
    }
}
