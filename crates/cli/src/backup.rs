//! `anonstats backup --to FILE`: a consistent copy of the embedded store, safe while
//! `serve` runs (it reads one snapshot and takes no lock). The copy is a SQLite database
//! that a restore puts in a data dir as `anonstats.db` (README, "Backup and restore").

use crate::export::progress_bar;
use anonstats_server::store::sqlite::backup::backup;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// Write the copy to this file; it appears only once it is complete.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// serve's TOML config file: its `data-dir` (and `store`) settings apply here too,
    /// under flags and environment variables.
    #[arg(long, env = "ANONSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database; it must hold a store (`serve` makes one).
    #[arg(long, env = "ANONSTATS_DATA_DIR", default_value = "./anonstats-data")]
    data_dir: PathBuf,
    /// The store `serve` uses; only the embedded one is copied by this command.
    #[arg(long, env = "ANONSTATS_STORE")]
    store: Option<String>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    if let Some(store) = args.store.as_deref().filter(|s| *s != "sqlite") {
        if store.starts_with("clickhouse://") {
            anyhow::bail!(
                "anonstats backup copies the embedded store only; back up a ClickHouse store with ClickHouse's own tools: ALTER TABLE ... FREEZE on every node, then copy the frozen parts (README, \"Backup and restore\")"
            );
        }
        anyhow::bail!("--store {store:?}: give `sqlite` or leave it out");
    }
    let bar = progress_bar(None, "bytes");
    let copied = backup(&args.data_dir, &args.to, args.force, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    println!(
        "backed up {} events ({:.1} MB) to {}",
        copied.events,
        copied.bytes as f64 / 1e6,
        args.to.display()
    );
    Ok(ExitCode::SUCCESS)
}
