//! The reporting views against a real PostgreSQL: a generated dataset (plus fact lines whose dimensions are missing)
//! is loaded through the library, and every column of every view is compared with an independent computation in
//! Rust over the CSV files themselves — parsed here, money and dates per the warehouse contract, sums in exact
//! cents.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::files::{
    Date, decimal, field, iso, key, month, parse_date, parse_money, rate, read_table,
};
use common::{TempDir, TestDb, rows, within};
use healthetl::generate::{GenerateOptions, Manifest, generate};
use healthetl::pipeline::{LoadOptions, Status, load_object};
use healthetl::reporting::{DATA_QUALITY, views};
use healthetl::source::Object;

const ROWS: u64 = 3_000;
const SEED: u64 = 20_240_601;

/// Fact lines appended in a second fact file: payer 999, location 99, physician 999, CPT 999, diagnosis 999 and
/// patient 999999 are in no dimension; the second line misses only its payer.
const ORPHANS: &str = "FactTablePK,dimPatientPK,dimPhysicianPK,dimDatePostPK,dimDateServicePK,dimCPTCodePK,\
dimPayerPK,dimTransactionPK,dimLocationPK,PatientNumber,dimDiagnosisCodePK,CPTUnits,GrossCharge,Payment,Adjustment,AR
900001,999999,999,2020-06-15,6/1/2020,999,999,1,99,0999999,999,1,\"$1,000.00\",($400.00),-100.00,500.00
900002,1,1,20200616,06/02/2020,1,999,2,1,000001,1,2.5,250.10,-100.05,(50.00),100.05
";

// -------------------------------------------------------------------------------------------------
// Parsing the files, independently of the loader.

/// One fact line with its dimensions resolved as the views resolve them (`None` when the dimension is missing).
#[derive(Debug, Clone)]
struct Line {
    post: Date,
    service: Date,
    patient_key: i64,
    physician_key: i64,
    payer: Option<(i64, String)>,
    location: Option<(i64, String)>,
    /// Key, name, specialty.
    physician: Option<(i64, String, String)>,
    cpt_grouping: Option<String>,
    diagnosis_group: Option<String>,
    /// Gender, age, state.
    patient: Option<(String, i64, String)>,
    units: i64,
    gross: i64,
    payment: i64,
    adjustment: i64,
    ar: i64,
}

struct Dims {
    payers: BTreeMap<i64, String>,
    locations: BTreeMap<i64, String>,
    physicians: BTreeMap<i64, (String, String)>,
    cpt: BTreeMap<i64, String>,
    diagnoses: BTreeMap<i64, String>,
    patients: BTreeMap<i64, (String, i64, String)>,
}

fn read_dims(dir: &Path, manifest: &Manifest) -> Dims {
    let table = |name: &str| {
        let t = &manifest.tables[name];
        read_table(dir, &t.file, &t.encoding)
    };
    let pairs = |name: &str, pk: &str, value: &str| -> BTreeMap<i64, String> {
        table(name)
            .iter()
            .map(|r| (key(r, pk), field(r, value).to_string()))
            .collect()
    };
    Dims {
        payers: pairs("dim_payer", "dimPayerPK", "PayerName"),
        locations: pairs("dim_location", "dimLocationPK", "Location Name"),
        cpt: pairs("dim_cpt_code", "dimCPTCodePK", "CptGrouping"),
        diagnoses: pairs(
            "dim_diagnosis_code",
            "dimDiagnosisCodePK",
            "DiagnosisCodeGroup",
        ),
        physicians: table("dim_physician")
            .iter()
            .map(|r| {
                (
                    key(r, "dimPhysicianPK"),
                    (
                        field(r, "ProviderName").to_string(),
                        field(r, "ProviderSpecialty").to_string(),
                    ),
                )
            })
            .collect(),
        patients: table("dim_patient")
            .iter()
            .map(|r| {
                (
                    key(r, "dimPatientPK"),
                    (
                        field(r, "PatientGender").to_string(),
                        key(r, "PatientAge"),
                        field(r, "State").to_string(),
                    ),
                )
            })
            .collect(),
    }
}

