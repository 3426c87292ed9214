//! The star schema, declared once: the nine tables, their source headers, warehouse types and keys.
//! DDL, header mapping, casting, COPY column lists and the README's table docs are all derived from here.

use std::fmt::Write as _;
use std::sync::LazyLock;

/// Warehouse schema holding the star schema tables (its name without a [`SCHEMA_PREFIX_VAR`]).
pub const DATA_SCHEMA: &str = "health";
/// Warehouse schema holding the load ledger (its name without a prefix).
pub const ETL_SCHEMA: &str = "etl";
/// Warehouse schema holding the reporting views (its name without a prefix).
pub const REPORTING_SCHEMA: &str = "reporting";

/// The variable naming a prefix for the three schema names: with `HEALTHETL_SCHEMA_PREFIX=acc_` the warehouse is
/// `acc_health`, `acc_etl` and `acc_reporting`, a separate namespace in the same database (the acceptance kit's
/// scratch schemas; a test environment next to production). Read once per process; unset or empty: no prefix.
pub const SCHEMA_PREFIX_VAR: &str = "HEALTHETL_SCHEMA_PREFIX";

/// The three schema names in use, with the prefix applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The star schema tables' schema.
    pub data: &'static str,
    /// The ledger's schema.
    pub etl: &'static str,
    /// The reporting views' schema.
    pub reporting: &'static str,
}

impl Namespace {
    /// The names under `prefix`: lower-case ASCII letters, digits and `_`, starting with a letter or `_`, at most
    /// 40 bytes (identifiers are never taken from input without this check; Redshift folds names to lower case).
    pub fn with_prefix(prefix: &str) -> Result<Self, String> {
        let valid = prefix.len() <= 40
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !prefix.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "{SCHEMA_PREFIX_VAR} must be at most 40 lower-case letters, digits and underscores, not starting \
                 with a digit"
            ));
        }
        let named =
            |base: &str| -> &'static str { Box::leak(format!("{prefix}{base}").into_boxed_str()) };
        Ok(Self {
            data: named(DATA_SCHEMA),
            etl: named(ETL_SCHEMA),
            reporting: named(REPORTING_SCHEMA),
        })
    }
}

static NAMESPACE: LazyLock<Result<Namespace, String>> =
    LazyLock::new(|| Namespace::with_prefix(&std::env::var(SCHEMA_PREFIX_VAR).unwrap_or_default()));

/// Why the process's [`SCHEMA_PREFIX_VAR`] cannot be used, if it cannot: entry points check this before any SQL
/// is built (configuration errors are reported, not panics).
pub fn namespace_error() -> Option<&'static str> {
    NAMESPACE.as_ref().err().map(String::as_str)
}

fn namespace() -> &'static Namespace {
    match NAMESPACE.as_ref() {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    }
}

/// The star schema's schema in use (`health` unless prefixed).
pub fn data_schema() -> &'static str {
    namespace().data
}

/// The ledger's schema in use (`etl` unless prefixed).
pub fn etl_schema() -> &'static str {
    namespace().etl
}

/// The reporting views' schema in use (`reporting` unless prefixed).
pub fn reporting_schema() -> &'static str {
    namespace().reporting
}

/// The declaration's version: raise it with every change a deployed warehouse must receive (a new column, a new
/// table). `init` brings a warehouse at an older version up to this one and records it in `etl.schema_version`.
/// 1: every table before versions were recorded; 2: `dim_patient.email` optional, the version table itself, the
/// ledger declared here (its columns added by the same migration as every table's); 3: Redshift's per-table load
/// lock tables (`etl.load_lock_<table>`); 4: the ledger's `rows_inserted`, `rows_updated`, `rows_unchanged` (NULL on
/// loads recorded before: they did not tell new keys from replaced ones, and rewrote identical rows); 5: every
/// attempt recorded (`etl.load_attempts`), and the ledger's `replay_of`.
pub const SCHEMA_VERSION: u32 = 5;

/// The warehouse type of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// 16-bit integer (`SMALLINT`).
    SmallInt,
    /// 32-bit integer (`INTEGER`).
    Integer,
    /// 64-bit integer (`BIGINT`).
    BigInt,
    /// Exact decimal with the given precision and scale.
    Numeric {
        /// Total significant digits.
        precision: u8,
        /// Digits after the decimal point.
        scale: u8,
    },
    /// Calendar date (`DATE`).
    Date,
    /// Text of at most this many characters.
    Varchar(u32),
    /// Text without a declared bound (PostgreSQL `TEXT`; Redshift `VARCHAR(4096)`, bytes). Ledger only.
    Text,
    /// `BOOLEAN`. Ledger only.
    Boolean,
    /// A point in time (`TIMESTAMPTZ`). Ledger only.
    Timestamp,
    /// A JSON document (PostgreSQL `JSONB`; Redshift `VARCHAR(4096)`). Ledger only.
    Json,
    /// A key the warehouse assigns, ascending (PostgreSQL `BIGSERIAL`; Redshift `BIGINT IDENTITY(1,1)`). Ledger
    /// only.
    Serial,
}

