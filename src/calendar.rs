//! Civil time without a time-zone database: UTC dates and times as the warehouse and the reports print them.

use std::time::{SystemTime, UNIX_EPOCH};

/// UTC date (`YYYY-MM-DD`) and time (`HH:MM:SS`) of seconds since the epoch.
pub fn utc(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            rest / 3600,
            (rest % 3600) / 60,
            rest % 60
        ),
    )
}

/// A timestamp as Redshift and PostgreSQL read a `TIMESTAMPTZ`: `YYYY-MM-DD HH:MM:SS.ffffff+00`.
pub fn timestamptz(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, time) = utc(since.as_secs());
    format!("{date} {time}.{:06}+00", since.subsec_micros())
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
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_717_243_200_000_123);
        assert_eq!(timestamptz(t), "2024-06-01 12:00:00.000123+00");
    }
}