fn read_lines(path: &Path, dims: &Dims) -> Vec<Line> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    let dir = path.parent().expect("folder");
    read_table(dir, file, "utf-8")
        .iter()
        .map(|r| {
            let payer = key(r, "dimPayerPK");
            let location = key(r, "dimLocationPK");
            let physician = key(r, "dimPhysicianPK");
            let patient = key(r, "dimPatientPK");
            Line {
                post: parse_date(field(r, "dimDatePostPK")),
                service: parse_date(field(r, "dimDateServicePK")),
                patient_key: patient,
                physician_key: physician,
                payer: dims.payers.get(&payer).map(|n| (payer, n.clone())),
                location: dims.locations.get(&location).map(|n| (location, n.clone())),
                physician: dims
                    .physicians
                    .get(&physician)
                    .map(|(n, s)| (physician, n.clone(), s.clone())),
                cpt_grouping: dims.cpt.get(&key(r, "dimCPTCodePK")).cloned(),
                diagnosis_group: dims.diagnoses.get(&key(r, "dimDiagnosisCodePK")).cloned(),
                patient: dims.patients.get(&patient).cloned(),
                units: parse_money(field(r, "CPTUnits")),
                gross: parse_money(field(r, "GrossCharge")),
                payment: parse_money(field(r, "Payment")),
                adjustment: parse_money(field(r, "Adjustment")),
                ar: parse_money(field(r, "AR")),
            }
        })
        .collect()
}

// -------------------------------------------------------------------------------------------------
// The expected figures.

const UNKNOWN: &str = "unknown";

/// The value of a grouping column for one line, as text (what `::text` of the view's column gives).
fn attribute(name: &str, l: &Line) -> Option<String> {
    let unknown = || Some(UNKNOWN.to_string());
    match name {
        "post_date" => Some(iso(l.post)),
        "service_date" => Some(iso(l.service)),
        "post_month" => Some(month(l.post)),
        "service_month" => Some(month(l.service)),
        "payer_id" => l.payer.as_ref().map(|p| p.0.to_string()),
        "payer_name" => l.payer.as_ref().map(|p| p.1.clone()).or_else(unknown),
        "location_id" => l.location.as_ref().map(|p| p.0.to_string()),
        "location_name" => l.location.as_ref().map(|p| p.1.clone()).or_else(unknown),
        "physician_id" => l.physician.as_ref().map(|p| p.0.to_string()),
        "physician_name" => l.physician.as_ref().map(|p| p.1.clone()).or_else(unknown),
        "specialty" => l.physician.as_ref().map(|p| p.2.clone()).or_else(unknown),
        "cpt_grouping" => l.cpt_grouping.clone().or_else(unknown),
        "diagnosis_group" => l.diagnosis_group.clone().or_else(unknown),
        "age_band" => Some(
            match l.patient.as_ref().map(|p| p.1) {
                None => UNKNOWN,
                Some(a) if a < 18 => "under 18",
                Some(a) if a <= 65 => "18-65",
                Some(_) => "over 65",
            }
            .to_string(),
        ),
        "gender" => l.patient.as_ref().map(|p| p.0.clone()).or_else(unknown),
        "state" => l.patient.as_ref().map(|p| p.2.clone()).or_else(unknown),
        other => panic!("the test does not know grouping column {other}: add it"),
    }
}

/// Sums of a group of lines.
#[derive(Debug, Default)]
struct Sums {
    transactions: i64,
    units: i64,
    gross: i64,
    payment: i64,
    adjustment: i64,
    ar: i64,
    patients: BTreeSet<i64>,
    physicians: BTreeSet<i64>,
    first_post: Option<Date>,
    last_post: Option<Date>,
}

impl Sums {
    fn add(&mut self, l: &Line) {
        self.transactions += 1;
        self.units += l.units;
        self.gross += l.gross;
        self.payment += l.payment;
        self.adjustment += l.adjustment;
        self.ar += l.ar;
        self.patients.insert(l.patient_key);
        self.physicians.insert(l.physician_key);
        self.first_post = Some(self.first_post.map_or(l.post, |d| d.min(l.post)));
        self.last_post = Some(self.last_post.map_or(l.post, |d| d.max(l.post)));
    }
}

/// The value of an aggregate column for a group.
fn measure(name: &str, s: &Sums) -> Option<String> {
    let collected = -s.payment;
    match name {
        "transactions" => Some(s.transactions.to_string()),
        "cpt_units" => Some(decimal(s.units)),
        "gross_charges" => Some(decimal(s.gross)),
        "payments" => Some(decimal(s.payment)),
        "adjustments" => Some(decimal(s.adjustment)),
        "collected" => Some(decimal(collected)),
        "ar" => Some(decimal(s.ar)),
        "gross_collection_rate" => rate(collected, s.gross),
        "net_collection_rate" => rate(collected, s.gross + s.adjustment),
        "patients" => Some(s.patients.len().to_string()),
        "physicians" => Some(s.physicians.len().to_string()),
        "first_post_date" => s.first_post.map(iso),
        "last_post_date" => s.last_post.map(iso),
        other => panic!("the test does not know measure {other}: add it"),
    }
}

