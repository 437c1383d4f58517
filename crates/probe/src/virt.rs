//! Which hypervisor, if any, runs this machine.
//!
//! The order is systemd-detect-virt's. DMI vendors that sit on top of another hypervisor
//! (VirtualBox, EC2 Nitro, Parallels and GCE use KVM; Xen may cloak as Hyper-V) decide
//! first; then the CPUID signature and its file-based stand-ins; then the rest of DMI and
//! the sysfs, device-tree and s390 interfaces. A probe can also leave a hint ("some
//! hypervisor", "looks like Hyper-V") that decides only when nothing better is found.

use crate::Fact;
use crate::rooted::Root;

/// What one probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Found(Fact),
    /// Used only if no probe finds anything: value "microsoft" or "vm-other".
    Hint(Fact),
    NotHere,
}
use Verdict::{Found, Hint, NotHere};

fn found(value: &str, detection: impl Into<String>) -> Verdict {
    Found(Fact::new(value, detection))
}

/// DMI vendors that identify the product even when it runs on KVM or mimics Hyper-V.
const DECIDES_FIRST: &[&str] = &["oracle", "xen", "amazon", "parallels", "google"];

pub(crate) fn detect(root: Root<'_>) -> Fact {
    let mut hints = Vec::new();
    let dmi = dmi(root);
    if let Found(fact) = &dmi
        && DECIDES_FIRST.contains(&fact.value.as_str())
    {
        return fact.clone();
    }
    if let Found(fact) = user_mode_linux(root) {
        return fact;
    }
    let xen_dom0 = match xen(root) {
        Found(fact) => return fact,
        Hint(fact) => Some(fact),
        NotHere => None,
    };
    for probe in [cpuid, clocksource, vmbus] {
        match probe(root) {
            Found(fact) => return fact,
            Hint(fact) => hints.push(fact),
            NotHere => {}
        }
    }
    if let Some(dom0) = xen_dom0 {
        // The control domain runs on the hardware; only a hypervisor below Xen counts.
        return finish(hints).unwrap_or(dom0);
    }
    for verdict in [
        dmi,
        hypervisor_type(root),
        device_tree(root),
        zvm(root),
        cpuinfo_flag(root),
    ] {
        match verdict {
            Found(fact) => return fact,
            Hint(fact) => hints.push(fact),
            NotHere => {}
        }
    }
    finish(hints).unwrap_or_else(|| Fact::new("none", "none-found"))
}

/// Hyper-V enlightenments are offered by other hypervisors too, so "microsoft" is a last
/// resort; then "vm-other" when something said there is a hypervisor but not which.
fn finish(hints: Vec<Fact>) -> Option<Fact> {
    let microsoft = hints.iter().position(|h| h.value == "microsoft");
    let index = microsoft.or(if hints.is_empty() { None } else { Some(0) })?;
    hints.into_iter().nth(index)
}

/// DMI files in the order they are consulted: product_name first, so that "KVM" there wins
/// over "QEMU" in sys_vendor; product_version last, where Hyper-V puts its name.
const DMI_FILES: &[&str] = &[
    "product_name",
    "sys_vendor",
    "board_vendor",
    "bios_vendor",
    "product_version",
];

/// Prefixes of DMI strings and the hypervisor they name; the third field limits a prefix
/// to one file where it would otherwise match real hardware.
const DMI_VENDORS: &[(&str, &str, Option<&str>)] = &[
    ("KVM", "kvm", None),
    ("OpenStack", "kvm", None),
    ("KubeVirt", "kvm", None),
    ("Amazon EC2", "amazon", None),
    ("QEMU", "qemu", None),
    ("VMware", "vmware", None),
    ("VMW", "vmware", None),
    ("innotek GmbH", "oracle", None),
    ("VirtualBox", "oracle", None),
    ("Oracle Corporation", "oracle", Some("board_vendor")),
    ("Xen", "xen", None),
    ("Bochs", "bochs", None),
    ("Parallels", "parallels", None),
    ("BHYVE", "bhyve", None),
    ("Hyper-V", "microsoft", None),
    ("Apple Virtualization", "apple", None),
    ("Google Compute Engine", "google", None),
];

