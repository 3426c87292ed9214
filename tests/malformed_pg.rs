//! Malformed input against a real PostgreSQL through the `healthetl load` binary: every row is accounted for,
//! structural damage refuses the file or rejects only its own row, nothing of the input's text reaches the
//! terminal, the JSON summary or the ledger, and limits refuse fast with their reason.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::io::Write;

use common::{TempDir, TestDb, run_bin, scalar};
use flate2::{Compression, write::GzEncoder};
use serde_json::Value;

const LOCATION_HEADER: &str = "dimLocationPK,Location Name\n";

/// Known patient strings: none of them may appear in any output stream, summary or ledger row.
const PROBES: [&str; 4] = [
    "PHIPROBE-4471",
    "Zebulon Quackenbush",
    "zq.private@example.org",
    "PHI\u{e9}PROBE",
];

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

async fn load_json(
    db: &TestDb,
    dir: &TempDir,
    file: &str,
    extra: &[&str],
) -> (Option<i32>, Value, String) {
    let mut args = vec!["load", "--json", file];
    args.extend_from_slice(extra);
    let out = run_bin(Some(&db.url), dir.path(), args).await;
    let json = out.json();
    (out.code, json["objects"][0].clone(), out.stderr)
}

fn assert_accounted(report: &Value) {
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    assert_eq!(
        n("rows_read"),
        n("rows_loaded") + n("rows_unchanged") + n("rows_rejected") + n("rows_duplicate"),
        "rows read = loaded + unchanged + rejected + duplicate: {report}"
    );
    assert_eq!(
        n("rows_loaded"),
        n("rows_inserted") + n("rows_updated"),
        "rows loaded = inserted + updated: {report}"
    );
}

#[tokio::test]
async fn an_unclosed_quote_refuses_the_file_naming_line_and_column_and_loads_nothing() {
    let db = TestDb::initialized("unclosed_quote").await;
    let dir = TempDir::new("unclosed_quote");
    dir.write(
        "dimLocation.csv",
        format!("{LOCATION_HEADER}1,A\n2,\"B\n3,C\n4,D\n"),
    );
    let (code, report, _) = load_json(&db, &dir, "dimLocation.csv", &[]).await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["status"], "refused");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("line 3, column 2") && error.contains("never closed"),
        "{error}"
    );
    assert_eq!(db.count("health.dim_location").await, 0);
    assert_eq!(db.ledger_rows().await, 0);
}

#[tokio::test]
async fn quotes_out_of_place_reject_only_their_own_rows() {
    let db = TestDb::initialized("quotes_out_of_place").await;
    let dir = TempDir::new("quotes_out_of_place");
    let mut text = LOCATION_HEADER.to_string();
    for i in 1..=40 {
        text.push_str(&format!("{i},Clinic {i}\n"));
    }
    text.push_str("41,Saint\"s\n42,\"North\" Wing\n43,\"Quoted, fine\"\n");
    dir.write("dimLocation.csv", text);
    let (code, report, _) = load_json(&db, &dir, "dimLocation.csv", &[]).await;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["rows_read"], 43);
    assert_eq!(report["rows_loaded"], 41);
    assert_eq!(report["rows_rejected"], 2);
    assert_accounted(&report);
    let rules: Vec<(u64, String)> = report["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (42, "bare_quote".to_string()),
            (43, "text_after_quote".to_string())
        ]
    );
    let rejects = std::fs::read_to_string(
        report["rejects_file"]
            .as_str()
            .map(|p| dir.path().join(p))
            .unwrap(),
    )
    .unwrap();
    assert!(
        rejects.contains("Saint\"\"s"),
        "the rejected row is kept: {rejects}"
    );
    let stored: String = scalar(
        &db.url,
        "SELECT location_name FROM health.dim_location WHERE dim_location_pk = 43",
    )
    .await;
    assert_eq!(stored, "Quoted, fine");
}

#[tokio::test]
async fn cr_only_files_report_their_true_lines() {
    let db = TestDb::initialized("cr_only").await;
    let dir = TempDir::new("cr_only");
    dir.write(
        "dimPayer.csv",
        "dimPayerPK,PayerName\r1,Aetna\r2,\"Multi\rLine\"\rx,Medicare\r4,Cigna\r",
    );
    let (code, report, _) =
        load_json(&db, &dir, "dimPayer.csv", &["--reject-threshold", "0.5"]).await;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["rows_read"], 4);
    assert_eq!(report["rejects"][0]["line"], 5, "{report}");
    let multi: String = scalar(
        &db.url,
        "SELECT payer_name FROM health.dim_payer WHERE dim_payer_pk = 2",
    )
    .await;
    assert_eq!(multi, "Multi\rLine");
}

