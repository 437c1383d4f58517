//! Consent: whether statistics are on (all events, or crash reports only), local or off,
//! and which rule decided.
//!
//! Two directories are read: the machine's (the system dir, [`SYSTEM_DIR`]), whose rules
//! hold for every product on the machine, and the product's own configuration directory
//! (by default the same one). The rules are checked in this order and the first that
//! matches decides:
//! 1. `DISABLE_TELEMETRY` set to any non-empty value (even `0`) -> off;
//! 2. `DO_NOT_TRACK` set to any non-empty value -> off;
//! 3. `<system dir>/.opt-out-from-anonymous-statistics` exists -> off, for every product;
//! 4. `<config dir>/.opt-out-from-anonymous-statistics` exists -> off;
//! 5. `<config dir>/<product>/.opt-out-from-anonymous-statistics` exists -> off, for this
//!    product only (`anonstats opt-out --product NAME`; [`product_opt_out_path`]);
//! 6. `mode` in `<system dir>/anonstats.toml` is `off`, or the file cannot be read or
//!    understood -> off, for every product; `local` there makes every product at most local,
//!    `crashes` makes every product that would send everything send crash reports only;
//! 7. `mode` in `<config dir>/anonstats.toml` ([`config_file`](crate::config_file)) -> that
//!    mode; a file that cannot be read or understood -> off, since it may say off;
//! 8. the host's own configuration ([`Builder::mode`](crate::Builder::mode)) -> that mode;
//! 9. otherwise on.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Name of the opt-out file in the configuration directory.
pub const OPT_OUT_FILE: &str = ".opt-out-from-anonymous-statistics";

/// The machine's directory: its opt-out file and the `mode` of its `anonstats.toml` hold
/// for every product on the machine, whatever configuration directory a product uses.
pub const SYSTEM_DIR: &str = "/etc/anonstats";

/// The path of the opt-out file for a configuration directory.
///
/// ```
/// let p = anonstats_client::consent::opt_out_path(std::path::Path::new("/etc/x"));
/// assert_eq!(p, std::path::Path::new("/etc/x/.opt-out-from-anonymous-statistics"));
/// ```
pub fn opt_out_path(config_dir: &Path) -> PathBuf {
    config_dir.join(OPT_OUT_FILE)
}

/// The path of one product's opt-out file in a configuration directory: it stops that
/// product only.
///
/// ```
/// let p = anonstats_client::consent::product_opt_out_path(std::path::Path::new("/etc/x"), "my daemon");
/// assert_eq!(p, std::path::Path::new("/etc/x/my%20daemon/.opt-out-from-anonymous-statistics"));
/// ```
pub fn product_opt_out_path(config_dir: &Path, product: &str) -> PathBuf {
    config_dir
        .join(crate::product::dir_name(product))
        .join(OPT_OUT_FILE)
}

/// Where the rules are read for one product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The machine's directory ([`SYSTEM_DIR`] unless told otherwise).
    pub system_dir: PathBuf,
    /// The product's configuration directory (often the system dir itself).
    pub config_dir: PathBuf,
    /// The product, when known: its own opt-out file is then checked too.
    pub product: Option<String>,
}

impl Scope {
    /// A scope whose configuration directory is the machine's: the default layout.
    pub fn machine(system_dir: impl Into<PathBuf>) -> Scope {
        let system_dir = system_dir.into();
        Scope {
            config_dir: system_dir.clone(),
            system_dir,
            product: None,
        }
    }
}

/// What the client does with events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every event is sent to the endpoint (`on`, or `all`).
    On,
    /// Only crash reports ([`crate::event::is_crash_report`]: FATAL and
    /// INCOMPLETE_SHUTDOWN) are sent; no other event is sent. The run
    /// status is still kept, so that a run that ended without EXIT is still reported.
    Crashes,
    /// Events are appended to a local log in the state directory; nothing is sent.
    Local,
    /// Nothing is built, written or sent.
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::On => "on",
            Mode::Crashes => "crashes",
            Mode::Local => "local",
            Mode::Off => "off",
        })
    }
}

/// The text given was not one of `all` (or `on`), `crashes`, `local`, `off`.
#[derive(Debug, thiserror::Error)]
#[error("unknown statistics mode {0:?}: use all (or on), crashes, local or off")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" | "all" => Ok(Mode::On),
            "crashes" => Ok(Mode::Crashes),
            "local" => Ok(Mode::Local),
            "off" => Ok(Mode::Off),
            _ => Err(ParseModeError(s.to_string())),
        }
    }
}

