//! What the dashboard shows, read from the warehouse: totals and breakdowns for a set of filters (aggregates only,
//! parameterized, in one read-only transaction) and the choices its filter form offers.

use std::fmt;

use serde_json::{Value, json};
use tokio_postgres::{Client, Row};

use super::DashboardError;
use super::filters::Filters;
use crate::reporting::{
    ADJUSTMENTS, AR, Attribute, CPT_GROUPING, CPT_UNITS, FIRST_POST_DATE, GROSS_CHARGES,
    LAST_POST_DATE, LOCATION_ID, LOCATION_NAME, Measure, PAYER_ID, PAYER_NAME, PAYMENTS,
    POST_MONTH, SPECIALTY, TRANSACTIONS, UNKNOWN, aggregate_sql,
};
use crate::schema::quote_ident;
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
    /// Pending AR.
    pub ar: Cents,
}

impl Totals {
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

/// One bar of a breakdown: the group's id (when it has one), label and sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Dimension key (payer, location); `None` for labels without a key and for `unknown`.
    pub id: Option<i64>,
    /// What the group is: the dimension's name, the specialty or CPT grouping, or the month (`YYYY-MM`).
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

/// Everything the dashboard shows for one set of filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The filters the figures are for.
    pub filters: Filters,
    /// The sums over the whole selection.
    pub totals: Totals,
    /// Earliest and latest post date in the selection (`YYYY-MM-DD`).
    pub first_post_date: Option<String>,
    /// Latest post date in the selection (`YYYY-MM-DD`); `None` when it is empty.
    pub last_post_date: Option<String>,
    /// By month of post date (label `YYYY-MM`), in order.
    pub monthly: Vec<Group>,
    /// The breakdowns, each by gross charges, largest first.
    pub payers: Vec<Group>,
    /// By provider specialty.
    pub specialties: Vec<Group>,
    /// By location.
    pub locations: Vec<Group>,
    /// By CPT grouping.
    pub cpt_groups: Vec<Group>,
    /// The data-quality figures of the whole warehouse (not filtered).
    pub quality: Vec<QualityFigure>,
    /// Per table, when its last load committed (UTC, `YYYY-MM-DD HH:MM`), from the ledger.
    pub data_as_of: Vec<(String, String)>,
}

impl Summary {
    /// The API's JSON: money as exact decimal strings, rates as 4-place decimal strings (null when undefined).
    pub fn to_json(&self) -> Value {
        let groups = |g: &[Group]| Value::Array(g.iter().map(Group::to_json).collect());
        json!({
            "filters": {
                "from": self.filters.from,
                "to": self.filters.to,
                "payer": self.filters.payer,
                "location": self.filters.location,
                "specialty": self.filters.specialty,
            },
            "totals": self.totals.to_json(),
            "first_post_date": self.first_post_date,
            "last_post_date": self.last_post_date,
            "monthly": groups(&self.monthly),
            "payers": groups(&self.payers),
            "specialties": groups(&self.specialties),
            "locations": groups(&self.locations),
            "cpt_groups": groups(&self.cpt_groups),
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

/// The choices of the filter form: payers and locations by key, specialties by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterOptions {
    /// `dim_payer_pk` and payer name, by name.
    pub payers: Vec<(i64, String)>,
    /// `dim_location_pk` and location name, by name.
    pub locations: Vec<(i64, String)>,
    /// The distinct provider specialties of `dim_physician`, in order.
    pub specialties: Vec<String>,
}

impl FilterOptions {
    /// The API's JSON.
    pub fn to_json(&self) -> Value {
        let keyed = |v: &[(i64, String)]| {
            Value::Array(
                v.iter()
                    .map(|(id, name)| json!({ "id": id, "name": name }))
                    .collect(),
            )
        };
        json!({
            "payers": keyed(&self.payers),
            "locations": keyed(&self.locations),
            "specialties": self.specialties,
        })
    }

    /// The name of a payer key, if the form knows it.
    pub fn payer_name(&self, id: i64) -> Option<&str> {
        self.payers
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, n)| n.as_str())
    }

    /// The name of a location key, if the form knows it.
    pub fn location_name(&self, id: i64) -> Option<&str> {
        self.locations
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, n)| n.as_str())
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

/// Groups keyed by an id column (or none) and labelled by the next one.
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

/// Starts the read-only snapshot the summary's queries share. Written out rather than built by the driver, whose
/// builder separates the modes with a comma that Redshift's `START TRANSACTION` does not accept (both take spaces;
/// Redshift runs every level as serializable).
const BEGIN_SNAPSHOT: &str = "START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Totals and breakdowns for `filters`, read in one read-only repeatable-read transaction so that they agree.
pub async fn summary(client: &mut Client, filters: &Filters) -> Result<Summary, DashboardError> {
    client
        .batch_execute(BEGIN_SNAPSHOT)
        .await
        .map_err(|e| DashboardError::Query(describe(&e)))?;
    let result = summary_in_snapshot(client, filters).await;
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
) -> Result<Summary, DashboardError> {
    let rows = aggregate(client, &[], &[&FIRST_POST_DATE, &LAST_POST_DATE], filters).await?;
    let row = rows
        .first()
        .ok_or_else(|| DashboardError::Query("the totals query returned no row".into()))?;
    let totals_row = totals(row, 0)?;
    let first_post_date = text(row, 6, "first_post_date")?;
    let last_post_date = text(row, 7, "last_post_date")?;

    let mut monthly = Vec::new();
    for row in aggregate(client, &[&POST_MONTH], &[], filters).await? {
        let Some(month) = text(&row, 0, "post_month")? else {
            continue;
        };
        monthly.push(Group {
            id: None,
            label: month.get(..7).unwrap_or(&month).to_string(),
            totals: totals(&row, 1)?,
        });
    }
    let payers = breakdown(client, &[&PAYER_ID, &PAYER_NAME], filters).await?;
    let specialties = breakdown(client, &[&SPECIALTY], filters).await?;
    let locations = breakdown(client, &[&LOCATION_ID, &LOCATION_NAME], filters).await?;
    let cpt_groups = breakdown(client, &[&CPT_GROUPING], filters).await?;
    let quality = data_quality(client).await?;
    let data_as_of = data_as_of(client).await?;
    Ok(Summary {
        filters: filters.clone(),
        totals: totals_row,
        first_post_date,
        last_post_date,
        monthly,
        payers,
        specialties,
        locations,
        cpt_groups,
        quality,
        data_as_of,
    })
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

/// The payers, locations and specialties the filter form offers (dimension rows, no patient data).
pub async fn filter_options(client: &Client) -> Result<FilterOptions, DashboardError> {
    let payers = keyed_names(
        client,
        "SELECT CAST(dim_payer_pk AS VARCHAR), payer_name FROM \"health\".\"dim_payer\" \
         ORDER BY payer_name, dim_payer_pk",
    )
    .await?;
    let locations = keyed_names(
        client,
        "SELECT CAST(dim_location_pk AS VARCHAR), location_name FROM \"health\".\"dim_location\" \
         ORDER BY location_name, dim_location_pk",
    )
    .await?;
    let rows = client_query(
        client,
        "SELECT DISTINCT provider_specialty FROM \"health\".\"dim_physician\" \
         WHERE provider_specialty IS NOT NULL ORDER BY provider_specialty",
    )
    .await?;
    let mut specialties = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(s) = text(row, 0, "provider_specialty")? {
            specialties.push(s);
        }
    }
    Ok(FilterOptions {
        payers,
        locations,
        specialties,
    })
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
