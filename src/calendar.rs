//! Civil time without a time-zone database: UTC dates and times as the warehouse and the reports print them, on
//! the `time` crate's calendar.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// The UTC date-time of seconds and nanoseconds since the epoch (the epoch itself past the crate's range, which
/// ends in the year 9999).
fn at(secs: u64, nanos: u32) -> OffsetDateTime {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.replace_nanosecond(nanos).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// UTC date (`YYYY-MM-DD`) and time (`HH:MM:SS`) of seconds since the epoch.
pub fn utc(secs: u64) -> (String, String) {
    let t = at(secs, 0);
    (
        t.date().to_string(),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

/// A timestamp as Redshift and PostgreSQL read a `TIMESTAMPTZ`: `YYYY-MM-DD HH:MM:SS.ffffff+00`.
pub fn timestamptz(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let t = at(since.as_secs(), since.subsec_nanos());
    format!(
        "{} {:02}:{:02}:{:02}.{:06}+00",
        t.date(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), ("1970-01-01".into(), "00:00:00".into()));
        assert_eq!(
            utc(951_782_400 + 3661),
            ("2000-02-29".into(), "01:01:01".into())
        );
        assert_eq!(utc(4_102_444_799), ("2099-12-31".into(), "23:59:59".into()));
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_717_243_200_000_123);
        assert_eq!(timestamptz(t), "2024-06-01 12:00:00.000123+00");
        let t = UNIX_EPOCH + std::time::Duration::from_nanos(1_717_243_200_000_123_999);
        assert_eq!(
            timestamptz(t),
            "2024-06-01 12:00:00.000123+00",
            "truncated to microseconds as before, never rounded up"
        );
    }
}
