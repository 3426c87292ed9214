//! Every statement the PostgreSQL loader sends, built from the schema declaration only (never from input): the
//! lock, the ledger lookup and insert, the staging table, `COPY … FROM STDIN` (staged or appended), the merge and
//! the data-quality counts.

use crate::schema::{Column, ColumnType, SCHEMA, Table, data_schema, etl_schema, quote_ident};
use crate::warehouse::{LINE_COLUMN, STAGING, ledger};

/// Statements that create schemas, tables and the ledger; each is idempotent.
pub fn init_statements() -> Vec<String> {
    let mut stmts = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(data_schema())),
        format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(etl_schema())),
    ];
    stmts.extend(SCHEMA.all_tables().map(Table::create_sql));
    stmts.push(crate::warehouse::migrate::create_version_table_sql());
    stmts.push(SCHEMA.ledger.create_sql());
    // Ledgers created before sources were TEXT held VARCHAR(2048): widening is a catalog change, no rewrite.
    // (Columns declared since a ledger was created are added by the migration, like every table's.)
    stmts.push(format!(
        "ALTER TABLE {} ALTER COLUMN source TYPE TEXT",
        ledger()
    ));
    stmts
}

/// The ledger's lookup indexes (by quick identity, by content), created after the migration has added the columns
/// they cover to an older ledger.
pub fn index_statements() -> Vec<String> {
    vec![
        format!(
            "CREATE INDEX IF NOT EXISTS load_log_identity ON {} (object_identity, table_name)",
            ledger()
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS load_log_content ON {} (content_sha256, table_name)",
            ledger()
        ),
    ]
}

/// Create the staging table for one load: the target's columns and types, no keys, plus the source line.
pub fn create_staging_sql(table: &Table) -> String {
    format!(
        "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT * FROM {} WITH NO DATA;
ALTER TABLE {} ADD COLUMN {} BIGINT",
        quote_ident(STAGING),
        table.qualified(),
        quote_ident(STAGING),
        quote_ident(LINE_COLUMN)
    )
}

/// `COPY … FROM STDIN` into the staging table, binary or text.
pub fn copy_sql(table: &Table, binary: bool) -> String {
    format!(
        "COPY {} ({}, {}) FROM STDIN{}",
        quote_ident(STAGING),
        table.column_list(),
        quote_ident(LINE_COLUMN),
        copy_options(binary)
    )
}

fn copy_options(binary: bool) -> &'static str {
    if binary { " (FORMAT binary)" } else { "" }
}

/// Serialize loads of one table: self-conflicting, but readers are not blocked.
pub fn lock_sql(table: &Table) -> String {
    format!(
        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
        table.qualified()
    )
}

/// `COPY … FROM STDIN` straight into the target (the append fast path: no staging, no merge).
pub fn copy_direct_sql(table: &Table, binary: bool) -> String {
    format!(
        "COPY {} ({}) FROM STDIN{}",
        table.qualified(),
        table.column_list(),
        copy_options(binary)
    )
}

/// The largest key already in the table (NULL when empty), to decide whether a file can be appended directly.
pub fn max_key_sql(table: &Table) -> String {
    format!(
        "SELECT max({}) FROM {}",
        quote_ident(&table.primary_key().name),
        table.qualified()
    )
}

/// Whether a table's key allows the direct-append fast path (one integer key, compared to the table's maximum).
pub fn supports_direct_append(table: &Table) -> bool {
    table.key.len() == 1 && table.primary_key().ty == ColumnType::BigInt
}

/// Delete the target rows the staged rows replace. Returns the count deleted, and of those the count with a key
/// above `$1` (rows appended directly earlier in the same load; only for tables that support direct append).
pub fn delete_replaced_sql(table: &Table) -> String {
    let pk = quote_ident(&table.primary_key().name);
    let appended = if supports_direct_append(table) {
        "count(*) FILTER (WHERE k > $1)::BIGINT"
    } else {
        "0::BIGINT"
    };
    format!(
        "WITH d AS (DELETE FROM {} t USING {} s WHERE {} RETURNING t.{pk} AS k) \
         SELECT count(*)::BIGINT, {appended} FROM d",
        table.qualified(),
        quote_ident(STAGING),
        table.key_equal("t", "s"),
    )
}

