//! System facts for anonymous statistics, read from a root directory.
//!
//! [`probe`] reads `/etc`, `/proc` and `/sys` below a root directory (`/` for the running
//! system, a fixture tree in tests) and returns [`SystemFacts`]. It starts no process, opens
//! no socket and never panics: whatever cannot be read becomes `"unknown"` (or `"none"`),
//! and every fact carries a `detection` string saying where it came from, such as
//! `/etc/os-release`, `dmi:sys_vendor`, `cpuinfo:hypervisor-flag`, `/.dockerenv` or
//! `none-found`.
//!
//! # Operating system
//!
//! From `/etc/os-release`, else `/usr/lib/os-release`, else `/etc/lsb-release`. Inside a
//! container that file describes the container image and is reported as `container_os_*`;
//! the host's is looked up under `/host` (where monitoring agents usually mount the host's
//! root), then at `/run/host/os-release` (the container interface of systemd-nspawn), and
//! reported as `host_os_*`. Without either the host fields are `"unknown"` with detection
//! `none-found:host-root-not-mounted`. WSL is the
//! exception: its distribution is the only Linux userland there is, so it is the host OS.
//!
//! # Virtualization and containers
//!
//! Detected as systemd-detect-virt does, in its order and with its names: `system_container`
//! is one of `none`, `docker`, `podman`, `lxc`, `lxc-libvirt`, `systemd-nspawn`, `wsl`,
//! `openvz`, `proot`, `rkt`, `pouch`, plus `containerd` and `cri-o` recognised from cgroup
//! paths, or `container-other`. `system_virtualization` is one of `none`, `kvm`, `qemu`,
//! `vmware`, `microsoft`, `oracle`, `xen`, `amazon`, `google`, `bochs`, `parallels`,
//! `bhyve`, `apple`, `uml`, `zvm`, `powervm`, `qnx`, `acrn`, or `vm-other` when a hypervisor
//! is present but unnamed. The CPUID signature is used only for the live root.
//!
//! # Buckets
//!
//! Memory and disk size are reported as the next power of two at or above the measured
//! size, so a machine's exact figures never leave it and the kernel's reserved memory does
//! not push a 16 GiB machine into a different bucket than its neighbours:
//!
//! | property | buckets |
//! |---|---|
//! | `system_total_ram` | `256MiB` (or less), `512MiB`, `1GiB`, `2GiB`, ... `512GiB`, `>512GiB` |
//! | `system_total_disk_size` | `8GiB` (or less), `16GiB`, ... `512GiB`, `1TiB`, `2TiB`, ... `64TiB`, `>64TiB` |
//!
//! Disk size is the sum of the whole disks in `/sys/block`, leaving out loop, RAM, zram,
//! optical, floppy, network block devices, removable media, and device-mapper and md
//! volumes (they sit on disks already counted). Unreadable values are `"unknown"`.
//!
//! # Example
//!
//! ```
//! let facts = anonstats_probe::probe(std::path::Path::new("/"));
//! for (name, value) in facts.properties() {
//!     assert!(anonstats_probe::PROPERTY_NAMES.contains(&name));
//!     println!("{name} = {value}");
//! }
//! ```

#![warn(missing_docs)]

mod container;
mod hardware;
mod k8s;
mod kernel;
mod os_release;
mod rooted;
#[cfg(test)]
mod test_util;
mod virt;

use rooted::Root;
use serde_json::Value;
use std::path::Path;

pub use kernel::Kernel;
pub use os_release::{OsInfo, parse as parse_os_release};

/// The value of any fact that could not be determined.
pub const UNKNOWN: &str = "unknown";

/// One detected value and how it was detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// What was found, e.g. "kvm", "docker", "16GiB", "none", "unknown".
    pub value: String,
    /// Where it was found, e.g. "dmi:sys_vendor", "/.dockerenv", "none-found".
    pub detection: String,
}

impl Fact {
    /// A fact with its value and how it was detected.
    pub fn new(value: impl Into<String>, detection: impl Into<String>) -> Self {
        Fact {
            value: value.into(),
            detection: detection.into(),
        }
    }
}

/// Everything [`probe`] learned about a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemFacts {
    /// The host's operating system.
    pub host_os: OsInfo,
    /// The container image's operating system, when running in a container.
    pub container_os: Option<OsInfo>,
    /// Kernel name, release and architecture.
    pub kernel: Kernel,
    /// Hypervisor: "none", "kvm", "vmware", ...
    pub virtualization: Fact,
    /// Container manager: "none", "docker", "lxc", ...
    pub container: Fact,
    /// Whether the machine is a Kubernetes node (or runs this inside a pod on one).
    pub is_k8s_node: bool,
    /// How `is_k8s_node` was decided, e.g. "/var/lib/kubelet" or "none-found".
    pub k8s_detection: String,
    /// Logical CPUs online; `None` when neither sysfs nor `/proc/cpuinfo` could tell.
    pub cpu_count: Option<u32>,
    /// How `cpu_count` was read, e.g. "/sys/devices/system/cpu/online".
    pub cpu_detection: String,
    /// Memory size bucket, e.g. "16GiB".
    pub total_ram: Fact,
    /// Disk size bucket, e.g. "1TiB".
    pub total_disk: Fact,
}

/// Containers whose own userland is the only one visible; everything else has a host OS
/// apart from the image's.
fn has_separate_host(container: &str) -> bool {
    container != "none" && container != "wsl"
}

