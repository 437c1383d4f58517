//! Exported events read back from NDJSON, CSV and Parquet into one comparable form.

use super::common::Collector;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;
use std::path::Path;

/// (uuid, event, distinct_id, timestamp ms, project, properties) of one exported event.
pub type Row = (String, String, String, i64, String, Value);

pub fn millis(rfc3339: &str) -> i64 {
    // The export writes UTC with milliseconds: 2024-05-01T12:00:00.123Z.
    let (date, time) = rfc3339.trim_end_matches('Z').split_once('T').expect("time");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().expect("date")).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().expect("time")).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms.parse::<i64>().expect("ms")
}

pub fn ndjson_rows(c: &Collector) -> Vec<Row> {
    c.export()
        .into_iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().expect(k).to_string();
            (
                s("uuid"),
                s("event"),
                s("distinct_id"),
                millis(&s("timestamp")),
                s("project"),
                v["properties"].clone(),
            )
        })
        .collect()
}

pub fn csv_rows(text: &str) -> Vec<Row> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(
        headers,
        [
            "uuid",
            "event",
            "distinct_id",
            "timestamp",
            "project",
            "properties"
        ]
    );
    r.records()
        .map(|rec| {
            let rec = rec.expect("csv record");
            (
                rec[0].to_string(),
                rec[1].to_string(),
                rec[2].to_string(),
                millis(&rec[3]),
                rec[4].to_string(),
                serde_json::from_str(&rec[5]).expect("properties are JSON"),
            )
        })
        .collect()
}

pub fn parquet_rows(path: &Path) -> (Vec<Row>, usize) {
    let file = std::fs::File::open(path).expect("parquet file");
    let reader = SerializedFileReader::new(file).expect("a Parquet file");
    let groups = reader.metadata().num_row_groups();
    let rows = reader
        .get_row_iter(None)
        .expect("rows")
        .map(|row| {
            let row = row.expect("row");
            let cols: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
            let text = |f: &Field| match f {
                Field::Str(s) => s.clone(),
                other => panic!("expected a string, got {other:?}"),
            };
            let ts = match cols[3] {
                Field::TimestampMillis(ms) => *ms,
                other => panic!("expected a millisecond timestamp, got {other:?}"),
            };
            (
                text(cols[0]),
                text(cols[1]),
                text(cols[2]),
                ts,
                text(cols[4]),
                serde_json::from_str(&text(cols[5])).expect("properties are JSON"),
            )
        })
        .collect();
    (rows, groups)
}
