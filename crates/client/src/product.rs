//! Each product's own state: `<state root>/<product>/` holds its machine id, spool, run
//! status, local log and receipts, so that two products on one machine share no id and
//! deliver none of each other's events.
//!
//! A state root that one product used alone before (its files directly in the root) is
//! taken over by the first product that starts there: the machine id and the run status
//! move into that product's directory, so an installed product keeps its id on upgrade.
//! Its spooled events move to the spool of the product that made them (`product_name`),
//! so that none is delivered by another product.

use crate::{fsutil, local_log, machine_id, spool, status_file};
use std::fs;
use std::path::{Path, PathBuf};

/// The directory name of a product: its name, with every byte other than ASCII letters,
/// digits, `-`, `_` and a `.` that does not lead written as `%XX` (and the first byte of
/// `spool`, which the one-product layout uses), so that every name maps to one directory
/// of its own and none can leave the root.
///
/// ```
/// use anonstats_client::product::dir_name;
/// assert_eq!(dir_name("mydaemon"), "mydaemon");
/// assert_eq!(dir_name("My Daemon/2"), "My%20Daemon%2F2");
/// assert_eq!(dir_name(".."), "%2E.");
/// assert_eq!(dir_name("spool"), "%73pool");
/// ```
pub fn dir_name(product: &str) -> String {
    let reserved = product == spool::DIR;
    let mut out = String::with_capacity(product.len());
    for (i, b) in product.bytes().enumerate() {
        let plain = (b.is_ascii_alphanumeric() && !(reserved && i == 0))
            || b == b'-'
            || b == b'_'
            || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The state directory of `product` under `root`.
pub fn state_dir(root: &Path, product: &str) -> PathBuf {
    root.join(dir_name(product))
}

/// The product names that have a state directory under `root` (their receipts, spool
/// and id are there).
pub fn products(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| decode(e.file_name().to_str()?))
        .collect();
    names.sort();
    names
}

/// The name a [`dir_name`] came from; `None` for a directory no product would have.
fn decode(dir: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(dir.len());
    let mut rest = dir.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    (dir_name(&name) == dir).then_some(name)
}

/// Delete what waits to be sent and what was kept of the events of the product whose
/// state directory this is (its spool, count of dropped events, local log and receipts),
/// as an opt-out does; its machine id stays.
pub fn forget(state_dir: &Path) {
    let spool = spool::Spool::new(state_dir.join(spool::DIR), Default::default());
    crate::client::forget_if_present(state_dir, &spool);
}

/// The files of the one-product layout that move into the product's directory.
const MOVED: &[&str] = &[
    status_file::FILE,
    local_log::FILE,
    local_log::OLD_FILE,
    spool::DROPPED_FILE,
];

/// True when `root` holds the one-product layout of earlier versions (a machine id in
/// the root itself). One `stat`.
pub(crate) fn has_legacy(root: &Path) -> bool {
    fs::symlink_metadata(machine_id::path(root)).is_ok_and(|m| m.is_file())
}

/// Take over the one-product layout in `root` for `product` (see the module
/// documentation), if there is one and the product has no id of its own yet. `own_key`
/// names the spool files of the product's route ([`spool::route_key`]); without it (not
/// sending), its spooled events keep their names and are claimed when it sends.
pub(crate) fn adopt_legacy(root: &Path, product: &str, own_key: Option<&str>) {
    if !has_legacy(root) {
        return;
    }
    let dir = state_dir(root, product);
    if machine_id::load(&dir).is_some() || fsutil::ensure_dir(&dir).is_err() {
        return;
    }
    // The rename is the claim: of two products starting at once, one gets the id and the
    // other finds it gone and makes its own.
    if fs::rename(machine_id::path(root), machine_id::path(&dir)).is_err() {
        return;
    }
    fsutil::sync_dir(&machine_id::path(&dir));
    for name in MOVED {
        let _ = fs::rename(root.join(name), dir.join(name));
    }
    let legacy = root.join(spool::DIR);
    for file in spool::Spool::new(&legacy, Default::default()).load() {
        let owner = file.event["properties"]["product_name"]
            .as_str()
            .unwrap_or(product)
            .to_string();
        let target = state_dir(root, &owner).join(spool::DIR);
        let Some(name) = file.path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let name = match own_key {
            Some(key) if owner == product => spool::keyed_name(name, key),
            _ => name.to_string(),
        };
        if fsutil::ensure_dir(&target).is_ok() {
            let _ = fs::rename(&file.path, target.join(name));
        }
    }
    let _ = fs::remove_dir(&legacy);
    let _ = fs::remove_file(root.join(spool::LOCK_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_its_own_directory_and_comes_back_from_it() {
        for name in [
            "a",
            "my daemon",
            "my%20daemon",
            "..",
            ".hidden",
            "a/b",
            "été",
            "x.y",
            "spool",
        ] {
            let dir = dir_name(name);
            assert!(!dir.contains('/') && !dir.starts_with('.'), "{name}: {dir}");
            assert_eq!(decode(&dir).as_deref(), Some(name), "{dir}");
        }
        assert_ne!(dir_name("my daemon"), dir_name("my%20daemon"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%61"), None, "not the directory `a` would have");
        assert_eq!(decode("spool"), None, "the one-product layout's spool");
    }

    #[test]
    fn the_first_product_takes_over_a_one_product_root() {
        let root = tempfile::tempdir().unwrap();
        let id = machine_id::load_or_create(root.path()).unwrap();
        std::fs::write(root.path().join(status_file::FILE), b"{}").unwrap();
        adopt_legacy(root.path(), "a", None);
        assert_eq!(machine_id::load(&state_dir(root.path(), "a")), Some(id));
        assert!(state_dir(root.path(), "a").join(status_file::FILE).exists());
        assert!(!has_legacy(root.path()));
        adopt_legacy(root.path(), "b", None);
        assert_eq!(machine_id::load(&state_dir(root.path(), "b")), None);
        assert_eq!(products(root.path()), ["a"]);
    }
}
