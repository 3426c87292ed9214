//! Warehouse connections as the Lambda makes them: TLS modes against the local PostgreSQL (which serves TLS with
//! a self-signed certificate), and the password from a Secrets Manager secret served by moto_server.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::str::FromStr;

use common::TestDb;
use common::moto::{Moto, sdk_config};
use healthetl::config::{Config, Database, SslMode};
use healthetl::warehouse::tls::tls_connector;
use healthetl::warehouse::{Connector, Loader, Postgres, WarehouseError};

async fn ssl_in_use(pg: &mut dyn Loader) -> bool {
    let client = pg.client().await.expect("connects");
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_require_encrypts_the_connection_and_disable_does_not() {
    let db = TestDb::new("tls_require").await;
    let config = tokio_postgres::Config::from_str(&db.url).unwrap();
    let tls = tls_connector(&SslMode::Require, None).unwrap();
    assert!(tls.is_some());
    let mut encrypted = Postgres::with_config(config.clone(), tls);
    assert!(ssl_in_use(&mut encrypted).await, "require must use TLS");
    common::init(&mut encrypted).await.expect("init over TLS");
    let mut plain = Postgres::with_config(config, tls_connector(&SslMode::Disable, None).unwrap());
    assert!(!ssl_in_use(&mut plain).await, "disable must not use TLS");
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_verify_full_refuses_a_certificate_it_cannot_verify() {
    let db = TestDb::new("tls_verify").await;
    let config = tokio_postgres::Config::from_str(&db.url).unwrap();
    let tls = tls_connector(&SslMode::VerifyFull, None).unwrap();
    let mut pg = Postgres::with_config(config, tls);
    let err = match pg.client().await {
        Ok(_) => panic!("a self-signed certificate must not verify"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_ca_bundle_is_a_clear_configuration_error() {
    let missing = std::path::Path::new("/nonexistent/rds-ca.pem");
    let err = match tls_connector(&SslMode::VerifyFull, Some(missing)) {
        Ok(_) => panic!("a missing bundle must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("/nonexistent/rds-ca.pem"), "{err}");
}

fn secret_config(arn: &str) -> Config {
    Config::from_lookup(|k| match k {
        "DB_SECRET_ARN" => Some(arn.to_string()),
        "DB_SSLMODE" => Some("disable".to_string()),
        _ => None,
    })
    .expect("config")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_comes_from_the_secrets_manager_secret() {
    let db = TestDb::new("secret").await;
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.endpoint).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let password = "never-printed-Pa55";
    let secret = serde_json::json!({
        "engine": "postgres", "host": "127.0.0.1", "port": 5432, "username": "postgres",
        "password": password, "dbname": db.name,
    });
    let arn = secrets
        .create_secret()
        .name("healthetl/warehouse")
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let config = secret_config(&arn);
    assert!(matches!(config.database, Database::Parts { .. }));
    assert!(!format!("{config:?}").contains(password));
    let connector = Connector::default().with_aws(sdk.clone(), moto.s3.clone());
    let mut pg = connector
        .connect(&config)
        .await
        .expect("connection from secret");
    common::init(pg.as_mut())
        .await
        .expect("init through the secret's connection");
    let client = pg.client().await.unwrap();
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        name, db.name,
        "host, port, user and dbname came from the secret"
    );

    let malformed = secrets
        .create_secret()
        .name("healthetl/broken")
        .secret_string(format!("{{\"password\": 5, \"note\": \"{password}\"}}"))
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let err = match connector.connect(&secret_config(&malformed)).await {
        Ok(_) => panic!("a malformed secret must be refused"),
        Err(e) => e,
    };
    assert!(matches!(err, WarehouseError::Secret { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&malformed) && !text.contains(password),
        "{text}"
    );

    let missing_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf";
    let err = match connector.connect(&secret_config(missing_arn)).await {
        Ok(_) => panic!("a missing secret must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(missing_arn), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_url_carries_libpq_sslmode_to_the_library_and_every_cli_command() {
    let db = TestDb::new("url_sslmode").await;
    for (mode, encrypted) in [("require", true), ("prefer", true), ("disable", false)] {
        let mut pg = Postgres::new(&format!("{}?sslmode={mode}", db.url)).expect("url");
        assert_eq!(ssl_in_use(&mut pg).await, encrypted, "sslmode={mode}");
    }
    let dir = common::TempDir::new("url_sslmode");
    dir.write("dimPayer.csv", "dimPayerPK,PayerName\n1,Medicare\n");
    let url = format!("{}?sslmode=require", db.url);
    for args in [vec!["init"], vec!["load", "dimPayer.csv"]] {
        let out = common::run_bin(Some(&url), dir.path(), args.clone()).await;
        assert_eq!(
            out.code,
            Some(0),
            "{args:?}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
    assert_eq!(db.count("health.dim_payer").await, 1);
    let out = common::run_bin(
        Some(&format!("{}?sslmode=strict", db.url)),
        dir.path(),
        ["init"],
    )
    .await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("verify-full"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_refuses_a_certificate_for_another_host_and_verify_ca_checks_the_chain_only() {
    let db = TestDb::new("url_verify").await;
    let cert: String = common::scalar(&db.url, "SHOW ssl_cert_file").await;
    // The server's certificate is its own CA here (self-signed, issued to its host name, not to 127.0.0.1).
    let with = |mode: &str| format!("{}?sslmode={mode}&sslrootcert={cert}", db.url);
    let mut pg = Postgres::new(&with("verify-full")).expect("url");
    let err = match pg.client().await {
        Ok(_) => panic!("a certificate for another host name must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect"), "{err}");
    let mut pg = Postgres::new(&with("verify-ca")).expect("url");
    assert!(
        ssl_in_use(&mut pg).await,
        "verify-ca accepts the trusted chain"
    );
    let dir = common::TempDir::new("url_verify");
    let out = common::run_bin(Some(&with("verify-full")), dir.path(), ["init"]).await;
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    let out = common::run_bin(Some(&with("verify-ca")), dir.path(), ["init"]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
}

/// The role that authenticates by password (`scripts/ensure-postgres` gives it a scram-sha-256 line in pg_hba.conf;
/// every other role is trusted here).
const PASSWORD_ROLE: &str = "healthetl_password_auth";

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_read_again_when_the_server_refuses_the_old_password() {
    let db = TestDb::initialized("secret_rotation").await;
    let admin = common::connect(&db.url).await;
    let hba: i64 = common::scalar(
        &db.url,
        &format!(
            "SELECT count(*) FROM pg_hba_file_rules WHERE '{PASSWORD_ROLE}' = ANY(user_name) \
             AND auth_method = 'scram-sha-256'"
        ),
    )
    .await;
    assert_eq!(
        hba, 1,
        "scripts/ensure-postgres configures password authentication for {PASSWORD_ROLE}"
    );
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {PASSWORD_ROLE} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE {PASSWORD_ROLE} PASSWORD 'first-Pa55'; \
             GRANT ALL ON DATABASE \"{db}\" TO {PASSWORD_ROLE}; \
             GRANT USAGE ON SCHEMA health, etl, reporting TO {PASSWORD_ROLE}; \
             GRANT ALL ON ALL TABLES IN SCHEMA health, etl TO {PASSWORD_ROLE}; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA etl TO {PASSWORD_ROLE}",
            db = db.name
        ))
        .await
        .expect("the password role");
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.endpoint).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = |password: &str| {
        serde_json::json!({
            "engine": "postgres", "host": "127.0.0.1", "port": 5432, "username": PASSWORD_ROLE,
            "password": password, "dbname": db.name,
        })
        .to_string()
    };
    let arn = secrets
        .create_secret()
        .name("healthetl/rotating")
        .secret_string(secret("first-Pa55"))
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let connector = Connector::default().with_aws(sdk.clone(), moto.s3.clone());
    let mut warehouse = connector
        .connect(&secret_config(&arn))
        .await
        .expect("connect");
    let dir = common::TempDir::new("secret_rotation");
    let options = healthetl::pipeline::LoadOptions {
        rejects_dir: dir.path().join("rejects"),
        ..Default::default()
    };
    let first = dir.write("dimPayer.csv", "dimPayerPK,PayerName\n1,Medicare\n");
    let report = healthetl::pipeline::load_object(
        warehouse.as_mut(),
        healthetl::source::Object::local(&first).unwrap(),
        &options,
        None,
    )
    .await;
    assert_eq!(
        report.status,
        healthetl::pipeline::Status::Loaded,
        "{report:?}"
    );

    // Rotation: the role's password and the secret change; the loader's session ends (as after a failover).
    admin
        .batch_execute(&format!(
            "ALTER ROLE {PASSWORD_ROLE} PASSWORD 'second-Pa55'"
        ))
        .await
        .expect("rotate");
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(secret("second-Pa55"))
        .send()
        .await
        .expect("put the new secret value");
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{PASSWORD_ROLE}'"
        ))
        .await
        .expect("end the loader's session");
    let second = dir.write("dimLocation.csv", "dimLocationPK,LocationName\n1,North\n");
    let report = healthetl::pipeline::load_object(
        warehouse.as_mut(),
        healthetl::source::Object::local(&second).unwrap(),
        &options,
        None,
    )
    .await;
    assert_eq!(
        report.status,
        healthetl::pipeline::Status::Loaded,
        "the second load reconnects with the rotated password, without a restart: {report:?}"
    );
    assert!(!format!("{report:?}").contains("Pa55"));
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{PASSWORD_ROLE}'; \
             REVOKE ALL ON DATABASE \"{db}\" FROM {PASSWORD_ROLE}; \
             REVOKE ALL ON ALL TABLES IN SCHEMA health, etl FROM {PASSWORD_ROLE}; \
             REVOKE ALL ON ALL SEQUENCES IN SCHEMA etl FROM {PASSWORD_ROLE}; \
             REVOKE USAGE ON SCHEMA health, etl, reporting FROM {PASSWORD_ROLE}",
            db = db.name
        ))
        .await
        .expect("revoke");
}
