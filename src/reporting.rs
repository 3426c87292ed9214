//! Reporting views in schema `reporting`: billing by day and month, payer collections, productivity, breakdowns,
//! demographics and collection rates — aggregates of `health.fact_table`, generated from the declarations below.
//!
//! Every view is one `SELECT <grain>, <measures> FROM fact LEFT JOIN <dimensions> GROUP BY <grain>`, written in SQL
//! that PostgreSQL and Redshift both accept (CASE, COALESCE, NULLIF, DATE_TRUNC, CAST; no FILTER, no DISTINCT ON).
//! A fact row whose dimension row is missing still counts, under the label `unknown` (and a NULL key).
//!
//! Sign convention, as in the data: payments and adjustments are negative amounts that reduce AR, so the money
//! collected is `-payments`. Rates: gross collection rate = collected / gross charges; net collection rate =
//! collected / (gross charges + adjustments), i.e. payments over what was still expected after adjustments.

use std::fmt::Write as _;
use std::sync::LazyLock;

use crate::schema::{
    Column, REPORTING_SCHEMA, SCHEMA, Table, TableKind, data_schema, orphan_condition, quote_ident,
    reporting_schema,
};

/// Label of a group whose dimension row is missing (or whose value is empty).
pub const UNKNOWN: &str = "unknown";

/// A dimension joined to the fact table: alias, table, and the key column (same name on both sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// `dim_patient`, joined on `dim_patient_pk` (alias `pat`).
    Patient,
    /// `dim_physician`, joined on `dim_physician_pk` (alias `phy`).
    Physician,
    /// `dim_payer`, joined on `dim_payer_pk` (alias `pay`).
    Payer,
    /// `dim_location`, joined on `dim_location_pk` (alias `loc`).
    Location,
    /// `dim_cpt_code`, joined on `dim_cpt_code_pk` (alias `cpt`).
    Cpt,
    /// `dim_diagnosis_code`, joined on `dim_diagnosis_code_pk` (alias `dx`).
    Diagnosis,
    /// `dim_transaction`, joined on `dim_transaction_pk` (alias `tr`).
    Transaction,
}

impl Dim {
    const ALL: [Dim; 7] = [
        Dim::Patient,
        Dim::Physician,
        Dim::Payer,
        Dim::Location,
        Dim::Cpt,
        Dim::Diagnosis,
        Dim::Transaction,
    ];

    fn alias(self) -> &'static str {
        match self {
            Dim::Patient => "pat",
            Dim::Physician => "phy",
            Dim::Payer => "pay",
            Dim::Location => "loc",
            Dim::Cpt => "cpt",
            Dim::Diagnosis => "dx",
            Dim::Transaction => "tr",
        }
    }

    /// The fact column the dimension is joined through. The dimension table and its key are not restated here:
    /// they come from the column's declared foreign key (`key_of` in [`crate::schema`]).
    fn fact_column(self) -> &'static str {
        match self {
            Dim::Patient => "dim_patient_pk",
            Dim::Physician => "dim_physician_pk",
            Dim::Payer => "dim_payer_pk",
            Dim::Location => "dim_location_pk",
            Dim::Cpt => "dim_cpt_code_pk",
            Dim::Diagnosis => "dim_diagnosis_code_pk",
            Dim::Transaction => "dim_transaction_pk",
        }
    }

    /// The dimension table and the fact column, from the declaration: the fact column's declared reference.
    fn declared(self) -> Option<(&'static Table, &'static Column)> {
        let fact = SCHEMA.tables.iter().find(|t| t.kind == TableKind::Fact)?;
        SCHEMA
            .dimension_keys(fact)
            .find(|(_, column, _)| column.name == self.fact_column())
            .map(|(_, column, dim)| (dim, column))
    }

    fn join_sql(self) -> String {
        match self.declared() {
            Some((dim, column)) => format!(
                "LEFT JOIN {} AS {a} ON {a}.{dk} = f.{fk}",
                dim.qualified(),
                a = self.alias(),
                dk = quote_ident(&dim.primary_key().name),
                fk = quote_ident(&column.name),
            ),
            // Unreachable while the declaration holds (a unit test checks every join); a view that would join an
            // undeclared key fails at `init` with the warehouse's error instead of a panic.
            None => format!(
                "LEFT JOIN {}.{} AS {a} ON FALSE",
                quote_ident(data_schema()),
                quote_ident(self.fact_column()),
                a = self.alias()
            ),
        }
    }
}

