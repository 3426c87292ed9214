//! Transform: match a file's header to its table, then validate and cast each record to the table's types,
//! writing accepted rows in PostgreSQL's binary COPY format (or COPY text, or CSV for Redshift's COPY from S3) and
//! rejected rows (with line, column and rule) aside.

pub mod binary;
pub mod cast;
pub mod quality;

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::schema::{ColumnType, Table};
use crate::source::{Fields, Record};
use cast::CastError;
pub use quality::{Quality, Tally};

/// Why a header cannot be loaded into its table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file has no header line (or only an empty one).
    #[error("the file is empty: it has no header line")]
    Empty,
    /// A column the table requires is not in the header.
    #[error("missing column '{column}' (table {table} needs it)")]
    MissingColumn {
        /// The column's source header.
        column: String,
        /// The warehouse table.
        table: String,
    },
    /// Two header columns name the same table column.
    #[error(
        "column '{column}' appears more than once in the header (columns {first} and {second})"
    )]
    DuplicateColumn {
        /// The table column's source header.
        column: String,
        /// The 1-based position of its first occurrence.
        first: usize,
        /// The 1-based position of the second.
        second: usize,
    },
}

/// Where each table column is found in the file's records.
#[derive(Debug, Clone)]
pub struct HeaderMap {
    /// For each table column, its index in a record (`None`: an optional column the file lacks, loaded as NULL).
    pub indices: Vec<Option<usize>>,
    /// 1-based positions of header columns the table does not have (ignored, reported by position only: a header
    /// that lost its line end would otherwise print a patient's record).
    pub extra_columns: Vec<usize>,
    /// The header names as they appear in the file (written only into rejects files, never into reports).
    pub header: Vec<String>,
    /// How reports name each position: the schema's source header where it maps, `column N` elsewhere.
    pub names: Vec<String>,
}

impl HeaderMap {
    /// How reports name the field at 0-based `index`.
    pub fn name(&self, index: usize) -> String {
        self.names
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("column {}", index + 1))
    }
}

