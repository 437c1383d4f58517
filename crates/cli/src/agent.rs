//! Agent-side commands: send, show, status, opt-out, opt-in.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DirArgs {
    /// Configuration directory (holds the opt-out file).
    #[arg(long, env = "ANONSTATS_CONFIG_DIR", default_value = "/etc/anonstats")]
    pub config_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// The action, e.g. START, EXIT, FATAL.
    pub action: String,
    pub action_result: Option<String>,
    pub action_data: Option<String>,
}

pub fn send(_args: SendArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn show(_args: SendArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn status(_args: DirArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn opt_out(_args: DirArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn opt_in(_args: DirArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
