//! Synthetic healthcare-billing source files: writes the nine star-schema CSVs with the noise real
//! exports carry (mixed money and date formats, a BOM, Windows-1252, quoted fields) and a
//! `manifest.json` of their row counts and sums.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What to generate: how many fact rows, where, and from which seed.
pub struct GenerateOptions {
    /// Rows in `FactTable.csv`; the dimension sizes scale with it.
    pub fact_rows: u64,
    /// Folder that receives the nine CSV files and `manifest.json`; created if missing.
    pub out_dir: PathBuf,
    /// Seed of the generator: the same seed and row count give byte-identical files.
    pub seed: u64,
    /// Write the fact table without format noise (plain decimals, ISO dates) but with the same values, so
    /// PostgreSQL's own COPY can read it too: the benchmark's baseline.
    pub plain: bool,
}

/// What `generate` wrote, saved as `manifest.json` so a test can check a load against it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Seed the files were generated from.
    pub seed: u64,
    /// Rows in `FactTable.csv`.
    pub fact_rows: u64,
    /// One entry per warehouse table (`fact_table`, `dim_patient`, …).
    pub tables: BTreeMap<String, TableManifest>,
}

/// One written file: its name, data rows (header excluded), encoding, line ending and column sums.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableManifest {
    /// File name inside the output folder, e.g. `FactTable.csv`.
    pub file: String,
    /// Data records, not counting the header.
    pub rows: u64,
    /// `utf-8`, `utf-8-bom` or `windows-1252`.
    pub encoding: String,
    /// `lf` or `crlf`.
    pub line_ending: String,
    /// Warehouse column name → exact sum with two decimals (e.g. `-1234.50`); only the fact table's
    /// numeric columns.
    pub sums: BTreeMap<String, String>,
}

/// Writes the nine CSV files and `manifest.json` into `opts.out_dir` and returns the manifest.
///
/// Dimensions are written first, then the fact table row by row, so memory stays flat whatever
/// `fact_rows` is.
pub fn generate(opts: &GenerateOptions) -> io::Result<Manifest> {
    fs::create_dir_all(&opts.out_dir)?;
    let dir = opts.out_dir.as_path();
    let sizes = Sizes::for_fact_rows(opts.fact_rows);
    let calendar = calendar();
    let cpt_codes = cpt_catalogue(sizes.cpt_codes);
    let prices: Vec<i64> = cpt_codes.iter().map(|c| c.price_cents).collect();
    let fact = FactPlan {
        rows: opts.fact_rows,
        sizes: &sizes,
        cpt_prices: &prices,
        calendar: &calendar,
        plain: opts.plain,
    };
    let written = [
        ("dim_patient", write_patients(dir, opts.seed, &sizes)?),
        ("dim_physician", write_physicians(dir, opts.seed, &sizes)?),
        ("dim_payer", write_payers(dir)?),
        ("dim_location", write_locations(dir, &sizes)?),
        ("dim_transaction", write_transactions(dir)?),
        ("dim_diagnosis_code", write_diagnoses(dir, &sizes)?),
        ("dim_cpt_code", write_cpt_codes(dir, &cpt_codes)?),
        ("dim_date", write_dates(dir, &calendar)?),
        ("fact_table", write_facts(dir, opts.seed, &fact)?),
    ];
    let tables = written
        .into_iter()
        .map(|(table, entry)| (table.to_owned(), entry))
        .collect();

    let manifest = Manifest {
        seed: opts.seed,
        fact_rows: opts.fact_rows,
        tables,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    json.push(b'\n');
    fs::write(dir.join(MANIFEST_FILE), json)?;
    Ok(manifest)
}

/// Reads the `manifest.json` that `generate` wrote into `dir`.
pub fn read_manifest(dir: &Path) -> io::Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a generator manifest: {e}", path.display()),
        )
    })
}

const MANIFEST_FILE: &str = "manifest.json";

// -------------------------------------------------------------------------------------------------
// Files and headers (source headers from the warehouse contract, with the two deliberate deviations
// noted).

/// The source headers of a table, in declaration order, from the schema declaration (the files whose headers
/// deliberately deviate spell theirs out below).
fn source_header(table: &str) -> Vec<&'static str> {
    crate::schema::SCHEMA
        .by_name(table)
        .map(|t| t.columns.iter().map(|c| c.source).collect())
        .unwrap_or_default()
}

const FACT_FILE: &str = "FactTable.csv";
const PATIENT_FILE: &str = "dimPatient.csv";
const PHYSICIAN_FILE: &str = "dimPhysician.csv";
/// Columns in a different order than the contract lists them: the loader maps by header name.
const PHYSICIAN_HEADER: &[&str] = &[
    "ProviderName",
    "dimPhysicianPK",
    "ProviderSpecialty",
    "ProviderNpi",
    "ProviderFTE",
];
const PAYER_FILE: &str = "dimPayer.csv";
const LOCATION_FILE: &str = "dimLocation.csv";
/// `Location Name` with a space, as the original export spells it.
const LOCATION_HEADER: &[&str] = &["dimLocationPK", "Location Name"];
const TRANSACTION_FILE: &str = "dimTransaction.csv";
const DIAGNOSIS_FILE: &str = "dimDiagnosisCode.csv";
const CPT_FILE: &str = "dimCptCode.csv";
const DATE_FILE: &str = "dimDate.csv";

// -------------------------------------------------------------------------------------------------
// Sizes.

/// Row counts of the dimensions that scale with the fact table; payers and transactions are fixed
/// lists.
struct Sizes {
    patients: u64,
    physicians: u64,
    locations: u64,
    diagnoses: usize,
    cpt_codes: usize,
}

impl Sizes {
    fn for_fact_rows(rows: u64) -> Self {
        let codes = (rows / 50).clamp(50, 200) as usize;
        Sizes {
            patients: (rows / 10).max(50),
            physicians: (rows / 500).clamp(20, 1000),
            locations: (10 + rows / 100_000).min(LOCATIONS.len() as u64),
            diagnoses: codes,
            cpt_codes: codes,
        }
    }

    /// PatientNumber is zero-padded to one digit more than the largest key needs (at least six), so
    /// every number keeps a leading zero.
    fn patient_number_width(&self) -> usize {
        (digit_count(self.patients) + 1).max(6)
    }
}

// -------------------------------------------------------------------------------------------------
// Random numbers.

/// splitmix64: tiny, fast and good enough for test data; one independent stream per file.
struct Rng(u64);

