//! Agent-side commands: send, show, status, opt-out, opt-in, log.
//!
//! These paths stay light: no logging set-up, no async runtime. When statistics are off,
//! `send` returns at once having read two environment variables and checked one file.

use anonstats_client::consent::{self, Consent, Mode, Scope};
use anonstats_client::{
    Client, DEFAULT_CONFIG_DIR, DEFAULT_STATE_DIR, Outcome, local_log, product,
};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DirArgs {
    /// Configuration directory: the opt-out file and anonstats.toml, whose settings
    /// (named like these flags) apply where no flag or variable is given.
    #[arg(long, env = "ANONSTATS_CONFIG_DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// The machine's directory: its opt-out file and the mode in its anonstats.toml hold
    /// for every product on the machine, whatever --config-dir says.
    #[arg(long, env = "ANONSTATS_SYSTEM_DIR", default_value = consent::SYSTEM_DIR)]
    pub system_dir: PathBuf,
    /// The host's own setting: all (or on: every event is sent), crashes (only crash
    /// reports, FATAL and INCOMPLETE_SHUTDOWN, are sent), local or off; applies only when
    /// no opt-out is set.
    #[arg(long, env = "ANONSTATS_MODE", value_name = "MODE")]
    pub mode: Option<Mode>,
}

#[derive(clap::Args)]
pub struct ProductArgs {
    #[command(flatten)]
    pub dirs: DirArgs,
    /// One product only (status, opt-out, opt-in: its own opt-out file,
    /// CONFIG_DIR/NAME/.opt-out-from-anonymous-statistics; log: its receipts)
    /// [default for status: product-name in anonstats.toml].
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// State root: each product's state is in STATE_DIR/NAME/ [default: state-dir in
    /// anonstats.toml, else /var/lib/anonstats].
    #[arg(long, env = "ANONSTATS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
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
    /// State root: each product's machine id, spool, run status, local log and receipts
    /// are in STATE_DIR/PRODUCT_NAME/ [default: state-dir in anonstats.toml, else
    /// /var/lib/anonstats].
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

/// A client for `send`, or for `show` (`preview`: no endpoint or token needed).
fn client(args: &SendArgs, preview: bool) -> anyhow::Result<Client> {
    if !(args.timeout > 0.0 && args.timeout <= 60.0) {
        anyhow::bail!(
            "--timeout {} is out of range: give seconds between 0 and 60, e.g. 2",
            args.timeout
        );
    }
    let mut b = Client::builder()
        .config_dir(&args.dirs.config_dir)
        .system_dir(&args.dirs.system_dir)
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
    if preview {
        b = b.preview_only();
    }
    b.build()
        .map_err(|e| in_cli_terms(e, &args.dirs.config_dir))
}

/// The library's errors that name its calls, said with this command's flags, variables
/// and configuration file instead.
fn in_cli_terms(e: anonstats_client::Error, config_dir: &std::path::Path) -> anyhow::Error {
    use anonstats_client::Error as E;
    let file = anonstats_client::config_file::path(config_dir);
    let file = file.display();
    match e {
        E::MissingProduct => anyhow::anyhow!(
            "no product name: pass --product-name NAME (and --product-version VERSION), set \
             ANONSTATS_PRODUCT_NAME, or set product-name in {file}"
        ),
        E::MissingEndpoint => anyhow::anyhow!(
            "no endpoint: pass --endpoint URL, set ANONSTATS_ENDPOINT, or set endpoint in \
             {file}; or opt out (`anonstats opt-out`) if statistics are not wanted"
        ),
        E::MissingToken => anyhow::anyhow!(
            "no project write token: pass --token TOKEN, set ANONSTATS_TOKEN, or set token in \
             {file}; `anonstats keys create-project NAME` on the collector prints one"
        ),
        other => other.into(),
    }
}

/// `anonstats send ACTION [ACTION_RESULT [ACTION_DATA]]`: the event goes to the spool, and
/// the spool is delivered by a detached process (with `--wait`, by this one).
pub fn send(SendCmd { args, wait }: SendCmd) -> anyhow::Result<ExitCode> {
    let client = client(&args, false)?;
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
    let state_hint = |why: String| {
        // A state dir that cannot be written is fixed by giving another.
        let state = client.state_dir().display().to_string();
        if why.starts_with("cannot ") && why.contains(&state) {
            format!(
                "{why}, or give another with --state-dir DIR (or state-dir in {})",
                anonstats_client::config_file::path(&args.dirs.config_dir).display()
            )
        } else {
            why
        }
    };
    Ok(match outcome {
        Outcome::Off | Outcome::Logged(_) | Outcome::Delivered(_) | Outcome::Queued => {
            ExitCode::SUCCESS
        }
        // Without --wait the event is only promised to the spool, where it is.
        Outcome::Spooled(why) if !wait => {
            eprintln!("anonstats: not delivered yet: {}", state_hint(why));
            ExitCode::SUCCESS
        }
        Outcome::Spooled(why) | Outcome::Dropped(why) => {
            eprintln!("anonstats: not delivered: {}", state_hint(why));
            ExitCode::FAILURE
        }
    })
}

/// `anonstats show ...`: the exact JSON `send` would send.
pub fn show(args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args, true)?;
    if client.consent().mode == Mode::Crashes
        && !anonstats_client::event::is_crash_report(&args.action)
    {
        eprintln!(
            "statistics are {}: only crash reports ({}) are sent; {} would not be sent",
            client.consent(),
            anonstats_client::event::CRASH_REPORTS.join(", "),
            args.action
        );
        return Ok(ExitCode::SUCCESS);
    }
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
    if client.machine_id().is_none() {
        eprintln!(
            "note: no machine id exists yet in {}; `send` creates one, the distinct_id shown is an example",
            client.state_dir().display()
        );
    }
    if matches!(client.consent().mode, Mode::On | Mode::Crashes)
        && body["api_key"].as_str().is_none_or(str::is_empty)
    {
        eprintln!(
            "note: without an endpoint and a write token `send` cannot send this (--endpoint, \
             --token, or endpoint and token in {})",
            anonstats_client::config_file::path(&args.dirs.config_dir).display()
        );
    }
    let text = serde_json::to_string_pretty(&body).context("format the event as JSON")?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// What `status`, `opt-out`, `opt-in` and `log` work on: the directories, the product and
/// the state root, flags first, then anonstats.toml, then the defaults.
struct Target {
    dirs: DirArgs,
    product: Option<String>,
    /// Set by --product (not taken from anonstats.toml).
    named: bool,
    state_root: PathBuf,
    /// The product anonstats.toml names.
    configured: Option<String>,
}

impl Target {
    fn new(args: ProductArgs) -> Target {
        let file = anonstats_client::config_file::load(&args.dirs.config_dir).unwrap_or_default();
        let named = args.product.is_some();
        let configured = file.product_name.filter(|n| !n.trim().is_empty());
        Target {
            product: args.product.or_else(|| configured.clone()),
            named,
            state_root: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            configured,
            dirs: args.dirs,
        }
    }

