//! The machine id: a random UUID (v4) made on first use and kept in the state directory.
//!
//! It is never derived from hardware, MAC addresses, host names or `/etc/machine-id`.
//! It is created atomically: written to a temporary file (mode 0600, fsynced), then
//! hard-linked to its final name, which fails instead of overwriting when another
//! process won the race; the winner's id is then read and used.

use crate::{Error, fsutil};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// File name of the machine id inside the state directory.
pub const FILE: &str = "machine-id";

/// Path of the machine id file for a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Read the machine id if one exists and is valid. Writes nothing.
pub fn load(state_dir: &Path) -> Option<Uuid> {
    let text = fs::read_to_string(path(state_dir)).ok()?;
    Uuid::parse_str(text.trim()).ok()
}

/// Read the machine id, creating the state directory and the id on first use.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let a = anonstats_client::machine_id::load_or_create(dir.path()).unwrap();
/// let b = anonstats_client::machine_id::load_or_create(dir.path()).unwrap();
/// assert_eq!(a, b);
/// ```
pub fn load_or_create(state_dir: &Path) -> Result<Uuid, Error> {
    if let Some(id) = load(state_dir) {
        return Ok(id);
    }
    fsutil::ensure_dir(state_dir)?;
    let target = path(state_dir);
    let id = Uuid::new_v4();
    let tmp = fsutil::write_temp(&target, format!("{id}\n").as_bytes(), 0o600, true)?;
    let linked = fs::hard_link(&tmp, &target);
    let result = match linked {
        Ok(()) => {
            fsutil::sync_dir(&target);
            Ok(id)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => match load(state_dir) {
            Some(existing) => Ok(existing),
            // The file is there but unreadable or not a UUID: replace it.
            None => fs::rename(&tmp, &target)
                .map(|()| id)
                .map_err(|e| Error::io("replace the invalid machine id", &target, e)),
        },
        // File systems without hard links: rename, which only overwrites a file that
        // appeared in the instant since `load` found none.
        Err(_) => fs::rename(&tmp, &target)
            .map(|()| id)
            .map_err(|e| Error::io("create the machine id", &target, e)),
    };
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(load(&state), None);
        let id = load_or_create(&state).unwrap();
        assert_eq!(id.get_version_num(), 4);
        let mode = fs::metadata(path(&state)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&state).unwrap(), id);
        assert_eq!(load(&state), Some(id));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE)]);
    }

    #[test]
    fn concurrent_creation_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        let ids: Vec<Uuid> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&state).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]));
        assert_eq!(load(&state), Some(ids[0]));
    }

    #[test]
    fn invalid_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path(dir.path()), "not a uuid").unwrap();
        let id = load_or_create(dir.path()).unwrap();
        assert_eq!(load(dir.path()), Some(id));
    }
}
