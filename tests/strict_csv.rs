//! The reader's invariant, as a bounded property test over random inputs: for every input, either the file is
//! refused (a quote left open at the end) or rows read equal the records a strict RFC 4180 parser finds — same
//! count, same lines, same fields for the well-formed ones — and rows read = accepted + rejected, whatever the
//! buffer boundaries. The reference parser below is written independently of the streaming one: it reads the
//! whole input at once.

use std::io::{self, BufReader, Read};

use healthetl::schema::SCHEMA;
use healthetl::source::{Anomaly, Limits, ReadError, Records, Refusal};
use healthetl::transform::{RowCaster, map_header};

/// A record as the reference parser sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefRecord {
    line: u64,
    fields: Vec<Vec<u8>>,
    /// Not RFC 4180: a quote inside an unquoted field, or text after a closing quote.
    anomalous: bool,
}

/// What the reference parser finds: records, or the line and column of a quote left open at the end.
#[derive(Debug, PartialEq, Eq)]
enum RefOutcome {
    Records(Vec<RefRecord>),
    Unterminated { line: u64, column: usize },
}

/// RFC 4180 over the whole input, with LF, CRLF and CR all ending a line, and empty lines skipped.
fn reference(input: &[u8]) -> RefOutcome {
    let mut records = Vec::new();
    let mut i = 0;
    let mut line = 1u64;
    let n = input.len();
    // Counts a line end at `i` (CR, LF or CRLF) and returns its length.
    let line_end = |i: usize| -> usize {
        if input[i] == b'\r' && i + 1 < n && input[i + 1] == b'\n' {
            2
        } else {
            1
        }
    };
    while i < n {
        if input[i] == b'\n' || input[i] == b'\r' {
            i += line_end(i);
            line += 1;
            continue;
        }
        let start_line = line;
        let mut fields = Vec::new();
        let mut anomalous = false;
        loop {
            let mut field = Vec::new();
            let quoted = i < n && input[i] == b'"';
            if quoted {
                let open_line = line;
                i += 1;
                loop {
                    if i >= n {
                        return RefOutcome::Unterminated {
                            line: open_line,
                            column: fields.len() + 1,
                        };
                    }
                    match input[i] {
                        b'"' if i + 1 < n && input[i + 1] == b'"' => {
                            field.push(b'"');
                            i += 2;
                        }
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\r' | b'\n' => {
                            let len = line_end(i);
                            field.extend_from_slice(&input[i..i + len]);
                            i += len;
                            line += 1;
                        }
                        b => {
                            field.push(b);
                            i += 1;
                        }
                    }
                }
            }
            // Unquoted text (or text after a closing quote) up to the delimiter or line end.
            while i < n && !matches!(input[i], b',' | b'\n' | b'\r') {
                if quoted || input[i] == b'"' {
                    anomalous = true;
                }
                field.push(input[i]);
                i += 1;
            }
            fields.push(field);
            if i < n && input[i] == b',' {
                i += 1;
                continue;
            }
            if i < n {
                i += line_end(i);
                line += 1;
            }
            break;
        }
        records.push(RefRecord {
            line: start_line,
            fields,
            anomalous,
        });
    }
    RefOutcome::Records(records)
}

/// A deterministic generator (xorshift64*), so a failure names a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random CSV-ish bytes: mostly well-formed rows of two fields, with quotes, delimiters and every line end mixed
/// in at random.
fn random_input(rng: &mut Rng) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"a",
        b"1",
        b"x y",
        b",",
        b",",
        b"\"",
        b"\"\"",
        b"\n",
        b"\r\n",
        b"\r",
        b"\"q,q\"",
        b"\xc3\xa9",
        b"7",
    ];
    let mut out = b"dimPayerPK,PayerName\n".to_vec();
    let len = rng.below(40);
    for _ in 0..len {
        if rng.below(3) == 0 {
            let key = rng.below(50).to_string();
            out.extend_from_slice(key.as_bytes());
            out.push(b',');
            out.extend_from_slice(b"name");
            out.extend_from_slice([&b"\n"[..], b"\r\n", b"\r"][rng.below(3) as usize]);
        } else {
            out.extend_from_slice(PIECES[rng.below(PIECES.len() as u64) as usize]);
        }
    }
    out
}

/// Hands out reads of random small sizes, so records meet buffer boundaries everywhere.
struct Chunked<'a> {
    data: &'a [u8],
    rng: Rng,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (1 + self.rng.below(5) as usize)
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What the streaming reader and caster make of an input.
#[derive(Debug)]
struct Seen {
    records: Vec<(u64, Option<Vec<String>>)>,
    accepted: u64,
    rejected: u64,
}

