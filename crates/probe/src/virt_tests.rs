use super::*;
use crate::test_util::Tree;

fn run(name: &str, files: &[(&str, &[u8])]) -> (String, String) {
    let tree = Tree::new(&format!("virt-{name}"), files);
    let fact = detect(Root::new(tree.path()));
    (fact.value, fact.detection)
}

fn pair(value: &str, detection: &str) -> (String, String) {
    (value.to_string(), detection.to_string())
}

/// An SMBIOS type 0 record, 24 bytes long, with the VM bit as given.
fn smbios(vm: bool) -> Vec<u8> {
    let mut raw = vec![0u8; 24];
    raw[1] = 24;
    raw[19] = if vm { 1 << 4 } else { 0 };
    raw
}

#[test]
fn empty_root_is_none() {
    assert_eq!(run("empty", &[]), pair("none", "none-found"));
}

#[test]
fn kvm_in_product_name_wins_over_qemu_vendor() {
    let got = run(
        "rhev",
        &[
            ("/sys/class/dmi/id/product_name", b"KVM\n"),
            ("/sys/class/dmi/id/sys_vendor", b"QEMU\n"),
        ],
    );
    assert_eq!(got, pair("kvm", "dmi:product_name"));
}

#[test]
fn openstack_is_kvm() {
    let got = run(
        "openstack",
        &[("/sys/class/dmi/id/sys_vendor", b"OpenStack Foundation\n")],
    );
    assert_eq!(got, pair("kvm", "dmi:sys_vendor"));
}

#[test]
fn microsoft_hardware_is_not_hyperv() {
    let got = run(
        "surface",
        &[
            ("/sys/class/dmi/id/sys_vendor", b"Microsoft Corporation\n"),
            ("/sys/class/dmi/id/product_name", b"Surface Laptop 5\n"),
            ("/sys/class/dmi/id/bios_vendor", b"Microsoft Corporation\n"),
        ],
    );
    assert_eq!(got, pair("none", "none-found"));
}

#[test]
fn oracle_servers_are_not_virtualbox() {
    let got = run(
        "oracle-server",
        &[
            ("/sys/class/dmi/id/sys_vendor", b"Oracle Corporation\n"),
            ("/sys/class/dmi/id/product_name", b"ORACLE SERVER X8-2\n"),
        ],
    );
    assert_eq!(got.0, "none");
}

#[test]
fn amazon_metal_by_smbios_bit_and_by_name() {
    let vendor: (&str, &[u8]) = ("/sys/class/dmi/id/sys_vendor", b"Amazon EC2\n");
    let unset = smbios(false);
    let set = smbios(true);
    let by_bit = run(
        "ec2-metal-bit",
        &[vendor, ("/sys/firmware/dmi/entries/0-0/raw", &unset)],
    );
    assert_eq!(by_bit.0, "none");
    let by_name = run(
        "ec2-metal-name",
        &[vendor, ("/sys/class/dmi/id/product_name", b"m5.metal\n")],
    );
    assert_eq!(by_name.0, "none");
    let nitro = run(
        "ec2-nitro-bit",
        &[vendor, ("/sys/firmware/dmi/entries/0-0/raw", &set)],
    );
    assert_eq!(nitro, pair("amazon", "dmi:sys_vendor+smbios:vm-bit"));
}

#[test]
fn smbios_bit_alone_is_vm_other() {
    let set = smbios(true);
    let got = run(
        "smbios-only",
        &[("/sys/firmware/dmi/entries/0-0/raw", &set)],
    );
    assert_eq!(got, pair("vm-other", "smbios:vm-bit"));
    let short = run(
        "smbios-short",
        &[("/sys/firmware/dmi/entries/0-0/raw", &[0u8, 18, 0])],
    );
    assert_eq!(short.0, "none");
}

#[test]
fn xen_dom0_is_not_a_guest() {
    let by_caps = run(
        "xen-dom0-caps",
        &[("/proc/xen/capabilities", b"control_d\n")],
    );
    assert_eq!(by_caps, pair("none", "/proc/xen:dom0"));
    let by_features = run(
        "xen-dom0-features",
        &[
            ("/proc/xen/capabilities", b""),
            ("/sys/hypervisor/properties/features", b"00000f05\n"),
        ],
    );
    assert_eq!(by_features.0, "none");
    let domu = run(
        "xen-domu-features",
        &[
            ("/proc/xen/capabilities", b""),
            ("/sys/hypervisor/properties/features", b"00000705\n"),
        ],
    );
    assert_eq!(domu, pair("xen", "/proc/xen"));
}

