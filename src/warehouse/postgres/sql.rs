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
    stmts.push(SCHEMA.attempts.create_sql());
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
        format!(
            "CREATE INDEX IF NOT EXISTS load_attempts_source ON {} (source, attempt_id)",
            SCHEMA.attempts.qualified()
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

/// `COPY … FROM STDIN` straight into the target (the append fast path: no staging, no merge). `freeze` when the
/// table was truncated in this transaction (see [`defer_primary_key_sql`]): the rows are written frozen, so no
/// later VACUUM rewrites the table's pages to mark them visible.
pub fn copy_direct_sql(table: &Table, binary: bool, freeze: bool) -> String {
    let options = match (binary, freeze) {
        (false, false) => "",
        (true, false) => " (FORMAT binary)",
        (false, true) => " (FREEZE)",
        (true, true) => " (FORMAT binary, FREEZE)",
    };
    format!(
        "COPY {} ({}) FROM STDIN{options}",
        table.qualified(),
        table.column_list(),
    )
}

/// The name of the table's primary-key constraint (`$1` schema, `$2` table), from the catalog; no row when the
/// loading role does not own the table (dropping and building the key needs ownership; a role granted only
/// SELECT, INSERT and DELETE loads with the key in place).
pub fn primary_key_name_sql() -> &'static str {
    "SELECT c.conname::TEXT FROM pg_catalog.pg_constraint c \
     JOIN pg_catalog.pg_class r ON r.oid = c.conrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace \
     WHERE n.nspname = $1 AND r.relname = $2 AND c.contype = 'p' \
     AND pg_catalog.pg_has_role(r.relowner, 'USAGE')"
}

/// The first load into an empty table: take it exclusively (readers of the empty table wait for the commit
/// instead of reading nothing), truncate it (so COPY may write frozen rows) and drop its primary key, to be built
/// once over all the rows by [`restore_primary_key_sql`] before the commit — one sort instead of a B-tree insert
/// per row. A rollback restores the key with everything else.
pub fn defer_primary_key_sql(table: &Table, constraint: &str) -> String {
    format!(
        "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE;\nTRUNCATE {t};\nALTER TABLE {t} DROP CONSTRAINT {}",
        quote_ident(constraint),
        t = table.qualified()
    )
}

/// Build the primary key [`defer_primary_key_sql`] dropped, under its old name. Rows with one key twice cannot
/// get there (the merge leaves one row per key); if they did, this fails and the load rolls back.
pub fn restore_primary_key_sql(table: &Table, constraint: &str) -> String {
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})",
        table.qualified(),
        quote_ident(constraint),
        table.key_list()
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

/// Delete the staged rows a later staged row of the same key supersedes (the last occurrence in the object wins);
/// run only when the staged keys were not strictly increasing. Returns the count deleted.
pub fn delete_staged_duplicates_sql(table: &Table) -> String {
    format!(
        "DELETE FROM {staging} s USING {staging} w WHERE {} AND s.{line} < w.{line}",
        table.key_equal("s", "w"),
        staging = quote_ident(STAGING),
        line = quote_ident(LINE_COLUMN),
    )
}

/// The temporary table of staged rows to write (see [`find_changed_sql`]).
pub const CHANGED: &str = "healthetl_changed";

/// Create [`CHANGED`]: the table's columns, whether the key is in the table (`existed`), and whether this load
/// appended it (`appended`).
pub fn create_changed_sql(table: &Table) -> String {
    format!(
        "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {}, TRUE AS existed, TRUE AS appended FROM {} WITH NO DATA",
        quote_ident(CHANGED),
        table.column_list(),
        table.qualified()
    )
}

