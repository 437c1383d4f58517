//! `anonstats sql`: one read-only query on the embedded store, with a row cap and a time
//! limit. Safe while `serve` runs (it reads through its own read-only connection).

use crate::export::open_existing;
use anonstats_server::insights::{InsightStore, SqlLimits, SqlResult};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for reading.
    Table,
    /// `{"columns": [...], "rows": [[...]], "truncated": bool}`, as the HTTP API answers.
    Json,
    /// A header line, then one line per row.
    Csv,
}

#[derive(clap::Args)]
pub struct SqlArgs {
    /// One read-only statement: SELECT, WITH, EXPLAIN or a read-only PRAGMA.
    query: String,
    /// serve's TOML config file: its `data-dir` (and `store`) settings apply here too,
    /// under flags and environment variables.
    #[arg(long, env = "ANONSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database; it must hold a store (`serve` makes one).
    #[arg(long, env = "ANONSTATS_DATA_DIR", default_value = "./anonstats-data")]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Stop after this many rows (the output then says it was cut).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_rows: u64,
    /// Stop the query after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout_secs: f64,
}

pub fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    if !(args.timeout_secs.is_finite() && args.timeout_secs > 0.0) {
        anyhow::bail!(
            "--timeout-secs {} is not a positive number of seconds",
            args.timeout_secs
        );
    }
    let store = open_existing(&args.data_dir)?;
    let limits = SqlLimits {
        max_rows: usize::try_from(args.max_rows).unwrap_or(usize::MAX),
        timeout: Duration::from_secs_f64(args.timeout_secs),
        ..SqlLimits::default()
    };
    let result = store
        .sql(&args.query, limits)
        .map_err(|e| explain(&args.query, &e.to_string()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Table => write_table(&mut out, &result)?,
        Format::Json => writeln!(out, "{}", serde_json::to_string(&result)?)?,
        Format::Csv => write_csv(&mut out, &result)?,
    }
    out.flush()?;
    if result.truncated {
        eprintln!(
            "note: only the first {} rows are shown; raise --max-rows or narrow the query",
            result.rows.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The store's refusal, prefixed with what the statement would have done, and the
/// time limit's message with the flag that raises it.
fn explain(query: &str, message: &str) -> anyhow::Error {
    if message.contains("limit and was stopped") {
        return anyhow::anyhow!("{message} (or raise --timeout-secs)");
    }
    if !message.contains("refused") && !message.contains("would write") {
        return anyhow::anyhow!("{message}");
    }
    let words: Vec<String> = query
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    let first = words.first().map(String::as_str).unwrap_or("");
    let what = match first {
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "UPSERT" => {
            format!("{first} would change stored data")
        }
        "CREATE" | "DROP" | "ALTER" => format!("{first} would change the schema"),
        "ATTACH" | "DETACH" => format!("{first} would open or close another database file"),
        "PRAGMA" if query.contains('=') || query.contains('(') => format!(
            "PRAGMA {} would change a setting",
            words
                .get(1)
                .map(|w| w.to_ascii_lowercase())
                .unwrap_or_default()
        ),
        "PRAGMA" => format!(
            "PRAGMA {} is not one of the read-only pragmas",
            words
                .get(1)
                .map(|w| w.to_ascii_lowercase())
                .unwrap_or_default()
        ),
        "VACUUM" | "REINDEX" | "ANALYZE" | "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT"
        | "RELEASE" => format!("{first} is not a query"),
        _ => "the statement is not read-only".to_string(),
    };
    anyhow::anyhow!("{what}; {message}")
}

/// A cell as text: strings bare, NULL empty, numbers as JSON writes them.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write_csv(out: &mut impl Write, r: &SqlResult) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(&r.columns)?;
    for row in &r.rows {
        w.write_record(row.iter().map(cell))?;
    }
    w.flush()?;
    Ok(())
}

/// Longest cell shown in a table; longer ones end in "…" (the csv and json formats
/// keep everything).
const MAX_CELL: usize = 60;

fn write_table(out: &mut impl Write, r: &SqlResult) -> anyhow::Result<()> {
    let shorten = |s: String| -> String {
        let s = s.replace(['\n', '\t'], " ");
        if s.chars().count() <= MAX_CELL {
            s
        } else {
            let mut t: String = s.chars().take(MAX_CELL - 1).collect();
            t.push('…');
            t
        }
    };
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| row.iter().map(|v| shorten(cell(v))).collect())
        .collect();
    let mut widths: Vec<usize> = r.columns.iter().map(|c| c.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        padded.join(" | ").trim_end().to_string()
    };
    writeln!(out, "{}", line(&r.columns))?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "{}", rule.join("-+-"))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    let n = rows.len();
    writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })?;
    Ok(())
}
