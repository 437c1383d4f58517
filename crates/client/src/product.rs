//! Each product's own state: `<state root>/<product>/` holds its machine id, spool, run
//! status, local log and receipts, so that two products on one machine share no id and
//! deliver none of each other's events.
//!
//! A state root that one product used alone before (its files directly in the root) is
//! taken over by the first product that starts there: the machine id and the run status
//! move into that product's directory, so an installed product keeps its id on upgrade.
//! Its spooled events move to the spool of the product that made them (`product_name`),
//! so that none is delivered by another product.
//!
//! Inside a product's directory, what names the machine to a collector belongs to one
//! endpoint: `endpoint-<key>/` ([`endpoint_dir`]) holds the machine id and the run status
//! for that endpoint, so that one product reporting to two collectors (two vendors, or a
//! fork) gives each an id of its own that nothing links. A product id of earlier versions
//! (`<product>/machine-id`) is claimed by the first endpoint the product reports to after
//! the upgrade ([`claim_for_endpoint`]), which keeps it; other endpoints get new ones.

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

/// The key of an endpoint: 16 hex digits of the 64-bit FNV-1a hash of the URL posted to
/// without its scheme, so that moving a collector from `http://` to `https://` keeps its
/// id. The token is not part of it: a new token at the same collector keeps the id.
///
/// ```
/// use anonstats_client::product::endpoint_key;
/// let a = endpoint_key("https://stats.a.example/batch/");
/// assert_eq!(a.len(), 16);
/// assert_eq!(a, endpoint_key("http://stats.a.example/batch/"));
/// assert_ne!(a, endpoint_key("https://stats.b.example/batch/"));
/// ```
pub fn endpoint_key(batch_url: &str) -> String {
    let rest = batch_url.split_once("://").map_or(batch_url, |(_, r)| r);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rest.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The directory of what belongs to one endpoint inside a product's state directory: the
/// machine id and the run status sent to the collector at `batch_url` (the URL posted to).
pub fn endpoint_dir(state_dir: &Path, batch_url: &str) -> PathBuf {
    state_dir.join(format!("{ENDPOINT_PREFIX}{}", endpoint_key(batch_url)))
}

const ENDPOINT_PREFIX: &str = "endpoint-";

/// Give the endpoint whose directory is `endpoint_dir` the product's id of earlier
/// versions (`<state_dir>/machine-id`) and its run status, if the endpoint has no id yet
/// and no other endpoint claimed it first. The rename is the claim: of two endpoints
/// starting at once, one gets the id and the other makes its own.
pub(crate) fn claim_for_endpoint(state_dir: &Path, endpoint_dir: &Path) {
    let old = machine_id::path(state_dir);
    if endpoint_dir == state_dir
        || !fs::symlink_metadata(&old).is_ok_and(|m| m.is_file())
        || machine_id::load(endpoint_dir).is_some()
        || fsutil::ensure_dir(endpoint_dir).is_err()
    {
        return;
    }
    if fs::rename(&old, machine_id::path(endpoint_dir)).is_ok() {
        fsutil::sync_dir(&machine_id::path(endpoint_dir));
        let _ = fs::rename(
            state_dir.join(status_file::FILE),
            endpoint_dir.join(status_file::FILE),
        );
    }
}

/// True when the product whose state directory this is has a machine id, for any endpoint.
fn has_id(state_dir: &Path) -> bool {
    if machine_id::load(state_dir).is_some() {
        return true;
    }
    let Ok(entries) = fs::read_dir(state_dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(ENDPOINT_PREFIX))
            && machine_id::load(&e.path()).is_some()
    })
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
    if has_id(&dir) || fsutil::ensure_dir(&dir).is_err() {
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
    fn the_first_endpoint_keeps_the_products_id_and_the_next_gets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let product = dir.path();
        let id = machine_id::load_or_create(product).unwrap();
        std::fs::write(product.join(status_file::FILE), b"{}").unwrap();
        let (one, two) = (
            endpoint_dir(product, "https://a.example/batch/"),
            endpoint_dir(product, "https://b.example/batch/"),
        );
        assert_ne!(one, two);
        claim_for_endpoint(product, &one);
        assert_eq!(machine_id::load(&one), Some(id));
        assert!(one.join(status_file::FILE).exists());
        assert_eq!(machine_id::load(product), None);
        claim_for_endpoint(product, &two);
        assert_eq!(machine_id::load(&two), None, "nothing left to claim");
        assert!(has_id(product));
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