/// Fill [`CHANGED`] with the staged rows to write, in one join of the staged rows with the table: keys the table
/// lacks, keys whose stored row differs in some value (`IS DISTINCT FROM`, so NULL against a value is a change; text
/// compares byte for byte under PostgreSQL's deterministic collations), and keys this load appended earlier (`$1`:
/// the table's largest key before the load, for tables that support direct append). A staged row identical to its
/// stored row is not written at all. The count inserted is the rows the merge writes.
pub fn find_changed_sql(table: &Table) -> String {
    let values = |alias: &str| {
        table
            .value_columns()
            .map(|c| format!("{alias}.{}", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pk = quote_ident(&table.primary_key().name);
    let missing = format!("t.{pk} IS NULL");
    let mut write = vec![missing.clone()];
    if table.value_columns().next().is_some() {
        write.push(format!(
            "ROW({}) IS DISTINCT FROM ROW({})",
            values("t"),
            values("s")
        ));
    }
    let appended = if supports_direct_append(table) {
        write.push(format!("t.{pk} > $1"));
        format!("COALESCE(t.{pk} > $1, FALSE)")
    } else {
        "FALSE".to_string()
    };
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("s.{}", quote_ident(&c.name)))
        .collect();
    format!(
        "INSERT INTO {} SELECT {}, NOT ({missing}), {appended} FROM {} s LEFT JOIN {} t ON {} WHERE {}",
        quote_ident(CHANGED),
        columns.join(", "),
        quote_ident(STAGING),
        table.qualified(),
        table.key_equal("t", "s"),
        write.join(" OR ")
    )
}

/// Delete the stored rows of the keys [`find_changed_sql`] found. Returns the count deleted and, of those, the
/// count this load had appended.
pub fn delete_replaced_sql(table: &Table) -> String {
    format!(
        "WITH d AS (DELETE FROM {} t USING {} c WHERE c.existed AND {} RETURNING c.appended) \
         SELECT count(*)::BIGINT, count(*) FILTER (WHERE appended)::BIGINT FROM d",
        table.qualified(),
        quote_ident(CHANGED),
        table.key_equal("t", "c"),
    )
}

/// Insert the rows [`find_changed_sql`] picked (staged keys are distinct by then: see
/// [`delete_staged_duplicates_sql`]).
pub fn insert_staged_sql(table: &Table) -> String {
    let cols = table.column_list();
    format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {}",
        table.qualified(),
        quote_ident(CHANGED),
    )
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
         rows_duplicate, forced, encoding, routed_by, content_sha256, quality, rows_inserted, rows_updated, \
         rows_unchanged, replay_of, started_at, finished_at) \
         VALUES ($1, $2, $3, 'loaded', $4, $5, $6, $7, $8, $9, $10, $11, $12::TEXT::JSONB, $13, $14, $15, $16, \
         now(), clock_timestamp()) RETURNING load_id",
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
        let keys = "t.\"table_name\" = s.\"table_name\" AND t.\"column_name\" = s.\"column_name\"";
        assert!(
            find_changed_sql(d).contains(keys),
            "{}",
            find_changed_sql(d)
        );
        let keys = "t.\"table_name\" = c.\"table_name\" AND t.\"column_name\" = c.\"column_name\"";
        assert!(
            delete_replaced_sql(d).contains(keys),
            "{}",
            delete_replaced_sql(d)
        );

        let sql = delete_staged_duplicates_sql(d);
        assert!(
            sql.contains(
                "s.\"table_name\" = w.\"table_name\" AND s.\"column_name\" = w.\"column_name\""
            ) && sql.ends_with("s.\"_source_line\" < w.\"_source_line\""),
            "{sql}"
        );
        assert!(!supports_direct_append(d));
    }

    #[test]
    fn only_keys_that_are_new_differ_or_were_appended_are_written() {
        assert_eq!(
            find_changed_sql(payer()),
            "INSERT INTO \"healthetl_changed\" SELECT s.\"dim_payer_pk\", s.\"payer_name\", NOT (t.\"dim_payer_pk\" IS NULL), \
             COALESCE(t.\"dim_payer_pk\" > $1, FALSE) FROM \"healthetl_staging\" s LEFT JOIN \"health\".\"dim_payer\" t \
             ON t.\"dim_payer_pk\" = s.\"dim_payer_pk\" WHERE t.\"dim_payer_pk\" IS NULL OR \
             ROW(t.\"payer_name\") IS DISTINCT FROM ROW(s.\"payer_name\") OR t.\"dim_payer_pk\" > $1"
        );
        assert_eq!(
            delete_replaced_sql(payer()),
            "WITH d AS (DELETE FROM \"health\".\"dim_payer\" t USING \"healthetl_changed\" c WHERE c.existed AND \
             t.\"dim_payer_pk\" = c.\"dim_payer_pk\" RETURNING c.appended) \
             SELECT count(*)::BIGINT, count(*) FILTER (WHERE appended)::BIGINT FROM d"
        );
        assert_eq!(
            insert_staged_sql(payer()),
            "INSERT INTO \"health\".\"dim_payer\" (\"dim_payer_pk\", \"payer_name\") SELECT \"dim_payer_pk\", \
             \"payer_name\" FROM \"healthetl_changed\""
        );
        let dictionary = find_changed_sql(&SCHEMA.dictionary);
        assert!(!dictionary.contains("$1"), "{dictionary}");
    }

    #[test]
    fn copy_lists_the_table_columns_then_the_line() {
        assert_eq!(
            copy_sql(payer(), false),
            "COPY \"healthetl_staging\" (\"dim_payer_pk\", \"payer_name\", \"_source_line\") FROM STDIN"
        );
        assert!(copy_sql(payer(), true).ends_with("FROM STDIN (FORMAT binary)"));
        assert!(copy_direct_sql(payer(), true, false).ends_with("FROM STDIN (FORMAT binary)"));
        assert!(
            copy_direct_sql(payer(), true, true).ends_with("FROM STDIN (FORMAT binary, FREEZE)")
        );
        assert!(copy_direct_sql(payer(), false, true).ends_with("FROM STDIN (FREEZE)"));
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
