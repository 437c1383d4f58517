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
