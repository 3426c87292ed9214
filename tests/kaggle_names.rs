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

/// The fact table's nine dimension key columns, in table order.
const KEY_COLUMNS: [&str; 9] = [
    "dim_patient_pk",
    "dim_physician_pk",
    "dim_date_post_pk",
    "dim_date_service_pk",
    "dim_cpt_code_pk",
    "dim_payer_pk",
    "dim_transaction_pk",
    "dim_location_pk",
    "dim_diagnosis_code_pk",
];

#[tokio::test]
async fn a_fact_table_loaded_first_reports_orphans_for_every_dimension_until_they_arrive() {
    let db = TestDb::initialized("quality_orphans").await;
    let dir = TempDir::new("quality_orphans");
    let fact = fixtures().join("FactTable.csv");

    // Into an empty warehouse: it loads (files arrive in any order), and every key is an orphan.
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load".as_ref(), fact.as_os_str()],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(db.count("health.fact_table").await, 6);
    assert!(
        out.stdout
            .contains("quality: 6 rows with no dim_patient row (dim_patient_pk); 6 rows with no dim_physician row"),
        "{}",
        out.stdout
    );
    for column in KEY_COLUMNS {
        let in_ledger: String = scalar(
            &db.url,
            &format!("SELECT quality->'orphans'->>'{column}' FROM etl.load_log WHERE table_name = 'fact_table'"),
        )
        .await;
        assert_eq!(in_ledger, "6", "{column} in the ledger");
        let now: i64 = scalar(
            &db.url,
            &format!(
                "SELECT row_count FROM reporting.data_quality WHERE figure = 'orphans' AND column_name = '{column}'"
            ),
        )
        .await;
        assert_eq!(now, 6, "{column} in reporting.data_quality");
    }
    let ar: String = scalar(
        &db.url,
        "SELECT quality->>'ar_mismatch' FROM etl.load_log WHERE table_name = 'fact_table'",
    )
    .await;
    assert_eq!(
        ar, "0",
        "AR = GrossCharge + Payment + Adjustment on every fixture row"
    );

    // The dimensions arrive: the fact file is skipped, and the warehouse-wide figures fall to zero.
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load".as_ref(), "--json".as_ref(), fixtures().as_os_str()],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let summary = out.json();
    assert_eq!(summary["totals"]["loaded"], 9, "{summary:#}");
    assert_eq!(summary["totals"]["skipped"], 1, "{summary:#}");
    let figures = rows(
        &db.url,
        "SELECT figure, column_name, dimension, row_count::text FROM reporting.data_quality ORDER BY 1, 2",
    )
    .await;
    assert_eq!(figures.len(), 10, "{figures:?}");
    for f in &figures {
        assert_eq!(f[3].as_deref(), Some("0"), "{f:?}");
    }
    assert!(figures.contains(&vec![
        Some("orphans".into()),
        Some("dim_date_service_pk".into()),
        Some("dim_date".into()),
        Some("0".into())
    ]));
    assert!(figures.contains(&vec![
        Some("ar_mismatch".into()),
        Some("ar".into()),
        None,
        Some("0".into())
    ]));
}

/// Load every fixture but the fact table.
async fn load_dimensions(db: &TestDb, dir: &TempDir) {
    let mut args: Vec<std::ffi::OsString> = vec!["load".into()];
    args.extend(
        std::fs::read_dir(fixtures())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with("FactTable.csv"))
            .map(|p| p.into_os_string()),
    );
    let out = run_bin(Some(&db.url), dir.path(), args).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
}

#[tokio::test]
async fn a_fact_load_reports_its_quality_in_json_counting_orphans_and_ar_mismatches() {
    let db = TestDb::initialized("quality_json").await;
    let dir = TempDir::new("quality_json");
    load_dimensions(&db, &dir).await;
    // Row 11: patient 99 has no dimension row; row 12: AR is 1 cent off; row 13: a NULL payer is not an orphan.
    dir.write(
        "FactTable_2024-06.csv",
        "FactTablePK,dimPatientPK,dimPhysicianPK,dimDatePostPK,dimDateServicePK,dimCPTCodePK,dimPayerPK,\
         dimTransactionPK,dimLocationPK,PatientNumber,dimDiagnosisCodePK,CPTUnits,GrossCharge,Payment,Adjustment,AR\r\n\
         11,99,10,2019-01-02,2019-01-02,1,1,1,1,000199,1,1.00,150.00,0.00,0.00,150.00\r\n\
         12,1,10,2019-01-02,2019-01-02,1,1,1,1,000101,1,1.00,150.00,-100.00,-25.00,25.01\r\n\
         13,1,10,2019-01-02,2019-01-02,1,,1,1,000101,1,1.00,\"$1,500.00\",($1000.00),0.00,500.00\r\n",
    );
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "FactTable_2024-06.csv"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let summary = out.json();
    let quality = &summary["objects"][0]["quality"];
    let mut expected = serde_json::Map::new();
    for column in KEY_COLUMNS {
        expected.insert(
            column.into(),
            serde_json::json!(if column == "dim_patient_pk" { 1 } else { 0 }),
        );
    }
    assert_eq!(
        quality["orphans"],
        serde_json::Value::Object(expected),
        "{summary:#}"
    );
    assert_eq!(quality["ar_mismatch"], 1, "{summary:#}");
    let at: Vec<usize> = KEY_COLUMNS
        .iter()
        .map(|c| out.stdout.find(&format!("\"{c}\"")).unwrap())
        .collect();
    assert!(
        at.is_sorted(),
        "the JSON lists the key columns in table order: {at:?}"
    );
    assert!(!out.stdout.contains("000199"), "values never appear");
    // Dimension loads carry no quality figures.
    let dims: i64 = scalar(
        &db.url,
        "SELECT count(*) FROM etl.load_log WHERE table_name <> 'fact_table' AND quality IS NOT NULL",
    )
    .await;
    assert_eq!(dims, 0);
    let mismatched: i64 = scalar(
        &db.url,
        "SELECT row_count FROM reporting.data_quality WHERE figure = 'ar_mismatch'",
    )
    .await;
    assert_eq!(mismatched, 1);
}

