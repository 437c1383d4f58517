//! `anonstats export`: stream stored events as NDJSON, CSV or Parquet. Safe while `serve`
//! runs: it reads through its own read-only connection, and memory stays constant
//! whatever the number of events.

mod parquet_file;
mod text;

use anonstats_server::store::sqlite::SqliteStore;
use anonstats_server::store::{EventStore, ExportQuery, KeyStore, StoreError, StoredEvent};
use anonstats_wire::parse_timestamp_ms;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// A header line, then one row per event (properties as JSON text).
    Csv,
    /// Apache Parquet, Snappy-compressed, in row groups of 65536 events.
    Parquet,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// serve's TOML config file: its `data-dir` (and `store`) settings apply here too,
    /// under flags and environment variables.
    #[arg(long, env = "ANONSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database; it must hold a store (`serve` makes one).
    #[arg(long, env = "ANONSTATS_DATA_DIR", default_value = "./anonstats-data")]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "ndjson")]
    format: Format,
    /// Write here instead of stdout (Parquet needs it unless stdout is redirected).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Only this project's events.
    #[arg(long)]
    project: Option<String>,
    /// Events at or after this time (RFC 3339, or a date YYYY-MM-DD).
    #[arg(long)]
    from: Option<String>,
    /// Events before this time (RFC 3339, or a date YYYY-MM-DD).
    #[arg(long)]
    to: Option<String>,
}

/// Where exported events go, one at a time.
pub trait Sink {
    fn write(&mut self, event: &StoredEvent, project: &str) -> anyhow::Result<()>;
    /// Writes what is buffered and the file's footer, if any.
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

/// Parses `--from` / `--to`: RFC 3339, or a plain date meaning its midnight UTC.
pub fn parse_time(flag: &str, value: &str) -> anyhow::Result<i64> {
    let full = if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else {
        value.to_string()
    };
    match parse_timestamp_ms(&full) {
        Some(ms) => Ok(ms),
        None => bail!(
            "--{flag} {value:?} is not a time: use RFC 3339 (2024-05-01T12:00:00Z) or a date (2024-05-01)"
        ),
    }
}

/// Opens the store of a data dir that must already hold one (commands that only read
/// or remove must not create an empty store in a mistyped directory).
pub fn open_existing(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    match SqliteStore::open_existing(data_dir) {
        Ok(store) => Ok(store),
        // Says all there is to say on its own.
        Err(e @ StoreError::NoStore(_)) => Err(e.into()),
        Err(e) => Err(anyhow::Error::from(e)
            .context(format!("cannot open the store in {}", data_dir.display()))),
    }
}

/// The id of the project called `name`.
pub fn project_id(store: &SqliteStore, name: &str) -> anyhow::Result<i64> {
    match store.projects()?.into_iter().find(|p| p.name == name) {
        Some(p) => Ok(p.id),
        None => bail!("no project named {name:?}; `anonstats keys list` shows them"),
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress_bar(total: Option<u64>, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if total.is_some() {
        format!("{{bar:40}} {{human_pos}}/{{human_len}} {unit} ({{per_sec:0}}, {{eta}} left)")
    } else {
        format!("{{spinner}} {{human_pos}} {unit} ({{per_sec:0}})")
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&args.data_dir)?;
    let mut query = ExportQuery {
        from_ms: args
            .from
            .as_deref()
            .map(|v| parse_time("from", v))
            .transpose()?,
        to_ms: args
            .to
            .as_deref()
            .map(|v| parse_time("to", v))
            .transpose()?,
        ..ExportQuery::default()
    };
    if let Some(name) = &args.project {
        query.project_id = Some(project_id(&store, name)?);
    }
    let names: HashMap<i64, String> = store
        .projects()?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();

    if args.format == Format::Parquet && args.output.is_none() && std::io::stdout().is_terminal() {
        bail!(
            "Parquet is binary and stdout is a terminal: give --output FILE.parquet or redirect stdout"
        );
    }
    let out = Output::open(args.output.as_deref())?;
    let mut sink: Box<dyn Sink> = match args.format {
        Format::Ndjson => Box::new(text::Ndjson::new(out.writer()?)),
        Format::Csv => Box::new(text::Csv::new(out.writer()?)?),
        Format::Parquet => Box::new(parquet_file::Parquet::new(out.writer()?)?),
    };

    let total = if std::io::stderr().is_terminal() {
        Some(count(&store, &query)?)
    } else {
        None
    };
    let bar = progress_bar(total, "events");
    let mut failure: Option<anyhow::Error> = None;
    let no_project = String::new();
    let result = store.export(&query, &mut |e: StoredEvent| {
        let project = names.get(&e.project_id).unwrap_or(&no_project);
        if let Err(err) = sink.write(&e, project) {
            failure = Some(err);
            return Err(StoreError::Backend("the export stopped".into()));
        }
        bar.inc(1);
        Ok(())
    });
    bar.finish_and_clear();
    let finished = match (failure, result) {
        (Some(err), _) => Err(err),
        (None, Err(e)) => Err(anyhow::Error::new(e).context("cannot read the events")),
        (None, Ok(_)) => sink.finish(),
    };
    match finished {
        Ok(()) => {
            out.commit()?;
            Ok(ExitCode::SUCCESS)
        }
        // A closed pipe (`| head`) is a normal end of an export.
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

/// How many events the query matches, for the progress bar.
fn count(store: &SqliteStore, q: &ExportQuery) -> anyhow::Result<u64> {
    let conn = store.reader()?;
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM events
         WHERE (?1 IS NULL OR project_id = ?1) AND (?2 IS NULL OR ts_ms >= ?2) AND (?3 IS NULL OR ts_ms < ?3)",
        (q.project_id, q.from_ms, q.to_ms),
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

/// Stdout, or a file written under a temporary name and renamed into place once the
/// export is complete, so that a failed export never leaves a truncated file behind.
enum Output {
    Stdout,
    File { partial: PathBuf, target: PathBuf },
}

impl Output {
    fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        let Some(target) = path else {
            return Ok(Output::Stdout);
        };
        let mut name = target.as_os_str().to_owned();
        name.push(".partial");
        Ok(Output::File {
            partial: PathBuf::from(name),
            target: target.to_path_buf(),
        })
    }

    fn writer(&self) -> anyhow::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Output::Stdout => Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
            Output::File { partial, .. } => {
                let file = std::fs::File::create(partial).with_context(|| {
                    format!(
                        "cannot create {}: check that its directory exists and is writable",
                        partial.display()
                    )
                })?;
                Box::new(std::io::BufWriter::with_capacity(1 << 16, file))
            }
        })
    }

    fn commit(&self) -> anyhow::Result<()> {
        if let Output::File { partial, target } = self {
            std::fs::rename(partial, target).with_context(|| {
                format!(
                    "cannot move the finished export {} to {}",
                    partial.display(),
                    target.display()
                )
            })?;
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // After a successful commit the partial file no longer exists.
        if let Output::File { partial, .. } = self {
            let _ = std::fs::remove_file(partial);
        }
    }
}
