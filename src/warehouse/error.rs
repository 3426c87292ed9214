//! The warehouse's errors, shared by every dialect and the connection.

/// A warehouse failure. Messages carry the SQLSTATE and the server's message, except for data and integrity
/// errors, whose messages can quote row values (patient data): those carry the SQLSTATE only.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The connection settings cannot be used (a malformed URL, an unreadable CA bundle).
    #[error("invalid database URL: {0}")]
    Config(String),
    /// A setting is missing or malformed.
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    /// The database secret could not be read (its ARN and why; never its contents).
    #[error("cannot read the database secret {arn}: {reason}")]
    Secret {
        /// The secret's ARN.
        arn: String,
        /// Why (never the secret's value).
        reason: String,
    },
    /// The server could not be reached or refused the connection (TLS, authentication).
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database error while {context}: {detail}")]
    /// A statement failed.
    Db {
        /// What the loader was doing.
        context: &'static str,
        /// The server's message and SQLSTATE (only the SQLSTATE for data errors, which may quote row values).
        detail: String,
    },
    /// Staging the rows (compressing the parts, uploading them to S3) failed.
    #[error("staging in S3 failed: {0}")]
    Staging(String),
    /// The work before the commit (publishing rejected rows) failed: the load was rolled back.
    #[error("not committed: {0}")]
    BeforeCommit(String),
    /// Too little time is left before the invocation's deadline to start (or go on with) the work.
    #[error("deadline: {0}")]
    Deadline(String),
    /// Transient failures outlasted the retries.
    #[error("gave up after {attempts} attempts; the last failed while {context}: {detail}")]
    GaveUp {
        /// Tries made.
        attempts: u32,
        /// What the last try was doing.
        context: &'static str,
        /// Its failure.
        detail: String,
    },
}

impl WarehouseError {
    /// A mapper from a driver error to [`WarehouseError::Db`] while doing `context`.
    pub fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> WarehouseError {
        move |e| WarehouseError::Db {
            context,
            detail: describe(&e),
        }
    }
}

/// Describe a driver error without row contents.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            if code.starts_with("22") || code.starts_with("23") {
                format!("SQLSTATE {code} (details withheld: they may contain row values)")
            } else {
                format!("{} (SQLSTATE {code})", db.message())
            }
        }
        None if e.is_closed() => "the connection was closed".to_string(),
        None => with_causes(e),
    }
}

/// An error's message followed by each of its causes not already in it, e.g. `error connecting to server:
/// Connection refused (os error 111)`. Causes are the driver's and the operating system's messages (I/O, TLS,
/// DNS), never row values: a server's data errors are described by [`describe`] with their SQLSTATE only.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl WarehouseError {
    /// The category an attempt that failed with this error is recorded under.
    pub fn reason(&self) -> crate::pipeline::Reason {
        use crate::pipeline::Reason;
        match self {
            WarehouseError::Staging(_) => Reason::Staging,
            WarehouseError::BeforeCommit(_) => Reason::Quarantine,
            WarehouseError::Deadline(_) => Reason::Deadline,
            _ => Reason::Warehouse,
        }
    }
}
