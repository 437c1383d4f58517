//! Shared expectations for the fixture systems under `tests/fixtures/<name>/`.

#![allow(dead_code)]

use anonstats_probe::{OsInfo, SystemFacts, probe};
use serde_json::Value;
use std::path::PathBuf;

pub fn facts(name: &str) -> SystemFacts {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(root.is_dir(), "missing fixture {}", root.display());
    probe(&root)
}

/// `[name, id, id_like, version, version_id, detection]`
pub fn os(info: &OsInfo) -> [&str; 6] {
    [
        &info.name,
        &info.id,
        &info.id_like,
        &info.version,
        &info.version_id,
        &info.detection,
    ]
}

pub const UBUNTU_2204: [&str; 5] = [
    "Ubuntu",
    "ubuntu",
    "debian",
    "22.04.3 LTS (Jammy Jellyfish)",
    "22.04",
];
pub const DEBIAN_12: [&str; 5] = [
    "Debian GNU/Linux",
    "debian",
    "unknown",
    "12 (bookworm)",
    "12",
];

pub fn with(detection: &'static str, fields: [&'static str; 5]) -> [&'static str; 6] {
    let [a, b, c, d, e] = fields;
    [a, b, c, d, e, detection]
}

pub struct Expect {
    pub host_os: [&'static str; 6],
    pub container_os: Option<[&'static str; 6]>,
    /// `[name, version, architecture, detection]`
    pub kernel: [&'static str; 4],
    pub virt: [&'static str; 2],
    pub container: [&'static str; 2],
    pub k8s: (bool, &'static str),
    pub cpus: u32,
    pub ram: &'static str,
    pub disk: &'static str,
}

pub fn check(name: &str, want: Expect) {
    let got = facts(name);
    assert_eq!(os(&got.host_os), want.host_os, "{name}: host os");
    assert_eq!(
        got.container_os.as_ref().map(os),
        want.container_os,
        "{name}: container os"
    );
    let k = &got.kernel;
    assert_eq!(
        [k.name.as_str(), &k.version, &k.architecture, &k.detection],
        want.kernel,
        "{name}: kernel"
    );
    assert_eq!(
        [
            got.virtualization.value.as_str(),
            &got.virtualization.detection
        ],
        want.virt,
        "{name}: virtualization"
    );
    assert_eq!(
        [got.container.value.as_str(), &got.container.detection],
        want.container,
        "{name}: container"
    );
    assert_eq!(
        (got.is_k8s_node, got.k8s_detection.as_str()),
        want.k8s,
        "{name}: k8s"
    );
    assert_eq!(got.cpu_count, Some(want.cpus), "{name}: cpus");
    assert_eq!(
        got.cpu_detection, "/sys/devices/system/cpu/online",
        "{name}: cpu detection"
    );
    assert_eq!(
        [got.total_ram.value.as_str(), &got.total_ram.detection],
        [want.ram, "/proc/meminfo"],
        "{name}: ram"
    );
    assert_eq!(
        [got.total_disk.value.as_str(), &got.total_disk.detection],
        [want.disk, "/sys/block"],
        "{name}: disk"
    );

    // The flat properties carry the same values.
    let props = got.properties();
    let prop = |key: &str| {
        props
            .iter()
            .find(|(n, _)| *n == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        prop("system_virtualization"),
        Some(Value::from(want.virt[0]))
    );
    assert_eq!(
        prop("system_container"),
        Some(Value::from(want.container[0]))
    );
    assert_eq!(prop("host_is_k8s_node"), Some(Value::from(want.k8s.0)));
    assert_eq!(
        prop("system_cpu_logical_cpu_count"),
        Some(Value::from(want.cpus))
    );
    assert_eq!(prop("host_os_id"), Some(Value::from(want.host_os[1])));
    assert_eq!(
        prop("container_os_id"),
        want.container_os.map(|c| Value::from(c[1]))
    );
}

pub const NONE: [&str; 2] = ["none", "none-found"];
pub const NOT_K8S: (bool, &str) = (false, "none-found");
pub const HOST_UNKNOWN: [&str; 6] = [
    "unknown",
    "unknown",
    "unknown",
    "unknown",
    "unknown",
    "none-found:host-root-not-mounted",
];
