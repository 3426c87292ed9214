//! Schema migrations against the local PostgreSQL: a warehouse created by the previous declaration (version 1,
//! before `dim_patient.email` was declared) gains the new optional column on `init`, a file without that column
//! loads with NULL, a warehouse at the declared version is not initialized again, and the command line reaches the
//! warehouse through the standard `PG*` variables.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::str::FromStr;

use common::{TempDir, TestDb, rows, scalar, within};
use healthetl::handler::ensure_schema;
use healthetl::pipeline::{LoadOptions, Status, load_object};
use healthetl::schema::SCHEMA_VERSION;
use healthetl::source::Object;
use healthetl::warehouse::{Loader, Postgres};

/// Turn a freshly initialized warehouse into one the previous declaration created: no `email` column, version 1.
async fn as_previous_declaration(db: &TestDb) {
    let client = common::connect(&db.url).await;
    client
        .batch_execute(
            "DROP VIEW IF EXISTS reporting.patient_demographics; \
             ALTER TABLE health.dim_patient DROP COLUMN email; \
             DELETE FROM etl.schema_version; \
             INSERT INTO etl.schema_version VALUES (1, 0, now())",
        )
        .await
        .expect("downgrade");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_of_the_previous_declaration_gains_the_optional_column_and_a_file_without_it_loads()
 {
    let db = TestDb::initialized("migrate_column").await;
    assert_eq!(
        scalar::<i32>(&db.url, "SELECT max(version) FROM etl.schema_version").await,
        SCHEMA_VERSION as i32
    );
    as_previous_declaration(&db).await;
    let mut pg = Postgres::new(&db.url).expect("url");
    assert!(
        !pg.is_current().await.expect("version"),
        "version 1 is not current"
    );

    let migrated = within("init", common::init(&mut pg))
        .await
        .expect("init migrates");
    assert_eq!(migrated.from_version, Some(1));
    assert_eq!(migrated.to_version, i64::from(SCHEMA_VERSION));
    assert_eq!(migrated.columns_added, ["dim_patient.email"]);
    let columns = rows(
        &db.url,
        "SELECT column_name, data_type, character_maximum_length::text, is_nullable FROM information_schema.columns \
         WHERE table_schema = 'health' AND table_name = 'dim_patient' AND column_name = 'email'",
    )
    .await;
    assert_eq!(
        columns,
        [[
            Some("email".into()),
            Some("character varying".into()),
            Some("200".into()),
            Some("YES".into())
        ]]
    );
    assert!(pg.is_current().await.expect("version"));
    let versions: i64 = scalar(&db.url, "SELECT count(*) FROM etl.schema_version").await;
    assert_eq!(versions, 2, "the migration is recorded");
    // The view dropped with the column is back: init ran the reporting statements.
    let view: i64 = scalar(
        &db.url,
        "SELECT count(*) FROM information_schema.views WHERE table_schema = 'reporting' \
         AND table_name = 'patient_demographics'",
    )
    .await;
    assert_eq!(view, 1);

    // A file of the previous declaration's shape: no Email column.
    let dir = TempDir::new("migrate_column");
    let file = dir.write(
        "dimPatient.csv",
        "dimPatientPK,PatientNumber,FirstName,LastName,PatientGender,PatientAge,City,State\n\
         1,MRN1,Ann,Lee,F,40,Boston,MA\n2,MRN2,Bo,Kim,M,51,Austin,TX\n",
    );
    let options = LoadOptions {
        rejects_dir: dir.path().join("rejects"),
        ..LoadOptions::default()
    };
    let report = within(
        "load",
        load_object(&mut pg, Object::local(&file).unwrap(), &options, None),
    )
    .await;
    assert_eq!(report.status, Status::Loaded, "{report:?}");
    assert_eq!((report.rows_read, report.rows_loaded), (2, 2));
    let emails: i64 = scalar(&db.url, "SELECT count(email) FROM health.dim_patient").await;
    assert_eq!(emails, 0, "the missing optional column loads as NULL");
    // A required column is still required.
    let file = dir.write(
        "dimPatient_noage.csv",
        "dimPatientPK,PatientNumber,FirstName,LastName,PatientGender,City,State\n3,MRN3,Cy,Do,F,Reno,NV\n",
    );
    let report = load_object(&mut pg, Object::local(&file).unwrap(), &options, None).await;
    assert_eq!(report.status, Status::Refused, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("PatientAge"),
        "{report:?}"
    );

    let again = common::init(&mut pg).await.expect("init again");
    assert!(again.columns_added.is_empty());
    let versions: i64 = scalar(&db.url, "SELECT count(*) FROM etl.schema_version").await;
    assert_eq!(versions, 2, "an init that changes nothing records nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_at_the_declared_version_is_not_initialized_again() {
    let db = TestDb::initialized("migrate_current").await;
    let client = common::connect(&db.url).await;
    client
        .batch_execute("DROP VIEW reporting.kpi_summary")
        .await
        .expect("drop a view");
    let mut pg = Postgres::new(&db.url).expect("url");
    ensure_schema(&mut pg).await.expect("ensure");
    let views = "SELECT count(*) FROM information_schema.views WHERE table_schema = 'reporting' \
                 AND table_name = 'kpi_summary'";
    assert_eq!(
        scalar::<i64>(&db.url, views).await,
        0,
        "a current warehouse costs one query, no init (the Lambda's cold start)"
    );
    as_previous_declaration(&db).await;
    ensure_schema(&mut pg).await.expect("ensure");
    assert_eq!(
        scalar::<i64>(&db.url, views).await,
        1,
        "an older version is brought up to date"
    );
    let email: i64 = scalar(
        &db.url,
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'health' \
         AND table_name = 'dim_patient' AND column_name = 'email'",
    )
    .await;
    assert_eq!(email, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_reaches_the_warehouse_through_the_pg_variables() {
    let db = TestDb::new("pg_variables").await;
    let config = tokio_postgres::Config::from_str(&db.url).unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or("postgres").to_string();
    let dir = TempDir::new("pg_variables");
    dir.write(
        "dimPayer.csv",
        "dimPayerPK,PayerName\n1,Medicare\n2,Aetna\n",
    );
    let env = [
        ("PGHOST", host.as_str()),
        ("PGPORT", port.as_str()),
        ("PGUSER", user.as_str()),
        ("PGDATABASE", db.name.as_str()),
        ("PGSSLMODE", "require"),
    ];
    for args in [vec!["init"], vec!["load", "dimPayer.csv"]] {
        let out = common::run_bin_with(&env, dir.path(), args.clone()).await;
        assert_eq!(
            out.code,
            Some(0),
            "{args:?}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
    assert_eq!(db.count("health.dim_payer").await, 2);
    let out = common::run_bin_with(&[], dir.path(), ["init"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("DATABASE_URL") && out.stderr.contains("PG*"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_from_before_routing_and_content_identity_gains_those_columns_keeping_its_rows() {
    let db = TestDb::initialized("migrate_ledger").await;
    let dir = TempDir::new("migrate_ledger");
    let file = dir.write("dimPayer.csv", "dimPayerPK,PayerName\n1,Medicare\n");
    let options = LoadOptions {
        rejects_dir: dir.path().join("rejects"),
        ..LoadOptions::default()
    };
    let mut pg = Postgres::new(&db.url).expect("url");
    let report = load_object(&mut pg, Object::local(&file).unwrap(), &options, None).await;
    assert_eq!(report.status, Status::Loaded, "{report:?}");
    let client = common::connect(&db.url).await;
    client
        .batch_execute(
            "DROP VIEW reporting.data_quality; \
             ALTER TABLE etl.load_log DROP COLUMN routed_by, DROP COLUMN content_sha256, DROP COLUMN quality; \
             DROP TABLE etl.schema_version",
        )
        .await
        .expect("an old ledger");
    let migrated = within("init", common::init(&mut pg))
        .await
        .expect("init migrates");
    assert_eq!(
        migrated.from_version, None,
        "no version was recorded before"
    );
    assert_eq!(
        migrated.columns_added,
        [
            "load_log.routed_by",
            "load_log.content_sha256",
            "load_log.quality"
        ]
    );
    let old = rows(
        &db.url,
        "SELECT routed_by, content_sha256, quality::text FROM etl.load_log",
    )
    .await;
    assert_eq!(
        old,
        [[Some("name".into()), None, None]],
        "existing rows get the declared default"
    );
    // The migrated ledger works: the same file is skipped, a new one loads with the new columns filled.
    let report = load_object(&mut pg, Object::local(&file).unwrap(), &options, None).await;
    assert_eq!(report.status, Status::Skipped, "{report:?}");
    let next = dir.write("dimPayer_2.csv", "dimPayerPK,PayerName\n2,Aetna\n");
    let report = load_object(&mut pg, Object::local(&next).unwrap(), &options, None).await;
    assert_eq!(report.status, Status::Loaded, "{report:?}");
    let filled: i64 = scalar(
        &db.url,
        "SELECT count(*) FROM etl.load_log WHERE routed_by = 'name' AND content_sha256 IS NOT NULL",
    )
    .await;
    assert_eq!(filled, 1);
}
