//! Every statement the Redshift loader sends, built from the schema declaration only (never from input): the
//! DDL with Redshift's table attributes, the lock, the ledger, the staging table, the COPY from S3 and the merge.
//!
//! Table attributes, and why:
//! - Dimensions are `DISTSTYLE ALL`: they are small, and a full copy on every node makes every join from the fact
//!   table local whatever the fact table's distribution. Sorted by their key, which the merge's delete probes.
//! - `fact_table` is `DISTKEY (fact_table_pk)`: with every dimension on every node, the fact table's distribution
//!   does not move join data; it decides balance and the cost of the load. The primary key is unique, so slices get
//!   equal shares (no skew from a busy patient or payer), and the staging table, created `LIKE` the target,
//!   inherits the key: the merge's delete-by-key and insert run slice-local, without redistributing either side.
//!   A dimension key such as `dim_patient_pk` would co-locate only per-patient aggregation, at the price of skew.
//! - `fact_table` is `COMPOUND SORTKEY (dim_date_post_pk)`: billing questions (charges, payments and AR by month,
//!   period-over-period) filter on the post date, so zone maps skip every block outside the range; files arrive
//!   roughly in post-date order, so new rows land mostly sorted and VACUUM SORT has little to do.
//! - `ENCODE AUTO` everywhere: Redshift picks and revises column compression.
//!
//! Redshift's `VARCHAR(n)` counts bytes, PostgreSQL's characters. A column declared for `n` characters is created
//! as `VARCHAR(4n)` (a UTF-8 character has at most four bytes; capped at 65535) so any value the character-length
//! check accepts fits; the check itself stays in the transform, in characters.

use crate::config::PartCompression;
use crate::schema::{
    Column, ColumnType, Distribution, SCHEMA, Table, data_schema, etl_schema, orphan_condition,
    quote_ident,
};
use crate::warehouse::{LINE_COLUMN, STAGING, ledger};

/// The largest `VARCHAR` Redshift accepts, in bytes.
pub const MAX_VARCHAR_BYTES: u32 = 65535;

/// Bytes of Redshift's spelling of unbounded text and JSON (the ledger's source URI and quality figures).
pub const TEXT_BYTES: u32 = 4096;

/// The Redshift spelling of a column type.
pub fn column_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::Varchar(chars) => format!("VARCHAR({})", varchar_bytes(chars)),
        ColumnType::Text | ColumnType::Json => format!("VARCHAR({TEXT_BYTES})"),
        ColumnType::Serial => "BIGINT IDENTITY(1,1)".into(),
        ColumnType::SmallInt
        | ColumnType::Integer
        | ColumnType::BigInt
        | ColumnType::Numeric { .. }
        | ColumnType::Date
        | ColumnType::Boolean
        | ColumnType::Timestamp => ty.sql(),
    }
}

/// The most bytes a column of this type holds on Redshift (`None`: not text).
pub fn text_bytes(ty: ColumnType) -> Option<usize> {
    match ty {
        ColumnType::Varchar(chars) => Some(varchar_bytes(chars) as usize),
        ColumnType::Text | ColumnType::Json => Some(TEXT_BYTES as usize),
        _ => None,
    }
}

/// Bytes needed for `chars` characters of UTF-8.
pub fn varchar_bytes(chars: u32) -> u32 {
    chars.saturating_mul(4).min(MAX_VARCHAR_BYTES)
}

/// How a table is distributed and sorted, as its declaration says (see the module docs for the choices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAttributes {
    /// `DISTSTYLE ALL`, or `DISTSTYLE KEY DISTKEY (column)`.
    pub distribution: Distribution,
    /// Compound sort key columns.
    pub sort_key: Vec<String>,
}

/// The attributes of one table, from its declaration.
pub fn attributes(table: &Table) -> TableAttributes {
    TableAttributes {
        distribution: table.distribution,
        sort_key: table
            .sort_key
            .iter()
            .map(|&i| table.columns[i].name.clone())
            .collect(),
    }
}

fn attribute_lines(attrs: &TableAttributes) -> String {
    let quoted: Vec<String> = attrs.sort_key.iter().map(|c| quote_ident(c)).collect();
    let distribution = match &attrs.distribution {
        Distribution::All => "DISTSTYLE ALL".to_string(),
        Distribution::Key(c) => format!("DISTSTYLE KEY\nDISTKEY ({})", quote_ident(c)),
    };
    format!(
        "{distribution}\nCOMPOUND SORTKEY ({})\nENCODE AUTO",
        quoted.join(", ")
    )
}

