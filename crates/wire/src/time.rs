use chrono::{DateTime, SecondsFormat, Utc};

/// The earliest accepted event time: 2000-01-01T00:00:00.000Z, in Unix milliseconds.
///
/// Both stores hold every time from [`MIN_TIMESTAMP_MS`] to [`MAX_TIMESTAMP_MS`] alike:
/// ClickHouse's `DateTime` column (seconds, and its date functions in 18.16) is exact from
/// 1970 to 2105, and a week's bucket of a time in the first days of 1970 would fall
/// before 1970; the years 2000 to 2099 leave room on both sides. A time outside is a
/// broken clock or a broken sender, never a real event of software that runs today.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// The latest accepted event time: 2099-12-31T23:59:59.999Z, in Unix milliseconds.
pub const MAX_TIMESTAMP_MS: i64 = 4_102_444_799_999;

/// Whether an event time is in the accepted range.
pub fn timestamp_in_range(ms: i64) -> bool {
    (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms)
}

/// The accepted range as error messages say it.
pub(crate) fn range_text() -> String {
    format!(
        "{} to {}",
        format_rfc3339_ms(MIN_TIMESTAMP_MS),
        format_rfc3339_ms(MAX_TIMESTAMP_MS)
    )
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Parses an RFC 3339 / ISO 8601 timestamp (with offset, or UTC when it has none) into
/// Unix milliseconds.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // Senders such as older SDKs omit the offset; PostHog reads those as UTC.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(
            parse_timestamp_ms("2024-01-02T03:04:05Z"),
            Some(1704164645000)
        );
        assert_eq!(
            parse_timestamp_ms("2024-01-02T03:04:05.123+00:00"),
            Some(1704164645123)
        );
        assert_eq!(
            parse_timestamp_ms("2024-01-02T05:04:05+02:00"),
            Some(1704164645000)
        );
        assert_eq!(
            parse_timestamp_ms("2024-01-02T03:04:05.5"),
            Some(1704164645500)
        );
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        assert_eq!(format_rfc3339_ms(1704164645123), "2024-01-02T03:04:05.123Z");
        assert_eq!(
            range_text(),
            "2000-01-01T00:00:00.000Z to 2099-12-31T23:59:59.999Z"
        );
    }
}
