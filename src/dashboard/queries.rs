//! What the dashboard shows, read from the warehouse: totals, the time axis, breakdowns and the revenue-cycle
//! figures (AR aging, days in AR, adjustments by reason, month-over-month and year-over-year) for a set of filters
//! (aggregates only, parameterized, in one read-only transaction), and the choices its filter form offers.

use std::fmt;

use serde_json::{Value, json};
use tokio_postgres::{Client, Row};

use time::Date;

use super::filters::{AGE_BANDS, Choice, Filters, Grain, Slice};
use super::{DashboardError, dates};
use crate::reporting::{
    ADJUSTMENT_REASON, ADJUSTMENTS, AR, Attribute, CPT_CODE, CPT_GROUPING, CPT_UNITS,
    FIRST_POST_DATE, GROSS_CHARGES, LAST_POST_DATE, LOCATION_ID, LOCATION_NAME, Measure, PAYER_ID,
    PAYER_NAME, PAYMENTS, PHYSICIAN_ID, PHYSICIAN_NAME, SERVICE_DATE, SPECIALTY, TRANSACTIONS,
    UNKNOWN, aggregate_sql,
};
use crate::schema::{data_schema, quote_ident};
use crate::warehouse::describe;

/// An exact amount in hundredths: cents of money, or hundredths of a CPT unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub i64);

impl Cents {
    /// Parse the warehouse's text of a `NUMERIC` with at most two decimals: `-1234.5`, `0`, `12.00`.
    pub fn parse(s: &str) -> Option<Cents> {
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
        if whole.is_empty()
            || frac.len() > 2
            || !whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let mut hundredths: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        if frac.len() == 1 {
            hundredths *= 10;
        }
        let abs = whole.checked_mul(100)?.checked_add(hundredths)?;
        Some(Cents(if negative { -abs } else { abs }))
    }

    /// `-1234.50`: the exact decimal, as the API gives it.
    pub fn decimal(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    /// `$1,234.50` or `-$1,234.50`.
    pub fn dollars(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}${}.{:02}", grouped(abs / 100), abs % 100)
    }

    /// `$1,235` (rounded to whole dollars) for chart labels.
    pub fn whole_dollars(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}${}", grouped((abs + 50) / 100))
    }

    /// `$318.4M`, `$12.3K`, `$357`: at most six characters after the sign, for tiles and chart labels (display
    /// only: the exact value goes in a `title` and the tables). Rounded half away from zero.
    pub fn compact(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = u128::from(self.0.unsigned_abs());
        let dollars = (abs + 50) / 100;
        if dollars == 0 {
            return "$0".into();
        }
        if dollars < 1000 {
            return format!("{sign}${dollars}");
        }
        let mut unit = 100_000_u128;
        for suffix in ["K", "M", "B"] {
            let tenths = (abs * 10 + unit / 2) / unit;
            if tenths < 10_000 {
                return format!("{sign}${}.{}{suffix}", tenths / 10, tenths % 10);
            }
            unit *= 1000;
        }
        format!("{sign}${}T", (abs + unit / 2) / unit)
    }
}

/// `12.3` or `-0.5`: tenths as a decimal.
pub fn tenths(t: i64) -> String {
    let sign = if t < 0 { "-" } else { "" };
    format!("{sign}{}.{}", t.unsigned_abs() / 10, t.unsigned_abs() % 10)
}

/// Digits with thousands separators: `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio in ten-thousandths (4567 = 0.4567 = 45.67%), rounded half away from zero as the views round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub i64);

impl Rate {
    /// `numerator / denominator`, or `None` when the denominator is zero.
    pub fn of(numerator: Cents, denominator: Cents) -> Option<Rate> {
        if denominator.0 == 0 {
            return None;
        }
        let n = i128::from(numerator.0) * 10_000;
        let d = i128::from(denominator.0);
        let q = (2 * n.abs() + d.abs()) / (2 * d.abs());
        let q = if (n < 0) != (d < 0) { -q } else { q };
        Some(Rate(i64::try_from(q).unwrap_or(i64::MAX)))
    }

    /// `0.4567`, as the views and the API give it.
    pub fn decimal(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)
    }
}

impl fmt::Display for Rate {
    /// `45.67%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}%", abs / 100, abs % 100)
    }
}

/// The sums of one group of fact lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Fact lines (billing transactions).
    pub transactions: i64,
    /// Sum of CPT units, in hundredths of a unit.
    pub cpt_units: Cents,
    /// Sum of gross charges.
    pub gross_charges: Cents,
    /// As stored: negative.
    pub payments: Cents,
    /// As stored: negative reduces AR.
    pub adjustments: Cents,
    /// AR outstanding.
    pub ar: Cents,
}

