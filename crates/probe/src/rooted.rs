//! Reading files below a root directory, as if that directory were `/`.
//!
//! Every read is bounded and every failure becomes `None`: a fact that cannot be read
//! degrades to "unknown" instead of stopping the probe.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Largest file read in full; `/proc/cpuinfo` on a few hundred CPUs stays well below it.
const MAX_READ: u64 = 4 * 1024 * 1024;
/// Symlinks followed before giving up, as a guard against loops.
const MAX_LINKS: usize = 8;

/// A directory that stands for `/`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Root<'a> {
    base: &'a Path,
}

impl<'a> Root<'a> {
    pub(crate) fn new(base: &'a Path) -> Self {
        Root { base }
    }

    /// True when the root is the running system's own `/`.
    pub(crate) fn is_live(&self) -> bool {
        self.base == Path::new("/")
    }

    /// Maps an absolute in-system path (`/etc/os-release`) to a path below the root.
    ///
    /// Absolute symlinks in the last component are followed inside the root, so that
    /// `/host/etc/os-release -> /usr/lib/os-release` reads the host's file, not ours.
    pub(crate) fn path(&self, in_system: &str) -> PathBuf {
        let mut rel = PathBuf::from(in_system.trim_start_matches('/'));
        for _ in 0..MAX_LINKS {
            let full = self.base.join(&rel);
            let Ok(target) = fs::read_link(&full) else {
                return full;
            };
            rel = if target.is_absolute() {
                target.components().skip(1).collect()
            } else {
                normalize(&rel.parent().unwrap_or(Path::new("")).join(target))
            };
        }
        self.base.join(rel)
    }

    pub(crate) fn exists(&self, in_system: &str) -> bool {
        self.path(in_system).exists()
    }

    /// Only regular files are read: a FIFO or device where a file should be would block
    /// or never end.
    pub(crate) fn read_bytes(&self, in_system: &str) -> Option<Vec<u8>> {
        let path = self.path(in_system);
        if !fs::metadata(&path).ok()?.is_file() {
            return None;
        }
        let file = fs::File::open(path).ok()?;
        let mut buf = Vec::new();
        file.take(MAX_READ).read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    /// The whole file as text; invalid UTF-8 is replaced rather than rejected.
    pub(crate) fn read(&self, in_system: &str) -> Option<String> {
        self.read_bytes(in_system)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The first line, trimmed; `None` when missing or empty.
    pub(crate) fn first_line(&self, in_system: &str) -> Option<String> {
        let text = self.read(in_system)?;
        let line = text.lines().next()?.trim();
        (!line.is_empty()).then(|| line.to_string())
    }

    /// Names of the entries of a directory, sorted; empty when it cannot be listed.
    pub(crate) fn list(&self, in_system: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.path(in_system)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The value of `key` in a NUL-separated environment file such as `/proc/1/environ`.
    pub(crate) fn environ_var(&self, in_system: &str, key: &str) -> Option<String> {
        let bytes = self.read_bytes(in_system)?;
        bytes.split(|b| *b == 0).find_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (k, v) = entry.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    }
}

/// Resolves `.` and `..` lexically, never climbing above the root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "anonstats-probe-rooted-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::create_dir_all(&dir);
        dir
    }

    #[test]
    fn missing_files_are_none() {
        let dir = tempdir("missing");
        let root = Root::new(&dir);
        assert_eq!(root.read("/nope"), None);
        assert_eq!(root.first_line("/nope/deeper"), None);
        assert!(root.list("/nope").is_empty());
        assert!(!root.exists("/nope"));
        assert_eq!(root.environ_var("/proc/1/environ", "container"), None);
    }

    #[test]
    fn absolute_symlinks_stay_inside_the_root() -> std::io::Result<()> {
        let dir = tempdir("links");
        fs::create_dir_all(dir.join("host/etc"))?;
        fs::create_dir_all(dir.join("host/usr/lib"))?;
        fs::create_dir_all(dir.join("usr/lib"))?;
        fs::write(dir.join("usr/lib/os-release"), "ID=alpine\n")?;
        fs::write(dir.join("host/usr/lib/os-release"), "ID=debian\n")?;
        std::os::unix::fs::symlink("/host/usr/lib/os-release", dir.join("host/etc/os-release"))?;
        let root = Root::new(&dir);
        assert_eq!(
            root.first_line("/host/etc/os-release").as_deref(),
            Some("ID=debian")
        );
        Ok(())
    }

    #[test]
    fn relative_symlinks_resolve_against_their_directory() -> std::io::Result<()> {
        let dir = tempdir("relative");
        fs::create_dir_all(dir.join("etc"))?;
        fs::create_dir_all(dir.join("usr/lib"))?;
        fs::write(dir.join("usr/lib/os-release"), "ID=fedora\n")?;
        std::os::unix::fs::symlink("../usr/lib/os-release", dir.join("etc/os-release"))?;
        assert_eq!(
            Root::new(&dir).first_line("/etc/os-release").as_deref(),
            Some("ID=fedora")
        );
        Ok(())
    }

    #[test]
    fn symlink_loops_end() -> std::io::Result<()> {
        let dir = tempdir("loop");
        std::os::unix::fs::symlink("/b", dir.join("a"))?;
        std::os::unix::fs::symlink("/a", dir.join("b"))?;
        assert_eq!(Root::new(&dir).read("/a"), None);
        Ok(())
    }

    #[test]
    fn environ_lookup_splits_on_nul() -> std::io::Result<()> {
        let dir = tempdir("environ");
        fs::write(dir.join("environ"), b"PATH=/bin\0container=lxc\0EMPTY=\0")?;
        let root = Root::new(&dir);
        assert_eq!(
            root.environ_var("/environ", "container").as_deref(),
            Some("lxc")
        );
        assert_eq!(root.environ_var("/environ", "EMPTY").as_deref(), Some(""));
        assert_eq!(root.environ_var("/environ", "PATH=").as_deref(), None);
        Ok(())
    }
}
