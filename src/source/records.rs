//! CSV records from a byte stream: RFC 4180 quoting, LF or CRLF, an optional UTF-8 BOM, and text that is
//! UTF-8 or, when it is not valid UTF-8, Windows-1252 (the original dataset's dimDiagnosisCode and dimCptCode).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

use encoding_rs::WINDOWS_1252;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text encoding a file turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TextEncoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1252")]
    Windows1252,
}

impl TextEncoding {
    /// The encoding's label, as in reports and the ledger.
    pub fn label(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "utf-8",
            TextEncoding::Windows1252 => "windows-1252",
        }
    }
}

/// One CSV record: the line it starts on and its decoded fields.
pub struct Record<'a> {
    pub line: u64,
    pub fields: Vec<Cow<'a, str>>,
}

/// Streams decoded CSV records. The encoding starts as UTF-8; the first record that is not valid UTF-8 switches
/// the rest of the file to Windows-1252 (records before it were valid UTF-8, which reads the same).
pub struct Records<R: BufRead> {
    reader: csv::Reader<LineIndex<R>>,
    record: csv::ByteRecord,
    encoding: TextEncoding,
    bom: bool,
}

impl<R: BufRead> Records<R> {
    /// Start reading; skips a UTF-8 byte-order mark.
    pub fn new(mut input: R) -> io::Result<Self> {
        let bom = input.fill_buf()?.starts_with(BOM);
        if bom {
            input.consume(BOM.len());
        }
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(LineIndex {
                inner: input,
                offset: 0,
                newlines: VecDeque::new(),
                passed: 0,
            });
        Ok(Records {
            reader,
            record: csv::ByteRecord::new(),
            encoding: TextEncoding::Utf8,
            bom,
        })
    }

    /// Whether the input started with a UTF-8 BOM.
    pub fn had_bom(&self) -> bool {
        self.bom
    }

    /// The encoding in effect (Windows-1252 once any record was not UTF-8).
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        if !self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(csv_error)?
        {
            return Ok(None);
        }
        let start = self.record.position().map_or(0, csv::Position::byte);
        let line = self.reader.get_mut().line_at(start);
        if self.encoding == TextEncoding::Utf8
            && std::str::from_utf8(self.record.as_slice()).is_err()
        {
            self.encoding = TextEncoding::Windows1252;
        }
        let fields = match self.encoding {
            TextEncoding::Utf8 => self
                .record
                .iter()
                .map(|f| match std::str::from_utf8(f) {
                    Ok(s) => Cow::Borrowed(s),
                    // A multi-byte character split across fields: valid as a whole, not per field.
                    Err(_) => Cow::Owned(String::from_utf8_lossy(f).into_owned()),
                })
                .collect(),
            TextEncoding::Windows1252 => self
                .record
                .iter()
                .map(|f| WINDOWS_1252.decode_without_bom_handling(f).0)
                .collect(),
        };
        Ok(Some(Record { line, fields }))
    }
}

/// Remembers where the newlines are in the bytes the CSV parser has read ahead, to give each record the true
/// line it starts on (the parser's own count lags by one after a CRLF). Holds at most one read-ahead buffer.
struct LineIndex<R> {
    inner: R,
    offset: u64,
    newlines: VecDeque<u64>,
    passed: u64,
}

impl<R> LineIndex<R> {
    /// The 1-based line of a record whose parse started at byte `start` (which may be the LF of a CRLF).
    fn line_at(&mut self, start: u64) -> u64 {
        while self.newlines.front().is_some_and(|&n| n <= start) {
            self.newlines.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let base = self.offset;
        self.newlines
            .extend(memchr::memchr_iter(b'\n', &buf[..n]).map(|i| base + i as u64));
        self.offset += n as u64;
        Ok(n)
    }
}

fn csv_error(e: csv::Error) -> io::Error {
    let line = e.position().map(csv::Position::line);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => io::Error::new(
            io::ErrorKind::InvalidData,
            match line {
                Some(l) => format!("malformed CSV at line {l}: {other:?}"),
                None => format!("malformed CSV: {other:?}"),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> (Vec<(u64, Vec<String>)>, TextEncoding, bool) {
        let mut r = Records::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((rec.line, rec.fields.iter().map(|f| f.to_string()).collect()));
        }
        (out, r.encoding(), r.had_bom())
    }

    #[test]
    fn a_bom_is_skipped_and_reported() {
        let (recs, enc, bom) = all(b"\xEF\xBB\xBFdimPayerPK,PayerName\n1,A\n");
        assert!(bom);
        assert_eq!(enc, TextEncoding::Utf8);
        assert_eq!(recs[0].1, ["dimPayerPK", "PayerName"]);
    }

    #[test]
    fn crlf_and_lf_give_the_same_fields_and_lines() {
        let (a, _, _) = all(b"h1,h2\r\n1,x\r\n2,y\r\n");
        let (b, _, _) = all(b"h1,h2\n1,x\n2,y\n");
        assert_eq!(a, b);
        assert_eq!(a[2].0, 3);
    }

    #[test]
    fn lines_count_quoted_newlines_in_crlf_files() {
        let (recs, _, _) = all(b"a,b\r\n1,\"x\r\ny\"\r\n2,z\r\n");
        assert_eq!(recs[1].1[1], "x\r\ny");
        assert_eq!((recs[1].0, recs[2].0), (2, 4));
    }

    #[test]
    fn quoted_commas_quotes_and_newlines_survive_and_lines_stay_true() {
        let (recs, _, _) = all(b"a,b\n1,\"x, \"\"y\"\"\nz\"\n2,w\n");
        assert_eq!(recs[1].1, ["1", "x, \"y\"\nz"]);
        assert_eq!(recs[1].0, 2);
        assert_eq!(recs[2].0, 4);
    }

    #[test]
    fn windows_1252_is_decoded_when_the_bytes_are_not_utf8() {
        let (recs, enc, _) = all(b"a,b\n1,Caf\xe9 O\x92Brien Mu\xf1oz\n");
        assert_eq!(enc, TextEncoding::Windows1252);
        assert_eq!(recs[1].1[1], "Café O’Brien Muñoz");
    }

    #[test]
    fn utf8_text_keeps_its_characters() {
        let (recs, enc, _) = all("a,b\n1,José O’Brien\n".as_bytes());
        assert_eq!(enc, TextEncoding::Utf8);
        assert_eq!(recs[1].1[1], "José O’Brien");
    }

    #[test]
    fn rows_with_other_field_counts_are_still_returned() {
        let (recs, _, _) = all(b"a,b\n1\n1,2,3\n");
        assert_eq!(recs[1].1.len(), 1);
        assert_eq!(recs[2].1.len(), 3);
    }
}