/// Reads the facts of the system rooted at `root` (`/` for the running system).
pub fn probe(root: &Path) -> SystemFacts {
    let root = Root::new(root);
    let container = container::detect(root);
    let own_os = os_release::detect(root, "").unwrap_or_else(|| OsInfo::unknown("none-found"));
    let (host_os, container_os) = if has_separate_host(&container.value) {
        let host = os_release::detect_host(root)
            .unwrap_or_else(|| OsInfo::unknown("none-found:host-root-not-mounted"));
        (host, Some(own_os))
    } else {
        (own_os, None)
    };
    let (is_k8s_node, k8s_detection) = k8s::detect(root);
    let (cpu_count, cpu_detection) = hardware::cpu_count(root);
    SystemFacts {
        host_os,
        container_os,
        kernel: kernel::detect(root),
        virtualization: virt::detect(root),
        container,
        is_k8s_node,
        k8s_detection,
        cpu_count,
        cpu_detection,
        total_ram: hardware::total_ram(root),
        total_disk: hardware::total_disk(root),
    }
}

/// Every property name [`SystemFacts::properties`] can emit, in its order. The
/// `container_os_*` names appear only when running in a container.
pub const PROPERTY_NAMES: &[&str] = &[
    "host_os_name",
    "host_os_id",
    "host_os_id_like",
    "host_os_version",
    "host_os_version_id",
    "host_os_detection",
    "container_os_name",
    "container_os_id",
    "container_os_id_like",
    "container_os_version",
    "container_os_version_id",
    "container_os_detection",
    "system_kernel_name",
    "system_kernel_version",
    "system_architecture",
    "system_virtualization",
    "system_virt_detection",
    "system_container",
    "system_container_detection",
    "host_is_k8s_node",
    "system_cpu_logical_cpu_count",
    "system_total_ram",
    "system_total_disk_size",
];

impl SystemFacts {
    /// Every property, in a fixed order, flat snake_case names exactly as DESIGN.md's event model lists them.
    ///
    /// All values are strings except `host_is_k8s_node` (bool) and
    /// `system_cpu_logical_cpu_count` (number, or null when unknown).
    pub fn properties(&self) -> Vec<(&'static str, Value)> {
        let text = |s: &str| Value::String(s.to_string());
        let os = |os: &OsInfo, names: [&'static str; 6]| {
            let values = [
                &os.name,
                &os.id,
                &os.id_like,
                &os.version,
                &os.version_id,
                &os.detection,
            ];
            names
                .into_iter()
                .zip(values.map(|v| text(v)))
                .collect::<Vec<_>>()
        };
        let mut props = os(
            &self.host_os,
            [
                "host_os_name",
                "host_os_id",
                "host_os_id_like",
                "host_os_version",
                "host_os_version_id",
                "host_os_detection",
            ],
        );
        if let Some(container_os) = &self.container_os {
            props.extend(os(
                container_os,
                [
                    "container_os_name",
                    "container_os_id",
                    "container_os_id_like",
                    "container_os_version",
                    "container_os_version_id",
                    "container_os_detection",
                ],
            ));
        }
        props.extend([
            ("system_kernel_name", text(&self.kernel.name)),
            ("system_kernel_version", text(&self.kernel.version)),
            ("system_architecture", text(&self.kernel.architecture)),
            ("system_virtualization", text(&self.virtualization.value)),
            (
                "system_virt_detection",
                text(&self.virtualization.detection),
            ),
            ("system_container", text(&self.container.value)),
            (
                "system_container_detection",
                text(&self.container.detection),
            ),
            ("host_is_k8s_node", Value::Bool(self.is_k8s_node)),
            (
                "system_cpu_logical_cpu_count",
                self.cpu_count.map_or(Value::Null, Value::from),
            ),
            ("system_total_ram", text(&self.total_ram.value)),
            ("system_total_disk_size", text(&self.total_disk.value)),
        ]);
        props
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_names_follow_the_list_in_and_out_of_containers() {
        let bare = probe(Path::new("/nonexistent-anonstats-root"));
        let names: Vec<&str> = bare.properties().iter().map(|(n, _)| *n).collect();
        let outside: Vec<&str> = PROPERTY_NAMES
            .iter()
            .copied()
            .filter(|n| !n.starts_with("container_os_"))
            .collect();
        assert_eq!(names, outside);

        let mut inside = bare.clone();
        inside.container_os = Some(OsInfo::unknown("none-found"));
        let names: Vec<&str> = inside.properties().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, PROPERTY_NAMES);
    }

    #[test]
    fn value_types() {
        let mut facts = probe(Path::new("/nonexistent-anonstats-root"));
        let get = |facts: &SystemFacts, key: &str| {
            facts
                .properties()
                .into_iter()
                .find(|(n, _)| *n == key)
                .map(|(_, v)| v)
        };
        assert_eq!(get(&facts, "host_is_k8s_node"), Some(Value::Bool(false)));
        assert_eq!(
            get(&facts, "system_cpu_logical_cpu_count"),
            Some(Value::Null)
        );
        facts.cpu_count = Some(8);
        assert_eq!(
            get(&facts, "system_cpu_logical_cpu_count"),
            Some(Value::from(8))
        );
    }

    #[test]
    fn wsl_and_bare_hosts_have_no_separate_host_os() {
        assert!(!has_separate_host("none"));
        assert!(!has_separate_host("wsl"));
        assert!(has_separate_host("docker"));
        assert!(has_separate_host("container-other"));
    }
}