impl Totals {
    /// Days in AR over a period of `days` days, in tenths of a day: AR outstanding ÷ average daily gross charges
    /// (`ar × days ÷ gross charges`, rounded half away from zero); `None` without charges.
    pub fn days_in_ar(&self, days: i64) -> Option<i64> {
        // Rate::of gives ten-thousandths of numerator ÷ denominator; tenths of ar × days ÷ gross are ten-thousandths
        // of (ar × days) ÷ (gross × 1000), rounded once.
        let r = Rate::of(
            Cents(self.ar.0.checked_mul(days)?),
            Cents(self.gross_charges.0.checked_mul(1000)?),
        )?;
        Some(r.0)
    }

    /// Money collected: `-payments`.
    pub fn collected(&self) -> Cents {
        Cents(-self.payments.0)
    }

    /// collected / gross charges.
    pub fn gross_collection_rate(&self) -> Option<Rate> {
        Rate::of(self.collected(), self.gross_charges)
    }

    /// collected / (gross charges + adjustments).
    pub fn net_collection_rate(&self) -> Option<Rate> {
        Rate::of(
            self.collected(),
            Cents(self.gross_charges.0 + self.adjustments.0),
        )
    }

    fn to_json(self) -> Value {
        json!({
            "transactions": self.transactions,
            "cpt_units": self.cpt_units.decimal(),
            "gross_charges": self.gross_charges.decimal(),
            "payments": self.payments.decimal(),
            "adjustments": self.adjustments.decimal(),
            "collected": self.collected().decimal(),
            "ar": self.ar.decimal(),
            "gross_collection_rate": self.gross_collection_rate().map(Rate::decimal),
            "net_collection_rate": self.net_collection_rate().map(Rate::decimal),
        })
    }
}

/// One bar of a breakdown or one period of the time axis: the group's id (when it has one), label and sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Dimension key (payer, location, physician); `None` for labels without a key and for `unknown`.
    pub id: Option<i64>,
    /// What the group is: the dimension's name or code, or the period (`YYYY-MM` or `YYYY-MM-DD`).
    pub label: String,
    /// The group's sums.
    pub totals: Totals,
}

impl Group {
    fn to_json(&self) -> Value {
        let mut v = self.totals.to_json();
        v["id"] = json!(self.id);
        v["label"] = json!(self.label);
        v
    }
}

/// One row of `reporting.data_quality`: a figure over the whole warehouse (never filtered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityFigure {
    /// `orphans` or `ar_mismatch`.
    pub figure: String,
    /// The fact column checked.
    pub column: String,
    /// The dimension the key refers to (orphans only).
    pub dimension: Option<String>,
    /// Fact rows with the finding.
    pub rows: i64,
}

/// The AR aging buckets: days from the service date to the as-of date (a service after the as-of date counts as
/// 0 days), upper bounds inclusive; the last bucket is open.
pub const AGING: [(&str, Option<i64>); 5] = [
    ("0-30", Some(30)),
    ("31-60", Some(60)),
    ("61-90", Some(90)),
    ("91-120", Some(120)),
    ("120+", None),
];

/// The label of AR on lines without a service date.
pub const NO_SERVICE_DATE: &str = "no service date";

/// One AR aging bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// [`AGING`]'s label, or [`NO_SERVICE_DATE`].
    pub label: &'static str,
    /// AR outstanding on the bucket's lines.
    pub ar: Cents,
    /// The bucket's fact lines.
    pub transactions: i64,
}

/// The month the tiles compare, with the month before and the same month a year before (same filters, any date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The as-of date's month (`YYYY-MM`).
    pub month: String,
    /// Its sums.
    pub current: Totals,
    /// The month before: label and sums (zero when it has no lines).
    pub previous_month: (String, Totals),
    /// The same month a year before.
    pub previous_year: (String, Totals),
}