    fn scope(&self, product: Option<&str>) -> Scope {
        Scope {
            system_dir: self.dirs.system_dir.clone(),
            config_dir: self.dirs.config_dir.clone(),
            product: product.map(String::from),
        }
    }

    fn decide(&self, product: Option<&str>) -> Consent {
        consent::decide(&consent::process_env, &self.scope(product), self.dirs.mode)
    }

    /// The opt-out file that `opt-out` creates and `opt-in` removes.
    fn opt_out_file(&self) -> PathBuf {
        match (&self.product, self.named) {
            (Some(name), true) => consent::product_opt_out_path(&self.dirs.config_dir, name),
            _ => consent::opt_out_path(&self.dirs.config_dir),
        }
    }

    /// What an opt-out with this file stops, in words, and the products whose state goes.
    fn stopped(&self) -> (String, Vec<String>) {
        let all = product::products(&self.state_root);
        match (&self.product, self.named) {
            (Some(name), true) => (format!("the product {name:?} only"), vec![name.clone()]),
            _ if self.dirs.config_dir == self.dirs.system_dir => {
                ("every product on this machine".into(), all)
            }
            _ => (
                format!(
                    "the products configured in {}",
                    self.dirs.config_dir.display()
                ),
                self.configured.iter().cloned().collect(),
            ),
        }
    }
}

/// `anonstats status`: `on`, `crashes`, `local` or `off` and the rule that decided.
pub fn status(args: ProductArgs) -> anyhow::Result<ExitCode> {
    let target = Target::new(args);
    println!("{}", target.decide(target.product.as_deref()));
    Ok(ExitCode::SUCCESS)
}

/// `anonstats opt-out [--product NAME]`: create the opt-out file, and delete what waited
/// to be sent and the receipts of the products it stops.
pub fn opt_out(args: ProductArgs) -> anyhow::Result<ExitCode> {
    let target = Target::new(args);
    let path = target.opt_out_file();
    let dir = path.parent().unwrap_or(&target.dirs.config_dir);
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the configuration directory {}; run as a user who may write there, \
             or pass --config-dir",
            dir.display()
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
    let (what, products) = target.stopped();
    if target
        .state_root
        .join(anonstats_client::machine_id::FILE)
        .exists()
        && target.dirs.config_dir == target.dirs.system_dir
    {
        product::forget(&target.state_root);
    }
    for name in products {
        product::forget(&product::state_dir(&target.state_root, &name));
    }
    println!("created {}: this stops {what}", path.display());
    println!("{}", target.decide(target.product.as_deref()));
    Ok(ExitCode::SUCCESS)
}

/// `anonstats opt-in [--product NAME]`: remove the opt-out file.
pub fn opt_in(args: ProductArgs) -> anyhow::Result<ExitCode> {
    let target = Target::new(args);
    let path = target.opt_out_file();
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
    let now = target.decide(target.product.as_deref());
    println!("{now}");
    if now.mode == Mode::Off {
        eprintln!("note: statistics stay off because {}", now.reason);
    }
    Ok(ExitCode::SUCCESS)
}

/// `anonstats log [--product NAME]`: the receipts of the last events that left the
/// machine, oldest first: a line with when, which product, the collector's answer and the
/// URL, then the exact JSON of the event sent. Products whose statistics are off have
/// none (what they kept is deleted, as at an opt-out).
pub fn log(args: ProductArgs) -> anyhow::Result<ExitCode> {
    let target = Target::new(args);
    let products = match (&target.product, target.named) {
        (Some(name), true) => vec![name.clone()],
        _ => product::products(&target.state_root),
    };
    let mut shown = Vec::new();
    for name in &products {
        let dir = product::state_dir(&target.state_root, name);
        let now = target.decide(Some(name));
        if now.mode == Mode::Off {
            product::forget(&dir);
            eprintln!("{name}: statistics are {now}: nothing is sent and no receipt is kept");
            continue;
        }
        shown.extend(local_log::receipts(&dir).into_iter().map(|r| (name, r)));
    }
    if shown.is_empty() {
        eprintln!(
            "no receipts: no event has left this machine since the receipts began \
             (each product's are in {}/<product>/{})",
            target.state_root.display(),
            local_log::RECEIPTS_FILE
        );
    }
    shown.sort_by(|a, b| a.1["at"].as_str().cmp(&b.1["at"].as_str()));
    let mut out = std::io::stdout().lock();
    for (name, r) in shown {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        writeln!(
            out,
            "{}  {name}  {}  {}",
            text(&r["at"]),
            text(&r["answer"]),
            text(&r["endpoint"])
        )?;
        writeln!(out, "{}", r["event"])?;
    }
    Ok(ExitCode::SUCCESS)
}