impl ColumnType {
    /// Character data (`VARCHAR`, `TEXT`, JSON kept as text).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            ColumnType::Varchar(_) | ColumnType::Text | ColumnType::Json
        )
    }

    /// The SQL spelling, valid on PostgreSQL and Redshift.
    pub fn sql(self) -> String {
        match self {
            ColumnType::SmallInt => "SMALLINT".into(),
            ColumnType::Integer => "INTEGER".into(),
            ColumnType::BigInt => "BIGINT".into(),
            ColumnType::Numeric { precision, scale } => format!("NUMERIC({precision},{scale})"),
            ColumnType::Date => "DATE".into(),
            ColumnType::Varchar(n) => format!("VARCHAR({n})"),
            ColumnType::Text => "TEXT".into(),
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::Timestamp => "TIMESTAMPTZ".into(),
            ColumnType::Json => "JSONB".into(),
            ColumnType::Serial => "BIGSERIAL".into(),
        }
    }
}

/// Whether a table is a dimension, the fact table or the data dictionary; in a directory the dictionary loads
/// first, then the dimensions, then the fact table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A dimension table (`dim_*`), keyed by its own primary key.
    Dimension,
    /// The fact table: one row per billing transaction, holding the dimensions' keys.
    Fact,
    /// The dataset's data dictionary: its definitions become column comments.
    Dictionary,
    /// The load ledger (`etl.load_log`): written by the loader, never loaded from a file.
    Ledger,
}

struct ColumnDef {
    source: &'static str,
    rename: Option<&'static str>,
    ty: ColumnType,
    doc: &'static str,
    /// The dimension table whose (single-column) key this column holds.
    references: Option<&'static str>,
    /// A file may lack the column (it loads as NULL).
    optional: bool,
    /// `NOT NULL` (key columns are anyway).
    not_null: bool,
    /// The SQL default of a column added to existing rows (a literal, the same in every dialect).
    default: Option<&'static str>,
}

/// How Redshift distributes a table's rows over its slices (PostgreSQL has no such attribute). Declared on each
/// table with its sort key; the Redshift DDL is built from them (see `warehouse::redshift::sql` for the reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// A full copy on every node: small tables joined from the fact table, so every join is local.
    All,
    /// Rows spread by the hash of this column.
    Key(&'static str),
}

/// A column that must equal the sum of others on every row (`AR = GrossCharge + Payment + Adjustment`).
struct BalanceDef {
    total: &'static str,
    parts: &'static [&'static str],
}

struct TableDef {
    source: &'static str,
    kind: TableKind,
    primary_key: &'static [&'static str],
    /// Other stems the table's files go by (routing by name).
    aliases: &'static [&'static str],
    doc: &'static str,
    columns: &'static [ColumnDef],
    /// The balance identity its rows should satisfy (a data-quality figure, never a rejection).
    balance: Option<BalanceDef>,
    /// How Redshift distributes its rows.
    distribution: Distribution,
    /// Redshift's compound sort key, by column name.
    sort_key: &'static [&'static str],
}

const ID: ColumnType = ColumnType::Varchar(32);
const NAME: ColumnType = ColumnType::Varchar(200);
const SHORT: ColumnType = ColumnType::Varchar(100);
const DESC: ColumnType = ColumnType::Varchar(500);
const MONEY: ColumnType = ColumnType::Numeric {
    precision: 12,
    scale: 2,
};

const fn col(source: &'static str, ty: ColumnType, doc: &'static str) -> ColumnDef {
    ColumnDef {
        source,
        rename: None,
        ty,
        doc,
        references: None,
        optional: false,
        not_null: false,
        default: None,
    }
}

/// A column holding the key of dimension table `dimension` (a foreign key the warehouse does not enforce: files
/// arrive in any order; rows without their dimension row are counted as orphans).
const fn key_of(
    source: &'static str,
    ty: ColumnType,
    dimension: &'static str,
    doc: &'static str,
) -> ColumnDef {
    ColumnDef {
        source,
        rename: None,
        ty,
        doc,
        references: Some(dimension),
        optional: false,
        not_null: false,
        default: None,
    }
}

