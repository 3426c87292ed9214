//! CSV records from a byte stream, read strictly by RFC 4180 with bounded memory: LF, CRLF or CR-only line ends
//! (true line numbers for each, quoted newlines included), an optional UTF-8 BOM, and one text encoding for the
//! whole object (UTF-8, or Windows-1252 when the bytes are not UTF-8 — the original dataset's dimDiagnosisCode and
//! dimCptCode). Nothing is ever merged silently: an unclosed quote refuses the object, and every other structural
//! anomaly (a quote inside an unquoted field, text after a closing quote, a record or field over its limit) is
//! reported on the record it affects, so the caller rejects that row and reads on.

use std::io::{self, BufRead};

use encoding_rs::WINDOWS_1252;

use super::StreamRefusal;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text encoding a file turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TextEncoding {
    /// UTF-8 (pure ASCII is reported as UTF-8).
    #[serde(rename = "utf-8")]
    Utf8,
    /// Windows-1252, decided at the first byte that is not UTF-8 (everything before it was ASCII).
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

/// How large one record and one field may be. Reading never holds more than about one record of this size, so
/// memory does not grow with the input, however long its lines are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest record, in bytes of field data (delimiters and quotes not counted).
    pub max_record_bytes: usize,
    /// The longest field, in bytes.
    pub max_field_bytes: usize,
}

/// The default record limit: 1 MiB, far above the contract's widest row (16 columns, none over 500 characters).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
/// The default field limit: 64 KiB, far above the contract's longest column (500 characters).
pub const DEFAULT_MAX_FIELD_BYTES: usize = 64 << 10;
/// More fields than this in one record are counted, not kept (the record is rejected for its field count).
const MAX_FIELDS: usize = 4096;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
        }
    }
}

/// A structural problem of one record. The record is still counted as read and must be rejected with
/// [`Anomaly::rule`]; its fields are not trustworthy (and, for the size limits, not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// A `"` inside a field that did not start with one (`ab"c`). `field` is 0-based.
    BareQuote {
        /// The field's index.
        field: usize,
    },
    /// Text between a closing quote and the next delimiter (`"ab"c`). `field` is 0-based.
    TextAfterQuote {
        /// The field's index.
        field: usize,
    },
    /// The record's field data is longer than [`Limits::max_record_bytes`].
    RecordTooLong {
        /// The record's field data, in bytes.
        bytes: u64,
        /// The limit it is over, in bytes.
        limit: usize,
    },
    /// A field is longer than [`Limits::max_field_bytes`]. `field` is 0-based.
    FieldTooLong {
        /// The field's index.
        field: usize,
        /// The field's length, in bytes.
        bytes: u64,
        /// The limit it is over, in bytes.
        limit: usize,
    },
    /// More fields than are kept; the record cannot match any header.
    TooManyFields {
        /// How many fields the record has.
        fields: u64,
    },
}

impl Anomaly {
    /// The reject rule for a record with this anomaly.
    pub fn rule(&self) -> &'static str {
        match self {
            Anomaly::BareQuote { .. } => "bare_quote",
            Anomaly::TextAfterQuote { .. } => "text_after_quote",
            Anomaly::RecordTooLong { .. } => "record_too_long",
            Anomaly::FieldTooLong { .. } => "field_too_long",
            Anomaly::TooManyFields { .. } => "field_count",
        }
    }

    /// The 0-based field the anomaly is in, when it is in one.
    pub fn field(&self) -> Option<usize> {
        match *self {
            Anomaly::BareQuote { field }
            | Anomaly::TextAfterQuote { field }
            | Anomaly::FieldTooLong { field, .. } => Some(field),
            Anomaly::RecordTooLong { .. } | Anomaly::TooManyFields { .. } => None,
        }
    }

    /// Whether the record's fields were dropped (over a size limit): only its position is reported.
    pub fn fields_dropped(&self) -> bool {
        matches!(
            self,
            Anomaly::RecordTooLong { .. }
                | Anomaly::FieldTooLong { .. }
                | Anomaly::TooManyFields { .. }
        )
    }

    /// What is wrong, without any of the record's text.
    pub fn reason(&self) -> String {
        match *self {
            Anomaly::BareQuote { .. } => {
                "has a quote inside a field that does not start with one (quote the whole field and double \
                 the quote)"
                    .to_string()
            }
            Anomaly::TextAfterQuote { .. } => {
                "has text after the closing quote of a quoted field (a quote inside a quoted field must be \
                 doubled)"
                    .to_string()
            }
            Anomaly::RecordTooLong { bytes, limit } => format!(
                "record is {bytes} bytes long, over the {limit}-byte limit; its fields are not kept"
            ),
            Anomaly::FieldTooLong { bytes, limit, .. } => format!(
                "field is {bytes} bytes long, over the {limit}-byte limit; the record's fields are not kept"
            ),
            Anomaly::TooManyFields { fields } => {
                format!("has {fields} fields; its fields are not kept")
            }
        }
    }
}