#[tokio::test]
async fn records_over_the_size_limit_are_rejected_and_reading_resumes() {
    let db = TestDb::initialized("record_limit").await;
    let dir = TempDir::new("record_limit");
    let mut text = LOCATION_HEADER.to_string();
    for i in 1..=20 {
        text.push_str(&format!("{i},Clinic {i}\n"));
    }
    text.push_str(&format!("21,{}\n22,After\n", "x".repeat(5000)));
    dir.write("dimLocation.csv", text);
    let (code, report, _) = load_json(
        &db,
        &dir,
        "dimLocation.csv",
        &["--max-record-bytes", "4096", "--max-field-bytes", "8192"],
    )
    .await;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["rows_loaded"], 21);
    assert_eq!(report["rejects"][0]["rule"], "record_too_long");
    assert_eq!(report["rejects"][0]["line"], 22);
    assert_accounted(&report);
}

#[tokio::test]
async fn a_file_mixing_utf8_and_windows_1252_is_refused_not_stored_half_converted() {
    let db = TestDb::initialized("mixed_encoding").await;
    let dir = TempDir::new("mixed_encoding");
    dir.write(
        "dimPayer.csv",
        b"dimPayerPK,PayerName\n1,Jos\xc3\xa9\n2,Jos\xe9\n".as_slice(),
    );
    let (code, report, _) = load_json(&db, &dir, "dimPayer.csv", &[]).await;
    assert_eq!(code, Some(1));
    assert_eq!(report["status"], "refused");
    assert!(
        report["error"].as_str().unwrap().contains("mixes UTF-8"),
        "{report}"
    );
    assert_eq!(db.count("health.dim_payer").await, 0);
    dir.write(
        "dimPayer.csv",
        b"dimPayerPK,PayerName\n1,Jos\xe9\n2,Mu\xf1oz\n".as_slice(),
    );
    let (code, report, _) = load_json(&db, &dir, "dimPayer.csv", &[]).await;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["encoding"], "windows-1252");
    let name: String = scalar(
        &db.url,
        "SELECT payer_name FROM health.dim_payer WHERE dim_payer_pk = 1",
    )
    .await;
    assert_eq!(name, "José");
}

#[tokio::test]
async fn utf16_nested_gzip_and_truncated_gzip_are_refused_with_their_real_cause() {
    let db = TestDb::initialized("containers").await;
    let dir = TempDir::new("containers");
    let text = "dimPayerPK,PayerName\n1,Aetna\n".repeat(2000);
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    dir.write("dimPayer.csv", &utf16);
    dir.write("a/dimPayer.csv.gz", gzip(&gzip(text.as_bytes())));
    let whole = gzip(text.as_bytes());
    dir.write("b/dimPayer.csv.gz", &whole[..whole.len() / 2]);
    for (file, cause) in [
        ("dimPayer.csv", "UTF-16"),
        ("a/dimPayer.csv.gz", "gzip inside gzip"),
        ("b/dimPayer.csv.gz", "corrupt or truncated"),
    ] {
        let (code, report, _) = load_json(&db, &dir, file, &[]).await;
        assert_eq!(code, Some(1), "{file}: {report}");
        assert_eq!(report["status"], "refused", "{file}: {report}");
        assert!(
            report["error"].as_str().unwrap().contains(cause),
            "{file}: {report}"
        );
    }
    assert_eq!(db.count("health.dim_payer").await, 0);
}

#[tokio::test]
async fn objects_over_the_size_or_ratio_limit_are_refused_with_the_reason() {
    let db = TestDb::initialized("size_limits").await;
    let dir = TempDir::new("size_limits");
    let text = format!("dimPayerPK,PayerName\n{}", "1,Aetna\n".repeat(1000));
    dir.write("dimPayer.csv", &text);
    dir.write("z/dimPayer.csv.gz", gzip(text.as_bytes()));
    for file in ["dimPayer.csv", "z/dimPayer.csv.gz"] {
        let (code, report, _) = load_json(&db, &dir, file, &["--max-object-bytes", "4000"]).await;
        assert_eq!(code, Some(1));
        assert_eq!(report["status"], "refused");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("MAX_OBJECT_BYTES"),
            "{report}"
        );
    }
    let mut bomb = b"dimPayerPK,PayerName\n1,".to_vec();
    bomb.extend(std::iter::repeat_n(b'x', 80 << 20));
    dir.write("y/dimPayer.csv.gz", gzip(&bomb));
    let (code, report, _) = load_json(&db, &dir, "y/dimPayer.csv.gz", &[]).await;
    assert_eq!(code, Some(1));
    assert!(
        report["error"].as_str().unwrap().contains("MAX_GZIP_RATIO"),
        "{report}"
    );
    assert_eq!(db.ledger_rows().await, 0);
}