#[test]
fn user_mode_linux_by_cpu_vendor() {
    let got = run(
        "uml",
        &[(
            "/proc/cpuinfo",
            b"processor\t: 0\nvendor_id\t: User Mode Linux\n",
        )],
    );
    assert_eq!(got, pair("uml", "cpuinfo:vendor_id"));
}

#[test]
fn cpuid_signatures() {
    assert_eq!(
        cpuid_signature("KVMKVMKVM"),
        found("kvm", "cpuid:KVMKVMKVM")
    );
    assert_eq!(
        cpuid_signature("VMwareVMware"),
        found("vmware", "cpuid:VMwareVMware")
    );
    assert_eq!(
        cpuid_signature("Microsoft Hv"),
        Hint(Fact::new("microsoft", "cpuid:Microsoft Hv"))
    );
    assert!(matches!(cpuid_signature("NewHypervisor"), Hint(f) if f.value == "vm-other"));
}

#[test]
fn device_tree_variants() {
    let kvm = run(
        "dt-kvm",
        &[("/proc/device-tree/hypervisor/compatible", b"linux,kvm\0")],
    );
    assert_eq!(kvm, pair("kvm", "device-tree:hypervisor/compatible"));
    let xen = run(
        "dt-xen",
        &[(
            "/proc/device-tree/hypervisor/compatible",
            b"xen,xen-4.17\0xen,xen\0",
        )],
    );
    assert_eq!(xen.0, "xen");
    let qemu = run(
        "dt-fwcfg",
        &[(
            "/proc/device-tree/fw-cfg@9020000/compatible",
            b"qemu,fw-cfg-mmio\0",
        )],
    );
    assert_eq!(qemu, pair("qemu", "device-tree:fw-cfg@9020000"));
    let powervm = run(
        "dt-powervm",
        &[
            ("/proc/device-tree/ibm,partition-name", b"lpar1\0"),
            ("/proc/device-tree/hmc-managed?", b""),
        ],
    );
    assert_eq!(powervm.0, "powervm");
    let board = run(
        "dt-board",
        &[(
            "/proc/device-tree/compatible",
            b"raspberrypi,4-model-b\0brcm,bcm2711\0",
        )],
    );
    assert_eq!(board, pair("none", "none-found"));
}

#[test]
fn zvm_and_kvm_on_s390() {
    let zvm = run(
        "zvm",
        &[(
            "/proc/sysinfo",
            b"LPAR Name:  LP01\nVM00 Control Program: z/VM    7.2.0\n",
        )],
    );
    assert_eq!(zvm, pair("zvm", "/proc/sysinfo"));
    let kvm = run(
        "s390-kvm",
        &[("/proc/sysinfo", b"VM00 Control Program: KVM/Linux\n")],
    );
    assert_eq!(kvm.0, "kvm");
}

#[test]
fn unknown_hypervisor_type_is_vm_other() {
    let got = run("hv-type", &[("/sys/hypervisor/type", b"acme\n")]);
    assert_eq!(got, pair("vm-other", "/sys/hypervisor/type"));
}

#[test]
fn hyperv_hint_outranks_generic_hints_but_not_findings() {
    let hinted = run(
        "hv-hints",
        &[
            ("/proc/cpuinfo", b"flags\t\t: fpu hypervisor\n"),
            ("/sys/bus/vmbus/devices/x", b""),
        ],
    );
    assert_eq!(hinted, pair("microsoft", "/sys/bus/vmbus"));
    let decided = run(
        "hv-vs-kvm",
        &[
            ("/sys/bus/vmbus/devices/x", b""),
            (
                "/sys/devices/system/clocksource/clocksource0/available_clocksource",
                b"kvm-clock hyperv_clocksource_tsc_page tsc\n",
            ),
        ],
    );
    assert_eq!(decided, pair("kvm", "clocksource:kvm-clock"));
}

#[test]
fn live_root_uses_cpuid_and_does_not_panic() {
    let fact = detect(Root::new(std::path::Path::new("/")));
    assert!(!fact.value.is_empty());
    assert!(!fact.detection.is_empty());
}
