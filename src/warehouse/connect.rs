//! The one factory: the configured warehouse from a [`Config`], for the Lambda, the worker and every command.
//! [`plan`] resolves the settings without touching the network (what to connect to, how, with which
//! credentials); [`Connector::connect`] then reads the secret or asks for IAM credentials when the plan says so,
//! and builds the dialect's loader over one TLS connection.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use aws_config::SdkConfig;
use serde_json::Value;

use super::connection::{Connection, CredentialSource, CredentialsFuture, DbCredentials};
use super::error::WarehouseError;
use super::load::Loader;
use super::postgres::Postgres;
use super::redshift::auth::{ClusterCredentials, ServerlessCredentials};
use super::redshift::{Redshift, RedshiftOnly, RedshiftSettings, RetryPolicy};
use super::tls::tls_connection;
use crate::config::{Auth, Config, ConfigError, Database, DatabaseUrl, Dialect, SslMode};

/// What [`Connector::connect`] will connect to, resolved from the configuration alone. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPlan {
    /// The warehouse dialect.
    pub dialect: Dialect,
    /// The host, when known before reading a secret.
    pub host: Option<String>,
    /// The port (the dialect's default when none is set: 5432, Redshift 5439), when known before reading a secret.
    pub port: Option<u16>,
    /// The database name, when known before reading a secret.
    pub dbname: Option<String>,
    /// The user, when known before reading a secret.
    pub user: Option<String>,
    /// How the connection is encrypted.
    pub ssl_mode: SslMode,
    /// Extra CA certificates (PEM) to trust for verify-ca/verify-full.
    pub ca_bundle: Option<PathBuf>,
    /// Where the password comes from: a secret or IAM; `None`: the URL (or none: trust).
    pub credentials: Option<Auth>,
}

impl ConnectPlan {
    /// The dialect's port when none is configured.
    pub fn default_port(dialect: Dialect) -> u16 {
        match dialect {
            Dialect::Postgres => 5432,
            Dialect::Redshift => 5439,
        }
    }
}

/// Resolve the connection settings of `config` without any network access. A URL's own `sslmode`/`sslrootcert`
/// (libpq's) win over `DB_SSLMODE`/`DB_CA_BUNDLE`.
pub fn plan(config: &Config) -> Result<ConnectPlan, WarehouseError> {
    let default_port = ConnectPlan::default_port(config.dialect);
    match &config.database {
        Database::Url(url) => {
            let url = DatabaseUrl::parse(url)?;
            let pg = driver_config(&url, config.dialect)?;
            let host = pg.get_hosts().first().map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            });
            Ok(ConnectPlan {
                dialect: config.dialect,
                host,
                port: pg.get_ports().first().copied(),
                dbname: pg.get_dbname().map(str::to_string),
                user: pg.get_user().map(str::to_string),
                ssl_mode: url.ssl_mode.unwrap_or_else(|| config.ssl_mode.clone()),
                ca_bundle: url.root_cert.or_else(|| config.ca_bundle.clone()),
                credentials: None,
            })
        }
        Database::Parts {
            host,
            port,
            dbname,
            user,
            auth,
        } => {
            match auth {
                Auth::Secret { .. } => {}
                Auth::IamCluster { .. } => {
                    iam_host_and_db(host, dbname)?;
                    if user.is_none() {
                        return Err(ConfigError::Missing {
                            name: "DB_USER",
                            because: "with REDSHIFT_AUTH=iam-cluster (the user to get credentials for)",
                        }
                        .into());
                    }
                }
                Auth::IamServerless { .. } => iam_host_and_db(host, dbname)?,
            }
            let port = match auth {
                // The secret's port fills an unset one.
                Auth::Secret { .. } => *port,
                _ => Some(port.unwrap_or(default_port)),
            };
            Ok(ConnectPlan {
                dialect: config.dialect,
                host: host.clone(),
                port,
                dbname: dbname.clone(),
                user: user.clone(),
                ssl_mode: config.ssl_mode.clone(),
                ca_bundle: config.ca_bundle.clone(),
                credentials: Some(auth.clone()),
            })
        }
    }
}