/// A grouping column of a view: its name, SQL expression over `f` (the fact) and the dimension aliases, type and
/// meaning.
#[derive(Debug)]
pub struct Attribute {
    /// The column's name in the views.
    pub name: &'static str,
    sql: &'static str,
    uses: Option<Dim>,
    /// Its SQL type, e.g. `VARCHAR`.
    pub ty: &'static str,
    /// What it means, for the view docs.
    pub doc: &'static str,
}

/// An aggregate column of a view.
#[derive(Debug)]
pub struct Measure {
    /// The column's name in the views.
    pub name: &'static str,
    sql: &'static str,
    uses: Option<Dim>,
    /// Its SQL type, e.g. `NUMERIC`.
    pub ty: &'static str,
    /// What it means, for the view docs.
    pub doc: &'static str,
}

const fn attr(
    name: &'static str,
    sql: &'static str,
    uses: Option<Dim>,
    ty: &'static str,
    doc: &'static str,
) -> Attribute {
    Attribute {
        name,
        sql,
        uses,
        ty,
        doc,
    }
}

const fn measure(
    name: &'static str,
    sql: &'static str,
    ty: &'static str,
    doc: &'static str,
) -> Measure {
    Measure {
        name,
        sql,
        uses: None,
        ty,
        doc,
    }
}

