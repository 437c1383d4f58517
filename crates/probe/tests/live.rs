//! The probe on the machine running the tests.

use anonstats_probe::{PROPERTY_NAMES, UNKNOWN, probe};
use std::path::Path;

#[test]
fn live_system_facts_are_plausible() {
    let facts = probe(Path::new("/"));
    assert_eq!(facts.kernel.name, "Linux");
    assert_eq!(facts.kernel.detection, "uname");
    assert!(!facts.kernel.version.is_empty() && facts.kernel.version != UNKNOWN);
    assert!(!facts.kernel.architecture.is_empty() && facts.kernel.architecture != UNKNOWN);
    assert!(
        facts.cpu_count.is_some_and(|n| n >= 1),
        "{:?}",
        facts.cpu_count
    );
    assert!(
        facts.total_ram.value.ends_with("iB"),
        "{:?}",
        facts.total_ram
    );
    for fact in [&facts.virtualization, &facts.container] {
        assert!(
            !fact.value.is_empty() && !fact.detection.is_empty(),
            "{fact:?}"
        );
    }
    assert!(!facts.host_os.detection.is_empty());
}

#[test]
fn live_properties_are_listed_names_in_order() {
    let props = probe(Path::new("/")).properties();
    let mut names = PROPERTY_NAMES.iter();
    for (name, value) in &props {
        assert!(
            names.any(|n| n == name),
            "{name} missing from PROPERTY_NAMES or out of order"
        );
        assert!(!value.is_null() || *name == "system_cpu_logical_cpu_count");
    }
}

#[test]
fn live_kernel_matches_proc() {
    let facts = probe(Path::new("/"));
    if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        assert_eq!(facts.kernel.version, release.trim());
    }
}