/// Why reading stopped: the object cannot be loaded as it is (`Refused`), or reading broke (`Io`).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The object's structure or encoding makes its records unknowable; loading any of it would be a guess.
    #[error("{0}")]
    Refused(Refusal),
    /// The bytes could not be read; a retry may work.
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    /// An I/O error that carries a [`StreamRefusal`] refuses the object; any other is a transport failure.
    fn from(e: io::Error) -> Self {
        match StreamRefusal::from_io(&e) {
            Some(r) => ReadError::Refused(Refusal::Stream(r.clone())),
            None => ReadError::Io(e),
        }
    }
}

/// A structural or encoding reason to refuse a whole object. Messages never contain the object's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The bytes are not CSV text of an accepted encoding, or are over a size limit.
    #[error(transparent)]
    Stream(StreamRefusal),
    /// A quoted field is still open at the end of the input: every record after it would be swallowed.
    #[error(
        "line {line}, column {column}: a quoted field opens here and is never closed (the rest of the file \
         would be one field): nothing loaded"
    )]
    UnterminatedQuote {
        /// The 1-based line the quoted field opens on.
        line: u64,
        /// The 1-based position of that field in its record.
        column: usize,
    },
    /// Valid multi-byte UTF-8 and bytes that are not UTF-8 in one object.
    #[error(
        "line {line}: the file mixes UTF-8 text with bytes that are not UTF-8 (first {first} at line \
         {first_line}); re-save it in one encoding: nothing loaded"
    )]
    MixedEncoding {
        /// The 1-based line of the record where the mixture was found.
        line: u64,
        /// The kind of bytes seen first (`UTF-8`, `a byte that is not UTF-8`, or both in one record).
        first: &'static str,
        /// The 1-based line where they were first seen.
        first_line: u64,
    },
}

/// One record's fields, decoded: borrowed from the reader until the next record is read.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    text: &'a str,
    ends: &'a [usize],
}