/// Everything the dashboard shows for one set of filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The filters the figures are for.
    pub filters: Filters,
    /// The sums over the whole selection.
    pub totals: Totals,
    /// Earliest post date in the selection (`YYYY-MM-DD`).
    pub first_post_date: Option<String>,
    /// Latest post date in the selection (`YYYY-MM-DD`); `None` when it is empty.
    pub last_post_date: Option<String>,
    /// The day AR is aged to: the range's last day, else the selection's last post date.
    pub as_of: Option<Date>,
    /// One group per period of the filters' grain and date basis, from the first to the last period with lines;
    /// a period without lines is there with zero sums.
    pub timeline: Vec<Group>,
    /// The breakdowns, each by gross charges, largest first.
    pub payers: Vec<Group>,
    /// By provider specialty.
    pub specialties: Vec<Group>,
    /// By location.
    pub locations: Vec<Group>,
    /// By CPT grouping.
    pub cpt_groups: Vec<Group>,
    /// The [`TOP`] physicians by gross charges.
    pub physicians: Vec<Group>,
    /// The [`TOP`] CPT codes by gross charges.
    pub cpt_codes: Vec<Group>,
    /// By adjustment reason, the reasons with adjustments only, largest reduction first.
    pub adjustments: Vec<Group>,
    /// AR by age, in [`AGING`] order, then AR without a service date (when there is any).
    pub aging: Vec<Bucket>,
    /// The tiles' month-over-month and year-over-year comparison; `None` when the selection is empty.
    pub comparison: Option<Comparison>,
    /// The data-quality figures of the whole warehouse (not filtered).
    pub quality: Vec<QualityFigure>,
    /// Per table, when its last load committed (UTC, `YYYY-MM-DD HH:MM`), from the ledger.
    pub data_as_of: Vec<(String, String)>,
}

/// How many physicians and CPT codes the "top" breakdowns keep.
pub const TOP: usize = 10;

impl Summary {
    /// Days of the period the figures cover: the date range, else the first to the last post date (inclusive).
    pub fn period_days(&self) -> Option<i64> {
        let day = |d: &Option<String>| d.as_deref().and_then(super::filters::parse_day);
        let first = self.filters.from.or_else(|| day(&self.first_post_date))?;
        let last = self.filters.to.or_else(|| day(&self.last_post_date))?;
        Some((last - first).whole_days() + 1)
    }

    /// Days in AR, in tenths of a day: AR outstanding ÷ average daily gross charges of the period
    /// (`ar × days ÷ gross charges`, rounded half away from zero); `None` without charges.
    pub fn days_in_ar(&self) -> Option<i64> {
        self.totals.days_in_ar(self.period_days()?)
    }

    /// An adjustment reason's rate: -adjustments ÷ gross charges of the whole selection.
    pub fn adjustment_rate(&self, group: &Group) -> Option<Rate> {
        Rate::of(
            Cents(-group.totals.adjustments.0),
            self.totals.gross_charges,
        )
    }

