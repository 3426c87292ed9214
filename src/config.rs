//! Configuration of the Lambda and the worker, read once (per cold start) from the environment into a typed
//! struct. Secrets are never read from here: only the ARN of the Secrets Manager secret that holds the password, or
//! the Redshift cluster or workgroup that IAM credentials are asked for.

use std::path::PathBuf;

use crate::source::{Limits, StreamLimits};

/// How the warehouse connection is encrypted: libpq's `sslmode` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (local development only).
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked (libpq's default).
    Prefer,
    /// TLS without certificate verification.
    Require,
    /// TLS with the certificate chain verified (public roots plus an optional CA bundle), not the host name.
    VerifyCa,
    /// TLS with the certificate chain and host name verified (public roots plus an optional CA bundle).
    VerifyFull,
}

impl SslMode {
    /// The mode for a libpq `sslmode` value.
    pub fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A database URL (`postgres://…?…`) or key=value string with libpq's TLS settings taken out, since the driver
/// does not read them all (it knows no `verify-ca`/`verify-full` and no `sslrootcert`): what remains goes to the
/// driver, the TLS settings to [`crate::warehouse::tls::tls_connector`].
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The URL without `sslmode` and `sslrootcert`.
    pub rest: String,
    /// Its `sslmode`, if it names one.
    pub ssl_mode: Option<SslMode>,
    /// Its `sslrootcert`: a PEM bundle of the CAs to trust (e.g. Amazon's RDS/Redshift bundle).
    pub root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("rest", &"<redacted>")
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

impl DatabaseUrl {
    /// Split `sslmode` and `sslrootcert` out of a URL's query or a key=value string. An unknown `sslmode` is an
    /// error naming the valid ones (never the URL, which may hold a password).
    pub fn parse(url: &str) -> Result<DatabaseUrl, ConfigError> {
        let mut ssl_mode = None;
        let mut root_cert = None;
        let mut take = |key: &str, value: &str| -> Result<bool, ConfigError> {
            match key {
                "sslmode" => {
                    ssl_mode = Some(SslMode::parse(value).ok_or_else(|| ConfigError::Invalid {
                        name: "sslmode",
                        value: value.to_string(),
                        expected: "one of disable, prefer, require, verify-ca, verify-full",
                    })?);
                    Ok(true)
                }
                "sslrootcert" => {
                    root_cert = Some(PathBuf::from(percent_decoded(value)));
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            match url.split_once('?') {
                None => url.to_string(),
                Some((base, query)) => {
                    let mut kept = Vec::new();
                    for pair in query.split('&').filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        if !take(k, &percent_decoded(v))? {
                            kept.push(pair);
                        }
                    }
                    if kept.is_empty() {
                        base.to_string()
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
            }
        } else {
            let mut kept = Vec::new();
            for token in key_value_tokens(url) {
                let (k, v) = token.split_once('=').unwrap_or((token, ""));
                let v = v.trim();
                let v = v
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or(v);
                if !take(k.trim(), v)? {
                    kept.push(token);
                }
            }
            kept.join(" ")
        };
        Ok(DatabaseUrl {
            rest,
            ssl_mode,
            root_cert,
        })
    }
}

/// The `key=value` tokens of a libpq connection string: separated by spaces, except inside single quotes.
fn key_value_tokens(s: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '\'' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(st) = start.take() {
                    tokens.push(&s[st..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(st) = start {
        tokens.push(&s[st..]);
    }
    tokens
}

/// `%XX` escapes of a URL component decoded (invalid ones kept as they are).
fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Which warehouse is loaded (`WAREHOUSE_DIALECT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (`postgres`, the default).
    Postgres,
    /// Amazon Redshift (`redshift`): rows are staged in S3 and loaded with `COPY`.
    Redshift,
}

/// How the loader authenticates when the connection is given in parts (`REDSHIFT_AUTH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// The password (and any settings the environment leaves out) from a Secrets Manager secret (`secret`).
    Secret {
        /// The ARN of the secret (`DB_SECRET_ARN`).
        arn: String,
    },
    /// Temporary passwords from `GetClusterCredentials` for `DB_USER` (`iam-cluster`).
    IamCluster {
        /// The provisioned cluster's identifier (`REDSHIFT_CLUSTER_ID`).
        cluster_id: String,
    },
    /// Temporary passwords from redshift-serverless `GetCredentials`; the user follows from the IAM role
    /// (`iam-serverless`).
    IamServerless {
        /// The Redshift Serverless workgroup's name (`REDSHIFT_WORKGROUP`).
        workgroup: String,
    },
}

/// Where the warehouse connection comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// `DATABASE_URL` (local and tests).
    Url(String),
    /// Host, port, database and user from the environment; the password from a Secrets Manager secret (the standard
    /// RDS/Redshift secret JSON, whose host/port/dbname/username fill what the environment leaves out) or from IAM.
    Parts {
        /// The host (`DB_HOST`); `None`: the secret's.
        host: Option<String>,
        /// The port (`DB_PORT`); `None`: the secret's.
        port: Option<u16>,
        /// The database name (`DB_NAME`); `None`: the secret's.
        dbname: Option<String>,
        /// The database user (`DB_USER`); `None`: the secret's (or, with `iam-serverless`, the IAM role's).
        user: Option<String>,
        /// How the password is obtained.
        auth: Auth,
    },
}

/// What only Redshift loads need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedshiftConfig {
    /// The role Redshift assumes to read staged parts (`REDSHIFT_COPY_ROLE_ARN`).
    pub copy_role_arn: String,
    /// Parts per load (`REDSHIFT_PARTS`); `None`: one per slice.
    pub parts: Option<usize>,
    /// Bucket for staged parts (`STAGING_BUCKET`); `None`: the source object's bucket.
    pub staging_bucket: Option<String>,
    /// How staged parts are compressed (`REDSHIFT_PART_COMPRESSION`: `zstd`, the default, or `gzip`).
    pub part_compression: PartCompression,
}

/// How Redshift's staged parts are compressed; COPY reads both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartCompression {
    /// Zstandard level 1 (`part-NNNN.csv.zst`, COPY `ZSTD`): less CPU than gzip for smaller parts.
    #[default]
    Zstd,
    /// gzip, fastest level (`part-NNNN.csv.gz`, COPY `GZIP`).
    Gzip,
}

impl Config {
    /// The key prefixes of the loader's own outputs (quarantine, staging): never loaded, never reconciled.
    pub fn own_prefixes(&self) -> [&str; 2] {
        [
            self.quarantine_prefix.as_str(),
            self.staging_prefix.as_str(),
        ]
    }
}

impl PartCompression {
    /// The part files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            PartCompression::Zstd => "zst",
            PartCompression::Gzip => "gz",
        }
    }

    /// The COPY option that reads such parts.
    pub fn copy_option(self) -> &'static str {
        match self {
            PartCompression::Zstd => "ZSTD",
            PartCompression::Gzip => "GZIP",
        }
    }