fn column_line(c: &Column, is_pk: bool) -> String {
    let default = c
        .default
        .map(|d| format!(" DEFAULT {d}"))
        .unwrap_or_default();
    let not_null = if is_pk || c.not_null { " NOT NULL" } else { "" };
    format!(
        "    {} {}{default}{not_null},\n",
        quote_ident(&c.name),
        column_type(c.ty)
    )
}

/// `CREATE TABLE IF NOT EXISTS` for Redshift: the columns, the (informational) primary key, then the table
/// attributes, each on its own line after the closing parenthesis.
pub fn create_table(table: &Table) -> String {
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (\n", table.qualified());
    for (i, c) in table.columns.iter().enumerate() {
        sql.push_str(&column_line(c, table.is_key(i)));
    }
    sql.push_str(&format!(
        "    PRIMARY KEY ({})\n)\n{}",
        table.key_list(),
        attribute_lines(&attributes(table))
    ));
    sql
}

/// The ledger, from its declaration: an `IDENTITY` key, byte-sized `VARCHAR`s, sorted for the lookup by table and
/// identity.
pub fn create_ledger() -> String {
    create_table(&SCHEMA.ledger)
}

/// Every attempt's record, `etl.load_attempts`.
pub fn create_attempts() -> String {
    create_table(&SCHEMA.attempts)
}

/// Schemas, every table and the ledger; each statement is idempotent.
pub fn init_statements() -> Vec<String> {
    let mut stmts = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(data_schema())),
        format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(etl_schema())),
    ];
    stmts.extend(SCHEMA.all_tables().map(create_table));
    stmts.push(create_ledger());
    stmts.push(create_attempts());
    stmts.extend(create_load_locks());
    stmts
}

/// The table whose lock serializes the loads of `table`: an empty table in the ledger's schema that nothing reads.
pub fn load_lock_table(table: &Table) -> String {
    format!(
        "{}.{}",
        quote_ident(etl_schema()),
        quote_ident(&format!("load_lock_{}", table.name))
    )
}

/// One empty lock table per loaded table (see [`lock`]).
pub fn create_load_locks() -> Vec<String> {
    SCHEMA
        .all_tables()
        .map(|t| {
            format!(
                "CREATE TABLE IF NOT EXISTS {} (held BOOLEAN)",
                load_lock_table(t)
            )
        })
        .collect()
}

/// How many slices the cluster has: one staged part per slice lets COPY use them all.
pub fn slice_count() -> &'static str {
    "SELECT COUNT(*) FROM stv_slices"
}

/// Serialize loads of one table, and only of that table. Redshift's LOCK is ACCESS EXCLUSIVE — on the target it
/// would also block every reader of the target (QuickSight's DIRECT_QUERY data sets over the views) until commit —
/// so it is taken on the target's own empty lock table ([`load_lock_table`]), which nothing reads: loads of one
/// table queue up; readers of every table and view, loads of other tables and the ledger are never blocked (the
/// DELETE and INSERT of the merge take Redshift's write lock, which readers do not wait for; they read the last
/// committed snapshot). The ledger is written with a plain INSERT; the identity is checked again under this lock,
/// so two loads of one object cannot both commit. Two loads of different tables that check the ledger at the same
/// instant may still meet Redshift's serializable-isolation check (error 1023): that is retried with backoff.
pub fn lock(table: &Table) -> String {
    format!("LOCK {}", load_lock_table(table))
}

/// Whether this object is already loaded into this table: `$1` its quick identity, `$2` the table name, `$3` its
/// content SHA-256 (or NULL).
pub fn ledger_lookup() -> String {
    format!(
        "SELECT load_id FROM {} WHERE table_name = $2::VARCHAR AND status = 'loaded' \
         AND (object_identity = $1::VARCHAR OR content_sha256 = $3::VARCHAR) LIMIT 1",
        ledger()
    )
}

/// The staged rows whose dimension key has no row in its dimension, one count per dimension key column (in table
/// order), in one statement; `None` for tables without dimension keys. Redshift does not enforce keys, so each is
/// an anti-join (`NOT EXISTS`), which duplicate dimension rows cannot inflate.
pub fn orphan_rows(table: &Table) -> Option<String> {
    let counts: Vec<String> = SCHEMA
        .dimension_keys(table)
        .map(|(_, column, dim)| {
            format!(
                "(SELECT COUNT(*) FROM {} s WHERE {})",
                quote_ident(STAGING),
                orphan_condition("s", column, dim)
            )
        })
        .collect();
    (!counts.is_empty()).then(|| format!("SELECT {}", counts.join(", ")))
}

