//! The tables under the charts, declared once for the page (sortable through links, no script) and for the CSV
//! export (`/export/<table>.csv`, exact values): aggregates only, one row per period, group or bucket — never a
//! patient-level row.

use std::cmp::Ordering;

use super::filters::Sort;
use super::queries::{Cents, Group, Rate, Summary, Totals, grouped};

/// A table's id (the export's file name and the sort's prefix), the key of its first column (the group's name)
/// and its other columns' keys.
struct Spec {
    id: &'static str,
    name: &'static str,
    columns: &'static [&'static str],
}

impl Spec {
    fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.name).chain(self.columns.iter().copied())
    }
}

/// The columns of the breakdowns by gross charges.
const BREAKDOWN: &[&str] = &[
    "gross_charges",
    "collected",
    "ar",
    "net_collection_rate",
    "transactions",
];

const fn breakdown(id: &'static str, name: &'static str) -> Spec {
    Spec {
        id,
        name,
        columns: BREAKDOWN,
    }
}

const SPECS: [Spec; 9] = [
    Spec {
        id: "timeline",
        name: "period",
        columns: &[
            "gross_charges",
            "collected",
            "adjustments",
            "ar",
            "transactions",
        ],
    },
    Spec {
        id: "payers",
        name: "payer",
        columns: &[
            "gross_charges",
            "collected",
            "ar",
            "gross_collection_rate",
            "net_collection_rate",
            "transactions",
        ],
    },
    Spec {
        id: "aging",
        name: "bucket",
        columns: &["ar", "share", "transactions"],
    },
    Spec {
        id: "adjustments",
        name: "reason",
        columns: &["adjustments", "adjustment_rate", "transactions"],
    },
    breakdown("specialties", "specialty"),
    breakdown("locations", "location"),
    breakdown("cpt_groups", "cpt_group"),
    breakdown("physicians", "physician"),
    breakdown("cpt_codes", "cpt_code"),
];

/// A column's heading.
fn heading(key: &str) -> &'static str {
    match key {
        "period" => "Period",
        "payer" => "Payer",
        "bucket" => "Days since service",
        "reason" => "Adjustment reason",
        "specialty" => "Specialty",
        "location" => "Location",
        "cpt_group" => "CPT group",
        "physician" => "Physician",
        "cpt_code" => "CPT code",
        "gross_charges" => "Gross charges",
        "collected" => "Collected",
        "adjustments" => "Adjustments",
        "ar" => "AR outstanding",
        "share" => "Share of AR",
        "gross_collection_rate" => "Gross collection rate",
        "net_collection_rate" => "Net collection rate",
        "adjustment_rate" => "Adjustment rate",
        "transactions" => "Transactions",
        _ => "",
    }
}

/// Whether `table` has a column `column` (a valid `sort`).
pub fn sortable(table: &str, column: &str) -> bool {
    SPECS
        .iter()
        .any(|s| s.id == table && s.keys().any(|k| k == column))
}

/// One value of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// A name, code, period or bucket.
    Text(String),
    /// Money.
    Money(Cents),
    /// A count.
    Count(i64),
    /// A rate (`None`: undefined).
    Rate(Option<Rate>),
}

impl Cell {
    /// How the page shows it: money exact to the cent (`$1,234.50`), rates as percentages.
    pub fn display(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Money(c) => c.dollars(),
            Cell::Count(n) => {
                let sign = if *n < 0 { "-" } else { "" };
                format!("{sign}{}", grouped(n.unsigned_abs()))
            }
            Cell::Rate(r) => r.map_or_else(|| "n/a".into(), |r| r.to_string()),
        }
    }

    /// The exact value, as the CSV and the API give it (`-1234.50`, `0.4567`; empty when undefined).
    pub fn exact(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Money(c) => c.decimal(),
            Cell::Count(n) => n.to_string(),
            Cell::Rate(r) => r.map(Rate::decimal).unwrap_or_default(),
        }
    }

    /// Whether it is a number (right-aligned).
    pub fn numeric(&self) -> bool {
        !matches!(self, Cell::Text(_))
    }

    fn order(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            (Cell::Money(a), Cell::Money(b)) => a.cmp(b),
            (Cell::Count(a), Cell::Count(b)) => a.cmp(b),
            (Cell::Rate(a), Cell::Rate(b)) => a.map(|r| r.0).cmp(&b.map(|r| r.0)),
            _ => Ordering::Equal,
        }
    }
}

