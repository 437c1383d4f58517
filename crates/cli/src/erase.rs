//! `anonstats erase`: remove every event of one machine and its share of the rollups.
//! Safe while `serve` runs (one short write transaction).

use crate::export::{open_existing, project_id};
use anonstats_server::insights::InsightStore;
use anonstats_server::store::KeyStore;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EraseArgs {
    /// The machine's id: the `distinct_id` of its events.
    #[arg(long)]
    machine: String,
    /// serve's TOML config file: its `data-dir` (and `store`) settings apply here too,
    /// under flags and environment variables.
    #[arg(long, env = "ANONSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database; it must hold a store (`serve` makes one).
    #[arg(long, env = "ANONSTATS_DATA_DIR", default_value = "./anonstats-data")]
    data_dir: PathBuf,
    /// Only this project's events (default: every project).
    #[arg(long)]
    project: Option<String>,
}

pub fn run(args: EraseArgs) -> anyhow::Result<ExitCode> {
    if args.machine.trim().is_empty() {
        anyhow::bail!("--machine is empty: give the distinct_id whose events to remove");
    }
    let store = open_existing(&args.data_dir)?;
    let projects: Vec<(i64, String)> = match &args.project {
        Some(name) => vec![(project_id(&store, name)?, name.clone())],
        None => store
            .projects()?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect(),
    };
    let mut total = 0;
    for (id, name) in &projects {
        let n = store
            .erase_machine(*id, &args.machine)
            .with_context(|| format!("cannot erase the machine's events in project {name:?}"))?;
        if n > 0 {
            println!("project {name:?}: removed {n} events");
        }
        total += n;
    }
    println!(
        "removed {total} events of machine {:?}{}",
        args.machine,
        if total == 0 {
            " (none were stored; check the id with `anonstats sql \"SELECT DISTINCT distinct_id FROM events\"`)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
