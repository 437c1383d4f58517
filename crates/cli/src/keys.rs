//! `anonstats keys`: projects, write tokens, admin and viewer tokens, in the embedded
//! store or in ClickHouse (`--store clickhouse://...`). Safe while `serve` runs.

use crate::migrate::ClickHouseArgs;
use anonstats_server::store::clickhouse::ClickHouseStore;
use anonstats_server::store::sqlite::SqliteStore;
use anonstats_server::store::{KeyStore, PrivacyMode, Role};
use anonstats_wire::format_rfc3339_ms;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct KeysArgs {
    /// Directory of the embedded database.
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

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Create a project; prints its write token as the last line.
    CreateProject { name: String },
    /// Add another write token to a project; prints it as the last line.
    CreateWriteKey { project: String },
    /// Create an admin token; prints it as the last line (only its hash is stored).
    CreateAdmin,
    /// Create a viewer token: insights and the dashboard, no SQL, raw events, erasure or
    /// metrics. Prints it as the last line (only its hash is stored).
    CreateViewer,
    /// List projects, write tokens, admin and viewer tokens (those two by id and prefix).
    List,
    /// Revoke a write token, or an admin or viewer token (whole, by prefix, or by id).
    Revoke { token_or_id: String },
    /// Restrict a project to an allowlist of properties, or go back to the default denylist.
    Allowlist {
        project: String,
        /// Property to keep (repeat, or comma-separate).
        #[arg(
            long = "property",
            value_delimiter = ',',
            required_unless_present = "clear"
        )]
        properties: Vec<String>,
        /// Remove the allowlist: keep everything but the default denylist.
        #[arg(long, conflicts_with = "properties")]
        clear: bool,
    },
}

fn open(args: &KeysArgs) -> anyhow::Result<Box<dyn KeyStore>> {
    Ok(match args.store.as_deref() {
        None | Some("sqlite") => Box::new(
            SqliteStore::open(&args.data_dir)
                .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?,
        ),
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
            println!("created project {:?} (id {})", project.name, project.id);
            println!("{token}");
        }
        KeysCommand::CreateWriteKey { project } => {
            let token = store.create_write_key(&project)?;
            println!("{token}");
        }
        KeysCommand::CreateAdmin => {
            let token = store.create_secret(Role::Admin)?;
            println!("admin token (shown only now):");
            println!("{token}");
        }
        KeysCommand::CreateViewer => {
            let token = store.create_secret(Role::Viewer)?;
            println!("viewer token (shown only now; insights and the dashboard only):");
            println!("{token}");
        }
        KeysCommand::List => list(store)?,
        KeysCommand::Revoke { token_or_id } => println!("{}", store.revoke(&token_or_id)?),
        KeysCommand::Allowlist {
            project,
            properties,
            clear,
        } => {
            let mode = if clear {
                PrivacyMode::Denylist
            } else {
                PrivacyMode::Allowlist(properties)
            };
            store.set_privacy(&project, mode)?;
            println!("updated the privacy filter of {project:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(store: &dyn KeyStore) -> anyhow::Result<()> {
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
            "  {}  {:<24} {state}  created {}",
            k.token,
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
            let state = if k.revoked { "revoked" } else { "active" };
            println!(
                "  {:<4} {}…  {state}  created {}",
                k.id,
                k.prefix,
                format_rfc3339_ms(k.created_ms)
            );
        }
    }
    Ok(())
}
