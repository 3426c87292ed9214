//! Server-rendered SVG charts — a line chart over months and horizontal (stacked) bar charts — each with a
//! `<title>` and `<desc>`, labelled bars and visible value labels; no script, nothing fetched.

use std::fmt::Write as _;

use super::escape;
use super::queries::Cents;

/// Width of the line chart's coordinate system (it spans the page); the SVG scales to its container, so text stays
/// near its nominal size on a laptop screen.
const LINE_WIDTH: i64 = 1200;
/// Width of the bar charts' coordinate system (two of them side by side).
const BAR_WIDTH: i64 = 600;

/// Colours with at least 4.5:1 contrast on white, told apart by the legend's text too.
pub const CHARGES: &str = "#1d4ed8";
/// Green, for payments collected.
pub const COLLECTED: &str = "#047857";
/// Amber, for pending AR.
pub const PENDING: &str = "#b45309";

/// One line of a line chart.
pub struct Series<'a> {
    /// The series' name, shown in the legend and the points' tooltips.
    pub name: &'a str,
    /// Its line and legend colour (a CSS colour, e.g. [`CHARGES`]).
    pub colour: &'a str,
    /// One value per month label, in the labels' order.
    pub values: Vec<Cents>,
}

/// One bar: label and value.
pub struct Bar<'a> {
    /// What the bar stands for (clipped on the axis; in full in its title).
    pub label: &'a str,
    /// The amount the bar's length shows, also written after it in whole dollars.
    pub value: Cents,
}

/// One stacked bar: label and its two parts (drawn left to right).
pub struct Stacked<'a> {
    /// What the bar stands for.
    pub label: &'a str,
    /// The two parts, drawn left to right in the legend's order (a negative part with no width).
    pub parts: [Cents; 2],
}

fn open_svg(out: &mut String, id: &str, width: i64, height: i64, title: &str, desc: &str) {
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\" preserveAspectRatio=\"xMinYMin meet\">\
         <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        escape(title),
        escape(desc)
    );
}

fn empty_note(out: &mut String, width: i64, y: i64) {
    let _ = write!(
        out,
        "<text class=\"empty\" x=\"{}\" y=\"{y}\" text-anchor=\"middle\">No data for this selection</text>",
        width / 2
    );
}

/// A round step for about `ticks` intervals up to `max` (hundredths): 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(max: i64, ticks: i64) -> i64 {
    let raw = (max / ticks).max(1);
    let mut magnitude = 1_i64;
    while magnitude.saturating_mul(10) <= raw {
        magnitude *= 10;
    }
    for m in [1, 2, 5, 10] {
        let step = magnitude.saturating_mul(m);
        if step >= raw {
            return step;
        }
    }
    magnitude.saturating_mul(10)
}

