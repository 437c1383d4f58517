//! Missing, odd and hostile files: the probe degrades to "unknown" and never panics.

use anonstats_probe::{UNKNOWN, parse_os_release, probe};
use std::fs;
use std::path::{Path, PathBuf};

struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir =
            std::env::temp_dir().join(format!("anonstats-probe-it-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp root");
        Root(dir)
    }

    fn write(&self, path: &str, content: &[u8]) -> &Root {
        let full = self.0.join(path.trim_start_matches('/'));
        fs::create_dir_all(full.parent().expect("parent")).expect("create dirs");
        fs::write(full, content).expect("write fixture file");
        self
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn empty_root_is_all_unknown() {
    let root = Root::new("empty");
    let facts = probe(root.path());
    assert_eq!(facts.host_os.name, UNKNOWN);
    assert_eq!(facts.host_os.id, UNKNOWN);
    assert_eq!(facts.host_os.detection, "none-found");
    assert_eq!(facts.container_os, None);
    assert_eq!(facts.kernel.name, UNKNOWN);
    assert_eq!(facts.kernel.detection, "none-found");
    assert_eq!(
        (
            facts.virtualization.value.as_str(),
            facts.virtualization.detection.as_str()
        ),
        ("none", "none-found")
    );
    assert_eq!(facts.container.value, "none");
    assert!(!facts.is_k8s_node);
    assert_eq!(facts.cpu_count, None);
    assert_eq!(facts.total_ram.value, UNKNOWN);
    assert_eq!(facts.total_disk.value, UNKNOWN);
}

#[test]
fn nonexistent_root_does_not_panic() {
    let facts = probe(Path::new("/nonexistent/anonstats/root"));
    assert_eq!(facts.host_os.id, UNKNOWN);
    assert!(!facts.properties().is_empty());
}

#[test]
fn os_release_falls_back_to_usr_lib() {
    let root = Root::new("usr-lib");
    root.write("/usr/lib/os-release", b"NAME=\"openSUSE Tumbleweed\"\nID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\nVERSION_ID=\"20240201\"\n");
    let os = probe(root.path()).host_os;
    assert_eq!(os.name, "openSUSE Tumbleweed");
    assert_eq!(os.id_like, "opensuse suse");
    assert_eq!(os.version, UNKNOWN);
    assert_eq!(os.detection, "/usr/lib/os-release");
}

#[test]
fn os_release_falls_back_to_lsb_release() {
    let root = Root::new("lsb");
    root.write(
        "/etc/lsb-release",
        b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=14.04\nDISTRIB_CODENAME=trusty\nDISTRIB_DESCRIPTION=\"Ubuntu 14.04.6 LTS\"\n",
    );
    let os = probe(root.path()).host_os;
    assert_eq!(
        [os.name, os.id, os.version, os.version_id, os.detection],
        [
            "Ubuntu",
            "ubuntu",
            "14.04 (trusty)",
            "14.04",
            "/etc/lsb-release"
        ]
    );
}

#[test]
fn etc_wins_over_usr_lib() {
    let root = Root::new("etc-first");
    root.write("/etc/os-release", b"ID=local\n")
        .write("/usr/lib/os-release", b"ID=vendor\n");
    assert_eq!(probe(root.path()).host_os.id, "local");
}

#[test]
fn os_release_parsing_quotes_escapes_and_comments() {
    let text = "# written by the image build\n\
                NAME='Acme \"Linux\"'\n\
                ID=acme\n\
                \n\
                PRETTY_NAME=\"Acme \\\"Linux\\\" \\$HOME \\\\ 1.0\"\n\
                VERSION=1.0\\ LTS\n\
                BROKEN=\"open quote\n\
                  # indented comment\n";
    let vars = parse_os_release(text);
    let get = |k: &str| {
        vars.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("NAME"), Some("Acme \"Linux\""));
    assert_eq!(get("ID"), Some("acme"));
    assert_eq!(get("PRETTY_NAME"), Some("Acme \"Linux\" $HOME \\ 1.0"));
    assert_eq!(get("VERSION"), Some("1.0 LTS"));
    assert_eq!(get("BROKEN"), None);
    assert_eq!(vars.len(), 4);
}

#[test]
fn a_directory_where_a_file_belongs_is_skipped() {
    let root = Root::new("dir-as-file");
    fs::create_dir_all(root.path().join("etc/os-release")).expect("mkdir");
    root.write("/usr/lib/os-release", b"ID=fallback\n");
    fs::create_dir_all(root.path().join("proc/meminfo")).expect("mkdir");
    let facts = probe(root.path());
    assert_eq!(facts.host_os.id, "fallback");
    assert_eq!(facts.total_ram.value, UNKNOWN);
}

#[test]
fn a_fifo_is_not_read() {
    let root = Root::new("fifo");
    fs::create_dir_all(root.path().join("etc")).expect("mkdir");
    let fifo = root.path().join("etc/os-release");
    let made = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
        .map(|c| {
            // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
            unsafe { libc::mkfifo(c.as_ptr(), 0o600) == 0 }
        })
        .unwrap_or(false);
    if !made {
        return;
    }
    // Reading the FIFO would block forever; the probe must skip it instead.
    assert_eq!(probe(root.path()).host_os.detection, "none-found");
}

#[cfg(unix)]
#[test]
fn unreadable_files_degrade() {
    use std::os::unix::fs::PermissionsExt;
    let root = Root::new("unreadable");
    root.write("/etc/os-release", b"ID=secret\n");
    let file = root.path().join("etc/os-release");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).expect("chmod");
    // Root can read anything, so the value may or may not be known; it must not panic.
    let facts = probe(root.path());
    assert!(facts.host_os.id == "secret" || facts.host_os.id == UNKNOWN);
}

