//! The system facts of a generated machine: a plausible mix of distributions, kernels,
//! architectures, hypervisors and container runtimes, with the same property names and
//! value forms as `anonstats-probe` reports them.

use super::rng::Rng;
use serde_json::{Map, Value};

/// One OS release: name, id, id_like, version, version_id, kernel pattern, arches.
/// In the kernel pattern `{n}` is a build number and `{a}` the Debian-style arch suffix.
struct Os {
    name: &'static str,
    id: &'static str,
    id_like: &'static str,
    version: &'static str,
    version_id: &'static str,
    kernel: &'static str,
    arm: bool,
}

const fn os(
    name: &'static str,
    id: &'static str,
    id_like: &'static str,
    version: &'static str,
    version_id: &'static str,
    kernel: &'static str,
    arm: bool,
) -> Os {
    Os {
        name,
        id,
        id_like,
        version,
        version_id,
        kernel,
        arm,
    }
}

#[rustfmt::skip]
const HOSTS: &[(Os, u32)] = &[
    (os("Ubuntu", "ubuntu", "debian", "22.04.4 LTS (Jammy Jellyfish)", "22.04", "5.15.0-{n}-generic", true), 180),
    (os("Ubuntu", "ubuntu", "debian", "24.04.1 LTS (Noble Numbat)", "24.04", "6.8.0-{n}-generic", true), 140),
    (os("Ubuntu", "ubuntu", "debian", "20.04.6 LTS (Focal Fossa)", "20.04", "5.4.0-{n}-generic", true), 60),
    (os("Debian GNU/Linux", "debian", "", "12 (bookworm)", "12", "6.1.0-{n}-{a}", true), 150),
    (os("Debian GNU/Linux", "debian", "", "11 (bullseye)", "11", "5.10.0-{n}-{a}", true), 60),
    (os("CentOS Linux", "centos", "rhel fedora", "7 (Core)", "7", "3.10.0-1160.{n}.1.el7.x86_64", false), 30),
    (os("CentOS Stream", "centos", "rhel fedora", "9", "9", "5.14.0-{n}.el9.x86_64", false), 25),
    (os("Red Hat Enterprise Linux", "rhel", "fedora", "9.4 (Plow)", "9.4", "5.14.0-427.{n}.1.el9_4.x86_64", false), 45),
    (os("Red Hat Enterprise Linux", "rhel", "fedora", "8.10 (Ootpa)", "8.10", "4.18.0-553.{n}.1.el8_10.x86_64", false), 25),
    (os("Rocky Linux", "rocky", "rhel centos fedora", "9.4 (Blue Onyx)", "9.4", "5.14.0-427.{n}.1.el9_4.x86_64", false), 25),
    (os("AlmaLinux", "almalinux", "rhel centos fedora", "9.4 (Seafoam Ocelot)", "9.4", "5.14.0-427.{n}.1.el9_4.x86_64", false), 20),
    (os("Fedora Linux", "fedora", "", "40 (Server Edition)", "40", "6.{n}.5-200.fc40.x86_64", false), 25),
    (os("Alpine Linux", "alpine", "", "", "3.20.3", "6.6.{n}-0-lts", true), 20),
    (os("Arch Linux", "arch", "", "", "", "6.{n}.2-arch1-1", false), 15),
    (os("openSUSE Leap", "opensuse-leap", "suse opensuse", "15.6", "15.6", "6.4.0-150600.{n}-default", false), 15),
    (os("Raspbian GNU/Linux", "raspbian", "debian", "12 (bookworm)", "12", "6.6.{n}+rpt-rpi-v7", true), 15),
    (os("Proxmox VE", "debian", "", "12 (bookworm)", "12", "6.8.12-{n}-pve", false), 20),
];

#[rustfmt::skip]
const IMAGES: &[(Os, u32)] = &[
    (os("Debian GNU/Linux", "debian", "", "12 (bookworm)", "12", "", true), 60),
    (os("Alpine Linux", "alpine", "", "", "3.20.3", "", true), 25),
    (os("Ubuntu", "ubuntu", "debian", "22.04.4 LTS (Jammy Jellyfish)", "22.04", "", true), 15),
];

const VIRT: &[((&str, &str), u32)] = &[
    (("none", "none-found"), 42),
    (("kvm", "dmi:sys_vendor"), 24),
    (("vmware", "dmi:sys_vendor"), 8),
    (("amazon", "dmi:sys_vendor"), 8),
    (("microsoft", "dmi:sys_vendor"), 5),
    (("google", "dmi:product_name"), 3),
    (("qemu", "cpuid"), 4),
    (("xen", "/sys/hypervisor/type"), 2),
    (("oracle", "dmi:sys_vendor"), 2),
    (("kvm", "cpuid"), 2),
];