impl<'a> Fields<'a> {
    /// Fields over `text`, split at the byte offsets in `ends` (each field ends where the next starts).
    pub fn new(text: &'a str, ends: &'a [usize]) -> Self {
        Fields { text, ends }
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i` (0-based). Panics when out of range, like slice indexing.
    pub fn get(&self, i: usize) -> &'a str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// Every field in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (text, ends) = (self.text, self.ends);
        ends.iter().scan(0usize, move |start, &end| {
            let field = &text[*start..end];
            *start = end;
            Some(field)
        })
    }
}

/// Owned fields, for tests and callers that build records themselves.
#[derive(Debug, Clone, Default)]
pub struct OwnedFields {
    text: String,
    ends: Vec<usize>,
}

impl OwnedFields {
    /// Fields from strings.
    pub fn from_strs<S: AsRef<str>>(fields: &[S]) -> Self {
        let mut out = OwnedFields::default();
        for f in fields {
            out.text.push_str(f.as_ref());
            out.ends.push(out.text.len());
        }
        out
    }

    /// Borrow as [`Fields`].
    pub fn as_fields(&self) -> Fields<'_> {
        Fields::new(&self.text, &self.ends)
    }
}

/// One CSV record: the line it starts on, the line it ends on, its fields and any structural anomaly.
pub struct Record<'a> {
    /// The 1-based line the record starts on.
    pub line: u64,
    /// The 1-based line the record ends on (greater than `line` when a quoted field holds line breaks).
    pub last_line: u64,
    /// The decoded fields (none when [`Anomaly::fields_dropped`]).
    pub fields: Fields<'a>,
    /// A structural problem that makes this record a rejected row.
    pub anomaly: Option<Anomaly>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field.
    StartField,
    /// Inside a field that did not start with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: an escaped quote, or the closing one.
    QuoteInQuoted,
}

/// What the encoding check has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Only ASCII: both encodings read it the same.
    Ascii,
    /// Valid multi-byte UTF-8, first at this line.
    Utf8(u64),
    /// Bytes that are not UTF-8, first at this line.
    NotUtf8(u64),
}

/// Streams CSV records with bounded memory. See the module documentation for the rules.
pub struct Records<R: BufRead> {
    input: R,
    bom: bool,
    eof: bool,
    p: Parser,
}

/// The reader's state, apart from its input (so a buffer of the input can be scanned into it).
struct Parser {
    limits: Limits,
    seen: Seen,
    /// The line the input position is on (1-based).
    line: u64,
    /// The last byte consumed was a CR that ended a line: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// The last byte inside a quoted field was a CR (an LF right after it is data of the same line break).
    quoted_cr: bool,
    /// The line the last record ended on.
    end_line: u64,
    // The record being read.
    state: State,
    started: bool,
    record_line: u64,
    quote_line: u64,
    bytes: Vec<u8>,
    ends: Vec<usize>,
    field_bytes: u64,
    record_bytes: u64,
    fields_seen: u64,
    anomaly: Option<Anomaly>,
    // The decoded record handed out.
    decoded: String,
    decoded_ends: Vec<usize>,
}

impl<R: BufRead> Records<R> {
    /// Start reading with the default limits; skips a UTF-8 byte-order mark.
    pub fn new(input: R) -> Result<Self, ReadError> {
        Records::with_limits(input, Limits::default())
    }

    /// Start reading with the given limits; skips a UTF-8 byte-order mark.
    pub fn with_limits(mut input: R, limits: Limits) -> Result<Self, ReadError> {
        let bom = input.fill_buf()?.starts_with(BOM);
        if bom {
            input.consume(BOM.len());
        }
        Ok(Records {
            input,
            bom,
            eof: false,
            p: Parser {
                limits,
                seen: Seen::Ascii,
                line: 1,
                after_cr: false,
                quoted_cr: false,
                end_line: 1,
                state: State::StartField,
                started: false,
                record_line: 1,
                quote_line: 1,
                bytes: Vec::with_capacity(4096),
                ends: Vec::with_capacity(32),
                field_bytes: 0,
                record_bytes: 0,
                fields_seen: 0,
                anomaly: None,
                decoded: String::with_capacity(4096),
                decoded_ends: Vec::with_capacity(32),
            },
        })
    }

    /// Whether the input started with a UTF-8 BOM.
    pub fn had_bom(&self) -> bool {
        self.bom
    }

    /// The encoding in effect (Windows-1252 once any byte was not UTF-8).
    pub fn encoding(&self) -> TextEncoding {
        match self.p.seen {
            Seen::NotUtf8(_) => TextEncoding::Windows1252,
            Seen::Ascii | Seen::Utf8(_) => TextEncoding::Utf8,
        }
    }

    /// The line the reader has reached (the number of line ends read, plus one).
    pub fn line(&self) -> u64 {
        self.p.line
    }

    /// The next record, or `None` at the end of the input. Empty lines between records are not records.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if !self.read_record()? {
            return Ok(None);
        }
        let p = &mut self.p;
        let line = p.record_line;
        let last_line = p.end_line.max(line);
        p.decode(line)?;
        Ok(Some(Record {
            line,
            last_line,
            fields: Fields::new(&p.decoded, &p.decoded_ends),
            anomaly: p.anomaly,
        }))
    }

    /// Read the raw bytes of the next record into the parser. False at the end of the input.
    fn read_record(&mut self) -> Result<bool, ReadError> {
        self.p.reset_record();
        self.p.record_line = self.p.line;
        loop {
            if self.eof {
                return self.p.finish_at_eof();
            }
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::from(e)),
            };
            if buf.is_empty() {
                self.eof = true;
                continue;
            }
            let (used, done) = scan(&mut self.p, buf);
            self.input.consume(used);
            if done {
                return Ok(true);
            }
        }
    }
}

impl Parser {
    fn reset_record(&mut self) {
        self.state = State::StartField;
        self.started = false;
        self.bytes.clear();
        self.ends.clear();
        self.field_bytes = 0;
        self.record_bytes = 0;
        self.fields_seen = 0;
        self.anomaly = None;
    }

    fn finish_at_eof(&mut self) -> Result<bool, ReadError> {
        match self.state {
            State::Quoted => Err(ReadError::Refused(Refusal::UnterminatedQuote {
                line: self.quote_line,
                column: self.ends.len() + 1,
            })),
            State::StartField if !self.started => Ok(false),
            _ => {
                self.end_line = self.line;
                self.end_field();
                self.end_record();
                Ok(true)
            }
        }
    }

    fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.field_bytes += data.len() as u64;
        self.record_bytes += data.len() as u64;
        if self.field_bytes > self.limits.max_field_bytes as u64
            && !matches!(
                self.anomaly,
                Some(Anomaly::FieldTooLong { .. } | Anomaly::RecordTooLong { .. })
            )
        {
            self.anomaly = Some(Anomaly::FieldTooLong {
                field: self.fields_seen as usize,
                bytes: 0,
                limit: self.limits.max_field_bytes,
            });
        }
        if self.record_bytes > self.limits.max_record_bytes as u64
            && !matches!(self.anomaly, Some(Anomaly::RecordTooLong { .. }))
        {
            self.anomaly = Some(Anomaly::RecordTooLong {
                bytes: 0,
                limit: self.limits.max_record_bytes,
            });
        }
        if !self.anomaly.is_some_and(|a| a.fields_dropped()) {
            self.bytes.extend_from_slice(data);
        }
    }

    fn note(&mut self, anomaly: Anomaly) {
        if self.anomaly.is_none() {
            self.anomaly = Some(anomaly);
        }
    }

    fn end_field(&mut self) {
        if let Some(Anomaly::FieldTooLong {
            field,
            ref mut bytes,
            ..
        }) = self.anomaly
            && field == self.fields_seen as usize
        {
            *bytes = self.field_bytes;
        }
        self.fields_seen += 1;
        if self.ends.len() < MAX_FIELDS {
            self.ends.push(self.bytes.len());
        } else if !self.anomaly.is_some_and(|a| a.fields_dropped()) {
            self.anomaly = Some(Anomaly::TooManyFields { fields: 0 });
        }
        self.field_bytes = 0;
        self.state = State::StartField;
    }

    fn end_record(&mut self) {
        match &mut self.anomaly {
            Some(Anomaly::RecordTooLong { bytes, .. }) => *bytes = self.record_bytes,
            Some(Anomaly::TooManyFields { fields }) => *fields = self.fields_seen,
            _ => {}
        }
        if self.anomaly.is_some_and(|a| a.fields_dropped()) {
            self.bytes.clear();
            self.ends.clear();
        }
    }

    /// Check the record's bytes against the object's encoding so far and decode them into `decoded`.
    fn decode(&mut self, line: u64) -> Result<(), ReadError> {
        self.decoded.clear();
        self.decoded_ends.clear();
        let bytes = &self.bytes;
        if !bytes.is_ascii() {
            let (valid_multibyte, invalid) = utf8_profile(bytes);
            let mixed = |first: &'static str, first_line| {
                ReadError::Refused(Refusal::MixedEncoding {
                    line,
                    first,
                    first_line,
                })
            };
            match self.seen {
                Seen::Ascii if valid_multibyte && invalid => {
                    return Err(mixed("UTF-8 and other bytes", line));
                }
                Seen::Ascii if invalid => self.seen = Seen::NotUtf8(line),
                Seen::Ascii => self.seen = Seen::Utf8(line),
                Seen::Utf8(first) if invalid => return Err(mixed("UTF-8", first)),
                Seen::NotUtf8(first) if valid_multibyte => {
                    return Err(mixed("a byte that is not UTF-8", first));
                }
                Seen::Utf8(_) | Seen::NotUtf8(_) => {}
            }
        }
        match self.seen {
            Seen::NotUtf8(_) => {
                let mut start = 0;
                for &end in &self.ends {
                    let (text, _) = WINDOWS_1252.decode_without_bom_handling(&bytes[start..end]);
                    self.decoded.push_str(&text);
                    self.decoded_ends.push(self.decoded.len());
                    start = end;
                }
            }
            Seen::Ascii | Seen::Utf8(_) => {
                // Checked above: ASCII, or valid UTF-8 (the delimiters are ASCII, so every field is too).
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    ReadError::Refused(Refusal::MixedEncoding {
                        line,
                        first: "UTF-8",
                        first_line: line,
                    })
                })?;
                self.decoded.push_str(text);
                self.decoded_ends.extend_from_slice(&self.ends);
            }
        }
        Ok(())
    }
}

/// Whether bytes hold a valid multi-byte UTF-8 character, and whether they hold bytes that are not UTF-8.
fn utf8_profile(bytes: &[u8]) -> (bool, bool) {
    let mut valid_multibyte = false;
    let mut invalid = false;
    for chunk in bytes.utf8_chunks() {
        valid_multibyte |= !chunk.valid().is_ascii();
        invalid |= !chunk.invalid().is_empty();
        if valid_multibyte && invalid {
            break;
        }
    }
    (valid_multibyte, invalid)
}

/// How many bytes of an unquoted field come before its first `,`, `"`, CR or LF (all of them when none does). Most
/// fields are a few bytes long, where a plain loop beats a call into memchr; memchr takes over past the first 32.
fn unquoted_run(rest: &[u8]) -> usize {
    const SHORT: usize = 32;
    let stop = |c: &u8| matches!(c, b',' | b'"' | b'\n' | b'\r');
    let head = &rest[..rest.len().min(SHORT)];
    if let Some(p) = head.iter().position(stop) {
        return p;
    }
    if rest.len() <= SHORT {
        return rest.len();
    }
    let tail = &rest[SHORT..];
    let end = memchr::memchr3(b',', b'\n', b'\r', tail).unwrap_or(tail.len());
    SHORT + memchr::memchr(b'"', &tail[..end]).unwrap_or(end)
}

/// Run the state machine over `buf`. Returns how many bytes were used and whether a record was completed.
fn scan(r: &mut Parser, buf: &[u8]) -> (usize, bool) {
    let mut i = 0;
    let n = buf.len();
    while i < n {
        let b = buf[i];
        if r.after_cr {
            r.after_cr = false;
            if b == b'\n' {
                i += 1;
                continue;
            }
        }
        match r.state {
            State::StartField => match b {
                b'"' => {
                    r.started = true;
                    r.state = State::Quoted;
                    r.quote_line = r.line;
                    i += 1;
                }
                b',' => {
                    r.started = true;
                    r.end_field();
                    i += 1;
                }
                b'\n' | b'\r' => {
                    i += 1;
                    line_end(r, b);
                    if r.started {
                        r.end_field();
                        r.end_record();
                        return (i, true);
                    }
                    // An empty line: not a record.
                    r.record_line = r.line;
                }
                _ => {
                    r.started = true;
                    r.state = State::Unquoted;
                }
            },
            State::Unquoted => {
                let run = unquoted_run(&buf[i..]);
                if run > 0 {
                    r.push(&buf[i..i + run]);
                    i += run;
                    continue;
                }
                match b {
                    b',' => {
                        r.end_field();
                        i += 1;
                    }
                    b'"' => {
                        r.note(Anomaly::BareQuote {
                            field: r.fields_seen as usize,
                        });
                        r.push(b"\"");
                        i += 1;
                    }
                    _ => {
                        i += 1;
                        line_end(r, b);
                        r.end_field();
                        r.end_record();
                        return (i, true);
                    }
                }
            }
            State::Quoted => {
                let run = memchr::memchr3(b'"', b'\n', b'\r', &buf[i..]).unwrap_or(n - i);
                if run > 0 {
                    r.quoted_cr = false;
                    r.push(&buf[i..i + run]);
                    i += run;
                    continue;
                }
                i += 1;
                match b {
                    b'"' => {
                        r.quoted_cr = false;
                        r.state = State::QuoteInQuoted;
                    }
                    // Line breaks inside quotes are data; a CRLF counts as one line.
                    b'\n' => {
                        r.push(b"\n");
                        if !r.quoted_cr {
                            r.line += 1;
                        }
                        r.quoted_cr = false;
                    }
                    _ => {
                        r.push(b"\r");
                        r.line += 1;
                        r.quoted_cr = true;
                    }
                }
            }
            State::QuoteInQuoted => match b {
                b'"' => {
                    r.push(b"\"");
                    r.state = State::Quoted;
                    i += 1;
                }
                b',' => {
                    r.end_field();
                    i += 1;
                }
                b'\n' | b'\r' => {
                    i += 1;
                    line_end(r, b);
                    r.end_field();
                    r.end_record();
                    return (i, true);
                }
                _ => {
                    r.note(Anomaly::TextAfterQuote {
                        field: r.fields_seen as usize,
                    });
                    r.state = State::Unquoted;
                }
            },
        }
    }
    (i, false)
}

/// Count a line end (`b` is LF or CR); a CR may be followed by an LF that belongs to it.
fn line_end(r: &mut Parser, b: u8) {
    r.end_line = r.line;
    r.line += 1;
    if b == b'\r' {
        r.after_cr = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rec = (u64, Vec<String>, Option<&'static str>);

    fn read_with(bytes: &[u8], limits: Limits) -> Result<(Vec<Rec>, TextEncoding, bool), Refusal> {
        let mut r = Records::with_limits(bytes, limits).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(rec)) => out.push((
                    rec.line,
                    rec.fields.iter().map(str::to_string).collect(),
                    rec.anomaly.map(|a| a.rule()),
                )),
                Ok(None) => break,
                Err(ReadError::Refused(e)) => return Err(e),
                Err(ReadError::Io(e)) => panic!("{e}"),
            }
        }
        Ok((out, r.encoding(), r.had_bom()))
    }

    fn all(bytes: &[u8]) -> (Vec<Rec>, TextEncoding, bool) {
        read_with(bytes, Limits::default()).unwrap()
    }

    fn lines(bytes: &[u8]) -> Vec<u64> {
        all(bytes).0.iter().map(|r| r.0).collect()
    }

    /// Reads through a reader that hands out one byte at a time, so every state meets a buffer boundary.
    struct OneByte<'a>(&'a [u8]);

