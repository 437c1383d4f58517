//! Agent-side commands: send, show, status, opt-out, opt-in.
//!
//! These paths stay light: no logging set-up, no async runtime. When statistics are off,
//! `send` returns at once having read two environment variables and checked one file.

use anonstats_client::consent::{self, Consent, Mode};
use anonstats_client::{Client, DEFAULT_CONFIG_DIR, Outcome};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DirArgs {
    /// Configuration directory: the opt-out file and anonstats.toml, whose settings
    /// (named like these flags) apply where no flag or variable is given.
    #[arg(long, env = "ANONSTATS_CONFIG_DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// The host's own setting (on, local, off); applies only when no opt-out is set.
    #[arg(long, env = "ANONSTATS_MODE", value_name = "MODE")]
    pub mode: Option<Mode>,
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// The action: START, EXIT, FATAL, CLOUD_BUILD_FAIL, CLOUD_UNAVAILABLE,
    /// CLOUD_CONNECT_FAIL or a name of your own.
    pub action: String,
    /// The result (FATAL: PROCESS:THREAD; CLOUD_CONNECT_FAIL: the error code).
    pub action_result: Option<String>,
    /// More data (FATAL: LINE@FILE:FUNCTION/ERRNO).
    pub action_data: Option<String>,
    /// The collector's base URL; events go to ENDPOINT/batch/.
    #[arg(long, env = "ANONSTATS_ENDPOINT")]
    pub endpoint: Option<String>,
    /// The project's write token.
    #[arg(long, env = "ANONSTATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust only the CAs in this PEM file for an https endpoint (a private CA) instead
    /// of the system's root certificates; the certificate is always verified.
    #[arg(long, env = "ANONSTATS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub dirs: DirArgs,
    /// State directory: machine id, spool, run status, local log [default: state-dir in
    /// anonstats.toml, else /var/lib/anonstats].
    #[arg(long, env = "ANONSTATS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The product sending the event.
    #[arg(long, env = "ANONSTATS_PRODUCT_NAME")]
    pub product_name: Option<String>,
    /// The product's version.
    #[arg(long, env = "ANONSTATS_PRODUCT_VERSION")]
    pub product_version: Option<String>,
    /// Release channel, e.g. stable or nightly.
    #[arg(long, env = "ANONSTATS_RELEASE_CHANNEL")]
    pub release_channel: Option<String>,
    /// How the product was installed, e.g. binpkg-deb or docker.
    #[arg(long, env = "ANONSTATS_INSTALL_TYPE")]
    pub install_type: Option<String>,
    /// Total time for delivery, in seconds (connect, send and receive together).
    #[arg(long, default_value = "2", value_name = "SECONDS")]
    pub timeout: f64,
}

#[derive(clap::Args)]
pub struct SendCmd {
    #[command(flatten)]
    pub args: SendArgs,
    /// Deliver before returning and report the result: exit status 1, with the reason on
    /// stderr, when the spool could not be delivered (without it, `send` writes the event
    /// to the spool and a detached process delivers it).
    #[arg(long)]
    pub wait: bool,
}

fn client(args: &SendArgs) -> anyhow::Result<Client> {
    if !(args.timeout > 0.0 && args.timeout <= 60.0) {
        anyhow::bail!(
            "--timeout {} is out of range: give seconds between 0 and 60, e.g. 2",
            args.timeout
        );
    }
    let mut b = Client::builder()
        .config_dir(&args.dirs.config_dir)
        .timeout(Duration::from_secs_f64(args.timeout));
    if let Some(dir) = &args.state_dir {
        b = b.state_dir(dir);
    }
    if let Some(mode) = args.dirs.mode {
        b = b.mode(mode);
    }
    if let Some(name) = &args.product_name {
        b = b.product(name, args.product_version.as_deref().unwrap_or(""));
    }
    if let Some(e) = &args.endpoint {
        b = b.endpoint(e);
    }
    if let Some(t) = &args.token {
        b = b.token(t);
    }
    if let Some(f) = &args.ca_file {
        b = b.ca_file(f);
    }
    if let Some(c) = &args.release_channel {
        b = b.release_channel(c);
    }
    if let Some(i) = &args.install_type {
        b = b.install_type(i);
    }
    Ok(b.build()?)
}