    /// The parts' content type in S3.
    pub fn content_type(self) -> &'static str {
        match self {
            PartCompression::Zstd => "application/zstd",
            PartCompression::Gzip => "application/gzip",
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A URL may embed a password: never print it.
            Database::Url(_) => f.write_str("Url(<redacted>)"),
            Database::Parts {
                host,
                port,
                dbname,
                user,
                auth,
            } => f
                .debug_struct("Parts")
                .field("host", host)
                .field("port", port)
                .field("dbname", dbname)
                .field("user", user)
                .field("auth", auth)
                .finish(),
        }
    }
}

/// Everything the event handler needs, read once.
#[derive(Debug, Clone)]
pub struct Config {
    /// The warehouse loaded (`WAREHOUSE_DIALECT`, default `postgres`).
    pub dialect: Dialect,
    /// Where the warehouse connection comes from.
    pub database: Database,
    /// How the connection is encrypted (`DB_SSLMODE`; an `sslmode` in the URL takes precedence). Defaults to
    /// `disable` for a URL and `verify-full` when the connection is given in parts.
    pub ssl_mode: SslMode,
    /// Extra CA certificates (PEM) for verify-full, e.g. the RDS/Redshift bundle.
    pub ca_bundle: Option<PathBuf>,
    /// The largest share of rejected rows an object may have and still load (`REJECT_THRESHOLD`, 0 to 1,
    /// default 0.1).
    pub reject_threshold: f64,
    /// Where refused objects' reports and rejected rows go in the bucket.
    pub quarantine_prefix: String,
    /// The bucket for them (`QUARANTINE_BUCKET`); `None`: the object's own bucket. Rejected rows are patient data:
    /// a bucket of their own can have tighter access and retention.
    pub quarantine_bucket: Option<String>,
    /// The landing queue (`LANDING_QUEUE_URL`): where a scheduled reconcile sends the notifications S3 never sent.
    pub landing_queue_url: Option<String>,
    /// Where staged parts go (Redshift loads).
    pub staging_prefix: String,
    /// Set when the dialect is Redshift.
    pub redshift: Option<RedshiftConfig>,
    /// The longest record and field (`MAX_RECORD_BYTES`, `MAX_FIELD_BYTES`).
    pub read_limits: Limits,
    /// The largest object and gzip ratio (`MAX_OBJECT_BYTES`, `MAX_GZIP_RATIO`). In Lambda the object limit
    /// defaults to what fits the function's timeout (see [`lambda_object_limit`]).
    pub stream_limits: StreamLimits,
    /// No object is started with less than this left before the invocation's deadline
    /// (`DEADLINE_MARGIN_SECONDS`, default 30): it is reported failed and delivered again.
    pub deadline_margin: std::time::Duration,
    /// How PostgreSQL loads send rows (`PG_COPY_FORMAT`: `binary`, the default, or `text` for a server or proxy
    /// that does not take binary COPY, and for comparison).
    pub pg_copy_format: PgCopyFormat,
    /// How a PostgreSQL load into an empty table treats readers and the key (`PG_FIRST_LOAD`: `shared`, the
    /// default, or `exclusive`).
    pub pg_first_load: PgFirstLoad,
}

