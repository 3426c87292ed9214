//! The billing files read independently of the loader, for the tests that check figures against them: CSV records
//! as header → value maps, and money and dates parsed per the warehouse contract (exact cents).

// Every test binary that declares `mod common` compiles this module; only some of them read the files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// `(year, month, day)`.
pub type Date = (u32, u32, u32);

/// `YYYY-MM-DD`.
pub fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.0, d.1, d.2)
}

/// The first day of the month, `YYYY-MM-01`.
pub fn month(d: Date) -> String {
    iso((d.0, d.1, 1))
}

/// `YYYYMMDD`, `YYYY-MM-DD`, `M/D/YYYY` or `MM/DD/YYYY`.
pub fn parse_date(s: &str) -> Date {
    let s = s.trim();
    let n = |t: &str| -> u32 { t.parse().unwrap_or_else(|_| panic!("bad date {s:?}")) };
    if let Some((m, rest)) = s.split_once('/') {
        let (d, y) = rest
            .split_once('/')
            .unwrap_or_else(|| panic!("bad date {s:?}"));
        (n(y), n(m), n(d))
    } else if s.contains('-') {
        let parts: Vec<&str> = s.split('-').collect();
        (n(parts[0]), n(parts[1]), n(parts[2]))
    } else {
        assert_eq!(s.len(), 8, "bad date {s:?}");
        (n(&s[..4]), n(&s[4..6]), n(&s[6..]))
    }
}

/// Exact hundredths of `1234.5`, `-12.00`, `$1,234.50`, `-$1,234.50`, `($1,234.50)`, `(12.00)`, spaces around.
pub fn parse_money(s: &str) -> i64 {
    let mut t = s.trim();
    let mut negative = false;
    if let Some(inner) = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        negative = true;
        t = inner;
    }
    if let Some(rest) = t.strip_prefix('-') {
        negative = true;
        t = rest;
    }
    let t = t.strip_prefix('$').unwrap_or(t).replace(',', "");
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    assert!(frac.len() <= 2, "bad amount {s:?}");
    let whole: i64 = whole.parse().unwrap_or_else(|_| panic!("bad amount {s:?}"));
    let frac: i64 = format!("{frac:0<2}")
        .parse()
        .unwrap_or_else(|_| panic!("bad amount {s:?}"));
    let v = whole * 100 + frac;
    if negative { -v } else { v }
}

/// Records of a CSV file as header → value maps, decoded from the encoding the manifest names.
pub fn read_table(dir: &Path, file: &str, encoding: &str) -> Vec<BTreeMap<String, String>> {
    let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let text = match encoding {
        "windows-1252" => encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned(),
        _ => String::from_utf8(bytes).unwrap_or_else(|e| panic!("{file}: {e}")),
    };
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let (header, records) = records(text);
    records
        .into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

/// The header and the records of CSV text, each a list of fields.
pub fn records(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let records = reader
        .records()
        .map(|r| r.expect("a CSV record").iter().map(String::from).collect())
        .collect();
    (header, records)
}

/// A record's value of column `name`.
pub fn field<'a>(record: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    record
        .get(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_str()
}

/// A record's column `name` as a key.
pub fn key(record: &BTreeMap<String, String>, name: &str) -> i64 {
    field(record, name)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a key"))
}

/// `-1234.50`, as PostgreSQL prints a NUMERIC with scale 2.
pub fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        cents.unsigned_abs() / 100,
        cents.unsigned_abs() % 100
    )
}

/// `numerator / denominator` to four places, half away from zero, in exact integers; NULL for a zero denominator.
pub fn rate(numerator: i64, denominator: i64) -> Option<String> {
    if denominator == 0 {
        return None;
    }
    let n = i128::from(numerator) * 10_000;
    let d = i128::from(denominator);
    let q = (2 * n.abs() + d.abs()) / (2 * d.abs());
    let negative = (n < 0) != (d < 0) && q != 0;
    Some(format!(
        "{}{}.{:04}",
        if negative { "-" } else { "" },
        q / 10_000,
        q % 10_000
    ))
}
