//! Bare metal and virtual machines: fixture systems under `tests/fixtures/`.

mod common;

use common::*;

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
