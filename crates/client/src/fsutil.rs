//! Small file helpers shared by the modules that keep state on disk.

use crate::Error;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Create `dir` and its parents, mode 0700 for what is created.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// A fresh name for a temporary file beside `target` (same directory, hidden).
pub(crate) fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.{n}.{nanos}.tmp", std::process::id()))
}

/// Write `bytes` to a new temporary file beside `target` with `mode`; fsync it if `durable`.
pub(crate) fn write_temp(
    target: &Path,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> Result<PathBuf, Error> {
    let tmp = temp_path(target);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(Error::io("write", tmp, e))
        }
    }
}

/// Replace `target` atomically with `bytes` (temporary file + rename).
pub(crate) fn replace_file(
    target: &Path,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> Result<(), Error> {
    let tmp = write_temp(target, bytes, mode, durable)?;
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("rename into place", target, e));
    }
    if durable {
        sync_dir(target);
    }
    Ok(())
}

/// Flush a directory entry change to disk (best effort).
pub(crate) fn sync_dir(path_in_dir: &Path) {
    if let Some(dir) = path_in_dir.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}
