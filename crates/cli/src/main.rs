//! The `anonstats` binary: agent-side commands (send, show, status, opt-out, opt-in, log) and
//! collector commands (serve, keys, export, sql, erase, gen, migrate, backup), and its own
//! completions and man page.

/// The collector allocates for every property of every event it decodes; mimalloc
/// serves those small, short-lived allocations faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod backup;
mod config;
mod erase;
mod export;
// `gen` is a reserved word in Rust 2024.
#[path = "gen.rs"]
mod generate;
mod initial_tokens;
mod keys;
mod logging;
mod manual;
mod migrate;
mod serve;
mod sql;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "anonstats",
    version,
    about = "Self-hosted, privacy-first anonymous usage statistics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send one event (drop-in for the reference anonymous-statistics script).
    Send(agent::SendCmd),
    /// Print the exact JSON that `send` would send; sends nothing.
    Show(agent::SendArgs),
    /// Print whether statistics are on, local or off, and the rule that decided.
    Status(agent::ProductArgs),
    /// Opt out: create the opt-out file in the config directory (--product: for one
    /// product only), and delete what waited to be sent.
    OptOut(agent::ProductArgs),
    /// Opt back in: remove the opt-out file from the config directory.
    OptIn(agent::ProductArgs),
    /// Print the last events that left this machine: when, the exact JSON, the answer.
    Log(agent::ProductArgs),
    /// Run the collector.
    Serve(serve::ServeArgs),
    /// Manage projects, write tokens and admin tokens.
    Keys(keys::KeysArgs),
    /// Stream stored events as NDJSON, CSV or Parquet.
    Export(export::ExportArgs),
    /// Run one read-only SQL query on the stored events.
    Sql(sql::SqlArgs),
    /// Remove every event of one machine (and its share of the insights).
    Erase(erase::EraseArgs),
    /// Write realistic generated agent events into the store.
    Gen(generate::GenArgs),
    /// Copy an embedded store (events, projects, keys) into ClickHouse.
    Migrate(migrate::MigrateArgs),
    /// Copy the embedded store to a file, consistently, while `serve` runs.
    Backup(backup::BackupArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(manual::CompletionsArgs),
    /// Print the man page, anonstats(1).
    Man,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches).and_then(|cli| with_config_file(cli, &matches))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // A command whose reader went away (`anonstats keys list | head -1`) ends quietly, as
    // other Unix tools do, instead of panicking on the failed write. Not for serve, whose
    // sockets must not kill it.
    if !matches!(cli.command, Command::Serve(_)) {
        // SAFETY: setting a signal's disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // Agent commands stay free of logging set-up and async runtimes: they must be fast and
    // must touch nothing when statistics are off.
    let result = match cli.command {
        Command::Send(args) => agent::send(args),
        Command::Show(args) => agent::show(args),
        Command::Status(args) => agent::status(args),
        Command::OptOut(args) => agent::opt_out(args),
        Command::OptIn(args) => agent::opt_in(args),
        Command::Log(args) => agent::log(args),
        Command::Serve(args) => serve::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Export(args) => export::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Erase(args) => erase::run(args),
        Command::Gen(args) => generate::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Completions(args) => manual::completions(args),
        Command::Man => manual::man(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("anonstats: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Applies `--config FILE` (serve's, or a store command's) under the flags and
/// environment variables.
fn with_config_file(cli: Cli, matches: &clap::ArgMatches) -> Result<Cli, clap::Error> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(cli);
    };
    let Some(path) = config_path(sub) else {
        return Ok(cli);
    };
    match config::args_with_file(&path, name, sub) {
        Ok(argv) => Cli::try_parse_from(argv),
        Err(e) => {
            Err(Cli::command().error(clap::error::ErrorKind::ValueValidation, format!("{e:#}")))
        }
    }
}

/// The `--config` a command was given, at its level or a nested subcommand's.
fn config_path(matches: &clap::ArgMatches) -> Option<std::path::PathBuf> {
    matches
        .try_get_one::<std::path::PathBuf>("config")
        .ok()
        .flatten()
        .cloned()
        .or_else(|| matches.subcommand().and_then(|(_, sub)| config_path(sub)))
}