const STREAM_PATIENT: u64 = 1;
const STREAM_PHYSICIAN: u64 = 2;
const STREAM_FACT: u64 = 3;

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n` must be positive).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Index drawn with probability proportional to `weights[i]`.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut ticket = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if ticket < w {
                return i;
            }
            ticket -= w;
        }
        weights.len() - 1
    }

    /// Key in `1..=n`, skewed towards low keys (the minimum of two draws), as popular codes come
    /// first.
    fn skewed_key(&mut self, n: u64) -> u64 {
        self.below(n).min(self.below(n)) + 1
    }

    fn key(&mut self, n: u64) -> u64 {
        self.below(n) + 1
    }
}

// -------------------------------------------------------------------------------------------------
// CSV writing.

#[derive(Clone, Copy)]
enum TextEncoding {
    Utf8,
    Utf8Bom,
    Windows1252,
}

impl TextEncoding {
    fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "utf-8",
            TextEncoding::Utf8Bom => "utf-8-bom",
            TextEncoding::Windows1252 => "windows-1252",
        }
    }
}

#[derive(Clone, Copy)]
enum LineEnding {
    Lf,
    Crlf,
}

impl LineEnding {
    fn name(self) -> &'static str {
        match self {
            LineEnding::Lf => "lf",
            LineEnding::Crlf => "crlf",
        }
    }

    fn text(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::Crlf => "\r\n",
        }
    }
}

/// One CSV file being written record by record: fields are appended to a line buffer, which is
/// encoded and written when the record ends.
struct CsvSink {
    file: &'static str,
    out: BufWriter<File>,
    encoding: TextEncoding,
    line_ending: LineEnding,
    line: String,
    at_line_start: bool,
    rows: u64,
}

impl CsvSink {
    fn create(
        dir: &Path,
        file: &'static str,
        encoding: TextEncoding,
        line_ending: LineEnding,
        header: &[&str],
    ) -> io::Result<Self> {
        let path = dir.join(file);
        let created = File::create(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut out = BufWriter::with_capacity(1 << 16, created);
        if let TextEncoding::Utf8Bom = encoding {
            out.write_all("\u{FEFF}".as_bytes())?;
        }
        let mut sink = CsvSink {
            file,
            out,
            encoding,
            line_ending,
            line: String::with_capacity(256),
            at_line_start: true,
            rows: 0,
        };
        for name in header {
            sink.field(name);
        }
        sink.write_line()?;
        Ok(sink)
    }

    /// Appends a text field, quoted when it needs to be.
    fn field(&mut self, value: &str) {
        push_csv_field(self.raw(), value);
    }

    /// Starts a field and hands out the line buffer; the caller appends text that never needs
    /// quoting.
    fn raw(&mut self) -> &mut String {
        if !self.at_line_start {
            self.line.push(',');
        }
        self.at_line_start = false;
        &mut self.line
    }

    fn end_record(&mut self) -> io::Result<()> {
        self.write_line()?;
        self.rows += 1;
        Ok(())
    }

    fn write_line(&mut self) -> io::Result<()> {
        self.line.push_str(self.line_ending.text());
        match self.encoding {
            TextEncoding::Utf8 | TextEncoding::Utf8Bom => {
                self.out.write_all(self.line.as_bytes())?
            }
            TextEncoding::Windows1252 => {
                let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&self.line);
                if unmappable {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: {:?} has characters windows-1252 cannot encode",
                            self.file, self.line
                        ),
                    ));
                }
                self.out.write_all(&bytes)?;
            }
        }
        self.line.clear();
        self.at_line_start = true;
        Ok(())
    }

    fn finish(mut self) -> io::Result<TableManifest> {
        self.out.flush()?;
        Ok(TableManifest {
            file: self.file.to_owned(),
            rows: self.rows,
            encoding: self.encoding.name().to_owned(),
            line_ending: self.line_ending.name().to_owned(),
            sums: BTreeMap::new(),
        })
    }
}

/// True when RFC 4180 (or a reader that trims) needs the field quoted: a comma, quote, CR or LF
/// inside, or a leading or trailing space.
fn needs_quotes(field: &str) -> bool {
    field.starts_with(' ')
        || field.ends_with(' ')
        || field
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
}

/// Appends `field` to `out`, wrapped in double quotes with inner quotes doubled when `needs_quotes`
/// says so.
fn push_csv_field(out: &mut String, field: &str) {
    if !needs_quotes(field) {
        out.push_str(field);
        return;
    }
    out.push('"');
    for (i, part) in field.split('"').enumerate() {
        if i > 0 {
            out.push_str("\"\"");
        }
        out.push_str(part);
    }
    out.push('"');
}

// -------------------------------------------------------------------------------------------------
// Number and date text.

fn digit_count(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| char::from(b)));
}

fn push_zero_padded(out: &mut String, n: u64, width: usize) {
    for _ in digit_count(n)..width {
        out.push('0');
    }
    push_u64(out, n);
}

/// Digits with a comma between each group of three, counted from the right: `1234567` →
/// `1,234,567`.
fn push_grouped(out: &mut String, n: u64) {
    let mut digits = String::with_capacity(20);
    push_u64(&mut digits, n);
    let len = digits.len();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (len - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
}

/// Exact decimal text with two places, e.g. `-1234.50`, for manifest sums.
fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The spellings of an amount found in billing exports; all of them cast under the contract.
#[derive(Clone, Copy, Debug, PartialEq)]
enum MoneyStyle {
    /// `-1234.50`
    Plain,
    /// `1234.5`, `1234`: trailing zeros dropped.
    Short,
    /// `$1,234.50`, `-$1,234.50`
    Dollar,
    /// `($1,234.50)` when negative, else like `Dollar`.
    Accounting,
    /// `(1234.50)` when negative, else like `Plain`.
    AccountingBare,
    /// ` 1234.50 ` (surrounding spaces, so the field is quoted).
    Padded,
}

const MONEY_STYLES: &[MoneyStyle] = &[
    MoneyStyle::Plain,
    MoneyStyle::Short,
    MoneyStyle::Dollar,
    MoneyStyle::Accounting,
    MoneyStyle::AccountingBare,
    MoneyStyle::Padded,
];
const MONEY_STYLE_WEIGHTS: &[u64] = &[35, 20, 20, 10, 7, 8];

fn push_money(out: &mut String, cents: i64, style: MoneyStyle) {
    let negative = cents < 0;
    let abs = cents.unsigned_abs();
    let (whole, frac) = (abs / 100, abs % 100);
    let sign = if negative { "-" } else { "" };
    let push_frac = |out: &mut String| {
        out.push('.');
        push_zero_padded(out, frac, 2);
    };
    match style {
        MoneyStyle::Plain => {
            out.push_str(sign);
            push_u64(out, whole);
            push_frac(out);
        }
        MoneyStyle::Short => {
            out.push_str(sign);
            push_u64(out, whole);
            if !frac.is_multiple_of(10) {
                push_frac(out);
            } else if frac != 0 {
                out.push('.');
                push_u64(out, frac / 10);
            }
        }
        MoneyStyle::Dollar => {
            out.push_str(sign);
            out.push('$');
            push_grouped(out, whole);
            push_frac(out);
        }
        MoneyStyle::Accounting if negative => {
            out.push_str("($");
            push_grouped(out, whole);
            push_frac(out);
            out.push(')');
        }
        MoneyStyle::Accounting => push_money(out, cents, MoneyStyle::Dollar),
        MoneyStyle::AccountingBare if negative => {
            out.push('(');
            push_u64(out, whole);
            push_frac(out);
            out.push(')');
        }
        MoneyStyle::AccountingBare => push_money(out, cents, MoneyStyle::Plain),
        MoneyStyle::Padded => {
            out.push(' ');
            push_money(out, cents, MoneyStyle::Plain);
            out.push(' ');
        }
    }
}

#[derive(Clone, Copy)]
struct CalendarDay {
    year: u16,
    month: u8,
    day: u8,
    /// 0 = Monday.
    weekday: u8,
}

const FIRST_YEAR: u16 = 2019;
const LAST_YEAR: u16 = 2020;
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Every day from 2019-01-01 to 2020-12-31, in order.
fn calendar() -> Vec<CalendarDay> {
    let first = time::Date::from_ordinal_date(i32::from(FIRST_YEAR), 1).expect("a valid year");
    std::iter::successors(Some(first), |d| d.next_day())
        .take_while(|d| d.year() <= i32::from(LAST_YEAR))
        .map(|d| CalendarDay {
            year: d.year() as u16,
            month: u8::from(d.month()),
            day: d.day(),
            weekday: d.weekday().number_days_from_monday(),
        })
        .collect()
}

/// `20190131`
fn push_yyyymmdd(out: &mut String, d: CalendarDay) {
    push_u64(out, u64::from(d.year));
    push_zero_padded(out, u64::from(d.month), 2);
    push_zero_padded(out, u64::from(d.day), 2);
}

/// `2019-01-31`
fn push_iso_date(out: &mut String, d: CalendarDay) {
    push_u64(out, u64::from(d.year));
    out.push('-');
    push_zero_padded(out, u64::from(d.month), 2);
    out.push('-');
    push_zero_padded(out, u64::from(d.day), 2);
}

/// `1/31/2019`, or `01/31/2019` with `width` 2.
fn push_us_date(out: &mut String, d: CalendarDay, width: usize) {
    push_zero_padded(out, u64::from(d.month), width);
    out.push('/');
    push_zero_padded(out, u64::from(d.day), width);
    out.push('/');
    push_u64(out, u64::from(d.year));
}

// -------------------------------------------------------------------------------------------------
// Dimensions.

fn write_patients(dir: &Path, seed: u64, sizes: &Sizes) -> io::Result<TableManifest> {
    let mut rng = Rng::new(seed, STREAM_PATIENT);
    let width = sizes.patient_number_width();
    let mut sink = CsvSink::create(
        dir,
        PATIENT_FILE,
        TextEncoding::Utf8Bom,
        LineEnding::Lf,
        &source_header("dim_patient"),
    )?;
    let mut email = String::with_capacity(64);
    for pk in 1..=sizes.patients {
        let female = rng.percent(51);
        let first = rng.pick(if female {
            FEMALE_FIRST_NAMES
        } else {
            MALE_FIRST_NAMES
        });
        let last = rng.pick(LAST_NAMES);
        let (city, state) = rng.pick(CITIES);
        let age = match rng.weighted(&[18, 57, 25]) {
            0 => rng.below(18),
            1 => 18 + rng.below(47),
            _ => 65 + rng.below(31),
        };
        email.clear();
        if rng.percent(85) {
            push_email(&mut email, first, last, pk, rng.pick(EMAIL_DOMAINS));
        }
        push_u64(sink.raw(), pk);
        push_zero_padded(sink.raw(), pk, width);
        sink.field(first);
        sink.field(last);
        sink.field(&email);
        sink.field(if female { "Female" } else { "Male" });
        push_u64(sink.raw(), age);
        sink.field(city);
        sink.field(state);
        sink.end_record()?;
    }
    sink.finish()
}

/// `jose.munoz123@example.com`: accents folded to ASCII, apostrophes and spaces dropped.
fn push_email(out: &mut String, first: &str, last: &str, pk: u64, domain: &str) {
    let ascii = |out: &mut String, name: &str| {
        for c in name.chars() {
            let folded = match c {
                'á' | 'à' => 'a',
                'é' | 'è' | 'ë' => 'e',
                'í' => 'i',
                'ó' => 'o',
                'ú' | 'ü' => 'u',
                'ñ' => 'n',
                c if c.is_ascii_alphanumeric() => c.to_ascii_lowercase(),
                _ => continue,
            };
            out.push(folded);
        }
    };
    ascii(out, first);
    out.push('.');
    ascii(out, last);
    push_u64(out, pk);
    out.push('@');
    out.push_str(domain);
}

/// NPIs are a check-free 10-digit text: one lead digit and a 9-digit body below this modulus.
const NPI_MODULUS: u64 = 1_000_000_000;

fn write_physicians(dir: &Path, seed: u64, sizes: &Sizes) -> io::Result<TableManifest> {
    let mut rng = Rng::new(seed, STREAM_PHYSICIAN);
    let mut sink = CsvSink::create(
        dir,
        PHYSICIAN_FILE,
        TextEncoding::Utf8,
        LineEnding::Lf,
        PHYSICIAN_HEADER,
    )?;
    let npi_offset = rng.below(NPI_MODULUS);
    let mut name = String::with_capacity(64);
    for pk in 1..=sizes.physicians {
        let names = if rng.percent(50) {
            FEMALE_FIRST_NAMES
        } else {
            MALE_FIRST_NAMES
        };
        let first = rng.pick(names);
        let last = rng.pick(LAST_NAMES);
        name.clear();
        if rng.percent(30) {
            name.push_str("Dr. ");
            name.push_str(first);
            name.push(' ');
            name.push_str(last);
        } else {
            name.push_str(first);
            name.push(' ');
            name.push_str(last);
            name.push_str(", ");
            name.push_str(rng.pick(CREDENTIALS));
        }
        // 3¹⁸ is coprime with 10, so `pk ↦ body` is a bijection modulo 10⁹ that scatters
        // neighbouring keys: NPIs never repeat. Operands stay below 10⁹ · 3¹⁸ < 2⁶⁴.
        let body = ((pk % NPI_MODULUS) * 387_420_489 + npi_offset) % NPI_MODULUS;
        let lead = if rng.percent(15) { 0 } else { 1 + rng.below(2) };
        sink.field(&name);
        push_u64(sink.raw(), pk);
        sink.field(rng.pick(SPECIALTIES));
        let npi = sink.raw();
        push_u64(npi, lead);
        push_zero_padded(npi, body, 9);
        sink.field(rng.pick(FTES));
        sink.end_record()?;
    }
    sink.finish()
}

fn write_payers(dir: &Path) -> io::Result<TableManifest> {
    let mut sink = CsvSink::create(
        dir,
        PAYER_FILE,
        TextEncoding::Utf8,
        LineEnding::Lf,
        &source_header("dim_payer"),
    )?;
    for (pk, payer) in (1..).zip(PAYERS) {
        push_u64(sink.raw(), pk);
        sink.field(payer.name);
        sink.end_record()?;
    }
    sink.finish()
}

fn write_locations(dir: &Path, sizes: &Sizes) -> io::Result<TableManifest> {
    let mut sink = CsvSink::create(
        dir,
        LOCATION_FILE,
        TextEncoding::Utf8,
        LineEnding::Lf,
        LOCATION_HEADER,
    )?;
    for (pk, name) in (1..=sizes.locations).zip(LOCATIONS) {
        push_u64(sink.raw(), pk);
        sink.field(name);
        sink.end_record()?;
    }
    sink.finish()
}

fn write_transactions(dir: &Path) -> io::Result<TableManifest> {
    let mut sink = CsvSink::create(
        dir,
        TRANSACTION_FILE,
        TextEncoding::Utf8,
        LineEnding::Lf,
        &source_header("dim_transaction"),
    )?;
    for (pk, &(kind, description, reason)) in (1..).zip(TRANSACTIONS) {
        push_u64(sink.raw(), pk);
        sink.field(kind);
        sink.field(description);
        sink.field(reason);
        sink.end_record()?;
    }
    sink.finish()
}

struct DiagnosisCode {
    code: String,
    description: String,
    group: &'static str,
}

/// The first `count` diagnosis codes: the hand-written edge cases first, then stems × qualifiers.
fn diagnosis_catalogue(count: usize) -> Vec<DiagnosisCode> {
    let special = DIAGNOSIS_SPECIALS
        .iter()
        .map(|&(code, description, group)| DiagnosisCode {
            code: code.to_owned(),
            description: description.to_owned(),
            group,
        });
    let combined = DIAGNOSIS_QUALIFIERS
        .iter()
        .flat_map(|&(suffix, qualifier)| {
            DIAGNOSIS_STEMS
                .iter()
                .map(move |&(stem, description, group)| DiagnosisCode {
                    code: format!("{stem}.{suffix}"),
                    description: format!("{description}, {qualifier}"),
                    group,
                })
        });
    special.chain(combined).take(count).collect()
}

fn write_diagnoses(dir: &Path, sizes: &Sizes) -> io::Result<TableManifest> {
    let mut sink = CsvSink::create(
        dir,
        DIAGNOSIS_FILE,
        TextEncoding::Windows1252,
        LineEnding::Lf,
        &source_header("dim_diagnosis_code"),
    )?;
    for (pk, d) in (1..).zip(diagnosis_catalogue(sizes.diagnoses)) {
        push_u64(sink.raw(), pk);
        sink.field(&d.code);
        sink.field(&d.description);
        sink.field(d.group);
        sink.end_record()?;
    }
    sink.finish()
}

struct CptCode {
    code: u32,
    description: String,
    grouping: &'static str,
    price_cents: i64,
}

/// The first `count` CPT codes: the hand-written list, then variants of it on the next free codes.
fn cpt_catalogue(count: usize) -> Vec<CptCode> {
    let mut codes: Vec<CptCode> = CPT_CODES
        .iter()
        .take(count)
        .map(|&(code, description, grouping, price_cents)| CptCode {
            code,
            description: description.to_owned(),
            grouping,
            price_cents,
        })
        .collect();
    let mut used: BTreeSet<u32> = codes.iter().map(|c| c.code).collect();
    let mut k = 0;
    while codes.len() < count {
        let (base, description, grouping, price) = CPT_CODES[k % CPT_CODES.len()];
        let round = k / CPT_CODES.len();
        let (qualifier, percent) = CPT_VARIANTS[round % CPT_VARIANTS.len()];
        let code = base + 1 + round as u32;
        if code <= 99_999 && used.insert(code) {
            codes.push(CptCode {
                code,
                description: format!("{description}; {qualifier}"),
                grouping,
                price_cents: price * percent / 100,
            });
        }
        k += 1;
    }
    codes
}

fn write_cpt_codes(dir: &Path, codes: &[CptCode]) -> io::Result<TableManifest> {
    let mut sink = CsvSink::create(
        dir,
        CPT_FILE,
        TextEncoding::Windows1252,
        LineEnding::Lf,
        &source_header("dim_cpt_code"),
    )?;
    for (pk, c) in (1..).zip(codes) {
        push_u64(sink.raw(), pk);
        push_zero_padded(sink.raw(), u64::from(c.code), 5);
        sink.field(&c.description);
        sink.field(c.grouping);
        sink.end_record()?;
    }
    sink.finish()
}

fn write_dates(dir: &Path, calendar: &[CalendarDay]) -> io::Result<TableManifest> {
    let mut sink = CsvSink::create(
        dir,
        DATE_FILE,
        TextEncoding::Utf8,
        LineEnding::Lf,
        &source_header("dim_date"),
    )?;
    for &d in calendar {
        let month = MONTH_NAMES[usize::from(d.month) - 1];
        push_yyyymmdd(sink.raw(), d);
        push_us_date(sink.raw(), d, 1);
        push_u64(sink.raw(), u64::from(d.year));
        sink.field(month);
        let period = sink.raw();
        push_u64(period, u64::from(d.year));
        push_zero_padded(period, u64::from(d.month), 2);
        let month_year = sink.raw();
        month_year.push_str(&month[..3]);
        month_year.push('-');
        push_u64(month_year, u64::from(d.year));
        push_u64(sink.raw(), u64::from(d.day));
        sink.field(DAY_NAMES[usize::from(d.weekday)]);
        sink.end_record()?;
    }
    sink.finish()
}

// -------------------------------------------------------------------------------------------------
// Facts.

/// Everything the fact writer draws keys and amounts from.
struct FactPlan<'a> {
    rows: u64,
    sizes: &'a Sizes,
    cpt_prices: &'a [i64],
    calendar: &'a [CalendarDay],
    plain: bool,
}

/// One fact row's keys (1-based) and amounts (in cents; units in hundredths).
struct FactRow {
    patient: u64,
    physician: u64,
    post_day: usize,
    service_day: usize,
    cpt: u64,
    payer: u64,
    transaction: u64,
    location: u64,
    diagnosis: u64,
    units: i64,
    gross: i64,
    payment: i64,
    adjustment: i64,
    ar: i64,
}

const UNITS: &[i64] = &[100, 200, 300, 400, 150, 50];
const UNIT_WEIGHTS: &[u64] = &[75, 10, 4, 3, 5, 3];
/// Days from service to posting.
const POSTING_LAGS: &[(u64, u64)] = &[(0, 0), (1, 7), (8, 30), (31, 90)];
const POSTING_LAG_WEIGHTS: &[u64] = &[20, 40, 30, 10];

impl FactRow {
    fn draw(rng: &mut Rng, plan: &FactPlan) -> Self {
        let sizes = plan.sizes;
        let cpt = rng.skewed_key(plan.cpt_prices.len() as u64);
        let payer = rng.weighted(PAYER_WEIGHTS);
        let service_day = rng.below(plan.calendar.len() as u64) as usize;
        let (min_lag, max_lag) = POSTING_LAGS[rng.weighted(POSTING_LAG_WEIGHTS)];
        let lag = (min_lag + rng.below(max_lag - min_lag + 1)) as usize;
        let post_day = (service_day + lag).min(plan.calendar.len() - 1);
        let units = UNITS[rng.weighted(UNIT_WEIGHTS)];

        let price = plan.cpt_prices[(cpt - 1) as usize];
        let mut gross = price * units / 100 * (80 + rng.below(41) as i64) / 100;
        if rng.percent(30) {
            gross = gross / 100 * 100;
        }
        let (payment, adjustment) = if rng.percent(1) {
            // A reversed charge: negative gross, nothing paid or adjusted yet.
            gross = -gross;
            (0, 0)
        } else {
            let paid_bp = PAYERS[payer].paid_basis_points - 1000 + rng.below(2001) as i64;
            let payment = if rng.percent(10) {
                0
            } else {
                -(gross * paid_bp / 10_000)
            };
            let adjustment = if rng.percent(3) {
                // A reversed adjustment puts money back on the balance.
                gross * rng.below(1000) as i64 / 10_000
            } else {
                -((gross + payment) * rng.below(10_001) as i64 / 10_000)
            };
            (payment, adjustment)
        };
        FactRow {
            patient: rng.key(sizes.patients),
            physician: rng.key(sizes.physicians),
            post_day,
            service_day,
            cpt,
            payer: payer as u64 + 1,
            transaction: rng.skewed_key(TRANSACTIONS.len() as u64),
            location: rng.key(sizes.locations),
            diagnosis: rng.skewed_key(sizes.diagnoses as u64),
            units,
            gross,
            payment,
            adjustment,
            ar: gross + payment + adjustment,
        }
    }
}

/// Running column sums in cents, exact whatever the row count.
#[derive(Default)]
struct FactTotals {
    units: i128,
    gross: i128,
    payment: i128,
    adjustment: i128,
    ar: i128,
}

impl FactTotals {
    fn add(&mut self, row: &FactRow) {
        self.units += i128::from(row.units);
        self.gross += i128::from(row.gross);
        self.payment += i128::from(row.payment);
        self.adjustment += i128::from(row.adjustment);
        self.ar += i128::from(row.ar);
    }

    fn into_sums(self) -> BTreeMap<String, String> {
        [
            ("cpt_units", self.units),
            ("gross_charge", self.gross),
            ("payment", self.payment),
            ("adjustment", self.adjustment),
            ("ar", self.ar),
        ]
        .into_iter()
        .map(|(column, cents)| (column.to_owned(), format_cents(cents)))
        .collect()
    }
}

fn write_facts(dir: &Path, seed: u64, plan: &FactPlan) -> io::Result<TableManifest> {
    let mut rng = Rng::new(seed, STREAM_FACT);
    let mut sink = CsvSink::create(
        dir,
        FACT_FILE,
        TextEncoding::Utf8,
        LineEnding::Crlf,
        &source_header("fact_table"),
    )?;
    let width = plan.sizes.patient_number_width();
    let mut totals = FactTotals::default();
    let mut amount = String::with_capacity(32);
    for pk in 1..=plan.rows {
        let row = FactRow::draw(&mut rng, plan);
        totals.add(&row);
        push_u64(sink.raw(), pk);
        push_u64(sink.raw(), row.patient);
        push_u64(sink.raw(), row.physician);
        push_yyyymmdd(sink.raw(), plan.calendar[row.post_day]);
        let service = plan.calendar[row.service_day];
        match rng.weighted(&[40, 35, 25]) {
            _ if plan.plain => push_iso_date(sink.raw(), service),
            0 => push_iso_date(sink.raw(), service),
            1 => push_us_date(sink.raw(), service, 1),
            _ => push_us_date(sink.raw(), service, 2),
        }
        push_u64(sink.raw(), row.cpt);
        push_u64(sink.raw(), row.payer);
        push_u64(sink.raw(), row.transaction);
        push_u64(sink.raw(), row.location);
        push_zero_padded(sink.raw(), row.patient, width);
        push_u64(sink.raw(), row.diagnosis);
        let units_style = if rng.percent(85) && !plan.plain {
            MoneyStyle::Short
        } else {
            MoneyStyle::Plain
        };
        push_money(sink.raw(), row.units, units_style);
        for cents in [row.gross, row.payment, row.adjustment, row.ar] {
            amount.clear();
            let style = MONEY_STYLES[rng.weighted(MONEY_STYLE_WEIGHTS)];
            let style = if plan.plain { MoneyStyle::Plain } else { style };
            push_money(&mut amount, cents, style);
            sink.field(&amount);
        }
        sink.end_record()?;
    }
    let mut table = sink.finish()?;
    table.sums = totals.into_sums();
    Ok(table)
}

// -------------------------------------------------------------------------------------------------
// Catalogues.

#[rustfmt::skip]
const FEMALE_FIRST_NAMES: &[&str] = &[
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah",
    "Karen", "Nancy", "Lisa", "Ashley", "Emily", "Michelle", "Angela", "María", "Renée", "Chloé",
    "Begoña", "Guadalupe", "Aisha", "Mei", "Priya", "Fatima", "Zoë", "Anne-Marie", "Keisha", "Olga",
    "Siobhán",
];
#[rustfmt::skip]
const MALE_FIRST_NAMES: &[&str] = &[
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "José", "André", "Iñigo",
    "René", "Jesús", "Raúl", "Kwame", "Hiroshi", "Raj", "Mohammed", "Jean-Luc", "Dmitri", "Seán",
    "Tyrone", "Wei",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "Muñoz", "Peña", "Núñez", "Ibáñez", "O’Brien", "O’Neil", "D’Angelo",
    "Hébert", "Béland", "Nguyen", "Kim", "Patel", "Cohen", "Van der Berg", "Smith-Jones",
    "MacDonald",
];
/// City and two-letter state; the cities are plain text.
#[rustfmt::skip]
const CITIES: &[(&str, &str)] = &[
    ("New York", "NY"), ("Los Angeles", "CA"), ("Chicago", "IL"), ("Houston", "TX"),
    ("Phoenix", "AZ"), ("Philadelphia", "PA"), ("San Antonio", "TX"), ("San Diego", "CA"),
    ("Dallas", "TX"), ("San Jose", "CA"), ("Austin", "TX"), ("Jacksonville", "FL"),
    ("Columbus", "OH"), ("Charlotte", "NC"), ("Indianapolis", "IN"), ("Seattle", "WA"),
    ("Denver", "CO"), ("Boston", "MA"), ("Nashville", "TN"), ("Detroit", "MI"),
    ("Portland", "OR"), ("Las Vegas", "NV"), ("Memphis", "TN"), ("Louisville", "KY"),
    ("Baltimore", "MD"), ("Milwaukee", "WI"), ("Albuquerque", "NM"), ("Atlanta", "GA"),
    ("Miami", "FL"), ("Minneapolis", "MN"), ("New Orleans", "LA"), ("Salt Lake City", "UT"),
    ("Boise", "ID"), ("Burlington", "VT"), ("Anchorage", "AK"), ("Honolulu", "HI"),
];
const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "mail.example.net",
    "patients.example.com",
];
const CREDENTIALS: &[&str] = &["MD", "DO", "NP", "PA-C", "MD, PhD"];
#[rustfmt::skip]
const SPECIALTIES: &[&str] = &[
    "Family Medicine", "Internal Medicine", "Pediatrics", "Cardiology", "Orthopedic Surgery",
    "Dermatology", "Radiology", "Anesthesiology", "Emergency Medicine", "Obstetrics and Gynecology",
    "Neurology", "Psychiatry", "General Surgery", "Pathology", "Hematology & Oncology",
    "Gastroenterology", "Physical Medicine & Rehabilitation", "Ophthalmology",
];
const FTES: &[&str] = &[
    "1.00", "1.00", "1.00", "1.00", "0.90", "0.80", "0.75", "0.60", "0.50", "0.25",
];

struct Payer {
    name: &'static str,
    /// Typical share of the charge the payer pays, in basis points.
    paid_basis_points: i64,
}

#[rustfmt::skip]
const PAYERS: &[Payer] = &[
    Payer { name: "Medicare", paid_basis_points: 4500 },
    Payer { name: "Medicaid", paid_basis_points: 3500 },
    Payer { name: "Aetna", paid_basis_points: 6000 },
    Payer { name: "Blue Cross, Blue Shield", paid_basis_points: 6200 },
    Payer { name: "Cigna", paid_basis_points: 5800 },
    Payer { name: "UnitedHealthcare", paid_basis_points: 5900 },
    Payer { name: "Humana", paid_basis_points: 5000 },
    Payer { name: "Self-Pay", paid_basis_points: 2500 },
];
/// How often each payer appears on a fact row, in the order of `PAYERS`.
const PAYER_WEIGHTS: &[u64] = &[25, 15, 12, 15, 8, 12, 6, 7];

#[rustfmt::skip]
const LOCATIONS: &[&str] = &[
    "Fairview Medical Center", "St. Luke’s Hospital", "Riverside Family Clinic",
    "Northside Urgent Care", "Lakeview Surgery Center", "Downtown Imaging Center",
    "Cedar Grove Pediatrics", "Mercy Outpatient Pavilion", "Westbrook Orthopedics",
    "Hillcrest Cardiology Associates", "Sunrise Women’s Health", "Pine Valley Laboratory",
    "Harbor Point Rehabilitation", "Oak Ridge Internal Medicine", "Summit Dermatology",
    "Meadowbrook Behavioral Health", "Eastgate Ambulatory Surgery", "Bayside Oncology Institute",
    "Maple Street Community Health", "Canyon Vista Emergency Department",
];

/// TransactionType, Transaction, AdjustmentReason (empty = NULL); the most common first.
#[rustfmt::skip]
const TRANSACTIONS: &[(&str, &str, &str)] = &[
    ("Charge", "Charge", ""),
    ("Payment", "Insurance Payment", ""),
    ("Adjustment", "Contractual Adjustment", "Contractual Obligation"),
    ("Payment", "Patient Payment", ""),
    ("Payment", "Copay", ""),
    ("Adjustment", "Denial", "Non-Covered Service"),
    ("Adjustment", "Write-Off", "Bad Debt"),
    ("Adjustment", "Small Balance Write-Off", "Balance Under $5.00"),
    ("Adjustment", "Timely Filing Write-Off", "Claim Filed After Deadline"),
    ("Adjustment", "Charity Care", "Financial Hardship, Approved"),
];

const INFECTIOUS: &str = "Certain infectious and parasitic diseases";
const NEOPLASMS: &str = "Neoplasms";
const ENDOCRINE: &str = "Endocrine, nutritional and metabolic diseases";
const MENTAL: &str = "Mental, Behavioral and Neurodevelopmental disorders";
const NERVOUS: &str = "Diseases of the nervous system";
const EYE: &str = "Diseases of the eye and adnexa";
const EAR: &str = "Diseases of the ear and mastoid process";
const CIRCULATORY: &str = "Diseases of the circulatory system";
const RESPIRATORY: &str = "Diseases of the respiratory system";
const DIGESTIVE: &str = "Diseases of the digestive system";
const SKIN: &str = "Diseases of the skin and subcutaneous tissue";
const MUSCULOSKELETAL: &str = "Diseases of the musculoskeletal system and connective tissue";
const GENITOURINARY: &str = "Diseases of the genitourinary system";
const SYMPTOMS: &str =
    "Symptoms, signs and abnormal clinical and laboratory findings, not elsewhere classified";
const INJURY: &str = "Injury, poisoning and certain other consequences of external causes";
const FACTORS: &str = "Factors influencing health status and contact with health services";

/// Diagnosis codes that carry the awkward characters: é, ’, ñ, commas, quotes and a line break.
#[rustfmt::skip]
const DIAGNOSIS_SPECIALS: &[(&str, &str, &str)] = &[
    ("I10", "Essential (primary) hypertension", CIRCULATORY),
    ("L81.3", "Café au lait spots", SKIN),
    ("G20", "Parkinson’s disease", NERVOUS),
    ("G30.9", "Alzheimer’s disease, unspecified", NERVOUS),
    ("K50.90", "Crohn’s disease, unspecified, without complications", DIGESTIVE),
    ("H66.90", "Otitis media, unspecified ear (clínica del niño referral)", EAR),
    ("R50.9", "Fever, unspecified (\"FUO\" work-up pending)", SYMPTOMS),
    ("Z71.89", "Other specified counseling\nincl. \"lifestyle\" advice", FACTORS),
    ("M79.604", "Pain in right leg, \"shin splints\" per patient", MUSCULOSKELETAL),
    ("E05.00", "Thyrotoxicosis with diffuse goiter (Graves’ disease)", ENDOCRINE),
];
/// Code stem, description and group; combined with every qualifier below.
#[rustfmt::skip]
const DIAGNOSIS_STEMS: &[(&str, &str, &str)] = &[
    ("E11", "Type 2 diabetes mellitus", ENDOCRINE),
    ("I25", "Chronic ischemic heart disease", CIRCULATORY),
    ("J45", "Asthma", RESPIRATORY),
    ("M54", "Dorsalgia", MUSCULOSKELETAL),
    ("F32", "Major depressive disorder, single episode", MENTAL),
    ("E78", "Disorders of lipoprotein metabolism and other lipidemias", ENDOCRINE),
    ("J06", "Acute upper respiratory infections of multiple and unspecified sites", RESPIRATORY),
    ("K21", "Gastro-esophageal reflux disease", DIGESTIVE),
    ("M17", "Osteoarthritis of knee", MUSCULOSKELETAL),
    ("N18", "Chronic kidney disease", GENITOURINARY),
    ("I48", "Atrial fibrillation and flutter", CIRCULATORY),
    ("I50", "Heart failure", CIRCULATORY),
    ("J18", "Pneumonia, unspecified organism", RESPIRATORY),
    ("J44", "Other chronic obstructive pulmonary disease", RESPIRATORY),
    ("F41", "Other anxiety disorders", MENTAL),
    ("F90", "Attention-deficit hyperactivity disorders", MENTAL),
    ("G43", "Migraine", NERVOUS),
    ("G47", "Sleep disorders", NERVOUS),
    ("H40", "Glaucoma", EYE),
    ("H52", "Disorders of refraction and accommodation", EYE),
    ("E66", "Overweight and obesity", ENDOCRINE),
    ("E03", "Other hypothyroidism", ENDOCRINE),
    ("K57", "Diverticular disease of intestine", DIGESTIVE),
    ("K80", "Cholelithiasis", DIGESTIVE),
    ("M25", "Other joint disorder, not elsewhere classified", MUSCULOSKELETAL),
    ("N39", "Other disorders of urinary system", GENITOURINARY),
    ("L40", "Psoriasis", SKIN),
    ("C50", "Malignant neoplasm of breast", NEOPLASMS),
    ("C34", "Malignant neoplasm of bronchus and lung", NEOPLASMS),
    ("B34", "Viral infection of unspecified site", INFECTIOUS),
    ("S82", "Fracture of lower leg, including ankle", INJURY),
    ("S06", "Intracranial injury", INJURY),
    ("Z00", "Encounter for general examination without complaint", FACTORS),
    ("Z12", "Encounter for screening for malignant neoplasms", FACTORS),
    ("R10", "Abdominal and pelvic pain", SYMPTOMS),
    ("R05", "Cough", SYMPTOMS),
];
/// Code suffix and the qualifier appended to the stem's description.
#[rustfmt::skip]
const DIAGNOSIS_QUALIFIERS: &[(&str, &str)] = &[
    ("9", "unspecified"), ("0", "initial encounter"), ("1", "subsequent encounter"),
    ("2", "with complications"), ("3", "without complications"), ("8", "other specified"),
    ("01", "right side"), ("02", "left side"),
];

const ANESTHESIA: &str = "Anesthesia";
const SURGERY: &str = "Surgery";
const RADIOLOGY: &str = "Radiology";
const LABORATORY: &str = "Pathology and Laboratory";
const MEDICINE: &str = "Medicine";
const EVALUATION: &str = "Evaluation and Management";

/// CPT code, description, grouping and a typical charge in cents. The most common codes come first,
/// and the first 50 (the smallest catalogue) cover every grouping and every awkward character.
#[rustfmt::skip]
const CPT_CODES: &[(u32, &str, &str, i64)] = &[
    (99213, "Office or other outpatient visit, established patient (\"level 3\"), low MDM", EVALUATION, 11_000),
    (99214, "Office or other outpatient visit, established patient, moderate MDM", EVALUATION, 16_500),
    (99203, "Office or other outpatient visit, new patient, low MDM", EVALUATION, 13_000),
    (99212, "Office or other outpatient visit, established patient, straightforward MDM", EVALUATION, 7_500),
    (85025, "Blood count; complete (CBC), automated, with automated differential WBC count", LABORATORY, 3_500),
    (80053, "Comprehensive metabolic panel", LABORATORY, 4_800),
    (36415, "Collection of venous blood by venipuncture", SURGERY, 1_500),
    (99204, "Office or other outpatient visit, new patient, moderate MDM", EVALUATION, 21_000),
    (80061, "Lipid panel", LABORATORY, 5_500),
    (93000, "Electrocardiogram, routine ECG with at least 12 leads; with interpretation and report", MEDICINE, 6_000),
    (96372, "Therapeutic, prophylactic, or diagnostic injection; subcutaneous or intramuscular (patient’s own supply)", MEDICINE, 4_000),
    (90471, "Immunization administration; 1 vaccine", MEDICINE, 3_000),
    (90686, "Influenza virus vaccine, quadrivalent, preservative free (vacuna para niños y adultos)", MEDICINE, 4_200),
    (83036, "Hemoglobin; glycosylated (A1C)", LABORATORY, 3_200),
    (84443, "Thyroid stimulating hormone (TSH)", LABORATORY, 4_500),
    (81002, "Urinalysis, non-automated, without microscopy", LABORATORY, 1_200),
    (71046, "Radiologic examination, chest; 2 views", RADIOLOGY, 12_000),
    (100, "Anesthesia for procedures on salivary glands, including biopsy", ANESTHESIA, 95_000),
    (810, "Anesthesia for lower intestinal endoscopic procedures", ANESTHESIA, 60_000),
    (1967, "Neuraxial labor analgesia/anesthesia for planned vaginal delivery", ANESTHESIA, 160_000),
    (99215, "Office or other outpatient visit, established patient, high MDM", EVALUATION, 23_000),
    (99211, "Office or other outpatient visit, established patient, may not require a physician", EVALUATION, 2_500),
    (99202, "Office or other outpatient visit, new patient, straightforward MDM", EVALUATION, 9_000),
    (99205, "Office or other outpatient visit, new patient, high MDM", EVALUATION, 27_000),
    (99283, "Emergency department visit, moderate severity", EVALUATION, 32_000),
    (99285, "Emergency department visit, high severity", EVALUATION, 98_000),
    (99221, "Initial hospital inpatient care, straightforward or low MDM", EVALUATION, 21_000),
    (99231, "Subsequent hospital inpatient care, straightforward or low MDM", EVALUATION, 8_500),
    (99385, "Initial comprehensive preventive medicine, 18-39 years", EVALUATION, 19_000),
    (99395, "Periodic comprehensive preventive medicine, 18-39 years", EVALUATION, 17_000),
    (97110, "Therapeutic exercises, each 15 minutes", MEDICINE, 5_500),
    (97140, "Manual therapy techniques (eg, mobilization/manipulation), each 15 minutes", MEDICINE, 5_000),
    (90834, "Psychotherapy, 45 minutes with patient", MEDICINE, 15_000),
    (92014, "Ophthalmological services: medical examination, established patient, 1 or more visits", MEDICINE, 14_000),
    (94010, "Spirometry, including graphic record, total and timed vital capacity", MEDICINE, 9_000),
    (87086, "Culture, bacterial; quantitative colony count, urine", LABORATORY, 2_800),
    (88305, "Level IV - Surgical pathology,\ngross and microscopic examination", LABORATORY, 16_000),
    (70450, "Computed tomography, head or brain; without contrast material", RADIOLOGY, 95_000),
    (72148, "Magnetic resonance (eg, proton) imaging, spinal canal and contents, lumbar; without contrast", RADIOLOGY, 180_000),
    (73721, "Magnetic resonance imaging, any joint of lower extremity; without contrast", RADIOLOGY, 175_000),
    (74177, "Computed tomography, abdomen and pelvis; with contrast material(s)", RADIOLOGY, 160_000),
    (76805, "Ultrasound, pregnant uterus, real time with image documentation (échographie)", RADIOLOGY, 38_000),
    (77067, "Screening mammography, bilateral (2-view study of each breast)", RADIOLOGY, 25_000),
    (78452, "Myocardial perfusion imaging, tomographic (SPECT), multiple studies", RADIOLOGY, 210_000),
    (10060, "Incision and drainage of abscess; simple or single", SURGERY, 28_000),
    (11042, "Débridement, subcutaneous tissue; first 20 sq cm or less", SURGERY, 33_000),
    (12001, "Simple repair of superficial wounds of scalp, neck, axillae, external genitalia, trunk and/or extremities; 2.5 cm or less", SURGERY, 26_000),
    (17000, "Destruction, premalignant lesions (eg, actinic keratoses); first lesion", SURGERY, 14_000),
    (20610, "Arthrocentesis, aspiration and/or injection, major joint or bursa", SURGERY, 22_000),
    (29881, "Arthroscopy, knee, surgical; with meniscectomy (medial OR lateral)", SURGERY, 620_000),
    (27447, "Arthroplasty, knee, condyle and plateau; medial AND lateral compartments (total knee arthroplasty)", SURGERY, 3_400_000),
    (43239, "Esophagogastroduodenoscopy, flexible, transoral; with biopsy, single or multiple", SURGERY, 310_000),
    (45378, "Colonoscopy, flexible; diagnostic", SURGERY, 280_000),
    (47562, "Laparoscopy, surgical; cholecystectomy", SURGERY, 1_250_000),
    (66984, "Extracapsular cataract removal with insertion of intraocular lens prosthesis", SURGERY, 480_000),
    (59400, "Routine obstetric care including antepartum care, vaginal delivery and postpartum care", SURGERY, 650_000),
    (140, "Anesthesia for procedures on eye; not otherwise specified", ANESTHESIA, 80_000),
    (400, "Anesthesia for procedures on the integumentary system on the extremities, anterior trunk and perineum", ANESTHESIA, 70_000),
    (790, "Anesthesia for intraperitoneal procedures in upper abdomen including laparoscopy", ANESTHESIA, 150_000),
    (1402, "Anesthesia for open or surgical arthroscopic procedures on knee joint; total knee arthroplasty", ANESTHESIA, 180_000),
];
/// Qualifier appended to a base code's description and the share of its price, for codes beyond the
/// list.
#[rustfmt::skip]
const CPT_VARIANTS: &[(&str, i64)] = &[
    ("each additional unit", 60),
    ("bilateral procedure", 150),
    ("reduced services", 50),
    ("repeat procedure by same physician", 80),
    ("distinct procedural service", 100),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp dir, unique to the test and the process.
    fn scratch_dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("healthetl-generate-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn generate_into(test: &str, fact_rows: u64, seed: u64) -> (PathBuf, Manifest) {
        let out_dir = scratch_dir(test);
        let manifest = generate(&GenerateOptions {
            fact_rows,
            out_dir: out_dir.clone(),
            seed,
            plain: false,
        })
        .unwrap();
        (out_dir, manifest)
    }

    const ALL_FILES: &[&str] = &[
        FACT_FILE,
        PATIENT_FILE,
        PHYSICIAN_FILE,
        PAYER_FILE,
        LOCATION_FILE,
        TRANSACTION_FILE,
        DIAGNOSIS_FILE,
        CPT_FILE,
        DATE_FILE,
        MANIFEST_FILE,
    ];

    /// Decodes a file as the manifest says it is encoded.
    fn read_text(dir: &Path, table: &TableManifest) -> String {
        let bytes = fs::read(dir.join(&table.file)).unwrap();
        match table.encoding.as_str() {
            "utf-8" => String::from_utf8(bytes).unwrap(),
            "utf-8-bom" => {
                String::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap().to_vec()).unwrap()
            }
            "windows-1252" => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(&bytes)
                .0
                .into_owned(),
            other => panic!("unknown encoding {other}"),
        }
    }

    /// A minimal RFC 4180 reader: quoted fields may hold commas, doubled quotes, CR and LF; records
    /// end at LF or CRLF outside quotes.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') if field.is_empty() => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') if chars.peek() == Some(&'\n') => {}
                (false, '\n') => {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(
            field.is_empty() && record.is_empty(),
            "file does not end with a line break"
        );
        records
    }

    /// Header and records of one table.
    fn read_table(dir: &Path, manifest: &Manifest, table: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let mut records = parse_csv(&read_text(dir, &manifest.tables[table]));
        let header = records.remove(0);
        (header, records)
    }

    /// The contract's money cast: surrounding spaces, accounting parentheses, sign, `$`, thousands
    /// groups of three, at most two decimals and ten integer digits; returns cents.
    fn parse_money(text: &str) -> Option<i64> {
        let mut s = text.trim();
        let mut negative = false;
        if let Some(inner) = s.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            negative = true;
            s = inner;
        }
        if let Some(rest) = s.strip_prefix('-') {
            if negative {
                return None;
            }
            negative = true;
            s = rest;
        }
        s = s.strip_prefix('$').unwrap_or(s);
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let groups: Vec<&str> = whole.split(',').collect();
        let grouped_ok = groups.len() == 1
            || (!groups[0].is_empty()
                && groups[0].len() <= 3
                && groups[1..].iter().all(|g| g.len() == 3));
        let digits: String = groups.concat();
        if !grouped_ok
            || digits.is_empty()
            || digits.len() > 10
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let cents =
            digits.parse::<i64>().ok()? * 100 + format!("{frac:0<2}").parse::<i64>().ok()?;
        Some(if negative { -cents } else { cents })
    }

    /// The contract's date cast: `YYYYMMDD`, `YYYY-MM-DD`, `M/D/YYYY`, `MM/DD/YYYY`; returns (year,
    /// month, day).
    fn parse_date(text: &str) -> Option<(u16, u8, u8)> {
        let (y, m, d) = if let Some((m, rest)) = text.split_once('/') {
            let (d, y) = rest.split_once('/')?;
            (y, m, d)
        } else if text.contains('-') {
            let mut parts = text.splitn(3, '-');
            (parts.next()?, parts.next()?, parts.next()?)
        } else if text.len() == 8 {
            (&text[..4], &text[4..6], &text[6..])
        } else {
            return None;
        };
        let (y, m, d) = (
            y.parse::<u16>().ok()?,
            m.parse::<u8>().ok()?,
            d.parse::<u8>().ok()?,
        );
        let month = time::Month::try_from(m).ok()?;
        time::Date::from_calendar_date(i32::from(y), month, d)
            .is_ok()
            .then_some((y, m, d))
    }

    fn column(header: &[String], name: &str) -> usize {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    #[test]
    fn same_seed_writes_identical_files() {
        let (a, _) = generate_into("same-seed-a", 3_000, 7);
        let (b, _) = generate_into("same-seed-b", 3_000, 7);
        for file in ALL_FILES {
            assert_eq!(
                fs::read(a.join(file)).unwrap(),
                fs::read(b.join(file)).unwrap(),
                "{file} differs"
            );
        }
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    #[test]
    fn different_seeds_write_different_facts_and_patients() {
        let (a, _) = generate_into("other-seed-a", 1_000, 1);
        let (b, _) = generate_into("other-seed-b", 1_000, 2);
        for file in [FACT_FILE, PATIENT_FILE, PHYSICIAN_FILE] {
            assert_ne!(
                fs::read(a.join(file)).unwrap(),
                fs::read(b.join(file)).unwrap(),
                "{file} is the same"
            );
        }
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    #[test]
    fn manifest_row_counts_equal_the_records_in_each_file() {
        let (dir, manifest) = generate_into("row-counts", 2_500, 11);
        assert_eq!(manifest.tables.len(), 9);
        for (table, entry) in &manifest.tables {
            let (header, records) = read_table(&dir, &manifest, table);
            assert_eq!(records.len() as u64, entry.rows, "{table}");
            for (line, record) in records.iter().enumerate() {
                assert_eq!(
                    record.len(),
                    header.len(),
                    "{table} record {line} has a different field count"
                );
            }
        }
        assert_eq!(manifest.tables["fact_table"].rows, 2_500);
        assert_eq!(manifest.tables["dim_date"].rows, 731);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn read_manifest_returns_what_generate_wrote() {
        let (dir, manifest) = generate_into("read-manifest", 100, 5);
        assert_eq!(read_manifest(&dir).unwrap(), manifest);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn headers_are_the_source_headers_with_the_two_deliberate_deviations() {
        let (dir, manifest) = generate_into("headers", 100, 5);
        let (fact, _) = read_table(&dir, &manifest, "fact_table");
        assert_eq!(fact, source_header("fact_table"));
        let (location, _) = read_table(&dir, &manifest, "dim_location");
        assert_eq!(location, ["dimLocationPK", "Location Name"]);
        let (physician, _) = read_table(&dir, &manifest, "dim_physician");
        assert_eq!(physician[0], "ProviderName");
        let files: BTreeSet<&str> = manifest.tables.values().map(|t| t.file.as_str()).collect();
        assert_eq!(files.len(), 9);
        for file in &ALL_FILES[..9] {
            assert!(files.contains(file), "{file} missing from manifest");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fact_table_uses_crlf_and_the_dimensions_use_lf() {
        let (dir, manifest) = generate_into("line-endings", 200, 3);
        for entry in manifest.tables.values() {
            let bytes = fs::read(dir.join(&entry.file)).unwrap();
            let crlf = bytes.windows(2).filter(|w| w == b"\r\n").count();
            let lf = bytes.iter().filter(|&&b| b == b'\n').count();
            match entry.line_ending.as_str() {
                "crlf" => assert_eq!(crlf, lf, "{}", entry.file),
                _ => assert_eq!(crlf, 0, "{}", entry.file),
            }
        }
        assert_eq!(manifest.tables["fact_table"].line_ending, "crlf");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn patient_file_starts_with_a_byte_order_mark_and_keeps_accented_names() {
        let (dir, manifest) = generate_into("bom", 3_000, 9);
        let bytes = fs::read(dir.join(PATIENT_FILE)).unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBFdimPatientPK,"));
        let text = read_text(&dir, &manifest.tables["dim_patient"]);
        for needle in ['é', 'ñ', '’'] {
            assert!(text.contains(needle), "no {needle} in patient names");
        }
        let (header, records) = read_table(&dir, &manifest, "dim_patient");
        let email = column(&header, "Email");
        let age = column(&header, "PatientAge");
        assert!(records.iter().any(|r| r[email].is_empty()), "no NULL email");
        assert!(
            records
                .iter()
                .all(|r| r[email].is_empty() || r[email].is_ascii())
        );
        let ages: Vec<u16> = records.iter().map(|r| r[age].parse().unwrap()).collect();
        assert!(ages.iter().all(|&a| a <= 95));
        assert!(ages.iter().any(|&a| a < 18) && ages.iter().any(|&a| a > 65));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn code_files_are_windows_1252_with_accents_quotes_commas_and_a_line_break() {
        let (dir, manifest) = generate_into("cp1252", 100, 4);
        for table in ["dim_diagnosis_code", "dim_cpt_code"] {
            let entry = &manifest.tables[table];
            assert_eq!(entry.encoding, "windows-1252");
            let bytes = fs::read(dir.join(&entry.file)).unwrap();
            assert!(
                String::from_utf8(bytes.clone()).is_err(),
                "{table} is valid UTF-8"
            );
            assert!(
                bytes.contains(&0x92),
                "{table} has no windows-1252 right quote"
            );
            let text = read_text(&dir, entry);
            for needle in ['é', 'ñ', '’'] {
                assert!(text.contains(needle), "{table} has no {needle}");
            }
            let (_, records) = read_table(&dir, &manifest, table);
            let descriptions: Vec<&String> = records.iter().map(|r| &r[2]).collect();
            assert!(
                descriptions.iter().any(|d| d.contains('\n')),
                "{table}: no line break"
            );
            assert!(
                descriptions.iter().any(|d| d.contains('"')),
                "{table}: no quote"
            );
            assert!(
                descriptions.iter().any(|d| d.contains(',')),
                "{table}: no comma"
            );
        }
        let (_, cpt) = read_table(&dir, &manifest, "dim_cpt_code");
        assert!(
            cpt.iter()
                .all(|r| r[1].len() == 5 && r[1].bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(cpt.iter().any(|r| r[1] == "00100"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_fact_key_references_an_existing_dimension_row() {
        let (dir, manifest) = generate_into("foreign-keys", 3_000, 13);
        let keys = |table: &str, column_name: &str| -> BTreeSet<String> {
            let (header, records) = read_table(&dir, &manifest, table);
            let i = column(&header, column_name);
            records.into_iter().map(|r| r[i].clone()).collect()
        };
        let dates = keys("dim_date", "dimDatePostPK");
        let references = [
            ("dimPatientPK", keys("dim_patient", "dimPatientPK")),
            ("dimPhysicianPK", keys("dim_physician", "dimPhysicianPK")),
            ("dimCPTCodePK", keys("dim_cpt_code", "dimCPTCodePK")),
            ("dimPayerPK", keys("dim_payer", "dimPayerPK")),
            (
                "dimTransactionPK",
                keys("dim_transaction", "dimTransactionPK"),
            ),
            ("dimLocationPK", keys("dim_location", "dimLocationPK")),
            (
                "dimDiagnosisCodePK",
                keys("dim_diagnosis_code", "dimDiagnosisCodePK"),
            ),
            ("dimDatePostPK", dates),
        ];
        let (header, patients) = read_table(&dir, &manifest, "dim_patient");
        let number = column(&header, "PatientNumber");
        let patient_numbers: BTreeMap<String, String> = patients
            .iter()
            .map(|r| (r[0].clone(), r[number].clone()))
            .collect();
        let (header, facts) = read_table(&dir, &manifest, "fact_table");
        for (i, fact) in facts.iter().enumerate() {
            assert_eq!(fact[0], (i + 1).to_string(), "FactTablePK out of order");
            for (name, existing) in &references {
                let value = &fact[column(&header, name)];
                assert!(
                    existing.contains(value),
                    "fact {} {name} {value} has no dimension row",
                    i + 1
                );
            }
            let patient = &fact[column(&header, "dimPatientPK")];
            assert_eq!(
                patient_numbers[patient],
                fact[column(&header, "PatientNumber")]
            );
            assert!(fact[column(&header, "PatientNumber")].starts_with('0'));
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn service_dates_fall_in_the_calendar_and_never_after_the_post_date() {
        let (dir, manifest) = generate_into("dates", 3_000, 17);
        let (header, facts) = read_table(&dir, &manifest, "fact_table");
        let (post, service) = (
            column(&header, "dimDatePostPK"),
            column(&header, "dimDateServicePK"),
        );
        let mut shapes = BTreeSet::new();
        for fact in &facts {
            let p = parse_date(&fact[post]).unwrap();
            let s = parse_date(&fact[service]).unwrap();
            assert_eq!(fact[post].len(), 8);
            assert!(
                s <= p,
                "service {} after post {}",
                fact[service],
                fact[post]
            );
            assert!((2019..=2020).contains(&s.0));
            let text = &fact[service];
            shapes.insert(if text.contains('-') {
                "iso"
            } else if text.len() == 10 {
                "mm/dd"
            } else {
                "m/d"
            });
        }
        assert_eq!(shapes.len(), 3, "service dates in only {shapes:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn date_dimension_lists_every_day_of_2019_and_2020() {
        let (dir, manifest) = generate_into("dim-date", 10, 1);
        let (header, records) = read_table(&dir, &manifest, "dim_date");
        assert_eq!(header, source_header("dim_date"));
        assert_eq!(records.len(), 731);
        assert_eq!(
            records[0],
            [
                "20190101", "1/1/2019", "2019", "January", "201901", "Jan-2019", "1", "Tuesday"
            ]
        );
        assert_eq!(records[59][0], "20190301");
        assert_eq!(
            records[365 + 59],
            [
                "20200229",
                "2/29/2020",
                "2020",
                "February",
                "202002",
                "Feb-2020",
                "29",
                "Saturday"
            ]
        );
        assert_eq!(records[730][..2], ["20201231", "12/31/2020"]);
        assert_eq!(records[730][7], "Thursday");
        for record in &records {
            assert_eq!(parse_date(&record[0]), parse_date(&record[1]));
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn manifest_sums_equal_a_recomputation_from_the_fact_file() {
        let (dir, manifest) = generate_into("sums", 4_000, 21);
        let (header, facts) = read_table(&dir, &manifest, "fact_table");
        let sums = &manifest.tables["fact_table"].sums;
        for (source, warehouse) in [
            ("CPTUnits", "cpt_units"),
            ("GrossCharge", "gross_charge"),
            ("Payment", "payment"),
            ("Adjustment", "adjustment"),
            ("AR", "ar"),
        ] {
            let i = column(&header, source);
            let total: i128 = facts
                .iter()
                .map(|f| {
                    i128::from(parse_money(&f[i]).unwrap_or_else(|| panic!("{source} {:?}", f[i])))
                })
                .sum();
            assert_eq!(sums[warehouse], format_cents(total), "{source}");
        }
        assert_eq!(sums.len(), 5);
        assert!(
            manifest
                .tables
                .iter()
                .all(|(t, e)| t == "fact_table" || e.sums.is_empty())
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn accounts_receivable_is_charge_plus_payment_plus_adjustment() {
        let (dir, manifest) = generate_into("ar", 3_000, 23);
        let (header, facts) = read_table(&dir, &manifest, "fact_table");
        let money = |f: &Vec<String>, name: &str| parse_money(&f[column(&header, name)]).unwrap();
        let mut negative_payments = 0;
        for fact in &facts {
            let (gross, payment, adjustment) = (
                money(fact, "GrossCharge"),
                money(fact, "Payment"),
                money(fact, "Adjustment"),
            );
            assert_eq!(money(fact, "AR"), gross + payment + adjustment);
            negative_payments += usize::from(payment < 0);
        }
        assert!(
            negative_payments > facts.len() / 2,
            "payments should mostly be negative"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn money_columns_mix_every_supported_spelling() {
        let (dir, manifest) = generate_into("money-styles", 3_000, 29);
        let (header, facts) = read_table(&dir, &manifest, "fact_table");
        let texts: Vec<&str> = facts
            .iter()
            .flat_map(|f| {
                ["GrossCharge", "Payment", "Adjustment", "AR"]
                    .map(|c| f[column(&header, c)].as_str())
            })
            .collect();
        let seen = |pred: &dyn Fn(&str) -> bool| texts.iter().any(|t| pred(t));
        assert!(seen(&|t| t.starts_with("-$")));
        assert!(seen(&|t| t.starts_with("($")));
        assert!(seen(&|t| t.starts_with('(') && !t.contains('$')));
        assert!(seen(&|t| t.starts_with(' ') && t.ends_with(' ')));
        assert!(seen(&|t| t.contains(',')));
        assert!(seen(&|t| t
            .split_once('.')
            .is_some_and(|(_, f)| f.len() == 1)));
        assert!(seen(&|t| !t.contains('.')));
        let units = column(&header, "CPTUnits");
        assert!(facts.iter().any(|f| f[units] == "1.5"));
        assert!(
            facts
                .iter()
                .all(|f| parse_money(&f[units]).is_some_and(|u| u > 0))
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dimension_fields_fit_their_varchar_limits() {
        let (dir, manifest) = generate_into("varchar", 20_000, 31);
        for table in manifest.tables.keys() {
            let (header, records) = read_table(&dir, &manifest, table);
            for (i, name) in header.iter().enumerate() {
                let limit = match name.as_str() {
                    "CptDesc" | "DiagnosisCodeDescription" | "Transaction" | "AdjustmentReason" => {
                        500
                    }
                    n if n.ends_with("PK")
                        || n.ends_with("Number")
                        || n.ends_with("Npi")
                        || n.ends_with("Code") =>
                    {
                        32
                    }
                    _ => 100,
                };
                let longest = records
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0);
                assert!(longest <= limit, "{table}.{name}: {longest} > {limit}");
            }
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn physician_npis_are_unique_ten_digit_text_some_with_a_leading_zero() {
        let (dir, manifest) = generate_into("npi", 50_000, 37);
        let (header, records) = read_table(&dir, &manifest, "dim_physician");
        let npi = column(&header, "ProviderNpi");
        let npis: BTreeSet<&str> = records.iter().map(|r| r[npi].as_str()).collect();
        assert_eq!(npis.len(), records.len());
        assert!(
            npis.iter()
                .all(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(npis.iter().any(|n| n.starts_with('0')));
        let fte = column(&header, "ProviderFTE");
        assert!(
            records
                .iter()
                .all(|r| parse_money(&r[fte]).is_some_and(|c| c > 0 && c <= 100))
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dimension_sizes_scale_with_fact_rows_above_their_minimums() {
        let small = Sizes::for_fact_rows(0);
        assert_eq!(
            (small.patients, small.physicians, small.locations),
            (50, 20, 10)
        );
        assert_eq!((small.diagnoses, small.cpt_codes), (50, 50));
        let large = Sizes::for_fact_rows(4_000_000);
        assert_eq!(
            (large.patients, large.physicians, large.locations),
            (400_000, 1000, 20)
        );
        assert_eq!((large.diagnoses, large.cpt_codes), (200, 200));
        assert_eq!((PAYERS.len(), TRANSACTIONS.len()), (8, 10));
        assert_eq!(PAYERS.len(), PAYER_WEIGHTS.len());
        assert_eq!(diagnosis_catalogue(200).len(), 200);
        assert_eq!(cpt_catalogue(200).len(), 200);
        let codes: BTreeSet<String> = diagnosis_catalogue(200)
            .into_iter()
            .map(|d| d.code)
            .collect();
        assert_eq!(codes.len(), 200, "diagnosis codes repeat");
        let cpts: BTreeSet<u32> = cpt_catalogue(200).into_iter().map(|c| c.code).collect();
        assert_eq!(cpts.len(), 200, "CPT codes repeat");
    }

    #[test]
    fn zero_fact_rows_still_writes_every_dimension() {
        let (dir, manifest) = generate_into("zero-rows", 0, 1);
        assert_eq!(manifest.tables["fact_table"].rows, 0);
        assert_eq!(manifest.tables["fact_table"].sums["ar"], "0.00");
        assert_eq!(manifest.tables["dim_patient"].rows, 50);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        let quoted = |s: &str| {
            let mut out = String::new();
            push_csv_field(&mut out, s);
            out
        };
        assert_eq!(quoted("plain"), "plain");
        assert_eq!(quoted(""), "");
        assert_eq!(
            quoted("Blue Cross, Blue Shield"),
            "\"Blue Cross, Blue Shield\""
        );
        assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quoted("two\nlines"), "\"two\nlines\"");
        assert_eq!(quoted("cr\r"), "\"cr\r\"");
        assert_eq!(quoted(" 12.00 "), "\" 12.00 \"");
        assert_eq!(
            parse_csv(&format!("{},{}\n", quoted("a,\"b\""), quoted("c"))),
            [["a,\"b\"", "c"]]
        );
    }

    #[test]
    fn every_money_spelling_parses_back_to_its_cents() {
        for cents in [
            0,
            5,
            50,
            100,
            120_050,
            -120_050,
            -1_200,
            12_345_678_901,
            -99_999_999_999,
        ] {
            for &style in MONEY_STYLES {
                let mut text = String::new();
                push_money(&mut text, cents, style);
                assert_eq!(parse_money(&text), Some(cents), "{style:?} {text:?}");
            }
        }
        let spell = |cents, style| {
            let mut text = String::new();
            push_money(&mut text, cents, style);
            text
        };
        assert_eq!(spell(123_450, MoneyStyle::Short), "1234.5");
        assert_eq!(spell(-123_450, MoneyStyle::Accounting), "($1,234.50)");
        assert_eq!(spell(-1_200, MoneyStyle::AccountingBare), "(12.00)");
        assert_eq!(spell(123_456_700, MoneyStyle::Dollar), "$1,234,567.00");
        assert_eq!(spell(1_200, MoneyStyle::Padded), " 12.00 ");
        assert_eq!(format_cents(-123_450), "-1234.50");
        assert_eq!(format_cents(-5), "-0.05");
    }
}