/// Grouping column `post_date`: the day the lines were posted.
pub const POST_DATE: Attribute = attr(
    "post_date",
    "f.dim_date_post_pk",
    None,
    "DATE",
    "Day the lines were posted (NULL when the fact has no post date)",
);
/// Grouping column `service_date`: the day the service was rendered.
pub const SERVICE_DATE: Attribute = attr(
    "service_date",
    "f.dim_date_service_pk",
    None,
    "DATE",
    "Day the service was rendered (NULL when the fact has none)",
);
/// Grouping column `post_month`: the first day of the month of post date.
pub const POST_MONTH: Attribute = attr(
    "post_month",
    "CAST(DATE_TRUNC('month', f.dim_date_post_pk) AS DATE)",
    None,
    "DATE",
    "First day of the month the lines were posted",
);
/// Grouping column `service_month`: the first day of the month of service date.
pub const SERVICE_MONTH: Attribute = attr(
    "service_month",
    "CAST(DATE_TRUNC('month', f.dim_date_service_pk) AS DATE)",
    None,
    "DATE",
    "First day of the month the service was rendered",
);
/// Grouping column `post_week`: the Monday of the (ISO) week of post date.
pub const POST_WEEK: Attribute = attr(
    "post_week",
    "CAST(DATE_TRUNC('week', f.dim_date_post_pk) AS DATE)",
    None,
    "DATE",
    "Monday of the week the lines were posted",
);
/// Grouping column `service_week`: the Monday of the (ISO) week of service date.
pub const SERVICE_WEEK: Attribute = attr(
    "service_week",
    "CAST(DATE_TRUNC('week', f.dim_date_service_pk) AS DATE)",
    None,
    "DATE",
    "Monday of the week the service was rendered",
);
/// Grouping column `payer_id`: the payer's key, NULL when the payer is missing from `dim_payer`.
pub const PAYER_ID: Attribute = attr(
    "payer_id",
    "pay.dim_payer_pk",
    Some(Dim::Payer),
    "BIGINT",
    "Payer key (`dim_payer_pk`); NULL when the fact's payer is not in `dim_payer`",
);
/// Grouping column `payer_name`, [`UNKNOWN`] when the payer is missing.
pub const PAYER_NAME: Attribute = attr(
    "payer_name",
    "COALESCE(pay.payer_name, 'unknown')",
    Some(Dim::Payer),
    "VARCHAR",
    "Payer name, `unknown` when the payer is missing",
);
/// Grouping column `location_id`: the location's key, NULL when it is missing from `dim_location`.
pub const LOCATION_ID: Attribute = attr(
    "location_id",
    "loc.dim_location_pk",
    Some(Dim::Location),
    "BIGINT",
    "Location key; NULL when the fact's location is not in `dim_location`",
);
/// Grouping column `location_name`, [`UNKNOWN`] when the location is missing.
pub const LOCATION_NAME: Attribute = attr(
    "location_name",
    "COALESCE(loc.location_name, 'unknown')",
    Some(Dim::Location),
    "VARCHAR",
    "Location name, `unknown` when missing",
);
/// Grouping column `physician_id`: the physician's key, NULL when missing from `dim_physician`.
pub const PHYSICIAN_ID: Attribute = attr(
    "physician_id",
    "phy.dim_physician_pk",
    Some(Dim::Physician),
    "BIGINT",
    "Physician key; NULL when the fact's physician is not in `dim_physician`",
);
/// Grouping column `physician_name`: the provider's name, [`UNKNOWN`] when missing.
pub const PHYSICIAN_NAME: Attribute = attr(
    "physician_name",
    "COALESCE(phy.provider_name, 'unknown')",
    Some(Dim::Physician),
    "VARCHAR",
    "Provider name, `unknown` when missing",
);
/// Grouping column `specialty`: the provider specialty, [`UNKNOWN`] when missing.
pub const SPECIALTY: Attribute = attr(
    "specialty",
    "COALESCE(phy.provider_specialty, 'unknown')",
    Some(Dim::Physician),
    "VARCHAR",
    "Provider specialty, `unknown` when the physician (or their specialty) is missing",
);
/// Grouping column `cpt_grouping`: the CPT code's grouping, [`UNKNOWN`] when missing.
pub const CPT_GROUPING: Attribute = attr(
    "cpt_grouping",
    "COALESCE(cpt.cpt_grouping, 'unknown')",
    Some(Dim::Cpt),
    "VARCHAR",
    "CPT grouping (Evaluation and Management, Surgery, …), `unknown` when missing",
);
/// Grouping column `cpt_code`: the CPT code, [`UNKNOWN`] when missing.
pub const CPT_CODE: Attribute = attr(
    "cpt_code",
    "COALESCE(cpt.cpt_code, 'unknown')",
    Some(Dim::Cpt),
    "VARCHAR",
    "CPT code, `unknown` when missing",
);
/// Grouping column `diagnosis_code`: the ICD code, [`UNKNOWN`] when missing.
pub const DIAGNOSIS_CODE: Attribute = attr(
    "diagnosis_code",
    "COALESCE(dx.diagnosis_code, 'unknown')",
    Some(Dim::Diagnosis),
    "VARCHAR",
    "ICD diagnosis code, `unknown` when missing",
);
/// Grouping column `adjustment_reason`: the transaction's adjustment reason, [`UNKNOWN`] when missing.
pub const ADJUSTMENT_REASON: Attribute = attr(
    "adjustment_reason",
    "COALESCE(tr.adjustment_reason, 'unknown')",
    Some(Dim::Transaction),
    "VARCHAR",
    "Adjustment reason of the line's transaction, `unknown` when missing",
);
/// Grouping column `diagnosis_group`: the diagnosis code's ICD chapter, [`UNKNOWN`] when missing.
pub const DIAGNOSIS_GROUP: Attribute = attr(
    "diagnosis_group",
    "COALESCE(dx.diagnosis_code_group, 'unknown')",
    Some(Dim::Diagnosis),
    "VARCHAR",
    "ICD chapter of the diagnosis, `unknown` when missing",
);
/// Grouping column `age_band`: the patient's age band (`under 18`, `18-65`, `over 65` or `unknown`).
pub const AGE_BAND: Attribute = attr(
    "age_band",
    "CASE WHEN pat.patient_age IS NULL THEN 'unknown' \
     WHEN pat.patient_age < 18 THEN 'under 18' \
     WHEN pat.patient_age <= 65 THEN '18-65' \
     ELSE 'over 65' END",
    Some(Dim::Patient),
    "VARCHAR",
    "`under 18` (0–17), `18-65` (18 to 65 inclusive), `over 65` (66 and up), `unknown` (patient or age missing)",
);
/// Grouping column `gender`: the patient's gender, [`UNKNOWN`] when missing.
pub const GENDER: Attribute = attr(
    "gender",
    "COALESCE(pat.patient_gender, 'unknown')",
    Some(Dim::Patient),
    "VARCHAR",
    "Patient gender, `unknown` when missing",
);
/// Grouping column `state`: the patient's state, [`UNKNOWN`] when missing.
pub const STATE: Attribute = attr(
    "state",
    "COALESCE(pat.state, 'unknown')",
    Some(Dim::Patient),
    "VARCHAR",
    "Patient's state, `unknown` when missing",
);

