//! Pure casting of one trimmed text field to its warehouse type, exactly as the warehouse contract says.
//! Errors describe the rule that failed and never repeat the value (it may be patient data).

use std::fmt;

/// Why a field could not be cast. The message never contains the field's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CastError {
    /// An integer column's field is not an optional sign followed by digits.
    #[error("is not an integer")]
    NotAnInteger,
    /// An integer does not fit the column's type (named, e.g. `SMALLINT`).
    #[error("is out of range for {0}")]
    OutOfRange(&'static str),
    /// A decimal column's field is not a number in an accepted money or unit format.
    #[error("is not a decimal number")]
    NotADecimal,
    /// A decimal has more decimal places than the column's scale (given).
    #[error("has more than {0} decimal places")]
    TooManyDecimals(u8),
    /// A decimal has more integer digits than the column allows (given: precision minus scale).
    #[error("has more than {0} integer digits")]
    TooManyIntegerDigits(u8),
    /// A decimal's commas do not separate groups of three digits.
    #[error("has misplaced thousands separators")]
    BadThousands,
    /// A date column's field is in none of the accepted formats.
    #[error("is not a date (YYYYMMDD, YYYY-MM-DD, M/D/YYYY or MM/DD/YYYY)")]
    NotADate,
    /// A date is well formed but names no real day (e.g. month 13 or 30 February).
    #[error("is a date that does not exist")]
    NoSuchDate,
    /// A text field is longer than its `VARCHAR` column.
    #[error("is {len} characters long, longer than the column's {max}")]
    TooLong {
        /// The field's length in characters.
        len: usize,
        /// The column's maximum length in characters.
        max: u32,
    },
    /// A text field contains a NUL byte, which the warehouse cannot store.
    #[error("contains a NUL byte")]
    NulByte,
    /// The column's type is written by the loader, never read from a file (the ledger's).
    #[error("is in a column of type {0}, which no file loads")]
    NotLoadable(&'static str),
    /// A primary-key field is empty.
    #[error("is empty but is the primary key")]
    NullPrimaryKey,
}

impl CastError {
    /// A stable machine-readable rule name, for reports and metrics.
    pub fn rule(&self) -> &'static str {
        match self {
            CastError::NotAnInteger => "integer",
            CastError::OutOfRange(_) => "range",
            CastError::NotADecimal => "decimal",
            CastError::TooManyDecimals(_) => "decimal_scale",
            CastError::TooManyIntegerDigits(_) => "decimal_precision",
            CastError::BadThousands => "thousands_separator",
            CastError::NotADate => "date_format",
            CastError::NoSuchDate => "date_exists",
            CastError::TooLong { .. } => "varchar_length",
            CastError::NulByte => "nul_byte",
            CastError::NullPrimaryKey => "primary_key_null",
            CastError::NotLoadable(_) => "not_loadable",
        }
    }
}

/// Trim the surrounding spaces the contract allows.
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\t')
}

/// An integer: optional sign, digits. The caller has trimmed.
pub fn integer(s: &str, min: i64, max: i64, type_name: &'static str) -> Result<i64, CastError> {
    let bytes = s.as_bytes();
    let (neg, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(CastError::NotAnInteger);
    }
    let mut v: i128 = 0;
    for &d in digits {
        v = v * 10 + i128::from(d - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return Err(CastError::OutOfRange(type_name));
        }
    }
    let v = if neg { -v } else { v };
    if v < i128::from(min) || v > i128::from(max) {
        return Err(CastError::OutOfRange(type_name));
    }
    Ok(v as i64)
}

/// An exact decimal: `units` is the value times 10^scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decimal {
    /// The value times 10^`scale`, e.g. 123450 for 1234.50 at scale 2.
    pub units: i64,
    /// Digits after the decimal point.
    pub scale: u8,
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pow = 10i64.pow(u32::from(self.scale));
        let sign = if self.units < 0 { "-" } else { "" };
        let abs = self.units.unsigned_abs();
        let int = abs / pow as u64;
        if self.scale == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = abs % pow as u64;
        write!(
            f,
            "{sign}{int}.{frac:0width$}",
            width = usize::from(self.scale)
        )
    }
}

