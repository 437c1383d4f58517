//! Parquet export through the low-level column writer of the `parquet` crate (no Arrow):
//! events are buffered column by column and written as one row group every
//! [`ROW_GROUP_ROWS`] events (or [`ROW_GROUP_BYTES`] of text), so memory stays bounded.

use super::Sink;
use anonstats_server::store::StoredEvent;
use anyhow::{Context, bail};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use std::io::Write;
use std::sync::Arc;

/// Events per row group.
pub const ROW_GROUP_ROWS: usize = 65_536;
/// A row group is also closed once its text columns hold this many bytes.
pub const ROW_GROUP_BYTES: usize = 64 << 20;

/// The file's schema: the timestamp is Unix milliseconds (UTC), properties JSON text.
pub const SCHEMA: &str = "
message event {
  required binary uuid (STRING);
  required binary event (STRING);
  required binary distinct_id (STRING);
  required int64 timestamp (TIMESTAMP(MILLIS,true));
  required binary project (STRING);
  required binary properties (JSON);
}";

#[derive(Default)]
struct Columns {
    uuid: Vec<ByteArray>,
    event: Vec<ByteArray>,
    distinct_id: Vec<ByteArray>,
    timestamp: Vec<i64>,
    project: Vec<ByteArray>,
    properties: Vec<ByteArray>,
    bytes: usize,
}

pub struct Parquet<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    rows: Columns,
}

impl<W: Write + Send> Parquet<W> {
    pub fn new(out: W) -> anyhow::Result<Self> {
        let schema = Arc::new(parse_message_type(SCHEMA).context("the Parquet schema")?);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("anonstats {}", env!("CARGO_PKG_VERSION")))
            // Unique per event: a dictionary would only cost time.
            .set_column_dictionary_enabled(ColumnPath::from("uuid"), false)
            .set_column_dictionary_enabled(ColumnPath::from("properties"), false)
            .build();
        let writer = SerializedFileWriter::new(out, schema, Arc::new(props))
            .context("cannot start the Parquet file")?;
        Ok(Parquet {
            writer,
            rows: Columns::default(),
        })
    }

    fn flush_row_group(&mut self) -> anyhow::Result<()> {
        if self.rows.timestamp.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let mut group = self
            .writer
            .next_row_group()
            .context("cannot write a Parquet row group")?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            let text = match index {
                0 => Some(&rows.uuid),
                1 => Some(&rows.event),
                2 => Some(&rows.distinct_id),
                3 => None,
                4 => Some(&rows.project),
                5 => Some(&rows.properties),
                _ => bail!("the Parquet schema has more columns than the export writes"),
            };
            match text {
                Some(values) => column
                    .typed::<ByteArrayType>()
                    .write_batch(values, None, None)?,
                None => column
                    .typed::<Int64Type>()
                    .write_batch(&rows.timestamp, None, None)?,
            };
            column.close()?;
            index += 1;
        }
        group.close().context("cannot write a Parquet row group")?;
        Ok(())
    }
}

impl<W: Write + Send> Sink for Parquet<W> {
    fn write(&mut self, e: &StoredEvent, project: &str) -> anyhow::Result<()> {
        let r = &mut self.rows;
        r.bytes += e.properties.len() + e.distinct_id.len() + e.event.len() + 64;
        r.uuid
            .push(ByteArray::from(e.uuid.to_string().into_bytes()));
        r.event.push(ByteArray::from(e.event.as_str()));
        r.distinct_id.push(ByteArray::from(e.distinct_id.as_str()));
        r.timestamp.push(e.timestamp_ms);
        r.project.push(ByteArray::from(project));
        r.properties.push(ByteArray::from(e.properties.as_str()));
        if r.timestamp.len() >= ROW_GROUP_ROWS || r.bytes >= ROW_GROUP_BYTES {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.flush_row_group()?;
        let mut out = self
            .writer
            .into_inner()
            .context("cannot finish the Parquet file")?;
        out.flush().context("cannot write the export")
    }
}