/// Measure `transactions`: the number of fact lines.
pub const TRANSACTIONS: Measure = measure(
    "transactions",
    "COUNT(*)",
    "BIGINT",
    "Fact lines (billing transactions)",
);
/// Measure `cpt_units`: the sum of CPT units.
pub const CPT_UNITS: Measure = measure(
    "cpt_units",
    "COALESCE(SUM(f.cpt_units), 0)",
    "NUMERIC",
    "Sum of CPT units",
);
/// Measure `gross_charges`: the sum of gross charges.
pub const GROSS_CHARGES: Measure = measure(
    "gross_charges",
    "COALESCE(SUM(f.gross_charge), 0)",
    "NUMERIC",
    "Sum of gross charges",
);
/// Measure `payments`: the sum of payments as stored (negative).
pub const PAYMENTS: Measure = measure(
    "payments",
    "COALESCE(SUM(f.payment), 0)",
    "NUMERIC",
    "Sum of payments as stored: negative (a payment reduces AR)",
);
/// Measure `adjustments`: the sum of adjustments as stored (negative reduces AR).
pub const ADJUSTMENTS: Measure = measure(
    "adjustments",
    "COALESCE(SUM(f.adjustment), 0)",
    "NUMERIC",
    "Sum of adjustments as stored: negative reduces AR, positive (a reversal) adds to it",
);
/// Measure `collected`: the money collected, `-payments`.
pub const COLLECTED: Measure = measure(
    "collected",
    "-COALESCE(SUM(f.payment), 0)",
    "NUMERIC",
    "Money collected: `-payments`, positive",
);
/// Measure `ar`: the pending accounts receivable.
pub const AR: Measure = measure(
    "ar",
    "COALESCE(SUM(f.ar), 0)",
    "NUMERIC",
    "Pending accounts receivable: the balance still open on these lines",
);
/// Measure `gross_collection_rate`: collected / gross charges, 4 places; NULL without charges.
pub const GROSS_COLLECTION_RATE: Measure = measure(
    "gross_collection_rate",
    "CAST(ROUND(CAST(-COALESCE(SUM(f.payment), 0) AS DECIMAL(18,2)) \
     / NULLIF(CAST(COALESCE(SUM(f.gross_charge), 0) AS DECIMAL(18,2)), 0), 4) AS DECIMAL(10,4))",
    "DECIMAL(10,4)",
    "collected / gross_charges, rounded to 4 places (half away from zero); NULL when there are no charges",
);
/// Measure `net_collection_rate`: collected / (gross charges + adjustments), 4 places; NULL when that is zero.
pub const NET_COLLECTION_RATE: Measure = measure(
    "net_collection_rate",
    "CAST(ROUND(CAST(-COALESCE(SUM(f.payment), 0) AS DECIMAL(18,2)) \
     / NULLIF(CAST(COALESCE(SUM(f.gross_charge), 0) + COALESCE(SUM(f.adjustment), 0) AS DECIMAL(18,2)), 0), 4) \
     AS DECIMAL(10,4))",
    "DECIMAL(10,4)",
    "collected / (gross_charges + adjustments): payments over what was still collectible after adjustments; \
     4 places; NULL when that is zero",
);
/// Measure `patients`: distinct patient keys billed.
pub const PATIENTS: Measure = measure(
    "patients",
    "COUNT(DISTINCT f.dim_patient_pk)",
    "BIGINT",
    "Distinct patients billed (by the fact's patient key, so patients missing from `dim_patient` count too)",
);
/// Measure `physicians`: distinct physician keys billing.
pub const PHYSICIANS: Measure = measure(
    "physicians",
    "COUNT(DISTINCT f.dim_physician_pk)",
    "BIGINT",
    "Distinct physicians billing (by the fact's physician key)",
);
/// Measure `first_post_date`: the earliest post date.
pub const FIRST_POST_DATE: Measure = measure(
    "first_post_date",
    "MIN(f.dim_date_post_pk)",
    "DATE",
    "Earliest post date",
);
/// Measure `last_post_date`: the latest post date.
pub const LAST_POST_DATE: Measure = measure(
    "last_post_date",
    "MAX(f.dim_date_post_pk)",
    "DATE",
    "Latest post date",
);

/// The measures every view has, in column order.
pub const STANDARD_MEASURES: [&Measure; 9] = [
    &TRANSACTIONS,
    &CPT_UNITS,
    &GROSS_CHARGES,
    &PAYMENTS,
    &ADJUSTMENTS,
    &COLLECTED,
    &AR,
    &GROSS_COLLECTION_RATE,
    &NET_COLLECTION_RATE,
];

/// One view: name, what a row is, its grouping columns and any measures beyond the standard ones.
struct ViewDef {
    name: &'static str,
    description: &'static str,
    grain: &'static [&'static Attribute],
    extra: &'static [&'static Measure],
}