/// The session's staging table, with the target's columns, types and distribution (temporary tables live until
/// the session ends in Redshift, so the load drops it before committing).
pub fn create_staging(table: &Table) -> String {
    format!(
        "CREATE TEMP TABLE {} (LIKE {})",
        quote_ident(STAGING),
        table.qualified()
    )
}

/// The staged rows' source line, to keep the last of duplicate keys.
pub fn add_line_column() -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} BIGINT",
        quote_ident(STAGING),
        quote_ident(LINE_COLUMN)
    )
}

/// The COPY options, exactly as the staged parts are written (see [`crate::transform::Csv`]): CSV with `"` quotes
/// (doubled inside values; commas, CR and LF inside quotes are data), NULL as an unquoted empty field (no text value
/// is ever empty), dates as `YYYY-MM-DD`, numbers plain, UTF-8 (invalid bytes fail the load rather than being
/// replaced), `ZSTD` or `GZIP` parts listed in a manifest. No statistics or compression analysis on the temporary
/// table.
pub fn copy_options(compression: PartCompression) -> String {
    format!(
        "FORMAT AS CSV QUOTE AS '\"' DELIMITER ',' NULL AS '' {} MANIFEST DATEFORMAT 'YYYY-MM-DD' ENCODING UTF8 \
         COMPUPDATE OFF STATUPDATE OFF",
        compression.copy_option()
    )
}

/// `COPY` the staged parts named by the manifest at `manifest_url` into the staging table, reading S3 as `role`.
pub fn copy(
    table: &Table,
    manifest_url: &str,
    role_arn: &str,
    compression: PartCompression,
) -> String {
    format!(
        "COPY {} ({}, {}) FROM {} IAM_ROLE {} {}",
        quote_ident(STAGING),
        table.column_list(),
        quote_ident(LINE_COLUMN),
        literal(manifest_url),
        literal(role_arn),
        copy_options(compression)
    )
}

/// `a.c = b.c` as Redshift must spell it to mean "the same value": its `=` ignores trailing spaces of VARCHARs
/// (`'a' = 'a '` is true), so text also compares its byte length, which counts them. Without that, two keys that
/// differ only in trailing spaces would merge, and a value that gained or lost one would not count as a change.
fn same(column: &Column, a: &str, b: &str) -> String {
    let c = quote_ident(&column.name);
    if column.ty.is_text() {
        format!("({a}.{c} = {b}.{c} AND OCTET_LENGTH({a}.{c}) = OCTET_LENGTH({b}.{c}))")
    } else {
        format!("{a}.{c} = {b}.{c}")
    }
}

/// Both keys equal, column by column (see [`same`]).
pub fn same_key(table: &Table, a: &str, b: &str) -> String {
    table
        .key
        .iter()
        .map(|&i| same(&table.columns[i], a, b))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Delete the staged rows a later staged row of the same key supersedes (the last occurrence in the object wins):
/// every staged row has its own source line, so the winners are each key's largest line. Run only when the staged
/// keys were not strictly increasing.
pub fn delete_staged_duplicates(table: &Table) -> String {
    let staging = quote_ident(STAGING);
    let line = quote_ident(LINE_COLUMN);
    let group: Vec<String> = table
        .key
        .iter()
        .flat_map(|&i| {
            let column = &table.columns[i];
            let c = quote_ident(&column.name);
            let mut by = vec![c.clone()];
            if column.ty.is_text() {
                by.push(format!("OCTET_LENGTH({c})"));
            }
            by
        })
        .collect();
    format!(
        "DELETE FROM {staging} WHERE {line} NOT IN (SELECT MAX({line}) FROM {staging} GROUP BY {})",
        group.join(", ")
    )
}

/// Delete the target rows that staged rows change: same key, some value not the same (NULL against a value is a
/// change; text as [`same`] compares it). Rows identical to their staged row stay, unwritten.
pub fn delete_replaced(table: &Table) -> String {
    let target = table.qualified();
    let staging = quote_ident(STAGING);
    let on = same_key(table, &target, &staging);
    // Spelled so that it is never NULL: one side NULL is FALSE, not unknown (NOT unknown would keep the row).
    let unchanged: Vec<String> = table
        .value_columns()
        .map(|column| {
            let c = quote_ident(&column.name);
            format!(
                "(({target}.{c} IS NULL AND {staging}.{c} IS NULL) OR ({target}.{c} IS NOT NULL AND \
                 {staging}.{c} IS NOT NULL AND {}))",
                same(column, &target, &staging)
            )
        })
        .collect();
    if unchanged.is_empty() {
        return format!("DELETE FROM {target} USING {staging} WHERE FALSE");
    }
    format!(
        "DELETE FROM {target} USING {staging} WHERE {on} AND NOT ({})",
        unchanged.join(" AND ")
    )
}

/// Delete the staged rows whose key the target still has after [`delete_replaced`]: they are identical to the
/// stored row. The count is the load's unchanged rows.
pub fn delete_unchanged(table: &Table) -> String {
    let target = table.qualified();
    let staging = quote_ident(STAGING);
    format!(
        "DELETE FROM {staging} USING {target} WHERE {}",
        same_key(table, &staging, &target)
    )
}

/// Insert what is left of the staged rows: new keys and changed rows, one per key.
pub fn insert_staged(table: &Table) -> String {
    let cols = table.column_list();
    format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {}",
        table.qualified(),
        quote_ident(STAGING)
    )
}

