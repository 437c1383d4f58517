//! The agent's configuration file, `<config dir>/anonstats.toml`: what the person running
//! the software (or its installer) set, read by the library and the CLI alike, so that
//! `anonstats status`, `show` and `send` work on an installed system with no flags.
//! Keys are named like the CLI's flags; the host's own settings (builder calls, flags,
//! `ANONSTATS_*` variables) win over the file, except `mode`, which is the user's.
//!
//! ```toml
//! endpoint = "https://stats.example.org"
//! token = "aw_..."
//! ca-file = "/etc/mydaemon/stats-ca.pem"   # a private CA; default: the system's roots
//! product-name = "mydaemon"
//! product-version = "1.2.3"
//! release-channel = "stable"
//! install-type = "binpkg-deb"
//! mode = "all"                # all (or on), crashes, local or off
//! state-dir = "/var/lib/mydaemon/anonstats"
//! ```

use crate::consent::Mode;
use std::path::{Path, PathBuf};

/// Name of the configuration file in the configuration directory.
pub const CONFIG_FILE: &str = "anonstats.toml";

/// The configuration file's path for a configuration directory.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join(CONFIG_FILE)
}

/// What the file sets; every key is optional.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub release_channel: Option<String>,
    pub install_type: Option<String>,
    pub mode: Option<Mode>,
    pub state_dir: Option<PathBuf>,
}

/// The file could not be read or says something that is not a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {why}; fix or remove the file")]
pub struct ConfigError {
    pub path: PathBuf,
    pub why: String,
}

const KEYS: &[&str] = &[
    "endpoint",
    "token",
    "ca-file",
    "product-name",
    "product-version",
    "release-channel",
    "install-type",
    "mode",
    "state-dir",
];

/// Reads the file; an absent file sets nothing.
pub fn load(config_dir: &Path) -> Result<AgentConfig, ConfigError> {
    let path = path(config_dir);
    let fail = |why: String| ConfigError {
        path: path.clone(),
        why,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AgentConfig::default()),
        Err(e) => return Err(fail(format!("cannot be read: {e}"))),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(format!("is not valid TOML: {}", e.message())))?;
    let mut config = AgentConfig::default();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        if !KEYS.contains(&name.as_str()) {
            return Err(fail(format!(
                "unknown setting `{key}`; known settings: {}",
                KEYS.join(", ")
            )));
        }
        let Some(text) = value.as_str() else {
            return Err(fail(format!(
                "`{key}` must be a string, e.g. {name} = \"...\""
            )));
        };
        let text = Some(text.to_string());
        match name.as_str() {
            "endpoint" => config.endpoint = text,
            "token" => config.token = text,
            "ca-file" => config.ca_file = text.map(PathBuf::from),
            "product-name" => config.product_name = text,
            "product-version" => config.product_version = text,
            "release-channel" => config.release_channel = text,
            "install-type" => config.install_type = text,
            "state-dir" => config.state_dir = text.map(PathBuf::from),
            _ => {
                let mode = value
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| fail(format!("`mode`: {e}")))?;
                config.mode = Some(mode);
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_and_refuses_what_is_not_a_setting() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), AgentConfig::default());
        std::fs::write(
            path(dir.path()),
            "endpoint = \"http://c:9470\"\ntoken = \"aw_x\"\nproduct-name = \"d\"\nproduct_version = \"1\"\n\
             release-channel = \"stable\"\ninstall-type = \"tar\"\nmode = \"local\"\nstate-dir = \"/s\"\n\
             ca-file = \"/ca.pem\"\n",
        )
        .unwrap();
        let c = load(dir.path()).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://c:9470"));
        assert_eq!(c.product_version.as_deref(), Some("1"));
        assert_eq!(c.mode, Some(Mode::Local));
        assert_eq!(c.state_dir, Some(PathBuf::from("/s")));
        assert_eq!(c.ca_file, Some(PathBuf::from("/ca.pem")));
        for (text, why) in [
            ("mode = \"maybe\"", "unknown statistics mode"),
            ("endpont = \"x\"", "unknown setting `endpont`"),
            ("token = 3", "`token` must be a string"),
            ("endpoint = ", "is not valid TOML"),
        ] {
            std::fs::write(path(dir.path()), text).unwrap();
            let e = load(dir.path()).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("anonstats.toml"), "{e}");
        }
    }
}