const VIEWS: &[ViewDef] = &[
    ViewDef {
        name: "kpi_summary",
        description: "One row: the whole warehouse's totals, collection rates, distinct patients and physicians \
                      and the range of post dates.",
        grain: &[],
        extra: &[&PATIENTS, &PHYSICIANS, &FIRST_POST_DATE, &LAST_POST_DATE],
    },
    ViewDef {
        name: "billing_daily_by_post_date",
        description: "One row per post date: what was posted that day.",
        grain: &[&POST_DATE],
        extra: &[],
    },
    ViewDef {
        name: "billing_daily_by_service_date",
        description: "One row per service date: the lines for services rendered that day, whenever posted.",
        grain: &[&SERVICE_DATE],
        extra: &[],
    },
    ViewDef {
        name: "billing_monthly_by_post_date",
        description: "One row per month of post date.",
        grain: &[&POST_MONTH],
        extra: &[],
    },
    ViewDef {
        name: "billing_monthly_by_service_date",
        description: "One row per month of service date.",
        grain: &[&SERVICE_MONTH],
        extra: &[],
    },
    ViewDef {
        name: "payer_collections_monthly",
        description: "One row per payer and month of post date: collected versus pending AR.",
        grain: &[&PAYER_ID, &PAYER_NAME, &POST_MONTH],
        extra: &[],
    },
    ViewDef {
        name: "physician_productivity",
        description: "One row per physician: charges, CPT units and payments.",
        grain: &[&PHYSICIAN_ID, &PHYSICIAN_NAME, &SPECIALTY],
        extra: &[&PATIENTS],
    },
    ViewDef {
        name: "specialty_productivity",
        description: "One row per provider specialty.",
        grain: &[&SPECIALTY],
        extra: &[&PHYSICIANS, &PATIENTS],
    },
    ViewDef {
        name: "location_breakdown",
        description: "One row per location (place of service).",
        grain: &[&LOCATION_ID, &LOCATION_NAME],
        extra: &[&PATIENTS],
    },
    ViewDef {
        name: "cpt_group_breakdown",
        description: "One row per CPT grouping.",
        grain: &[&CPT_GROUPING],
        extra: &[&PATIENTS],
    },
    ViewDef {
        name: "diagnosis_group_breakdown",
        description: "One row per diagnosis group (ICD chapter).",
        grain: &[&DIAGNOSIS_GROUP],
        extra: &[&PATIENTS],
    },
    ViewDef {
        name: "patient_demographics",
        description: "One row per age band, gender and state of the patients billed. A patient has one band, \
                      gender and state, so `patients` adds up across rows.",
        grain: &[&AGE_BAND, &GENDER, &STATE],
        extra: &[&PATIENTS],
    },
];

/// One column of a view, for the docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDoc {
    /// The column's name.
    pub name: &'static str,
    /// Its SQL type.
    pub ty: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// One view, for the docs and the QuickSight data sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDoc {
    /// Unqualified name; the view is `reporting.<name>`.
    pub name: &'static str,
    /// What one row of the view is.
    pub description: &'static str,
    /// Its columns, in order (for the generated views: the grouping columns, then the measures).
    pub columns: Vec<ColumnDoc>,
}

impl ViewDoc {
    /// The schema-qualified, quoted view name.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(reporting_schema()),
            quote_ident(self.name)
        )
    }
}

static VIEW_DOCS: LazyLock<Vec<ViewDoc>> = LazyLock::new(|| {
    VIEWS
        .iter()
        .map(|v| ViewDoc {
            name: v.name,
            description: v.description,
            columns: v
                .grain
                .iter()
                .map(|a| ColumnDoc {
                    name: a.name,
                    ty: a.ty,
                    meaning: a.doc,
                })
                .chain(measures_of(v).map(|m| ColumnDoc {
                    name: m.name,
                    ty: m.ty,
                    meaning: m.doc,
                }))
                .collect(),
        })
        .chain(std::iter::once(ViewDoc {
            name: DATA_QUALITY,
            description: "The data-quality figures over the whole warehouse, recomputed at every query: per \
                dimension key column of the fact table, the fact rows whose key has no row in its dimension \
                (`orphans`; they shrink to 0 once the dimensions arrive), and the rows where AR is not \
                GrossCharge + Payment + Adjustment (`ar_mismatch`). One row per figure; never a load failure.",
            columns: vec![
                ColumnDoc {
                    name: "figure",
                    ty: "VARCHAR",
                    meaning: "`orphans` or `ar_mismatch`",
                },
                ColumnDoc {
                    name: "column_name",
                    ty: "VARCHAR",
                    meaning: "The fact column checked (`dim_patient_pk`, …, `ar`)",
                },
                ColumnDoc {
                    name: "dimension",
                    ty: "VARCHAR",
                    meaning: "The dimension table the key refers to (NULL for `ar_mismatch`)",
                },
                ColumnDoc {
                    name: "row_count",
                    ty: "BIGINT",
                    meaning: "Fact rows with the finding (0 is clean)",
                },
            ],
        }))
        .collect()
});

