//! Containers, WSL and Kubernetes: fixture systems under `tests/fixtures/`.

mod common;

use common::*;

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