/// Insert the staged rows. When `dedupe`, only the last occurrence (highest source line) of each key is kept; a
/// staging segment whose keys strictly increase has no duplicates and skips the sort.
pub fn insert_staged_sql(table: &Table, dedupe: bool) -> String {
    let cols = table.column_list();
    let pk = table.key_list();
    let select = if dedupe {
        format!(
            "SELECT DISTINCT ON ({pk}) {cols} FROM {} ORDER BY {pk}, {} DESC",
            quote_ident(STAGING),
            quote_ident(LINE_COLUMN)
        )
    } else {
        format!("SELECT {cols} FROM {}", quote_ident(STAGING))
    };
    format!("INSERT INTO {} ({cols}) {select}", table.qualified())
}

/// Whether an object with this quick identity (`$1`) or this content (`$3`, SHA-256 hex or NULL) has already been
/// loaded into this table (`$2`).
pub fn ledger_lookup_sql() -> String {
    format!(
        "SELECT load_id FROM {} WHERE table_name = $2 AND status = 'loaded' \
         AND (object_identity = $1 OR content_sha256 = $3) LIMIT 1",
        ledger()
    )
}

/// A dimension's keys that a load counted densely (`0 <= key < $1`), as the tally's values: the key itself, or
/// days since 1970-01-01 for dates. Streamed by the loader (the dimension's key index, read in order).
pub fn dense_dimension_keys_sql(column: &Column, dim: &Table) -> String {
    let key = quote_ident(&dim.primary_key().name);
    match column.ty {
        ColumnType::Date => format!(
            "SELECT (d.{key} - DATE '1970-01-01')::BIGINT FROM {} d \
             WHERE d.{key} >= DATE '1970-01-01' AND d.{key} < DATE '1970-01-01' + $1::BIGINT::INTEGER",
            dim.qualified()
        ),
        _ => format!(
            "SELECT d.{key} FROM {} d WHERE d.{key} >= 0 AND d.{key} < $1::BIGINT",
            dim.qualified()
        ),
    }
}

/// The rows whose key (`$1`, with `$2` rows each; tally values) has a row in dimension `dim` now: for the keys a
/// load counted outside the dense range.
pub fn matched_sparse_rows_sql(column: &Column, dim: &Table) -> String {
    let key = quote_ident(&dim.primary_key().name);
    let value = match column.ty {
        ColumnType::Date => "DATE '1970-01-01' + u.k::INTEGER",
        _ => "u.k",
    };
    format!(
        "SELECT COALESCE(SUM(u.n), 0)::BIGINT FROM unnest($1::BIGINT[], $2::BIGINT[]) AS u(k, n) \
         WHERE EXISTS (SELECT 1 FROM {} d WHERE d.{key} = {value})",
        dim.qualified()
    )
}

/// Where a PostgreSQL load's rows are before its merge: appended straight into the table (keys above `$1`), in the
/// staging table, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadRows {
    /// Some rows were appended straight into the table.
    pub appended: bool,
    /// Some rows are in the staging table.
    pub staged: bool,
}