#[tokio::test]
async fn the_same_bytes_gzipped_or_renamed_are_one_object() {
    use sha2::Digest;
    use std::io::Write;
    let db = TestDb::initialized("content_identity").await;
    let dir = TempDir::new("content_identity");
    let bytes = std::fs::read(fixtures().join("FactTable.csv")).unwrap();
    let gzip = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    dir.write("FactTable.csv.gz", gzip(&bytes));
    dir.write("FactTable.csv", &bytes);
    dir.write("FactTable_copy.csv", &bytes);
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "FactTable.csv.gz"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let sha = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert_eq!(out.json()["objects"][0]["content_sha256"], sha.as_str());
    let recorded: String = scalar(&db.url, "SELECT content_sha256 FROM etl.load_log").await;
    assert_eq!(recorded, sha, "the ledger records the content's SHA-256");
    let identity: String = scalar(&db.url, "SELECT object_identity FROM etl.load_log").await;
    assert!(
        identity.starts_with("sha256:") && !identity.ends_with(&sha),
        "the quick identity is the gzip file's own hash: {identity}"
    );

    // The plain file and a renamed copy hold the same bytes: skipped, nothing changes.
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "FactTable.csv", "FactTable_copy.csv"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.json()["totals"]["skipped"], 2, "{}", out.stdout);
    assert_eq!(db.ledger_rows().await, 1);

    // The other way round, in a fresh warehouse: plain first, then the gzip (known only once decompressed).
    let db = TestDb::initialized("content_identity_2").await;
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "FactTable.csv"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "FactTable.csv.gz"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let summary = out.json();
    assert_eq!(summary["objects"][0]["status"], "skipped", "{summary:#}");
    assert_eq!(db.ledger_rows().await, 1);
    assert_eq!(db.count("health.fact_table").await, 6);

    // --force reloads the same content.
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "--force", "FactTable.csv.gz"],
    )
    .await;
    assert_eq!(
        out.json()["objects"][0]["status"],
        "loaded",
        "{}",
        out.stdout
    );
    assert_eq!(db.ledger_rows().await, 2);
}

#[tokio::test]
async fn keys_past_the_tally_bounds_are_counted_by_the_warehouse_exactly() {
    let db = TestDb::initialized("quality_fallback").await;
    let dir = TempDir::new("quality_fallback");
    load_dimensions(&db, &dir).await;
    // More distinct large patient keys than the loader tallies itself (65,536), appended, then one row that
    // replaces an earlier key (staged): the warehouse counts that column from the load's own rows.
    let big = 1i64 << 21;
    let mut csv = String::from(
        "FactTablePK,dimPatientPK,dimPhysicianPK,dimDatePostPK,dimDateServicePK,dimCPTCodePK,dimPayerPK,\
         dimTransactionPK,dimLocationPK,PatientNumber,dimDiagnosisCodePK,CPTUnits,GrossCharge,Payment,Adjustment,AR\n",
    );
    let line = |pk: i64, patient: i64| {
        format!(
            "{pk},{patient},10,2019-01-02,2019-01-02,1,1,1,1,x,1,1.00,150.00,0.00,0.00,150.00\n"
        )
    };
    for pk in 1..=70_000 {
        csv.push_str(&line(pk, big + pk));
    }
    for pk in 70_001..=70_010 {
        csv.push_str(&line(pk, 1));
    }
    csv.push_str(&line(5, big));
    dir.write("FactTable_many.csv", csv);
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        ["load", "--json", "FactTable_many.csv"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let report = &out.json()["objects"][0];
    assert_eq!(report["rows_duplicate"], 1, "{report:#}");
    let orphans = &report["quality"]["orphans"];
    assert_eq!(orphans["dim_patient_pk"], 70_001, "{report:#}");
    for column in KEY_COLUMNS.iter().filter(|c| **c != "dim_patient_pk") {
        assert_eq!(orphans[*column], 0, "{column}: {report:#}");
    }
}