/// "3 extra columns at positions 10–12 (ignored)", or `None` when there are none. Never the names.
pub fn describe_extra_columns(positions: &[usize]) -> Option<String> {
    if positions.is_empty() {
        return None;
    }
    let mut ranges: Vec<String> = Vec::new();
    let mut i = 0;
    while i < positions.len() {
        let start = positions[i];
        let mut end = start;
        while i + 1 < positions.len() && positions[i + 1] == end + 1 {
            i += 1;
            end = positions[i];
        }
        ranges.push(if start == end {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    let (noun, place) = if positions.len() == 1 {
        ("extra column", "position")
    } else {
        ("extra columns", "positions")
    };
    Some(format!(
        "{} {noun} at {place} {} (ignored)",
        positions.len(),
        ranges.join(", ")
    ))
}

/// A header name reduced for matching: lower case, without spaces or underscores.
pub fn normalize_header(name: &str) -> String {
    crate::schema::normalize_name(name)
}

/// Match a header to a table: case-insensitive, ignoring spaces and underscores, in any order. A column may be
/// named by its source header (`dimPatientPK`) or its warehouse name (`dim_patient_pk`).
pub fn map_header(table: &Table, header: &Fields<'_>) -> Result<HeaderMap, HeaderError> {
    if header.is_empty() || (header.len() == 1 && header.get(0).trim().is_empty()) {
        return Err(HeaderError::Empty);
    }
    let normalized: Vec<String> = header.iter().map(normalize_header).collect();
    let mut shown: Vec<String> = (1..=header.len()).map(|i| format!("column {i}")).collect();
    let mut used = vec![false; header.len()];
    let mut indices = Vec::with_capacity(table.columns.len());
    for col in &table.columns {
        let names = [normalize_header(col.source), normalize_header(&col.name)];
        let mut found = normalized
            .iter()
            .enumerate()
            .filter(|(_, h)| names.contains(h));
        let Some((idx, _)) = found.next() else {
            if col.optional {
                indices.push(None);
                continue;
            }
            return Err(HeaderError::MissingColumn {
                column: col.source.to_string(),
                table: table.name.clone(),
            });
        };
        if let Some((dup, _)) = found.next() {
            return Err(HeaderError::DuplicateColumn {
                column: col.source.to_string(),
                first: idx + 1,
                second: dup + 1,
            });
        }
        used[idx] = true;
        shown[idx] = col.source.to_string();
        indices.push(Some(idx));
    }
    let extra_columns = used
        .iter()
        .enumerate()
        .filter(|(_, u)| !**u)
        .map(|(i, _)| i + 1)
        .collect();
    Ok(HeaderMap {
        indices,
        extra_columns,
        header: header.iter().map(str::to_string).collect(),
        names: shown,
    })
}

/// One rejected row: where, which column and which rule. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    /// The 1-based line the record starts on.
    pub line: u64,
    /// The schema's source header of the offending column (or `column N` for a column the table does not have),
    /// `None` for row-level problems. Never the file's own header text.
    pub column: Option<String>,
    /// The rule that failed, machine-readable (e.g. `integer`, `field_count`; see [`CastError::rule`]).
    pub rule: &'static str,
    /// What is wrong, in words, without the value.
    pub reason: String,
}

impl Reject {
    /// "line 812, PatientAge: is not an integer".
    pub fn describe(&self) -> String {
        match &self.column {
            Some(c) => format!("line {}, {}: {}", self.line, c, self.reason),
            None => format!("line {}: {}", self.line, self.reason),
        }
    }
}

/// The primary key of an accepted row, as an orderable number (dates as days), to detect whether a file's keys
/// are strictly increasing (then it cannot hold duplicates and the merge skips de-duplication).
pub type KeyOrder = i64;

/// How accepted rows are spelled: row start, separator, NULL, text, numbers and dates. The text formats write
/// numbers and dates the same way (`-12.50`, `2019-01-05`, never quoted: the defaults below); binary COPY writes
/// them in the server's binary representation.
pub trait RowFormat {
    /// Before a row's first field (binary COPY: room for the field count, which the sink fills in when it knows
    /// whether the row carries its line).
    fn begin_row(_out: &mut Vec<u8>) {}
    /// Between two fields.
    fn separator(out: &mut Vec<u8>);
    /// Append a NULL.
    fn null(out: &mut Vec<u8>);
    /// Append a text value.
    fn text(s: &str, out: &mut Vec<u8>);
    /// Append an integer of a column `width` bytes wide (2, 4 or 8), in range.
    fn integer(v: i64, _width: usize, out: &mut Vec<u8>) {
        let _ = write!(out, "{v}");
    }
    /// Append an exact decimal.
    fn decimal(d: cast::Decimal, out: &mut Vec<u8>) {
        let _ = write!(out, "{d}");
    }
    /// Append a date (`days` is its [`cast::days_since_epoch`], computed once for the format and the key).
    fn date(d: cast::Date, _days: i64, out: &mut Vec<u8>) {
        let _ = write!(out, "{d}");
    }
}

/// PostgreSQL's binary COPY format ([`binary`]): what the PostgreSQL loader sends.
pub struct CopyBinary;

impl RowFormat for CopyBinary {
    fn begin_row(out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0]);
    }

    fn separator(_out: &mut Vec<u8>) {}

    fn null(out: &mut Vec<u8>) {
        binary::null(out);
    }

    fn text(s: &str, out: &mut Vec<u8>) {
        binary::text(s, out);
    }

    fn integer(v: i64, width: usize, out: &mut Vec<u8>) {
        binary::integer(v, width, out);
    }

    fn decimal(d: cast::Decimal, out: &mut Vec<u8>) {
        binary::numeric(d, out);
    }

    fn date(_d: cast::Date, days: i64, out: &mut Vec<u8>) {
        binary::date(days, out);
    }
}

/// End a binary COPY row that began at `row_start`: its field count (`columns`, plus one with the line) and, for
/// staged rows, the source line as a last BIGINT field.
pub fn end_binary_row(out: &mut Vec<u8>, row_start: usize, columns: usize, line: Option<u64>) {
    let fields = columns + usize::from(line.is_some());
    let count = (fields as i16).to_be_bytes();
    out[row_start] = count[0];
    out[row_start + 1] = count[1];
    if let Some(line) = line {
        binary::integer(line as i64, 8, out);
    }
}