fn dmi(root: Root<'_>) -> Verdict {
    let read = |file: &str| root.first_line(&format!("/sys/class/dmi/id/{file}"));
    let product_name = read("product_name");
    for file in DMI_FILES {
        let Some(text) = read(file) else { continue };
        // Microsoft also sells hardware; only its virtual machine product is Hyper-V.
        if *file == "sys_vendor"
            && text.starts_with("Microsoft Corporation")
            && product_name
                .as_deref()
                .is_some_and(|p| p.starts_with("Virtual Machine"))
        {
            return found("microsoft", "dmi:sys_vendor+product_name");
        }
        let hit = DMI_VENDORS.iter().find(|(prefix, _, only)| {
            text.starts_with(prefix) && only.is_none_or(|only| only == *file)
        });
        if let Some((_, value, _)) = hit {
            let detection = format!("dmi:{file}");
            if *value == "amazon" {
                return amazon(root, detection, product_name.as_deref());
            }
            return found(value, detection);
        }
    }
    match smbios_vm_bit(root) {
        Some(true) => Hint(Fact::new("vm-other", "smbios:vm-bit")),
        _ => NotHere,
    }
}

/// EC2 bare-metal instances carry the same DMI vendor as virtual ones; the SMBIOS
/// "is a virtual machine" bit, or failing that a `.metal` product name, tells them apart.
fn amazon(root: Root<'_>, detection: String, product_name: Option<&str>) -> Verdict {
    match smbios_vm_bit(root) {
        Some(true) => found("amazon", format!("{detection}+smbios:vm-bit")),
        Some(false) => NotHere,
        None => {
            let metal = product_name
                .and_then(|p| p.split_once(".metal"))
                .is_some_and(|(_, rest)| rest.is_empty() || rest.starts_with('-'));
            if metal {
                NotHere
            } else {
                found("amazon", detection)
            }
        }
    }
}

/// Bit 4 of BIOS characteristics extension byte 2 (SMBIOS type 0, offset 0x13).
fn smbios_vm_bit(root: Root<'_>) -> Option<bool> {
    let raw = root.read_bytes("/sys/firmware/dmi/entries/0-0/raw")?;
    let length = *raw.get(1)?;
    if length < 20 {
        return None;
    }
    raw.get(19).map(|byte| byte & (1 << 4) != 0)
}

fn user_mode_linux(root: Root<'_>) -> Verdict {
    let Some(cpuinfo) = root.read("/proc/cpuinfo") else {
        return NotHere;
    };
    let vendor = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("vendor_id"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim());
    match vendor {
        Some(v) if v.starts_with("User Mode Linux") => found("uml", "cpuinfo:vendor_id"),
        _ => NotHere,
    }
}

/// `/proc/xen` exists in every Xen domain; the control domain (dom0) is reported as a hint
/// holding "none", since it is the host rather than a guest.
fn xen(root: Root<'_>) -> Verdict {
    if !root.exists("/proc/xen") {
        return NotHere;
    }
    const XENFEAT_DOM0: u32 = 11;
    let features = root
        .first_line("/sys/hypervisor/properties/features")
        .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok());
    let dom0 = match features {
        Some(bits) => bits & (1 << XENFEAT_DOM0) != 0,
        None => root
            .first_line("/proc/xen/capabilities")
            .is_some_and(|caps| caps.split(',').any(|c| c.trim() == "control_d")),
    };
    if dom0 {
        Hint(Fact::new("none", "/proc/xen:dom0"))
    } else {
        found("xen", "/proc/xen")
    }
}