/// The load's rows whose `column` has no row in `dim`, counted from the rows themselves (before the merge): for a
/// column the loader could not tally within its bounds. `$1` is the table's largest key before the load when
/// rows were appended.
pub fn orphan_rows_of_load_sql(
    table: &Table,
    column: &Column,
    dim: &Table,
    rows: LoadRows,
) -> String {
    let orphan = |alias: &str| crate::schema::orphan_condition(alias, column, dim);
    let mut counts = Vec::new();
    if rows.appended {
        counts.push(format!(
            "(SELECT count(*) FROM {} f WHERE f.{} > $1 AND {})",
            table.qualified(),
            quote_ident(&table.primary_key().name),
            orphan("f")
        ));
    }
    if rows.staged {
        counts.push(format!(
            "(SELECT count(*) FROM {} s WHERE {})",
            quote_ident(STAGING),
            orphan("s")
        ));
    }
    if counts.is_empty() {
        counts.push("0".into());
    }
    format!("SELECT ({})::BIGINT", counts.join(" + "))
}

/// Record a committed load.
pub fn ledger_insert_sql() -> String {
    format!(
        "INSERT INTO {} (source, object_identity, table_name, status, rows_read, rows_loaded, rows_rejected, \
         rows_duplicate, forced, encoding, routed_by, content_sha256, quality, started_at, finished_at) \
         VALUES ($1, $2, $3, 'loaded', $4, $5, $6, $7, $8, $9, $10, $11, $12::TEXT::JSONB, now(), \
         clock_timestamp()) RETURNING load_id",
        ledger()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SCHEMA;

    fn payer() -> &'static Table {
        SCHEMA.by_name("dim_payer").unwrap()
    }

    #[test]
    fn composite_keys_delete_and_deduplicate_on_every_key_column() {
        let d = &SCHEMA.dictionary;
        let sql = delete_replaced_sql(d);
        assert!(
            sql.contains(
                "t.\"table_name\" = s.\"table_name\" AND t.\"column_name\" = s.\"column_name\""
            ),
            "{sql}"
        );
        let sql = insert_staged_sql(d, true);
        assert!(
            sql.contains("DISTINCT ON (\"table_name\", \"column_name\")"),
            "{sql}"
        );
        assert!(!supports_direct_append(d));
    }

    #[test]
    fn insert_without_duplicates_skips_the_sort() {
        assert_eq!(
            insert_staged_sql(payer(), false),
            "INSERT INTO \"health\".\"dim_payer\" (\"dim_payer_pk\", \"payer_name\") SELECT \"dim_payer_pk\", \
             \"payer_name\" FROM \"healthetl_staging\""
        );
    }

    #[test]
    fn insert_with_duplicates_keeps_the_last_line() {
        let sql = insert_staged_sql(payer(), true);
        assert!(
            sql.contains("SELECT DISTINCT ON (\"dim_payer_pk\")")
                && sql.contains("ORDER BY \"dim_payer_pk\", \"_source_line\" DESC"),
            "{sql}"
        );
    }

    #[test]
    fn replaced_rows_are_deleted_by_key() {
        let sql = delete_replaced_sql(payer());
        assert!(
            sql.contains("DELETE FROM \"health\".\"dim_payer\" t USING \"healthetl_staging\" s WHERE t.\"dim_payer_pk\" = s.\"dim_payer_pk\""),
            "{sql}"
        );
    }

    #[test]
    fn copy_lists_the_table_columns_then_the_line() {
        assert_eq!(
            copy_sql(payer(), false),
            "COPY \"healthetl_staging\" (\"dim_payer_pk\", \"payer_name\", \"_source_line\") FROM STDIN"
        );
        assert!(copy_sql(payer(), true).ends_with("FROM STDIN (FORMAT binary)"));
        assert!(copy_direct_sql(payer(), true).ends_with("FROM STDIN (FORMAT binary)"));
    }

    #[test]
    fn init_creates_both_schemas_every_table_and_the_ledger() {
        let all = init_statements().join(";\n");
        assert!(all.contains("CREATE SCHEMA IF NOT EXISTS \"health\""));
        assert!(all.contains("CREATE SCHEMA IF NOT EXISTS \"etl\""));
        for t in &SCHEMA.tables {
            assert!(all.contains(&t.qualified()), "{}", t.name);
        }
        assert!(all.contains("\"etl\".\"load_log\""));
    }
}
