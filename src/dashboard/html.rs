//! The dashboard page: filter form (live) or filter description (static report), KPI tiles with month-over-month
//! and year-over-year deltas, the charts, and under each chart its table (sortable through links, exported as CSV)
//! — one HTML document with inline CSS and SVG, no script, legible from 360px to 1920px wide and in print.

use std::fmt::Write as _;

use super::charts::{self, Bar, Part, Series};
use super::escape;
use super::filters::{AGE_BANDS, Filters, Slice, Sort};
use super::queries::{
    Cents, FilterOptions, Group, QualityFigure, Rate, Summary, Totals, grouped, tenths,
};
use super::tables::{self, Table};
use crate::reporting::UNKNOWN;

/// Whether the page is served (with a filter form) or written once as a static report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Served by the dashboard server, with a filter form, sort links and CSV exports.
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
header, main, footer { max-width: 1880px; margin: 0 auto; padding: 0 12px; }
header { padding-top: 16px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.05rem; margin: 0 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 12px; }
form.filters { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px 14px; align-items: end; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 16px; }
form.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); gap: 2px; min-width: 0; }
form.filters input, form.filters select { font: inherit; color: var(--ink); padding: 4px 6px; border: 1px solid #9ca3af;
  border-radius: 4px; width: 100%; min-width: 0; }
