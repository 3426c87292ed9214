//! The pipeline against a real PostgreSQL: every test loads into a database of its own, through the library or the
//! `healthetl` binary, and checks the warehouse, the ledger and the reports against expectations computed from the
//! files it wrote (or the committed sample's manifest).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Output, TempDir, TestDb, connect, rows, run_bin, scalar, within};
use healthetl::config::PgFirstLoad;
use healthetl::generate::{GenerateOptions, Manifest, generate, read_manifest};
use healthetl::pipeline::{LoadOptions, LoadReport, Status, load_object};
use healthetl::schema::SCHEMA;
use healthetl::source::{Object, TextEncoding};
use healthetl::warehouse::{Loader, Postgres};

// -------------------------------------------------------------------------------------------------
// Helpers.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample_dir() -> PathBuf {
    repo().join("data/sample")
}

/// The committed sample's manifest, checked to describe every table of the schema.
fn sample_manifest() -> Manifest {
    let manifest = read_manifest(&sample_dir()).expect("data/sample/manifest.json is committed");
    let tables: BTreeSet<&str> = manifest.tables.keys().map(String::as_str).collect();
    let schema: BTreeSet<&str> = SCHEMA.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tables, schema, "the manifest covers every table");
    manifest
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_string()
}

fn options(tmp: &TempDir) -> LoadOptions {
    LoadOptions {
        force: false,
        reject_threshold: 0.10,
        rejects_dir: tmp.path().join("rejects"),
        ..LoadOptions::default()
    }
}

/// Load one local file through the library.
async fn load(pg: &mut Postgres, path: &Path, options: &LoadOptions) -> LoadReport {
    let object = Object::local(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    within(
        &format!("loading {}", path.display()),
        load_object(pg, object, options, None),
    )
    .await
}

#[track_caller]
fn assert_status(report: &LoadReport, status: Status) {
    assert_eq!(report.status, status, "{report:#?}");
}

/// CSV bytes (LF line ends, quoting as needed) of a header and rows.
fn csv_bytes<R, F>(header: &[&str], records: R) -> Vec<u8>
where
    R: IntoIterator<Item = Vec<F>>,
    F: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header).expect("header");
    for r in records {
        w.write_record(r).expect("record");
    }
    w.into_inner().expect("csv bytes")
}

/// A UTF-8 CSV file without BOM: its header and records.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    common::files::records(&text)
}

/// Expected query rows: every value present.
fn expect_rows<R: AsRef<[S]>, S: AsRef<str>>(rows: &[R]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| {
            r.as_ref()
                .iter()
                .map(|v| Some(v.as_ref().to_string()))
                .collect()
        })
        .collect()
}

/// `pk,name` pairs of a two-column dimension table, ordered by key.
async fn pairs(db: &TestDb, table: &str, pk: &str, name: &str) -> Vec<Vec<Option<String>>> {
    rows(
        &db.url,
        &format!("SELECT {pk}::text AS k, {name} AS v FROM health.{table} ORDER BY {pk}"),
    )
    .await
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// The fields of one CSV line parsed on its own (the sample files have no quoted line breaks).
fn parse_line(line: &[u8]) -> Vec<String> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line)
        .records()
        .next()
        .expect("a record")
        .expect("valid CSV")
        .iter()
        .map(String::from)
        .collect()
}

/// A text file as lines, to change one field of one line and write it back byte for byte otherwise.
struct Lines {
    bom: bool,
    crlf: bool,
    /// `lines[0]` is line 1 (the header).
    lines: Vec<Vec<u8>>,
}

impl Lines {
    fn read(path: &Path) -> Lines {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (bom, body) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => (true, rest),
            None => (false, &bytes[..]),
        };
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        let crlf = body
            .split(|&b| b == b'\n')
            .next()
            .is_some_and(|l| l.ends_with(b"\r"));
        let lines = body
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .collect();
        Lines { bom, crlf, lines }
    }

    fn data_rows(&self) -> usize {
        self.lines.len() - 1
    }

    fn column(&self, name: &str) -> usize {
        parse_line(&self.lines[0])
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// The fields of 1-based `line`.
    fn fields(&self, line: usize) -> Vec<String> {
        parse_line(&self.lines[line - 1])
    }

    /// Set `column` of 1-based `line` to `value`; returns the line's fields after the change.
    fn set(&mut self, line: usize, column: &str, value: &str) -> Vec<String> {
        let idx = self.column(column);
        let mut fields = self.fields(line);
        fields[idx] = value.to_string();
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        w.write_record(&fields).expect("record");
        let mut bytes = w.into_inner().expect("bytes");
        bytes.pop();
        self.lines[line - 1] = bytes;
        fields
    }

    fn bytes(&self) -> Vec<u8> {
        let end: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let mut out = Vec::new();
        if self.bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        for l in &self.lines {
            out.extend_from_slice(l);
            out.extend_from_slice(end);
        }
        out
    }
}

