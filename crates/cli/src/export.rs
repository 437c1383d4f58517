//! `anonstats export`: stream stored events. Safe while `serve` runs.

use anonstats_server::store::sqlite::SqliteStore;
use anonstats_server::store::{EventStore, ExportQuery, KeyStore, StoreError, StoredEvent};
use anonstats_wire::{format_rfc3339_ms, parse_timestamp_ms};
use anyhow::{Context, bail};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Directory of the embedded database.
    #[arg(long, env = "ANONSTATS_DATA_DIR", default_value = "./anonstats-data")]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "ndjson")]
    format: Format,
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

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = SqliteStore::open(&args.data_dir)
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
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
    let projects = store.projects()?;
    if let Some(name) = &args.project {
        match projects.iter().find(|p| &p.name == name) {
            Some(p) => query.project_id = Some(p.id),
            None => bail!("no project named {name:?}; `anonstats keys list` shows them"),
        }
    }
    let names: std::collections::HashMap<i64, String> =
        projects.into_iter().map(|p| (p.id, p.name)).collect();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| StoreError::Backend(format!("cannot write the export: {e}"));
    let result = store.export(&query, &mut |e: StoredEvent| match args.format {
        Format::Ndjson => write_ndjson(&mut out, &e, names.get(&e.project_id)).map_err(io),
    });
    match result {
        Ok(_) => {}
        // A closed pipe (`| head`) is a normal end of an export.
        Err(StoreError::Backend(m)) if m.contains("Broken pipe") => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e.into()),
    }
    out.flush().or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn write_ndjson(
    out: &mut impl Write,
    e: &StoredEvent,
    project: Option<&String>,
) -> std::io::Result<()> {
    let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
    // Properties are stored as JSON object text: written as they are, not re-encoded.
    writeln!(
        out,
        r#"{{"uuid":"{}","event":{},"distinct_id":{},"timestamp":"{}","project":{},"properties":{}}}"#,
        e.uuid,
        s(&e.event),
        s(&e.distinct_id),
        format_rfc3339_ms(e.timestamp_ms),
        s(project.map(String::as_str).unwrap_or("")),
        e.properties
    )
}