/// Builds the configured warehouse. The default connects to the real services; the AWS configuration is loaded
/// only when the configuration needs it (a secret, IAM credentials, Redshift's S3 staging).
#[derive(Default, Clone)]
pub struct Connector {
    aws: Option<(SdkConfig, aws_sdk_s3::Client)>,
    redshift_server: Option<Arc<dyn RedshiftOnly>>,
}

impl Connector {
    /// Use these AWS clients (the handler's, built once per cold start) instead of loading them.
    pub fn with_aws(mut self, sdk: SdkConfig, s3: aws_sdk_s3::Client) -> Self {
        self.aws = Some((sdk, s3));
        self
    }

    /// Run Redshift's own statements through `server` (the integration tests' PostgreSQL stand-in).
    pub fn with_redshift_server(mut self, server: Arc<dyn RedshiftOnly>) -> Self {
        self.redshift_server = Some(server);
        self
    }

    async fn aws(&self) -> (SdkConfig, aws_sdk_s3::Client) {
        match &self.aws {
            Some(aws) => aws.clone(),
            None => {
                let sdk = crate::aws::sdk_config().await;
                let s3 = crate::aws::s3_client_from(&sdk);
                (sdk, s3)
            }
        }
    }

    /// The warehouse of the configured dialect; connects lazily (the first statement connects), except that a
    /// secret is read now.
    pub async fn connect(&self, config: &Config) -> Result<Box<dyn Loader>, WarehouseError> {
        let plan = plan(config)?;
        let needs_aws = plan.credentials.is_some() || config.dialect == Dialect::Redshift;
        let aws = if needs_aws {
            Some(self.aws().await)
        } else {
            None
        };
        let connection = connection(config, &plan, aws.as_ref().map(|(sdk, _)| sdk)).await?;
        Ok(match config.dialect {
            Dialect::Postgres => Box::new(
                Postgres::with_connection(connection)
                    .with_copy_format(config.pg_copy_format)
                    .with_first_load(config.pg_first_load),
            ),
            Dialect::Redshift => {
                let (r, s3) = match (&config.redshift, aws) {
                    (Some(r), Some((_, s3))) => (r, s3),
                    _ => {
                        return Err(ConfigError::Missing {
                            name: "REDSHIFT_COPY_ROLE_ARN",
                            because: "for Redshift loads",
                        }
                        .into());
                    }
                };
                let settings = RedshiftSettings {
                    copy_role_arn: r.copy_role_arn.clone(),
                    staging_bucket: r.staging_bucket.clone(),
                    staging_prefix: config.staging_prefix.clone(),
                    parts: r.parts,
                    retry: RetryPolicy::default(),
                    part_compression: r.part_compression,
                };
                let redshift = Redshift::new(connection, s3, settings);
                Box::new(match &self.redshift_server {
                    Some(server) => redshift.with_server(server.clone()),
                    None => redshift,
                })
            }
        })
    }
}

/// [`Connector::connect`] with the real services.
pub async fn connect(config: &Config) -> Result<Box<dyn Loader>, WarehouseError> {
    Connector::default().connect(config).await
}