    /// The API's JSON: money as exact decimal strings, rates as 4-place decimal strings (null when undefined).
    pub fn to_json(&self) -> Value {
        let groups = |g: &[Group]| Value::Array(g.iter().map(Group::to_json).collect());
        let filters: serde_json::Map<String, Value> = self
            .filters
            .pairs()
            .into_iter()
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect();
        let adjustments: Vec<Value> = self
            .adjustments
            .iter()
            .map(|g| {
                let mut v = g.to_json();
                v["adjustment_rate"] = json!(self.adjustment_rate(g).map(Rate::decimal));
                v
            })
            .collect();
        let compared = |(label, t): &(String, Totals)| {
            let mut v = t.to_json();
            v["month"] = json!(label);
            v
        };
        json!({
            "filters": filters,
            "totals": self.totals.to_json(),
            "first_post_date": self.first_post_date,
            "last_post_date": self.last_post_date,
            "as_of": self.as_of.map(|d| d.to_string()),
            "period_days": self.period_days(),
            "days_in_ar": self.days_in_ar().map(tenths),
            "timeline": {
                "grain": self.filters.grain.name(),
                "dates": self.filters.dates.name(),
                "periods": groups(&self.timeline),
            },
            "payers": groups(&self.payers),
            "specialties": groups(&self.specialties),
            "locations": groups(&self.locations),
            "cpt_groups": groups(&self.cpt_groups),
            "top_physicians": groups(&self.physicians),
            "top_cpt_codes": groups(&self.cpt_codes),
            "adjustments_by_reason": adjustments,
            "ar_aging": self.aging.iter().map(|b| json!({
                "bucket": b.label,
                "ar": b.ar.decimal(),
                "transactions": b.transactions,
            })).collect::<Vec<_>>(),
            "comparison": self.comparison.as_ref().map(|c| json!({
                "month": c.month,
                "current": c.current.to_json(),
                "previous_month": compared(&c.previous_month),
                "previous_year": compared(&c.previous_year),
            })),
            "quality": self.quality.iter().map(|q| json!({
                "figure": q.figure,
                "column": q.column,
                "dimension": q.dimension,
                "rows": q.rows,
            })).collect::<Vec<_>>(),
            "data_as_of": self.data_as_of.iter().map(|(table, at)| json!({
                "table": table,
                "last_load_utc": at,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The choices of the filter form, from the dimension tables: the keyed slices' keys and names, the other slices'
/// distinct values (the age bands are fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterOptions {
    /// Per keyed slice (payer, location, physician): key and name, by name.
    pub keyed: Vec<(Slice, Vec<(i64, String)>)>,
    /// Per named slice: the distinct values, in order.
    pub named: Vec<(Slice, Vec<String>)>,
}

impl FilterOptions {
    /// The API's JSON: one list per slice, keyed ones as `{id, name}`.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (slice, choices) in &self.keyed {
            out.insert(
                plural(*slice).to_string(),
                choices
                    .iter()
                    .map(|(id, name)| json!({ "id": id, "name": name }))
                    .collect(),
            );
        }
        for (slice, choices) in &self.named {
            out.insert(plural(*slice).to_string(), json!(choices));
        }
        Value::Object(out)
    }

    /// The keys and names of a keyed slice.
    pub fn keyed(&self, slice: Slice) -> &[(i64, String)] {
        self.keyed
            .iter()
            .find(|(s, _)| *s == slice)
            .map_or(&[], |(_, c)| c.as_slice())
    }

    /// The values of a named slice.
    pub fn named(&self, slice: Slice) -> &[String] {
        self.named
            .iter()
            .find(|(s, _)| *s == slice)
            .map_or(&[], |(_, c)| c.as_slice())
    }

    /// How a choice reads: a key as its name when the form knows it.
    pub fn describe(&self, slice: Slice, choice: &Choice) -> String {
        match choice {
            Choice::Id(id) => self
                .keyed(slice)
                .iter()
                .find(|(k, _)| k == id)
                .map_or_else(|| format!("#{id}"), |(_, n)| n.clone()),
            Choice::Name(name) => name.clone(),
        }
    }
}

/// The API's name of a slice's list of choices.
fn plural(slice: Slice) -> &'static str {
    match slice {
        Slice::Payer => "payers",
        Slice::Location => "locations",
        Slice::Physician => "physicians",
        Slice::Specialty => "specialties",
        Slice::CptGroup => "cpt_groups",
        Slice::Cpt => "cpt_codes",
        Slice::DiagnosisGroup => "diagnosis_groups",
        Slice::Diagnosis => "diagnosis_codes",
        Slice::Gender => "genders",
        Slice::AgeBand => "age_bands",
        Slice::State => "states",
    }
}

/// Where a slice's choices are read: the dimension table and its key (keyed slices) or value column.
fn source(slice: Slice) -> Option<(&'static str, Option<&'static str>, &'static str)> {
    match slice {
        Slice::Payer => Some(("dim_payer", Some("dim_payer_pk"), "payer_name")),
        Slice::Location => Some(("dim_location", Some("dim_location_pk"), "location_name")),
        Slice::Physician => Some(("dim_physician", Some("dim_physician_pk"), "provider_name")),
        Slice::Specialty => Some(("dim_physician", None, "provider_specialty")),
        Slice::CptGroup => Some(("dim_cpt_code", None, "cpt_grouping")),
        Slice::Cpt => Some(("dim_cpt_code", None, "cpt_code")),
        Slice::DiagnosisGroup => Some(("dim_diagnosis_code", None, "diagnosis_code_group")),
        Slice::Diagnosis => Some(("dim_diagnosis_code", None, "diagnosis_code")),
        Slice::Gender => Some(("dim_patient", None, "patient_gender")),
        Slice::State => Some(("dim_patient", None, "state")),
        Slice::AgeBand => None,
    }
}

const SUMS: [&Measure; 6] = [
    &TRANSACTIONS,
    &CPT_UNITS,
    &GROSS_CHARGES,
    &PAYMENTS,
    &ADJUSTMENTS,
    &AR,
];

fn text(row: &Row, i: usize, column: &'static str) -> Result<Option<String>, DashboardError> {
    row.try_get::<_, Option<String>>(i)
        .map_err(|e| DashboardError::Decode {
            column,
            value: e.to_string(),
        })
}

fn cents(row: &Row, i: usize, column: &'static str) -> Result<Cents, DashboardError> {
    let value = text(row, i, column)?.unwrap_or_default();
    Cents::parse(&value).ok_or(DashboardError::Decode { column, value })
}

fn day(row: &Row, i: usize, column: &'static str) -> Result<Option<Date>, DashboardError> {
    text(row, i, column)?
        .map(|v| super::filters::parse_day(&v).ok_or(DashboardError::Decode { column, value: v }))
        .transpose()
}

/// Read the six sums that follow the grain's columns.
fn totals(row: &Row, at: usize) -> Result<Totals, DashboardError> {
    let count = text(row, at, "transactions")?.unwrap_or_default();
    Ok(Totals {
        transactions: count.parse().map_err(|_| DashboardError::Decode {
            column: "transactions",
            value: count,
        })?,
        cpt_units: cents(row, at + 1, "cpt_units")?,
        gross_charges: cents(row, at + 2, "gross_charges")?,
        payments: cents(row, at + 3, "payments")?,
        adjustments: cents(row, at + 4, "adjustments")?,
        ar: cents(row, at + 5, "ar")?,
    })
}

/// Run one filtered aggregate in the open transaction.
async fn aggregate(
    client: &Client,
    grain: &[&Attribute],
    extra: &[&Measure],
    filters: &Filters,
) -> Result<Vec<Row>, DashboardError> {
    let (conditions, params) = filters.conditions();
    let measures: Vec<&Measure> = SUMS.iter().copied().chain(extra.iter().copied()).collect();
    let sql = aggregate_sql(grain, &measures, &conditions);
    let refs: Vec<_> = params.iter().map(|p| p.as_sql()).collect();
    client
        .query(&sql, &refs)
        .await
        .map_err(|e| DashboardError::Query(describe(&e)))
}

/// Groups keyed by an id column (or none) and labelled by the next one, largest gross charges first.
async fn breakdown(
    client: &Client,
    grain: &[&Attribute],
    filters: &Filters,
) -> Result<Vec<Group>, DashboardError> {
    let keyed = grain.len() == 2;
    let rows = aggregate(client, grain, &[], filters).await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = if keyed {
            match text(row, 0, "id")? {
                Some(v) => Some(v.parse().map_err(|_| DashboardError::Decode {
                    column: "id",
                    value: v,
                })?),
                None => None,
            }
        } else {
            None
        };
        let at = usize::from(keyed);
        groups.push(Group {
            id,
            label: text(row, at, "label")?.unwrap_or_else(|| UNKNOWN.to_string()),
            totals: totals(row, at + 1)?,
        });
    }
    groups.sort_by(|a, b| {
        b.totals
            .gross_charges
            .cmp(&a.totals.gross_charges)
            .then_with(|| a.label.cmp(&b.label))
    });
    Ok(groups)
}

/// Sums per period start, for the periods that have lines.
async fn periods(
    client: &Client,
    grain: Grain,
    filters: &Filters,
) -> Result<Vec<(Date, Totals)>, DashboardError> {
    let mut out = Vec::new();
    for row in aggregate(client, &[grain.attribute(filters.dates)], &[], filters).await? {
        if let Some(start) = day(&row, 0, "period")? {
            out.push((start, totals(&row, 1)?));
        }
    }
    Ok(out)
}

/// Starts the read-only snapshot the summary's queries share. Written out rather than built by the driver, whose
/// builder separates the modes with a comma that Redshift's `START TRANSACTION` does not accept (both take spaces;
/// Redshift runs every level as serializable).
const BEGIN_SNAPSHOT: &str = "START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// The figures of the whole warehouse that no filter changes: the data-quality panel and each table's "data as
/// of". The most expensive part of a page at volume (the orphan counts read the whole fact table once per key), so
/// the server reads them once per warehouse version ([`super::cache`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfiltered {
    /// The data-quality figures.
    pub quality: Vec<QualityFigure>,
    /// When each table's last load committed.
    pub data_as_of: Vec<(String, String)>,
}

/// Read the [`Unfiltered`] figures.
pub async fn unfiltered(client: &Client) -> Result<Unfiltered, DashboardError> {
    Ok(Unfiltered {
        quality: data_quality(client).await?,
        data_as_of: data_as_of(client).await?,
    })
}

/// Totals and breakdowns for `filters`, read in one read-only repeatable-read transaction so that they agree.
pub async fn summary(client: &mut Client, filters: &Filters) -> Result<Summary, DashboardError> {
    summary_with(client, filters, None).await
}

/// [`summary`], taking the [`Unfiltered`] figures as given when they are.
pub async fn summary_with(
    client: &mut Client,
    filters: &Filters,
    unfiltered: Option<&Unfiltered>,
) -> Result<Summary, DashboardError> {
    client
        .batch_execute(BEGIN_SNAPSHOT)
        .await
        .map_err(|e| DashboardError::Query(describe(&e)))?;
    let result = summary_in_snapshot(client, filters, unfiltered).await;
    // Read-only: ending it either way changes nothing; a broken connection is reconnected by the next request.
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await;
    let summary = result?;
    ended.map_err(|e| DashboardError::Query(describe(&e)))?;
    Ok(summary)
}

async fn summary_in_snapshot(
    client: &Client,
    filters: &Filters,
    unfiltered: Option<&Unfiltered>,
) -> Result<Summary, DashboardError> {
    let rows = aggregate(client, &[], &[&FIRST_POST_DATE, &LAST_POST_DATE], filters).await?;
    let row = rows
        .first()
        .ok_or_else(|| DashboardError::Query("the totals query returned no row".into()))?;
    let totals_row = totals(row, 0)?;
    let first_post_date = text(row, 6, "first_post_date")?;
    let last_post_date = text(row, 7, "last_post_date")?;
    let as_of = match filters.to {
        Some(to) => Some(to),
        None => day(row, 7, "last_post_date")?,
    };

    let timeline = dates::fill(
        filters.grain,
        &periods(client, filters.grain, filters).await?,
        filters.from,
        filters.to,
    )
    .into_iter()
    .map(|(start, totals)| Group {
        id: None,
        label: dates::label(filters.grain, start),
        totals,
    })
    .collect();
    let payers = breakdown(client, &[&PAYER_ID, &PAYER_NAME], filters).await?;
    let specialties = breakdown(client, &[&SPECIALTY], filters).await?;
    let locations = breakdown(client, &[&LOCATION_ID, &LOCATION_NAME], filters).await?;
    let cpt_groups = breakdown(client, &[&CPT_GROUPING], filters).await?;
    let mut physicians = breakdown(client, &[&PHYSICIAN_ID, &PHYSICIAN_NAME], filters).await?;
    physicians.truncate(TOP);
    let mut cpt_codes = breakdown(client, &[&CPT_CODE], filters).await?;
    cpt_codes.truncate(TOP);
    let mut adjustments = breakdown(client, &[&ADJUSTMENT_REASON], filters).await?;
    adjustments.retain(|g| g.totals.adjustments.0 != 0);
    adjustments.sort_by(|a, b| {
        a.totals
            .adjustments
            .cmp(&b.totals.adjustments)
            .then_with(|| a.label.cmp(&b.label))
    });
    let aging = match as_of {
        Some(as_of) => aging(client, filters, as_of).await?,
        None => Vec::new(),
    };
    let comparison = match as_of {
        Some(as_of) => Some(dates::compare(
            as_of,
            &periods(client, Grain::Month, &filters.without_range()).await?,
        )),
        None => None,
    };
    let Unfiltered {
        quality,
        data_as_of,
    } = match unfiltered {
        Some(u) => u.clone(),
        None => self::unfiltered(client).await?,
    };
    Ok(Summary {
        filters: filters.clone(),
        totals: totals_row,
        first_post_date,
        last_post_date,
        as_of,
        timeline,
        payers,
        specialties,
        locations,
        cpt_groups,
        physicians,
        cpt_codes,
        adjustments,
        aging,
        comparison,
        quality,
        data_as_of,
    })
}

/// AR by days from service date to `as_of`, from the sums per service date.
async fn aging(
    client: &Client,
    filters: &Filters,
    as_of: Date,
) -> Result<Vec<Bucket>, DashboardError> {
    let mut by_date = Vec::new();
    for row in aggregate(client, &[&SERVICE_DATE], &[], filters).await? {
        by_date.push((day(&row, 0, "service_date")?, totals(&row, 1)?));
    }
    Ok(dates::age(as_of, &by_date))
}

/// The warehouse's version as the ledger tells it: the number of loads committed and when the latest finished.
/// Every committed load adds its ledger row in the load's own transaction, so this changes whenever the data does.
pub async fn data_version(client: &Client) -> Result<(i64, Option<String>), DashboardError> {
    let sql = format!(
        "SELECT COUNT(*), TO_CHAR(MAX(finished_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM {}",
        crate::warehouse::ledger()
    );
    let rows = client_query(client, &sql).await?;
    let row = rows
        .first()
        .ok_or_else(|| DashboardError::Query("the ledger count returned no row".into()))?;
    let count = row
        .try_get::<_, i64>(0)
        .map_err(|e| DashboardError::Decode {
            column: "count",
            value: e.to_string(),
        })?;
    Ok((count, text(row, 1, "finished_at")?))
}

/// When each table's last load committed, from the ledger (UTC, to the minute).
async fn data_as_of(client: &Client) -> Result<Vec<(String, String)>, DashboardError> {
    let sql = format!(
        "SELECT table_name, TO_CHAR(MAX(finished_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM {} \
         WHERE status = 'loaded' GROUP BY table_name ORDER BY table_name",
        crate::warehouse::ledger()
    );
    client_query(client, &sql)
        .await?
        .iter()
        .map(|row| {
            Ok((
                text(row, 0, "table_name")?.unwrap_or_default(),
                text(row, 1, "last load")?.unwrap_or_default(),
            ))
        })
        .collect()
}

/// The warehouse's data-quality figures, from `reporting.data_quality` (counts only).
async fn data_quality(client: &Client) -> Result<Vec<QualityFigure>, DashboardError> {
    let sql = format!(
        "SELECT figure, column_name, dimension, row_count FROM {}.{} ORDER BY figure DESC, column_name",
        quote_ident(crate::schema::reporting_schema()),
        quote_ident(crate::reporting::DATA_QUALITY)
    );
    client_query(client, &sql)
        .await?
        .iter()
        .map(|row| {
            Ok(QualityFigure {
                figure: text(row, 0, "figure")?.unwrap_or_default(),
                column: text(row, 1, "column_name")?.unwrap_or_default(),
                dimension: text(row, 2, "dimension")?,
                rows: row
                    .try_get(3)
                    .map_err(|e| DashboardError::Query(e.to_string()))?,
            })
        })
        .collect()
}

/// The choices the filter form offers, read from the dimension tables (no patient-level rows: distinct genders and
/// states only).
pub async fn filter_options(client: &Client) -> Result<FilterOptions, DashboardError> {
    let mut options = FilterOptions::default();
    for slice in Slice::ALL {
        let Some((table, key, column)) = source(slice) else {
            options.named.push((
                slice,
                AGE_BANDS[..3].iter().map(|b| b.to_string()).collect(),
            ));
            continue;
        };
        let table = format!("{}.{}", quote_ident(data_schema()), quote_ident(table));
        let column = quote_ident(column);
        match key {
            Some(key) => {
                let sql = format!(
                    "SELECT CAST({key} AS VARCHAR), {column} FROM {table} ORDER BY {column}, {key}",
                    key = quote_ident(key)
                );
                options
                    .keyed
                    .push((slice, keyed_names(client, &sql).await?));
            }
            None => {
                let sql = format!(
                    "SELECT DISTINCT CAST({column} AS VARCHAR) FROM {table} WHERE {column} IS NOT NULL \
                     ORDER BY 1"
                );
                let mut values = Vec::new();
                for row in client_query(client, &sql).await? {
                    values.extend(text(&row, 0, "value")?);
                }
                options.named.push((slice, values));
            }
        }
    }
    Ok(options)
}

async fn client_query(client: &Client, sql: &str) -> Result<Vec<Row>, DashboardError> {
    client
        .query(sql, &[])
        .await
        .map_err(|e| DashboardError::Query(describe(&e)))
}

async fn keyed_names(client: &Client, sql: &str) -> Result<Vec<(i64, String)>, DashboardError> {
    let mut out = Vec::new();
    for row in client_query(client, sql).await? {
        let key = text(&row, 0, "key")?.unwrap_or_default();
        let key = key.parse().map_err(|_| DashboardError::Decode {
            column: "key",
            value: key,
        })?;
        let name = text(&row, 1, "name")?.unwrap_or_else(|| UNKNOWN.to_string());
        out.push((key, name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warehouse_decimals_parse_to_exact_hundredths() {
        assert_eq!(Cents::parse("1234.50"), Some(Cents(123_450)));
        assert_eq!(Cents::parse("-0.05"), Some(Cents(-5)));
        assert_eq!(Cents::parse("0"), Some(Cents(0)));
        assert_eq!(Cents::parse("12.5"), Some(Cents(1250)));
        assert_eq!(Cents::parse("1.234"), None);
        assert_eq!(Cents::parse(""), None);
        assert_eq!(Cents::parse("-"), None);
        assert_eq!(Cents::parse("1e3"), None);
    }

    #[test]
    fn money_formats_for_the_api_and_for_people() {
        assert_eq!(Cents(-123_456_789).decimal(), "-1234567.89");
        assert_eq!(Cents(5).decimal(), "0.05");
        assert_eq!(Cents(123_456_789).dollars(), "$1,234,567.89");
        assert_eq!(Cents(-5).dollars(), "-$0.05");
        assert_eq!(Cents(123_450).whole_dollars(), "$1,235");
        assert_eq!(Cents(99_949).whole_dollars(), "$999");
    }

    #[test]
    fn compact_money_rounds_to_a_short_unit() {
        assert_eq!(Cents(31_840_012_345).compact(), "$318.4M");
        assert_eq!(Cents(-1_234_567).compact(), "-$12.3K");
        assert_eq!(Cents(35_700).compact(), "$357");
        assert_eq!(Cents(99_949).compact(), "$999");
        assert_eq!(Cents(99_950).compact(), "$1.0K");
        assert_eq!(Cents(99_995_000).compact(), "$1.0M");
        assert_eq!(Cents(0).compact(), "$0");
        assert_eq!(Cents(-20).compact(), "$0");
        assert_eq!(Cents(i64::MAX).compact(), "$92234T");
        assert_eq!(Cents(i64::MIN).compact(), "-$92234T");
    }

    #[test]
    fn rates_round_half_away_from_zero_to_four_places() {
        assert_eq!(Rate::of(Cents(1), Cents(3)), Some(Rate(3333)));
        assert_eq!(Rate::of(Cents(2), Cents(3)), Some(Rate(6667)));
        assert_eq!(Rate::of(Cents(1), Cents(20_000)), Some(Rate(1)));
        assert_eq!(Rate::of(Cents(-1), Cents(20_000)), Some(Rate(-1)));
        assert_eq!(Rate::of(Cents(1), Cents(0)), None);
        assert_eq!(Rate(4567).decimal(), "0.4567");
        assert_eq!(Rate(-12).decimal(), "-0.0012");
        assert_eq!(Rate(4567).to_string(), "45.67%");
    }

    #[test]
    fn collected_and_the_rates_follow_the_sign_convention() {
        let t = Totals {
            gross_charges: Cents(100_000),
            payments: Cents(-40_000),
            adjustments: Cents(-20_000),
            ..Totals::default()
        };
        assert_eq!(t.collected(), Cents(40_000));
        assert_eq!(t.gross_collection_rate(), Some(Rate(4000)));
        assert_eq!(t.net_collection_rate(), Some(Rate(5000)));
    }
}

/// A small summary for the page's, the tables' and the charts' unit tests.
#[cfg(test)]
pub mod tests_support {
    use super::*;

    /// Three groups per breakdown, a gap in the timeline, an orphan finding and one loaded table.
    pub fn sample_summary() -> Summary {
        let totals = |gross: i64, paid: i64| Totals {
            transactions: 3,
            cpt_units: Cents(300),
            gross_charges: Cents(gross),
            payments: Cents(-paid),
            adjustments: Cents(-10_000),
            ar: Cents(gross - paid - 10_000),
        };
        let group = |id, label: &str, t| Group {
            id,
            label: label.to_string(),
            totals: t,
        };
        let three = |labels: [&str; 3]| {
            vec![
                group(Some(3), labels[0], totals(300_000, 100_000)),
                group(Some(1), labels[1], totals(200_000, 150_000)),
                group(None, labels[2], totals(100_000, 20_000)),
            ]
        };
        Summary {
            filters: Filters::from_pairs([("payer", "3")]).unwrap_or_default(),
            totals: totals(600_000, 270_000),
            first_post_date: Some("2020-01-02".into()),
            last_post_date: Some("2020-03-31".into()),
            as_of: super::super::filters::parse_day("2020-03-31"),
            timeline: vec![
                group(None, "2020-01", totals(400_000, 200_000)),
                group(None, "2020-02", Totals::default()),
                group(None, "2020-03", totals(200_000, 70_000)),
            ],
            payers: three(["Aetna & Co", "Medicare", UNKNOWN]),
            specialties: three(["Cardiology", "Psychiatry", UNKNOWN]),
            locations: three(["St. Luke’s", "Fairview", UNKNOWN]),
            cpt_groups: three(["Surgery", "Medicine", UNKNOWN]),
            physicians: three(["Dr. A", "Dr. B", UNKNOWN]),
            cpt_codes: three(["99213", "99214", UNKNOWN]),
            adjustments: vec![group(None, "Contractual", totals(0, 0))],
            aging: AGING
                .iter()
                .map(|&(label, _)| Bucket {
                    label,
                    ar: Cents(64_000),
                    transactions: 1,
                })
                .collect(),
            comparison: Some(Comparison {
                month: "2020-03".into(),
                current: totals(200_000, 70_000),
                previous_month: ("2020-02".into(), Totals::default()),
                previous_year: ("2019-03".into(), totals(100_000, 70_000)),
            }),
            quality: vec![
                QualityFigure {
                    figure: "orphans".into(),
                    column: "dim_patient_pk".into(),
                    dimension: Some("dim_patient".into()),
                    rows: 1200,
                },
                QualityFigure {
                    figure: "ar_mismatch".into(),
                    column: "ar".into(),
                    dimension: None,
                    rows: 0,
                },
            ],
            data_as_of: vec![("fact_table".into(), "2024-06-01 12:00".into())],
        }
    }
}
