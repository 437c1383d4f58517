//! A consistent copy of the embedded store, taken while `serve` writes to it.
//!
//! SQLite's online backup API copies the pages of one snapshot: the source connection
//! holds a read transaction for the whole copy, so commits made meanwhile (WAL mode lets
//! the writer go on) neither show in the copy nor restart it. The copy is written to a
//! temp file beside the target, checked, synced, and only then put in place, so the
//! target is whole or absent, never half-written. Only reads the data dir: it does not
//! take the writer's lock.

use super::DB_FILE;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pages copied per step (4 MiB at SQLite's default page size): often enough to report
/// progress, rarely enough to cost nothing.
const STEP_PAGES: i32 = 1024;

/// What a backup copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub events: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{}", crate::store::StoreError::NoStore(.0.display().to_string()))]
    NoDatabase(PathBuf),
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot write the backup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy the database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the copy failed SQLite's check ({0}); nothing was written")]
    Damaged(String),
}

/// Copies the store in `data_dir` to `to`, replacing it only when `replace` is set.
/// `progress(done, total)` is called in bytes after every step.
pub fn backup(
    data_dir: &Path,
    to: &Path,
    replace: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<Copied, BackupError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(BackupError::NoDatabase(data_dir.to_path_buf()));
    }
    if !replace && to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    let name = to
        .file_name()
        .ok_or_else(|| BackupError::Io {
            path: to.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?
        .to_string_lossy();
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = copy_into(&db, &tmp, &mut progress).and_then(|copied| {
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        place(&tmp, to, replace)?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(copied)
    });
    if result.is_err() {
        for leftover in ["", "-journal", "-wal", "-shm"] {
            let mut p = tmp.clone().into_os_string();
            p.push(leftover);
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

fn copy_into(
    db: &Path,
    tmp: &Path,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Copied, BackupError> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(10))?;
    // The snapshot starts with the first read and lasts until COMMIT.
    src.execute_batch("BEGIN")?;
    let count = |c: &Connection, sql: &str| -> Result<u64, BackupError> {
        let n: i64 = c.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let events = count(&src, "SELECT count(*) FROM events")?;
    let page_size = count(&src, "PRAGMA page_size")?;
    let _ = std::fs::remove_file(tmp);
    let mut dst = Connection::open(tmp)?;
    {
        let copy = Backup::new(&src, &mut dst)?;
        loop {
            let step = copy.step(STEP_PAGES)?;
            let p = copy.progress();
            let total = u64::try_from(p.pagecount).unwrap_or(0);
            let left = u64::try_from(p.remaining).unwrap_or(0);
            progress((total - left.min(total)) * page_size, total * page_size);
            match step {
                StepResult::Done => break,
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {}
            }
        }
    }
    src.execute_batch("COMMIT")?;
    let check: String = dst.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(BackupError::Damaged(check));
    }
    let pages = count(&dst, "PRAGMA page_count")?;
    dst.close().map_err(|(_, e)| e)?;
    Ok(Copied {
        events,
        bytes: pages * page_size,
    })
}

/// Moves the finished copy to `to`: over an existing file only when `replace` is set,
/// otherwise by a link that fails if `to` appeared meanwhile.
fn place(tmp: &Path, to: &Path, replace: bool) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: to.to_path_buf(),
        source,
    };
    if replace {
        return std::fs::rename(tmp, to).map_err(io);
    }
    match std::fs::hard_link(tmp, to) {
        Ok(()) => std::fs::remove_file(tmp).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(BackupError::Exists(to.to_path_buf()))
        }
        Err(e) => Err(io(e)),
    }
}
