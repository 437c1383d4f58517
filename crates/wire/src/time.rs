use chrono::{DateTime, SecondsFormat, Utc};

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
    }
}