/// How a PostgreSQL load into an empty table (its first) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgFirstLoad {
    /// Like every load: readers are never blocked (they see the empty table until the commit); the primary-key
    /// index is maintained row by row.
    #[default]
    Shared,
    /// For a backfill: the load takes the empty table exclusively (its readers wait for the commit), drops the
    /// primary key, writes the rows frozen (`COPY … FREEZE`) and builds the key once at the end, in the same
    /// transaction. Only when the loading role owns the table; otherwise as `Shared`.
    Exclusive,
}

/// The COPY format of PostgreSQL loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgCopyFormat {
    /// Binary COPY: typed values, no escaping or number formatting (less CPU on both sides).
    #[default]
    Binary,
    /// COPY text.
    Text,
}

/// Bytes of CSV one vCPU parses, casts and sends per second, measured on the development machine (1M fact rows,
/// 82 MB, 3.0 s of client CPU: 27 MB/s) and rounded down for the slower Redshift path (gzip parts).
pub const BYTES_PER_CPU_SECOND: u64 = 20_000_000;
/// Lambda gives a function one full vCPU at this much memory (MB), and a proportional share below it.
pub const LAMBDA_MB_PER_VCPU: u64 = 1769;

/// The largest object that fits a Lambda function's timeout: 70% of the timeout (the rest for connecting, the
/// merge and the commit) at [`BYTES_PER_CPU_SECOND`] times the function's share of a vCPU. 256 MB and 120 s:
/// 0.7 × 120 s × 256/1769 vCPU × 20 MB/s ≈ 243 MB.
pub fn lambda_object_limit(memory_mb: u64, timeout_seconds: u64) -> u64 {
    let vcpu_millis = (memory_mb * 1000 / LAMBDA_MB_PER_VCPU).clamp(1, 6000);
    timeout_seconds * 7 / 10 * BYTES_PER_CPU_SECOND / 1000 * vcpu_millis
}

/// The setting `--database-url` fills (also read from the environment): it wins over every other way of naming
/// the warehouse, where `DATABASE_URL` comes last.
pub const DATABASE_URL_SETTING: &str = "HEALTHETL_DATABASE_URL";