/// PostgreSQL's COPY text format: tab-separated, `\N` for NULL, backslash escapes.
pub struct CopyText;

impl RowFormat for CopyText {
    fn separator(out: &mut Vec<u8>) {
        out.push(b'\t');
    }

    fn null(out: &mut Vec<u8>) {
        out.extend_from_slice(b"\\N");
    }

    fn text(s: &str, out: &mut Vec<u8>) {
        escape_copy_text(s, out);
    }
}

/// CSV as Redshift's `COPY … CSV NULL AS ''` reads it: comma-separated; NULL an unquoted empty field; every text
/// value quoted, with `"` doubled inside, so commas, quotes, CR and LF are data. A text value is never empty (the
/// contract makes empty NULL) and a quoted `""` would still read back as an empty string, not NULL.
pub struct Csv;

impl RowFormat for Csv {
    fn separator(out: &mut Vec<u8>) {
        out.push(b',');
    }

    fn null(_out: &mut Vec<u8>) {}

    fn text(s: &str, out: &mut Vec<u8>) {
        out.push(b'"');
        let bytes = s.as_bytes();
        if memchr::memchr(b'"', bytes).is_none() {
            out.extend_from_slice(bytes);
        } else {
            for &b in bytes {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
        }
        out.push(b'"');
    }
}

/// Casts records of one table into rows of one format (COPY text unless chosen otherwise).
pub struct RowCaster<'a, F = CopyText> {
    table: &'a Table,
    map: &'a HeaderMap,
    format: std::marker::PhantomData<F>,
}

impl<'a> RowCaster<'a, CopyText> {
    /// A caster writing PostgreSQL COPY text.
    pub fn new(table: &'a Table, map: &'a HeaderMap) -> Self {
        RowCaster::with_format(table, map)
    }
}

impl<'a, F: RowFormat> RowCaster<'a, F> {
    /// A caster writing rows in format `F`.
    pub fn with_format(table: &'a Table, map: &'a HeaderMap) -> Self {
        RowCaster {
            table,
            map,
            format: std::marker::PhantomData,
        }
    }

    /// Cast one record and append its fields to `out` in format `F`, separated, without a line end (see
    /// [`end_row`] and [`end_csv_row`]). On rejection nothing is appended. A record with a structural anomaly is
    /// rejected with the anomaly's rule. Text is kept byte-exact; typed values are trimmed; an empty field is NULL.
    pub fn write_row(&self, record: &Record<'_>, out: &mut Vec<u8>) -> Result<KeyOrder, Reject> {
        self.write_row_tallied(record, out, None)
    }

