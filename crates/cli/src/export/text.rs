//! Text exports: NDJSON (one JSON object per line) and CSV (a header, then one row per
//! event). Properties are written as the JSON text they are stored as, never re-encoded.

use super::Sink;
use anonstats_server::store::StoredEvent;
use anonstats_wire::format_rfc3339_ms;
use anyhow::Context;
use std::io::Write;

/// The columns of every tabular export, in order.
pub const COLUMNS: [&str; 6] = [
    "uuid",
    "event",
    "distinct_id",
    "timestamp",
    "project",
    "properties",
];

pub struct Ndjson<W: Write> {
    out: W,
}

impl<W: Write> Ndjson<W> {
    pub fn new(out: W) -> Self {
        Ndjson { out }
    }
}

impl<W: Write> Sink for Ndjson<W> {
    fn write(&mut self, e: &StoredEvent, project: &str) -> anyhow::Result<()> {
        let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
        writeln!(
            self.out,
            r#"{{"uuid":"{}","event":{},"distinct_id":{},"timestamp":"{}","project":{},"properties":{}}}"#,
            e.uuid,
            s(&e.event),
            s(&e.distinct_id),
            format_rfc3339_ms(e.timestamp_ms),
            s(project),
            e.properties
        )
        .context("cannot write the export")
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.out.flush().context("cannot write the export")
    }
}

pub struct Csv<W: Write> {
    out: csv::Writer<W>,
    uuid: String,
}

impl<W: Write> Csv<W> {
    pub fn new(out: W) -> anyhow::Result<Self> {
        let mut out = csv::WriterBuilder::new().from_writer(out);
        out.write_record(COLUMNS)
            .context("cannot write the export")?;
        Ok(Csv {
            out,
            uuid: String::with_capacity(36),
        })
    }
}

impl<W: Write> Sink for Csv<W> {
    fn write(&mut self, e: &StoredEvent, project: &str) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        self.uuid.clear();
        let _ = write!(self.uuid, "{}", e.uuid);
        let timestamp = format_rfc3339_ms(e.timestamp_ms);
        self.out
            .write_record([
                self.uuid.as_str(),
                &e.event,
                &e.distinct_id,
                &timestamp,
                project,
                &e.properties,
            ])
            .context("cannot write the export")
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.out.flush().context("cannot write the export")
    }
}
