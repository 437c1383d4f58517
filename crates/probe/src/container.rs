//! Which container manager, if any, runs this system.
//!
//! The probes run top to bottom and the first that recognises something decides, in the
//! order systemd-detect-virt uses: explicit markers left by the container manager come before
//! files that could have been copied into an image by accident (`/.dockerenv`), and cgroup
//! heuristics come last.

use crate::Fact;
use crate::rooted::Root;

/// Container names as systemd-detect-virt prints them; anything else is "container-other".
const KNOWN: &[&str] = &[
    "docker",
    "podman",
    "lxc",
    "lxc-libvirt",
    "systemd-nspawn",
    "rkt",
    "wsl",
    "proot",
    "pouch",
    "openvz",
];

/// A probe says what it found, with how, or `None` for "not here".
type Probe = fn(Root<'_>) -> Option<Fact>;

const PROBES: &[Probe] = &[
    openvz,
    wsl,
    proot,
    run_host_container_manager,
    run_systemd_container,
    pid1_environ,
    marker_files,
    cgroup_paths,
    cgroup_namespace,
];

pub(crate) fn detect(root: Root<'_>) -> Fact {
    PROBES
        .iter()
        .find_map(|probe| probe(root))
        .unwrap_or_else(|| Fact::new("none", "none-found"))
}

/// `/proc/vz` exists inside OpenVZ/Virtuozzo containers and on their host; `/proc/bc` only on the host.
fn openvz(root: Root<'_>) -> Option<Fact> {
    (root.exists("/proc/vz") && !root.exists("/proc/bc")).then(|| Fact::new("openvz", "/proc/vz"))
}

/// WSL kernels carry "Microsoft" (WSL1) or "WSL" (WSL2) in their release string.
fn wsl(root: Root<'_>) -> Option<Fact> {
    let release = root.first_line("/proc/sys/kernel/osrelease")?;
    (release.contains("Microsoft") || release.contains("WSL"))
        .then(|| Fact::new("wsl", "/proc/sys/kernel/osrelease"))
}

/// proot runs the program under ptrace and shares the PID namespace, so its tracer is visible.
fn proot(root: Root<'_>) -> Option<Fact> {
    let status = root.read("/proc/self/status")?;
    let tracer = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim();
    if tracer == "0" || tracer.parse::<u32>().is_err() {
        return None;
    }
    let comm = root.first_line(&format!("/proc/{tracer}/comm"))?;
    comm.starts_with("proot")
        .then(|| Fact::new("proot", "/proc/self/status:TracerPid"))
}

/// Written by container managers that follow the container interface (nspawn, recent podman).
fn run_host_container_manager(root: Root<'_>) -> Option<Fact> {
    named(
        root,
        "/run/host/container-manager",
        root.first_line("/run/host/container-manager")?,
    )
}

/// Written by systemd when it runs as PID 1 inside a container.
fn run_systemd_container(root: Root<'_>) -> Option<Fact> {
    named(
        root,
        "/run/systemd/container",
        root.first_line("/run/systemd/container")?,
    )
}

/// The `container=` variable that container managers hand to PID 1.
fn pid1_environ(root: Root<'_>) -> Option<Fact> {
    let value = root.environ_var("/proc/1/environ", "container")?;
    if value.trim().is_empty() {
        return None;
    }
    named(root, "/proc/1/environ", value.trim().to_string())
}

/// Files that podman and docker put into every container they start.
fn marker_files(root: Root<'_>) -> Option<Fact> {
    [("/run/.containerenv", "podman"), ("/.dockerenv", "docker")]
        .into_iter()
        .find(|(file, _)| root.exists(file))
        .map(|(file, name)| Fact::new(name, file))
}

/// PID 1's cgroup path names the runtime with cgroup v1 and with v2 without a cgroup namespace.
fn cgroup_paths(root: Root<'_>) -> Option<Fact> {
    let cgroups = root.read("/proc/1/cgroup")?;
    let name = cgroups.lines().find_map(runtime_in_cgroup_line)?;
    Some(Fact::new(name, "/proc/1/cgroup"))
}

fn runtime_in_cgroup_line(line: &str) -> Option<&'static str> {
    // hierarchy-id:controllers:path
    let path = line.splitn(3, ':').nth(2)?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let any = |pred: &dyn Fn(&str) -> bool| parts.iter().any(|p| pred(p));
    if any(&|p| p.starts_with("libpod")) {
        Some("podman")
    } else if any(&|p| p == "docker" || p.starts_with("docker-")) {
        Some("docker")
    } else if any(&|p| p.starts_with("crio-")) {
        Some("cri-o")
    } else if any(&|p| p.starts_with("cri-containerd")) {
        Some("containerd")
    } else if any(&|p| p == "lxc" || p.starts_with("lxc.payload")) {
        Some("lxc")
    } else if any(&|p| p.starts_with("kubepods")) {
        Some("container-other")
    } else {
        None
    }
}

/// With cgroup v2, only a nested cgroup has `cgroup.events`; seeing one at the mount point
/// means a cgroup namespace, which container managers create and hosts do not.
fn cgroup_namespace(root: Root<'_>) -> Option<Fact> {
    let unified = root.exists("/sys/fs/cgroup/cgroup.controllers");
    let nested = root.exists("/sys/fs/cgroup/cgroup.events")
        && (root.exists("/sys/fs/cgroup/cgroup.type")
            || !root.exists("/sys/kernel/cgroup/features"));
    (unified && nested).then(|| Fact::new("container-other", "cgroupns:/sys/fs/cgroup"))
}