/// The hypervisor's CPUID vendor signature; only meaningful for the machine we run on.
#[cfg(target_arch = "x86_64")]
fn cpuid(root: Root<'_>) -> Verdict {
    use std::arch::x86_64::__cpuid;
    if !root.is_live() {
        return NotHere;
    }
    // Older toolchains declare the intrinsic unsafe; newer ones do not.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU and only reads identification registers.
    let (leaf1, leaf_hv) = unsafe { (__cpuid(1), __cpuid(0x4000_0000)) };
    if leaf1.ecx & (1 << 31) == 0 {
        return NotHere;
    }
    let mut sig = Vec::with_capacity(12);
    for reg in [leaf_hv.ebx, leaf_hv.ecx, leaf_hv.edx] {
        sig.extend_from_slice(&reg.to_le_bytes());
    }
    let sig = String::from_utf8_lossy(&sig)
        .trim_end_matches('\0')
        .to_string();
    cpuid_signature(&sig)
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid(_root: Root<'_>) -> Verdict {
    NotHere
}

fn cpuid_signature(sig: &str) -> Verdict {
    let value = match sig {
        "XenVMMXenVMM" => "xen",
        "KVMKVMKVM" | "Linux KVM Hv" => "kvm",
        "TCGTCGTCGTCG" => "qemu",
        "VMwareVMware" => "vmware",
        "bhyve bhyve" => "bhyve",
        "QNXQVMBSQG" => "qnx",
        "ACRNACRNACRN" => "acrn",
        // Offered by QEMU with Hyper-V enlightenments too, so only a hint.
        "Microsoft Hv" => return Hint(Fact::new("microsoft", "cpuid:Microsoft Hv")),
        _ => return Hint(Fact::new("vm-other", "cpuid:hypervisor-bit")),
    };
    found(value, format!("cpuid:{sig}"))
}

/// Paravirtual clocks registered by the kernel name their hypervisor, like CPUID does.
fn clocksource(root: Root<'_>) -> Verdict {
    let path = "/sys/devices/system/clocksource/clocksource0/available_clocksource";
    let Some(list) = root.first_line(path) else {
        return NotHere;
    };
    let has = |name: &str| list.split_whitespace().any(|c| c == name);
    if has("kvm-clock") {
        found("kvm", "clocksource:kvm-clock")
    } else if has("xen") {
        found("xen", "clocksource:xen")
    } else if let Some(hv) = list
        .split_whitespace()
        .find(|c| c.starts_with("hyperv_clocksource"))
    {
        Hint(Fact::new("microsoft", format!("clocksource:{hv}")))
    } else {
        NotHere
    }
}

/// The Hyper-V VMBus appears only under Hyper-V (and hypervisors imitating it).
fn vmbus(root: Root<'_>) -> Verdict {
    if root.exists("/sys/bus/vmbus/devices") {
        Hint(Fact::new("microsoft", "/sys/bus/vmbus"))
    } else {
        NotHere
    }
}

fn hypervisor_type(root: Root<'_>) -> Verdict {
    match root.first_line("/sys/hypervisor/type").as_deref() {
        None => NotHere,
        Some("xen") => found("xen", "/sys/hypervisor/type"),
        Some(_) => Hint(Fact::new("vm-other", "/sys/hypervisor/type")),
    }
}

/// Device-tree strings end in NUL; the first string is the one that matters.
fn dt_string(root: Root<'_>, path: &str) -> Option<String> {
    let bytes = root.read_bytes(path)?;
    let first = bytes.split(|b| *b == 0).next()?;
    Some(String::from_utf8_lossy(first).trim().to_string())
}

fn device_tree(root: Root<'_>) -> Verdict {
    if let Some(hv) = dt_string(root, "/proc/device-tree/hypervisor/compatible") {
        let detection = "device-tree:hypervisor/compatible";
        return if hv == "linux,kvm" {
            found("kvm", detection)
        } else if hv.contains("xen") {
            found("xen", detection)
        } else if hv.contains("vmware") {
            found("vmware", detection)
        } else {
            Hint(Fact::new("vm-other", detection))
        };
    }
    if root.exists("/proc/device-tree/ibm,partition-name")
        && root.exists("/proc/device-tree/hmc-managed?")
        && !root.exists("/proc/device-tree/chosen/qemu,graphic-width")
    {
        return found("powervm", "device-tree:ibm,partition-name");
    }
    if let Some(fw) = root
        .list("/proc/device-tree")
        .into_iter()
        .find(|name| name.contains("fw-cfg"))
    {
        return found("qemu", format!("device-tree:{fw}"));
    }
    match dt_string(root, "/proc/device-tree/compatible").as_deref() {
        Some("qemu,pseries") => found("qemu", "device-tree:compatible"),
        _ => NotHere,
    }
}

/// s390 guests: the control program under which this LPAR/guest runs.
fn zvm(root: Root<'_>) -> Verdict {
    let Some(sysinfo) = root.read("/proc/sysinfo") else {
        return NotHere;
    };
    let program = sysinfo
        .lines()
        .find_map(|l| l.strip_prefix("VM00 Control Program:"))
        .and_then(|rest| rest.split_whitespace().next());
    match program {
        Some("z/VM") => found("zvm", "/proc/sysinfo"),
        Some(_) => found("kvm", "/proc/sysinfo"),
        None => NotHere,
    }
}

/// The kernel sets the "hypervisor" CPU flag whenever CPUID reports one, whichever it is.
fn cpuinfo_flag(root: Root<'_>) -> Verdict {
    let Some(cpuinfo) = root.read("/proc/cpuinfo") else {
        return NotHere;
    };
    let flagged = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .filter_map(|l| l.split_once(':'))
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "hypervisor"));
    if flagged {
        Hint(Fact::new("vm-other", "cpuinfo:hypervisor-flag"))
    } else {
        NotHere
    }
}

#[cfg(test)]
#[path = "virt_tests.rs"]
mod tests;
