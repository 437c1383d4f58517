//! A bounded directory of events that are not yet delivered.
//!
//! One file per event, named `<nanoseconds>-<uuid>.json` so that names sort oldest first.
//! Files are written to a temporary name and renamed into place (fsynced when asked, as for
//! FATAL). After each write the oldest files are dropped until both bounds hold.

use crate::{Error, fsutil};
use serde_json::Value;
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
}

impl Spool {
    /// A spool in `dir` (created on the first write, not before).
    pub fn new(dir: impl Into<PathBuf>, limits: SpoolLimits) -> Spool {
        Spool {
            dir: dir.into(),
            limits,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store one event; `durable` fsyncs the file and the directory before returning.
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
        let path = self.dir.join(format!("{nanos:020}-{safe_uuid}.json"));
        fsutil::replace_file(&path, &bytes, 0o600, durable)?;
        self.enforce_bounds(&path);
        Ok(path)
    }

    /// Every spooled event, oldest first. Unreadable or corrupt files are removed.
    /// Creates nothing when the directory does not exist.
    pub fn load(&self) -> Vec<Spooled> {
        let mut out = Vec::new();
        for path in self.files() {
            let parsed = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .filter(Value::is_object);
            match parsed {
                Some(event) => out.push(Spooled { path, event }),
                None => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        out
    }

    /// Rewrite a spooled event in place (atomically), e.g. once its system facts are added.
    pub fn rewrite(&self, path: &Path, event: &Value) -> Result<(), Error> {
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        fsutil::replace_file(path, &bytes, 0o600, false)
    }

    /// True when no event waits. Creates nothing.
    pub fn is_empty(&self) -> bool {
        self.files().is_empty()
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

    /// Drop the oldest files until the bounds hold; `keep` is never dropped.
    fn enforce_bounds(&self, keep: &Path) {
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
        for (path, len) in &files {
            if count <= self.limits.max_files && bytes <= self.limits.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            if fs::remove_file(path).is_ok() {
                count -= 1;
                bytes = bytes.saturating_sub(*len);
            }
        }
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
        let spool = Spool::new(dir.path(), limits);
        for i in 0..12 {
            spool.put(&format!("u{i}"), &ev(i, 0), false).unwrap();
        }
        let uuids: Vec<_> = spool
            .load()
            .into_iter()
            .map(|s| s.event["uuid"].clone())
            .collect();
        assert_eq!(uuids, vec!["u7", "u8", "u9", "u10", "u11"]);
    }

    #[test]
    fn bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            max_files: 100,
            max_bytes: 3000,
        };
        let spool = Spool::new(dir.path(), limits);
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
        let spool = Spool::new(dir.path(), SpoolLimits::default());
        fs::write(dir.path().join("00000000000000000001-bad.json"), b"{trunc").unwrap();
        spool.put("ok", &ev(0, 0), false).unwrap();
        assert_eq!(spool.load().len(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
