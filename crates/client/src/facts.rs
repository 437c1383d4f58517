//! System facts from `anonstats-probe`, and the full list of property names.

use serde_json::{Map, Value};
use std::path::Path;

/// The probe's properties for the system under `root` (`/` normally).
pub fn system_properties(root: &Path) -> Map<String, Value> {
    let _ = root;
    Map::new()
}

/// Every property an agent event can carry: the client's own and the probe's.
pub fn property_names() -> Vec<&'static str> {
    crate::event::PROPERTY_NAMES.to_vec()
}