/// The rule that decided the mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `DISABLE_TELEMETRY` is set to a non-empty value.
    DisableTelemetry,
    /// `DO_NOT_TRACK` is set to a non-empty value.
    DoNotTrack,
    /// An opt-out file exists (or could not be checked, which counts as existing): the
    /// machine's, the configuration directory's or the product's, as the path says.
    OptOutFile(PathBuf),
    /// The machine's `anonstats.toml` sets this mode for every product.
    MachinePolicy(PathBuf, Mode),
    /// `mode` in the configuration file chose the mode.
    ConfigFile(PathBuf, Mode),
    /// The configuration file could not be read or understood (the message says why).
    ConfigInvalid(String),
    /// The host's configuration chose the mode.
    Host(Mode),
    /// No rule matched.
    Default,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::DisableTelemetry => f.write_str("DISABLE_TELEMETRY is set"),
            Reason::DoNotTrack => f.write_str("DO_NOT_TRACK is set"),
            Reason::OptOutFile(p) => write!(f, "opt-out file {} exists", p.display()),
            Reason::ConfigFile(p, m) => write!(f, "{} says mode = \"{m}\"", p.display()),
            Reason::MachinePolicy(p, m) => write!(
                f,
                "{} says mode = \"{m}\" for every product on this machine",
                p.display()
            ),
            Reason::ConfigInvalid(why) => write!(f, "the configuration file is unusable: {why}"),
            Reason::Host(m) => write!(f, "the host configuration says {m}"),
            Reason::Default => f.write_str("no opt-out is set"),
        }
    }
}

/// A decision: the mode and the rule that made it.
///
/// Displays as `off (DISABLE_TELEMETRY is set)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    /// The mode in force.
    pub mode: Mode,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for Consent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.mode, self.reason)
    }
}

/// Decide the mode. `env` looks up an environment variable (inject it in tests).
///
/// ```
/// use anonstats_client::consent::{decide, Mode, Reason, Scope};
/// let env = |name: &str| (name == "DO_NOT_TRACK").then(|| "1".into());
/// let c = decide(&env, &Scope::machine("/nonexistent"), None);
/// assert_eq!((c.mode, c.reason), (Mode::Off, Reason::DoNotTrack));
/// ```
pub fn decide(
    env: &dyn Fn(&str) -> Option<OsString>,
    scope: &Scope,
    host: Option<Mode>,
) -> Consent {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    let off = |reason| Consent {
        mode: Mode::Off,
        reason,
    };
    if set("DISABLE_TELEMETRY") {
        return off(Reason::DisableTelemetry);
    }
    if set("DO_NOT_TRACK") {
        return off(Reason::DoNotTrack);
    }
    let mut files = vec![opt_out_path(&scope.system_dir)];
    if scope.config_dir != scope.system_dir {
        files.push(opt_out_path(&scope.config_dir));
    }
    if let Some(product) = &scope.product {
        files.push(product_opt_out_path(&scope.config_dir, product));
    }
    for file in files {
        // Any entry (even a dangling link), or one that cannot be checked, counts as
        // opted out.
        match std::fs::symlink_metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return off(Reason::OptOutFile(file)),
        }
    }
    // The machine's mode is a ceiling for every product: off stops them, local keeps them
    // local, crashes lets them send crash reports only, on leaves the choice to each.
    let mut ceiling = None;
    if scope.config_dir != scope.system_dir {
        match crate::config_file::load(&scope.system_dir) {
            Ok(config) => {
                let path = crate::config_file::path(&scope.system_dir);
                match config.mode {
                    Some(Mode::Off) => return off(Reason::MachinePolicy(path, Mode::Off)),
                    Some(m @ (Mode::Local | Mode::Crashes)) => {
                        ceiling = Some((m, Reason::MachinePolicy(path, m)))
                    }
                    _ => {}
                }
            }
            Err(e) => return off(Reason::ConfigInvalid(e.to_string())),
        }
    }
    let chosen = match crate::config_file::load(&scope.config_dir) {
        Ok(config) => match (config.mode, host) {
            (Some(mode), _) => Consent {
                mode,
                reason: Reason::ConfigFile(crate::config_file::path(&scope.config_dir), mode),
            },
            (None, Some(mode)) => Consent {
                mode,
                reason: Reason::Host(mode),
            },
            (None, None) => Consent {
                mode: Mode::On,
                reason: Reason::Default,
            },
        },
        Err(e) => return off(Reason::ConfigInvalid(e.to_string())),
    };
    match ceiling {
        // Nothing leaves under local; crash reports at most under crashes.
        Some((Mode::Local, reason)) if matches!(chosen.mode, Mode::On | Mode::Crashes) => Consent {
            mode: Mode::Local,
            reason,
        },
        Some((mode, reason)) if chosen.mode == Mode::On => Consent { mode, reason },
        _ => chosen,
    }
}