    impl io::Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn all_one_byte_at_a_time(bytes: &[u8]) -> Vec<Rec> {
        let mut r = Records::new(io::BufReader::with_capacity(1, OneByte(bytes))).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((
                rec.line,
                rec.fields.iter().map(str::to_string).collect(),
                rec.anomaly.map(|a| a.rule()),
            ));
        }
        out
    }

    #[test]
    fn a_bom_is_skipped_and_reported() {
        let (recs, enc, bom) = all(b"\xEF\xBB\xBFdimPayerPK,PayerName\n1,A\n");
        assert!(bom);
        assert_eq!(enc, TextEncoding::Utf8);
        assert_eq!(recs[0].1, ["dimPayerPK", "PayerName"]);
    }

    #[test]
    fn crlf_lf_and_cr_only_give_the_same_fields_and_lines() {
        let lf = all(b"h1,h2\n1,x\n2,y\n").0;
        assert_eq!(all(b"h1,h2\r\n1,x\r\n2,y\r\n").0, lf);
        assert_eq!(all(b"h1,h2\r1,x\r2,y\r").0, lf);
        assert_eq!(lf[2].0, 3);
    }

    #[test]
    fn cr_only_files_number_their_lines() {
        assert_eq!(lines(b"a,b\r1,x\r2,y\r3,z"), [1, 2, 3, 4]);
    }

    #[test]
    fn lines_count_quoted_newlines_of_every_kind() {
        let (recs, _, _) = all(b"a,b\r\n1,\"x\r\ny\"\r\n2,z\r\n");
        assert_eq!(recs[1].1[1], "x\r\ny");
        assert_eq!((recs[1].0, recs[2].0), (2, 4));
        let (recs, _, _) = all(b"a,b\r1,\"x\ry\"\r2,z\r");
        assert_eq!(recs[1].1[1], "x\ry");
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
    fn every_buffer_boundary_gives_the_same_records() {
        for input in [
            &b"a,b\r\n1,\"x\r\ny\"\r\n2,z\r\n\r\n3,\"\"\"\"\r"[..],
            b"a,b\r1,\"x\ry\"\r\r2,z",
            b"h\n\"a\"\"b\",\"c\"\n,\n",
            b"h,i\nab\"c,\"d\"e\n",
        ] {
            assert_eq!(all_one_byte_at_a_time(input), all(input).0, "{input:?}");
        }
    }

    #[test]
    fn an_unclosed_quote_refuses_the_file_naming_where_it_opened() {
        let e = read_with(
            b"dimLocationPK,Location Name\n1,A\n2,\"B\n3,C\n4,D\n",
            Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e, Refusal::UnterminatedQuote { line: 3, column: 2 });
        assert!(e.to_string().starts_with("line 3, column 2:"), "{e}");
    }

    #[test]
    fn quotes_out_of_place_are_anomalies_of_their_own_record() {
        let (recs, _, _) = all(b"a,b\n1,ab\"c\n2,\"d\"e\n3,ok\n");
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[1].2, Some("bare_quote"));
        assert_eq!(recs[2].2, Some("text_after_quote"));
        assert_eq!(recs[3], (4, vec!["3".into(), "ok".into()], None));
    }

    #[test]
    fn empty_lines_are_not_records_but_count_as_lines() {
        assert_eq!(lines(b"a\n\n1\r\n\r\n2\n\n"), [1, 3, 5]);
        let (recs, _, _) = all(b"a,b\n,\n\"\"\n");
        assert_eq!(recs[1].1, ["", ""]);
        assert_eq!(recs[2].1, [""]);
    }

    #[test]
    fn the_last_record_needs_no_line_end() {
        let (recs, _, _) = all(b"a,b\n1,x");
        assert_eq!(recs[1].1, ["1", "x"]);
        let (recs, _, _) = all(b"a,b\n1,\"x\"");
        assert_eq!(recs[1].1, ["1", "x"]);
        let (recs, _, _) = all(b"a,b\n1,");
        assert_eq!(recs[1].1, ["1", ""]);
    }

    #[test]
    fn records_over_the_limit_are_rejected_and_reading_resumes() {
        let limits = Limits {
            max_record_bytes: 16,
            max_field_bytes: 8,
        };
        let input = b"a,b\n1,123456789\n2,\"12345678\n9\"\n3,1234,5678,1234,5678,1\n4,ok\n";
        let (recs, _, _) = read_with(input, limits).unwrap();
        let rules: Vec<_> = recs.iter().map(|r| (r.0, r.2)).collect();
        assert_eq!(
            rules,
            [
                (1, None),
                (2, Some("field_too_long")),
                (3, Some("field_too_long")),
                (5, Some("record_too_long")),
                (6, None)
            ]
        );
        assert!(recs[1].1.is_empty() && recs[3].1.is_empty());
    }

    #[test]
    fn the_limit_anomaly_reports_the_whole_length() {
        let limits = Limits {
            max_record_bytes: 10,
            max_field_bytes: 10,
        };
        let mut r = Records::with_limits(&b"x\n12345678901234567890\n"[..], limits).unwrap();
        r.next_record().unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(
            rec.anomaly,
            Some(Anomaly::RecordTooLong {
                bytes: 20,
                limit: 10
            })
        );
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
    fn a_file_that_mixes_utf8_and_other_bytes_is_refused() {
        let e = read_with(b"a,b\n1,Jos\xc3\xa9\n2,Jos\xe9\n3,x\n", Limits::default()).unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::MixedEncoding {
                    line: 3,
                    first_line: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = read_with(b"a,b\n1,Jos\xe9\n2,Jos\xc3\xa9\n", Limits::default()).unwrap_err();
        assert!(matches!(e, Refusal::MixedEncoding { line: 3, .. }), "{e:?}");
        assert!(read_with(b"a,b\n1,\xc3\xa9\xe9\n", Limits::default()).is_err());
    }

    #[test]
    fn rows_with_other_field_counts_are_still_returned() {
        let (recs, _, _) = all(b"a,b\n1\n1,2,3\n");
        assert_eq!(recs[1].1.len(), 1);
        assert_eq!(recs[2].1.len(), 3);
    }

    #[test]
    fn a_record_knows_the_line_it_ends_on() {
        let mut r = Records::new(&b"a,b\n1,\"x\ny\nz\"\n2,w"[..]).unwrap();
        r.next_record().unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!((rec.line, rec.last_line), (2, 4));
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!((rec.line, rec.last_line), (5, 5));
    }
}