type Table = BTreeMap<Vec<Option<String>>, Vec<Option<String>>>;

/// What a view holds: one row per distinct grain, its measures computed from the lines.
fn expected(grain: &[&str], measures: &[&str], lines: &[Line]) -> Table {
    let mut groups: BTreeMap<Vec<Option<String>>, Sums> = BTreeMap::new();
    for l in lines {
        let k: Vec<Option<String>> = grain.iter().map(|a| attribute(a, l)).collect();
        groups.entry(k).or_default().add(l);
    }
    if grain.is_empty() && groups.is_empty() {
        groups.insert(Vec::new(), Sums::default());
    }
    groups
        .into_iter()
        .map(|(k, s)| (k, measures.iter().map(|m| measure(m, &s)).collect()))
        .collect()
}

/// What the view holds in the warehouse, every column as text, keyed by its grain.
async fn actual(db: &TestDb, view: &str, grain: &[&str], measures: &[&str]) -> Table {
    let columns: Vec<String> = grain
        .iter()
        .chain(measures)
        .map(|c| format!("{c}::text"))
        .collect();
    let sql = format!("SELECT {} FROM reporting.{view}", columns.join(", "));
    let mut table = Table::new();
    for row in rows(&db.url, &sql).await {
        let (k, v) = row.split_at(grain.len());
        assert!(
            table.insert(k.to_vec(), v.to_vec()).is_none(),
            "{view}: two rows for {k:?}"
        );
    }
    table
}

/// A column's position where the view's grain ends and its measures start.
fn split(columns: &[&'static str]) -> usize {
    columns
        .iter()
        .position(|c| *c == "transactions")
        .expect("every view has transactions")
}

// -------------------------------------------------------------------------------------------------
// The fixture: generated files, the orphans, loaded through the library.

struct Loaded {
    db: TestDb,
    lines: Vec<Line>,
    dims: Dims,
    _tmp: TempDir,
}

async fn load_generated(test: &str) -> Loaded {
    let db = TestDb::initialized(test).await;
    let tmp = TempDir::new(test);
    let dir = tmp.path().join("data");
    let out_dir = dir.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        generate(&GenerateOptions {
            fact_rows: ROWS,
            out_dir,
            seed: SEED,
            plain: false,
        })
    })
    .await
    .expect("generator thread")
    .expect("generate");
    let orphans = tmp.write("data/FactTable_orphans.csv", ORPHANS);

    let options = LoadOptions {
        force: false,
        reject_threshold: 0.0,
        rejects_dir: tmp.path().join("rejects"),
        ..LoadOptions::default()
    };
    let mut files: Vec<PathBuf> = manifest
        .tables
        .iter()
        .filter(|(table, _)| table.as_str() != "fact_table")
        .map(|(_, t)| dir.join(&t.file))
        .collect();
    files.push(dir.join(&manifest.tables["fact_table"].file));
    files.push(orphans.clone());
    let mut pg = db.warehouse().await;
    for file in &files {
        let object = Object::local(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let report = within(
            &format!("loading {}", file.display()),
            load_object(&mut pg, object, &options, None),
        )
        .await;
        assert_eq!(report.status, Status::Loaded, "{report:#?}");
        assert_eq!(report.rows_rejected, 0, "{report:#?}");
    }

    let dims = read_dims(&dir, &manifest);
    let mut lines = read_lines(&dir.join(&manifest.tables["fact_table"].file), &dims);
    assert_eq!(lines.len() as u64, ROWS);
    lines.extend(read_lines(&orphans, &dims));
    Loaded {
        db,
        lines,
        dims,
        _tmp: tmp,
    }
}