/// A table: id, caption, columns (key and heading) and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The id ([`SPECS`]).
    pub id: &'static str,
    /// What it lists.
    pub caption: String,
    /// Key and heading of each column.
    pub columns: Vec<(&'static str, &'static str)>,
    /// The rows, in the order asked for.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// The table as CSV (RFC 4180, header of column keys, exact values). A text value that a spreadsheet would
    /// run as a formula (`=`, `+`, `-`, `@`) is prefixed with `'`.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, fields: Vec<String>| {
            let quoted: Vec<String> = fields.into_iter().map(|f| csv_field(&f)).collect();
            out.push_str(&quoted.join(","));
            out.push_str("\r\n");
        };
        line(
            &mut out,
            self.columns.iter().map(|(k, _)| k.to_string()).collect(),
        );
        for row in &self.rows {
            line(
                &mut out,
                row.iter()
                    .map(|c| match c {
                        Cell::Text(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
                            format!("'{s}")
                        }
                        c => c.exact(),
                    })
                    .collect(),
            );
        }
        out
    }

    fn sort(&mut self, sort: &Sort) {
        if sort.table != self.id {
            return;
        }
        if let Some(i) = self.columns.iter().position(|(k, _)| *k == sort.column) {
            self.rows.sort_by(|a, b| {
                let o = a[i].order(&b[i]);
                if sort.descending { o.reverse() } else { o }
            });
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The value of column `key` for a group.
fn cell(key: &str, g: &Group, summary: &Summary) -> Cell {
    let t = &g.totals;
    match key {
        "gross_charges" => Cell::Money(t.gross_charges),
        "collected" => Cell::Money(t.collected()),
        "adjustments" => Cell::Money(t.adjustments),
        "ar" => Cell::Money(t.ar),
        "share" => Cell::Rate(Rate::of(t.ar, summary.totals.ar)),
        "gross_collection_rate" => Cell::Rate(t.gross_collection_rate()),
        "net_collection_rate" => Cell::Rate(t.net_collection_rate()),
        "adjustment_rate" => Cell::Rate(summary.adjustment_rate(g)),
        "transactions" => Cell::Count(t.transactions),
        _ => Cell::Text(g.label.clone()),
    }
}

/// Every table of the summary, sorted as its filters ask.
pub fn tables(summary: &Summary) -> Vec<Table> {
    SPECS.iter().map(|spec| table(summary, spec)).collect()
}

/// The table `id` as CSV, if there is such a table.
pub fn export(summary: &Summary, id: &str) -> Option<String> {
    let spec = SPECS.iter().find(|s| s.id == id)?;
    Some(table(summary, spec).csv())
}

/// The ids of the tables that can be exported.
pub fn ids() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.id)
}

