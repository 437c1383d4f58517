//! `anonstats keys`: projects, write tokens, admin and viewer tokens, in the embedded
//! store or in ClickHouse (`--store clickhouse://...`). Safe while `serve` runs. Every
//! token is shown once, when it is made: the store keeps only its hash and prefix.

use crate::migrate::ClickHouseArgs;
use anonstats_server::store::clickhouse::ClickHouseStore;
use anonstats_server::store::{KeyStore, LastAdmin, NewSecret, PrivacyMode, Project, Role};
use anonstats_wire::format_rfc3339_ms;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct KeysArgs {
    /// serve's TOML config file: its `data-dir`, `store` and `clickhouse-*` settings
    /// apply here too, under flags and environment variables.
    #[arg(long, env = "ANONSTATS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database; it must hold a store (`serve` makes one).
    #[arg(
        long,
        env = "ANONSTATS_DATA_DIR",
        default_value = "./anonstats-data",
        global = true
    )]
    data_dir: PathBuf,
    /// The store the collectors run on: the embedded one in --data-dir (default, or
    /// `sqlite`), or `clickhouse://HOST:PORT/DATABASE`, as `serve --store` takes it.
    #[arg(long, env = "ANONSTATS_STORE", global = true)]
    store: Option<String>,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Args)]
struct SecretArgs {
    /// What the token is for, shown by `keys list` (e.g. "grafana", "alice").
    #[arg(long, default_value = "")]
    name: String,
    /// When it stops working: a duration (`30d`, `12h`, `2w`), a date (`2027-01-31`,
    /// its midnight UTC) or an RFC 3339 time. Default: never.
    #[arg(long, value_name = "DURATION|DATE")]
    expires: Option<String>,
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Create a project; prints its write token as the last line (shown only now).
    CreateProject { name: String },
    /// Add another write token to a project; prints it as the last line (shown only now).
    CreateWriteKey { project: String },
    /// Create an admin token; prints it as the last line (only its hash is stored).
    CreateAdmin(SecretArgs),
    /// Create a viewer token: insights and the dashboard, no SQL, raw events, erasure or
    /// metrics. Prints it as the last line (only its hash is stored).
    CreateViewer(SecretArgs),
    /// List projects and their allowlists, write, admin and viewer tokens (by prefix).
    List,
    /// Revoke a write token (whole or by its listed prefix), or an admin or viewer token
    /// (whole, by prefix, or by id). The last admin token that works is kept unless
    /// --force.
    Revoke {
        token_or_id: String,
        /// Revoke it even when it is the last admin token that works.
        #[arg(long)]
        force: bool,
    },
    /// The properties a project keeps: `allowlist add|remove|show|clear PROJECT`.
    Allowlist(AllowlistArgs),
}

/// `keys allowlist add|remove|show|clear PROJECT [NAMES]`; the older form `keys
/// allowlist PROJECT --property A,B` (replace the whole list) or `--clear` still works.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct AllowlistArgs {
    #[command(subcommand)]
    action: Option<AllowlistAction>,
    /// (deprecated form) the project whose list --property replaces.
    #[arg(hide = true)]
    project: Option<String>,
    /// (deprecated form) the whole list (repeat, or comma-separate).
    #[arg(long = "property", value_delimiter = ',', hide = true)]
    properties: Vec<String>,
    /// (deprecated form) remove the allowlist.
    #[arg(long, conflicts_with = "properties", hide = true)]
    clear: bool,
}

#[derive(clap::Subcommand)]
enum AllowlistAction {
    /// Keep these properties too (starts an allowlist when the project has none: then
    /// only these are kept). Warns about names no stored event has.
    Add {
        project: String,
        /// Property names (space- or comma-separated).
        #[arg(required = true, value_delimiter = ',')]
        names: Vec<String>,
    },
    /// Stop keeping these properties.
    Remove {
        project: String,
        #[arg(required = true, value_delimiter = ',')]
        names: Vec<String>,
    },
    /// Print the project's allowlist, marking names no stored event has.
    Show { project: String },
    /// Remove the allowlist: keep every property but the default denylist.
    Clear { project: String },
}

fn open(args: &KeysArgs) -> anyhow::Result<Box<dyn KeyStore>> {
    Ok(match args.store.as_deref() {
        None | Some("sqlite") => Box::new(crate::export::open_existing(&args.data_dir)?),
        Some(url) => Box::new(
            ClickHouseStore::open(args.clickhouse.config(url))
                .with_context(|| format!("cannot open the ClickHouse store at {url}"))?,
        ),
    })
}

pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let store = open(&args)?;
    let store = store.as_ref();
    match args.command {
        KeysCommand::CreateProject { name } => {
            let (project, token) = store.create_project(&name)?;
            println!(
                "created project {:?} (id {}); its write token (shown only now):",
                project.name, project.id
            );
            println!("{token}");
        }
        KeysCommand::CreateWriteKey { project } => {
            let token = store.create_write_key(&project)?;
            println!("{token}");
        }
        KeysCommand::CreateAdmin(a) => {
            let token = store.create_secret(Role::Admin, &new_secret(&a)?)?;
            println!("admin token (shown only now):");
            println!("{token}");
        }
        KeysCommand::CreateViewer(a) => {
            let token = store.create_secret(Role::Viewer, &new_secret(&a)?)?;
            println!("viewer token (shown only now; insights and the dashboard only):");
            println!("{token}");
        }
        KeysCommand::List => list(store)?,
        KeysCommand::Revoke { token_or_id, force } => {
            let last = if force {
                LastAdmin::MayRevoke
            } else {
                LastAdmin::Keep
            };
            println!("{}", store.revoke(&token_or_id, last)?);
        }
        KeysCommand::Allowlist(a) => allowlist(store, a)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn new_secret(a: &SecretArgs) -> anyhow::Result<NewSecret> {
    let now = now_ms();
    let expires_ms = match &a.expires {
        None => None,
        Some(text) => {
            let at = expiry(text, now)?;
            if at <= now {
                bail!(
                    "--expires {text:?} is in the past; give a later time or a duration such as 30d"
                );
            }
            Some(at)
        }
    };
    Ok(NewSecret {
        name: a.name.trim().to_string(),
        expires_ms,
    })
}

/// `30d`, `12h`, `2w`, a date or an RFC 3339 time, as Unix milliseconds.
fn expiry(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let t = text.trim();
    let unit = |u: char| match u {
        'h' => Some(3_600_000i64),
        'd' => Some(86_400_000),
        'w' => Some(7 * 86_400_000),
        _ => None,
    };
    if let Some(last) = t.chars().last()
        && let Some(ms) = unit(last)
        && let Ok(n) = t[..t.len() - 1].parse::<i64>()
    {
        return Ok(now_ms.saturating_add(n.saturating_mul(ms)));
    }
    crate::export::parse_time("expires", t).map_err(|_| {
        anyhow::anyhow!(
            "--expires {t:?} is neither a duration (30d, 12h, 2w) nor a date (2027-01-31) or RFC 3339 time"
        )
    })
}

fn project_named(store: &dyn KeyStore, name: &str) -> anyhow::Result<Project> {
    match store.projects()?.into_iter().find(|p| p.name == name) {
        Some(p) => Ok(p),
        None => bail!("no project named {name:?}; `anonstats keys list` shows them"),
    }
}

fn allowlist(store: &dyn KeyStore, a: AllowlistArgs) -> anyhow::Result<()> {
    let action = match a.action {
        Some(action) => action,
        None => {
            let Some(project) = a.project else {
                bail!(
                    "say what to do: `anonstats keys allowlist add|remove|show|clear PROJECT [NAMES]`"
                );
            };
            if a.clear {
                eprintln!(
                    "warning: `keys allowlist PROJECT --clear` is deprecated; use `keys allowlist clear {project}`"
                );
                AllowlistAction::Clear { project }
            } else if a.properties.is_empty() {
                bail!("give the names to keep: `anonstats keys allowlist add {project} NAME...`");
            } else {
                eprintln!(
                    "warning: `keys allowlist PROJECT --property ...` replaces the whole list and \
                     is deprecated; use `keys allowlist add|remove|show {project}`"
                );
                let p = project_named(store, &project)?;
                let names = clean(&a.properties);
                warn_unseen(store, &p, &names)?;
                store.set_privacy(&p.name, PrivacyMode::Allowlist(names))?;
                return show(store, &p.name);
            }
        }
    };
    match action {
        AllowlistAction::Add { project, names } => {
            let p = project_named(store, &project)?;
            let names = clean(&names);
            warn_unseen(store, &p, &names)?;
            let mut list = match p.privacy {
                PrivacyMode::Allowlist(list) => list,
                PrivacyMode::Denylist => {
                    eprintln!(
                        "note: project {:?} had no allowlist; from now on its events keep only the listed properties",
                        p.name
                    );
                    Vec::new()
                }
            };
            for n in names {
                if !list.contains(&n) {
                    list.push(n);
                }
            }
            store.set_privacy(&p.name, PrivacyMode::Allowlist(list))?;
            show(store, &p.name)
        }
        AllowlistAction::Remove { project, names } => {
            let p = project_named(store, &project)?;
            let PrivacyMode::Allowlist(mut list) = p.privacy else {
                bail!(
                    "project {:?} has no allowlist (it keeps every property but the default denylist); nothing to remove",
                    p.name
                );
            };
            for n in clean(&names) {
                match list.iter().position(|x| *x == n) {
                    Some(i) => {
                        list.remove(i);
                    }
                    None => eprintln!("warning: {n:?} is not in the allowlist of {:?}", p.name),
                }
            }
            if list.is_empty() {
                eprintln!(
                    "warning: the allowlist of {:?} is now empty: its events keep no properties \
                     (`anonstats keys allowlist clear {}` keeps all but the denylist)",
                    p.name, p.name
                );
            }
            store.set_privacy(&p.name, PrivacyMode::Allowlist(list))?;
            show(store, &p.name)
        }
        AllowlistAction::Show { project } => show(store, &project),
        AllowlistAction::Clear { project } => {
            store.set_privacy(&project, PrivacyMode::Denylist)?;
            show(store, &project)
        }
    }
}

fn clean(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Warns about each name that no stored event of the project has: most often a typo,
/// which would make every later event keep nothing of what was meant.
fn warn_unseen(store: &dyn KeyStore, p: &Project, names: &[String]) -> anyhow::Result<()> {
    let seen = store.property_names(p.id)?;
    for n in names.iter().filter(|n| !seen.contains(n)) {
        eprintln!(
            "warning: no stored event of project {:?} has a property {n:?}; check its spelling \
             (events keep only the allowlisted names that they carry)",
            p.name
        );
    }
    Ok(())
}

fn show(store: &dyn KeyStore, project: &str) -> anyhow::Result<()> {
    let p = project_named(store, project)?;
    match &p.privacy {
        PrivacyMode::Denylist => println!(
            "project {:?}: no allowlist; events keep every property but the default denylist",
            p.name
        ),
        PrivacyMode::Allowlist(list) => {
            println!(
                "project {:?}: allowlist of {} properties; events keep only these:",
                p.name,
                list.len()
            );
            let seen = store.property_names(p.id)?;
            for n in list {
                let mark = if seen.contains(n) {
                    ""
                } else {
                    "  (no stored event has it)"
                };
                println!("  {n}{mark}");
            }
        }
    }
    Ok(())
}

fn list(store: &dyn KeyStore) -> anyhow::Result<()> {
    let now = now_ms();
    println!("PROJECTS");
    for p in store.projects()? {
        let privacy = match &p.privacy {
            PrivacyMode::Denylist => "denylist".to_string(),
            PrivacyMode::Allowlist(names) => format!("allowlist: {}", names.join(",")),
        };
        println!(
            "  {:<4} {:<24} created {}  {privacy}",
            p.id,
            p.name,
            format_rfc3339_ms(p.created_ms)
        );
    }
    println!("WRITE TOKENS");
    for k in store.write_keys()? {
        let state = if k.revoked { "revoked" } else { "active" };
        println!(
            "  {}…  {:<24} {state}  created {}",
            k.prefix,
            k.project.name,
            format_rfc3339_ms(k.created_ms)
        );
    }
    for (heading, role) in [
        ("ADMIN TOKENS", Role::Admin),
        ("VIEWER TOKENS", Role::Viewer),
    ] {
        println!("{heading}");
        for k in store.secret_keys()?.into_iter().filter(|k| k.role == role) {
            let state = if k.revoked {
                "revoked"
            } else if k.expired_at(now) {
                "expired"
            } else {
                "active"
            };
            let name = if k.name.is_empty() { "-" } else { &k.name };
            let expires = k
                .expires_ms
                .map_or_else(|| "never".to_string(), format_rfc3339_ms);
            println!(
                "  {:<4} {}…  {name:<16} {state:<7}  created {}  expires {expires}",
                k.id,
                k.prefix,
                format_rfc3339_ms(k.created_ms)
            );
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