fn stream(input: &[u8], seed: u64) -> Result<Seen, Refusal> {
    let reader = BufReader::with_capacity(
        1 + (seed % 7) as usize,
        Chunked {
            data: input,
            rng: Rng(seed | 1),
        },
    );
    let table = SCHEMA.by_name("dim_payer").unwrap();
    let mut records = Records::with_limits(reader, Limits::default()).unwrap();
    let header = records.next_record().unwrap().unwrap();
    let header_fields: Vec<String> = header.fields.iter().map(str::to_string).collect();
    let map = map_header(table, &header.fields).unwrap();
    let caster = RowCaster::new(table, &map);
    let mut seen = Seen {
        records: vec![(1, Some(header_fields))],
        accepted: 0,
        rejected: 0,
    };
    loop {
        match records.next_record() {
            Ok(Some(rec)) => {
                let fields = match rec.anomaly {
                    None => Some(rec.fields.iter().map(str::to_string).collect()),
                    Some(a) => {
                        assert!(matches!(
                            a,
                            Anomaly::BareQuote { .. } | Anomaly::TextAfterQuote { .. }
                        ));
                        None
                    }
                };
                match caster.write_row(&rec, &mut Vec::new()) {
                    Ok(_) => seen.accepted += 1,
                    Err(_) => seen.rejected += 1,
                }
                seen.records.push((rec.line, fields));
            }
            Ok(None) => return Ok(seen),
            Err(ReadError::Refused(r)) => return Err(r),
            Err(ReadError::Io(e)) => panic!("{e}"),
        }
    }
}

#[test]
fn rows_read_always_equal_the_records_a_strict_parser_finds() {
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    let cases = 20_000;
    let (mut refused, mut anomalous, mut rows) = (0, 0, 0u64);
    for case in 0..cases {
        let seed = rng.next();
        let input = random_input(&mut Rng(seed | 1));
        let expected = reference(&input);
        let got = stream(&input, seed);
        match (&expected, got) {
            (RefOutcome::Unterminated { line, column }, Err(r)) => {
                refused += 1;
                assert_eq!(
                    r,
                    Refusal::UnterminatedQuote {
                        line: *line,
                        column: *column
                    },
                    "case {case} seed {seed:#x}: {input:?}"
                );
            }
            (RefOutcome::Records(recs), Ok(seen)) => {
                assert_eq!(
                    seen.records.len(),
                    recs.len(),
                    "case {case} seed {seed:#x}: record count of {input:?}"
                );
                let read = seen.records.len() as u64 - 1;
                rows += read;
                assert_eq!(
                    read,
                    seen.accepted + seen.rejected,
                    "case {case}: read = accepted + rejected"
                );
                for (r, (line, fields)) in recs.iter().zip(&seen.records) {
                    assert_eq!(
                        r.line, *line,
                        "case {case} seed {seed:#x}: line of {input:?}"
                    );
                    match fields {
                        Some(f) => {
                            assert!(!r.anomalous, "case {case} seed {seed:#x}: {input:?}");
                            let want: Vec<String> = r
                                .fields
                                .iter()
                                .map(|f| String::from_utf8(f.clone()).unwrap())
                                .collect();
                            assert_eq!(*f, want, "case {case} seed {seed:#x}: fields of {input:?}");
                        }
                        None => {
                            anomalous += 1;
                            assert!(r.anomalous, "case {case} seed {seed:#x}: {input:?}");
                        }
                    }
                }
            }
            (want, got) => {
                panic!("case {case} seed {seed:#x}: {input:?}: want {want:?}, got {got:?}")
            }
        }
    }
    eprintln!(
        "{cases} random inputs: {refused} refused (unclosed quote), {rows} rows read, {anomalous} structural rejects"
    );
    assert!(
        refused > 100 && anomalous > 100 && rows > 10_000,
        "the generator reaches every case"
    );
}

#[test]
fn the_reference_parser_agrees_with_hand_checked_cases() {
    let RefOutcome::Records(r) = reference(b"a,b\r\n1,\"x\r\ny\"\r\n\r\n2,z") else {
        panic!()
    };
    assert_eq!(r.len(), 3);
    assert_eq!((r[1].line, r[2].line), (2, 5));
    assert_eq!(r[1].fields[1], b"x\r\ny");
    assert_eq!(
        reference(b"a\n1,\"open\n2\n"),
        RefOutcome::Unterminated { line: 2, column: 2 }
    );
    let RefOutcome::Records(r) = reference(b"a\nx\"y\n\"z\"w\n\"ok\"\n") else {
        panic!()
    };
    assert_eq!(
        r.iter().map(|r| r.anomalous).collect::<Vec<_>>(),
        [false, true, true, false]
    );
}
