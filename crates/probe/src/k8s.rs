//! Whether the machine is a Kubernetes node.

use crate::rooted::Root;

/// Kubernetes puts `KUBERNETES_SERVICE_HOST` into every pod's environment; a node itself
/// has kubelet's state directory and `/etc/kubernetes`; a pod's cgroup path names kubepods.
pub(crate) fn detect(root: Root<'_>) -> (bool, String) {
    for environ in ["/proc/1/environ", "/proc/self/environ"] {
        if root
            .environ_var(environ, "KUBERNETES_SERVICE_HOST")
            .is_some_and(|v| !v.is_empty())
        {
            return (true, format!("{environ}:KUBERNETES_SERVICE_HOST"));
        }
    }
    for dir in ["/var/lib/kubelet", "/etc/kubernetes"] {
        if root.exists(dir) {
            return (true, dir.into());
        }
    }
    let in_kubepods = root.read("/proc/1/cgroup").is_some_and(|cgroups| {
        cgroups
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .any(|path| path.split('/').any(|part| part.starts_with("kubepods")))
    });
    if in_kubepods {
        return (true, "/proc/1/cgroup:kubepods".into());
    }
    (false, "none-found".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Tree;

    fn run(name: &str, files: &[(&str, &[u8])]) -> (bool, String) {
        let tree = Tree::new(&format!("k8s-{name}"), files);
        detect(Root::new(tree.path()))
    }

    #[test]
    fn each_signal_alone() {
        assert_eq!(
            run(
                "env",
                &[("/proc/self/environ", b"KUBERNETES_SERVICE_HOST=10.96.0.1\0")]
            ),
            (true, "/proc/self/environ:KUBERNETES_SERVICE_HOST".into())
        );
        assert_eq!(
            run(
                "kubelet",
                &[(
                    "/var/lib/kubelet/config.yaml",
                    b"kind: KubeletConfiguration\n"
                )]
            ),
            (true, "/var/lib/kubelet".into())
        );
        assert_eq!(
            run(
                "etc",
                &[("/etc/kubernetes/kubelet.conf", b"apiVersion: v1\n")]
            ),
            (true, "/etc/kubernetes".into())
        );
        assert_eq!(
            run(
                "cgroup",
                &[(
                    "/proc/1/cgroup",
                    b"0::/kubepods.slice/kubepods-pod1.slice\n"
                )]
            ),
            (true, "/proc/1/cgroup:kubepods".into())
        );
    }

    #[test]
    fn empty_variable_and_plain_hosts_are_not_nodes() {
        assert_eq!(
            run(
                "empty-env",
                &[("/proc/1/environ", b"KUBERNETES_SERVICE_HOST=\0")]
            ),
            (false, "none-found".into())
        );
        assert_eq!(
            run("plain", &[("/proc/1/cgroup", b"0::/init.scope\n")]),
            (false, "none-found".into())
        );
    }
}