form.filters .actions { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
form.filters button { font: inherit; padding: 6px 16px; border-radius: 4px; border: 1px solid #1e3a8a; background: #1d4ed8; color: #fff; cursor: pointer; }
a { color: #1d4ed8; }
:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.applied { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; overflow-wrap: anywhere; }
dl.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin: 0 0 18px; }
.kpi { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; background: #fff; min-width: 0; }
.kpi dt { font-size: .85rem; color: var(--muted); overflow-wrap: anywhere; }
.kpi dd { margin: 2px 0 0; font-size: 1.35rem; font-weight: 600; font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; }
.kpi dd.delta { font-size: .78rem; font-weight: 400; color: var(--muted); white-space: normal; }
.charts { display: grid; grid-template-columns: 1fr; gap: 16px; }
@media (min-width: 900px) { .charts { grid-template-columns: 1fr 1fr; } .wide { grid-column: 1 / -1; } }
@media (min-width: 1500px) { .charts { grid-template-columns: 1fr 1fr 1fr; } }
figure { position: relative; margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: #fff; min-width: 0; }
figure .plot { overflow-x: auto; }
svg.chart { width: 100%; height: auto; display: block; }
svg.bars { max-width: 560px; }
svg.line { min-width: 640px; }
svg text { font: 13px system-ui, sans-serif; fill: #1f2937; }
svg text.axis { fill: #4b5563; font-size: 12px; }
svg text.value { font-variant-numeric: tabular-nums; }
svg text.empty { font-size: 14px; fill: #4b5563; }
svg line.grid { stroke: #e5e7eb; }
svg line.zero { stroke: #6b7280; stroke-width: 1.5; }
.table { overflow-x: auto; margin-top: 8px; }
.table table { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; width: 100%; }
.table caption { text-align: left; color: var(--muted); padding-bottom: 2px; }
.table th, .table td { padding: 2px 8px 2px 0; border-bottom: 1px solid #eef0f3; text-align: left; white-space: nowrap; }
.table .n { text-align: right; }
.table th a { text-decoration: none; }
.export { font-size: .85rem; margin: 6px 0 0; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
footer { color: var(--muted); font-size: .85rem; padding-top: 14px; padding-bottom: 24px; }
footer dl { display: grid; grid-template-columns: minmax(0, max-content) minmax(0, 1fr); gap: 2px 12px; }
footer dt { font-weight: 600; }
footer dd { margin: 0; }
section.quality, section.as-of { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 18px 0 0; background: var(--panel); overflow-x: auto; }
section.quality table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
section.quality th, section.quality td { text-align: left; padding: 2px 14px 2px 0; }
section.quality td.n { text-align: right; }
section.quality .finding { color: #92400e; font-weight: 600; }
.error { border: 1px solid #b91c1c; background: #fef2f2; color: #7f1d1d; border-radius: 8px; padding: 10px 14px; }
@media print {
  body { font-size: 11pt; }
  header, main, footer { max-width: none; padding: 0; }
  form.filters, .export { display: none; }
  .charts { display: block; }
  figure, section.quality, section.as-of, .kpi { break-inside: avoid; border-color: #9ca3af; margin-bottom: 10pt; }
  svg.bars { max-width: 12cm; }
  svg.line { min-width: 0; }
  figure .plot, .table { overflow: visible; }
  .table th a { color: inherit; }
  a { color: inherit; text-decoration: none; }
}
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
    let mut out = String::with_capacity(128 * 1024);
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
        grouped(summary.totals.transactions.unsigned_abs())
    );
    out.push_str("</header>\n<main>\n");
    match mode {
        Mode::Live => filter_form(&mut out, &summary.filters, options),
        Mode::Static { generated } => {
            applied_filters(&mut out, &summary.filters, options, generated)
        }
    }
    kpis(&mut out, summary);
    out.push_str("<div class=\"charts\">\n");
    for table in tables::tables(summary) {
        let svg = chart(summary, &table);
        figure(&mut out, &table, &svg, &summary.filters, mode);
    }
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

/// A `<select>` of fixed choices (`value`, `label`), the current one selected.
fn select(out: &mut String, name: &str, label: &str, current: &str, choices: &[(String, String)]) {
    let _ = write!(
        out,
        "<label for=\"{name}\">{}<select id=\"{name}\" name=\"{name}\">",
        escape(label)
    );
    for (value, text) in choices {
        option(out, value, text, current.eq_ignore_ascii_case(value));
    }
    out.push_str("</select></label>\n");
}

fn filter_form(out: &mut String, f: &Filters, options: &FilterOptions) {
    out.push_str("<form class=\"filters\" method=\"get\" action=\"/\" aria-label=\"Filters\">\n");
    let day = |d: Option<time::Date>| d.map(|d| d.to_string()).unwrap_or_default();
    let _ = write!(
        out,
        "<label for=\"from\">From<input type=\"date\" id=\"from\" name=\"from\" value=\"{}\"></label>\n\
         <label for=\"to\">To<input type=\"date\" id=\"to\" name=\"to\" value=\"{}\"></label>\n",
        escape(&day(f.from)),
        escape(&day(f.to))
    );
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(v, l)| (v.to_string(), l.to_string()))
            .collect()
    };
    select(
        out,
        "dates",
        "Dates are",
        f.dates.name(),
        &pairs(&[("post", "Post dates"), ("service", "Service dates")]),
    );
    select(
        out,
        "grain",
        "Time axis by",
        f.grain.name(),
        &pairs(&[("day", "Day"), ("week", "Week"), ("month", "Month")]),
    );
    for slice in Slice::ALL {
        let current = f.get(slice).map(|c| c.text()).unwrap_or_default();
        let mut choices = vec![(String::new(), "All".to_string())];
        if slice.key().is_some() {
            choices.extend(
                options
                    .keyed(slice)
                    .iter()
                    .map(|(id, name)| (id.to_string(), name.clone())),
            );
        } else if slice == Slice::AgeBand {
            choices.extend(
                AGE_BANDS[..3]
                    .iter()
                    .map(|b| (b.to_string(), b.to_string())),
            );
        } else if matches!(slice, Slice::Cpt | Slice::Diagnosis) {
            // Codes are many: typed, with the dimension's codes suggested.
            let name = slice.name();
            let _ = write!(
                out,
                "<label for=\"{name}\">{}<input id=\"{name}\" name=\"{name}\" list=\"{name}-codes\" value=\"{}\" \
                 autocomplete=\"off\"></label>\n<datalist id=\"{name}-codes\">",
                escape(slice.label()),
                escape(&current)
            );
            for code in options.named(slice) {
                option(out, code, code, false);
            }
            option(out, UNKNOWN, UNKNOWN, false);
            out.push_str("</datalist>\n");
            continue;
        } else {
            choices.extend(options.named(slice).iter().map(|v| (v.clone(), v.clone())));
        }
        // A key the form does not know (typed into the URL, or a name) stays selected.
        if !current.is_empty()
            && !choices
                .iter()
                .any(|(v, _)| v.eq_ignore_ascii_case(&current))
        {
            choices.push((current.clone(), current.clone()));
        }
        if !choices.iter().any(|(v, _)| v == UNKNOWN) {
            choices.push((
                UNKNOWN.to_string(),
                "unknown (not in the dimension)".to_string(),
            ));
        }
        select(out, slice.name(), slice.label(), &current, &choices);
    }
    let query = f.to_query();
    let _ = write!(
        out,
        "<div class=\"actions\"><button type=\"submit\">Apply</button><a href=\"/\">Reset</a>\
         <a href=\"/api/summary{}{}\">JSON</a></div>\n</form>\n",
        if query.is_empty() { "" } else { "?" },
        escape(&query)
    );
}

fn applied_filters(out: &mut String, f: &Filters, options: &FilterOptions, generated: &str) {
    let mut parts = Vec::new();
    let dates = f.dates.name();
    if let Some(v) = f.from {
        parts.push(format!("{dates} date from {v}"));
    }
    if let Some(v) = f.to {
        parts.push(format!("{dates} date to {v}"));
    }
    for (slice, choice) in &f.slices {
        parts.push(format!(
            "{} {}",
            slice.label().to_lowercase(),
            options.describe(*slice, choice)
        ));
    }
    let applied = if parts.is_empty() {
        "none (all data)".to_string()
    } else {
        parts.join("; ")
    };
    let _ = writeln!(
        out,
        "<p class=\"applied\">Static report generated {}. Filters: {}. Time axis by {} of {} date.</p>",
        escape(generated),
        escape(&applied),
        f.grain.name(),
        dates
    );
}

/// `+3.20%` / `-1.05%`: the relative change from `previous` to `current`; `None` when `previous` is zero.
fn change(current: i64, previous: i64) -> Option<String> {
    let r = Rate::of(Cents(current - previous), Cents(previous.abs()))?;
    Some(format!("{}{r}", if r.0 >= 0 { "+" } else { "" }))
}

/// `+1.20 pts`: the difference of two rates in percentage points.
fn points(current: Option<Rate>, previous: Option<Rate>) -> Option<String> {
    let d = current?.0 - previous?.0;
    let abs = d.unsigned_abs();
    Some(format!(
        "{}{}.{:02} pts",
        if d >= 0 { "+" } else { "-" },
        abs / 100,
        abs % 100
    ))
}

/// One KPI tile's figure, its exact value and its month-over-month and year-over-year deltas.
struct Tile {
    key: &'static str,
    label: &'static str,
    value: String,
    text: String,
    title: String,
    delta: Option<Delta>,
}

/// How a tile's month-over-month and year-over-year change is figured.
#[derive(Clone, Copy)]
enum Delta {
    /// From the two months' sums.
    Sums(fn(&Totals, &Totals) -> Option<String>),
    /// Days in AR: each month's over its own number of days, the change in days.
    DaysInAr,
}

impl Delta {
    /// The change from the month labelled `previous` (`YYYY-MM`) to the month labelled `current`.
    fn between(self, current: (&str, &Totals), previous: (&str, &Totals)) -> Option<String> {
        match self {
            Delta::Sums(f) => f(current.1, previous.1),
            Delta::DaysInAr => {
                let days_in = |(month, t): (&str, &Totals)| {
                    let first = super::filters::parse_day(&format!("{month}-01"))?;
                    t.days_in_ar(i64::from(first.month().length(first.year())))
                };
                let d = days_in(current)? - days_in(previous)?;
                Some(format!(
                    "{}{} days",
                    if d >= 0 { "+" } else { "" },
                    tenths(d)
                ))
            }
        }
    }
}

fn money_tile(
    key: &'static str,
    label: &'static str,
    c: Cents,
    delta: fn(&Totals, &Totals) -> Option<String>,
) -> Tile {
    Tile {
        key,
        label,
        value: c.decimal(),
        text: c.compact(),
        title: c.dollars(),
        delta: Some(Delta::Sums(delta)),
    }
}

fn rate_tile(
    key: &'static str,
    label: &'static str,
    r: Option<Rate>,
    delta: fn(&Totals, &Totals) -> Option<String>,
) -> Tile {
    Tile {
        key,
        label,
        value: r.map(Rate::decimal).unwrap_or_default(),
        text: r.map_or_else(|| "n/a".into(), |r| r.to_string()),
        title: r.map_or_else(|| "undefined: no charges".into(), |r| r.to_string()),
        delta: Some(Delta::Sums(delta)),
    }
}

fn kpis(out: &mut String, s: &Summary) {
    let t = &s.totals;
    let days = s.days_in_ar();
    let tiles = [
        money_tile("gross_charges", "Gross charges", t.gross_charges, |a, b| {
            change(a.gross_charges.0, b.gross_charges.0)
        }),
        money_tile("collected", "Payments collected", t.collected(), |a, b| {
            change(a.collected().0, b.collected().0)
        }),
        money_tile("adjustments", "Adjustments", t.adjustments, |a, b| {
            change(a.adjustments.0, b.adjustments.0)
        }),
        money_tile("ar", "AR outstanding", t.ar, |a, b| change(a.ar.0, b.ar.0)),
        rate_tile(
            "gross_collection_rate",
            "Gross collection rate",
            t.gross_collection_rate(),
            |a, b| points(a.gross_collection_rate(), b.gross_collection_rate()),
        ),
        rate_tile(
            "net_collection_rate",
            "Net collection rate",
            t.net_collection_rate(),
            |a, b| points(a.net_collection_rate(), b.net_collection_rate()),
        ),
        Tile {
            key: "days_in_ar",
            label: "Days in AR",
            value: days.map(tenths).unwrap_or_default(),
            text: days.map_or_else(|| "n/a".into(), tenths),
            title: format!(
                "AR outstanding ÷ average daily gross charges over {} days",
                s.period_days().unwrap_or(0)
            ),
            delta: Some(Delta::DaysInAr),
        },
        Tile {
            key: "transactions",
            label: "Transactions",
            value: t.transactions.to_string(),
            text: grouped(t.transactions.unsigned_abs()),
            title: grouped(t.transactions.unsigned_abs()),
            delta: Some(Delta::Sums(|a, b| change(a.transactions, b.transactions))),
        },
    ];
    out.push_str("<h2 class=\"sr-only\">Key figures</h2>\n<dl class=\"kpis\">\n");
    for tile in tiles {
        let _ = write!(
            out,
            "<div class=\"kpi\" data-kpi=\"{}\" data-value=\"{}\"><dt>{}</dt><dd title=\"{}\">{}</dd>",
            tile.key,
            escape(&tile.value),
            escape(tile.label),
            escape(&tile.title),
            escape(&tile.text)
        );
        if let (Some(delta), Some(c)) = (tile.delta, &s.comparison) {
            let against = |(label, previous): &(String, Totals)| {
                format!(
                    "{} vs {label}",
                    delta
                        .between((&c.month, &c.current), (label, previous))
                        .unwrap_or_else(|| "n/a".into())
                )
            };
            let _ = write!(
                out,
                "<dd class=\"delta\" title=\"{} against the month before and the same month a year before\">\
                 MoM {} · YoY {}</dd>",
                escape(&c.month),
                escape(&against(&c.previous_month)),
                escape(&against(&c.previous_year))
            );
        }
        out.push_str("</div>\n");
    }
    out.push_str("</dl>\n");
}

/// The chart of a table's figures.
fn chart(s: &Summary, table: &Table) -> String {
    let id = format!("chart-{}", table.id);
    let gross = Part {
        name: "Gross charges",
        colour: charts::CHARGES,
    };
    let bars = |groups: &[Group], value: fn(&Totals) -> Vec<Cents>| -> Vec<(String, Vec<Cents>)> {
        groups
            .iter()
            .map(|g| (g.label.clone(), value(&g.totals)))
            .collect()
    };
    let draw = |what: &str, parts: &[Part], rows: Vec<(String, Vec<Cents>)>| {
        let desc = format!(
            "Horizontal bar chart, one bar per {what} ({}); negative values left of the zero line.",
            rows.len()
        );
        let bars: Vec<Bar> = rows
            .iter()
            .map(|(label, values)| Bar {
                label,
                values: values.clone(),
            })
            .collect();
        charts::bar_chart(&id, &table.caption, &desc, parts, &bars)
    };
    match table.id {
        "timeline" => {
            let labels: Vec<String> = s.timeline.iter().map(|g| g.label.clone()).collect();
            let series = [
                Series {
                    name: "Gross charges",
                    colour: charts::CHARGES,
                    values: s.timeline.iter().map(|g| g.totals.gross_charges).collect(),
                },
                Series {
                    name: "Payments collected",
                    colour: charts::COLLECTED,
                    values: s.timeline.iter().map(|g| g.totals.collected()).collect(),
                },
            ];
            let desc = match (labels.first(), labels.last()) {
                (Some(a), Some(b)) => format!(
                    "Line chart of gross charges and payments collected per {} of {} date, {a} to {b}, {} periods \
                     (periods without lines at zero).",
                    s.filters.grain.name(),
                    s.filters.dates.name(),
                    labels.len()
                ),
                _ => "No periods in this selection.".to_string(),
            };
            charts::line_chart(&id, &table.caption, &desc, &labels, &series)
        }
        "payers" => draw(
            "payer",
            &[
                Part {
                    name: "Collected",
                    colour: charts::COLLECTED,
                },
                Part {
                    name: "Pending AR",
                    colour: charts::PENDING,
                },
            ],
            bars(&s.payers, |t| vec![t.collected(), t.ar]),
        ),
        "aging" => draw(
            "aging bucket",
            &[Part {
                name: "AR outstanding",
                colour: charts::PENDING,
            }],
            s.aging
                .iter()
                .map(|b| (b.label.to_string(), vec![b.ar]))
                .collect(),
        ),
        "adjustments" => draw(
            "adjustment reason",
            &[Part {
                name: "Adjustments",
                colour: charts::PENDING,
            }],
            bars(&s.adjustments, |t| vec![t.adjustments]),
        ),
        id => {
            let (what, groups) = match id {
                "specialties" => ("specialty", &s.specialties),
                "locations" => ("location", &s.locations),
                "cpt_groups" => ("CPT group", &s.cpt_groups),
                "physicians" => ("physician", &s.physicians),
                _ => ("CPT code", &s.cpt_codes),
            };
            draw(what, &[gross], bars(groups, |t| vec![t.gross_charges]))
        }
    }
}

/// A figure: heading, chart, its table (sortable when live) and the CSV export link (live).
fn figure(out: &mut String, table: &Table, svg: &str, filters: &Filters, mode: &Mode) {
    let id = format!("chart-{}", table.id);
    let _ = write!(
        out,
        "<figure class=\"{}\" aria-labelledby=\"{id}-heading\" data-table=\"{}\">\n<h2 id=\"{id}-heading\">{}</h2>\n\
         <div class=\"plot\">{}</div>\n",
        if table.id == "timeline" { "wide" } else { "" },
        table.id,
        escape(&table.caption),
        svg.replacen(
            "class=\"chart\"",
            if table.id == "timeline" {
                "class=\"chart line\""
            } else {
                "class=\"chart bars\""
            },
            1
        )
    );
    render_table(out, table, filters, mode);
    if *mode == Mode::Live {
        let mut query = filters.to_query();
        if let Some(sort) = filters.sort.as_ref().filter(|s| s.table == table.id) {
            query = filters.query_sorted(sort);
        }
        let _ = writeln!(
            out,
            "<p class=\"export\"><a href=\"/export/{}.csv{}{}\" download>Download this table as CSV</a></p>",
            table.id,
            if query.is_empty() { "" } else { "?" },
            escape(&query)
        );
    }
    out.push_str("</figure>\n");
}

fn render_table(out: &mut String, table: &Table, filters: &Filters, mode: &Mode) {
    let _ = write!(
        out,
        "<div class=\"table\"><table id=\"table-{}\"><caption>{}</caption><thead><tr>",
        table.id,
        escape(&table.caption)
    );
    let current = filters.sort.as_ref().filter(|s| s.table == table.id);
    let numeric: Vec<bool> = (0..table.columns.len())
        .map(|i| table.rows.first().is_some_and(|r| r[i].numeric()))
        .collect();
    for (i, (key, heading)) in table.columns.iter().enumerate() {
        let sorted = current.filter(|s| s.column == *key);
        let aria = match sorted {
            Some(s) if s.descending => " aria-sort=\"descending\"",
            Some(_) => " aria-sort=\"ascending\"",
            None => "",
        };
        let class = if numeric[i] { " class=\"n\"" } else { "" };
        let _ = write!(out, "<th scope=\"col\"{class}{aria} data-column=\"{key}\">");
        if *mode == Mode::Live {
            let next = Sort {
                table: table.id.to_string(),
                column: key.to_string(),
                // Numbers largest first, names A to Z; a second click reverses.
                descending: sorted.map_or(numeric[i], |s| !s.descending),
            };
            let arrow = match sorted {
                Some(s) if s.descending => " ▼",
                Some(_) => " ▲",
                None => "",
            };
            let _ = write!(
                out,
                "<a href=\"?{}\">{}{arrow}</a>",
                escape(&filters.query_sorted(&next)),
                escape(heading)
            );
        } else {
            out.push_str(&escape(heading));
        }
        out.push_str("</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let (tag, scope) = if i == 0 {
                ("th", " scope=\"row\"")
            } else {
                ("td", "")
            };
            let _ = write!(
                out,
                "<{tag}{scope}{} data-value=\"{}\">{}</{tag}>",
                if cell.numeric() { " class=\"n\"" } else { "" },
                escape(&cell.exact()),
                escape(&cell.display())
            );
        }
        out.push_str("</tr>");
    }
    if table.rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\">No data for this selection</td></tr>",
            table.columns.len()
        );
    }
    out.push_str("</tbody></table></div>\n");
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
                grouped(f.rows.unsigned_abs())
            );
        }
        out.push_str(
            "</tbody></table>\n<p>Orphans are fact rows whose dimension file has not arrived (or lacks the key); \
             they are loaded and counted under “unknown” until it does.</p>\n",
        );
    }
    out.push_str("</section>\n");
}

/// The definitions of the figures, as the README gives them.
pub const DEFINITIONS: [(&str, &str); 10] = [
    (
        "Collected",
        "−payments (payments are stored as negative amounts).",
    ),
    ("Gross collection rate", "collected ÷ gross charges."),
    (
        "Net collection rate",
        "collected ÷ (gross charges + adjustments): payments over what was still collectible after adjustments.",
    ),
    (
        "AR outstanding",
        "the sum of AR over the selected lines (gross charge + payment + adjustment per line).",
    ),
    (
        "AR aging",
        "AR outstanding by days from each line's service date to the as-of date (the range's last day, else the \
         selection's latest post date): 0–30, 31–60, 61–90, 91–120, 120+; a later service date counts as 0 days.",
    ),
    (
        "Days in AR",
        "AR outstanding ÷ (gross charges ÷ days in the period); the period is the date range, else the first to \
         the last post date of the selection.",
    ),
    (
        "Adjustment rate",
        "per adjustment reason: −adjustments of that reason ÷ gross charges of the selection.",
    ),
    (
        "MoM · YoY",
        "the as-of date's month against the month before and the same month a year before, with the same filters \
         but any date: relative change for amounts, percentage points for rates, days for days in AR (each \
         month over its own number of days).",
    ),
    (
        "Top physicians, CPT codes",
        "the 10 with the largest gross charges.",
    ),
    (
        "Time axis",
        "one point per day, ISO week (from Monday) or month of the chosen date, from the range's first period to \
         its last when a range is chosen (up to 4,000 points; a wider range spans the periods with lines); a \
         period without lines is drawn at zero.",
    ),
];

fn footer(out: &mut String, mode: &Mode) {
    out.push_str("<footer>\n<h2>How the figures are computed</h2>\n<dl>\n");
    for (term, definition) in DEFINITIONS {
        let _ = writeln!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            escape(term),
            escape(definition)
        );
    }
    out.push_str(
        "</dl>\n<p>Money is exact to the cent in the tables and in each figure's title; tiles and chart labels round \
         it ($318.4M). Date filters are inclusive. Lines whose payer, location, physician, CPT code, diagnosis or \
         patient is not in its dimension are counted under “unknown”.</p>\n",
    );
    if *mode == Mode::Live {
        out.push_str(
            "<p>The same figures as JSON: <code>/api/summary</code> (same parameters as this page); \
             filter choices: <code>/api/filters</code>; each table as CSV: <code>/export/&lt;table&gt;.csv</code>.</p>\n",
        );
    }
    out.push_str("</footer>\n");
}

#[cfg(test)]
mod tests {
    use super::super::queries::FilterOptions;
    use super::super::queries::tests_support::sample_summary;
    use super::*;

    fn options() -> FilterOptions {
        let mut o = FilterOptions::default();
        o.keyed.push((
            Slice::Payer,
            vec![(1, "Medicare".into()), (3, "Aetna & Co".into())],
        ));
        o.keyed
            .push((Slice::Location, vec![(1, "St. Luke’s".into())]));
        o.named.push((Slice::Specialty, vec!["Cardiology".into()]));
        o.named.push((Slice::Cpt, vec!["99213".into()]));
        o
    }

    #[test]
    fn the_live_page_has_a_get_form_with_every_filter_and_the_current_ones_selected() {
        let html = page(&sample_summary(), &options(), &Mode::Live);
        assert!(html.contains("<form class=\"filters\" method=\"get\" action=\"/\""));
        assert!(html.contains("<option value=\"3\" selected>Aetna &amp; Co</option>"));
        assert!(html.contains("<option value=\"\" selected>All</option>"));
        assert!(html.contains("<option value=\"unknown\">unknown (not in the dimension)</option>"));
        for name in ["from", "to", "dates", "grain"]
            .into_iter()
            .chain(Slice::ALL.iter().map(|s| s.name()))
        {
            assert!(html.contains(&format!("name=\"{name}\"")), "{name}");
        }
        assert!(html.contains("<datalist id=\"cpt-codes\"><option value=\"99213\">"));
        assert!(html.contains("href=\"/api/summary?payer=3\""));
    }

    #[test]
    fn kpi_tiles_show_compact_money_with_the_exact_value_and_deltas() {
        let html = page(&sample_summary(), &options(), &Mode::Live);
        assert!(
            html.contains(
                "data-kpi=\"gross_charges\" data-value=\"6000.00\"><dt>Gross charges</dt>\
                 <dd title=\"$6,000.00\">$6.0K</dd>"
            ),
            "{html}"
        );
        assert!(html.contains("MoM n/a vs 2020-02 · YoY +100.00% vs 2019-03"));
        assert!(html.contains("data-kpi=\"gross_collection_rate\" data-value=\"0.4500\""));
        assert!(
            html.contains("data-kpi=\"days_in_ar\" data-value=\"48.0\""),
            "{html}"
        );
        // Days in AR per month over that month's 31 days: 1,200.00 × 31 ÷ 2,000.00 = 18.6 against
        // 200.00 × 31 ÷ 1,000.00 = 6.2 a year before; the month before has no charges.
        let tile = html
            .split("data-kpi=\"days_in_ar\"")
            .nth(1)
            .and_then(|t| t.split("</div>").next())
            .unwrap_or_default();
        assert!(
            tile.contains("MoM n/a vs 2020-02 · YoY +12.4 days vs 2019-03"),
            "{tile}"
        );
    }

    #[test]
    fn the_static_report_describes_its_filters_and_has_no_form_link_or_external_reference() {
        let html = page(
            &sample_summary(),
            &options(),
            &Mode::Static {
                generated: "2025-01-01 00:00 UTC".into(),
            },
        );
        assert!(!html.contains("<form"));
        assert!(!html.contains("href="), "no sort or export links in a file");
        assert!(html.contains("Filters: payer Aetna &amp; Co."));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script"));
        assert!(html.contains("@media print"));
    }

    #[test]
    fn every_table_has_a_chart_sort_links_and_a_csv_export() {
        let html = page(&sample_summary(), &options(), &Mode::Live);
        for id in tables::ids() {
            assert!(html.contains(&format!("<svg id=\"chart-{id}\"")), "{id}");
            assert!(html.contains(&format!("<table id=\"table-{id}\">")), "{id}");
            assert!(
                html.contains(&format!("href=\"/export/{id}.csv?payer=3\" download")),
                "{id}"
            );
        }
        assert!(
            html.contains(
                "<a href=\"?payer=3&amp;sort=payers.collected&amp;dir=desc\">Collected</a>"
            )
        );
        assert!(html.contains("<td class=\"n\" data-value=\"1000.00\">$1,000.00</td>"));
        for definition in DEFINITIONS {
            assert!(html.contains(&escape(definition.1)), "{}", definition.0);
        }
    }

    #[test]
    fn the_sorted_column_says_so_and_links_to_the_reverse_order() {
        let mut s = sample_summary();
        s.filters.sort = Some(Sort {
            table: "payers".into(),
            column: "collected".into(),
            descending: true,
        });
        let html = page(&s, &options(), &Mode::Live);
        assert!(html.contains("aria-sort=\"descending\" data-column=\"collected\""));
        assert!(html.contains("sort=payers.collected&amp;dir=asc\">Collected ▼</a>"));
        assert!(html.contains(
            "href=\"/export/payers.csv?payer=3&amp;sort=payers.collected&amp;dir=desc\""
        ));
    }

    #[test]
    fn the_quality_panel_lists_findings_or_says_all_checks_pass() {
        let mut summary = sample_summary();
        let html = page(&summary, &options(), &Mode::Live);
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
        let html = page(&summary, &options(), &Mode::Live);
        assert!(html.contains("data-quality=\"clean\""));
        assert!(html.contains("All 2 checks pass"));
    }

    #[test]
    fn error_pages_escape_the_message() {
        let html = error_page("400 Bad Request", "payer: '<x>' is not an id");
        assert!(html.contains("payer: &#39;&lt;x&gt;&#39; is not an id"));
    }
}