    /// [`RowCaster::write_row`], counting an accepted row's quality figures in `tally`.
    pub fn write_row_tallied(
        &self,
        record: &Record<'_>,
        out: &mut Vec<u8>,
        mut tally: Option<&mut Tally>,
    ) -> Result<KeyOrder, Reject> {
        let line = record.line;
        if let Some(anomaly) = record.anomaly {
            return Err(Reject {
                line,
                column: anomaly.field().map(|f| self.map.name(f)),
                rule: anomaly.rule(),
                reason: anomaly.reason(),
            });
        }
        let fields = &record.fields;
        if fields.len() != self.map.header.len() {
            let span = if record.last_line > line {
                format!(
                    " (the record runs from line {line} to line {}: a quoted field may be missing its closing \
                     quote)",
                    record.last_line
                )
            } else {
                String::new()
            };
            return Err(Reject {
                line,
                column: None,
                rule: "field_count",
                reason: format!(
                    "has {} fields, the header has {}{span}",
                    fields.len(),
                    self.map.header.len()
                ),
            });
        }
        let start = out.len();
        F::begin_row(out);
        let mut key = 0;
        for (i, (col, &idx)) in self.table.columns.iter().zip(&self.map.indices).enumerate() {
            if i > 0 {
                F::separator(out);
            }
            let raw = match idx {
                Some(idx) => fields.get(idx),
                None => "",
            };
            let value = match col.ty {
                ColumnType::Varchar(_) => raw,
                _ => cast::trim(raw),
            };
            let is_pk = self.table.is_key(i);
            let is_null = value.is_empty();
            let result = if is_null {
                if is_pk {
                    Err(CastError::NullPrimaryKey)
                } else {
                    F::null(out);
                    Ok(0)
                }
            } else {
                write_value::<F>(col.ty, value, out)
            };
            match result {
                Ok(k) => {
                    if i == self.table.pk_index {
                        key = k;
                    }
                    if let Some(t) = tally.as_deref_mut()
                        && t.watches(i)
                    {
                        t.value(i, (!is_null).then_some(k));
                    }
                }
                Err(e) => {
                    out.truncate(start);
                    return Err(Reject {
                        line,
                        column: Some(col.source.to_string()),
                        rule: e.rule(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if let Some(t) = tally {
            t.accept();
        }
        Ok(key)
    }
}

/// End a COPY text row: with the source line as a last column (staging rows) or without (appended rows).
pub fn end_row(out: &mut Vec<u8>, line: Option<u64>) {
    if let Some(line) = line {
        let _ = write!(out, "\t{line}");
    }
    out.push(b'\n');
}

/// End a CSV row with the source line as its last column (staged rows always carry it).
pub fn end_csv_row(out: &mut Vec<u8>, line: u64) {
    let _ = writeln!(out, ",{line}");
}

/// Cast one non-empty value and append it in format `F`. Returns its key order (for key columns).
fn write_value<F: RowFormat>(
    ty: ColumnType,
    value: &str,
    out: &mut Vec<u8>,
) -> Result<KeyOrder, CastError> {
    match ty {
        ColumnType::SmallInt => int::<F>(
            value,
            i64::from(i16::MIN),
            i64::from(i16::MAX),
            ("SMALLINT", 2),
            out,
        ),
        ColumnType::Integer => int::<F>(
            value,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            ("INTEGER", 4),
            out,
        ),
        ColumnType::BigInt => int::<F>(value, i64::MIN, i64::MAX, ("BIGINT", 8), out),
        ColumnType::Numeric { precision, scale } => {
            let d = cast::decimal(value, precision, scale)?;
            F::decimal(d, out);
            Ok(d.units)
        }
        ColumnType::Date => {
            let d = cast::date(value)?;
            let days = cast::days_since_epoch(d);
            F::date(d, days, out);
            Ok(days)
        }
        ColumnType::Varchar(max) => {
            F::text(cast::varchar(value, max)?, out);
            Ok(0)
        }
        ColumnType::Text
        | ColumnType::Boolean
        | ColumnType::Timestamp
        | ColumnType::Json
        | ColumnType::Serial => Err(CastError::NotLoadable("ledger")),
    }
}

/// An integer column of `(name, width)`.
fn int<F: RowFormat>(
    value: &str,
    min: i64,
    max: i64,
    (name, width): (&'static str, usize),
    out: &mut Vec<u8>,
) -> Result<i64, CastError> {
    let v = cast::integer(value, min, max, name)?;
    F::integer(v, width, out);
    Ok(v)
}

/// Escape text for PostgreSQL's COPY text format.
pub fn escape_copy_text(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Writes rejected rows as CSV: where and why, then the row's own fields under the file's header, so the file can
/// be fixed and dropped back in (the extra columns are ignored on load).
pub struct RejectWriter<W: Write> {
    writer: csv::Writer<W>,
    source: String,
}

/// Leading columns of a rejects file.
pub const REJECT_COLUMNS: [&str; 5] = [
    "rejected_source",
    "rejected_line",
    "rejected_column",
    "rejected_rule",
    "rejected_reason",
];

impl<W: Write> RejectWriter<W> {
    /// A writer into `inner` for rejects of `source` (the object's name), writing the header line at once: the
    /// [`REJECT_COLUMNS`], then the file's own `header`.
    pub fn new(inner: W, source: &str, header: &[String]) -> io::Result<Self> {
        let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(inner);
        let head: Vec<&str> = REJECT_COLUMNS
            .iter()
            .copied()
            .chain(header.iter().map(String::as_str))
            .collect();
        writer.write_record(&head).map_err(io::Error::other)?;
        Ok(RejectWriter {
            writer,
            source: source.to_string(),
        })
    }

    /// Write one rejected row with its fields (none when they were over a size limit).
    pub fn write(&mut self, reject: &Reject, fields: &Fields<'_>) -> io::Result<()> {
        let line = reject.line.to_string();
        let lead = [
            self.source.as_str(),
            line.as_str(),
            reject.column.as_deref().unwrap_or(""),
            reject.rule,
            reject.reason.as_str(),
        ];
        let row = lead.into_iter().chain(fields.iter());
        self.writer.write_record(row).map_err(io::Error::other)
    }

    /// Flush the rows written and give back the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.writer
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Counters kept while transforming one object; bounded in size whatever the file's length.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TransformStats {
    /// Records read (the header excluded).
    pub rows_read: u64,
    /// Records cast into rows.
    pub rows_accepted: u64,
    /// Records rejected.
    pub rows_rejected: u64,
    /// Whether the staged rows' keys strictly increase (then they hold no duplicates and need no sort).
    pub keys_increasing: bool,
    /// The first rejections, for reports (all of them are in the rejects file).
    pub first_rejects: Vec<Reject>,
    /// Rejections counted by column and rule.
    pub rejects_by_rule: BTreeMap<String, u64>,
}

/// How many rejections a report lists individually.
pub const REPORTED_REJECTS: usize = 20;

impl TransformStats {
    /// No rows yet (keys count as increasing until a row says otherwise).
    pub fn new() -> Self {
        TransformStats {
            keys_increasing: true,
            ..Default::default()
        }
    }

    /// Count one rejection: in the total, by column and rule, and among the first [`REPORTED_REJECTS`].
    pub fn record_reject(&mut self, reject: &Reject) {
        self.rows_rejected += 1;
        let key = format!(
            "{}:{}",
            reject.column.as_deref().unwrap_or("row"),
            reject.rule
        );
        *self.rejects_by_rule.entry(key).or_default() += 1;
        if self.first_rejects.len() < REPORTED_REJECTS {
            self.first_rejects.push(reject.clone());
        }
    }

    /// The share of rows rejected.
    pub fn reject_ratio(&self) -> f64 {
        if self.rows_read == 0 {
            0.0
        } else {
            self.rows_rejected as f64 / self.rows_read as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SCHEMA;
    use crate::source::OwnedFields;

    fn cows(v: &[&str]) -> OwnedFields {
        OwnedFields::from_strs(v)
    }

    fn record(fields: &OwnedFields) -> Record<'_> {
        Record {
            line: 7,
            last_line: 7,
            fields: fields.as_fields(),
            anomaly: None,
        }
    }

    fn payer() -> &'static Table {
        SCHEMA.by_name("dim_payer").unwrap()
    }

    #[test]
    fn headers_match_ignoring_case_spaces_underscores_and_order() {
        let t = SCHEMA.by_name("dim_location").unwrap();
        let m = map_header(
            t,
            &cows(&["Location Name", "notes", "DIM_LOCATION_PK"]).as_fields(),
        )
        .unwrap();
        assert_eq!(m.indices, [Some(2), Some(0)]);
        assert_eq!(m.extra_columns, [2]);
        assert_eq!(
            describe_extra_columns(&m.extra_columns).as_deref(),
            Some("1 extra column at position 2 (ignored)")
        );
    }

    #[test]
    fn warehouse_column_names_are_accepted_as_headers() {
        let t = SCHEMA.by_name("dim_transaction").unwrap();
        let h = cows(&[
            "dim_transaction_pk",
            "transaction_type",
            "transaction_desc",
            "adjustment_reason",
        ]);
        assert!(map_header(t, &h.as_fields()).is_ok());
    }

    #[test]
    fn a_missing_column_is_named() {
        let e = map_header(payer(), &cows(&["dimPayerPK"]).as_fields()).unwrap_err();
        assert_eq!(
            e,
            HeaderError::MissingColumn {
                column: "PayerName".into(),
                table: "dim_payer".into()
            }
        );
        assert!(e.to_string().contains("PayerName"));
    }

    #[test]
    fn a_column_given_twice_is_refused() {
        let e = map_header(
            payer(),
            &cows(&["dimPayerPK", "PayerName", "payer_name"]).as_fields(),
        )
        .unwrap_err();
        assert!(matches!(e, HeaderError::DuplicateColumn { .. }));
    }

    #[test]
    fn an_empty_header_is_refused() {
        assert_eq!(
            map_header(payer(), &cows(&[""]).as_fields()).unwrap_err(),
            HeaderError::Empty
        );
    }

    fn cast_row(table: &str, header: &[&str], row: &[&str]) -> Result<String, Reject> {
        let t = SCHEMA.by_name(table).unwrap();
        let m = map_header(t, &cows(header).as_fields()).unwrap();
        let mut out = Vec::new();
        RowCaster::new(t, &m).write_row(&record(&cows(row)), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn accepted_rows_become_copy_text_in_table_order() {
        let row = cast_row(
            "dim_payer",
            &["PayerName", "dimPayerPK"],
            &["Blue\tCross\\", " 3 "],
        )
        .unwrap();
        assert_eq!(row, "3\tBlue\\tCross\\\\");
    }

    #[test]
    fn text_keeps_its_spaces_and_only_an_empty_field_is_null() {
        let row = cast_row(
            "dim_payer",
            &["dimPayerPK", "PayerName"],
            &[" 3 ", " Aetna  "],
        )
        .unwrap();
        assert_eq!(row, "3\t Aetna  ");
        let row = cast_row("dim_payer", &["dimPayerPK", "PayerName"], &["3", "  "]).unwrap();
        assert_eq!(row, "3\t  ");
    }

    #[test]
    fn extra_columns_are_described_by_count_and_position_only() {
        assert_eq!(describe_extra_columns(&[]), None);
        assert_eq!(
            describe_extra_columns(&[10, 11, 12, 15]).as_deref(),
            Some("4 extra columns at positions 10–12, 15 (ignored)")
        );
        let t = SCHEMA.by_name("dim_payer").unwrap();
        let m = map_header(
            t,
            &cows(&["dimPayerPK", "PayerName", "Jane Doe"]).as_fields(),
        )
        .unwrap();
        assert_eq!(m.name(2), "column 3");
        assert_eq!(m.name(1), "PayerName");
    }

    #[test]
    fn a_record_with_an_anomaly_is_rejected_by_its_rule_and_position() {
        let t = SCHEMA.by_name("dim_payer").unwrap();
        let m = map_header(t, &cows(&["PayerName", "dimPayerPK"]).as_fields()).unwrap();
        let f = cows(&["x\"y", "1"]);
        let rec = Record {
            anomaly: Some(crate::source::Anomaly::BareQuote { field: 0 }),
            ..record(&f)
        };
        let r = RowCaster::new(t, &m)
            .write_row(&rec, &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            (r.rule, r.column.as_deref()),
            ("bare_quote", Some("PayerName"))
        );
        let f = cows(&["only one field"]);
        let rec = Record {
            last_line: 9,
            ..record(&f)
        };
        let r = RowCaster::new(t, &m)
            .write_row(&rec, &mut Vec::new())
            .unwrap_err();
        assert!(r.reason.contains("from line 7 to line 9"), "{}", r.reason);
    }

    #[test]
    fn empty_values_are_null_but_an_empty_key_is_rejected() {
        let row = cast_row("dim_payer", &["dimPayerPK", "PayerName"], &["3", ""]).unwrap();
        assert_eq!(row, "3\t\\N");
        let r = cast_row("dim_payer", &["dimPayerPK", "PayerName"], &["", "x"]).unwrap_err();
        assert_eq!(r.rule, "primary_key_null");
        assert_eq!(r.column.as_deref(), Some("dimPayerPK"));
        assert_eq!(r.line, 7);
    }

    #[test]
    fn a_row_with_the_wrong_field_count_is_rejected() {
        let r = cast_row("dim_payer", &["dimPayerPK", "PayerName"], &["3"]).unwrap_err();
        assert_eq!(r.rule, "field_count");
        assert_eq!(r.column, None);
    }

    #[test]
    fn a_rejection_names_line_column_and_rule_without_the_value() {
        let t = SCHEMA.by_name("dim_patient").unwrap();
        let header: Vec<&str> = t.columns.iter().map(|c| c.source).collect();
        let mut row = vec!["1", "0001", "A", "B", "", "F", "twenty", "X", "TX"];
        let r = cast_row("dim_patient", &header, &row).unwrap_err();
        assert_eq!(r.describe(), "line 7, PatientAge: is not an integer");
        assert!(!r.reason.contains("twenty"));
        row[6] = "40";
        assert!(cast_row("dim_patient", &header, &row).is_ok());
    }

    #[test]
    fn fact_rows_cast_money_and_dates() {
        let t = SCHEMA.by_name("fact_table").unwrap();
        let header: Vec<&str> = t.columns.iter().map(|c| c.source).collect();
        let row = [
            "1",
            "2",
            "3",
            "20190105",
            "1/4/2019",
            "5",
            "6",
            "7",
            "8",
            "000123",
            "9",
            "1.5",
            "$1,234.50",
            "(100.00)",
            "-$34.50",
            "1,100.00",
        ];
        let out = cast_row("fact_table", &header, &row).unwrap();
        assert_eq!(
            out,
            "1\t2\t3\t2019-01-05\t2019-01-04\t5\t6\t7\t8\t000123\t9\t1.50\t1234.50\t-100.00\t-34.50\t1100.00"
        );
    }

    fn cast_csv_row(table: &str, header: &[&str], row: &[&str]) -> Result<String, Reject> {
        let t = SCHEMA.by_name(table).unwrap();
        let m = map_header(t, &cows(header).as_fields()).unwrap();
        let mut out = Vec::new();
        RowCaster::<Csv>::with_format(t, &m).write_row(&record(&cows(row)), &mut out)?;
        end_csv_row(&mut out, 7);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn csv_rows_quote_every_text_value_and_leave_null_empty() {
        let row = cast_csv_row(
            "dim_transaction",
            &[
                "dimTransactionPK",
                "TransactionType",
                "Transaction",
                "AdjustmentReason",
            ],
            &["-4", "Say \"hi\", é", "line\nbreak\\", ""],
        )
        .unwrap();
        assert_eq!(row, "-4,\"Say \"\"hi\"\", é\",\"line\nbreak\\\",,7\n");
    }

    #[test]
    fn csv_rows_write_numbers_and_dates_unquoted() {
        let t = SCHEMA.by_name("fact_table").unwrap();
        let header: Vec<&str> = t.columns.iter().map(|c| c.source).collect();
        let row = [
            "1",
            "2",
            "3",
            "20190105",
            "",
            "5",
            "6",
            "7",
            "8",
            "000123",
            "9",
            "1.5",
            "$1,234.50",
            "(100.00)",
            "-$34.50",
            "",
        ];
        assert_eq!(
            cast_csv_row("fact_table", &header, &row).unwrap(),
            "1,2,3,2019-01-05,,5,6,7,8,\"000123\",9,1.50,1234.50,-100.00,-34.50,,7\n"
        );
    }

    #[test]
    fn a_value_longer_than_its_column_is_rejected_not_truncated() {
        let long = "x".repeat(201);
        let r = cast_row("dim_payer", &["dimPayerPK", "PayerName"], &["1", &long]).unwrap_err();
        assert_eq!(r.rule, "varchar_length");
    }

    #[test]
    fn reject_files_carry_position_rule_and_the_original_fields() {
        let header = vec!["dimPayerPK".to_string(), "PayerName".to_string()];
        let mut w = RejectWriter::new(Vec::new(), "dimPayer.csv", &header).unwrap();
        let reject = Reject {
            line: 3,
            column: Some("dimPayerPK".into()),
            rule: "integer",
            reason: "is not an integer".into(),
        };
        w.write(&reject, &cows(&["x", "A, B"]).as_fields()).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            text,
            "rejected_source,rejected_line,rejected_column,rejected_rule,rejected_reason,dimPayerPK,PayerName\n\
             dimPayer.csv,3,dimPayerPK,integer,is not an integer,x,\"A, B\"\n"
        );
    }
}
