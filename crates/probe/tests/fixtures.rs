//! Detection against whole fixture systems under `tests/fixtures/<name>/`.

use anonstats_probe::{OsInfo, SystemFacts, probe};
use serde_json::Value;
use std::path::PathBuf;

fn facts(name: &str) -> SystemFacts {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(root.is_dir(), "missing fixture {}", root.display());
    probe(&root)
}

/// `[name, id, id_like, version, version_id, detection]`
fn os(info: &OsInfo) -> [&str; 6] {
    [
        &info.name,
        &info.id,
        &info.id_like,
        &info.version,
        &info.version_id,
        &info.detection,
    ]
}

const UBUNTU_2204: [&str; 5] = [
    "Ubuntu",
    "ubuntu",
    "debian",
    "22.04.3 LTS (Jammy Jellyfish)",
    "22.04",
];
const DEBIAN_12: [&str; 5] = [
    "Debian GNU/Linux",
    "debian",
    "unknown",
    "12 (bookworm)",
    "12",
];

fn with(detection: &'static str, fields: [&'static str; 5]) -> [&'static str; 6] {
    let [a, b, c, d, e] = fields;
    [a, b, c, d, e, detection]
}

struct Expect {
    host_os: [&'static str; 6],
    container_os: Option<[&'static str; 6]>,
    /// `[name, version, architecture, detection]`
    kernel: [&'static str; 4],
    virt: [&'static str; 2],
    container: [&'static str; 2],
    k8s: (bool, &'static str),
    cpus: u32,
    ram: &'static str,
    disk: &'static str,
}

fn check(name: &str, want: Expect) {
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

const NONE: [&str; 2] = ["none", "none-found"];
const NOT_K8S: (bool, &str) = (false, "none-found");
const HOST_UNKNOWN: [&str; 6] = [
    "unknown",
    "unknown",
    "unknown",
    "unknown",
    "unknown",
    "none-found:host-root-not-mounted",
];

#[test]
fn bare_metal() {
    check(
        "bare-metal",
        Expect {
            host_os: with("/etc/os-release", UBUNTU_2204),
            container_os: None,
            kernel: ["Linux", "6.5.0-14-generic", "x86_64", "/proc/sys/kernel"],
            virt: NONE,
            container: NONE,
            k8s: NOT_K8S,
            cpus: 16,
            ram: "32GiB",
            disk: "4TiB",
        },
    );
}

#[test]
fn kvm() {
    check(
        "kvm",
        Expect {
            host_os: [
                "Rocky Linux",
                "rocky",
                "rhel centos fedora",
                "9.3 (Blue Onyx)",
                "9.3",
                "/etc/os-release",
            ],
            container_os: None,
            kernel: [
                "Linux",
                "5.14.0-362.8.1.el9_3.x86_64",
                "x86_64",
                "/proc/sys/kernel",
            ],
            virt: ["kvm", "clocksource:kvm-clock"],
            container: NONE,
            k8s: NOT_K8S,
            cpus: 4,
            ram: "8GiB",
            disk: "64GiB",
        },
    );
}

#[test]
fn qemu() {
    check(
        "qemu",
        Expect {
            host_os: with("/etc/os-release", DEBIAN_12),
            container_os: None,
            kernel: ["Linux", "6.1.0-18-amd64", "x86_64", "/proc/sys/kernel"],
            virt: ["qemu", "dmi:sys_vendor"],
            container: NONE,
            k8s: NOT_K8S,
            cpus: 2,
            ram: "2GiB",
            disk: "32GiB",
        },
    );
}

#[test]
fn vmware() {
    check(
        "vmware",
        Expect {
            host_os: [
                "Ubuntu",
                "ubuntu",
                "debian",
                "20.04.6 LTS (Focal Fossa)",
                "20.04",
                "/etc/os-release",
            ],
            container_os: None,
            // This kernel predates /proc/sys/kernel/arch.
            kernel: ["Linux", "5.4.0-169-generic", "unknown", "/proc/sys/kernel"],
            virt: ["vmware", "dmi:product_name"],
            container: NONE,
            k8s: NOT_K8S,
            cpus: 8,
            ram: "16GiB",
            disk: "128GiB",
        },
    );
}

#[test]
fn hyperv() {
    check(
        "hyperv",
        Expect {
            host_os: [
                "Ubuntu",
                "ubuntu",
                "debian",
                "24.04.1 LTS (Noble Numbat)",
                "24.04",
                "/etc/os-release",
            ],
            container_os: None,
            kernel: ["Linux", "6.8.0-45-generic", "x86_64", "/proc/sys/kernel"],
            virt: ["microsoft", "dmi:sys_vendor+product_name"],
            container: NONE,
            k8s: NOT_K8S,
            cpus: 2,
            ram: "4GiB",
            disk: "128GiB",
        },
    );
}

#[test]
fn xen() {
    check(
        "xen",
        Expect {
            host_os: [
                "Debian GNU/Linux",
                "debian",
                "unknown",
                "11 (bullseye)",
                "11",
                "/etc/os-release",
            ],
            container_os: None,
            kernel: ["Linux", "5.10.0-26-amd64", "unknown", "/proc/sys/kernel"],
            virt: ["xen", "/proc/xen"],
            container: NONE,
            k8s: NOT_K8S,
            cpus: 1,
            ram: "1GiB",
            disk: "32GiB",
        },
    );
}

#[test]
fn virtualbox() {
    check(
        "virtualbox",
        Expect {
            host_os: [
                "Fedora Linux",
                "fedora",
                "unknown",
                "39 (Workstation Edition)",
                "39",
                "/etc/os-release",
            ],
            container_os: None,
            kernel: [
                "Linux",
                "6.6.9-200.fc39.x86_64",
                "x86_64",
                "/proc/sys/kernel",
            ],
            // kvm-clock is present too: VirtualBox's DMI decides before it.
            virt: ["oracle", "dmi:product_name"],
            container: NONE,
            k8s: NOT_K8S,
            cpus: 2,
            ram: "4GiB",
            disk: "128GiB",
        },
    );
}

#[test]
fn amazon_ec2() {
    check(
        "amazon-ec2",
        Expect {
            host_os: [
                "Amazon Linux",
                "amzn",
                "fedora",
                "2023",
                "2023",
                "/etc/os-release",
            ],
            container_os: None,
            kernel: [
                "Linux",
                "6.1.72-96.166.amzn2023.x86_64",
                "x86_64",
                "/proc/sys/kernel",
            ],
            virt: ["amazon", "dmi:sys_vendor+smbios:vm-bit"],
            container: NONE,
            k8s: NOT_K8S,
            cpus: 2,
            ram: "8GiB",
            disk: "8GiB",
        },
    );
}

#[test]
fn docker() {
    check(
        "docker",
        Expect {
            host_os: with("/host/etc/os-release", UBUNTU_2204),
            container_os: Some([
                "Alpine Linux",
                "alpine",
                "unknown",
                "unknown",
                "3.19.1",
                "/etc/os-release",
            ]),
            kernel: ["Linux", "5.15.0-91-generic", "x86_64", "/proc/sys/kernel"],
            virt: ["kvm", "clocksource:kvm-clock"],
            container: ["docker", "/.dockerenv"],
            k8s: NOT_K8S,
            cpus: 4,
            ram: "8GiB",
            disk: "128GiB",
        },
    );
}

#[test]
fn podman() {
    check(
        "podman",
        Expect {
            host_os: HOST_UNKNOWN,
            container_os: Some([
                "Fedora Linux",
                "fedora",
                "unknown",
                "39 (Container Image)",
                "39",
                "/etc/os-release",
            ]),
            kernel: [
                "Linux",
                "6.7.4-200.fc39.x86_64",
                "x86_64",
                "/proc/sys/kernel",
            ],
            virt: NONE,
            container: ["podman", "/proc/1/environ"],
            k8s: NOT_K8S,
            cpus: 8,
            ram: "32GiB",
            disk: "1TiB",
        },
    );
}

#[test]
fn lxc() {
    check(
        "lxc",
        Expect {
            host_os: HOST_UNKNOWN,
            container_os: Some(with("/etc/os-release", UBUNTU_2204)),
            kernel: ["Linux", "6.5.0-1014-azure", "x86_64", "/proc/sys/kernel"],
            virt: ["microsoft", "dmi:sys_vendor+product_name"],
            container: ["lxc", "/run/systemd/container"],
            k8s: NOT_K8S,
            cpus: 4,
            ram: "16GiB",
            disk: "128GiB",
        },
    );
}

#[test]
fn systemd_nspawn() {
    check(
        "systemd-nspawn",
        Expect {
            host_os: with("/run/host/os-release", DEBIAN_12),
            container_os: Some([
                "Arch Linux",
                "arch",
                "unknown",
                "unknown",
                "unknown",
                "/etc/os-release",
            ]),
            kernel: ["Linux", "6.1.0-18-amd64", "x86_64", "/proc/sys/kernel"],
            virt: NONE,
            container: ["systemd-nspawn", "/run/host/container-manager"],
            k8s: NOT_K8S,
            cpus: 8,
            ram: "16GiB",
            disk: "256GiB",
        },
    );
}

#[test]
fn wsl() {
    check(
        "wsl",
        Expect {
            // WSL's distribution is the only userland there is: it is the host OS.
            host_os: with("/etc/os-release", UBUNTU_2204),
            container_os: None,
            kernel: [
                "Linux",
                "5.15.133.1-microsoft-standard-WSL2",
                "x86_64",
                "/proc/sys/kernel",
            ],
            virt: ["microsoft", "clocksource:hyperv_clocksource_tsc_page"],
            container: ["wsl", "/proc/sys/kernel/osrelease"],
            k8s: NOT_K8S,
            cpus: 12,
            ram: "16GiB",
            disk: "2TiB",
        },
    );
}

#[test]
fn kubernetes() {
    check(
        "kubernetes",
        Expect {
            host_os: with("/host/etc/os-release", UBUNTU_2204),
            container_os: Some(with("/etc/os-release", DEBIAN_12)),
            kernel: ["Linux", "5.15.0-1049-gke", "x86_64", "/proc/sys/kernel"],
            virt: ["google", "dmi:product_name"],
            container: ["containerd", "/proc/1/cgroup"],
            k8s: (true, "/proc/1/environ:KUBERNETES_SERVICE_HOST"),
            cpus: 4,
            ram: "16GiB",
            disk: "128GiB",
        },
    );
}