/// Money and units: `1234.5`, `-12.00`, `$1,234.50`, `-$1,234.50`, `($1,234.50)`, `(12.00)`.
/// At most `scale` decimals and `precision - scale` integer digits; commas only between groups of three.
pub fn decimal(s: &str, precision: u8, scale: u8) -> Result<Decimal, CastError> {
    let mut rest = s;
    let mut neg = false;
    if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        neg = true;
        rest = inner;
    } else if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    rest = rest.strip_prefix('$').unwrap_or(rest);
    let (int_part, frac_part) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    if int_part.is_empty() && frac_part.is_none_or(str::is_empty) {
        return Err(CastError::NotADecimal);
    }
    let int_digits = integer_digits(int_part)?;
    let frac = frac_part.unwrap_or("");
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CastError::NotADecimal);
    }
    if frac.len() > usize::from(scale) {
        return Err(CastError::TooManyDecimals(scale));
    }
    let significant = int_digits.trim_start_matches('0');
    let max_int = precision - scale;
    if significant.len() > usize::from(max_int) {
        return Err(CastError::TooManyIntegerDigits(max_int));
    }
    let mut units: i64 = 0;
    for b in significant.bytes() {
        units = units * 10 + i64::from(b - b'0');
    }
    for i in 0..usize::from(scale) {
        let d = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        units = units * 10 + d;
    }
    Ok(Decimal {
        units: if neg { -units } else { units },
        scale,
    })
}

/// The digits of an integer part, with thousands separators removed after checking their placement.
fn integer_digits(s: &str) -> Result<String, CastError> {
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return Err(CastError::NotADecimal);
    }
    if !s.contains(',') {
        return Ok(s.to_string());
    }
    let groups: Vec<&str> = s.split(',').collect();
    let first_ok = (1..=3).contains(&groups[0].len());
    if !first_ok || groups[1..].iter().any(|g| g.len() != 3) {
        return Err(CastError::BadThousands);
    }
    Ok(groups.concat())
}

/// A calendar date: the `time` crate's, so leap years and month lengths are its rules, not ours.
pub type Date = time::Date;

/// The Julian day of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// Days since 1970-01-01 (proleptic Gregorian), used to order keys.
pub fn days_since_epoch(d: Date) -> i64 {
    i64::from(d.to_julian_day() - UNIX_EPOCH_JULIAN_DAY)
}

fn digits_value(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A date in `YYYYMMDD`, `YYYY-MM-DD`, `M/D/YYYY` or `MM/DD/YYYY`. Dates that do not exist are refused.
pub fn date(s: &str) -> Result<Date, CastError> {
    let (y, m, d) = if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        (&s[0..4], &s[4..6], &s[6..8])
    } else if s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
        (&s[0..4], &s[5..7], &s[8..10])
    } else {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(d), Some(y), None)
                if (1..=2).contains(&m.len()) && (1..=2).contains(&d.len()) && y.len() == 4 =>
            {
                (y, m, d)
            }
            _ => return Err(CastError::NotADate),
        }
    };
    let (Some(year), Some(month), Some(day)) = (digits_value(y), digits_value(m), digits_value(d))
    else {
        return Err(CastError::NotADate);
    };
    // The contract's years start at 1; the crate checks the month and the day of the month.
    if year == 0 {
        return Err(CastError::NoSuchDate);
    }
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or(CastError::NoSuchDate)?;
    let day = u8::try_from(day).map_err(|_| CastError::NoSuchDate)?;
    Date::from_calendar_date(i32::from(year), month, day).map_err(|_| CastError::NoSuchDate)
}