/// The view of data-quality figures.
pub const DATA_QUALITY: &str = "data_quality";

/// `reporting.data_quality`, derived from the schema: an anti-join per declared dimension key of the fact table and
/// the balance identity, as `UNION ALL` rows (valid on PostgreSQL and Redshift).
fn data_quality_sql() -> String {
    let fact = SCHEMA.tables.iter().find(|t| t.kind == TableKind::Fact);
    let mut parts = Vec::new();
    let label = |s: &str| format!("CAST('{s}' AS VARCHAR(64))");
    if let Some(fact) = fact {
        for (_, column, dim) in SCHEMA.dimension_keys(fact) {
            parts.push(format!(
                "SELECT {} AS figure, {} AS column_name, {} AS dimension, COUNT(*) AS row_count\n\
                 FROM {} AS f WHERE {}",
                label("orphans"),
                label(&column.name),
                label(&dim.name),
                fact.qualified(),
                orphan_condition("f", column, dim),
            ));
        }
        if let Some(b) = &fact.balance {
            let total = &fact.columns[b.total].name;
            let sum: Vec<String> = b
                .parts
                .iter()
                .map(|&p| format!("f.{}", quote_ident(&fact.columns[p].name)))
                .collect();
            parts.push(format!(
                "SELECT {} AS figure, {} AS column_name, CAST(NULL AS VARCHAR(64)) AS dimension, COUNT(*) AS row_count\n\
                 FROM {} AS f WHERE f.{} <> {}",
                label(&format!("{total}_mismatch")),
                label(total),
                fact.qualified(),
                quote_ident(total),
                sum.join(" + ")
            ));
        }
    }
    format!(
        "CREATE OR REPLACE VIEW {}.{} AS\n{}",
        quote_ident(reporting_schema()),
        quote_ident(DATA_QUALITY),
        parts.join("\nUNION ALL\n")
    )
}

/// Every reporting view, in creation order.
pub fn views() -> &'static [ViewDoc] {
    &VIEW_DOCS
}

fn measures_of(v: &ViewDef) -> impl Iterator<Item = &'static Measure> + '_ {
    STANDARD_MEASURES.into_iter().chain(v.extra.iter().copied())
}

/// `FROM` the fact table, left-joined to each dimension in `dims` (in a fixed order, each once).
fn from_sql(dims: &[Dim]) -> String {
    let mut sql = format!(
        "FROM {}.{} AS f",
        quote_ident(data_schema()),
        quote_ident("fact_table")
    );
    for d in Dim::ALL.into_iter().filter(|d| dims.contains(d)) {
        sql.push('\n');
        sql.push_str(&d.join_sql());
    }
    sql
}

fn select_sql(grain: &[&Attribute], measures: &[&Measure], text: bool) -> (String, Vec<Dim>) {
    let cast = |expr: &str| {
        if text {
            format!("CAST({expr} AS VARCHAR)")
        } else {
            expr.to_string()
        }
    };
    let columns: Vec<String> = grain
        .iter()
        .map(|a| format!("    {} AS {}", cast(a.sql), a.name))
        .chain(
            measures
                .iter()
                .map(|m| format!("    {} AS {}", cast(m.sql), m.name)),
        )
        .collect();
    let dims: Vec<Dim> = grain
        .iter()
        .filter_map(|a| a.uses)
        .chain(measures.iter().filter_map(|m| m.uses))
        .collect();
    (format!("SELECT\n{}", columns.join(",\n")), dims)
}

fn group_by_sql(grain: &[&Attribute]) -> String {
    if grain.is_empty() {
        String::new()
    } else {
        let exprs: Vec<&str> = grain.iter().map(|a| a.sql).collect();
        format!("\nGROUP BY {}", exprs.join(", "))
    }
}

fn view_sql(v: &ViewDef) -> String {
    let measures: Vec<&Measure> = measures_of(v).collect();
    let (select, dims) = select_sql(v.grain, &measures, false);
    format!(
        "CREATE OR REPLACE VIEW {}.{} AS\n{select}\n{}{}",
        quote_ident(reporting_schema()),
        quote_ident(v.name),
        from_sql(&dims),
        group_by_sql(v.grain)
    )
}