const fn renamed(
    source: &'static str,
    name: &'static str,
    ty: ColumnType,
    doc: &'static str,
) -> ColumnDef {
    ColumnDef {
        source,
        rename: Some(name),
        ty,
        doc,
        references: None,
        optional: false,
        not_null: false,
        default: None,
    }
}

/// A column a file may lack: it loads as NULL. Columns added to a deployed warehouse are declared optional so that
/// files written before them still load.
const fn optional(column: ColumnDef) -> ColumnDef {
    ColumnDef {
        optional: true,
        ..column
    }
}

use ColumnType::{BigInt, Date, Integer, SmallInt};

const TABLES: &[TableDef] = &[
    TableDef {
        source: "dimPatient",
        kind: TableKind::Dimension,
        primary_key: &["dim_patient_pk"],
        aliases: &[],
        doc: "One row per patient.",
        columns: &[
            col("dimPatientPK", BigInt, "Patient key"),
            col(
                "PatientNumber",
                ID,
                "Medical record number (text: leading zeros are data)",
            ),
            col("FirstName", SHORT, "First name"),
            col("LastName", SHORT, "Last name"),
            optional(col(
                "Email",
                NAME,
                "E-mail address (optional: de-identified exports omit it)",
            )),
            col("PatientGender", ID, "Gender"),
            col("PatientAge", SmallInt, "Age in years"),
            col("City", SHORT, "City"),
            col("State", ID, "State"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["dim_patient_pk"],
    },
    TableDef {
        source: "dimPhysician",
        kind: TableKind::Dimension,
        primary_key: &["dim_physician_pk"],
        aliases: &[],
        doc: "One row per rendering provider.",
        columns: &[
            col("dimPhysicianPK", BigInt, "Physician key"),
            col("ProviderNpi", ID, "National Provider Identifier (text)"),
            col("ProviderName", NAME, "Provider name"),
            col("ProviderSpecialty", SHORT, "Specialty"),
            col("ProviderFTE", MONEY, "Full-time equivalent"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["dim_physician_pk"],
    },
    TableDef {
        source: "dimPayer",
        kind: TableKind::Dimension,
        primary_key: &["dim_payer_pk"],
        aliases: &[],
        doc: "One row per insurance payer.",
        columns: &[
            col("dimPayerPK", BigInt, "Payer key"),
            col("PayerName", NAME, "Payer name"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["dim_payer_pk"],
    },
    TableDef {
        source: "dimLocation",
        kind: TableKind::Dimension,
        primary_key: &["dim_location_pk"],
        aliases: &[],
        doc: "One row per place of service.",
        columns: &[
            col("dimLocationPK", BigInt, "Location key"),
            col("LocationName", NAME, "Location name"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["dim_location_pk"],
    },
    TableDef {
        source: "dimTransaction",
        kind: TableKind::Dimension,
        primary_key: &["dim_transaction_pk"],
        aliases: &[],
        doc: "One row per transaction type and adjustment reason.",
        columns: &[
            col("dimTransactionPK", BigInt, "Transaction key"),
            col("TransactionType", SHORT, "Charge, Payment or Adjustment"),
            renamed(
                "Transaction",
                "transaction_desc",
                NAME,
                "Transaction description",
            ),
            col("AdjustmentReason", NAME, "Adjustment reason"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["dim_transaction_pk"],
    },
    TableDef {
        source: "dimDiagnosisCode",
        kind: TableKind::Dimension,
        primary_key: &["dim_diagnosis_code_pk"],
        aliases: &[],
        doc: "One row per ICD diagnosis code.",
        columns: &[
            col("dimDiagnosisCodePK", BigInt, "Diagnosis key"),
            col("DiagnosisCode", ID, "ICD code"),
            col("DiagnosisCodeDescription", DESC, "Description"),
            col("DiagnosisCodeGroup", NAME, "Diagnosis group"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["dim_diagnosis_code_pk"],
    },
    TableDef {
        source: "dimCptCode",
        kind: TableKind::Dimension,
        primary_key: &["dim_cpt_code_pk"],
        aliases: &[],
        doc: "One row per CPT procedure code.",
        columns: &[
            col("dimCPTCodePK", BigInt, "CPT key"),
            col("CptCode", ID, "CPT code (text)"),
            col("CptDesc", DESC, "Description"),
            col("CptGrouping", NAME, "CPT grouping"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["dim_cpt_code_pk"],
    },
    TableDef {
        source: "dimDate",
        kind: TableKind::Dimension,
        primary_key: &["date_key"],
        aliases: &[],
        doc: "One row per calendar day.",
        columns: &[
            renamed(
                "dimDatePostPK",
                "date_key",
                Date,
                "The day (joins fact dates)",
            ),
            renamed("Date", "calendar_date", Date, "The day"),
            col("Year", SmallInt, "Year"),
            col("Month", ID, "Month name"),
            col("MonthPeriod", Integer, "YYYYMM"),
            col("MonthYear", ID, "Month and year label"),
            col("Day", SmallInt, "Day of month"),
            col("DayName", ID, "Day of week"),
        ],
        balance: None,
        distribution: Distribution::All,
        sort_key: &["date_key"],
    },
    TableDef {
        source: "FactTable",
        kind: TableKind::Fact,
        primary_key: &["fact_table_pk"],
        aliases: &[],
        doc: "One row per billing transaction line.",
        columns: &[
            col("FactTablePK", BigInt, "Transaction line key"),
            key_of(
                "dimPatientPK",
                BigInt,
                "dim_patient",
                "Patient (dim_patient)",
            ),
            key_of(
                "dimPhysicianPK",
                BigInt,
                "dim_physician",
                "Physician (dim_physician)",
            ),
            key_of("dimDatePostPK", Date, "dim_date", "Post date (dim_date)"),
            key_of(
                "dimDateServicePK",
                Date,
                "dim_date",
                "Service date (dim_date)",
            ),
            key_of(
                "dimCPTCodePK",
                BigInt,
                "dim_cpt_code",
                "CPT code (dim_cpt_code)",
            ),
            key_of("dimPayerPK", BigInt, "dim_payer", "Payer (dim_payer)"),
            key_of(
                "dimTransactionPK",
                BigInt,
                "dim_transaction",
                "Transaction type (dim_transaction)",
            ),
            key_of(
                "dimLocationPK",
                BigInt,
                "dim_location",
                "Location (dim_location)",
            ),
            col("PatientNumber", ID, "Medical record number"),
            key_of(
                "dimDiagnosisCodePK",
                BigInt,
                "dim_diagnosis_code",
                "Diagnosis (dim_diagnosis_code)",
            ),
            col("CPTUnits", MONEY, "CPT units"),
            col("GrossCharge", MONEY, "Gross charge"),
            col("Payment", MONEY, "Payment (negative reduces AR)"),
            col("Adjustment", MONEY, "Adjustment (negative reduces AR)"),
            col("AR", MONEY, "Accounts receivable after this line"),
        ],
        balance: Some(BalanceDef {
            total: "ar",
            parts: &["gross_charge", "payment", "adjustment"],
        }),
        // Slices get equal shares by the unique key; billing questions filter on the post date.
        distribution: Distribution::Key("fact_table_pk"),
        sort_key: &["dim_date_post_pk"],
    },
];

/// The dataset's data dictionary (`Datadictionery.csv`, `DataDictionary.csv`, or any file with the header
/// `Table,Column,Definition`): loaded like a table, keyed by table and column; its definitions become comments on
/// the columns they describe.
const DICTIONARY: TableDef = TableDef {
    source: "DataDictionary",
    kind: TableKind::Dictionary,
    primary_key: &["table_name", "column_name"],
    aliases: &["Datadictionery", "Data_Dictionary"],
    doc: "One row per documented column of the dataset, from its data dictionary.",
    columns: &[
        renamed(
            "Table",
            "table_name",
            SHORT,
            "The table the definition is for, as the dataset names it",
        ),
        renamed(
            "Column",
            "column_name",
            SHORT,
            "The column, as the dataset names it",
        ),
        col(
            "Definition",
            ColumnType::Varchar(2000),
            "What the column means",
        ),
    ],
    balance: None,
    distribution: Distribution::All,
    sort_key: &["table_name", "column_name"],
};

/// A ledger column: never read from a file (`source` is its name), `NOT NULL` unless `nullable`.
const fn entry(name: &'static str, ty: ColumnType, nullable: bool, doc: &'static str) -> ColumnDef {
    ColumnDef {
        source: name,
        rename: None,
        ty,
        doc,
        references: None,
        optional: false,
        not_null: !nullable,
        default: None,
    }
}

/// The load ledger, `etl.load_log`: one row per committed load. Declared like the tables so that both dialects
/// create it, and migrations add its new columns, from this one declaration.
const LEDGER: TableDef = TableDef {
    source: "load_log",
    kind: TableKind::Ledger,
    primary_key: &["load_id"],
    aliases: &[],
    doc: "One row per committed load: what was loaded, from where, with which figures.",
    columns: &[
        entry("load_id", ColumnType::Serial, false, "Load key, ascending"),
        entry(
            "source",
            ColumnType::Text,
            false,
            "The object's URI or path",
        ),
        entry(
            "object_identity",
            ColumnType::Varchar(256),
            false,
            "Quick identity: ETag/version or file hash",
        ),
        entry(
            "table_name",
            ColumnType::Varchar(64),
            false,
            "The table loaded",
        ),
        entry("status", ColumnType::Varchar(16), false, "loaded"),
        entry(
            "rows_read",
            BigInt,
            false,
            "Records the strict CSV reader found",
        ),
        entry(
            "rows_loaded",
            BigInt,
            false,
            "Rows written: rows_inserted + rows_updated",
        ),
        entry(
            "rows_rejected",
            BigInt,
            false,
            "Rows set aside by validation",
        ),
        entry(
            "rows_duplicate",
            BigInt,
            false,
            "Rows replaced by a later row of the same key",
        ),
        entry(
            "rows_inserted",
            BigInt,
            true,
            "Rows with a key the table did not have",
        ),
        entry(
            "rows_updated",
            BigInt,
            true,
            "Rows that replaced a different stored row of the same key",
        ),
        entry(
            "rows_unchanged",
            BigInt,
            true,
            "Rows identical to the stored row of their key: not rewritten",
        ),
        entry(
            "forced",
            ColumnType::Boolean,
            false,
            "Loaded past the ledger with --force",
        ),
        entry(
            "encoding",
            ColumnType::Varchar(16),
            false,
            "The text encoding decoded",
        ),
        ColumnDef {
            default: Some("'name'"),
            ..entry(
                "routed_by",
                ColumnType::Varchar(16),
                false,
                "How the table was chosen: name or header",
            )
        },
        entry(
            "content_sha256",
            ColumnType::Varchar(64),
            true,
            "SHA-256 of the decompressed bytes",
        ),
        entry(
            "quality",
            ColumnType::Json,
            true,
            "Data-quality figures of fact loads",
        ),
        entry(
            "replay_of",
            ColumnType::Text,
            true,
            "A replay of rejected rows: the object they were rejected from",
        ),
        entry(
            "started_at",
            ColumnType::Timestamp,
            false,
            "When the load began",
        ),
        entry(
            "finished_at",
            ColumnType::Timestamp,
            false,
            "When it committed",
        ),
    ],
    balance: None,
    distribution: Distribution::All,
    sort_key: &["table_name", "object_identity"],
};

/// Every load attempt, `etl.load_attempts`: one row per object tried, whatever became of it (loaded, skipped,
/// refused, failed, or a dry run), written after the attempt in a transaction of its own so that a failed load's
/// rollback cannot take its record with it. Never holds row contents.
const ATTEMPTS: TableDef = TableDef {
    source: "load_attempts",
    kind: TableKind::Ledger,
    primary_key: &["attempt_id"],
    aliases: &[],
    doc: "One row per load attempt: loaded, skipped, refused, failed or dry run, with why and the figures.",
    columns: &[
        entry(
            "attempt_id",
            ColumnType::Serial,
            false,
            "Attempt key, ascending",
        ),
        entry(
            "source",
            ColumnType::Text,
            false,
            "The object's URI or path",
        ),
        entry(
            "object_identity",
            ColumnType::Varchar(256),
            false,
            "Quick identity: ETag/version or file hash",
        ),
        entry(
            "table_name",
            ColumnType::Varchar(64),
            true,
            "The table, once routed",
        ),
        entry(
            "status",
            ColumnType::Varchar(16),
            false,
            "loaded, skipped, refused, failed or dry_run",
        ),
        entry(
            "reason",
            ColumnType::Varchar(32),
            true,
            "Why it was not loaded, as a category",
        ),
        entry(
            "error",
            ColumnType::Varchar(4000),
            true,
            "The error: file, line and column, never row contents",
        ),
        entry(
            "load_id",
            BigInt,
            true,
            "The ledger row it committed, or the one it duplicates (skipped)",
        ),
        entry(
            "rows_read",
            BigInt,
            false,
            "Records the strict CSV reader found",
        ),
        entry(
            "rows_loaded",
            BigInt,
            false,
            "Rows written (would be, in a dry run)",
        ),
        entry(
            "rows_unchanged",
            BigInt,
            false,
            "Rows identical to the stored row",
        ),
        entry(
            "rows_rejected",
            BigInt,
            false,
            "Rows set aside by validation",
        ),
        entry(
            "rows_duplicate",
            BigInt,
            false,
            "Rows replaced by a later row of the same key",
        ),
        entry(
            "rejects",
            ColumnType::Text,
            true,
            "Where the rejected rows are: a rejects file or quarantine key",
        ),
        entry(
            "forced",
            ColumnType::Boolean,
            false,
            "Tried past the ledger with --force",
        ),
        entry(
            "started_at",
            ColumnType::Timestamp,
            false,
            "When the attempt began",
        ),
        entry("finished_at", ColumnType::Timestamp, false, "When it ended"),
        entry(
            "duration_ms",
            BigInt,
            false,
            "How long it took, in milliseconds",
        ),
    ],
    balance: None,
    distribution: Distribution::All,
    sort_key: &["finished_at"],
};

/// One warehouse column and the source header it comes from.
#[derive(Debug, Clone)]
pub struct Column {
    /// The header in the source file, e.g. `dimPatientPK`.
    pub source: &'static str,
    /// The warehouse column name (the header in snake case unless renamed).
    pub name: String,
    /// Its warehouse type.
    pub ty: ColumnType,
    /// What it means, for column comments and the README.
    pub doc: &'static str,
    /// The dimension table whose key this column holds (fact tables' dimension keys).
    pub references: Option<&'static str>,
    /// A file may lack this column; it then loads as NULL.
    pub optional: bool,
    /// Declared `NOT NULL`.
    pub not_null: bool,
    /// The SQL default given to existing rows when the column is added.
    pub default: Option<&'static str>,
}

/// A balance identity: column `total` equals the sum of columns `parts` on every row (indexes into `columns`).
#[derive(Debug, Clone)]
pub struct Balance {
    /// Index of the total column.
    pub total: usize,
    /// Indexes of the columns that sum to it.
    pub parts: Vec<usize>,
}

/// One warehouse table and the source file it is loaded from.
#[derive(Debug, Clone)]
pub struct Table {
    /// The warehouse schema holding it (`health`, or `etl` for the ledger).
    pub schema: &'static str,
    /// The source file's name (its stem), e.g. `dimPatient`.
    pub source: &'static str,
    /// The warehouse table name: the source name in snake case.
    pub name: String,
    /// Dimension, fact or dictionary.
    pub kind: TableKind,
    /// What one row is, for the table comment and the README.
    pub doc: &'static str,
    /// Its columns, in declaration order (the warehouse order; headers are matched by name).
    pub columns: Vec<Column>,
    /// Index into `columns` of the (first) primary-key column: the one whose order the loader follows.
    pub pk_index: usize,
    /// Indexes into `columns` of every primary-key column, in key order.
    pub key: Vec<usize>,
    /// Other stems the table's files go by.
    pub aliases: &'static [&'static str],
    /// The balance identity its rows should satisfy, if any.
    pub balance: Option<Balance>,
    /// How Redshift distributes its rows.
    pub distribution: Distribution,
    /// Indexes into `columns` of Redshift's compound sort key, in order.
    pub sort_key: Vec<usize>,
}

impl Table {
    /// The schema-qualified, quoted table name.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(self.schema), quote_ident(&self.name))
    }

    /// The (first) primary-key column.
    pub fn primary_key(&self) -> &Column {
        &self.columns[self.pk_index]
    }

    /// Whether column `i` is part of the primary key.
    pub fn is_key(&self, i: usize) -> bool {
        self.key.contains(&i)
    }

    /// The columns outside the primary key, in declaration order.
    pub fn value_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_key(*i))
            .map(|(_, c)| c)
    }

    /// The quoted primary-key columns, comma-separated.
    pub fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|&i| quote_ident(&self.columns[i].name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a.k1 = b.k1 AND a.k2 = b.k2` over the primary key, for two quoted relation names.
    pub fn key_equal(&self, a: &str, b: &str) -> String {
        self.key
            .iter()
            .map(|&i| {
                let c = quote_ident(&self.columns[i].name);
                format!("{a}.{c} = {b}.{c}")
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Comma-separated quoted column list, in declaration order.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `CREATE TABLE IF NOT EXISTS` for PostgreSQL.
    pub fn create_sql(&self) -> String {
        let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (\n", self.qualified());
        for c in &self.columns {
            let _ = writeln!(
                sql,
                "    {} {}{},",
                quote_ident(&c.name),
                c.ty.sql(),
                c.constraints()
            );
        }
        let _ = write!(sql, "    PRIMARY KEY ({})\n)", self.key_list());
        sql
    }
}

impl Column {
    /// ` DEFAULT … NOT NULL` as declared (empty for a nullable column without default), in the order both dialects
    /// accept.
    pub fn constraints(&self) -> String {
        let default = self
            .default
            .map(|d| format!(" DEFAULT {d}"))
            .unwrap_or_default();
        let not_null = if self.not_null { " NOT NULL" } else { "" };
        format!("{default}{not_null}")
    }
}

/// The nine tables of the star schema, the data dictionary beside them, and the load ledger.
#[derive(Debug)]
pub struct Schema {
    /// The star schema's tables, in declaration order.
    pub tables: Vec<Table>,
    /// `health.data_dictionary`.
    pub dictionary: Table,
    /// `etl.load_log`, the load ledger.
    pub ledger: Table,
    /// `etl.load_attempts`, every attempt.
    pub attempts: Table,
}

impl Schema {
    /// The table whose source name matches exactly (case-insensitively).
    pub fn by_source(&self, source: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.source.eq_ignore_ascii_case(source))
    }

    /// The table with this warehouse name (the dictionary included).
    pub fn by_name(&self, name: &str) -> Option<&Table> {
        self.all_tables().find(|t| t.name == name)
    }

    /// The dimension keys of a table: each column holding a dimension's key, with that dimension. Every
    /// referenced table exists and has a single-column key of the same type (checked by a test).
    pub fn dimension_keys<'a>(
        &'a self,
        table: &'a Table,
    ) -> impl Iterator<Item = (usize, &'a Column, &'a Table)> + 'a {
        table.columns.iter().enumerate().filter_map(|(i, c)| {
            let dim = self.by_name(c.references?)?;
            Some((i, c, dim))
        })
    }

    /// Every table the warehouse holds: the star schema's, then the data dictionary.
    pub fn all_tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().chain(std::iter::once(&self.dictionary))
    }

    /// Markdown documentation of every table, for the README.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        for t in self.all_tables() {
            let key: Vec<String> = t
                .key
                .iter()
                .map(|&i| format!("`{}`", t.columns[i].name))
                .collect();
            let _ = writeln!(
                md,
                "#### `{}.{}` ← `{}`\n\n{} Primary key {}.\n\n| column | type | source header | meaning |\n|---|---|---|---|",
                DATA_SCHEMA,
                t.name,
                t.source,
                t.doc,
                key.join(" + ")
            );
            for c in &t.columns {
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} | {} |",
                    c.name,
                    c.ty.sql(),
                    c.source,
                    c.doc
                );
            }
            md.push('\n');
        }
        md
    }
}

/// The star schema, built once from the declaration above.
pub static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema {
    tables: TABLES.iter().map(build_table).collect(),
    dictionary: build_table(&DICTIONARY),
    ledger: build_table(&LEDGER),
    attempts: build_table(&ATTEMPTS),
});

fn build_table(t: &TableDef) -> Table {
    {
        {
            let columns: Vec<Column> = t
                .columns
                .iter()
                .map(|c| Column {
                    source: c.source,
                    name: c
                        .rename
                        .map_or_else(|| snake_case(c.source), str::to_string),
                    ty: c.ty,
                    doc: c.doc,
                    references: c.references,
                    optional: c.optional,
                    not_null: c.not_null,
                    default: c.default,
                })
                .collect();
            let index = |name: &str| {
                columns
                    .iter()
                    .position(|c| c.name == name)
                    .unwrap_or_else(|| panic!("schema: {} has no column {name}", t.source))
            };
            let key: Vec<usize> = t.primary_key.iter().map(|k| index(k)).collect();
            let balance = t.balance.as_ref().map(|b| Balance {
                total: index(b.total),
                parts: b.parts.iter().map(|p| index(p)).collect(),
            });
            let sort_key = t.sort_key.iter().map(|c| index(c)).collect();
            Table {
                schema: if t.kind == TableKind::Ledger {
                    etl_schema()
                } else {
                    data_schema()
                },
                source: t.source,
                name: snake_case(t.source),
                kind: t.kind,
                doc: t.doc,
                columns,
                pk_index: key[0],
                key,
                aliases: t.aliases,
                balance,
                distribution: t.distribution,
                sort_key,
            }
        }
    }
}

/// A name reduced for matching: lower case, without spaces, underscores or a BOM (`Location Name`,
/// `location_name` and `LocationName` are one name).
pub fn normalize_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '\u{feff}')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Schema {
    /// The table and column a data dictionary row describes: the table by its source name, warehouse name or an
    /// alias; the column by its source header or warehouse name (names matched as headers are).
    pub fn documented_column(&self, table: &str, column: &str) -> Option<(&Table, &Column)> {
        let (table, column) = (normalize_name(table), normalize_name(column));
        let t = self.all_tables().find(|t| {
            std::iter::once(t.source)
                .chain(t.aliases.iter().copied())
                .chain(std::iter::once(t.name.as_str()))
                .any(|n| normalize_name(n) == table)
        })?;
        let c = t
            .columns
            .iter()
            .find(|c| normalize_name(c.source) == column || normalize_name(&c.name) == column)?;
        Some((t, c))
    }
}

/// snake_case as the contract defines it: split before an upper-case letter that follows a lower-case letter or
/// digit, and before the last upper-case letter of a run that is followed by lower case.
pub fn snake_case(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// SQL (PostgreSQL and Redshift): row `row`'s `column` holds a key that dimension `dim` has no row for — the
/// anti-join every orphan count uses (a NULL key is no orphan; duplicate dimension rows cannot inflate it).
pub fn orphan_condition(row: &str, column: &Column, dim: &Table) -> String {
    let c = quote_ident(&column.name);
    format!(
        "{row}.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} d WHERE d.{} = {row}.{c})",
        dim.qualified(),
        quote_ident(&dim.primary_key().name)
    )
}

/// Quote an SQL identifier. Identifiers only ever come from the schema declaration, never from input; quoting is
/// a second line of defence.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_prefix_names_a_namespace_of_three_schemas_and_only_safe_prefixes_pass() {
        let n = Namespace::with_prefix("acc_").unwrap();
        assert_eq!(
            (n.data, n.etl, n.reporting),
            ("acc_health", "acc_etl", "acc_reporting")
        );
        let none = Namespace::with_prefix("").unwrap();
        assert_eq!(
            (none.data, none.etl, none.reporting),
            ("health", "etl", "reporting")
        );
        for bad in [
            "Acc_",
            "a-b",
            "x\"; DROP SCHEMA health; --",
            "1abc",
            &"a".repeat(41),
        ] {
            assert!(Namespace::with_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snake_case_follows_the_contract_examples() {
        assert_eq!(snake_case("dimCPTCodePK"), "dim_cpt_code_pk");
        assert_eq!(snake_case("FactTablePK"), "fact_table_pk");
        assert_eq!(snake_case("ProviderFTE"), "provider_fte");
        assert_eq!(snake_case("AR"), "ar");
        assert_eq!(snake_case("CPTUnits"), "cpt_units");
        assert_eq!(snake_case("dimDatePostPK"), "dim_date_post_pk");
        assert_eq!(snake_case("MonthYear"), "month_year");
        assert_eq!(snake_case("Day2Name"), "day2_name");
    }

    #[test]
    fn the_schema_has_the_nine_contract_tables() {
        let names: Vec<&str> = SCHEMA.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dim_patient",
                "dim_physician",
                "dim_payer",
                "dim_location",
                "dim_transaction",
                "dim_diagnosis_code",
                "dim_cpt_code",
                "dim_date",
                "fact_table"
            ]
        );
    }

    #[test]
    fn renamed_columns_and_keys_match_the_contract() {
        let t = SCHEMA.by_name("dim_transaction").unwrap();
        assert!(t.columns.iter().any(|c| c.name == "transaction_desc"));
        let d = SCHEMA.by_name("dim_date").unwrap();
        assert_eq!(d.primary_key().name, "date_key");
        assert_eq!(d.columns[1].name, "calendar_date");
        let f = SCHEMA.by_name("fact_table").unwrap();
        assert_eq!(f.primary_key().name, "fact_table_pk");
        assert_eq!(f.columns.len(), 16);
        assert!(f.columns.iter().any(|c| c.name == "dim_cpt_code_pk"));
    }

    #[test]
    fn create_sql_declares_types_and_primary_key() {
        let sql = SCHEMA.by_name("dim_payer").unwrap().create_sql();
        assert!(sql.contains("\"health\".\"dim_payer\""), "{sql}");
        assert!(sql.contains("\"dim_payer_pk\" BIGINT"), "{sql}");
        assert!(sql.contains("\"payer_name\" VARCHAR(200)"), "{sql}");
        assert!(sql.contains("PRIMARY KEY (\"dim_payer_pk\")"), "{sql}");
        let fact = SCHEMA.by_name("fact_table").unwrap().create_sql();
        assert!(fact.contains("\"gross_charge\" NUMERIC(12,2)"), "{fact}");
    }

    #[test]
    fn every_dimension_key_names_a_dimension_with_one_key_column_of_its_type() {
        let fact = SCHEMA.by_name("fact_table").unwrap();
        let declared = fact
            .columns
            .iter()
            .filter(|c| c.references.is_some())
            .count();
        let keys: Vec<_> = SCHEMA.dimension_keys(fact).collect();
        assert_eq!(keys.len(), declared, "every reference resolves");
        assert_eq!(keys.len(), 9);
        for (_, column, dim) in keys {
            assert_eq!(dim.kind, TableKind::Dimension, "{}", column.name);
            assert_eq!(dim.key.len(), 1, "{}", dim.name);
            assert_eq!(dim.primary_key().ty, column.ty, "{}", column.name);
        }
        let balance = fact.balance.as_ref().unwrap();
        assert_eq!(fact.columns[balance.total].name, "ar");
        assert!(SCHEMA.tables.iter().filter(|t| t.balance.is_some()).count() == 1);
    }

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