/// `anonstats send ACTION [ACTION_RESULT [ACTION_DATA]]`: the event goes to the spool, and
/// the spool is delivered by a detached process (with `--wait`, by this one).
pub fn send(SendCmd { args, wait }: SendCmd) -> anyhow::Result<ExitCode> {
    let client = client(&args)?;
    let spooled = client.spool_action(
        &args.action,
        args.action_result.as_deref(),
        args.action_data.as_deref(),
    );
    let outcome = match spooled {
        Outcome::Queued if wait => client.deliver_spool(),
        Outcome::Queued => client.deliver_spool_detached(),
        other => other,
    };
    Ok(match outcome {
        Outcome::Off | Outcome::Logged(_) | Outcome::Delivered(_) | Outcome::Queued => {
            ExitCode::SUCCESS
        }
        // Without --wait the event is only promised to the spool, where it is.
        Outcome::Spooled(why) if !wait => {
            eprintln!("anonstats: not delivered yet: {why}");
            ExitCode::SUCCESS
        }
        Outcome::Spooled(why) | Outcome::Dropped(why) => {
            eprintln!("anonstats: not delivered: {why}");
            ExitCode::FAILURE
        }
    })
}

/// `anonstats show ...`: the exact JSON `send` would send.
pub fn show(args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args)?;
    let Some(body) = client.preview(
        &args.action,
        args.action_result.as_deref(),
        args.action_data.as_deref(),
    ) else {
        eprintln!("statistics are {}: nothing would be sent", client.consent());
        return Ok(ExitCode::SUCCESS);
    };
    if client.consent().mode == Mode::Local {
        eprintln!(
            "statistics are {}: the event would be appended to {} and not sent",
            client.consent(),
            anonstats_client::local_log::path(client.state_dir()).display()
        );
    }
    if anonstats_client::machine_id::load(client.state_dir()).is_none() {
        eprintln!(
            "note: no machine id exists yet in {}; `send` creates one, the distinct_id shown is an example",
            client.state_dir().display()
        );
    }
    let text = serde_json::to_string_pretty(&body).context("format the event as JSON")?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn decide(args: &DirArgs) -> Consent {
    consent::decide(&consent::process_env, &args.config_dir, args.mode)
}

/// `anonstats status`: `on`, `local` or `off` and the rule that decided.
pub fn status(args: DirArgs) -> anyhow::Result<ExitCode> {
    println!("{}", decide(&args));
    Ok(ExitCode::SUCCESS)
}

/// `anonstats opt-out`: create the opt-out file.
pub fn opt_out(args: DirArgs) -> anyhow::Result<ExitCode> {
    let path = consent::opt_out_path(&args.config_dir);
    std::fs::create_dir_all(&args.config_dir).with_context(|| {
        format!(
            "cannot create the configuration directory {}; run as a user who may write there, \
             or pass --config-dir",
            args.config_dir.display()
        )
    })?;
    std::fs::write(
        &path,
        "# While this file exists, no anonymous statistics are sent. Remove it (or run\n\
         # `anonstats opt-in`) to send them again.\n",
    )
    .with_context(|| {
        format!(
            "cannot create {}; run as a user who may write there, or pass --config-dir",
            path.display()
        )
    })?;
    println!("created {}", path.display());
    println!("{}", decide(&args));
    Ok(ExitCode::SUCCESS)
}

/// `anonstats opt-in`: remove the opt-out file.
pub fn opt_in(args: DirArgs) -> anyhow::Result<ExitCode> {
    let path = consent::opt_out_path(&args.config_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => println!("removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{} does not exist; nothing to remove", path.display())
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot remove {}; run as a user who may write there",
                    path.display()
                )
            });
        }
    }
    let now = decide(&args);
    println!("{now}");
    if now.mode == Mode::Off {
        eprintln!("note: statistics stay off because {}", now.reason);
    }
    Ok(ExitCode::SUCCESS)
}
