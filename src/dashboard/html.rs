//! The dashboard page: filter form (live) or filter description (static report), KPI tiles, the charts and a data
//! table behind each chart for screen readers — one HTML document with inline CSS and SVG, no script.

use std::fmt::Write as _;

use super::charts::{self, Bar, Series, Stacked};
use super::escape;
use super::queries::{FilterOptions, Group, QualityFigure, Summary, Totals};

/// Whether the page is served (with a filter form) or written once as a static report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Served by the dashboard server, with a filter form.
    Live,
    /// A static file; the text says when it was generated.
    Static {
        /// When the report was generated, as shown on the page (e.g. `YYYY-MM-DD HH:MM UTC`).
        generated: String,
    },
}

const CSS: &str = r#"
:root { color-scheme: light; --ink: #111827; --muted: #4b5563; --line: #d1d5db; --panel: #f9fafb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; }
header, main, footer { max-width: 1280px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 16px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.05rem; margin: 0 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 12px; }
form.filters { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: flex-end; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 16px; }
form.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); gap: 2px; }
form.filters input, form.filters select { font: inherit; color: var(--ink); padding: 4px 6px; border: 1px solid #9ca3af;
  border-radius: 4px; min-width: 150px; max-width: 260px; }
form.filters button { font: inherit; padding: 6px 16px; border-radius: 4px; border: 1px solid #1e3a8a; background: #1d4ed8; color: #fff; cursor: pointer; }
form.filters a { align-self: center; color: #1d4ed8; }
:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.applied { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; }
dl.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 0 0 18px; }
.kpi { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: #fff; }
.kpi dt { font-size: .85rem; color: var(--muted); }
.kpi dd { margin: 2px 0 0; font-size: 1.35rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: 1fr; gap: 18px; }
@media (min-width: 1100px) { .charts { grid-template-columns: 1fr 1fr; } .wide { grid-column: 1 / -1; } }
figure { position: relative; margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: #fff; }
svg.chart { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2937; }
svg text.axis { fill: #4b5563; font-size: 11px; }
svg text.value { font-variant-numeric: tabular-nums; }
svg text.empty { font-size: 14px; fill: #4b5563; }
svg line.grid { stroke: #e5e7eb; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
footer { color: var(--muted); font-size: .85rem; padding-top: 14px; padding-bottom: 24px; }
section.quality { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 18px 0 0; background: var(--panel); }
section.quality table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
section.quality th, section.quality td { text-align: left; padding: 2px 14px 2px 0; }
section.quality td.n { text-align: right; }
section.quality .finding { color: #92400e; font-weight: 600; }
.error { border: 1px solid #b91c1c; background: #fef2f2; color: #7f1d1d; border-radius: 8px; padding: 10px 14px; }
"#;

/// Content-Security-Policy of the page: nothing may load from anywhere; inline styles only.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                       form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(title)
    );
}

/// An error page for a refused request: the message and a way back.
pub fn error_page(status: &str, message: &str) -> String {
    let mut out = String::new();
    head(&mut out, "Billing dashboard: error");
    let _ = write!(
        out,
        "<main><h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Back to the dashboard</a></p>\
         </main>\n</body>\n</html>\n",
        escape(status),
        escape(message)
    );
    out
}

/// The whole dashboard for `summary`.
pub fn page(summary: &Summary, options: &FilterOptions, mode: &Mode) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, "Healthcare billing dashboard");
    out.push_str("<header>\n<h1>Healthcare billing dashboard</h1>\n");
    let range = match (&summary.first_post_date, &summary.last_post_date) {
        (Some(a), Some(b)) => format!("Post dates {a} to {b}"),
        _ => "No fact lines match".to_string(),
    };
    let _ = writeln!(
        out,
        "<p class=\"subtitle\">{} · {} transactions · aggregates only, no patient-level data</p>",
        escape(&range),
        super::queries::grouped(summary.totals.transactions.unsigned_abs())
    );
    out.push_str("</header>\n<main>\n");
    match mode {
        Mode::Live => filter_form(&mut out, summary, options),
        Mode::Static { generated } => applied_filters(&mut out, summary, options, generated),
    }
    kpis(&mut out, &summary.totals);
    out.push_str("<div class=\"charts\">\n");
    monthly_chart(&mut out, &summary.monthly);
    payer_chart(&mut out, &summary.payers);
    breakdown_chart(
        &mut out,
        "chart-specialty",
        "Gross charges by specialty",
        "specialty",
        &summary.specialties,
    );
    breakdown_chart(
        &mut out,
        "chart-location",
        "Gross charges by location",
        "location",
        &summary.locations,
    );
    breakdown_chart(
        &mut out,
        "chart-cpt",
        "Gross charges by CPT group",
        "CPT group",
        &summary.cpt_groups,
    );
    out.push_str("</div>\n");
    quality_panel(&mut out, &summary.quality);
    as_of_panel(&mut out, &summary.data_as_of);
    out.push_str("</main>\n");
    footer(&mut out, mode);
    out.push_str("</body>\n</html>\n");
    out
}

fn option(out: &mut String, value: &str, label: &str, selected: bool) {
    let _ = write!(
        out,
        "<option value=\"{}\"{}>{}</option>",
        escape(value),
        if selected { " selected" } else { "" },
        escape(label)
    );
}

fn filter_form(out: &mut String, summary: &Summary, options: &FilterOptions) {
    let f = &summary.filters;
    out.push_str("<form class=\"filters\" method=\"get\" action=\"/\" aria-label=\"Filters\">\n");
    let _ = write!(
        out,
        "<label for=\"from\">Post date from<input type=\"date\" id=\"from\" name=\"from\" value=\"{}\"></label>\n\
         <label for=\"to\">Post date to<input type=\"date\" id=\"to\" name=\"to\" value=\"{}\"></label>\n",
        escape(f.from.as_deref().unwrap_or("")),
        escape(f.to.as_deref().unwrap_or(""))
    );
    out.push_str("<label for=\"payer\">Payer<select id=\"payer\" name=\"payer\">");
    option(out, "", "All payers", f.payer.is_none());
    for (id, name) in &options.payers {
        option(out, &id.to_string(), name, f.payer == Some(*id));
    }
    out.push_str("</select></label>\n<label for=\"location\">Location<select id=\"location\" name=\"location\">");
    option(out, "", "All locations", f.location.is_none());
    for (id, name) in &options.locations {
        option(out, &id.to_string(), name, f.location == Some(*id));
    }
    out.push_str("</select></label>\n<label for=\"specialty\">Specialty<select id=\"specialty\" name=\"specialty\">");
    option(out, "", "All specialties", f.specialty.is_none());
    for name in &options.specialties {
        option(out, name, name, f.specialty.as_deref() == Some(name));
    }
    let query = f.to_query();
    let _ = write!(
        out,
        "</select></label>\n<button type=\"submit\">Apply</button>\n<a href=\"/\">Reset</a>\n\
         <a href=\"/api/summary{}{}\">JSON</a>\n</form>\n",
        if query.is_empty() { "" } else { "?" },
        escape(&query)
    );
}

fn applied_filters(out: &mut String, summary: &Summary, options: &FilterOptions, generated: &str) {
    let f = &summary.filters;
    let mut parts = Vec::new();
    if let Some(v) = &f.from {
        parts.push(format!("post date from {v}"));
    }
    if let Some(v) = &f.to {
        parts.push(format!("post date to {v}"));
    }
    if let Some(id) = f.payer {
        parts.push(format!(
            "payer {}",
            options
                .payer_name(id)
                .map_or_else(|| format!("#{id}"), str::to_string)
        ));
    }
    if let Some(id) = f.location {
        parts.push(format!(
            "location {}",
            options
                .location_name(id)
                .map_or_else(|| format!("#{id}"), str::to_string)
        ));
    }
    if let Some(v) = &f.specialty {
        parts.push(format!("specialty {v}"));
    }
    let applied = if parts.is_empty() {
        "none (all data)".to_string()
    } else {
        parts.join("; ")
    };
    let _ = writeln!(
        out,
        "<p class=\"applied\">Static report generated {}. Filters: {}.</p>",
        escape(generated),
        escape(&applied)
    );
}

fn kpis(out: &mut String, t: &Totals) {
    let rate = |r: Option<super::queries::Rate>| {
        r.map_or(("".to_string(), "n/a".to_string()), |r| {
            (r.decimal(), r.to_string())
        })
    };
    let (gross_value, gross_text) = rate(t.gross_collection_rate());
    let (net_value, net_text) = rate(t.net_collection_rate());
    let tiles = [
        (
            "gross_charges",
            "Gross charges",
            t.gross_charges.decimal(),
            t.gross_charges.dollars(),
        ),
        (
            "collected",
            "Payments collected",
            t.collected().decimal(),
            t.collected().dollars(),
        ),
        ("ar", "Pending AR", t.ar.decimal(), t.ar.dollars()),
        (
            "gross_collection_rate",
            "Gross collection rate",
            gross_value,
            gross_text,
        ),
        (
            "net_collection_rate",
            "Net collection rate",
            net_value,
            net_text,
        ),
        (
            "transactions",
            "Transactions",
            t.transactions.to_string(),
            super::queries::grouped(t.transactions.unsigned_abs()),
        ),
    ];
    out.push_str("<h2 class=\"sr-only\">Key figures</h2>\n<dl class=\"kpis\">\n");
    for (key, label, value, text) in tiles {
        let _ = writeln!(
            out,
            "<div class=\"kpi\" data-kpi=\"{key}\" data-value=\"{}\"><dt>{}</dt><dd>{}</dd></div>",
            escape(&value),
            escape(label),
            escape(&text)
        );
    }
    out.push_str("</dl>\n");
}

/// A figure: heading, chart, and the same numbers as a table for screen readers.
fn figure(out: &mut String, id: &str, heading: &str, wide: bool, svg: &str, table: &str) {
    let _ = write!(
        out,
        "<figure class=\"{}\" aria-labelledby=\"{id}-heading\">\n<h2 id=\"{id}-heading\">{}</h2>\n{svg}\n{table}</figure>\n",
        if wide { "wide" } else { "" },
        escape(heading)
    );
}

fn table(caption: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<div class=\"sr-only\"><table><caption>{}</caption><thead><tr>",
        escape(caption)
    );
    for h in header {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for (i, cell) in r.iter().enumerate() {
            if i == 0 {
                let _ = write!(out, "<th scope=\"row\">{}</th>", escape(cell));
            } else {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn monthly_chart(out: &mut String, monthly: &[Group]) {
    let labels: Vec<String> = monthly.iter().map(|g| g.label.clone()).collect();
    let series = [
        Series {
            name: "Gross charges",
            colour: charts::CHARGES,
            values: monthly.iter().map(|g| g.totals.gross_charges).collect(),
        },
        Series {
            name: "Payments collected",
            colour: charts::COLLECTED,
            values: monthly.iter().map(|g| g.totals.collected()).collect(),
        },
    ];
    let desc = match (monthly.first(), monthly.last()) {
        (Some(a), Some(b)) => format!(
            "Line chart of gross charges and payments collected per month of post date, {} to {}, {} months.",
            a.label,
            b.label,
            monthly.len()
        ),
        _ => "No months in this selection.".to_string(),
    };
    let svg = charts::line_chart(
        "chart-monthly",
        "Charges and payments per month",
        &desc,
        &labels,
        &series,
    );
    let rows: Vec<Vec<String>> = monthly
        .iter()
        .map(|g| {
            vec![
                g.label.clone(),
                g.totals.gross_charges.dollars(),
                g.totals.collected().dollars(),
                g.totals.ar.dollars(),
            ]
        })
        .collect();
    let t = table(
        "Charges and payments per month",
        &["Month", "Gross charges", "Payments collected", "Pending AR"],
        &rows,
    );
    figure(
        out,
        "chart-monthly",
        "Charges and payments over time (by post month)",
        true,
        &svg,
        &t,
    );
}

fn payer_chart(out: &mut String, payers: &[Group]) {
    let bars: Vec<Stacked> = payers
        .iter()
        .map(|g| Stacked {
            label: &g.label,
            parts: [g.totals.collected(), g.totals.ar],
        })
        .collect();
    let desc = format!(
        "Stacked bar chart, one bar per payer ({}): payments collected, then pending AR.",
        payers.len()
    );
    let svg = charts::stacked_chart(
        "chart-payer",
        "Collected versus pending AR by payer",
        &desc,
        ["Collected", "Pending AR"],
        [charts::COLLECTED, charts::PENDING],
        &bars,
    );
    let rows: Vec<Vec<String>> = payers
        .iter()
        .map(|g| {
            vec![
                g.label.clone(),
                g.totals.collected().dollars(),
                g.totals.ar.dollars(),
                g.totals
                    .gross_collection_rate()
                    .map_or("n/a".into(), |r| r.to_string()),
            ]
        })
        .collect();
    let t = table(
        "Collected versus pending AR by payer",
        &["Payer", "Collected", "Pending AR", "Gross collection rate"],
        &rows,
    );
    figure(
        out,
        "chart-payer",
        "Payer collections: collected versus pending AR",
        false,
        &svg,
        &t,
    );
}

fn breakdown_chart(out: &mut String, id: &str, heading: &str, what: &str, groups: &[Group]) {
    let bars: Vec<Bar> = groups
        .iter()
        .map(|g| Bar {
            label: &g.label,
            value: g.totals.gross_charges,
        })
        .collect();
    let desc = format!(
        "Bar chart, one bar per {what} ({}), largest gross charges first.",
        groups.len()
    );
    let svg = charts::bar_chart(id, heading, &desc, charts::CHARGES, &bars);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.label.clone(),
                g.totals.gross_charges.dollars(),
                g.totals.collected().dollars(),
                g.totals.ar.dollars(),
                g.totals.transactions.to_string(),
            ]
        })
        .collect();
    let mut first = what.to_string();
    if let Some(c) = first.get_mut(..1) {
        c.make_ascii_uppercase();
    }
    let t = table(
        heading,
        &[
            &first,
            "Gross charges",
            "Collected",
            "Pending AR",
            "Transactions",
        ],
        &rows,
    );
    figure(out, id, heading, false, &svg, &t);
}

/// "Data as of": each table's last committed load, from the ledger.
fn as_of_panel(out: &mut String, tables: &[(String, String)]) {
    out.push_str(
        "<section class=\"as-of\" aria-labelledby=\"as-of-heading\">\n\
         <h2 id=\"as-of-heading\">Data as of (last load per table, UTC)</h2>\n",
    );
    if tables.is_empty() {
        out.push_str("<p>Nothing loaded yet.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table><thead><tr><th scope=\"col\">table</th><th scope=\"col\">last load</th></tr></thead><tbody>\n",
    );
    for (table, at) in tables {
        let _ = writeln!(
            out,
            "<tr data-table=\"{}\"><td><code>{}</code></td><td>{}</td></tr>",
            escape(table),
            escape(table),
            escape(at)
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

/// The small data-quality panel: `reporting.data_quality` over the whole warehouse, findings first.
fn quality_panel(out: &mut String, figures: &[QualityFigure]) {
    out.push_str(
        "<section class=\"quality\" aria-labelledby=\"quality-heading\">\n\
         <h2 id=\"quality-heading\">Data quality (whole warehouse, not filtered)</h2>\n",
    );
    let findings: Vec<&QualityFigure> = figures.iter().filter(|f| f.rows != 0).collect();
    if figures.is_empty() {
        out.push_str("<p>No figures yet: load the fact table.</p>\n");
    } else if findings.is_empty() {
        let _ = writeln!(
            out,
            "<p data-quality=\"clean\">All {} checks pass: every fact row's keys have their dimension rows, and \
             AR = gross charge + payment + adjustment on every row.</p>",
            figures.len()
        );
    } else {
        out.push_str(
            "<table><thead><tr><th scope=\"col\">check</th><th scope=\"col\">column</th>\
             <th scope=\"col\">fact rows</th></tr></thead><tbody>\n",
        );
        for f in figures {
            let check = match (&f.dimension, f.figure.as_str()) {
                (Some(dim), _) => format!("no row in {dim}"),
                (None, "ar_mismatch") => "AR ≠ gross charge + payment + adjustment".to_string(),
                (None, other) => other.to_string(),
            };
            let _ = writeln!(
                out,
                "<tr data-quality=\"{}\" data-column=\"{}\" data-rows=\"{}\"><td>{}</td><td><code>{}</code></td>\
                 <td class=\"n{}\">{}</td></tr>",
                escape(&f.figure),
                escape(&f.column),
                f.rows,
                escape(&check),
                escape(&f.column),
                if f.rows != 0 { " finding" } else { "" },
                super::queries::grouped(f.rows.unsigned_abs())
            );
        }
        out.push_str(
            "</tbody></table>\n<p>Orphans are fact rows whose dimension file has not arrived (or lacks the key); \
             they are loaded and counted under “unknown” until it does.</p>\n",
        );
    }
    out.push_str("</section>\n");
}

fn footer(out: &mut String, mode: &Mode) {
    out.push_str(
        "<footer>\n<p>Collected = −payments (payments are stored as negative amounts). \
         Gross collection rate = collected ÷ gross charges. \
         Net collection rate = collected ÷ (gross charges + adjustments). \
         Date filters apply to post dates, inclusive. Lines whose payer, location, physician or CPT code is not in \
         its dimension are counted under “unknown”.</p>\n",
    );
    if *mode == Mode::Live {
        out.push_str(
            "<p>The same figures as JSON: <code>/api/summary</code> (same parameters as this page); \
             filter choices: <code>/api/filters</code>.</p>\n",
        );
    }
    out.push_str("</footer>\n");
}

#[cfg(test)]
mod tests {
    use super::super::filters::Filters;
    use super::super::queries::Cents;
    use super::*;

    fn sample() -> (Summary, FilterOptions) {
        let totals = Totals {
            transactions: 3,
            cpt_units: Cents(300),
            gross_charges: Cents(100_000),
            payments: Cents(-45_000),
            adjustments: Cents(-10_000),
            ar: Cents(45_000),
        };
        let group = |id, label: &str| Group {
            id,
            label: label.to_string(),
            totals,
        };
        let summary = Summary {
            filters: Filters {
                payer: Some(3),
                ..Filters::default()
            },
            totals,
            first_post_date: Some("2020-01-02".into()),
            last_post_date: Some("2020-02-03".into()),
            monthly: vec![group(None, "2020-01"), group(None, "2020-02")],
            payers: vec![group(Some(3), "Aetna & Co")],
            specialties: vec![group(None, "Cardiology")],
            locations: vec![group(Some(1), "St. Luke’s")],
            cpt_groups: vec![group(None, "unknown")],
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
        };
        let options = FilterOptions {
            payers: vec![(1, "Medicare".into()), (3, "Aetna & Co".into())],
            locations: vec![(1, "St. Luke’s".into())],
            specialties: vec!["Cardiology".into()],
        };
        (summary, options)
    }

    #[test]
    fn the_live_page_has_a_get_form_with_the_current_filters_selected() {
        let (summary, options) = sample();
        let html = page(&summary, &options, &Mode::Live);
        assert!(html.contains("<form class=\"filters\" method=\"get\" action=\"/\""));
        assert!(html.contains("<option value=\"3\" selected>Aetna &amp; Co</option>"));
        assert!(html.contains("<option value=\"\" selected>All locations</option>"));
        assert!(html.contains("href=\"/api/summary?payer=3\""));
    }

    #[test]
    fn kpi_tiles_carry_exact_values_and_formatted_text() {
        let (summary, options) = sample();
        let html = page(&summary, &options, &Mode::Live);
        assert!(html.contains(
            "data-kpi=\"gross_charges\" data-value=\"1000.00\"><dt>Gross charges</dt><dd>$1,000.00</dd>"
        ));
        assert!(html.contains("data-kpi=\"gross_collection_rate\" data-value=\"0.4500\""));
        assert!(html.contains("<dd>50.00%</dd>"));
    }

    #[test]
    fn the_static_report_describes_its_filters_and_has_no_form_or_external_reference() {
        let (summary, options) = sample();
        let html = page(
            &summary,
            &options,
            &Mode::Static {
                generated: "2025-01-01 00:00 UTC".into(),
            },
        );
        assert!(!html.contains("<form"));
        assert!(html.contains("Filters: payer Aetna &amp; Co."));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn every_chart_has_a_heading_and_a_table_for_screen_readers() {
        let (summary, options) = sample();
        let html = page(&summary, &options, &Mode::Live);
        for id in [
            "chart-monthly",
            "chart-payer",
            "chart-specialty",
            "chart-location",
            "chart-cpt",
        ] {
            assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
            assert!(
                html.contains(&format!("aria-labelledby=\"{id}-heading\"")),
                "{id}"
            );
        }
        assert_eq!(html.matches("<div class=\"sr-only\"><table>").count(), 5);
    }

    #[test]
    fn the_quality_panel_lists_findings_or_says_all_checks_pass() {
        let (mut summary, options) = sample();
        let html = page(&summary, &options, &Mode::Live);
        assert!(html.contains("Data quality (whole warehouse, not filtered)"));
        assert!(html.contains(
            "<tr data-table=\"fact_table\"><td><code>fact_table</code></td><td>2024-06-01 12:00</td></tr>"
        ));
        assert!(html.contains(
            "data-quality=\"orphans\" data-column=\"dim_patient_pk\" data-rows=\"1200\""
        ));
        assert!(html.contains("no row in dim_patient"));
        assert!(html.contains("1,200"));
        for f in &mut summary.quality {
            f.rows = 0;
        }
        let html = page(&summary, &options, &Mode::Live);
        assert!(html.contains("data-quality=\"clean\""));
        assert!(html.contains("All 2 checks pass"));
    }

    #[test]
    fn error_pages_escape_the_message() {
        let html = error_page("400 Bad Request", "payer: '<x>' is not an id");
        assert!(html.contains("payer: &#39;&lt;x&gt;&#39; is not an id"));
    }
}
