//! A small daemon that reports its life to an anonstats collector.
//!
//! ```text
//! cargo run -p anonstats-client --example demo-agent -- \
//!     --endpoint http://127.0.0.1:8080 --token TOKEN \
//!     --config-dir /tmp/demo/etc --state-dir /tmp/demo/state [--crash] [--mode local]
//! ```
//!
//! It sends START when it starts, EXIT on SIGTERM or SIGINT (it prints `demo-agent: ready`
//! once it handles them, so that a supervisor or test can tell when a signal will be
//! caught rather than kill it), and with `--crash` it panics in
//! `load_configuration` on a thread named `config-loader`, which the panic hook reports as
//! FATAL. `Agent` holds the client; whatever the daemon serves (an HTTP dashboard, say) can
//! be started in `Agent::run` beside the signal loop and read `Agent::statistics_enabled`.

use anonstats_client::{Client, Mode};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::process::ExitCode;

#[path = "demo-agent/dashboard.rs"]
mod dashboard;

struct Options {
    endpoint: Option<String>,
    token: Option<String>,
    config_dir: String,
    state_dir: String,
    mode: Option<Mode>,
    crash: bool,
    dashboard: Option<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        endpoint: None,
        token: None,
        config_dir: "/etc/demo-agent".into(),
        state_dir: "/var/lib/demo-agent".into(),
        mode: None,
        crash: false,
        dashboard: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--endpoint" => o.endpoint = Some(value()?),
            "--token" => o.token = Some(value()?),
            "--config-dir" => o.config_dir = value()?,
            "--state-dir" => o.state_dir = value()?,
            "--mode" => o.mode = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--crash" => o.crash = true,
            "--dashboard" => o.dashboard = Some(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; flags: --endpoint URL --token T \
                     --config-dir DIR --state-dir DIR [--mode all|crashes|local|off] [--crash] [--dashboard ADDR]"
                ));
            }
        }
    }
    Ok(o)
}

struct Agent {
    client: Client,
}

impl Agent {
    fn new(o: &Options) -> Result<Agent, anonstats_client::Error> {
        let mut b = Client::builder()
            .product("demo-agent", env!("CARGO_PKG_VERSION"))
            .install_type("example")
            .config_dir(&o.config_dir)
            .state_dir(&o.state_dir);
        if let Some(e) = &o.endpoint {
            b = b.endpoint(e);
        }
        if let Some(t) = &o.token {
            b = b.token(t);
        }
        if let Some(m) = o.mode {
            b = b.mode(m);
        }
        Ok(Agent { client: b.build()? })
    }

    /// What a dashboard page would use to decide whether to load its statistics script.
    #[allow(dead_code)]
    fn statistics_enabled(&self) -> bool {
        self.client.sends()
    }

    fn run(&self, crash: bool) -> ExitCode {
        self.client.install_panic_hook();
        let started = self.client.start();
        println!(
            "demo-agent {} running as pid {}; statistics {}; START {started:?}",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            self.client.consent()
        );
        if crash {
            let worker = std::thread::Builder::new()
                .name("config-loader".into())
                .spawn(load_configuration);
            return match worker.map(|h| h.join()) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                _ => ExitCode::from(101),
            };
        }
        let mut signals = match Signals::new([SIGTERM, SIGINT]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("demo-agent: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("demo-agent: ready");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        if let Some(signal) = signals.forever().next() {
            let outcome = self.client.exit();
            println!("demo-agent: signal {signal}, EXIT {outcome:?}");
        }
        ExitCode::SUCCESS
    }
}

/// Fails the way a daemon does when its configuration has vanished.
fn load_configuration() {
    let path = "/nonexistent/demo-agent.conf";
    let text = std::fs::read_to_string(path).ok();
    let config = text.filter(|t| !t.is_empty());
    config.unwrap_or_else(|| panic!("cannot load {path}"));
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("demo-agent: {e}");
            return ExitCode::from(2);
        }
    };
    match Agent::new(&options) {
        Ok(agent) => {
            if let Some(addr) = &options.dashboard {
                let (mode, endpoint, token) = (
                    options.mode,
                    options.endpoint.clone(),
                    options.token.clone(),
                );
                match dashboard::start(addr, &agent.client, mode, endpoint, token) {
                    Ok(bound) => println!("dashboard on http://{bound}"),
                    Err(e) => {
                        eprintln!("demo-agent: cannot serve the dashboard on {addr}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            agent.run(options.crash)
        }
        Err(e) => {
            eprintln!("demo-agent: {e}");
            ExitCode::from(2)
        }
    }
}
