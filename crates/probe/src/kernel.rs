//! Kernel name, release and machine architecture: what `uname -s -r -m` prints.

use crate::UNKNOWN;
use crate::rooted::Root;

/// The running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// e.g. "Linux".
    pub name: String,
    /// The release, e.g. "6.1.0-18-amd64".
    pub version: String,
    /// The machine hardware name, e.g. "x86_64", "aarch64".
    pub architecture: String,
    /// `uname` when the system call answered, `/proc/sys/kernel` when the files did.
    pub detection: String,
}

/// Uses `uname(2)` for the live system and the `/proc/sys/kernel` files for any other root,
/// so that a fixture tree never sees the test machine's kernel.
pub(crate) fn detect(root: Root<'_>) -> Kernel {
    if root.is_live()
        && let Some(kernel) = from_uname()
    {
        return kernel;
    }
    from_proc(root)
}

fn from_proc(root: Root<'_>) -> Kernel {
    let read = |name: &str| root.first_line(&format!("/proc/sys/kernel/{name}"));
    let name = read("ostype");
    let version = read("osrelease");
    let architecture = read("arch");
    let detection = if name.is_some() || version.is_some() || architecture.is_some() {
        "/proc/sys/kernel"
    } else {
        "none-found"
    };
    Kernel {
        name: name.unwrap_or_else(|| UNKNOWN.into()),
        version: version.unwrap_or_else(|| UNKNOWN.into()),
        architecture: architecture.unwrap_or_else(|| UNKNOWN.into()),
        detection: detection.into(),
    }
}

fn from_uname() -> Option<Kernel> {
    // SAFETY: `utsname` is plain old data, so all-zero bytes are a valid value; `uname`
    // only writes into the struct we pass and reports failure through its return value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    Some(Kernel {
        name: field(&uts.sysname),
        version: field(&uts.release),
        architecture: field(&uts.machine),
        detection: "uname".into(),
    })
}

/// A NUL-terminated `utsname` field as text; bounded by the array even without a NUL.
fn field(raw: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    if text.is_empty() {
        UNKNOWN.into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn uname_answers_on_the_live_system() {
        let kernel = detect(Root::new(Path::new("/")));
        assert_eq!(kernel.detection, "uname");
        assert_eq!(kernel.name, "Linux");
        assert_ne!(kernel.architecture, UNKNOWN);
    }

    #[test]
    fn missing_proc_is_unknown() {
        let kernel = detect(Root::new(Path::new("/nonexistent-anonstats-root")));
        assert_eq!(kernel.name, UNKNOWN);
        assert_eq!(kernel.version, UNKNOWN);
        assert_eq!(kernel.architecture, UNKNOWN);
        assert_eq!(kernel.detection, "none-found");
    }

    #[test]
    fn utsname_fields_stop_at_nul_or_array_end() {
        let raw: Vec<libc::c_char> = b"Linux\0garbage"
            .iter()
            .map(|b| *b as libc::c_char)
            .collect();
        assert_eq!(field(&raw), "Linux");
        let unterminated: Vec<libc::c_char> =
            b"x86_64".iter().map(|b| *b as libc::c_char).collect();
        assert_eq!(field(&unterminated), "x86_64");
        assert_eq!(field(&[0]), UNKNOWN);
    }
}