/// The connection a plan describes: the URL as it is, or the settings plus the secret's password, or the settings
/// plus IAM temporary credentials (renewed by the connection before they expire).
pub async fn connection(
    config: &Config,
    plan: &ConnectPlan,
    sdk: Option<&SdkConfig>,
) -> Result<Connection, WarehouseError> {
    let connect = |pg| tls_connection(pg, &plan.ssl_mode, plan.ca_bundle.as_deref());
    if let Database::Url(url) = &config.database {
        return connect(driver_config(&DatabaseUrl::parse(url)?, plan.dialect)?);
    }
    let sdk = sdk.ok_or_else(|| WarehouseError::Config("no AWS configuration".into()))?;
    let mut pg = tokio_postgres::Config::new();
    let default_port = ConnectPlan::default_port(plan.dialect);
    match &plan.credentials {
        None => Err(WarehouseError::Config(
            "settings without a URL need a secret or IAM".into(),
        )),
        Some(Auth::IamCluster { cluster_id }) => {
            let (host, db, user) = (
                plan.host.as_deref().unwrap_or_default(),
                plan.dbname.as_deref().unwrap_or_default(),
                plan.user.clone().unwrap_or_default(),
            );
            pg.host(host)
                .port(plan.port.unwrap_or(default_port))
                .dbname(db);
            let source = ClusterCredentials {
                client: aws_sdk_redshift::Client::new(sdk),
                cluster_id: cluster_id.clone(),
                db_user: user,
                db_name: db.to_string(),
            };
            Ok(connect(pg)?.with_credentials(Arc::new(source)))
        }
        Some(Auth::IamServerless { workgroup }) => {
            let (host, db) = (
                plan.host.as_deref().unwrap_or_default(),
                plan.dbname.as_deref().unwrap_or_default(),
            );
            pg.host(host)
                .port(plan.port.unwrap_or(default_port))
                .dbname(db);
            let source = ServerlessCredentials {
                client: aws_sdk_redshiftserverless::Client::new(sdk),
                workgroup: workgroup.clone(),
                db_name: db.to_string(),
            };
            Ok(connect(pg)?.with_credentials(Arc::new(source)))
        }
        Some(Auth::Secret { arn }) => {
            let secret = read_secret(sdk, arn).await?;
            let host = plan
                .host
                .clone()
                .or(secret.host)
                .ok_or_else(|| missing(arn, "host"))?;
            let user = plan
                .user
                .clone()
                .or(secret.username)
                .ok_or_else(|| missing(arn, "username"))?;
            let port = plan
                .port
                .or_else(|| secret.port.as_ref().and_then(port_of))
                .unwrap_or(default_port);
            pg.host(&host)
                .port(port)
                .user(&user)
                .password(secret.password);
            if let Some(db) = plan.dbname.clone().or(secret.dbname) {
                pg.dbname(&db);
            }
            // Secrets rotate: when the server refuses the password, the secret is read again (once per refusal).
            let source = RotatingSecret {
                sdk: sdk.clone(),
                arn: arn.clone(),
                user: plan.user.clone(),
            };
            Ok(connect(pg)?.with_rotating_credentials(Arc::new(source)))
        }
    }
}

/// The driver's settings for a URL, on the dialect's port when the URL names none (the driver's own default is
/// PostgreSQL's 5432, Redshift listens on 5439).
fn driver_config(
    url: &DatabaseUrl,
    dialect: Dialect,
) -> Result<tokio_postgres::Config, WarehouseError> {
    let port = ConnectPlan::default_port(dialect);
    let text = if names_port(&url.rest) {
        url.rest.clone()
    } else {
        with_port(&url.rest, port)
    };
    tokio_postgres::Config::from_str(&text).map_err(|e| WarehouseError::Config(e.to_string()))
}

/// A URL or key=value string without a port, given `port` (after every host of a URL's authority; the driver
/// would otherwise take 5432).
fn with_port(url: &str, port: u16) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url} port={port}");
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    if hosts.is_empty() {
        return url.to_string();
    }
    let hosts: Vec<String> = hosts.split(',').map(|h| format!("{h}:{port}")).collect();
    format!("{scheme}://{user}{}{tail}", hosts.join(","))
}

/// Whether a URL (`postgres://user@host:port/db`) or key=value string (`port=…`) names a port.
fn names_port(url: &str) -> bool {
    match url.split_once("://") {
        Some((_, rest)) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            let hosts = authority.rsplit('@').next().unwrap_or_default();
            // An IPv6 literal's colons are inside brackets.
            let outside_brackets = hosts.rsplit(']').next().unwrap_or_default();
            outside_brackets.contains(':') || url.contains("port=")
        }
        None => url
            .split_whitespace()
            .any(|token| token.trim_start().starts_with("port=")),
    }
}

/// The user and password of a Secrets Manager secret, read again when the server refuses the ones in use.
struct RotatingSecret {
    sdk: SdkConfig,
    arn: String,
    /// `DB_USER`, which wins over the secret's `username`.
    user: Option<String>,
}

impl CredentialSource for RotatingSecret {
    fn fetch(&self) -> CredentialsFuture {
        let (sdk, arn, user) = (self.sdk.clone(), self.arn.clone(), self.user.clone());
        Box::pin(async move {
            let secret = read_secret(&sdk, &arn).await.map_err(|e| e.to_string())?;
            let user = user
                .or(secret.username)
                .ok_or_else(|| missing(&arn, "username").to_string())?;
            Ok(DbCredentials {
                user,
                password: secret.password,
                expires_at: super::connection::until_refused(),
            })
        })
    }