/// Text of at most `max` characters, without NUL bytes.
pub fn varchar(s: &str, max: u32) -> Result<&str, CastError> {
    if s.contains('\0') {
        return Err(CastError::NulByte);
    }
    // Byte length bounds character count from above: most values skip the count.
    if s.len() > max as usize {
        let len = s.chars().count();
        if len > max as usize {
            return Err(CastError::TooLong { len, max });
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(s: &str) -> Result<String, CastError> {
        decimal(trim(s), 12, 2).map(|d| d.to_string())
    }

    #[test]
    fn integers_accept_sign_digits_and_surrounding_spaces() {
        assert_eq!(integer(trim(" 42 "), i64::MIN, i64::MAX, "BIGINT"), Ok(42));
        assert_eq!(integer("-7", i64::MIN, i64::MAX, "BIGINT"), Ok(-7));
        assert_eq!(integer("+7", i64::MIN, i64::MAX, "BIGINT"), Ok(7));
        assert_eq!(integer("007", i64::MIN, i64::MAX, "BIGINT"), Ok(7));
    }

    #[test]
    fn integers_refuse_decimals_words_and_bare_signs() {
        for bad in ["1.0", "twenty", "-", "", "1 2", "1e3", "0x10"] {
            assert_eq!(
                integer(bad, i64::MIN, i64::MAX, "BIGINT"),
                Err(CastError::NotAnInteger),
                "{bad}"
            );
        }
    }

    #[test]
    fn integers_out_of_their_type_range_are_refused() {
        assert_eq!(
            integer("32768", -32768, 32767, "SMALLINT"),
            Err(CastError::OutOfRange("SMALLINT"))
        );
        assert_eq!(integer("-32768", -32768, 32767, "SMALLINT"), Ok(-32768));
        assert_eq!(
            integer("99999999999999999999", i64::MIN, i64::MAX, "BIGINT"),
            Err(CastError::OutOfRange("BIGINT"))
        );
        assert_eq!(
            integer("-9223372036854775808", i64::MIN, i64::MAX, "BIGINT"),
            Ok(i64::MIN)
        );
    }

    #[test]
    fn money_accepts_every_contract_format() {
        assert_eq!(money("1234.5").unwrap(), "1234.50");
        assert_eq!(money("-12.00").unwrap(), "-12.00");
        assert_eq!(money("$1,234.50").unwrap(), "1234.50");
        assert_eq!(money("-$1,234.50").unwrap(), "-1234.50");
        assert_eq!(money("($1,234.50)").unwrap(), "-1234.50");
        assert_eq!(money("(12.00)").unwrap(), "-12.00");
        assert_eq!(money("  7 ").unwrap(), "7.00");
        assert_eq!(money("1,234,567.00").unwrap(), "1234567.00");
        assert_eq!(money("0.05").unwrap(), "0.05");
        assert_eq!(money("-0.05").unwrap(), "-0.05");
        assert_eq!(money(".5").unwrap(), "0.50");
        assert_eq!(money("9999999999.99").unwrap(), "9999999999.99");
    }

    #[test]
    fn money_refuses_bad_separators_precision_and_scale() {
        assert_eq!(money("12,34,56"), Err(CastError::BadThousands));
        assert_eq!(money("1,2345.00"), Err(CastError::BadThousands));
        assert_eq!(money(",123"), Err(CastError::BadThousands));
        assert_eq!(money("1.234"), Err(CastError::TooManyDecimals(2)));
        assert_eq!(
            money("12345678901.00"),
            Err(CastError::TooManyIntegerDigits(10))
        );
        for bad in [
            "abc", "$", "()", "1.2.3", "--1", "$-1", "1-", "(-1)", "1e5", ".",
        ] {
            assert!(money(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn dates_accept_the_four_formats() {
        let want = Date::from_calendar_date(2019, time::Month::March, 7).unwrap();
        for s in ["20190307", "2019-03-07", "3/7/2019", "03/07/2019"] {
            assert_eq!(date(s), Ok(want), "{s}");
        }
        assert_eq!(date("2020-02-29").unwrap().to_string(), "2020-02-29");
    }

    #[test]
    fn dates_that_do_not_exist_or_are_malformed_are_refused() {
        assert_eq!(date("2019-02-30"), Err(CastError::NoSuchDate));
        assert_eq!(date("2019-02-29"), Err(CastError::NoSuchDate));
        assert_eq!(date("1900-02-29"), Err(CastError::NoSuchDate));
        assert_eq!(date("20191301"), Err(CastError::NoSuchDate));
        assert_eq!(date("13/01/2019"), Err(CastError::NoSuchDate));
        for bad in [
            "2019/03/07",
            "7-3-2019",
            "190307",
            "3/7/19",
            "yesterday",
            "2019-3-7",
        ] {
            assert_eq!(date(bad), Err(CastError::NotADate), "{bad}");
        }
    }

    #[test]
    fn days_since_epoch_orders_dates() {
        assert_eq!(days_since_epoch(date("1970-01-01").unwrap()), 0);
        assert_eq!(days_since_epoch(date("2000-03-01").unwrap()), 11_017);
        assert_eq!(days_since_epoch(date("1969-12-31").unwrap()), -1);
        assert_eq!(date("0001-01-01").unwrap().to_string(), "0001-01-01");
        assert_eq!(date("9999-12-31").unwrap().to_string(), "9999-12-31");
    }

    #[test]
    fn varchar_counts_characters_not_bytes_and_refuses_nul() {
        assert_eq!(varchar("Muñoz", 5), Ok("Muñoz"));
        assert_eq!(
            varchar("Muñozz", 5),
            Err(CastError::TooLong { len: 6, max: 5 })
        );
        assert_eq!(varchar("a\0b", 5), Err(CastError::NulByte));
    }

    #[test]
    fn error_messages_never_contain_the_value() {
        let e = integer("twenty", 0, 10, "SMALLINT")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("twenty"));
    }
}
