//! The dataset as users have it: the Kaggle files under their real names (`DimPhyscian.csv`, `Dimtrancstion.csv`,
//! `DimPlayer.csv` route by their headers; `Dimpatient.csv` by its name, case-insensitively), CRLF, quoted commas,
//! empty text and trailing spaces — a folder load through the binary against a real PostgreSQL.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::path::PathBuf;

use common::{TempDir, TestDb, rows, run_bin, scalar};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kaggle-names")
}

#[tokio::test]
async fn the_kaggle_folder_loads_every_table_routing_misnamed_files_by_header() {
    let db = TestDb::initialized("kaggle_names").await;
    let dir = TempDir::new("kaggle_names");
    let folder = fixtures();
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load".as_ref(), "--json".as_ref(), folder.as_os_str()],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let summary = out.json();
    assert_eq!(summary["totals"]["loaded"], 10, "{summary:#}");
    let routed: Vec<(String, String, String)> = summary["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let source = o["source"].as_str().unwrap();
            (
                source.rsplit('/').next().unwrap().to_string(),
                o["table"].as_str().unwrap().to_string(),
                o["routed_by"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, _, by)| by == "header")
        .collect();
    let mut routed = routed;
    routed.sort();
    assert_eq!(
        routed,
        [
            (
                "DimPhyscian.csv".into(),
                "dim_physician".into(),
                "header".into()
            ),
            ("DimPlayer.csv".into(), "dim_payer".into(), "header".into()),
            (
                "Dimtrancstion.csv".into(),
                "dim_transaction".into(),
                "header".into()
            ),
        ]
    );
    let by_header: i64 = scalar(
        &db.url,
        "SELECT count(*) FROM etl.load_log WHERE routed_by = 'header'",
    )
    .await;
    assert_eq!(by_header, 3);
    assert_eq!(db.count("health.fact_table").await, 6);
    assert_eq!(db.count("health.dim_physician").await, 2);

    // The data dictionary is a table, and its definitions are the columns' comments.
    assert_eq!(db.count("health.data_dictionary").await, 5);
    let comment: String = scalar(
        &db.url,
        "SELECT col_description('health.fact_table'::regclass, \
         (SELECT attnum FROM pg_attribute WHERE attrelid = 'health.fact_table'::regclass AND attname = 'gross_charge'))",
    )
    .await;
    assert_eq!(
        comment,
        "The amount billed, before payments and adjustments"
    );
    let quoted: String = scalar(
        &db.url,
        "SELECT d.description FROM pg_description d JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid \
         WHERE d.objoid = 'health.dim_patient'::regclass AND a.attname = 'patient_number'",
    )
    .await;
    assert_eq!(quoted, "The patient's medical record number");
    let comments: i64 = scalar(
        &db.url,
        "SELECT count(*) FROM pg_description d JOIN pg_class c ON c.oid = d.objoid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'health' AND d.objsubid > 0",
    )
    .await;
    assert_eq!(
        comments, 4,
        "the row for an undeclared column stays in the table only"
    );

    // Text is byte-exact: trailing spaces kept; empty text is NULL; quoted commas are data.
    let diagnoses = rows(
        &db.url,
        "SELECT diagnosis_code_description FROM health.dim_diagnosis_code ORDER BY 1",
    )
    .await;
    assert!(
        diagnoses.contains(&vec![Some("Essential (primary) hypertension ".to_string())]),
        "{diagnoses:?}"
    );
    assert!(diagnoses.contains(&vec![Some(
        "Acute upper respiratory infection  ".to_string()
    )]));
    let empty: Option<String> = scalar(
        &db.url,
        "SELECT cpt_desc FROM health.dim_cpt_code WHERE dim_cpt_code_pk = 2",
    )
    .await;
    assert_eq!(empty, None);
    let payer: String = scalar(
        &db.url,
        "SELECT payer_name FROM health.dim_payer WHERE dim_payer_pk = 2",
    )
    .await;
    assert_eq!(payer, "Blue Cross, Blue Shield");

    // A re-run is a no-op that succeeds.
    let again = run_bin(
        Some(&db.url),
        dir.path(),
        ["load".as_ref(), "--json".as_ref(), folder.as_os_str()],
    )
    .await;
    assert_eq!(again.code, Some(0), "{}", again.stdout);
    assert_eq!(again.json()["totals"]["skipped"], 10);
}

#[tokio::test]
async fn a_header_that_fits_two_tables_is_refused_naming_both() {
    let db = TestDb::initialized("two_tables").await;
    let dir = TempDir::new("two_tables");
    dir.write(
        "Lookup.csv",
        "dimPayerPK,PayerName,dimLocationPK,LocationName\r\n1,Medicare,1,Main\r\n",
    );
    dir.write("notes.csv", "when,what\r\nmonday,call\r\n");
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "Lookup.csv", "notes.csv"],
    )
    .await;
    assert_eq!(out.code, Some(1));
    let summary = out.json();
    let error = summary["objects"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("dimPayer (columns") && error.contains("dimLocation (columns"),
        "{error}"
    );
    let error = summary["objects"][1]["error"].as_str().unwrap();
    assert!(error.contains("carries no table's columns"), "{error}");
    assert!(!error.contains("monday"), "{error}");
    assert_eq!(
        db.count("health.dim_payer").await + db.count("health.dim_location").await,
        0
    );
    assert_eq!(db.ledger_rows().await, 0);
}
