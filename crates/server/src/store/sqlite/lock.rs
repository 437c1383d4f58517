//! One process writes to a data dir: the writer numbers events itself, so rows stored by
//! a second writer would collide with the numbers it gives next. The lock is an advisory
//! `flock` on a file in the dir, released by the kernel when the process ends however it
//! ends; the file holds the owner's pid so that a refusal can say who holds it.

use crate::store::StoreError;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock file's name inside the data dir.
pub const LOCK_FILE: &str = "anonstats.lock";

/// Takes the data dir for this process, or says which process has it.
pub fn take(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let cannot = |e: std::io::Error| {
        StoreError::Unavailable(format!(
            "cannot lock the data dir with {}: {e}",
            path.display()
        ))
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(cannot)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = match owner.trim() {
                "" => "another process".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(StoreError::InUse(format!(
                "the data dir {} is in use by {owner}: only one process may write to it \
                 (stop it first, or send events to it over HTTP)",
                data_dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(cannot(e)),
    }
    file.set_len(0).map_err(cannot)?;
    file.rewind().map_err(cannot)?;
    write!(file, "{}", std::process::id()).map_err(cannot)?;
    Ok(file)
}