/// Shorten a label for the axis (the full text stays in the bar's title and aria-label).
fn clip(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// A line per series over the month labels, with a point per month carrying its value in a tooltip.
pub fn line_chart(
    id: &str,
    title: &str,
    desc: &str,
    labels: &[String],
    series: &[Series],
) -> String {
    let (left, right, top, bottom) = (90_i64, 40_i64, 40_i64, 44_i64);
    let (width, height) = (LINE_WIDTH, 340_i64);
    let mut out = String::with_capacity(8192);
    open_svg(&mut out, id, width, height, title, desc);
    // Legend.
    let mut x = left;
    for s in series {
        let _ = write!(
            out,
            "<g class=\"legend\"><rect x=\"{x}\" y=\"8\" width=\"14\" height=\"14\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"20\">{}</text></g>",
            s.colour,
            x + 20,
            escape(s.name)
        );
        x += 40 + 8 * s.name.chars().count() as i64;
    }
    if labels.is_empty() {
        empty_note(&mut out, width, height / 2);
        out.push_str("</svg>");
        return out;
    }
    let values = series.iter().flat_map(|s| s.values.iter().map(|c| c.0));
    let max = values.clone().max().unwrap_or(0).max(1);
    let min = values.min().unwrap_or(0).min(0);
    let step = nice_step(max - min, 5);
    let top_value = (max + step - 1).div_euclid(step) * step;
    let bottom_value = min.div_euclid(step) * step;
    let plot_h = height - top - bottom;
    let plot_w = width - left - right;
    let y_of = |v: i64| top + (top_value - v) * plot_h / (top_value - bottom_value).max(1);
    let n = labels.len() as i64;
    let x_of = |i: i64| {
        if n == 1 {
            left + plot_w / 2
        } else {
            left + i * plot_w / (n - 1)
        }
    };
    // Grid and y axis labels.
    let mut v = bottom_value;
    while v <= top_value {
        let y = y_of(v);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            width - right,
            left - 8,
            y + 4,
            Cents(v).whole_dollars()
        );
        v += step;
    }
    // X axis labels, thinned to at most about twelve.
    let every = ((n + 11) / 12).max(1);
    for (i, label) in labels.iter().enumerate() {
        let i = i as i64;
        if i % every == 0 {
            let _ = write!(
                out,
                "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x_of(i),
                height - bottom + 20,
                escape(label)
            );
        }
    }
    for s in series {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{},{}", x_of(i as i64), y_of(c.0)))
            .collect();
        let _ = write!(
            out,
            "<g class=\"series\" data-series=\"{}\" aria-label=\"{}\">\
             <polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\" points=\"{}\"/>",
            escape(s.name),
            escape(s.name),
            s.colour,
            points.join(" ")
        );
        for (i, (c, label)) in s.values.iter().zip(labels).enumerate() {
            let _ = write!(
                out,
                "<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\" data-label=\"{}\" data-value=\"{}\">\
                 <title>{}: {} {}</title></circle>",
                x_of(i as i64),
                y_of(c.0),
                s.colour,
                escape(label),
                c.decimal(),
                escape(label),
                escape(s.name),
                c.dollars()
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars, largest first as given, each with its value written after it.
pub fn bar_chart(id: &str, title: &str, desc: &str, colour: &str, bars: &[Bar]) -> String {
    let (label_w, value_w, row_h, top) = (215_i64, 80_i64, 26_i64, 6_i64);
    let height = top + row_h * (bars.len().max(1) as i64) + 6;
    let bar_area = BAR_WIDTH - label_w - value_w;
    let mut out = String::with_capacity(4096);
    open_svg(&mut out, id, BAR_WIDTH, height, title, desc);
    if bars.is_empty() {
        empty_note(&mut out, BAR_WIDTH, height / 2 + 4);
        out.push_str("</svg>");
        return out;
    }
    let max = bars.iter().map(|b| b.value.0).max().unwrap_or(0).max(1);
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as i64 * row_h;
        let w = (b.value.0.max(0) * bar_area / max).max(1);
        let _ = write!(
            out,
            "<g class=\"bar\" data-label=\"{label}\" data-value=\"{value}\" aria-label=\"{label}: {dollars}\">\
             <title>{label}: {dollars}</title>\
             <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"{colour}\"/>\
             <text class=\"value\" x=\"{}\" y=\"{}\">{}</text></g>",
            label_w - 8,
            y + 18,
            escape(&clip(b.label, 32)),
            y + 4,
            row_h - 8,
            label_w + w + 6,
            y + 18,
            b.value.whole_dollars(),
            label = escape(b.label),
            value = b.value.decimal(),
            dollars = b.value.dollars(),
        );
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars of two stacked parts (e.g. collected then pending AR), with a legend and both values written.
pub fn stacked_chart(
    id: &str,
    title: &str,
    desc: &str,
    names: [&str; 2],
    colours: [&str; 2],
    bars: &[Stacked],
) -> String {
    let (label_w, value_w, row_h, top) = (160_i64, 130_i64, 26_i64, 32_i64);
    let height = top + row_h * (bars.len().max(1) as i64) + 6;
    let bar_area = BAR_WIDTH - label_w - value_w;
    let mut out = String::with_capacity(4096);
    open_svg(&mut out, id, BAR_WIDTH, height, title, desc);
    let mut x = label_w;
    for (name, colour) in names.iter().zip(colours) {
        let _ = write!(
            out,
            "<g class=\"legend\"><rect x=\"{x}\" y=\"8\" width=\"14\" height=\"14\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"20\">{}</text></g>",
            x + 20,
            escape(name)
        );
        x += 40 + 8 * name.chars().count() as i64;
    }
    if bars.is_empty() {
        empty_note(&mut out, BAR_WIDTH, height / 2 + 10);
        out.push_str("</svg>");
        return out;
    }
    let max = bars
        .iter()
        .map(|b| b.parts[0].0.max(0) + b.parts[1].0.max(0))
        .max()
        .unwrap_or(0)
        .max(1);
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as i64 * row_h;
        let w0 = b.parts[0].0.max(0) * bar_area / max;
        let w1 = b.parts[1].0.max(0) * bar_area / max;
        let _ = write!(
            out,
            "<g class=\"bar\" data-label=\"{label}\" data-{n0}=\"{v0}\" data-{n1}=\"{v1}\" \
             aria-label=\"{label}: {d0} {name0}, {d1} {name1}\">\
             <title>{label}: {d0} {name0}, {d1} {name1}</title>\
             <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{w0}\" height=\"{h}\" fill=\"{c0}\"/>\
             <rect x=\"{}\" y=\"{}\" width=\"{w1}\" height=\"{h}\" fill=\"{c1}\"/>\
             <text class=\"value\" x=\"{}\" y=\"{}\">{} / {}</text></g>",
            label_w - 8,
            y + 18,
            escape(&clip(b.label, 24)),
            y + 4,
            label_w + w0,
            y + 4,
            label_w + w0 + w1 + 6,
            y + 18,
            b.parts[0].whole_dollars(),
            b.parts[1].whole_dollars(),
            label = escape(b.label),
            n0 = data_name(names[0]),
            n1 = data_name(names[1]),
            v0 = b.parts[0].decimal(),
            v1 = b.parts[1].decimal(),
            d0 = b.parts[0].dollars(),
            d1 = b.parts[1].dollars(),
            name0 = escape(names[0]),
            name1 = escape(names[1]),
            c0 = colours[0],
            c1 = colours[1],
            h = row_h - 8,
        );
    }
    out.push_str("</svg>");
    out
}

/// `Pending AR` → `pending-ar`, for a `data-` attribute name.
fn data_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_round_numbers() {
        assert_eq!(nice_step(1_000_000, 5), 200_000);
        assert_eq!(nice_step(730_000, 5), 200_000);
        assert_eq!(nice_step(2_400_000, 5), 500_000);
        assert_eq!(nice_step(3, 5), 1);
    }

    #[test]
    fn a_bar_chart_names_itself_and_labels_every_bar_with_its_value() {
        let svg = bar_chart(
            "c",
            "Charges by location",
            "Gross charges per location",
            CHARGES,
            &[
                Bar {
                    label: "St. Luke’s <Hospital>",
                    value: Cents(123_456),
                },
                Bar {
                    label: "Clinic",
                    value: Cents(100),
                },
            ],
        );
        assert!(svg.starts_with("<svg id=\"c\""));
        assert!(svg.contains("role=\"img\" aria-labelledby=\"c-title c-desc\""));
        assert!(svg.contains("<title id=\"c-title\">Charges by location</title>"));
        assert!(svg.contains("<desc id=\"c-desc\">Gross charges per location</desc>"));
        assert!(svg.contains("data-label=\"St. Luke’s &lt;Hospital&gt;\" data-value=\"1234.56\""));
        assert!(svg.contains(">$1,235</text>"), "{svg}");
        assert!(svg.contains("aria-label=\"Clinic: $1.00\""));
        assert!(
            !svg.contains("http"),
            "no namespace or external reference: {svg}"
        );
    }

    #[test]
    fn a_stacked_chart_carries_both_parts_in_data_attributes() {
        let svg = stacked_chart(
            "p",
            "Payers",
            "Collected and pending",
            ["Collected", "Pending AR"],
            [COLLECTED, PENDING],
            &[Stacked {
                label: "Aetna",
                parts: [Cents(500), Cents(-20)],
            }],
        );
        assert!(
            svg.contains("data-label=\"Aetna\" data-collected=\"5.00\" data-pending-ar=\"-0.20\"")
        );
        assert!(svg.contains("$5.00 Collected, -$0.20 Pending AR"));
    }

    #[test]
    fn empty_charts_say_so() {
        assert!(bar_chart("e", "t", "d", CHARGES, &[]).contains("No data for this selection"));
        assert!(line_chart("l", "t", "d", &[], &[]).contains("No data for this selection"));
    }

    #[test]
    fn a_line_chart_puts_a_point_with_its_value_on_every_month() {
        let labels = vec!["2020-01".to_string(), "2020-02".to_string()];
        let svg = line_chart(
            "m",
            "Monthly",
            "Charges per month",
            &labels,
            &[Series {
                name: "Gross charges",
                colour: CHARGES,
                values: vec![Cents(100_000), Cents(50_000)],
            }],
        );
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("data-label=\"2020-02\" data-value=\"500.00\""));
        assert!(svg.contains("<title>2020-01: Gross charges $1,000.00</title>"));
    }

    #[test]
    fn long_labels_are_clipped_on_the_axis_only() {
        assert_eq!(
            clip("Physical Medicine & Rehabilitation", 12),
            "Physical Me…"
        );
        assert_eq!(clip("short", 12), "short");
    }
}
