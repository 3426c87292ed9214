//! PostgreSQL's binary COPY format, written by the caster: each row a 16-bit field count, each field a 32-bit
//! length (-1 for NULL) and the value in the server's binary representation — integers big-endian, dates as days
//! since 2000-01-01, NUMERIC as base-10000 digits, text as its UTF-8 bytes. No escaping, no number formatting:
//! cheaper to write than COPY text and cheaper for the server to read.
//!
//! NUMERIC is exact: the value's digits in groups of four around the decimal point, the declared scale as its
//! display scale, leading and trailing zero groups dropped (as the server stores it). Tests compare every edge
//! value with what the server makes of the same value in COPY text.

use super::cast::Decimal;

/// The start of every binary COPY stream: signature, flags (none), header extension length (none).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The end of every binary COPY stream: a field count of -1.
pub const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// A NULL field.
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

/// A text field: its bytes as they are.
pub fn text(s: &str, out: &mut Vec<u8>) {
    let len = i32::try_from(s.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A SMALLINT, INTEGER or BIGINT field of `width` bytes (2, 4 or 8); the caster has checked the range.
pub fn integer(v: i64, width: usize, out: &mut Vec<u8>) {
    match width {
        2 => {
            out.extend_from_slice(&2i32.to_be_bytes());
            out.extend_from_slice(&(v as i16).to_be_bytes());
        }
        4 => {
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(&(v as i32).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// A DATE field, from its days since 1970-01-01 ([`super::cast::days_since_epoch`]).
pub fn date(days_since_epoch: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&4i32.to_be_bytes());
    let days = days_since_epoch - PG_EPOCH_DAYS;
    out.extend_from_slice(&(days as i32).to_be_bytes());
}

/// A NUMERIC field: `ndigits`, `weight` (of the first digit, in powers of 10000), sign, display scale, digits.
pub fn numeric(d: Decimal, out: &mut Vec<u8>) {
    if d.scale <= 4 {
        numeric_short_scale(d, out);
    } else {
        numeric_any_scale(d, out);
    }
}

/// [`numeric`] for any scale (128-bit arithmetic).
fn numeric_any_scale(d: Decimal, out: &mut Vec<u8>) {
    let scale = u32::from(d.scale);
    let abs = u128::from(d.units.unsigned_abs());
    let pow = 10u128.pow(scale);
    let (mut int, frac) = (abs / pow, abs % pow);
    // Fractional digits padded to whole groups of four: 0.5 at scale 2 is 50 → 5000 (one group).
    let frac_groups = scale.div_ceil(4);
    let mut frac_padded = frac * 10u128.pow(frac_groups * 4 - scale);
    let mut digits = [0u16; 16];
    let mut n = 0;
    // Integer groups, least significant first, then reversed.
    let mut int_groups = [0u16; 8];
    let mut ni = 0;
    while int > 0 {
        int_groups[ni] = (int % 10_000) as u16;
        int /= 10_000;
        ni += 1;
    }
    for i in (0..ni).rev() {
        digits[n] = int_groups[i];
        n += 1;
    }
    let mut frac_digits = [0u16; 8];
    for i in (0..frac_groups as usize).rev() {
        frac_digits[i] = (frac_padded % 10_000) as u16;
        frac_padded /= 10_000;
    }
    for &g in &frac_digits[..frac_groups as usize] {
        digits[n] = g;
        n += 1;
    }
    write_numeric(&digits[..n], ni as i16 - 1, d.units < 0, d.scale, out);
}

/// [`numeric`] for scales up to 4 (money and units are scale 2): one fractional group, 64-bit arithmetic.
fn numeric_short_scale(d: Decimal, out: &mut Vec<u8>) {
    let abs = d.units.unsigned_abs();
    let pow = 10u64.pow(u32::from(d.scale));
    let (mut int, frac) = (abs / pow, abs % pow);
    // At most five integer groups (u64 < 10^20), then the fractional group when the scale has one.
    let mut digits = [0u16; 6];
    let mut start = 5;
    while int > 0 {
        start -= 1;
        digits[start] = (int % 10_000) as u16;
        int /= 10_000;
    }
    let int_groups = 5 - start;
    let mut end = 5;
    if d.scale > 0 {
        digits[5] = (frac * 10u64.pow(4 - u32::from(d.scale))) as u16;
        end = 6;
    }
    write_numeric(
        &digits[start..end],
        int_groups as i16 - 1,
        d.units < 0,
        d.scale,
        out,
    );
}

/// Write a NUMERIC field from its base-10000 `digits`, most significant first, the first of weight `weight`:
/// leading zero groups (a value below 1) and trailing ones are dropped, as the server stores the value; zero has
/// no digits, weight 0 and no sign.
fn write_numeric(digits: &[u16], mut weight: i16, negative: bool, scale: u8, out: &mut Vec<u8>) {
    let mut first = 0;
    while first < digits.len() && digits[first] == 0 {
        first += 1;
        weight -= 1;
    }
    let mut last = digits.len();
    while last > first && digits[last - 1] == 0 {
        last -= 1;
    }
    let used = &digits[first..last];
    if used.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !used.is_empty() {
        0x4000
    } else {
        0
    };
    out.extend_from_slice(&((8 + 2 * used.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(used.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&i16::from(scale).to_be_bytes());
    for g in used {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::cast::{Date, days_since_epoch};
    use super::*;

    fn numeric_bytes(units: i64, scale: u8) -> Vec<u8> {
        let mut out = Vec::new();
        numeric(Decimal { units, scale }, &mut out);
        out
    }

    /// (ndigits, weight, sign, dscale, digits) of an encoded NUMERIC.
    fn parts(b: &[u8]) -> (i16, i16, u16, i16, Vec<u16>) {
        let word = |i: usize| u16::from_be_bytes([b[4 + 2 * i], b[5 + 2 * i]]);
        let nd = word(0) as i16;
        let digits = (0..nd as usize).map(|i| word(4 + i)).collect();
        (nd, word(1) as i16, word(2), word(3) as i16, digits)
    }

    #[test]
    fn numerics_are_base_10000_groups_around_the_point() {
        assert_eq!(parts(&numeric_bytes(0, 2)), (0, 0, 0, 2, vec![]));
        assert_eq!(parts(&numeric_bytes(-1, 2)), (1, -1, 0x4000, 2, vec![100]));
        assert_eq!(
            parts(&numeric_bytes(123_450, 2)),
            (2, 0, 0, 2, vec![1234, 5000])
        );
        assert_eq!(
            parts(&numeric_bytes(999_999_999_999, 2)),
            (4, 2, 0, 2, vec![99, 9999, 9999, 9900])
        );
        assert_eq!(parts(&numeric_bytes(1_000_000, 2)), (1, 1, 0, 2, vec![1]));
        assert_eq!(
            parts(&numeric_bytes(-500_000_000, 2)),
            (1, 1, 0x4000, 2, vec![500])
        );
        assert_eq!(
            parts(&numeric_bytes(12_345, 0)),
            (2, 1, 0, 0, vec![1, 2345])
        );
        assert_eq!(parts(&numeric_bytes(5, 1)), (1, -1, 0, 1, vec![5000]));
        // The field's length: 8 header bytes and two per digit.
        let b = numeric_bytes(123_450, 2);
        assert_eq!(i32::from_be_bytes([b[0], b[1], b[2], b[3]]), 12);
        assert_eq!(b.len(), 16);
    }

    #[test]
    fn the_short_scale_path_writes_what_the_general_one_does() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = vec![
            0,
            1,
            -1,
            9999,
            10_000,
            -10_000,
            i64::MAX,
            i64::MIN + 1,
            100_000_000,
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let magnitude = 10i64.pow((x % 19) as u32);
            values.push((x as i64) % magnitude.max(1));
        }
        for units in values {
            for scale in 0..=4 {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                numeric_short_scale(Decimal { units, scale }, &mut a);
                numeric_any_scale(Decimal { units, scale }, &mut b);
                assert_eq!(a, b, "{units} at scale {scale}");
            }
        }
    }

    #[test]
    fn dates_count_days_from_2000_and_integers_are_big_endian() {
        let mut out = Vec::new();
        date(
            days_since_epoch(Date::from_calendar_date(2000, time::Month::January, 1).unwrap()),
            &mut out,
        );
        date(
            days_since_epoch(Date::from_calendar_date(1999, time::Month::December, 31).unwrap()),
            &mut out,
        );
        assert_eq!(
            out,
            [0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 4, 255, 255, 255, 255]
        );
        let mut out = Vec::new();
        integer(-2, 2, &mut out);
        integer(258, 4, &mut out);
        integer(i64::MIN, 8, &mut out);
        assert_eq!(&out[..6], [0, 0, 0, 2, 255, 254]);
        assert_eq!(&out[6..14], [0, 0, 0, 4, 0, 0, 1, 2]);
        assert_eq!(&out[14..], [0, 0, 0, 8, 128, 0, 0, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        null(&mut out);
        text("é", &mut out);
        assert_eq!(out, [255, 255, 255, 255, 0, 0, 0, 2, 0xc3, 0xa9]);
        assert_eq!(HEADER.len(), 19);
    }
}
