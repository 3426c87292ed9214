//! Warehouse: one seam ([`Loader`], [`Load`], [`RowSink`]) that every dialect implements, one factory
//! ([`connect`]) that builds the configured one, and what the dialects share (errors, TLS, the connection, the
//! dictionary's column comments, schema migrations). Each dialect is one folder owning its SQL — built only from
//! the schema declaration, never from input —, its row sink and its retry rules: [`postgres`] (COPY FROM STDIN)
//! and [`redshift`] (gzip parts staged in S3, COPY FROM the manifest).

pub mod connect;
pub mod connection;
pub mod error;
pub mod load;
pub mod migrate;
pub mod postgres;
pub mod redshift;
pub mod tls;

use crate::schema::{ColumnType, SCHEMA, quote_ident};

pub use connect::{ConnectPlan, Connector, connect};
pub use error::{WarehouseError, describe, with_causes};
pub use load::{
    ATTEMPT_ERROR_BYTES, AttemptRecord, BeforeCommit, BeginLoad, Begun, Commit, Committed,
    LedgerEntry, Load, LoadOutcome, Loader, MergeTally, NothingBeforeCommit, ReadProgress,
    RowCounts, RowEncoding, RowSink, SinkError, statement_timeout_sql,
};
pub use postgres::Postgres;
pub use redshift::Redshift;

/// The configured warehouse, whichever its dialect.
pub type Warehouse = Box<dyn Loader>;

impl From<Postgres> for Box<dyn Loader> {
    fn from(pg: Postgres) -> Self {
        Box::new(pg)
    }
}

impl From<Redshift> for Box<dyn Loader> {
    fn from(rs: Redshift) -> Self {
        Box::new(rs)
    }
}

/// The data dictionary's rows, for turning its definitions into column comments.
pub fn dictionary_rows_sql() -> String {
    format!(
        "SELECT table_name, column_name, definition FROM {} ORDER BY 1, 2",
        SCHEMA.dictionary.qualified()
    )
}

/// `COMMENT ON COLUMN` for every dictionary row that describes a declared column (others are kept in the table
/// only). Identifiers come from the schema; the definition is a string literal, its quotes doubled, and its
/// backslashes too where the dialect treats them as escapes (`E'…'` on PostgreSQL; Redshift's literals).
pub fn column_comment_statements(
    rows: &[(String, String, Option<String>)],
    postgres: bool,
) -> Vec<String> {
    rows.iter()
        .filter_map(|(table, column, definition)| {
            let (t, c) = SCHEMA.documented_column(table, column)?;
            let text = match definition {
                None => "NULL".to_string(),
                Some(d) => {
                    let escaped = d.replace('\\', "\\\\").replace('\'', "''");
                    if postgres {
                        format!("E'{escaped}'")
                    } else {
                        format!("'{escaped}'")
                    }
                }
            };
            Some(format!(
                "COMMENT ON COLUMN {}.{} IS {text}",
                t.qualified(),
                quote_ident(&c.name)
            ))
        })
        .collect()
}

/// Turn the data dictionary's definitions into column comments inside a load's transaction (both dialects).
pub async fn comment_columns_from_dictionary(
    tx: &tokio_postgres::Transaction<'_>,
    postgres: bool,
) -> Result<(), tokio_postgres::Error> {
    let rows: Vec<(String, String, Option<String>)> = tx
        .query(&dictionary_rows_sql(), &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for stmt in column_comment_statements(&rows, postgres) {
        tx.batch_execute(&stmt).await?;
    }
    Ok(())
}

/// The longest texts a dialect's ledger stores, checked before a load starts (never a failure at the ledger insert
/// after the whole object was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Bytes of the source URI.
    pub source_bytes: usize,
    /// Bytes of the object identity.
    pub identity_bytes: usize,
}