/// Drop the staging table before the commit (a later load in the same session creates it again).
pub fn drop_staging() -> String {
    format!("DROP TABLE {}", quote_ident(STAGING))
}

/// Record a committed load. Redshift has no `RETURNING` and no statement-time `now()` on user tables: the times
/// come from the loader as text (`YYYY-MM-DD HH:MM:SS.ffffff+00`), and [`ledger_load_id`] reads the key back.
pub fn ledger_insert() -> String {
    format!(
        "INSERT INTO {} (source, object_identity, table_name, status, rows_read, rows_loaded, rows_rejected, \
         rows_duplicate, forced, encoding, routed_by, content_sha256, quality, rows_inserted, rows_updated, \
         rows_unchanged, replay_of, started_at, finished_at) \
         VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, 'loaded', $4::BIGINT, $5::BIGINT, $6::BIGINT, $7::BIGINT, \
         $8::BOOLEAN, $9::VARCHAR, $12::VARCHAR, $13::VARCHAR, $14::VARCHAR, $15::BIGINT, $16::BIGINT, $17::BIGINT, \
         $18::VARCHAR, $10::VARCHAR::TIMESTAMPTZ, $11::VARCHAR::TIMESTAMPTZ)",
        ledger()
    )
}

/// The key of the row [`ledger_insert`] just wrote (`$1` identity, `$2` table, `$3` its finished_at): loads of this
/// table hold its lock until they commit, so no other row of this table can match.
pub fn ledger_load_id() -> String {
    format!(
        "SELECT MAX(load_id) FROM {} WHERE object_identity = $1::VARCHAR AND table_name = $2::VARCHAR \
         AND finished_at = $3::VARCHAR::TIMESTAMPTZ",
        ledger()
    )
}

/// A single-quoted SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varchar_lengths_are_bytes_for_four_byte_characters() {
        assert_eq!(varchar_bytes(32), 128);
        assert_eq!(varchar_bytes(500), 2000);
        assert_eq!(varchar_bytes(20_000), 65535);
        assert_eq!(column_type(ColumnType::Varchar(200)), "VARCHAR(800)");
        assert_eq!(column_type(ColumnType::BigInt), "BIGINT");
    }

    #[test]
    fn the_declared_attributes_are_the_ones_the_ddl_uses() {
        let fact = SCHEMA.by_name("fact_table").unwrap();
        assert_eq!(
            attributes(fact),
            TableAttributes {
                distribution: Distribution::Key("fact_table_pk"),
                sort_key: vec!["dim_date_post_pk".into()],
            }
        );
        for t in SCHEMA
            .all_tables()
            .filter(|t| t.kind != crate::schema::TableKind::Fact)
        {
            assert_eq!(attributes(t).distribution, Distribution::All, "{}", t.name);
            assert!(!t.sort_key.is_empty(), "{}", t.name);
        }
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn every_table_is_created_with_its_attributes() {
        let all = init_statements();
        // Two schemas, every table, the ledger, the attempts, and one load lock per table.
        assert_eq!(all.len(), 2 + 2 * SCHEMA.all_tables().count() + 2);
        assert!(all.iter().any(|s| s.contains(r#""etl"."load_attempts""#)));
        let lock = r#"CREATE TABLE IF NOT EXISTS "etl"."load_lock_fact_table" (held BOOLEAN)"#;
        assert!(all.iter().any(|s| s == lock));
        for t in &SCHEMA.tables {
            let ddl = create_table(t);
            assert!(ddl.ends_with("ENCODE AUTO"), "{ddl}");
            assert!(!ddl.contains("SERIAL") && !ddl.contains("INDEX"), "{ddl}");
        }
    }
}