const CONTAINERS: &[((&str, &str), u32)] = &[
    (("none", "none-found"), 66),
    (("docker", "/.dockerenv"), 24),
    (("lxc", "/proc/1/environ"), 4),
    (("podman", "/run/.containerenv"), 2),
    (("systemd-nspawn", "/run/systemd/container"), 1),
    (("wsl", "/proc/sys/kernel/osrelease"), 1),
    (("docker", "cgroup"), 2),
];

const CPUS: &[(u32, u32)] = &[
    (1, 8),
    (2, 22),
    (4, 28),
    (8, 20),
    (16, 12),
    (32, 6),
    (64, 3),
    (128, 1),
];

/// Powers of two from 256 MiB, as `anonstats-probe` buckets them.
fn size_bucket(mib: u64) -> String {
    let mut b: u64 = 256;
    while b < mib {
        b *= 2;
    }
    if b >= 1024 * 1024 {
        format!("{}TiB", b / (1024 * 1024))
    } else if b >= 1024 {
        format!("{}GiB", b / 1024)
    } else {
        format!("{b}MiB")
    }
}

fn put(m: &mut Map<String, Value>, k: &str, v: impl Into<Value>) {
    m.insert(k.to_string(), v.into());
}

fn put_os(m: &mut Map<String, Value>, prefix: &str, o: &Os, detection: &str) {
    let or_unknown = |s: &str| if s.is_empty() { "unknown" } else { s }.to_string();
    put(m, &format!("{prefix}_name"), o.name);
    put(m, &format!("{prefix}_id"), o.id);
    put(m, &format!("{prefix}_id_like"), or_unknown(o.id_like));
    put(m, &format!("{prefix}_version"), or_unknown(o.version));
    put(m, &format!("{prefix}_version_id"), or_unknown(o.version_id));
    put(m, &format!("{prefix}_detection"), detection);
}

/// The facts of one machine, fixed for its whole life.
pub fn facts(rng: &mut Rng) -> Map<String, Value> {
    let mut m = Map::new();
    let host = rng.weighted(HOSTS);
    let arch = match (host.arm, rng.below(100)) {
        (true, 0..=13) => "aarch64",
        (true, 14..=16) => "armv7l",
        _ => "x86_64",
    };
    let arch = if host.id == "raspbian" {
        "armv7l"
    } else {
        arch
    };
    let (container, container_detection) = *rng.weighted(CONTAINERS);
    let in_image = matches!(container, "docker" | "podman");
    if in_image && rng.chance(0.35) {
        // The host's os-release is not mounted into the container.
        for k in ["name", "id", "id_like", "version", "version_id"] {
            put(&mut m, &format!("host_os_{k}"), "unknown");
        }
        put(
            &mut m,
            "host_os_detection",
            "none-found:host-root-not-mounted",
        );
    } else if in_image {
        put_os(&mut m, "host_os", host, "/host/etc/os-release");
    } else {
        put_os(&mut m, "host_os", host, "/etc/os-release");
    }
    if in_image {
        put_os(
            &mut m,
            "container_os",
            rng.weighted(IMAGES),
            "/etc/os-release",
        );
    }
    let suffix = match arch {
        "aarch64" => "arm64",
        "armv7l" => "armmp",
        _ => "amd64",
    };
    let kernel = host
        .kernel
        .replace("{n}", &rng.range(10, 130).to_string())
        .replace("{a}", suffix);
    let kernel = if container == "wsl" {
        "5.15.153.1-microsoft-standard-WSL2".to_string()
    } else {
        kernel
    };
    put(&mut m, "system_kernel_name", "Linux");
    put(&mut m, "system_kernel_version", kernel);
    put(&mut m, "system_architecture", arch);
    let (virt, virt_detection) = if arch == "armv7l" {
        ("none", "none-found")
    } else {
        *rng.weighted(VIRT)
    };
    put(&mut m, "system_virtualization", virt);
    put(&mut m, "system_virt_detection", virt_detection);
    put(&mut m, "system_container", container);
    put(&mut m, "system_container_detection", container_detection);
    put(
        &mut m,
        "host_is_k8s_node",
        container == "docker" && rng.chance(0.3),
    );
    let cpus = if arch == "armv7l" {
        4
    } else {
        *rng.weighted(CPUS)
    };
    put(&mut m, "system_cpu_logical_cpu_count", cpus);
    let ram_mib = u64::from(cpus) * 1024 * [1, 2, 2, 4, 8][rng.below(5) as usize] - 300;
    put(&mut m, "system_total_ram", size_bucket(ram_mib));
    let disk_mib = (8 * 1024) << rng.below(10);
    put(&mut m, "system_total_disk_size", size_bucket(disk_mib + 1));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_use_the_probe_names() {
        let mut rng = Rng::new(1);
        for _ in 0..200 {
            for k in facts(&mut rng).keys() {
                assert!(anonstats_probe::PROPERTY_NAMES.contains(&k.as_str()), "{k}");
            }
        }
        assert_eq!(size_bucket(15_800), "16GiB");
        assert_eq!(size_bucket(3 * 1024 * 1024), "4TiB");
    }
}