#[test]
fn garbage_content_everywhere() {
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let root = Root::new("garbage");
    for path in [
        "/etc/os-release",
        "/proc/sys/kernel/ostype",
        "/proc/sys/kernel/osrelease",
        "/proc/cpuinfo",
        "/proc/meminfo",
        "/proc/1/environ",
        "/proc/1/cgroup",
        "/proc/self/status",
        "/proc/sysinfo",
        "/proc/xen/capabilities",
        "/run/systemd/container",
        "/sys/class/dmi/id/sys_vendor",
        "/sys/class/dmi/id/product_name",
        "/sys/firmware/dmi/entries/0-0/raw",
        "/sys/devices/system/cpu/online",
        "/sys/devices/system/clocksource/clocksource0/available_clocksource",
        "/sys/hypervisor/type",
        "/sys/hypervisor/properties/features",
        "/sys/block/sda/size",
        "/proc/device-tree/hypervisor/compatible",
    ] {
        root.write(path, &noise);
    }
    let facts = probe(root.path());
    assert_eq!(facts.total_ram.value, UNKNOWN);
    assert_eq!(facts.total_disk.value, UNKNOWN);
    assert_eq!(facts.cpu_count, None);
    assert!(!facts.properties().is_empty());
}

#[test]
fn truncated_and_empty_files() {
    let root = Root::new("truncated");
    for path in [
        "/etc/os-release",
        "/proc/meminfo",
        "/proc/cpuinfo",
        "/proc/1/cgroup",
        "/sys/firmware/dmi/entries/0-0/raw",
        "/sys/class/dmi/id/sys_vendor",
        "/sys/devices/system/cpu/online",
    ] {
        root.write(path, b"");
    }
    root.write("/proc/sys/kernel/osrelease", b"6.1");
    let facts = probe(root.path());
    assert_eq!(facts.host_os.id, UNKNOWN);
    assert_eq!(facts.host_os.detection, "/etc/os-release");
    assert_eq!(facts.kernel.version, "6.1");
    assert_eq!(facts.virtualization.value, "none");
}