/// Turns a container manager's own name into ours, as systemd does.
fn named(root: Root<'_>, source: &str, name: String) -> Option<Fact> {
    if name == "oci" {
        // Some images hard-code container=oci; the marker files may know better.
        return Some(match marker_files(root) {
            Some(found) => Fact::new(found.value, format!("{source}+{}", found.detection)),
            None => Fact::new("container-other", source),
        });
    }
    let value = KNOWN
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("container-other");
    Some(Fact::new(value, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Tree;

    fn tree(name: &str, files: &[(&str, &[u8])]) -> Tree {
        Tree::new(&format!("container-{name}"), files)
    }

    fn run(tree: &Tree) -> (String, String) {
        let fact = detect(Root::new(tree.path()));
        (fact.value, fact.detection)
    }

    #[test]
    fn nothing_is_none() {
        let dir = tree("nothing", &[]);
        assert_eq!(run(&dir), ("none".into(), "none-found".into()));
    }

    #[test]
    fn openvz_only_without_proc_bc() {
        let guest = tree("vz-guest", &[("/proc/vz/veinfo", b"")]);
        assert_eq!(run(&guest), ("openvz".into(), "/proc/vz".into()));
        let host = tree("vz-host", &[("/proc/vz/veinfo", b""), ("/proc/bc/0", b"")]);
        assert_eq!(run(&host).0, "none");
    }

    #[test]
    fn wsl1_release_string() {
        let dir = tree(
            "wsl1",
            &[("/proc/sys/kernel/osrelease", b"4.4.0-19041-Microsoft\n")],
        );
        assert_eq!(run(&dir).0, "wsl");
    }

    #[test]
    fn proot_tracer() {
        let dir = tree(
            "proot",
            &[
                (
                    "/proc/self/status",
                    b"Name:\tsh\nTracerPid:\t4242\nUid:\t0\n",
                ),
                ("/proc/4242/comm", b"proot\n"),
            ],
        );
        assert_eq!(
            run(&dir),
            ("proot".into(), "/proc/self/status:TracerPid".into())
        );
    }

    #[test]
    fn a_debugger_is_not_proot() {
        let dir = tree(
            "gdb",
            &[
                ("/proc/self/status", b"TracerPid:\t7\n"),
                ("/proc/7/comm", b"gdb\n"),
            ],
        );
        assert_eq!(run(&dir).0, "none");
    }

    #[test]
    fn containerenv_alone_is_podman() {
        let dir = tree(
            "containerenv",
            &[("/run/.containerenv", b"engine=\"podman-4.9.3\"\n")],
        );
        assert_eq!(run(&dir), ("podman".into(), "/run/.containerenv".into()));
    }

    #[test]
    fn oci_defers_to_marker_files() {
        let with_marker = tree(
            "oci-docker",
            &[
                ("/proc/1/environ", b"container=oci\0"),
                ("/.dockerenv", b""),
            ],
        );
        assert_eq!(
            run(&with_marker),
            ("docker".into(), "/proc/1/environ+/.dockerenv".into())
        );
        let bare = tree("oci-bare", &[("/proc/1/environ", b"container=oci\0")]);
        assert_eq!(
            run(&bare),
            ("container-other".into(), "/proc/1/environ".into())
        );
    }

    #[test]
    fn unknown_manager_names_are_container_other() {
        let dir = tree("unknown", &[("/run/systemd/container", b"my-own-thing\n")]);
        assert_eq!(run(&dir).0, "container-other");
    }

    #[test]
    fn manager_file_beats_dockerenv_in_image() {
        let dir = tree(
            "nspawn-with-dockerenv",
            &[
                ("/run/host/container-manager", b"systemd-nspawn\n"),
                ("/.dockerenv", b""),
            ],
        );
        assert_eq!(
            run(&dir),
            (
                "systemd-nspawn".into(),
                "/run/host/container-manager".into()
            )
        );
    }

    #[test]
    fn cgroup_lines_name_runtimes() {
        let cases = [
            ("12:memory:/docker/3f4e2b", Some("docker")),
            ("0::/system.slice/docker-3f4e.scope", Some("docker")),
            ("0::/system.slice/docker.service", None),
            ("0::/machine.slice/libpod-3f4e.scope", Some("podman")),
            ("0::/kubepods.slice/x/crio-3f4e.scope", Some("cri-o")),
            (
                "0::/kubepods.slice/x/cri-containerd-3f.scope",
                Some("containerd"),
            ),
            (
                "11:pids:/kubepods/besteffort/pod1/3f4e",
                Some("container-other"),
            ),
            ("0::/lxc.payload.web", Some("lxc")),
            ("5:cpu:/lxc/web", Some("lxc")),
            ("0::/init.scope", None),
            ("0::/", None),
            ("garbage", None),
        ];
        for (line, want) in cases {
            assert_eq!(runtime_in_cgroup_line(line), want, "{line}");
        }
    }

    #[test]
    fn cgroup_namespace_on_unified_hierarchy() {
        let nested = tree(
            "cgns",
            &[
                ("/sys/fs/cgroup/cgroup.controllers", b"cpu memory pids\n"),
                ("/sys/fs/cgroup/cgroup.events", b"populated 1\nfrozen 0\n"),
                ("/sys/fs/cgroup/cgroup.type", b"domain\n"),
                ("/sys/kernel/cgroup/features", b"nsdelegate\n"),
            ],
        );
        assert_eq!(
            run(&nested),
            ("container-other".into(), "cgroupns:/sys/fs/cgroup".into())
        );
        let host = tree(
            "cg-host",
            &[
                ("/sys/fs/cgroup/cgroup.controllers", b"cpu memory pids\n"),
                ("/sys/kernel/cgroup/features", b"nsdelegate\n"),
            ],
        );
        assert_eq!(run(&host).0, "none");
    }
}