/// Statements that create the reporting schema and every view; idempotent, valid on PostgreSQL and Redshift.
/// Run them after the star schema's tables exist.
pub fn view_statements() -> Vec<String> {
    let mut stmts = vec![format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(reporting_schema())
    )];
    stmts.extend(VIEWS.iter().map(view_sql));
    stmts.push(data_quality_sql());
    stmts
}

/// How a query parameter compares with an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `attribute >= date`; the parameter is `YYYY-MM-DD` text.
    OnOrAfter,
    /// `attribute <= date`; the parameter is `YYYY-MM-DD` text.
    OnOrBefore,
    /// `attribute = parameter` (the parameter's type is the attribute's).
    Equals,
    /// The text attribute equals the text parameter, ignoring case (`LOWER` on both sides).
    Named,
}

/// One `WHERE` condition of an ad-hoc aggregate: attribute, comparison and its `$n` parameter.
#[derive(Debug, Clone, Copy)]
pub struct Condition {
    /// The attribute compared.
    pub attribute: &'static Attribute,
    /// How it is compared with the parameter.
    pub op: Op,
    /// 1-based parameter number.
    pub param: usize,
}

/// An aggregate over the same joins and expressions as the views, filtered by parameterized conditions, with every
/// column cast to text (exact decimals, dates as `YYYY-MM-DD`), ordered by the grain. For the dashboard.
pub fn aggregate_sql(
    grain: &[&Attribute],
    measures: &[&Measure],
    conditions: &[Condition],
) -> String {
    let (select, mut dims) = select_sql(grain, measures, true);
    dims.extend(conditions.iter().filter_map(|c| c.attribute.uses));
    let mut sql = format!("{select}\n{}", from_sql(&dims));
    for (i, c) in conditions.iter().enumerate() {
        sql.push_str(if i == 0 { "\nWHERE " } else { "\n  AND " });
        let p = c.param;
        let _ = match c.op {
            Op::OnOrAfter => write!(
                sql,
                "{} >= CAST(CAST(${p} AS VARCHAR) AS DATE)",
                c.attribute.sql
            ),
            Op::OnOrBefore => write!(
                sql,
                "{} <= CAST(CAST(${p} AS VARCHAR) AS DATE)",
                c.attribute.sql
            ),
            Op::Equals => write!(sql, "{} = ${p}", c.attribute.sql),
            Op::Named => write!(
                sql,
                "LOWER({}) = LOWER(CAST(${p} AS VARCHAR))",
                c.attribute.sql
            ),
        };
    }
    sql.push_str(&group_by_sql(grain));
    if !grain.is_empty() {
        let exprs: Vec<&str> = grain.iter().map(|a| a.sql).collect();
        let _ = write!(sql, "\nORDER BY {}", exprs.join(", "));
    }
    sql
}

