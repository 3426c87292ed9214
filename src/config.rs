//! Configuration of the Lambda and the worker, read once (per cold start) from the environment into a typed
//! struct. Secrets are never read from here: only the ARN of the Secrets Manager secret that holds the password.

use std::path::PathBuf;

/// How the warehouse connection is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (local development only).
    Disable,
    /// TLS without certificate verification.
    Require,
    /// TLS with the certificate chain and host name verified (public roots plus an optional CA bundle).
    VerifyFull,
}

/// Where the warehouse connection comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// `DATABASE_URL` (local and tests).
    Url(String),
    /// Host, port, database and user from the environment; the password from a Secrets Manager secret (the standard
    /// RDS/Redshift secret JSON, whose host/port/dbname/username fill what the environment leaves out).
    Parts {
        host: Option<String>,
        port: Option<u16>,
        dbname: Option<String>,
        user: Option<String>,
        secret_arn: String,
    },
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
                secret_arn,
            } => f
                .debug_struct("Parts")
                .field("host", host)
                .field("port", port)
                .field("dbname", dbname)
                .field("user", user)
                .field("secret_arn", secret_arn)
                .finish(),
        }
    }
}

/// Everything the event handler needs, read once.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    pub ssl_mode: SslMode,
    /// Extra CA certificates (PEM) for verify-full, e.g. the RDS/Redshift bundle.
    pub ca_bundle: Option<PathBuf>,
    pub reject_threshold: f64,
    /// Where refused objects' reports and rejected rows go in the bucket.
    pub quarantine_prefix: String,
    /// Where staged parts go (Redshift loads).
    pub staging_prefix: String,
}

/// A configuration value that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no database configured: set DATABASE_URL, or DB_SECRET_ARN (with DB_HOST, DB_PORT, DB_NAME, DB_USER)"
    )]
    NoDatabase,
    #[error("{name} is '{value}': {expected}")]
    Invalid {
        name: &'static str,
        value: String,
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
        let database = match (get("DATABASE_URL"), get("DB_SECRET_ARN")) {
            (Some(url), _) => Database::Url(url),
            (None, Some(secret_arn)) => Database::Parts {
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
                secret_arn,
            },
            (None, None) => return Err(ConfigError::NoDatabase),
        };
        let ssl_mode = match get("DB_SSLMODE").as_deref() {
            None => match database {
                Database::Url(_) => SslMode::Disable,
                Database::Parts { .. } => SslMode::VerifyFull,
            },
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "DB_SSLMODE",
                    value: other.to_string(),
                    expected: "one of disable, require, verify-full",
                });
            }
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
        Ok(Config {
            database,
            ssl_mode,
            ca_bundle: get("DB_CA_BUNDLE").map(PathBuf::from),
            reject_threshold,
            quarantine_prefix: prefix(get("QUARANTINE_PREFIX"), "quarantine/"),
            staging_prefix: prefix(get("STAGING_PREFIX"), "staging/"),
        })
    }
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

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn a_database_url_is_enough_and_defaults_apply() {
        let c = config(&[("DATABASE_URL", "postgres://u:secret@h/db")]).unwrap();
        assert_eq!(c.ssl_mode, SslMode::Disable);
        assert_eq!(c.reject_threshold, 0.10);
        assert_eq!(c.quarantine_prefix, "quarantine/");
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
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
    fn missing_or_malformed_settings_are_named() {
        assert_eq!(config(&[]).unwrap_err(), ConfigError::NoDatabase);
        let e = config(&[("DATABASE_URL", "x"), ("DB_SSLMODE", "prefer")]).unwrap_err();
        assert!(e.to_string().contains("DB_SSLMODE"), "{e}");
        let e = config(&[("DATABASE_URL", "x"), ("REJECT_THRESHOLD", "10")]).unwrap_err();
        assert!(e.to_string().contains("REJECT_THRESHOLD"), "{e}");
        let e = config(&[("DB_SECRET_ARN", "a"), ("DB_PORT", "x")]).unwrap_err();
        assert!(e.to_string().contains("DB_PORT"), "{e}");
    }
}