#[tokio::test]
async fn a_path_longer_than_two_kilobytes_loads_and_is_recorded_whole() {
    let db = TestDb::initialized("long_path").await;
    let dir = TempDir::new("long_path");
    let deep: Vec<String> = (0..12)
        .map(|i| format!("{i:02}{}", "d".repeat(200)))
        .collect();
    let rel = format!("{}/dimPayer.csv", deep.join("/"));
    let path = dir.write(&rel, "dimPayerPK,PayerName\n1,Aetna\n");
    let (code, report, _) = load_json(&db, &dir, &rel, &[]).await;
    assert_eq!(code, Some(0), "{report}");
    let source: String = scalar(&db.url, "SELECT source FROM etl.load_log").await;
    assert!(source.len() > 2048 && source.ends_with("/dimPayer.csv"));
    assert_eq!(
        source,
        format!("file://{}", std::fs::canonicalize(path).unwrap().display())
    );
}

#[tokio::test]
async fn control_characters_in_file_names_are_escaped_on_the_terminal() {
    let db = TestDb::initialized("escaped_names").await;
    let dir = TempDir::new("escaped_names");
    let name = "dimPayer_\u{1b}[31mred\u{7}.csv";
    dir.write(name, "dimPayerPK,PayerName\n1,Aetna\nx,Cigna\n");
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--reject-threshold", "0.9", name],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stdout.contains('\u{7}'),
        "{:?}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\\u{1b}[31mred\\u{7}"),
        "{}",
        out.stdout
    );
    let out = run_bin(Some(&db.url), dir.path(), ["load", "notes\u{1b}[2J.csv"]).await;
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stderr.contains('\u{1b}'),
        "{out:?}"
    );
}

/// PHI probe: patient strings in every place malformed input can put them — a header that lost its line end (the
/// first patient becomes extra "columns"), rejected values, an unclosed quote, a mixed encoding — and none of them
/// in stdout, stderr, the JSON summary or the ledger. They are only in the rejects file, which is data.
#[tokio::test]
async fn patient_text_never_reaches_reports_logs_or_the_ledger() {
    let db = TestDb::initialized("phi_probe").await;
    let dir = TempDir::new("phi_probe");
    let header =
        "dimPatientPK,PatientNumber,FirstName,LastName,Email,PatientGender,PatientAge,City,State";
    let lost_newline = format!(
        "{header},1,{},Zebulon,Quackenbush,{},M,40,Austin,TX\n2,P2,Ann,Lee,a@b.c,F,30,Waco,TX\n",
        PROBES[0], PROBES[2]
    );
    dir.write("a/dimPatient.csv", lost_newline);
    let rejected = format!(
        "{header}\n1,{},Zebulon Quackenbush,{},x,M,{},Austin,TX\n2,P2,Ann,Lee,a@b.c,F,30,Waco,TX\n",
        PROBES[0], PROBES[2], PROBES[1]
    );
    dir.write("b/dimPatient.csv", rejected);
    let unclosed = format!("{header}\n1,\"{},Zebulon,Quackenbush\n", PROBES[0]);
    dir.write("c/dimPatient.csv", unclosed);
    let mut mixed = format!(
        "{header}\n1,{},{},x,y,M,40,Austin,TX\n",
        PROBES[3], PROBES[1]
    )
    .into_bytes();
    mixed.extend_from_slice(b"2,P2,Jos\xe9,x,y,M,40,Austin,TX\n");
    dir.write("d/dimPatient.csv", mixed);
    let bare = format!("{header}\n1,P1,Ann\"{},x,y,M,40,Austin,TX\n", PROBES[1]);
    dir.write("e/dimPatient.csv", bare);
    for run in [
        vec!["load", "--json", "a", "b", "c", "d", "e"],
        vec!["load", "a", "b", "c", "d", "e"],
    ] {
        let mut args = run.clone();
        args.extend(["--reject-threshold", "1"]);
        let out = run_bin(Some(&db.url), dir.path(), args).await;
        for probe in PROBES {
            for probe in [
                probe.to_string(),
                probe.to_lowercase(),
                probe.replace(' ', ""),
            ] {
                assert!(
                    !out.stdout.contains(&probe),
                    "stdout holds {probe}:\n{}",
                    out.stdout
                );
                assert!(
                    !out.stderr.contains(&probe),
                    "stderr holds {probe}:\n{}",
                    out.stderr
                );
            }
        }
        if run[1] == "--json" {
            let report = out.json();
            assert!(
                report["objects"][0]["extra_columns"]
                    .as_array()
                    .is_some_and(|a| a.len() == 9),
                "extra columns by position: {report}"
            );
        } else {
            assert!(
                out.stdout.contains("9 extra columns at positions 10–18"),
                "{}",
                out.stdout
            );
        }
    }
    let ledger: Vec<Vec<Option<String>>> =
        common::rows(&db.url, "SELECT row_to_json(l)::text FROM etl.load_log l").await;
    assert!(!ledger.is_empty());
    for row in ledger {
        let row = row[0].clone().unwrap_or_default();
        for probe in PROBES {
            assert!(!row.contains(probe), "the ledger holds {probe}: {row}");
        }
    }
}
