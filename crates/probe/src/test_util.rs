//! A throwaway root directory filled with the given files.

use std::fs;
use std::path::{Path, PathBuf};

/// A fixture root under the system temp dir, removed when dropped.
pub(crate) struct Tree(PathBuf);

impl Tree {
    pub(crate) fn new(name: &str, files: &[(&str, &[u8])]) -> Tree {
        let dir =
            std::env::temp_dir().join(format!("anonstats-probe-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::create_dir_all(&dir);
        for (path, content) in files {
            let full = dir.join(path.trim_start_matches('/'));
            if let Some(parent) = full.parent() {
                let _ = fs::create_dir_all(parent);
            }
            let _ = fs::write(full, content);
        }
        Tree(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