/// A configuration value that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No way to reach the warehouse is configured: neither `DATABASE_URL`, the libpq variables, a secret nor IAM
    /// authentication.
    #[error(
        "no database configured: pass --database-url (or set HEALTHETL_DATABASE_URL), or set DB_SECRET_ARN (with \
         DB_HOST, DB_PORT, DB_NAME, DB_USER) or REDSHIFT_AUTH=iam-cluster|iam-serverless, or the PG* variables \
         (PGHOST, PGDATABASE, PGUSER, …), or DATABASE_URL"
    )]
    NoDatabase,
    /// A variable that the other settings make necessary is not set.
    #[error("{name} is required {because}")]
    Missing {
        /// The variable (or setting) that is missing.
        name: &'static str,
        /// Which other setting requires it, e.g. `for Redshift loads`.
        because: &'static str,
    },
    /// A variable is set to a value that cannot be used.
    #[error("{name} is '{value}': {expected}")]
    Invalid {
        /// The variable (or setting) with the bad value.
        name: &'static str,
        /// The value given.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Read from any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if crate::schema::namespace_error().is_some() {
            return Err(ConfigError::Invalid {
                name: crate::schema::SCHEMA_PREFIX_VAR,
                value: std::env::var(crate::schema::SCHEMA_PREFIX_VAR).unwrap_or_default(),
                expected: "at most 40 lower-case letters, digits and underscores, not starting with a digit",
            });
        }
        let dialect = choice(
            &get,
            "WAREHOUSE_DIALECT",
            &[
                ("postgres", Dialect::Postgres),
                ("redshift", Dialect::Redshift),
            ],
            "postgres or redshift",
        )?;
        let required = |name: &'static str, because: &'static str| {
            get(name).ok_or(ConfigError::Missing { name, because })
        };
        let auth = match get("REDSHIFT_AUTH").as_deref() {
            None | Some("secret") => get("DB_SECRET_ARN").map(|arn| Auth::Secret { arn }),
            Some("iam-cluster") => Some(Auth::IamCluster {
                cluster_id: required("REDSHIFT_CLUSTER_ID", "with REDSHIFT_AUTH=iam-cluster")?,
            }),
            Some("iam-serverless") => Some(Auth::IamServerless {
                workgroup: required("REDSHIFT_WORKGROUP", "with REDSHIFT_AUTH=iam-serverless")?,
            }),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "REDSHIFT_AUTH",
                    value: other.to_string(),
                    expected: "one of secret, iam-cluster, iam-serverless",
                });
            }
        };
        if matches!(
            auth,
            Some(Auth::IamCluster { .. } | Auth::IamServerless { .. })
        ) {
            if dialect != Dialect::Redshift {
                return Err(ConfigError::Missing {
                    name: "WAREHOUSE_DIALECT=redshift",
                    because: "for IAM authentication (REDSHIFT_AUTH)",
                });
            }
            required(
                "DB_HOST",
                "with IAM authentication (no secret to read it from)",
            )?;
            required(
                "DB_NAME",
                "with IAM authentication (no secret to read it from)",
            )?;
        }
        if matches!(auth, Some(Auth::IamCluster { .. })) {
            required(
                "DB_USER",
                "with REDSHIFT_AUTH=iam-cluster (the user to get credentials for)",
            )?;
        }
        // One precedence for every entry point: the command line's --database-url (HEALTHETL_DATABASE_URL), the
        // Lambda's DB_* settings with a secret or IAM, libpq's PG* variables, then DATABASE_URL.
        let database = match (get(DATABASE_URL_SETTING), auth) {
            (Some(url), _) => Database::Url(url),
            (None, Some(auth)) => Database::Parts {
                host: get("DB_HOST"),
                port: get("DB_PORT")
                    .map(|p| {
                        p.parse().map_err(|_| ConfigError::Invalid {
                            name: "DB_PORT",
                            value: p.clone(),
                            expected: "a port number",
                        })
                    })
                    .transpose()?,
                dbname: get("DB_NAME"),
                user: get("DB_USER"),
                auth,
            },
            (None, None) => match libpq_environment(&get).or_else(|| get("DATABASE_URL")) {
                Some(conninfo) => Database::Url(conninfo),
                None => return Err(ConfigError::NoDatabase),
            },
        };
        let redshift = match dialect {
            Dialect::Postgres => None,
            Dialect::Redshift => {
                let copy_role_arn = required("REDSHIFT_COPY_ROLE_ARN", "for Redshift loads")?;
                if !copy_role_arn.starts_with("arn:")
                    || !copy_role_arn.contains(":role/")
                    || copy_role_arn.contains('\'')
                {
                    return Err(ConfigError::Invalid {
                        name: "REDSHIFT_COPY_ROLE_ARN",
                        value: copy_role_arn,
                        expected: "an IAM role ARN, arn:aws:iam::<account>:role/<name>",
                    });
                }
                let parts = match get("REDSHIFT_PARTS") {
                    None => None,
                    Some(v) => match v.parse::<usize>() {
                        Ok(n) if (1..=128).contains(&n) => Some(n),
                        _ => {
                            return Err(ConfigError::Invalid {
                                name: "REDSHIFT_PARTS",
                                value: v,
                                expected: "a number of parts from 1 to 128",
                            });
                        }
                    },
                };
                let part_compression = choice(
                    &get,
                    "REDSHIFT_PART_COMPRESSION",
                    &[
                        ("zstd", PartCompression::Zstd),
                        ("gzip", PartCompression::Gzip),
                    ],
                    "zstd or gzip",
                )?;
                Some(RedshiftConfig {
                    copy_role_arn,
                    parts,
                    staging_bucket: get("STAGING_BUCKET"),
                    part_compression,
                })
            }
        };
        let ssl_mode = match get("DB_SSLMODE").as_deref() {
            None => match database {
                Database::Url(_) => SslMode::Disable,
                Database::Parts { .. } => SslMode::VerifyFull,
            },
            Some(value) => SslMode::parse(value).ok_or_else(|| ConfigError::Invalid {
                name: "DB_SSLMODE",
                value: value.to_string(),
                expected: "one of disable, prefer, require, verify-ca, verify-full",
            })?,
        };
        let reject_threshold = match get("REJECT_THRESHOLD") {
            None => 0.10,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "REJECT_THRESHOLD",
                        value: v,
                        expected: "a share between 0 and 1, e.g. 0.1",
                    });
                }
            },
        };
        let number =
            |name: &'static str, expected: &'static str| -> Result<Option<u64>, ConfigError> {
                get(name)
                    .map(|v| {
                        v.parse::<u64>().map_err(|_| ConfigError::Invalid {
                            name,
                            value: v.clone(),
                            expected,
                        })
                    })
                    .transpose()
            };
        let bytes = "a number of bytes";
        let defaults = Limits::default();
        let read_limits = Limits {
            max_record_bytes: number("MAX_RECORD_BYTES", bytes)?
                .map_or(defaults.max_record_bytes, |v| v as usize),
            max_field_bytes: number("MAX_FIELD_BYTES", bytes)?
                .map_or(defaults.max_field_bytes, |v| v as usize),
        };
        let lambda_limit = match (
            number("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "megabytes")?,
            number("FUNCTION_TIMEOUT_SECONDS", "seconds")?,
        ) {
            (Some(memory), Some(timeout)) => Some(lambda_object_limit(memory, timeout)),
            _ => None,
        };
        let stream_limits = StreamLimits {
            max_bytes: number("MAX_OBJECT_BYTES", bytes)?
                .or(lambda_limit)
                .unwrap_or(StreamLimits::default().max_bytes),
            max_gzip_ratio: number("MAX_GZIP_RATIO", "a whole number (0: no limit)")?
                .unwrap_or(StreamLimits::default().max_gzip_ratio),
        };
        let deadline_margin = std::time::Duration::from_secs(
            number("DEADLINE_MARGIN_SECONDS", "seconds")?.unwrap_or(30),
        );
        let pg_copy_format = choice(
            &get,
            "PG_COPY_FORMAT",
            &[
                ("binary", PgCopyFormat::Binary),
                ("text", PgCopyFormat::Text),
            ],
            "binary or text",
        )?;
        let pg_first_load = choice(
            &get,
            "PG_FIRST_LOAD",
            &[
                ("shared", PgFirstLoad::Shared),
                ("exclusive", PgFirstLoad::Exclusive),
            ],
            "shared or exclusive",
        )?;
        Ok(Config {
            pg_copy_format,
            pg_first_load,
            deadline_margin,
            read_limits,
            stream_limits,
            dialect,
            database,
            ssl_mode,
            ca_bundle: get("DB_CA_BUNDLE").map(PathBuf::from),
            reject_threshold,
            quarantine_prefix: prefix(get("QUARANTINE_PREFIX"), "quarantine/"),
            quarantine_bucket: get("QUARANTINE_BUCKET"),
            landing_queue_url: get("LANDING_QUEUE_URL"),
            staging_prefix: prefix(get("STAGING_PREFIX"), "staging/"),
            redshift,
        })
    }
}