/// The objects of a `load --json` run, by table.
fn objects_by_table(out: &Output) -> BTreeMap<String, serde_json::Value> {
    let json = out.json();
    json["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("no objects array: {json:#}"))
        .iter()
        .map(|o| {
            let table = o["table"].as_str().expect("a routed table").to_string();
            (table, o.clone())
        })
        .collect()
}

/// `(line, column)` of the rejects a JSON report lists.
fn json_rejects(object: &serde_json::Value) -> BTreeSet<(u64, String)> {
    object["rejects"]
        .as_array()
        .expect("rejects array")
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["column"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A rejects file: `rejected_line` → the original fields of that row.
fn read_rejects(path: &Path) -> BTreeMap<u64, Vec<String>> {
    let (header, records) = read_csv(path);
    assert_eq!(
        header[..5],
        [
            "rejected_source",
            "rejected_line",
            "rejected_column",
            "rejected_rule",
            "rejected_reason"
        ],
        "{}",
        path.display()
    );
    records
        .into_iter()
        .map(|r| (r[1].parse().expect("line number"), r[5..].to_vec()))
        .collect()
}

async fn fact_sums(db: &TestDb, manifest: &Manifest) -> BTreeMap<String, String> {
    let mut sums = BTreeMap::new();
    for column in manifest.tables["fact_table"].sums.keys() {
        let sql = format!("SELECT SUM({column})::text FROM health.fact_table");
        sums.insert(column.clone(), scalar::<String>(&db.url, &sql).await);
    }
    sums
}

async fn table_counts(db: &TestDb, manifest: &Manifest) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for table in manifest.tables.keys() {
        let n = db.count(&format!("health.{table}")).await;
        counts.insert(table.clone(), u64::try_from(n).expect("count"));
    }
    counts
}

fn manifest_counts(manifest: &Manifest) -> BTreeMap<String, u64> {
    manifest
        .tables
        .iter()
        .map(|(t, m)| (t.clone(), m.rows))
        .collect()
}

/// `healthetl load data/sample --json` from the repository root, rejects into `rejects`.
async fn load_sample_with_binary(db: &TestDb, rejects: &Path, extra: &[&str]) -> Output {
    let rejects = path_str(rejects);
    let mut args = vec!["load", "data/sample", "--json", "--rejects-dir", &rejects];
    args.extend_from_slice(extra);
    run_bin(Some(&db.url), &repo(), args).await
}

/// The fact table's source headers, from the schema declaration.
fn fact_header() -> Vec<&'static str> {
    healthetl::schema::SCHEMA
        .by_name("fact_table")
        .expect("fact_table is declared")
        .columns
        .iter()
        .map(|c| c.source)
        .collect()
}

/// A fact record with plain values, `overrides` by source header.
fn fact_record(pk: u32, overrides: &[(&str, &str)]) -> Vec<String> {
    let pk = pk.to_string();
    let mut record: Vec<String> = [
        pk.as_str(),
        "1",
        "2",
        "2019-01-01",
        "2019-01-01",
        "3",
        "4",
        "5",
        "6",
        "000001",
        "7",
        "1",
        "100.00",
        "-50.00",
        "-10.00",
        "40.00",
    ]
    .map(String::from)
    .to_vec();
    for (column, value) in overrides {
        let idx = fact_header()
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no fact column {column}"));
        record[idx] = (*value).to_string();
    }
    record
}

// -------------------------------------------------------------------------------------------------
// The sample, reloads and updates.

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_loads_with_every_tables_row_count_and_the_exact_fact_sums_of_its_manifest() {
    let db = TestDb::new("sample_loads").await;
    let tmp = TempDir::new("sample_loads");
    let manifest = sample_manifest();

    let out = load_sample_with_binary(&db, &tmp.path().join("rejects"), &[]).await;

    assert_eq!(out.code, Some(0), "{out:#?}");
    let objects = objects_by_table(&out);
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        manifest.tables.keys().collect::<Vec<_>>(),
        "one object per table"
    );
    for (table, expected) in &manifest.tables {
        let o = &objects[table];
        assert_eq!(o["status"], "loaded", "{table}: {o:#}");
        assert_eq!(o["rows_read"], expected.rows, "{table}: {o:#}");
        assert_eq!(o["rows_loaded"], expected.rows, "{table}: {o:#}");
        assert_eq!(o["rows_rejected"], 0, "{table}: {o:#}");
        assert_eq!(o["rows_duplicate"], 0, "{table}: {o:#}");
        // The manifest says utf-8-bom for a BOM file; the loader reports the text encoding, utf-8.
        let encoding = if expected.encoding == "windows-1252" {
            "windows-1252"
        } else {
            "utf-8"
        };
        let reported = o["encoding"].as_str().unwrap_or_default();
        assert_eq!(reported, encoding, "{table}: {o:#}");
    }
    let total_rows: u64 = manifest.tables.values().map(|t| t.rows).sum();
    let totals = &out.json()["totals"];
    assert_eq!(totals["loaded"], manifest.tables.len(), "{totals:#}");
    assert_eq!(totals["rows_loaded"], total_rows, "{totals:#}");

    assert_eq!(
        table_counts(&db, &manifest).await,
        manifest_counts(&manifest)
    );
    let sums = &manifest.tables["fact_table"].sums;
    assert_eq!(sums.len(), 5, "the manifest sums the five money columns");
    assert_eq!(&fact_sums(&db, &manifest).await, sums);
    let ledger = rows(
        &db.url,
        "SELECT table_name::text, encoding::text FROM etl.load_log ORDER BY 1",
    )
    .await;
    let expected: Vec<[&str; 2]> = manifest
        .tables
        .iter()
        .map(|(table, m)| {
            let encoding = if m.encoding == "windows-1252" {
                "windows-1252"
            } else {
                "utf-8"
            };
            [table.as_str(), encoding]
        })
        .collect();
    assert_eq!(ledger, expect_rows(&expected), "one ledger row per table");
}

#[tokio::test(flavor = "multi_thread")]
async fn reloading_the_same_files_is_a_reported_no_op_and_force_loads_them_again() {
    let db = TestDb::new("reload_no_op").await;
    let tmp = TempDir::new("reload_no_op");
    let manifest = sample_manifest();
    let rejects = tmp.path().join("rejects");
    let ledger_sql = "SELECT object_identity, count(*)::text, count(*) FILTER (WHERE forced)::text \
                      FROM etl.load_log GROUP BY 1 ORDER BY 1";

    let first = load_sample_with_binary(&db, &rejects, &[]).await;
    assert_eq!(first.code, Some(0), "{first:#?}");

    let again = load_sample_with_binary(&db, &rejects, &[]).await;
    assert_eq!(again.code, Some(0), "{again:#?}");
    for (table, o) in objects_by_table(&again) {
        assert_eq!(o["status"], "skipped", "{table}: {o:#}");
        assert_eq!(o["rows_loaded"], 0, "{table}: {o:#}");
    }
    assert_eq!(
        again.json()["totals"]["skipped"],
        manifest.tables.len(),
        "{}",
        again.stdout
    );
    assert_eq!(
        table_counts(&db, &manifest).await,
        manifest_counts(&manifest)
    );
    let ledger = rows(&db.url, ledger_sql).await;
    assert_eq!(ledger.len(), manifest.tables.len(), "{ledger:?}");
    assert!(
        ledger
            .iter()
            .all(|r| r[1].as_deref() == Some("1") && r[2].as_deref() == Some("0")),
        "exactly one ledger row per object: {ledger:?}"
    );

    let forced = load_sample_with_binary(&db, &rejects, &["--force"]).await;
    assert_eq!(forced.code, Some(0), "{forced:#?}");
    for (table, o) in objects_by_table(&forced) {
        assert_eq!(o["status"], "loaded", "{table}: {o:#}");
        // The same bytes again: every row is identical to the stored one, so nothing is rewritten.
        assert_eq!(o["rows_loaded"], 0, "{table}: {o:#}");
        assert_eq!(
            o["rows_unchanged"], manifest.tables[&table].rows,
            "{table}: {o:#}"
        );
    }
    assert_eq!(
        table_counts(&db, &manifest).await,
        manifest_counts(&manifest)
    );
    assert_eq!(
        &fact_sums(&db, &manifest).await,
        &manifest.tables["fact_table"].sums
    );
    let ledger = rows(&db.url, ledger_sql).await;
    assert_eq!(ledger.len(), manifest.tables.len(), "{ledger:?}");
    assert!(
        ledger
            .iter()
            .all(|r| r[1].as_deref() == Some("2") && r[2].as_deref() == Some("1")),
        "a second, forced ledger row per object: {ledger:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_updated_dimension_file_replaces_the_changed_row_and_adds_the_new_key() {
    let db = TestDb::initialized("updated_dimension").await;
    let tmp = TempDir::new("updated_dimension");
    let mut pg = db.warehouse().await;
    let opts = options(&tmp);
    let (header, original) = read_csv(&sample_dir().join("dimPayer.csv"));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    assert_eq!(header, ["dimPayerPK", "PayerName"]);
    assert!(original.len() >= 3 && original.iter().all(|r| r[0] != "999"));

    let path = tmp.write(
        "incoming/dimPayer.csv",
        csv_bytes(&header, original.clone()),
    );
    assert_status(&load(&mut pg, &path, &opts).await, Status::Loaded);

    let mut updated = original.clone();
    let changed_key = updated[2][0].clone();
    updated[2][1] = "Renamed Payer, Inc.".to_string();
    updated.push(vec!["999".to_string(), "Brand New Payer".to_string()]);
    let path = tmp.write("incoming/dimPayer.csv", csv_bytes(&header, updated.clone()));
    let report = load(&mut pg, &path, &opts).await;

    assert_status(&report, Status::Loaded);
    assert_eq!(
        (
            report.rows_inserted,
            report.rows_updated,
            report.rows_unchanged
        ),
        (1, 1, updated.len() as u64 - 2),
        "{report:#?}"
    );
    let mut expected = updated.clone();
    expected.sort_by_key(|r| r[0].parse::<i64>().expect("numeric key"));
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        expect_rows(&expected)
    );
    let name: String = scalar(
        &db.url,
        &format!("SELECT payer_name FROM health.dim_payer WHERE dim_payer_pk = {changed_key}"),
    )
    .await;
    assert_eq!(name, "Renamed Payer, Inc.");
    assert_eq!(db.ledger_rows().await, 2);
}

// -------------------------------------------------------------------------------------------------
// Rejected rows and refused files.

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_are_set_aside_with_their_lines_and_columns_while_every_other_row_loads() {
    let db = TestDb::new("bad_rows_set_aside").await;
    let tmp = TempDir::new("bad_rows_set_aside");
    let sample = sample_dir();

    let mut patients = Lines::read(&sample.join("dimPatient.csv"));
    let bad_patient = patients.set(13, "PatientAge", "twenty");
    let email = bad_patient[patients.column("Email")].clone();
    let patient_rows = patients.data_rows() as u64;
    let mut facts = Lines::read(&sample.join("FactTable.csv"));
    let bad_fact_a = facts.set(27, "dimDateServicePK", "2019-02-30");
    let bad_fact_b = facts.set(503, "dimDatePostPK", "20190230");
    let fact_rows = facts.data_rows() as u64;
    tmp.write("in/dimPatient.csv", patients.bytes());
    tmp.write("in/FactTable.csv", facts.bytes());
    let rejects_dir = tmp.path().join("rejects");

    let out = run_bin(
        Some(&db.url),
        tmp.path(),
        [
            "load",
            "in",
            "--json",
            "--rejects-dir",
            &path_str(&rejects_dir),
        ],
    )
    .await;

    assert_eq!(out.code, Some(0), "{out:#?}");
    let objects = objects_by_table(&out);
    let (patient, fact) = (&objects["dim_patient"], &objects["fact_table"]);
    assert_eq!(patient["status"], "loaded", "{patient:#}");
    assert_eq!(patient["rows_read"], patient_rows, "{patient:#}");
    assert_eq!(patient["rows_rejected"], 1, "{patient:#}");
    assert_eq!(patient["rows_loaded"], patient_rows - 1, "{patient:#}");
    assert_eq!(
        json_rejects(patient),
        BTreeSet::from([(13, "PatientAge".to_string())])
    );
    assert_eq!(fact["status"], "loaded", "{fact:#}");
    assert_eq!(fact["rows_read"], fact_rows, "{fact:#}");
    assert_eq!(fact["rows_rejected"], 2, "{fact:#}");
    assert_eq!(fact["rows_loaded"], fact_rows - 2, "{fact:#}");
    assert_eq!(
        json_rejects(fact),
        BTreeSet::from([
            (27, "dimDateServicePK".to_string()),
            (503, "dimDatePostPK".to_string())
        ])
    );

    assert_eq!(
        db.count("health.dim_patient").await,
        patient_rows as i64 - 1
    );
    assert_eq!(db.count("health.fact_table").await, fact_rows as i64 - 2);
    let missing: i64 = scalar(
        &db.url,
        &format!(
            "SELECT count(*) FROM health.fact_table WHERE fact_table_pk IN ({}, {})",
            bad_fact_a[0], bad_fact_b[0]
        ),
    )
    .await;
    assert_eq!(missing, 0, "rejected rows are not loaded");
    let missing: i64 = scalar(
        &db.url,
        &format!(
            "SELECT count(*) FROM health.dim_patient WHERE dim_patient_pk = {}",
            bad_patient[0]
        ),
    )
    .await;
    assert_eq!(missing, 0, "the rejected patient is not loaded");

    for (object, expected) in [
        (patient, BTreeMap::from([(13, bad_patient)])),
        (fact, BTreeMap::from([(27, bad_fact_a), (503, bad_fact_b)])),
    ] {
        let file = PathBuf::from(object["rejects_file"].as_str().expect("a rejects file"));
        assert!(file.starts_with(&rejects_dir), "{}", file.display());
        assert_eq!(read_rejects(&file), expected, "{}", file.display());
    }

    for raw in ["twenty", "2019-02-30", "20190230", email.as_str()] {
        assert!(
            !out.stdout.contains(raw) && !out.stderr.contains(raw),
            "the output repeats row data {raw:?}:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_over_the_reject_threshold_loads_nothing_but_still_writes_its_rejects() {
    let db = TestDb::initialized("over_threshold").await;
    let tmp = TempDir::new("over_threshold");
    let mut records: Vec<Vec<String>> = (1..=10)
        .map(|k| vec![k.to_string(), format!("Payer {k}")])
        .collect();
    records[2][0] = "three".into();
    records[5][0] = String::new();
    records[8][0] = "9.0".into();
    tmp.write(
        "dimPayer.csv",
        csv_bytes(&["dimPayerPK", "PayerName"], records.clone()),
    );
    let rejects_dir = tmp.path().join("rejects");

    let out = run_bin(
        Some(&db.url),
        tmp.path(),
        [
            "load",
            "dimPayer.csv",
            "--json",
            "--rejects-dir",
            &path_str(&rejects_dir),
        ],
    )
    .await;

    assert_eq!(out.code, Some(1), "{out:#?}");
    let objects = objects_by_table(&out);
    let o = &objects["dim_payer"];
    assert_eq!(o["status"], "refused", "{o:#}");
    assert_eq!(o["rows_read"], 10, "{o:#}");
    assert_eq!(o["rows_rejected"], 3, "{o:#}");
    assert_eq!(o["rows_loaded"], 0, "{o:#}");
    assert!(
        o["error"].as_str().is_some_and(|e| e.contains("dimPayer")),
        "the refusal names the file: {o:#}"
    );
    assert_eq!(db.count("health.dim_payer").await, 0);
    assert_eq!(db.ledger_rows().await, 0);
    let file = PathBuf::from(o["rejects_file"].as_str().expect("a rejects file"));
    assert!(file.starts_with(&rejects_dir), "{}", file.display());
    let expected: BTreeMap<u64, Vec<String>> = [(4, 2), (7, 5), (10, 8)]
        .into_iter()
        .map(|(line, i)| (line, records[i].clone()))
        .collect();
    assert_eq!(read_rejects(&file), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_missing_a_column_is_refused_by_name_and_changes_nothing() {
    let db = TestDb::initialized("missing_column").await;
    let tmp = TempDir::new("missing_column");
    let mut pg = db.warehouse().await;
    let opts = options(&tmp);
    let loaded = load(&mut pg, &sample_dir().join("dimPayer.csv"), &opts).await;
    assert_status(&loaded, Status::Loaded);
    let before = pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await;
    assert!(!before.is_empty());

    let path = tmp.write(
        "dimPayer_2024-07.csv",
        "dimPayerPK,Payer\n1,Changed\n100,New\n",
    );
    let report = load(&mut pg, &path, &opts).await;

    assert_status(&report, Status::Refused);
    let error = report.error.as_deref().unwrap_or_default();
    assert!(error.contains("PayerName"), "names the column: {error}");
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        before
    );
    assert_eq!(db.ledger_rows().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_file_name_is_refused_before_any_sql() {
    let db = TestDb::initialized("unknown_name").await;
    let tmp = TempDir::new("unknown_name");
    let mut pg = db.warehouse().await;
    let opts = options(&tmp);
    let payers = std::fs::read(sample_dir().join("dimPayer.csv")).expect("sample");
    // Not a CSV name: refused by name, before its bytes are read (a `.csv` whose name decides nothing is routed
    // by its header instead; see tests/kaggle_names.rs).
    let notes = tmp.write("notes.txt", &payers);
    let routable = tmp.write("dimPayer.csv", &payers);

    let report = load(&mut pg, &notes, &opts).await;

    assert_status(&report, Status::Refused);
    assert_eq!(report.table, None);
    let error = report.error.as_deref().unwrap_or_default();
    assert!(error.contains("notes.txt"), "names the object: {error}");
    for table in &SCHEMA.tables {
        assert_eq!(db.count(&table.qualified()).await, 0, "{}", table.name);
    }
    assert_eq!(db.ledger_rows().await, 0);

    // Against a warehouse nobody listens on, touching it fails; the unknown name never gets that far.
    let mut nowhere =
        Postgres::new("postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=5").expect("url");
    assert_status(&load(&mut nowhere, &notes, &opts).await, Status::Refused);
    assert_status(&load(&mut nowhere, &routable, &opts).await, Status::Failed);
}

// -------------------------------------------------------------------------------------------------
// Encodings and compression.

#[tokio::test(flavor = "multi_thread")]
async fn windows_1252_and_bom_files_keep_their_accented_characters_exactly() {
    let db = TestDb::initialized("encodings").await;
    let tmp = TempDir::new("encodings");
    let mut pg = db.warehouse().await;
    let opts = options(&tmp);
    let cp1252 = tmp.write(
        "dimLocation.csv",
        b"dimLocationPK,LocationName\r\n1,Plain Clinic\r\n2,Caf\xe9 Central\r\n3,O\x92Brien Clinic\r\n4,Mu\xf1oz Health\r\n",
    );
    let bom = tmp.write(
        "dimPayer.csv",
        "\u{feff}dimPayerPK,PayerName\n1,José Muñoz\n2,O’Brien Health\n",
    );

    let latin = load(&mut pg, &cp1252, &opts).await;
    let utf8 = load(&mut pg, &bom, &opts).await;

    assert_status(&latin, Status::Loaded);
    assert_eq!(latin.encoding, Some(TextEncoding::Windows1252));
    assert_status(&utf8, Status::Loaded);
    assert_eq!(utf8.encoding, Some(TextEncoding::Utf8));
    assert_eq!(
        pairs(&db, "dim_location", "dim_location_pk", "location_name").await,
        expect_rows(&[
            ["1", "Plain Clinic"],
            ["2", "Café Central"],
            ["3", "O’Brien Clinic"],
            ["4", "Muñoz Health"],
        ])
    );
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        expect_rows(&[["1", "José Muñoz"], ["2", "O’Brien Health"]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_is_read_by_name_or_by_magic_bytes_and_a_fake_gz_is_refused() {
    let db = TestDb::initialized("gzip").await;
    let tmp = TempDir::new("gzip");
    let mut pg = db.warehouse().await;
    let opts = options(&tmp);
    let payer_file = sample_dir().join("dimPayer.csv");
    let location_file = sample_dir().join("dimLocation.csv");
    let by_name = tmp.write(
        "dimPayer.csv.gz",
        gzip(&std::fs::read(&payer_file).expect("sample")),
    );
    let by_magic = tmp.write(
        "dimLocation.csv",
        gzip(&std::fs::read(&location_file).expect("sample")),
    );
    let fake = tmp.write(
        "dimTransaction.csv.gz",
        "dimTransactionPK,TransactionType,Transaction,AdjustmentReason\n1,Charge,Charge,\n",
    );

    assert_status(&load(&mut pg, &by_name, &opts).await, Status::Loaded);
    assert_status(&load(&mut pg, &by_magic, &opts).await, Status::Loaded);
    let refused = load(&mut pg, &fake, &opts).await;

    assert_status(&refused, Status::Refused);
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        expect_rows(&read_csv(&payer_file).1)
    );
    assert_eq!(
        pairs(&db, "dim_location", "dim_location_pk", "location_name").await,
        expect_rows(&read_csv(&location_file).1)
    );
    assert_eq!(db.count("health.dim_transaction").await, 0);
    assert_eq!(db.ledger_rows().await, 2);
}

// -------------------------------------------------------------------------------------------------
// The first load into an empty table builds its primary key after the rows.

/// The primary key's name, definition and index (a new index when the key was built again).
async fn primary_key(db: &TestDb, table: &str) -> Vec<Vec<Option<String>>> {
    rows(
        &db.url,
        &format!(
            "SELECT conname::text, pg_get_constraintdef(oid), conindid::text FROM pg_constraint \
             WHERE conrelid = 'health.{table}'::regclass AND contype = 'p'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_load_builds_the_primary_key_after_the_rows_and_a_refused_one_keeps_it() {
    let db = TestDb::initialized("deferred_key").await;
    let tmp = TempDir::new("deferred_key");
    let mut pg = db.warehouse().await.with_first_load(PgFirstLoad::Exclusive);
    let opts = options(&tmp);
    let declared = primary_key(&db, "dim_payer").await;
    assert_eq!(declared.len(), 1, "{declared:?}");

    // Over the reject threshold: rolled back, the key is back as it was.
    let bad = tmp.write(
        "bad/dimPayer.csv",
        "dimPayerPK,PayerName\n1,A\nx,B\ny,C\n4,D\n",
    );
    assert_status(&load(&mut pg, &bad, &opts).await, Status::Refused);
    assert_eq!(primary_key(&db, "dim_payer").await, declared);
    assert_eq!(db.count("health.dim_payer").await, 0);

    // Rising keys appended, then a repeated key: staged and merged into the table while it has no key; the last
    // occurrence still wins, and the key is built under its old name.
    let good = tmp.write(
        "good/dimPayer.csv",
        "dimPayerPK,PayerName\n1,A\n2,B first\n3,C\n2,B last\n",
    );
    let report = load(&mut pg, &good, &opts).await;
    assert_status(&report, Status::Loaded);
    assert_eq!(
        (report.rows_inserted, report.rows_duplicate),
        (3, 1),
        "{report:#?}"
    );
    let built = primary_key(&db, "dim_payer").await;
    assert_eq!(built[0][..2], declared[0][..2], "the same key, by name");
    assert_ne!(
        built[0][2], declared[0][2],
        "the key's index was built by the load"
    );
    assert_eq!(declared[0][0].as_deref(), Some("dim_payer_pkey"));
    assert_eq!(
        declared[0][1].as_deref(),
        Some("PRIMARY KEY (dim_payer_pk)")
    );
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        expect_rows(&[["1", "A"], ["2", "B last"], ["3", "C"]])
    );
    // The key is enforced again.
    let client = connect(&db.url).await;
    let dup = client
        .execute("INSERT INTO health.dim_payer VALUES (1, 'again')", &[])
        .await;
    assert!(dup.is_err(), "the rebuilt key rejects a duplicate");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_that_does_not_own_the_table_loads_it_with_the_key_in_place() {
    let db = TestDb::initialized("deferred_key_grants").await;
    let tmp = TempDir::new("deferred_key_grants");
    let role = format!("{}_dml", db.name);
    let admin = connect(&db.url).await;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             GRANT USAGE ON SCHEMA health, etl TO {role}; \
             GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA health, etl TO {role}; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA etl TO {role};"
        ))
        .await
        .expect("a role with only SELECT, INSERT and DELETE");
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names its user");
    let declared = primary_key(&db, "dim_payer").await;
    let mut pg = Postgres::new(&url)
        .expect("url")
        .with_first_load(PgFirstLoad::Exclusive);
    let file = tmp.write("dimPayer.csv", "dimPayerPK,PayerName\n1,A\n2,B\n");
    let report = load(&mut pg, &file, &options(&tmp)).await;
    let cleanup = format!("DROP OWNED BY {role}; DROP ROLE {role};");
    admin.batch_execute(&cleanup).await.expect("drop the role");
    assert_status(&report, Status::Loaded);
    assert_eq!(report.rows_inserted, 2, "{report:#?}");
    assert_eq!(
        primary_key(&db, "dim_payer").await,
        declared,
        "the key and its index are the ones init created"
    );
}

// -------------------------------------------------------------------------------------------------
// Unchanged rows.

const PHYSICIANS: &str = "dimPhysicianPK,ProviderNpi,ProviderName,ProviderSpecialty,ProviderFTE\n\
     1,0001,Ada,Cardiology,1.00\n\
     2,0002,Bo,Oncology,0.50\n\
     3,0003,Cy,Surgery,1\n\
     4,0004,Di,Pediatrics,0.75\n\
     5,0005,Ed,,0.25\n";

/// `(key, xmin)` of every physician row: the transaction that last wrote it.
async fn writers(db: &TestDb) -> Vec<(i64, String)> {
    rows(
        &db.url,
        "SELECT dim_physician_pk::text, xmin::text FROM health.dim_physician ORDER BY 1",
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap().parse().unwrap(),
            r[1].clone().unwrap(),
        )
    })
    .collect()
}

fn counts(r: &LoadReport) -> (u64, u64, u64, u64, u64, u64) {
    (
        r.rows_read,
        r.rows_loaded,
        r.rows_inserted,
        r.rows_updated,
        r.rows_unchanged,
        r.rows_duplicate,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_re_send_rewrites_only_the_rows_that_changed_and_counts_the_rest_unchanged() {
    let db = TestDb::initialized("unchanged_rows").await;
    let tmp = TempDir::new("unchanged_rows");
    let mut pg = db.warehouse().await;
    let mut opts = options(&tmp);
    let first = tmp.write("dimPhysician.csv", PHYSICIANS);
    let report = load(&mut pg, &first, &opts).await;
    assert_eq!(counts(&report), (5, 5, 5, 0, 0, 0), "{report:#?}");
    let before = writers(&db).await;

    // The identical file again, forced past the ledger: nothing is written.
    opts.force = true;
    let report = load(&mut pg, &first, &opts).await;
    assert_status(&report, Status::Loaded);
    assert_eq!(counts(&report), (5, 0, 0, 0, 5, 0), "{report:#?}");
    assert_eq!(
        writers(&db).await,
        before,
        "an identical re-send rewrote rows"
    );

    // A corrected file: 1 and 5 as they were (1 also sent twice, the first time different); 2 renamed; 3 with a
    // trailing space; 4 lost its FTE (NULL); 6 is new. "1" and "1.00" are the same NUMERIC(12,2).
    let corrected = tmp.write(
        "dimPhysician_corrected.csv",
        "dimPhysicianPK,ProviderNpi,ProviderName,ProviderSpecialty,ProviderFTE\n\
         1,0001,Ada,Cardiology,0.10\n\
         2,0002,Bob,Oncology,0.50\n\
         3,0003,Cy ,Surgery,1.00\n\
         4,0004,Di,Pediatrics,\n\
         5,0005,Ed,,0.25\n\
         1,0001,Ada,Cardiology,1\n\
         6,0006,Fe,Dermatology,1.00\n",
    );
    let report = load(&mut pg, &corrected, &opts).await;
    assert_status(&report, Status::Loaded);
    // read 7 = loaded 4 (inserted 1 + updated 3) + unchanged 2 + duplicate 1
    assert_eq!(counts(&report), (7, 4, 1, 3, 2, 1), "{report:#?}");
    let after = writers(&db).await;
    let xmin =
        |rows: &[(i64, String)], key: i64| rows.iter().find(|r| r.0 == key).map(|r| r.1.clone());
    for key in [1, 5] {
        assert_eq!(
            xmin(&after, key),
            xmin(&before, key),
            "row {key} is unchanged but was rewritten"
        );
    }
    for key in [2, 3, 4] {
        assert_ne!(
            xmin(&after, key),
            xmin(&before, key),
            "row {key} changed but was not rewritten"
        );
    }
    assert_eq!(
        rows(
            &db.url,
            "SELECT dim_physician_pk::text, provider_name, provider_fte::text FROM health.dim_physician ORDER BY 1"
        )
        .await,
        expect_rows(&[
            ["1", "Ada", "1.00"],
            ["2", "Bob", "0.50"],
            ["3", "Cy ", "1.00"],
            ["4", "Di", ""],
            ["5", "Ed", "0.25"],
            ["6", "Fe", "1.00"],
        ])
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.filter(|v| !v.is_empty())).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
    let ledger = rows(
        &db.url,
        "SELECT rows_read::text, rows_loaded::text, rows_inserted::text, rows_updated::text, \
         rows_unchanged::text, rows_duplicate::text FROM etl.load_log ORDER BY load_id",
    )
    .await;
    assert_eq!(
        ledger,
        expect_rows(&[
            ["5", "5", "5", "0", "0", "0"],
            ["5", "0", "0", "0", "5", "0"],
            ["7", "4", "1", "3", "2", "1"],
        ]),
        "the ledger keeps each load's counts"
    );
}

// -------------------------------------------------------------------------------------------------
// Duplicate keys.

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_in_one_file_keep_the_last_row_in_an_empty_table() {
    let db = TestDb::initialized("duplicates_empty").await;
    let tmp = TempDir::new("duplicates_empty");
    let mut pg = db.warehouse().await;
    let opts = options(&tmp);
    // Rising keys 1, 2, 3 go straight into the empty table; from the repeated 2 on, rows are staged.
    let payers = tmp.write(
        "dimPayer.csv",
        "dimPayerPK,PayerName\n1,A first\n2,B first\n3,C\n2,B last\n5,E\n1,A last\n",
    );
    // Date keys are always staged.
    let dates = tmp.write(
        "dimDate.csv",
        "dimDatePostPK,Date,Year,Month,MonthPeriod,MonthYear,Day,DayName\n\
         20190101,1/1/2019,2019,January,201901,Jan-2019,1,first\n\
         20190102,1/2/2019,2019,January,201901,Jan-2019,2,Wednesday\n\
         20190101,1/1/2019,2019,January,201901,Jan-2019,1,Tuesday\n",
    );

    let report = load(&mut pg, &payers, &opts).await;
    assert_status(&report, Status::Loaded);
    assert_eq!(
        (report.rows_read, report.rows_loaded, report.rows_duplicate),
        (6, 4, 2),
        "{report:#?}"
    );
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        expect_rows(&[["1", "A last"], ["2", "B last"], ["3", "C"], ["5", "E"]])
    );

    let report = load(&mut pg, &dates, &opts).await;
    assert_status(&report, Status::Loaded);
    assert_eq!(
        (report.rows_read, report.rows_loaded, report.rows_duplicate),
        (3, 2, 1),
        "{report:#?}"
    );
    assert_eq!(
        rows(
            &db.url,
            "SELECT to_char(date_key, 'YYYY-MM-DD'), day_name FROM health.dim_date ORDER BY 1"
        )
        .await,
        expect_rows(&[["2019-01-01", "Tuesday"], ["2019-01-02", "Wednesday"]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_after_a_run_of_rising_keys_keep_the_last_row_in_a_table_with_rows() {
    let db = TestDb::initialized("duplicates_non_empty").await;
    let tmp = TempDir::new("duplicates_non_empty");
    let mut pg = db.warehouse().await;
    let opts = options(&tmp);
    let existing = tmp.write(
        "dimPayer_1.csv",
        "dimPayerPK,PayerName\n1,old 1\n2,old 2\n3,old 3\n4,old 4\n5,old 5\n",
    );
    assert_status(&load(&mut pg, &existing, &opts).await, Status::Loaded);
    // 6, 7, 8 rise above the table's largest key (appended); 3 does not (staged from there on), then 7 repeats an
    // appended key and 3 a staged one.
    let update = tmp.write(
        "dimPayer_2.csv",
        "dimPayerPK,PayerName\n6,new 6\n7,new 7 first\n8,new 8\n3,new 3 first\n7,new 7 last\n\
         3,new 3 last\n9,new 9\n",
    );

    let report = load(&mut pg, &update, &opts).await;

    assert_status(&report, Status::Loaded);
    assert_eq!(
        (report.rows_read, report.rows_loaded, report.rows_duplicate),
        (7, 5, 2),
        "{report:#?}"
    );
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        expect_rows(&[
            ["1", "old 1"],
            ["2", "old 2"],
            ["3", "new 3 last"],
            ["4", "old 4"],
            ["5", "old 5"],
            ["6", "new 6"],
            ["7", "new 7 last"],
            ["8", "new 8"],
            ["9", "new 9"],
        ])
    );
}

// -------------------------------------------------------------------------------------------------
// Failures and concurrency.

#[tokio::test(flavor = "multi_thread")]
async fn a_load_whose_backend_is_killed_mid_copy_fails_leaves_nothing_and_a_retry_loads_every_row()
{
    const ROWS: u64 = 400_000;
    let db = TestDb::initialized("killed_mid_copy").await;
    let tmp = TempDir::new("killed_mid_copy");
    let opts = options(&tmp);
    let out_dir = tmp.path().join("big");
    let manifest = tokio::task::spawn_blocking(move || {
        generate(&GenerateOptions {
            fact_rows: ROWS,
            out_dir,
            seed: 7,
            plain: false,
        })
    })
    .await
    .expect("generator thread")
    .expect("generate");
    let fact = tmp
        .path()
        .join("big")
        .join(&manifest.tables["fact_table"].file);

    let mut pg = db.warehouse().await;
    let object = Object::local(&fact).expect("fact file");
    let task_opts = opts.clone();
    let task = tokio::spawn(async move { load_object(&mut pg, object, &task_opts, None).await });

    let watcher = common::connect(&db.url).await;
    let deadline = Instant::now() + common::STEP_LIMIT;
    let pid: i32 = loop {
        assert!(
            !task.is_finished(),
            "the load ended before its COPY was seen"
        );
        assert!(Instant::now() < deadline, "no COPY seen");
        let found = watcher
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'healthetl' \
                 AND state = 'active' AND query ILIKE 'COPY%'",
                &[&db.name],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = found.first() {
            break row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Let rows reach the table before the kill, so the rollback has something to undo.
    loop {
        assert!(!task.is_finished(), "the load ended before it was killed");
        assert!(Instant::now() < deadline, "the COPY made no progress");
        let copied: Option<i64> = watcher
            .query_opt(
                "SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = $1",
                &[&pid],
            )
            .await
            .expect("pg_stat_progress_copy")
            .map(|r| r.get(0));
        if copied.is_some_and(|n| n >= 10_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed: bool = watcher
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("pg_terminate_backend")
        .get(0);
    assert!(killed);
    let report = within("the killed load", task).await.expect("load task");

    assert_status(&report, Status::Failed);
    assert!(report.error.is_some(), "{report:#?}");
    assert_eq!(db.count("health.fact_table").await, 0);
    assert_eq!(db.ledger_rows().await, 0);

    let mut retry = Postgres::new(&db.url).expect("url");
    let report = load(&mut retry, &fact, &opts).await;
    assert_status(&report, Status::Loaded);
    assert_eq!(report.rows_loaded, ROWS, "{report:#?}");
    assert_eq!(db.count("health.fact_table").await, ROWS as i64);
    assert_eq!(
        &fact_sums(&db, &manifest).await,
        &manifest.tables["fact_table"].sums
    );
    assert_eq!(db.ledger_rows().await, 1);
}

/// Load every file at once, each through its own connection, released together.
async fn load_concurrently(db: &TestDb, files: &[PathBuf], opts: &LoadOptions) -> Vec<LoadReport> {
    let start = Arc::new(tokio::sync::Barrier::new(files.len()));
    let tasks: Vec<_> = files
        .iter()
        .map(|path| {
            let (url, path, opts, start) = (
                db.url.clone(),
                path.clone(),
                opts.clone(),
                Arc::clone(&start),
            );
            tokio::spawn(async move {
                let mut pg = Postgres::new(&url).expect("url");
                pg.client().await.expect("connect");
                let object = Object::local(&path).expect("part file");
                start.wait().await;
                load_object(&mut pg, object, &opts, None).await
            })
        })
        .collect();
    within("eight concurrent loads", async {
        let mut reports = Vec::new();
        for t in tasks {
            reports.push(t.await.expect("load task"));
        }
        reports
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_concurrent_loads_of_overlapping_payer_files_equal_their_sequential_application() {
    let db = TestDb::initialized("concurrent_overlapping").await;
    let tmp = TempDir::new("concurrent_overlapping");
    let opts = options(&tmp);
    // Part i holds keys 5i+1 ..= 5i+10 (half shared with each neighbour); odd parts list them falling.
    let parts: Vec<Vec<(i64, String)>> = (0..8i64)
        .map(|i| {
            let mut keys: Vec<i64> = (5 * i + 1..=5 * i + 10).collect();
            if i % 2 == 1 {
                keys.reverse();
            }
            keys.into_iter()
                .map(|k| (k, format!("payer {k} from part {i}")))
                .collect()
        })
        .collect();
    let files: Vec<PathBuf> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let records = part.iter().map(|(k, v)| vec![k.to_string(), v.clone()]);
            tmp.write(
                &format!("dimPayer_part-{i}.csv"),
                csv_bytes(&["dimPayerPK", "PayerName"], records),
            )
        })
        .collect();

    let reports = load_concurrently(&db, &files, &opts).await;

    for r in &reports {
        assert_status(r, Status::Loaded);
        assert_eq!(r.rows_loaded, 10, "{r:#?}");
    }
    // Loads of one table commit one after another, in ledger order: replaying the parts in that order gives the
    // table.
    let mut order: Vec<(i64, usize)> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| (r.load_id.expect("a load id"), i))
        .collect();
    order.sort();
    let mut expected: BTreeMap<i64, String> = BTreeMap::new();
    for (_, i) in &order {
        expected.extend(parts[*i].iter().cloned());
    }
    let expected: Vec<[String; 2]> = expected
        .into_iter()
        .map(|(k, v)| [k.to_string(), v])
        .collect();
    assert_eq!(expected.len(), 45);
    assert_eq!(
        pairs(&db, "dim_payer", "dim_payer_pk", "payer_name").await,
        expect_rows(&expected)
    );
    assert_eq!(db.ledger_rows().await, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_concurrent_loads_of_disjoint_fact_parts_load_every_row_exactly_once() {
    let db = TestDb::initialized("concurrent_disjoint").await;
    let tmp = TempDir::new("concurrent_disjoint");
    let opts = options(&tmp);
    let manifest = sample_manifest();
    let sample = Lines::read(&sample_dir().join("FactTable.csv"));
    // Row n goes to part n mod 8: every part's keys interleave with the others'.
    let files: Vec<PathBuf> = (0..8)
        .map(|i| {
            let mut part = Lines {
                bom: sample.bom,
                crlf: sample.crlf,
                lines: vec![sample.lines[0].clone()],
            };
            part.lines
                .extend(sample.lines[1..].iter().skip(i).step_by(8).cloned());
            tmp.write(&format!("FactTable_part-{i:04}.csv"), part.bytes())
        })
        .collect();

    let reports = load_concurrently(&db, &files, &opts).await;

    for r in &reports {
        assert_status(r, Status::Loaded);
    }
    let rows_total = manifest.tables["fact_table"].rows;
    assert_eq!(
        reports.iter().map(|r| r.rows_loaded).sum::<u64>(),
        rows_total
    );
    assert_eq!(db.count("health.fact_table").await, rows_total as i64);
    assert_eq!(
        &fact_sums(&db, &manifest).await,
        &manifest.tables["fact_table"].sums
    );
    assert_eq!(db.ledger_rows().await, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_succeeds_twice_and_from_two_connections_at_once() {
    let db = TestDb::new("init_twice").await;
    let tmp = TempDir::new("init_twice");

    let start = Arc::new(tokio::sync::Barrier::new(2));
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (url, start) = (db.url.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                let mut pg = Postgres::new(&url).expect("url");
                pg.client().await.expect("connect");
                start.wait().await;
                common::init(&mut pg).await
            })
        })
        .collect();
    for t in tasks {
        within("concurrent init", t)
            .await
            .expect("init task")
            .expect("concurrent init succeeds");
    }
    let mut pg = Postgres::new(&db.url).expect("url");
    within("init", common::init(&mut pg))
        .await
        .expect("init again");
    within("init", common::init(&mut pg))
        .await
        .expect("and again");
    for _ in 0..2 {
        let out = run_bin(Some(&db.url), tmp.path(), ["init"]).await;
        assert_eq!(out.code, Some(0), "{out:#?}");
    }

    let tables = rows(
        &db.url,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'health' ORDER BY 1",
    )
    .await;
    let mut expected: Vec<[&str; 1]> = SCHEMA.all_tables().map(|t| [t.name.as_str()]).collect();
    expected.sort_unstable();
    assert_eq!(tables, expect_rows(&expected));
    assert_eq!(db.ledger_rows().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_and_every_subcommand_print_help_and_exit_zero() {
    let tmp = TempDir::new("help");
    for command in ["", "init", "load", "generate", "schema"] {
        let args: Vec<&str> = [command, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let out = run_bin(None, tmp.path(), args).await;
        assert_eq!(out.code, Some(0), "{command} --help: {out:#?}");
        let usage = format!("Usage: healthetl {command}");
        assert!(
            out.stdout.contains(usage.trim_end()),
            "{command} --help: {out:#?}"
        );
    }
}

// -------------------------------------------------------------------------------------------------
// Casting.

#[tokio::test(flavor = "multi_thread")]
async fn contract_money_and_date_formats_arrive_as_exact_values_and_malformed_ones_are_rejected() {
    let db = TestDb::initialized("money_and_dates").await;
    let tmp = TempDir::new("money_and_dates");
    let mut pg = db.warehouse().await;
    let opts = LoadOptions {
        reject_threshold: 1.0,
        ..options(&tmp)
    };
    let records = vec![
        fact_record(
            1,
            &[
                ("dimDatePostPK", "20190105"),
                ("dimDateServicePK", "1/4/2019"),
                ("CPTUnits", "1"),
                ("GrossCharge", "$1,234.50"),
                ("Payment", "($1,234.50)"),
                ("Adjustment", "(12.00)"),
                ("AR", "-$1,234.50"),
            ],
        ),
        fact_record(
            2,
            &[
                ("dimDatePostPK", "2019-12-31"),
                ("dimDateServicePK", "12/31/2020"),
                ("PatientNumber", "000123"),
                ("CPTUnits", "1.5"),
                ("GrossCharge", " 1,234,567.00 "),
                ("Payment", "-12.5"),
                ("Adjustment", "0"),
                ("AR", "9999999999.99"),
            ],
        ),
        fact_record(
            3,
            &[
                ("dimDatePostPK", "20200229"),
                ("dimDateServicePK", "02/29/2020"),
                ("GrossCharge", "$0.01"),
                ("AR", ""),
            ],
        ),
        fact_record(4, &[("Payment", "12.345")]),
        fact_record(5, &[("AR", "12,34,56")]),
        fact_record(6, &[("GrossCharge", "12345678901.00")]),
        fact_record(7, &[("dimDatePostPK", "20190230")]),
    ];
    let path = tmp.write("FactTable.csv", csv_bytes(&fact_header(), records));

    let report = load(&mut pg, &path, &opts).await;

    assert_status(&report, Status::Loaded);
    assert_eq!(
        (report.rows_read, report.rows_loaded, report.rows_rejected),
        (7, 3, 4),
        "{report:#?}"
    );
    let rejected: BTreeSet<(u64, Option<&str>)> = report
        .rejects
        .iter()
        .map(|r| (r.line, r.column.as_deref()))
        .collect();
    assert_eq!(
        rejected,
        BTreeSet::from([
            (5, Some("Payment")),
            (6, Some("AR")),
            (7, Some("GrossCharge")),
            (8, Some("dimDatePostPK")),
        ])
    );
    let loaded = rows(
        &db.url,
        "SELECT fact_table_pk::text AS k, to_char(dim_date_post_pk, 'YYYY-MM-DD'), \
         to_char(dim_date_service_pk, 'YYYY-MM-DD'), patient_number, cpt_units::text, gross_charge::text, \
         payment::text, adjustment::text, ar::text FROM health.fact_table ORDER BY fact_table_pk",
    )
    .await;
    let some = |v: &str| Some(v.to_string());
    assert_eq!(
        loaded,
        vec![
            vec![
                some("1"),
                some("2019-01-05"),
                some("2019-01-04"),
                some("000001"),
                some("1.00"),
                some("1234.50"),
                some("-1234.50"),
                some("-12.00"),
                some("-1234.50"),
            ],
            vec![
                some("2"),
                some("2019-12-31"),
                some("2020-12-31"),
                some("000123"),
                some("1.50"),
                some("1234567.00"),
                some("-12.50"),
                some("0.00"),
                some("9999999999.99"),
            ],
            vec![
                some("3"),
                some("2020-02-29"),
                some("2020-02-29"),
                some("000001"),
                some("1.00"),
                some("0.01"),
                some("-50.00"),
                some("-10.00"),
                None,
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_holding_its_table_lock_blocks_no_reader_and_no_load_of_another_table() {
    let db = TestDb::initialized("table_locks").await;
    let tmp = TempDir::new("table_locks");
    let payer = tmp.write(
        "dimPayer.csv",
        "dimPayerPK,PayerName\n1,Medicare\nnot-a-key,Bad\n2,Aetna\n3,Cigna\n4,Humana\n5,Kaiser\n6,Anthem\n7,BCBS\n8,UHC\n9,Tricare\n10,Medicaid\n",
    );
    let location = tmp.write(
        "dimLocation.csv",
        "dimLocationPK,LocationName\n1,North\n2,South\n",
    );
    let options = LoadOptions {
        rejects_dir: tmp.path().join("rejects"),
        ..LoadOptions::default()
    };
    let gate = common::CommitGate::default();
    let mut held = Postgres::new(&db.url).expect("url");
    let mut other = Postgres::new(&db.url).expect("url");
    let url = db.url.clone();
    let (first, second) = tokio::join!(
        async {
            let object = Object::local(&payer).unwrap();
            healthetl::pipeline::load_publishing(&mut held, object, &options, None, Some(&gate))
                .await
        },
        async {
            gate.entered.notified().await;
            let other_load = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                load_object(
                    &mut other,
                    Object::local(&location).unwrap(),
                    &options,
                    None,
                ),
            )
            .await;
            let limit = std::time::Duration::from_secs(5);
            let readers = [
                "SELECT count(*) FROM etl.load_log",
                "SELECT count(*) FROM health.dim_payer",
                "SELECT count(*) FROM reporting.kpi_summary",
                "SELECT count(*) FROM health.dim_location",
            ];
            let mut answers = Vec::new();
            for q in readers {
                answers.push(common::answers_within(&url, q, limit).await);
            }
            gate.release.notify_one();
            (other_load, answers)
        }
    );
    let (other_load, answers) = second;
    let other_load = other_load.expect("another table's load is not blocked");
    assert_eq!(other_load.status, Status::Loaded, "{other_load:?}");
    // Readers are never blocked on PostgreSQL (SHARE ROW EXCLUSIVE), not even of the table being loaded: they see
    // what was committed before.
    assert_eq!(answers, [Ok(1), Ok(0), Ok(1), Ok(2)]);
    assert_eq!(first.status, Status::Loaded, "{first:?}");
    assert_eq!(db.count("health.dim_payer").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn four_loads_of_four_tables_are_inside_their_commits_at_once() {
    let db = TestDb::initialized("four_tables").await;
    let tmp = TempDir::new("four_tables");
    let files = common::four_tables(&tmp);
    let options = LoadOptions {
        rejects_dir: tmp.path().join("rejects"),
        ..LoadOptions::default()
    };
    let hold = Duration::from_millis(1500);
    let rendezvous = common::Rendezvous::new(files.len(), hold);
    let mut warehouses: Vec<Postgres> = files
        .iter()
        .map(|_| Postgres::new(&db.url).expect("url"))
        .collect();
    let started = Instant::now();
    let loads = warehouses.iter_mut().zip(&files).map(|(pg, file)| {
        let object = Object::local(file).unwrap();
        healthetl::pipeline::load_publishing(pg, object, &options, None, Some(&rendezvous))
    });
    let reports = within("four loads", futures_util::future::join_all(loads)).await;
    let wall = started.elapsed();
    for r in &reports {
        assert_eq!(r.status, Status::Loaded, "{r:?}");
        assert_eq!((r.rows_loaded, r.rows_rejected), (2000, 1));
    }
    // Reported, not asserted (timing is not a test): each load holds its commit `hold`; serialized they would take
    // 4 × hold at least.
    eprintln!(
        "four tables, PostgreSQL: {:.2} s for four loads each holding its commit {:.2} s (serialized: >= {:.2} s)",
        wall.as_secs_f64(),
        hold.as_secs_f64(),
        4.0 * hold.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_past_its_deadline_is_cancelled_by_the_statement_timeout_and_leaves_nothing() {
    let db = TestDb::initialized("deadline").await;
    let tmp = TempDir::new("deadline");
    let payer = tmp.write("dimPayer.csv", "dimPayerPK,PayerName\n1,Medicare\n");
    let options = LoadOptions {
        rejects_dir: tmp.path().join("rejects"),
        deadline: Some(Instant::now() + Duration::from_secs(3)),
        ..LoadOptions::default()
    };
    // Another session holds dim_payer: without a statement timeout the load would wait for it indefinitely.
    let mut blocker = common::connect(&db.url).await;
    let held = blocker.transaction().await.expect("begin");
    held.batch_execute("LOCK health.dim_payer IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut pg = Postgres::new(&db.url).expect("url");
    let report = within(
        "a load under a deadline",
        load_object(&mut pg, Object::local(&payer).unwrap(), &options, None),
    )
    .await;
    assert_eq!(report.status, Status::Failed, "{report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("statement timeout") && error.contains("57014"),
        "{error}"
    );
    // The command line's --timeout does the same.
    let out = run_bin(
        Some(&db.url),
        tmp.path(),
        ["load", "--timeout", "3", "dimPayer.csv"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("statement timeout"), "{}", out.stdout);
    held.rollback().await.expect("release");
    assert_eq!(db.ledger_rows().await, 0);
    // No time left: not started at all, and the connection's timeout is reset for the next load without one.
    let late = LoadOptions {
        deadline: Some(Instant::now()),
        ..options.clone()
    };
    let report = load_object(&mut pg, Object::local(&payer).unwrap(), &late, None).await;
    assert_eq!(report.status, Status::Failed, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .starts_with("deadline:"),
        "{report:?}"
    );
    let free = LoadOptions {
        deadline: None,
        ..options
    };
    let report = load_object(&mut pg, Object::local(&payer).unwrap(), &free, None).await;
    assert_eq!(report.status, Status::Loaded, "{report:?}");
    let timeout: String = pg
        .client()
        .await
        .expect("client")
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "0");
}

#[tokio::test]
async fn a_connection_the_server_ended_between_two_loads_is_replaced_before_the_next() {
    let db = TestDb::initialized("lost_connection").await;
    let tmp = TempDir::new("lost_connection");
    let opts = options(&tmp);
    let mut pg = db.warehouse().await;
    let first = tmp.write(
        "dimPayer.csv",
        "dimPayerPK,PayerName\n1,Medicare\n2,Aetna\n",
    );
    assert_eq!(load(&mut pg, &first, &opts).await.status, Status::Loaded);
    let admin = common::connect(&db.url).await;
    let end_sessions = format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()) t",
        db.name
    );
    for round in 0..20 {
        // The server ends the loader's session (a restart, an idle timeout, an administrator); the next load comes
        // at once, often before the client has seen the connection close.
        let ended: i64 = admin
            .query_one(&end_sessions, &[])
            .await
            .expect("end")
            .get(0);
        assert!(ended >= 1, "round {round}: no loader session to end");
        let next = tmp.write(
            &format!("dimLocation_{round}.csv"),
            format!("dimLocationPK,LocationName\n{round},North\n"),
        );
        let report = load(&mut pg, &next, &opts).await;
        assert_eq!(report.status, Status::Loaded, "round {round}: {report:?}");
    }
    assert_eq!(db.count("health.dim_location").await, 20);
}