// -------------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread")]
async fn every_column_of_every_view_equals_an_independent_computation_over_the_files() {
    let loaded = load_generated("every_view").await;
    assert!(views().len() >= 12, "the views the issue asks for");
    for view in views().iter().filter(|v| v.name != DATA_QUALITY) {
        let columns: Vec<&'static str> = view.columns.iter().map(|c| c.name).collect();
        let (grain, measures) = columns.split_at(split(&columns));
        let want = expected(grain, measures, &loaded.lines);
        let got = actual(&loaded.db, view.name, grain, measures).await;
        assert_eq!(
            got.len(),
            want.len(),
            "reporting.{}: row count (grain {grain:?})",
            view.name
        );
        for (k, v) in &want {
            assert_eq!(
                got.get(k),
                Some(v),
                "reporting.{} row {k:?}: columns {measures:?}",
                view.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn data_quality_counts_the_orphans_and_ar_mismatches_the_files_hold() {
    let loaded = load_generated("data_quality_view").await;
    let lines = &loaded.lines;
    let count = |f: &dyn Fn(&Line) -> bool| lines.iter().filter(|l| f(l)).count().to_string();
    let want = [
        ("dim_patient_pk", count(&|l| l.patient.is_none())),
        ("dim_physician_pk", count(&|l| l.physician.is_none())),
        ("dim_payer_pk", count(&|l| l.payer.is_none())),
        ("dim_location_pk", count(&|l| l.location.is_none())),
        ("dim_cpt_code_pk", count(&|l| l.cpt_grouping.is_none())),
        (
            "dim_diagnosis_code_pk",
            count(&|l| l.diagnosis_group.is_none()),
        ),
        ("ar", count(&|l| l.ar != l.gross + l.payment + l.adjustment)),
    ];
    assert_ne!(want[2].1, "0", "the fixture has orphan payers");
    for (column, n) in want {
        let got = rows(
            &loaded.db.url,
            &format!("SELECT row_count::text FROM reporting.{DATA_QUALITY} WHERE column_name = '{column}'"),
        )
        .await;
        assert_eq!(got, vec![vec![Some(n.clone())]], "{column}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_views_have_exactly_the_documented_columns_in_order() {
    let db = TestDb::initialized("view_columns").await;
    for view in views() {
        let got = rows(
            &db.url,
            &format!(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'reporting' AND table_name = '{}' ORDER BY ordinal_position",
                view.name
            ),
        )
        .await;
        let got: Vec<String> = got
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect();
        let want: Vec<&str> = view.columns.iter().map(|c| c.name).collect();
        assert_eq!(got, want, "reporting.{}", view.name);
    }
    let count: i64 = common::scalar(
        &db.url,
        "SELECT count(*) FROM information_schema.views WHERE table_schema = 'reporting'",
    )
    .await;
    assert_eq!(count as usize, views().len(), "no view undocumented");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fact_line_whose_payer_is_missing_counts_under_unknown() {
    let loaded = load_generated("unknown_payer").await;
    let got = rows(
        &loaded.db.url,
        "SELECT payer_id::text, post_month::text, transactions::text, gross_charges::text, collected::text, \
         ar::text FROM reporting.payer_collections_monthly WHERE payer_name = 'unknown' ORDER BY post_month",
    )
    .await;
    // Both orphan lines were posted in June 2020; the generated files name only payers that exist.
    assert_eq!(
        got,
        vec![vec![
            None,
            Some("2020-06-01".to_string()),
            Some("2".to_string()),
            Some("1250.10".to_string()),
            Some("500.05".to_string()),
            Some("600.05".to_string()),
        ]]
    );
    let locations = rows(
        &loaded.db.url,
        "SELECT location_id::text, transactions::text FROM reporting.location_breakdown \
         WHERE location_name = 'unknown'",
    )
    .await;
    assert_eq!(locations, vec![vec![None, Some("1".to_string())]]);
    // And the whole warehouse still adds up: the unknown lines are in the totals.
    let total: String = common::scalar(
        &loaded.db.url,
        "SELECT gross_charges::text FROM reporting.kpi_summary",
    )
    .await;
    let sum: i64 = loaded.lines.iter().map(|l| l.gross).sum();
    assert_eq!(total, decimal(sum));
}

#[tokio::test(flavor = "multi_thread")]
async fn age_bands_split_at_18_and_65_and_count_each_patient_once() {
    let loaded = load_generated("age_bands").await;
    let got = rows(
        &loaded.db.url,
        "SELECT age_band::text, sum(patients)::text FROM reporting.patient_demographics \
         GROUP BY age_band ORDER BY age_band",
    )
    .await;
    let mut want: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for l in &loaded.lines {
        let band = match loaded.dims.patients.get(&l.patient_key).map(|p| p.1) {
            None => "unknown",
            Some(0..=17) => "under 18",
            Some(18..=65) => "18-65",
            Some(_) => "over 65",
        };
        want.entry(band).or_default().insert(l.patient_key);
    }
    let want: Vec<Vec<Option<String>>> = want
        .iter()
        .map(|(b, p)| vec![Some(b.to_string()), Some(p.len().to_string())])
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        want.len(),
        4,
        "the data has every band, and an unknown patient"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collection_rates_follow_the_documented_definitions() {
    let loaded = load_generated("rates").await;
    let got = rows(
        &loaded.db.url,
        "SELECT gross_collection_rate::text, net_collection_rate::text FROM reporting.kpi_summary",
    )
    .await;
    let gross: i64 = loaded.lines.iter().map(|l| l.gross).sum();
    let paid: i64 = loaded.lines.iter().map(|l| -l.payment).sum();
    let adjusted: i64 = loaded.lines.iter().map(|l| l.adjustment).sum();
    assert!(
        paid > 0 && adjusted < 0,
        "payments and adjustments are negative in the data"
    );
    assert_eq!(
        got,
        vec![vec![rate(paid, gross), rate(paid, gross + adjusted)]]
    );
    let doc = healthetl::reporting::markdown();
    assert!(doc.contains("**Gross collection rate** = collected / gross charges"));
    assert!(doc.contains("**Net collection rate** = collected / (gross charges + adjustments)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_views_are_empty_but_valid_on_an_empty_warehouse_and_init_can_run_again() {
    let db = TestDb::initialized("empty_views").await;
    db.warehouse().await;
    let kpi = rows(
        &db.url,
        "SELECT transactions::text, gross_charges::text, gross_collection_rate::text FROM reporting.kpi_summary",
    )
    .await;
    assert_eq!(
        kpi,
        vec![vec![Some("0".to_string()), Some("0".to_string()), None]]
    );
    assert_eq!(db.count("reporting.billing_monthly_by_post_date").await, 0);
}

/// QuickSight's column type for a view column's SQL type.
fn quicksight_type(sql: &str) -> &'static str {
    match sql {
        "BIGINT" => "INTEGER",
        "DATE" => "DATETIME",
        "VARCHAR" => "STRING",
        t if t.starts_with("NUMERIC") || t.starts_with("DECIMAL") => "DECIMAL",
        other => panic!("no QuickSight type for {other}"),
    }
}

#[test]
fn the_quicksight_data_sets_in_the_template_match_the_views_column_for_column() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
    let template = std::fs::read_to_string(&path).expect("template.yaml");
    assert_eq!(
        template.matches("Type: AWS::QuickSight::DataSet\n").count(),
        views().len(),
        "one data set per view"
    );
    for resource in ["AWS::QuickSight::DataSet", "AWS::QuickSight::DataSource"] {
        assert_eq!(
            template.matches(&format!("Type: {resource}\n")).count(),
            template
                .matches(&format!(
                    "Type: {resource}\n    Condition: QuickSightEnabled\n"
                ))
                .count(),
            "every {resource} depends on DeployQuickSight"
        );
    }
    assert_eq!(
        template
            .matches("    Condition: QuickSightEnabled\n    DependsOn: WarehouseSchema\n")
            .count(),
        views().len(),
        "every data set waits for the views (the WarehouseSchema custom resource)"
    );
    assert!(
        template.contains(&format!(
            "      SchemaVersion: \"{}\"\n",
            healthetl::schema::SCHEMA_VERSION
        )),
        "the custom resource's SchemaVersion is the code's"
    );
    for view in views() {
        let anchor = format!(
            "            Schema: reporting\n            Name: {}\n            InputColumns:\n",
            view.name
        );
        let start = template
            .find(&anchor)
            .unwrap_or_else(|| panic!("no data set on reporting.{}", view.name))
            + anchor.len();
        let got: Vec<&str> = template[start..]
            .lines()
            .take_while(|l| l.starts_with("              - {Name: "))
            .collect();
        let want: Vec<String> = view
            .columns
            .iter()
            .map(|c| {
                format!(
                    "              - {{Name: {}, Type: {}}}",
                    c.name,
                    quicksight_type(c.ty)
                )
            })
            .collect();
        assert_eq!(got, want, "reporting.{}", view.name);
        let resource = &template[..start];
        let head = &resource[resource
            .rfind("Type: AWS::QuickSight::DataSet")
            .unwrap_or(0)..];
        assert!(head.contains("ImportMode: DIRECT_QUERY"), "{}", view.name);
    }
}