/// A setting with a few allowed values: `options[0]` when unset, the matching one, or an error naming the value.
fn choice<T: Copy>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    options: &[(&str, T)],
    expected: &'static str,
) -> Result<T, ConfigError> {
    let Some(value) = get(name) else {
        return Ok(options[0].1);
    };
    options
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, t)| *t)
        .ok_or(ConfigError::Invalid {
            name,
            value,
            expected,
        })
}

/// The standard libpq variables (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`,
/// `PGSSLROOTCERT`) as a key=value connection string, when any of host, port, database or user is set. The TLS
/// mode defaults to libpq's (`prefer`).
pub fn libpq_environment(get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    const KEYS: [(&str, &str); 7] = [
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGDATABASE", "dbname"),
        ("PGUSER", "user"),
        ("PGPASSWORD", "password"),
        ("PGSSLMODE", "sslmode"),
        ("PGSSLROOTCERT", "sslrootcert"),
    ];
    if !KEYS[..4].iter().any(|(var, _)| get(var).is_some()) {
        return None;
    }
    let mut parts: Vec<String> = KEYS
        .iter()
        .filter_map(|(var, key)| {
            let value = get(var)?;
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            Some(format!("{key}='{quoted}'"))
        })
        .collect();
    if get("PGSSLMODE").is_none() {
        parts.push("sslmode=prefer".into());
    }
    Some(parts.join(" "))
}

