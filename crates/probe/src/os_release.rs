//! Operating system identification from os-release(5), with lsb-release as a last resort.

use crate::UNKNOWN;
use crate::rooted::Root;

/// What an os-release file says about one operating system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// `NAME`, e.g. "Debian GNU/Linux".
    pub name: String,
    /// `ID`, e.g. "debian".
    pub id: String,
    /// `ID_LIKE`, e.g. "rhel fedora".
    pub id_like: String,
    /// `VERSION`, e.g. "12 (bookworm)".
    pub version: String,
    /// `VERSION_ID`, e.g. "12".
    pub version_id: String,
    /// The file the values came from (as a path inside the system), or `none-found...`.
    pub detection: String,
}

impl OsInfo {
    /// Every field "unknown", with `detection` saying why.
    pub fn unknown(detection: impl Into<String>) -> Self {
        OsInfo {
            name: UNKNOWN.into(),
            id: UNKNOWN.into(),
            id_like: UNKNOWN.into(),
            version: UNKNOWN.into(),
            version_id: UNKNOWN.into(),
            detection: detection.into(),
        }
    }
}

/// Reads the operating system whose root filesystem is at `prefix` inside `root`
/// (`""` for the root itself, `"/host"` for a host filesystem mounted into a container).
///
/// Tries `etc/os-release`, then `usr/lib/os-release`, then `etc/lsb-release`.
pub(crate) fn detect(root: Root<'_>, prefix: &str) -> Option<OsInfo> {
    for file in ["/etc/os-release", "/usr/lib/os-release"] {
        let path = format!("{prefix}{file}");
        if let Some(text) = root.read(&path) {
            return Some(from_os_release(&parse(&text), path));
        }
    }
    let path = format!("{prefix}/etc/lsb-release");
    let text = root.read(&path)?;
    Some(from_lsb_release(&parse(&text), path))
}

fn from_os_release(vars: &[(String, String)], detection: String) -> OsInfo {
    OsInfo {
        name: field(vars, "NAME"),
        id: field(vars, "ID"),
        id_like: field(vars, "ID_LIKE"),
        version: field(vars, "VERSION"),
        version_id: field(vars, "VERSION_ID"),
        detection,
    }
}

fn from_lsb_release(vars: &[(String, String)], detection: String) -> OsInfo {
    let name = field(vars, "DISTRIB_ID");
    let release = field(vars, "DISTRIB_RELEASE");
    let version = match lookup(vars, "DISTRIB_CODENAME") {
        Some(code) if release != UNKNOWN => format!("{release} ({code})"),
        _ => release.clone(),
    };
    OsInfo {
        id: if name == UNKNOWN {
            name.clone()
        } else {
            name.to_lowercase()
        },
        name,
        id_like: UNKNOWN.into(),
        version,
        version_id: release,
        detection,
    }
}

fn lookup<'v>(vars: &'v [(String, String)], key: &str) -> Option<&'v str> {
    vars.iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn field(vars: &[(String, String)], key: &str) -> String {
    lookup(vars, key).unwrap_or(UNKNOWN).to_string()
}

/// Parses `KEY=value` lines the way os-release(5) specifies: a subset of shell syntax with
/// double quotes (backslash escapes `\" \\ \$ \``), single quotes (literal), unquoted values
/// (backslash escapes any character), `#` comments and blank lines. Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, raw) = line.split_once('=')?;
    let key = key.trim();
    let valid_key = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if !valid_key {
        return None;
    }
    Some((key.to_string(), unquote(raw.trim())?))
}

/// Undoes shell quoting; `None` when a quote is left open.
fn unquote(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    other => out.push(other),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        e @ ('"' | '\\' | '$' | '`') => out.push(e),
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    },
                    other => out.push(other),
                }
            },
            '\\' => {
                if let Some(e) = chars.next() {
                    out.push(e);
                }
            }
            // An unquoted space or '#' ends the value in shell; the rest is not part of it.
            c if c.is_whitespace() => break,
            other => out.push(other),
        }
    }
    Some(out)
}

/// The host's operating system as seen from inside a container: its root filesystem
/// mounted at `/host`, or the copy of its os-release that the container interface puts at
/// `/run/host/os-release` (systemd-nspawn and others).
pub(crate) fn detect_host(root: Root<'_>) -> Option<OsInfo> {
    detect(root, "/host").or_else(|| {
        let path = "/run/host/os-release";
        let text = root.read(path)?;
        Some(from_os_release(&parse(&text), path.into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, key: &str) -> Option<String> {
        lookup(&parse(text), key).map(str::to_string)
    }

    #[test]
    fn plain_and_quoted_values() {
        let text = "NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION='12 (bookworm)'\n";
        assert_eq!(get(text, "NAME").as_deref(), Some("Debian GNU/Linux"));
        assert_eq!(get(text, "ID").as_deref(), Some("debian"));
        assert_eq!(get(text, "VERSION").as_deref(), Some("12 (bookworm)"));
    }

    #[test]
    fn escapes_inside_double_quotes() {
        let text = r#"NAME="A \"quoted\" \$name with \\ and \` and \n""#;
        assert_eq!(
            get(text, "NAME").as_deref(),
            Some(r#"A "quoted" $name with \ and ` and \n"#)
        );
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(get(r"X='a\b $c'", "X").as_deref(), Some(r"a\b $c"));
    }

    #[test]
    fn unquoted_backslash_escapes() {
        assert_eq!(get(r"X=a\ b", "X").as_deref(), Some("a b"));
        assert_eq!(get("X=abc def", "X").as_deref(), Some("abc"));
    }

    #[test]
    fn comments_blank_and_malformed_lines_are_skipped() {
        let text =
            "# comment\n\n   \nNOT A LINE\n=x\n1X=y\nBAD KEY=z\nOPEN=\"never closed\nID=arch\n";
        let vars = parse(text);
        assert_eq!(vars, vec![("ID".to_string(), "arch".to_string())]);
    }

    #[test]
    fn later_assignments_win_and_empty_counts_as_missing() {
        let vars = parse("ID=one\nID=two\nVERSION=\n");
        assert_eq!(field(&vars, "ID"), "two");
        assert_eq!(field(&vars, "VERSION"), UNKNOWN);
    }

    #[test]
    fn crlf_and_surrounding_space() {
        assert_eq!(get("ID=alpine\r\n", "ID").as_deref(), Some("alpine"));
        assert_eq!(get("  ID = alpine ", "ID").as_deref(), Some("alpine"));
    }

    #[test]
    fn lsb_release_maps_onto_os_fields() {
        let vars = parse(
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=14.04\nDISTRIB_CODENAME=trusty\n\
             DISTRIB_DESCRIPTION=\"Ubuntu 14.04.6 LTS\"\n",
        );
        let os = from_lsb_release(&vars, "/etc/lsb-release".into());
        assert_eq!(os.name, "Ubuntu");
        assert_eq!(os.id, "ubuntu");
        assert_eq!(os.id_like, UNKNOWN);
        assert_eq!(os.version, "14.04 (trusty)");
        assert_eq!(os.version_id, "14.04");
    }

    #[test]
    fn empty_lsb_release_is_unknown() {
        let os = from_lsb_release(&[], "/etc/lsb-release".into());
        assert_eq!(os, OsInfo::unknown("/etc/lsb-release"));
    }
}