impl LedgerLimits {
    /// The limits of the declared ledger's `source` and `object_identity` columns when a column of type `ty`
    /// holds at most `bytes(ty)` bytes (`None`: unbounded).
    pub fn of_declared_ledger(bytes: fn(ColumnType) -> Option<usize>) -> LedgerLimits {
        let limit = |name: &str| {
            SCHEMA
                .ledger
                .columns
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| bytes(c.ty))
                .unwrap_or(usize::MAX)
        };
        LedgerLimits {
            source_bytes: limit("source"),
            identity_bytes: limit("object_identity"),
        }
    }

    /// Why `source` and `identity` do not fit, if they do not.
    pub fn check(&self, source: &str, identity: &str) -> Option<String> {
        if source.len() > self.source_bytes {
            return Some(format!(
                "the source URI is {} bytes long, over the ledger's {}-byte limit: use a shorter path or key",
                source.len(),
                self.source_bytes
            ));
        }
        if identity.len() > self.identity_bytes {
            return Some(format!(
                "the object identity is {} bytes long, over the ledger's {}-byte limit",
                identity.len(),
                self.identity_bytes
            ));
        }
        None
    }
}

/// The name of the per-transaction staging table (a temporary table, dropped at commit or rollback).
pub const STAGING: &str = "healthetl_staging";
/// The column holding each staged row's source line, used to keep the last of duplicate keys.
pub const LINE_COLUMN: &str = "_source_line";

/// The fully qualified ledger table.
pub fn ledger() -> String {
    SCHEMA.ledger.qualified()
}

/// Record one attempt (both dialects; parameters as [`AttemptRecord`] lists them).
pub fn attempt_insert_sql() -> String {
    format!(
        "INSERT INTO {} (source, object_identity, table_name, status, reason, error, load_id, rows_read, \
         rows_loaded, rows_unchanged, rows_rejected, rows_duplicate, rejects, forced, started_at, finished_at, \
         duration_ms) \
         VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::VARCHAR, $5::VARCHAR, $6::VARCHAR, $7::BIGINT, \
         $8::BIGINT, $9::BIGINT, $10::BIGINT, $11::BIGINT, $12::BIGINT, $13::VARCHAR, $14::BOOLEAN, \
         $15::VARCHAR::TIMESTAMPTZ, $16::VARCHAR::TIMESTAMPTZ, $17::BIGINT)",
        SCHEMA.attempts.qualified()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialects_ledger_limits_follow_the_declared_ledger() {
        let pg = Postgres::with_config(tokio_postgres::Config::new(), None);
        assert_eq!(
            pg.ledger_limits(),
            LedgerLimits {
                source_bytes: usize::MAX,
                identity_bytes: 256
            }
        );
        assert_eq!(
            LedgerLimits::of_declared_ledger(redshift::sql::text_bytes),
            LedgerLimits {
                source_bytes: 4096,
                identity_bytes: 1024
            }
        );
    }

    #[test]
    fn dictionary_rows_become_comments_on_declared_columns_only() {
        let rows = vec![
            (
                "FactTable".to_string(),
                "GrossCharge".to_string(),
                Some("It's $ \\ 'gross' ok".to_string()),
            ),
            ("dimPhysician".into(), "provider_fte".into(), None),
            ("FactTable".into(), "NoSuchColumn".into(), Some("x".into())),
            ("Elsewhere".into(), "AR".into(), Some("x".into())),
        ];
        let pg = column_comment_statements(&rows, true);
        assert_eq!(
            pg,
            [
                "COMMENT ON COLUMN \"health\".\"fact_table\".\"gross_charge\" IS E'It''s $ \\\\ ''gross'' ok'",
                "COMMENT ON COLUMN \"health\".\"dim_physician\".\"provider_fte\" IS NULL",
            ]
        );
        let rs = column_comment_statements(&rows[..1], false);
        assert!(
            rs[0].ends_with("IS 'It''s $ \\\\ ''gross'' ok'"),
            "{}",
            rs[0]
        );
    }
}