fn prefix(value: Option<String>, default: &str) -> String {
    let mut p = value.unwrap_or_else(|| default.to_string());
    if !p.is_empty() && !p.ends_with('/') {
        p.push('/');
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn url_escapes_decode_to_the_end_of_the_value_and_bad_ones_stay() {
        assert_eq!(percent_decoded("%2Ftmp%2Fca.pem"), "/tmp/ca.pem");
        assert_eq!(percent_decoded("a%41"), "aA", "an escape at the very end");
        assert_eq!(percent_decoded("50%"), "50%");
        assert_eq!(percent_decoded("%zz"), "%zz");
    }

    #[test]
    fn the_lambda_object_limit_follows_memory_and_timeout() {
        let small = lambda_object_limit(256, 120);
        assert!((230_000_000..=250_000_000).contains(&small), "{small}");
        assert!(lambda_object_limit(1769, 900) > 12_000_000_000);
        let c = config(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("FUNCTION_TIMEOUT_SECONDS", "120"),
        ])
        .unwrap();
        assert_eq!(c.stream_limits.max_bytes, small);
        let c = config(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("FUNCTION_TIMEOUT_SECONDS", "120"),
            ("MAX_OBJECT_BYTES", "1000"),
            ("MAX_RECORD_BYTES", "2048"),
        ])
        .unwrap();
        assert_eq!(c.stream_limits.max_bytes, 1000);
        assert_eq!(c.read_limits.max_record_bytes, 2048);
        assert!(
            config(&[
                ("DATABASE_URL", "postgres://x/y"),
                ("MAX_GZIP_RATIO", "many")
            ])
            .is_err()
        );
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn libpq_tls_settings_are_taken_out_of_a_url_and_a_key_value_string() {
        let u = DatabaseUrl::parse(
            "postgres://u:p@db.example:5432/h?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem",
        )
        .unwrap();
        assert_eq!(
            u.rest,
            "postgres://u:p@db.example:5432/h?application_name=x"
        );
        assert_eq!(u.ssl_mode, Some(SslMode::VerifyFull));
        assert_eq!(u.root_cert, Some(PathBuf::from("/etc/rds.pem")));
        let u = DatabaseUrl::parse("postgresql://h/db?sslmode=require").unwrap();
        assert_eq!(
            (u.rest.as_str(), u.ssl_mode),
            ("postgresql://h/db", Some(SslMode::Require))
        );
        let u =
            DatabaseUrl::parse("host=h dbname=d sslmode=verify-ca sslrootcert='/a b.pem'").unwrap();
        assert_eq!(u.rest, "host=h dbname=d");
        assert_eq!(u.ssl_mode, Some(SslMode::VerifyCa));
        let u = DatabaseUrl::parse("postgres://h/db").unwrap();
        assert_eq!(
            (u.rest.as_str(), u.ssl_mode, u.root_cert),
            ("postgres://h/db", None, None)
        );
        for (value, mode) in [("disable", SslMode::Disable), ("prefer", SslMode::Prefer)] {
            let u = DatabaseUrl::parse(&format!("postgres://h/db?sslmode={value}")).unwrap();
            assert_eq!(u.ssl_mode, Some(mode));
        }
        let e = DatabaseUrl::parse("postgres://u:secret@h/db?sslmode=strict")
            .unwrap_err()
            .to_string();
        assert!(e.contains("verify-full") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn the_flag_wins_then_db_settings_then_libpq_variables_then_database_url() {
        let url = |c: Config| match c.database {
            Database::Url(u) => u,
            Database::Parts { host, .. } => format!("parts:{}", host.unwrap_or_default()),
        };
        let all = [
            (DATABASE_URL_SETTING, "postgres://flag/db"),
            (
                "DB_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            ),
            ("DB_HOST", "db.example"),
            ("PGHOST", "pg.example"),
            ("DATABASE_URL", "postgres://env/db"),
        ];
        assert_eq!(url(config(&all).unwrap()), "postgres://flag/db");
        assert_eq!(url(config(&all[1..]).unwrap()), "parts:db.example");
        let libpq = url(config(&all[3..]).unwrap());
        assert!(libpq.contains("host='pg.example'"), "{libpq}");
        assert_eq!(url(config(&all[4..]).unwrap()), "postgres://env/db");
        assert_eq!(config(&[]).unwrap_err(), ConfigError::NoDatabase);
    }

    #[test]
    fn a_database_url_is_enough_and_defaults_apply() {
        let c = config(&[("DATABASE_URL", "postgres://u:secret@h/db")]).unwrap();
        assert_eq!(c.ssl_mode, SslMode::Disable);
        assert_eq!(c.reject_threshold, 0.10);
        assert_eq!(c.quarantine_prefix, "quarantine/");
        assert_eq!(c.deadline_margin, std::time::Duration::from_secs(30));
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
        let c = config(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DEADLINE_MARGIN_SECONDS", "45"),
        ])
        .unwrap();
        assert_eq!(c.deadline_margin, std::time::Duration::from_secs(45));
    }

    #[test]
    fn the_secret_arn_path_defaults_to_verified_tls() {
        let c = config(&[
            (
                "DB_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            ),
            ("DB_HOST", "db.example"),
            ("DB_PORT", "5439"),
            ("QUARANTINE_PREFIX", "q"),
        ])
        .unwrap();
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.quarantine_prefix, "q/");
        assert!(matches!(
            c.database,
            Database::Parts {
                port: Some(5439),
                ..
            }
        ));
    }

    #[test]
    fn the_dialect_defaults_to_postgres() {
        let c = config(&[("DATABASE_URL", "postgres://h/db")]).unwrap();
        assert_eq!(c.dialect, Dialect::Postgres);
        assert_eq!(c.redshift, None);
        let e = config(&[("DATABASE_URL", "x"), ("WAREHOUSE_DIALECT", "mysql")]).unwrap_err();
        assert!(e.to_string().contains("WAREHOUSE_DIALECT"), "{e}");
    }

    #[test]
    fn redshift_needs_the_copy_role_and_takes_parts_and_a_staging_bucket() {
        let base = [
            ("DATABASE_URL", "postgres://h/db"),
            ("WAREHOUSE_DIALECT", "redshift"),
        ];
        let e = config(&base).unwrap_err();
        assert!(e.to_string().contains("REDSHIFT_COPY_ROLE_ARN"), "{e}");
        let role = (
            "REDSHIFT_COPY_ROLE_ARN",
            "arn:aws:iam::123456789012:role/copy",
        );
        let c = config(&[
            base[0],
            base[1],
            role,
            ("REDSHIFT_PARTS", "8"),
            ("STAGING_BUCKET", "b"),
        ])
        .unwrap();
        assert_eq!(c.dialect, Dialect::Redshift);
        let r = c.redshift.unwrap();
        assert_eq!((r.parts, r.staging_bucket.as_deref()), (Some(8), Some("b")));
        assert_eq!(
            r.part_compression,
            PartCompression::Zstd,
            "zstd unless told"
        );
        let gzip = ("REDSHIFT_PART_COMPRESSION", "gzip");
        let r = config(&[base[0], base[1], role, gzip])
            .unwrap()
            .redshift
            .unwrap();
        assert_eq!(r.part_compression, PartCompression::Gzip);
        let e =
            config(&[base[0], base[1], role, ("REDSHIFT_PART_COMPRESSION", "lz4")]).unwrap_err();
        assert!(e.to_string().contains("REDSHIFT_PART_COMPRESSION"), "{e}");
        let e = config(&[base[0], base[1], role, ("REDSHIFT_PARTS", "0")]).unwrap_err();
        assert!(e.to_string().contains("REDSHIFT_PARTS"), "{e}");
        let bad = ("REDSHIFT_COPY_ROLE_ARN", "arn:aws:iam::1:role/x' --");
        assert!(config(&[base[0], base[1], bad]).is_err());
    }

    #[test]
    fn iam_authentication_names_its_cluster_or_workgroup() {
        let redshift = [
            ("WAREHOUSE_DIALECT", "redshift"),
            (
                "REDSHIFT_COPY_ROLE_ARN",
                "arn:aws:iam::123456789012:role/copy",
            ),
            ("DB_HOST", "c.abc.eu-west-1.redshift.amazonaws.com"),
            ("DB_NAME", "dev"),
            ("DB_USER", "loader"),
        ];
        let mut pairs = redshift.to_vec();
        pairs.extend([
            ("REDSHIFT_AUTH", "iam-cluster"),
            ("REDSHIFT_CLUSTER_ID", "c"),
        ]);
        let c = config(&pairs).unwrap();
        assert!(matches!(
            c.database,
            Database::Parts { auth: Auth::IamCluster { ref cluster_id }, .. } if cluster_id == "c"
        ));
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        let mut pairs = redshift.to_vec();
        pairs.push(("REDSHIFT_AUTH", "iam-serverless"));
        let e = config(&pairs).unwrap_err();
        assert!(e.to_string().contains("REDSHIFT_WORKGROUP"), "{e}");
        pairs.push(("REDSHIFT_WORKGROUP", "wg"));
        assert!(matches!(
            config(&pairs).unwrap().database,
            Database::Parts {
                auth: Auth::IamServerless { .. },
                ..
            }
        ));
        let e = config(&[
            ("REDSHIFT_AUTH", "iam-cluster"),
            ("REDSHIFT_CLUSTER_ID", "c"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("WAREHOUSE_DIALECT=redshift"), "{e}");
    }

    #[test]
    fn missing_or_malformed_settings_are_named() {
        assert_eq!(config(&[]).unwrap_err(), ConfigError::NoDatabase);
        let e = config(&[("DATABASE_URL", "x"), ("DB_SSLMODE", "strict")]).unwrap_err();
        assert!(e.to_string().contains("DB_SSLMODE"), "{e}");
        let e = config(&[("DATABASE_URL", "x"), ("REJECT_THRESHOLD", "10")]).unwrap_err();
        assert!(e.to_string().contains("REJECT_THRESHOLD"), "{e}");
        let e = config(&[("DB_SECRET_ARN", "a"), ("DB_PORT", "x")]).unwrap_err();
        assert!(e.to_string().contains("DB_PORT"), "{e}");
    }
}