/// An environment lookup, as [`decide`] takes it.
pub(crate) type EnvFn = Arc<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// What a decision was made from, kept so that it can be made again while the program
/// runs: an opt-out made after the start (`anonstats opt-out`) stops what follows.
#[derive(Clone)]
pub(crate) struct Recheck {
    pub env: EnvFn,
    pub scope: Scope,
    pub host: Option<Mode>,
}

impl Recheck {
    /// True when the rules now say off (two environment variables and one `stat`).
    pub fn opted_out(&self) -> bool {
        self.decide().mode == Mode::Off
    }

    /// The decision now.
    pub fn decide(&self) -> Consent {
        decide(&*self.env, &self.scope, self.host)
    }
}

/// Look up the process environment; the default for [`decide`].
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn order_of_rules() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        let scope = Scope::machine(cfg);
        let d = |pairs: &[(&str, &str)], host| decide(&env_of(pairs), &scope, host);

        assert_eq!(d(&[], None).mode, Mode::On);
        assert_eq!(d(&[], None).reason, Reason::Default);
        assert_eq!(d(&[], Some(Mode::Local)).mode, Mode::Local);
        assert_eq!(d(&[], Some(Mode::Off)).reason, Reason::Host(Mode::Off));
        // Empty values do not count.
        assert_eq!(
            d(&[("DISABLE_TELEMETRY", ""), ("DO_NOT_TRACK", "")], None).mode,
            Mode::On
        );
        // Even "0" disables, as the reference script does.
        assert_eq!(
            d(&[("DISABLE_TELEMETRY", "0")], None).reason,
            Reason::DisableTelemetry
        );
        assert_eq!(
            d(&[("DO_NOT_TRACK", "1")], Some(Mode::On)).reason,
            Reason::DoNotTrack
        );
        // DISABLE_TELEMETRY wins over DO_NOT_TRACK.
        let both = d(&[("DO_NOT_TRACK", "1"), ("DISABLE_TELEMETRY", "1")], None);
        assert_eq!(both.reason, Reason::DisableTelemetry);

        std::fs::write(opt_out_path(cfg), b"").unwrap();
        let c = d(&[], Some(Mode::On));
        assert_eq!(c.reason, Reason::OptOutFile(opt_out_path(cfg)));
        assert_eq!(c.mode, Mode::Off);
        // Environment is checked before the file.
        assert_eq!(d(&[("DO_NOT_TRACK", "x")], None).reason, Reason::DoNotTrack);
    }

    #[test]
    fn the_config_files_mode_is_the_users_and_wins_over_the_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        let scope = Scope::machine(cfg);
        let d = |host| decide(&|_: &str| None, &scope, host);
        std::fs::write(crate::config_file::path(cfg), "mode = \"local\"\n").unwrap();
        let c = d(Some(Mode::On));
        assert_eq!(c.mode, Mode::Local);
        assert!(matches!(c.reason, Reason::ConfigFile(_, Mode::Local)));
        // A file that cannot be understood may have said off.
        std::fs::write(crate::config_file::path(cfg), "mode = \"of\"\n").unwrap();
        let c = d(Some(Mode::On));
        assert_eq!(c.mode, Mode::Off);
        assert!(c.to_string().contains("unknown statistics mode"), "{c}");
        // The opt-out file still comes first.
        std::fs::write(crate::config_file::path(cfg), "mode = \"on\"\n").unwrap();
        std::fs::write(opt_out_path(cfg), b"").unwrap();
        assert!(matches!(d(None).reason, Reason::OptOutFile(_)));
    }

    #[test]
    fn the_machines_directory_rules_every_product_and_a_products_file_one() {
        let dir = tempfile::tempdir().unwrap();
        let (sys, own) = (dir.path().join("sys"), dir.path().join("own"));
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&own).unwrap();
        let scope = |config: &Path, product: &str| Scope {
            system_dir: sys.clone(),
            config_dir: config.to_path_buf(),
            product: Some(product.into()),
        };
        let d = |s: &Scope, host| decide(&|_: &str| None, s, host);
        assert_eq!(d(&scope(&own, "a"), None).mode, Mode::On);
        // One product's opt-out file stops that product only.
        let a_off = product_opt_out_path(&sys, "a");
        std::fs::create_dir_all(a_off.parent().unwrap()).unwrap();
        std::fs::write(&a_off, b"").unwrap();
        assert_eq!(d(&scope(&sys, "a"), None).reason, Reason::OptOutFile(a_off));
        assert_eq!(d(&scope(&sys, "b"), None).mode, Mode::On);
        // The machine's mode is a ceiling, whatever the product's own file says.
        std::fs::write(crate::config_file::path(&own), "mode = \"on\"\n").unwrap();
        std::fs::write(crate::config_file::path(&sys), "mode = \"local\"\n").unwrap();
        let c = d(&scope(&own, "b"), Some(Mode::On));
        assert_eq!(c.mode, Mode::Local);
        assert!(
            matches!(c.reason, Reason::MachinePolicy(_, Mode::Local)),
            "{c}"
        );
        std::fs::write(crate::config_file::path(&sys), "mode = \"off\"\n").unwrap();
        assert_eq!(d(&scope(&own, "b"), None).mode, Mode::Off);
        std::fs::write(crate::config_file::path(&sys), "mode = \"of\"\n").unwrap();
        assert!(matches!(
            d(&scope(&own, "b"), None).reason,
            Reason::ConfigInvalid(_)
        ));
        std::fs::write(crate::config_file::path(&sys), "mode = \"on\"\n").unwrap();
        assert_eq!(d(&scope(&own, "b"), None).mode, Mode::On);
        // The machine's opt-out file stops every product.
        std::fs::write(opt_out_path(&sys), b"").unwrap();
        let c = d(&scope(&own, "b"), Some(Mode::On));
        assert_eq!(c.reason, Reason::OptOutFile(opt_out_path(&sys)));
    }

    #[test]
    fn display_and_parse() {
        let c = Consent {
            mode: Mode::Off,
            reason: Reason::DisableTelemetry,
        };
        assert_eq!(c.to_string(), "off (DISABLE_TELEMETRY is set)");
        assert_eq!("LOCAL".parse::<Mode>().unwrap(), Mode::Local);
        assert!("maybe".parse::<Mode>().is_err());
        // `all` is the level's name, `on` its older synonym.
        assert_eq!("all".parse::<Mode>().unwrap(), Mode::On);
        assert_eq!("on".parse::<Mode>().unwrap(), Mode::On);
        assert_eq!("crashes".parse::<Mode>().unwrap(), Mode::Crashes);
        assert_eq!(Mode::Crashes.to_string(), "crashes");
        let e = "crash".parse::<Mode>().unwrap_err().to_string();
        assert!(e.contains("all (or on), crashes, local or off"), "{e}");
    }

    #[test]
    fn crashes_is_a_level_the_opt_outs_still_win_over() {
        let dir = tempfile::tempdir().unwrap();
        let (sys, own) = (dir.path().join("sys"), dir.path().join("own"));
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&own).unwrap();
        let scope = Scope {
            system_dir: sys.clone(),
            config_dir: own.clone(),
            product: Some("p".into()),
        };
        let d = |pairs: &[(&str, &str)], host| decide(&env_of(pairs), &scope, host);
        assert_eq!(
            d(&[], Some(Mode::Crashes)).reason,
            Reason::Host(Mode::Crashes)
        );
        assert_eq!(
            d(&[], Some(Mode::Crashes)).to_string(),
            "crashes (the host configuration says crashes)"
        );
        assert_eq!(
            d(&[("DO_NOT_TRACK", "1")], Some(Mode::Crashes)).mode,
            Mode::Off
        );
        // The user's file says crashes: it wins over the host's all.
        std::fs::write(crate::config_file::path(&own), "mode = \"crashes\"\n").unwrap();
        let c = d(&[], Some(Mode::On));
        assert!(
            matches!(c.reason, Reason::ConfigFile(_, Mode::Crashes)),
            "{c}"
        );
        // The machine's crashes lowers all to crashes and leaves local and off alone.
        std::fs::write(crate::config_file::path(&own), "mode = \"all\"\n").unwrap();
        std::fs::write(crate::config_file::path(&sys), "mode = \"crashes\"\n").unwrap();
        let c = d(&[], None);
        assert_eq!(c.mode, Mode::Crashes);
        assert!(
            matches!(c.reason, Reason::MachinePolicy(_, Mode::Crashes)),
            "{c}"
        );
        std::fs::write(crate::config_file::path(&own), "mode = \"local\"\n").unwrap();
        assert_eq!(d(&[], None).mode, Mode::Local);
        // The machine's local keeps a product's crashes local too: nothing leaves.
        std::fs::write(crate::config_file::path(&own), "mode = \"crashes\"\n").unwrap();
        std::fs::write(crate::config_file::path(&sys), "mode = \"local\"\n").unwrap();
        assert_eq!(d(&[], None).mode, Mode::Local);
        std::fs::write(opt_out_path(&own), b"").unwrap();
        assert_eq!(d(&[], Some(Mode::Crashes)).mode, Mode::Off);
    }
}