/// Markdown documentation of every view, for the README: definitions, then one table of columns per view.
pub fn markdown() -> String {
    let mut md = String::from(
        "All views live in schema `reporting` and are created (or replaced) by `healthetl init`. They aggregate \
         `health.fact_table` with left joins to the dimensions, so a fact line whose dimension row has not \
         arrived still counts: its label is `unknown` and its key NULL. Money columns are exact sums of \
         `NUMERIC(12,2)` columns.\n\n\
         Signs follow the data: `payments` and `adjustments` are negative when they reduce AR; `collected` is \
         `-payments`. **Gross collection rate** = collected / gross charges. **Net collection rate** = collected / \
         (gross charges + adjustments), i.e. payments over what was still collectible once contractual and other \
         adjustments are taken off. Both are rounded to four places (0.4567 = 45.67%) and NULL when the \
         denominator is zero; a rate of a group is not the average of its rows' rates — recompute it from the \
         sums when rolling up.\n\n",
    );
    md.push_str(
        "#### Measures of every view\n\nAfter its grouping columns, every view has these columns, in this order \
         (some views add more after them):\n\n| column | type | meaning |\n|---|---|---|\n",
    );
    for m in STANDARD_MEASURES {
        let _ = writeln!(md, "| `{}` | {} | {} |", m.name, m.ty, m.doc);
    }
    md.push('\n');
    let standard: Vec<&str> = STANDARD_MEASURES.iter().map(|m| m.name).collect();
    for v in views() {
        let _ = writeln!(
            md,
            "#### `{}.{}`\n\n{}\n\n| column | type | meaning |\n|---|---|---|",
            REPORTING_SCHEMA, v.name, v.description
        );
        let mut measures_listed = false;
        for c in &v.columns {
            if standard.contains(&c.name) {
                if !measures_listed {
                    md.push_str(
                        "| *the measures above* | | `transactions` … `net_collection_rate` |\n",
                    );
                    measures_listed = true;
                }
            } else {
                let _ = writeln!(md, "| `{}` | {} | {} |", c.name, c.ty, c.meaning);
            }
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check the declarations against the star schema: every joined fact column declares its dimension.
    fn joins_match_schema() -> Result<(), String> {
        for d in Dim::ALL {
            let (dim, column) = d
                .declared()
                .ok_or_else(|| format!("fact_table.{} declares no dimension", d.fact_column()))?;
            if column.references != Some(dim.name.as_str()) {
                return Err(format!("{} does not reference {}", column.name, dim.name));
            }
        }
        Ok(())
    }

    #[test]
    fn the_joins_name_real_tables_and_keys() {
        assert_eq!(joins_match_schema(), Ok(()));
    }

    #[test]
    fn every_view_is_created_in_the_reporting_schema_after_the_schema_itself() {
        let stmts = view_statements();
        assert_eq!(stmts[0], "CREATE SCHEMA IF NOT EXISTS \"reporting\"");
        assert_eq!(stmts.len(), views().len() + 1);
        for (stmt, v) in stmts[1..].iter().zip(views()) {
            assert!(
                stmt.starts_with(&format!("CREATE OR REPLACE VIEW {} AS", v.qualified())),
                "{stmt}"
            );
        }
    }

    #[test]
    fn views_left_join_only_the_dimensions_they_use() {
        let stmts = view_statements();
        let payer = stmts
            .iter()
            .find(|s| s.contains("\"payer_collections_monthly\""))
            .unwrap();
        assert!(payer.contains(
            "LEFT JOIN \"health\".\"dim_payer\" AS pay ON pay.\"dim_payer_pk\" = f.\"dim_payer_pk\""
        ));
        assert!(!payer.contains("dim_patient"), "{payer}");
        assert!(!payer.contains("INNER JOIN"));
    }

    #[test]
    fn the_sql_uses_nothing_redshift_lacks() {
        for stmt in view_statements() {
            let upper = stmt.to_ascii_uppercase();
            for banned in [
                "FILTER (",
                "DISTINCT ON",
                "GENERATE_SERIES",
                "::",
                "ILIKE",
                "DATE_PART(",
            ] {
                assert!(!upper.contains(banned), "{banned} in {stmt}");
            }
        }
    }

    #[test]
    fn column_docs_list_grain_then_standard_then_extra_measures() {
        let v = views()
            .iter()
            .find(|v| v.name == "specialty_productivity")
            .unwrap();
        let names: Vec<&str> = v.columns.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "specialty",
                "transactions",
                "cpt_units",
                "gross_charges",
                "payments",
                "adjustments",
                "collected",
                "ar",
                "gross_collection_rate",
                "net_collection_rate",
                "physicians",
                "patients"
            ]
        );
        assert!(v.columns.iter().all(|c| !c.meaning.is_empty()));
    }

    #[test]
    fn the_markdown_documents_every_view_and_the_rates() {
        let md = markdown();
        for v in views() {
            assert!(
                md.contains(&format!("`reporting.{}`", v.name)),
                "{}",
                v.name
            );
        }
        assert!(md.contains("Gross collection rate"));
        assert!(md.contains("Net collection rate"));
    }

    #[test]
    fn aggregate_sql_filters_with_parameters_only_and_orders_by_the_grain() {
        let sql = aggregate_sql(
            &[&PAYER_ID, &PAYER_NAME],
            &[&TRANSACTIONS, &GROSS_CHARGES],
            &[
                Condition {
                    attribute: &POST_DATE,
                    op: Op::OnOrAfter,
                    param: 1,
                },
                Condition {
                    attribute: &SPECIALTY,
                    op: Op::Equals,
                    param: 2,
                },
            ],
        );
        assert!(
            sql.contains("WHERE f.dim_date_post_pk >= CAST(CAST($1 AS VARCHAR) AS DATE)"),
            "{sql}"
        );
        assert!(
            sql.contains("AND COALESCE(phy.provider_specialty, 'unknown') = $2"),
            "{sql}"
        );
        assert!(
            sql.contains("LEFT JOIN \"health\".\"dim_physician\" AS phy"),
            "{sql}"
        );
        assert!(
            sql.contains("CAST(COUNT(*) AS VARCHAR) AS transactions"),
            "{sql}"
        );
        assert!(
            sql.ends_with("ORDER BY pay.dim_payer_pk, COALESCE(pay.payer_name, 'unknown')"),
            "{sql}"
        );
    }
}
