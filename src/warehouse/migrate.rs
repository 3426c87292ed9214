//! Schema migrations, the same for every dialect: the declaration carries a version ([`SCHEMA_VERSION`]); `init`
//! compares the live warehouse (`information_schema`, which PostgreSQL and Redshift both have) with the declaration,
//! adds the declared columns a table lacks (`ALTER TABLE … ADD COLUMN`, nullable: existing rows get NULL), and
//! records the version it brought the warehouse to in `etl.schema_version`. A warehouse at the declared version
//! needs no `init`, so a Lambda cold start costs one query instead of re-creating every table and view.

use std::time::SystemTime;

use tokio_postgres::Transaction;

use super::error::WarehouseError;
use crate::schema::{Column, ColumnType, SCHEMA, SCHEMA_VERSION, Table, etl_schema, quote_ident};

/// What an `init` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The version the warehouse recorded before (`None`: none recorded — new, or created before versions).
    pub from_version: Option<i64>,
    /// The version it is at now.
    pub to_version: i64,
    /// Columns added to existing tables, as `table.column`.
    pub columns_added: Vec<String>,
}

/// The version table, qualified.
pub fn version_table() -> String {
    format!(
        "{}.{}",
        quote_ident(etl_schema()),
        quote_ident("schema_version")
    )
}

/// `CREATE TABLE IF NOT EXISTS etl.schema_version`: one row per `init` that changed the version. Plain types both
/// dialects spell the same way.
pub fn create_version_table_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    version INTEGER NOT NULL,
    columns_added INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)",
        version_table()
    )
}

/// Whether the version table exists (`information_schema`, so a fresh warehouse answers 0 rather than an error).
pub fn version_table_exists_sql() -> String {
    format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}' \
         AND table_name = 'schema_version'",
        etl_schema()
    )
}

/// The version the warehouse is at (NULL when none was recorded).
pub fn current_version_sql() -> String {
    format!("SELECT MAX(version) FROM {}", version_table())
}

/// Record the version: `$1` version, `$2` columns added, `$3` the time as text (`YYYY-MM-DD HH:MM:SS.ffffff+00`:
/// Redshift has no statement-time `now()` for user tables).
pub fn record_version_sql() -> String {
    format!(
        "INSERT INTO {} (version, columns_added, applied_at) \
         VALUES ($1::INTEGER, $2::INTEGER, $3::VARCHAR::TIMESTAMPTZ)",
        version_table()
    )
}

/// A table's live column names: `$1` schema, `$2` table.
pub fn live_columns_sql() -> &'static str {
    "SELECT column_name::VARCHAR FROM information_schema.columns \
     WHERE table_schema = $1::VARCHAR AND table_name = $2::VARCHAR"
}

/// The declared columns of `table` the live table lacks, in declaration order.
pub fn missing_columns<'t>(table: &'t Table, live: &[String]) -> Vec<&'t Column> {
    table
        .columns
        .iter()
        .filter(|c| !live.iter().any(|l| l == &c.name))
        .collect()
}

/// `ALTER TABLE … ADD COLUMN …` with the dialect's spelling of the type. Existing rows get the declared default,
/// else NULL; `NOT NULL` only with a default (existing rows must satisfy it).
pub fn add_column_sql(table: &Table, column: &Column, ty: &str) -> String {
    let constraints = match column.default {
        Some(_) => column.constraints(),
        None => String::new(),
    };
    format!(
        "ALTER TABLE {} ADD COLUMN {} {ty}{constraints}",
        table.qualified(),
        quote_ident(&column.name)
    )
}

/// The version the warehouse records, `None` when it records none.
pub async fn current_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<i64>, WarehouseError> {
    let exists: i64 = client
        .query_one(&version_table_exists_sql(), &[])
        .await
        .map_err(WarehouseError::db("reading the schema version"))?
        .get(0);
    if exists == 0 {
        return Ok(None);
    }
    let row = client
        .query_one(&current_version_sql(), &[])
        .await
        .map_err(WarehouseError::db("reading the schema version"))?;
    Ok(row.get::<_, Option<i32>>(0).map(i64::from))
}

/// Whether the warehouse records the declared version (then `init` has nothing to do).
pub async fn is_current(
    client: &impl tokio_postgres::GenericClient,
) -> Result<bool, WarehouseError> {
    Ok(current_version(client).await? == Some(i64::from(SCHEMA_VERSION)))
}

/// Inside an `init` transaction, after the tables were created if missing: add every declared column a table
/// lacks (`column_type` spells a type in the dialect), then record the version. Run by every dialect.
pub async fn add_missing_columns(
    tx: &Transaction<'_>,
    column_type: fn(ColumnType) -> String,
    from_version: Option<i64>,
) -> Result<Migrated, WarehouseError> {
    let mut added = Vec::new();
    for table in SCHEMA
        .all_tables()
        .chain([&SCHEMA.ledger, &SCHEMA.attempts])
    {
        let live: Vec<String> = tx
            .query(live_columns_sql(), &[&table.schema, &table.name.as_str()])
            .await
            .map_err(WarehouseError::db("reading the live columns"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for column in missing_columns(table, &live) {
            tx.batch_execute(&add_column_sql(table, column, &column_type(column.ty)))
                .await
                .map_err(WarehouseError::db("adding a declared column"))?;
            added.push(format!("{}.{}", table.name, column.name));
        }
    }
    Ok(Migrated {
        from_version,
        to_version: i64::from(SCHEMA_VERSION),
        columns_added: added,
    })
}

/// Record the version an `init` brought the warehouse to (when it changed, or columns were added).
pub async fn record_version(
    tx: &Transaction<'_>,
    migrated: &Migrated,
) -> Result<(), WarehouseError> {
    if migrated.from_version == Some(migrated.to_version) && migrated.columns_added.is_empty() {
        return Ok(());
    }
    let at = crate::calendar::timestamptz(SystemTime::now());
    let added = i32::try_from(migrated.columns_added.len()).unwrap_or(i32::MAX);
    let version = i32::try_from(migrated.to_version).unwrap_or(i32::MAX);
    tx.execute(&record_version_sql(), &[&version, &added, &at])
        .await
        .map_err(WarehouseError::db("recording the schema version"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_column_with_a_default_is_added_not_null_with_it() {
        let ledger = &SCHEMA.ledger;
        let routed_by = ledger
            .columns
            .iter()
            .find(|c| c.name == "routed_by")
            .unwrap();
        assert_eq!(
            add_column_sql(ledger, routed_by, "VARCHAR(16)"),
            "ALTER TABLE \"etl\".\"load_log\" ADD COLUMN \"routed_by\" VARCHAR(16) DEFAULT 'name' NOT NULL"
        );
        let quality = ledger.columns.iter().find(|c| c.name == "quality").unwrap();
        assert!(add_column_sql(ledger, quality, "JSONB").ends_with("\"quality\" JSONB"));
    }

    #[test]
    fn missing_columns_are_the_declared_ones_the_live_table_lacks() {
        let patient = SCHEMA.by_name("dim_patient").unwrap();
        let live: Vec<String> = patient
            .columns
            .iter()
            .filter(|c| c.name != "email")
            .map(|c| c.name.clone())
            .chain(["dropped_later".to_string()])
            .collect();
        let missing = missing_columns(patient, &live);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].name, "email");
        assert_eq!(
            add_column_sql(patient, missing[0], "VARCHAR(200)"),
            "ALTER TABLE \"health\".\"dim_patient\" ADD COLUMN \"email\" VARCHAR(200)"
        );
    }
}
