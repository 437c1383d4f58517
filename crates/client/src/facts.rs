//! System facts from `anonstats-probe`, and the full list of property names.

use serde_json::{Map, Value};
use std::path::Path;

/// The probe's properties for the system under `root` (`/` normally). Reads files only:
/// no subprocess, no network.
pub fn system_properties(root: &Path) -> Map<String, Value> {
    anonstats_probe::probe(root)
        .properties()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// A probe property present in every probe's result: an event without it has not had its
/// system facts added yet (see [`add_missing`]).
const ALWAYS_SET: &str = "host_os_detection";

/// True when `props` already carry the system facts.
pub(crate) fn present(props: &Map<String, Value>) -> bool {
    props.contains_key(ALWAYS_SET)
}

/// Add the system facts to an event's properties; the client's own properties (and the
/// masks) keep their values.
pub(crate) fn add_missing(props: &mut Map<String, Value>, facts: &Map<String, Value>) {
    for (k, v) in facts {
        if !props.contains_key(k) {
            props.insert(k.clone(), v.clone());
        }
    }
    crate::event::apply_masks(props);
}

/// Every property an agent event can carry: the client's own and the probe's.
///
/// ```
/// let names = anonstats_client::facts::property_names();
/// assert!(names.contains(&"product_version") && names.contains(&"system_kernel_name"));
/// ```
pub fn property_names() -> Vec<&'static str> {
    let mut names = crate::event::PROPERTY_NAMES.to_vec();
    names.extend_from_slice(anonstats_probe::PROPERTY_NAMES);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_property_is_always_set() {
        let empty = tempfile::tempdir().unwrap();
        for root in [empty.path(), Path::new("/")] {
            assert!(present(&system_properties(root)), "{}", root.display());
        }
    }

    #[test]
    fn facts_never_replace_the_clients_properties() {
        let mut props = Map::new();
        props.insert("product_name".into(), "p".into());
        let mut facts = system_properties(Path::new("/"));
        facts.insert("product_name".into(), "other".into());
        facts.insert("$ip".into(), "10.0.0.1".into());
        assert!(!present(&props));
        add_missing(&mut props, &facts);
        assert!(present(&props));
        assert_eq!(props["product_name"], "p");
        assert_eq!(props["$ip"], "127.0.0.1");
    }
}