fn table(summary: &Summary, spec: &Spec) -> Table {
    let f = &summary.filters;
    let aging: Vec<Group>;
    let (caption, groups): (String, &[Group]) = match spec.id {
        "timeline" => (
            format!("Per {} of {} date", f.grain.name(), f.dates.name()),
            summary.timeline.as_slice(),
        ),
        "payers" => ("Collections by payer".into(), summary.payers.as_slice()),
        "aging" => {
            aging = summary
                .aging
                .iter()
                .map(|b| Group {
                    id: None,
                    label: b.label.to_string(),
                    totals: Totals {
                        ar: b.ar,
                        transactions: b.transactions,
                        ..Totals::default()
                    },
                })
                .collect();
            (
                format!(
                    "AR aging: days from service date to {}",
                    summary
                        .as_of
                        .map_or_else(|| "the as-of date".into(), |d| d.to_string())
                ),
                aging.as_slice(),
            )
        }
        "adjustments" => (
            "Adjustments by reason".into(),
            summary.adjustments.as_slice(),
        ),
        "specialties" => (
            "Gross charges by specialty".into(),
            summary.specialties.as_slice(),
        ),
        "locations" => (
            "Gross charges by location".into(),
            summary.locations.as_slice(),
        ),
        "cpt_groups" => (
            "Gross charges by CPT group".into(),
            summary.cpt_groups.as_slice(),
        ),
        "physicians" => (
            "Top physicians by gross charges".into(),
            summary.physicians.as_slice(),
        ),
        _ => (
            "Top CPT codes by gross charges".into(),
            summary.cpt_codes.as_slice(),
        ),
    };
    let mut table = Table {
        id: spec.id,
        caption,
        columns: spec.keys().map(|k| (k, heading(k))).collect(),
        rows: groups
            .iter()
            .map(|g| spec.keys().map(|k| cell(k, g, summary)).collect())
            .collect(),
    };
    if let Some(sort) = &f.sort {
        table.sort(sort);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::super::queries::tests_support::sample_summary;
    use super::*;

    #[test]
    fn every_table_has_headings_and_one_row_per_group() {
        let s = sample_summary();
        let all = tables(&s);
        assert_eq!(all.len(), SPECS.len());
        for t in &all {
            assert!(t.columns.iter().all(|(_, h)| !h.is_empty()), "{}", t.id);
            assert!(
                t.rows.iter().all(|r| r.len() == t.columns.len()),
                "{}",
                t.id
            );
        }
        let payers = all.iter().find(|t| t.id == "payers").unwrap();
        assert_eq!(payers.rows.len(), s.payers.len());
    }

    #[test]
    fn a_sort_orders_only_its_table_and_undefined_rates_sort_first_ascending() {
        let mut s = sample_summary();
        s.filters.sort = Some(Sort {
            table: "payers".into(),
            column: "collected".into(),
            descending: false,
        });
        let payers = table(&s, &SPECS[1]);
        let collected: Vec<String> = payers.rows.iter().map(|r| r[2].exact()).collect();
        let mut sorted = collected.clone();
        sorted.sort_by_key(|v| Cents::parse(v).unwrap());
        assert_eq!(collected, sorted);
        let locations = table(&s, &SPECS[5]);
        assert_eq!(
            locations.rows[0][0],
            Cell::Text(s.locations[0].label.clone())
        );
        assert_eq!(
            Cell::Rate(None).order(&Cell::Rate(Some(Rate(0)))),
            Ordering::Less
        );
    }

    #[test]
    fn the_csv_has_exact_values_quoted_fields_and_defused_formulas() {
        let t = Table {
            id: "payers",
            caption: String::new(),
            columns: vec![
                ("payer", "Payer"),
                ("collected", "Collected"),
                ("net_collection_rate", "x"),
            ],
            rows: vec![
                vec![
                    Cell::Text("Blue Cross, \"Blue\" Shield".into()),
                    Cell::Money(Cents(-123_456)),
                    Cell::Rate(None),
                ],
                vec![
                    Cell::Text("=HYPERLINK(1)".into()),
                    Cell::Money(Cents(5)),
                    Cell::Rate(Some(Rate(4567))),
                ],
            ],
        };
        assert_eq!(
            t.csv(),
            "payer,collected,net_collection_rate\r\n\"Blue Cross, \"\"Blue\"\" Shield\",-1234.56,\r\n\
             '=HYPERLINK(1),0.05,0.4567\r\n"
        );
    }

    #[test]
    fn exports_exist_for_every_table_and_only_for_them() {
        let s = sample_summary();
        for id in ids() {
            assert!(export(&s, id).is_some(), "{id}");
            assert!(sortable(id, "transactions"), "{id}");
        }
        assert!(export(&s, "patients").is_none());
        assert!(!sortable("payers", "patient_number"));
    }
}