    fn describe(&self) -> String {
        format!("the secret {}", self.arn)
    }
}

/// The standard RDS/Redshift secret JSON (only the fields used).
#[derive(serde::Deserialize)]
struct DbSecret {
    username: Option<String>,
    password: String,
    host: Option<String>,
    port: Option<Value>,
    dbname: Option<String>,
}

fn iam_host_and_db(host: &Option<String>, dbname: &Option<String>) -> Result<(), ConfigError> {
    let because = "with IAM authentication (no secret to read it from)";
    if host.is_none() {
        return Err(ConfigError::Missing {
            name: "DB_HOST",
            because,
        });
    }
    if dbname.is_none() {
        return Err(ConfigError::Missing {
            name: "DB_NAME",
            because,
        });
    }
    Ok(())
}

fn missing(arn: &str, field: &str) -> WarehouseError {
    WarehouseError::Secret {
        arn: arn.to_string(),
        reason: format!("no {field} in the environment or the secret"),
    }
}

/// A secret's port, as a number or a string.
pub fn port_of(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn read_secret(sdk: &SdkConfig, arn: &str) -> Result<DbSecret, WarehouseError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| WarehouseError::Secret {
            arn: arn.to_string(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    let text = out.secret_string().ok_or_else(|| WarehouseError::Secret {
        arn: arn.to_string(),
        reason: "the secret has no string value".into(),
    })?;
    // The parser's message could quote part of the secret: report only that the shape is wrong.
    serde_json::from_str(text).map_err(|_| WarehouseError::Secret {
        arn: arn.to_string(),
        reason:
            "not the standard JSON {\"username\", \"password\", \"host\", \"port\", \"dbname\"}"
                .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .expect("config")
    }

    #[test]
    fn a_database_url_gives_its_host_port_database_user_and_tls() {
        let p = plan(&config(&[(
            "DATABASE_URL",
            "postgres://loader:pw@db.example.com:6543/billing?sslmode=verify-full&sslrootcert=/ca.pem",
        )]))
        .unwrap();
        assert_eq!(p.dialect, Dialect::Postgres);
        assert_eq!(p.host.as_deref(), Some("db.example.com"));
        assert_eq!(p.port, Some(6543));
        assert_eq!(p.dbname.as_deref(), Some("billing"));
        assert_eq!(p.user.as_deref(), Some("loader"));
        assert_eq!(p.ssl_mode, SslMode::VerifyFull);
        assert_eq!(p.ca_bundle, Some(PathBuf::from("/ca.pem")));
        assert_eq!(p.credentials, None);
        assert!(!format!("{p:?}").contains("pw"), "{p:?}");
    }

    #[test]
    fn a_redshift_url_defaults_to_port_5439_and_db_sslmode_applies() {
        let p = plan(&config(&[
            ("WAREHOUSE_DIALECT", "redshift"),
            ("REDSHIFT_COPY_ROLE_ARN", "arn:aws:iam::1:role/copy"),
            ("DATABASE_URL", "postgres://u@cluster.example.com/dev"),
            ("DB_SSLMODE", "require"),
        ]))
        .unwrap();
        assert_eq!(p.dialect, Dialect::Redshift);
        assert_eq!(p.port, Some(5439));
        assert_eq!(p.ssl_mode, SslMode::Require);
    }

    #[test]
    fn the_pg_variables_are_read_as_libpq_reads_them() {
        let p = plan(&config(&[
            ("PGHOST", "pg.internal"),
            ("PGPORT", "5433"),
            ("PGDATABASE", "warehouse"),
            ("PGUSER", "etl"),
            ("PGPASSWORD", "s3cret 'quoted'"),
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", "/etc/rds/global-bundle.pem"),
        ]))
        .unwrap();
        assert_eq!(p.host.as_deref(), Some("pg.internal"));
        assert_eq!(p.port, Some(5433));
        assert_eq!(p.dbname.as_deref(), Some("warehouse"));
        assert_eq!(p.user.as_deref(), Some("etl"));
        assert_eq!(p.ssl_mode, SslMode::VerifyCa);
        assert_eq!(
            p.ca_bundle,
            Some(PathBuf::from("/etc/rds/global-bundle.pem"))
        );
        let only_host = plan(&config(&[("PGHOST", "localhost")])).unwrap();
        assert_eq!(only_host.ssl_mode, SslMode::Prefer, "libpq's default");
        assert_eq!(only_host.port, Some(5432));
    }

    #[test]
    fn a_secret_leaves_unset_settings_to_the_secret_and_verifies_tls_by_default() {
        let p = plan(&config(&[
            (
                "DB_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:wh",
            ),
            ("DB_CA_BUNDLE", "/opt/rds-ca.pem"),
        ]))
        .unwrap();
        assert_eq!(
            p.credentials,
            Some(Auth::Secret {
                arn: "arn:aws:secretsmanager:us-east-1:1:secret:wh".into()
            })
        );
        assert_eq!((p.host.clone(), p.port, p.user.clone()), (None, None, None));
        assert_eq!(p.ssl_mode, SslMode::VerifyFull);
        assert_eq!(p.ca_bundle, Some(PathBuf::from("/opt/rds-ca.pem")));
    }

    #[test]
    fn iam_credentials_name_their_cluster_or_workgroup() {
        let cluster = plan(&config(&[
            ("WAREHOUSE_DIALECT", "redshift"),
            ("REDSHIFT_COPY_ROLE_ARN", "arn:aws:iam::1:role/copy"),
            ("REDSHIFT_AUTH", "iam-cluster"),
            ("REDSHIFT_CLUSTER_ID", "analytics"),
            ("DB_HOST", "analytics.abc.us-east-1.redshift.amazonaws.com"),
            ("DB_NAME", "dev"),
            ("DB_USER", "loader"),
        ]))
        .unwrap();
        assert_eq!(
            cluster.credentials,
            Some(Auth::IamCluster {
                cluster_id: "analytics".into()
            })
        );
        assert_eq!(cluster.port, Some(5439));
        let serverless = plan(&config(&[
            ("WAREHOUSE_DIALECT", "redshift"),
            ("REDSHIFT_COPY_ROLE_ARN", "arn:aws:iam::1:role/copy"),
            ("REDSHIFT_AUTH", "iam-serverless"),
            ("REDSHIFT_WORKGROUP", "wg"),
            (
                "DB_HOST",
                "wg.1.us-east-1.redshift-serverless.amazonaws.com",
            ),
            ("DB_NAME", "dev"),
        ]))
        .unwrap();
        assert_eq!(
            serverless.credentials,
            Some(Auth::IamServerless {
                workgroup: "wg".into()
            })
        );
    }

    #[test]
    fn a_missing_port_is_added_after_every_host() {
        assert_eq!(
            with_port("postgres://u:p@h/db?x=1", 5439),
            "postgres://u:p@h:5439/db?x=1"
        );
        assert_eq!(
            with_port("postgres://a,b", 5439),
            "postgres://a:5439,b:5439"
        );
        assert_eq!(with_port("postgres:///db", 5439), "postgres:///db");
        assert_eq!(
            with_port("host=h dbname=d", 5439),
            "host=h dbname=d port=5439"
        );
    }

    #[test]
    fn a_port_is_named_in_the_authority_or_as_a_key() {
        assert!(names_port("postgres://u:p@h:5439/db"));
        assert!(names_port("postgres://u@[::1]:6000/db"));
        assert!(!names_port("postgres://u:p@h/db"));
        assert!(!names_port("postgres://u@[::1]/db"));
        assert!(names_port("postgres://u@h/db?port=7"));
        assert!(names_port("host=h port=5439 dbname=dev"));
        assert!(!names_port("host=h dbname=dev"));
    }

    #[test]
    fn secret_ports_may_be_numbers_or_strings() {
        assert_eq!(port_of(&serde_json::json!(5439)), Some(5439));
        assert_eq!(port_of(&serde_json::json!("5432")), Some(5432));
        assert_eq!(port_of(&serde_json::json!(true)), None);
        assert_eq!(port_of(&serde_json::json!(70000)), None);
    }
}
