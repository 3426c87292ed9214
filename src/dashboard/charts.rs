//! Server-rendered SVG charts — a line chart over evenly spaced periods and horizontal (stacked) bar charts with
//! negative values left of a zero line — each with a `<title>` and `<desc>`, labelled bars and compact value labels
//! that stay inside the chart (the exact value in each element's title); no script, nothing fetched.

use std::fmt::Write as _;

use super::escape;
use super::queries::Cents;

/// Width of the line chart's coordinate system (it spans the page); the SVG scales to its container (the page keeps
/// it at least 640px wide, scrolling sideways on a phone), so text stays near its nominal size.
const LINE_WIDTH: i64 = 1200;
/// Width of the bar charts' coordinate system: narrow, so that a bar chart stays legible on a 360px phone; the page
/// caps its width so that text does not grow too large on a wide screen.
const BAR_WIDTH: i64 = 440;

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
    /// One value per period label, in the labels' order.
    pub values: Vec<Cents>,
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

/// A line per series over the period labels (one evenly spaced point per period, empty periods included as zero),
/// with a point per period carrying its exact value in a tooltip; compact money on the value axis.
pub fn line_chart(
    id: &str,
    title: &str,
    desc: &str,
    labels: &[String],
    series: &[Series],
) -> String {
    let (left, right, top, bottom) = (70_i64, 48_i64, 40_i64, 44_i64);
    let (width, height) = (LINE_WIDTH, 340_i64);
    let mut out = String::with_capacity(8192);
    open_svg(&mut out, id, width, height, title, desc);
    legend(&mut out, left, series.iter().map(|s| (s.name, s.colour)));
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
    let y_of = |v: i64| {
        let span = i128::from(top_value - bottom_value).max(1);
        top + i64::try_from(i128::from(top_value - v) * i128::from(plot_h) / span).unwrap_or(0)
    };
    let n = labels.len() as i64;
    let x_of = |i: i64| {
        if n == 1 {
            left + plot_w / 2
        } else {
            left + i * plot_w / (n - 1)
        }
    };
    // Grid and value axis labels; the zero line drawn darker.
    let mut v = bottom_value;
    while v <= top_value {
        let y = y_of(v);
        let _ = write!(
            out,
            "<line class=\"{}\" x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            if v == 0 { "zero" } else { "grid" },
            width - right,
            left - 8,
            y + 4,
            Cents(v).compact()
        );
        v += step;
    }
    // Period labels, thinned to at most ten (a period label is up to ten characters).
    let every = ((n + 9) / 10).max(1);
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
        let r = if n > 120 { "1.5" } else { "3.5" };
        for (i, (c, label)) in s.values.iter().zip(labels).enumerate() {
            let _ = write!(
                out,
                "<circle cx=\"{}\" cy=\"{}\" r=\"{r}\" fill=\"{}\" data-label=\"{}\" data-value=\"{}\">\
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

/// One series of a bar chart: its name (legend, tooltips, `data-` attribute) and colour.
pub struct Part<'a> {
    /// The series' name.
    pub name: &'a str,
    /// Its colour (a CSS colour, e.g. [`COLLECTED`]).
    pub colour: &'a str,
}

/// One bar: its label and one value per [`Part`] (drawn end to end from the zero line: positive to the right,
/// negative to the left).
pub struct Bar<'a> {
    /// What the bar stands for (shortened on the chart only when very long; in full in its title).
    pub label: &'a str,
    /// One value per part.
    pub values: Vec<Cents>,
}

/// Estimated width of text at the bar charts' 13px font: wide enough for digits, `$` and unit letters.
fn text_width(s: &str) -> i64 {
    8 * s.chars().count() as i64 + 6
}

/// Horizontal bars, in the order given: each bar's label above it, its value (compact, exact in the title) after its
/// end, negative parts to the left of a zero line, and room kept on both sides so that no value label is cut.
pub fn bar_chart(id: &str, title: &str, desc: &str, parts: &[Part], bars: &[Bar]) -> String {
    let (margin, row_h) = (8_i64, 46_i64);
    let top = if parts.len() > 1 { 30 } else { 4 };
    let height = top + row_h * (bars.len().max(1) as i64) + 6;
    let mut out = String::with_capacity(4096);
    open_svg(&mut out, id, BAR_WIDTH, height, title, desc);
    if parts.len() > 1 {
        legend(&mut out, margin, parts.iter().map(|p| (p.name, p.colour)));
    }
    if bars.is_empty() {
        empty_note(&mut out, BAR_WIDTH, height / 2 + 4);
        out.push_str("</svg>");
        return out;
    }
    let sums = |b: &Bar, negative: bool| -> i128 {
        b.values
            .iter()
            .map(|v| i128::from(v.0))
            .filter(|v| (*v < 0) == negative)
            .map(i128::abs)
            .sum()
    };
    let value_text = |b: &Bar| {
        b.values
            .iter()
            .map(|v| v.compact())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    // A bar's value goes right of its positive end, or left of its negative end when it has only negative parts.
    let goes_left = |b: &Bar| sums(b, false) == 0 && sums(b, true) > 0;
    let pad = |left: bool| {
        bars.iter()
            .filter(|b| goes_left(b) == left)
            .map(|b| text_width(&value_text(b)))
            .max()
            .unwrap_or(0)
    };
    let (pad_left, pad_right) = (pad(true), pad(false));
    let positive = bars.iter().map(|b| sums(b, false)).max().unwrap_or(0);
    let negative = bars.iter().map(|b| sums(b, true)).max().unwrap_or(0);
    let span = (positive + negative).max(1);
    let area = i128::from((BAR_WIDTH - 2 * margin - pad_left - pad_right).max(40));
    let width_of = |v: i128| -> i64 {
        let w = i64::try_from(v * area / span).unwrap_or(0);
        if v != 0 { w.max(1) } else { 0 }
    };
    let zero = margin + pad_left + width_of(negative);
    let _ = write!(
        out,
        "<line class=\"zero\" x1=\"{zero}\" x2=\"{zero}\" y1=\"{top}\" y2=\"{}\"/>",
        height - 6
    );
    let max_chars = ((BAR_WIDTH - 2 * margin) / 7) as usize;
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as i64 * row_h;
        let exact: Vec<String> = b
            .values
            .iter()
            .zip(parts)
            .map(|(v, p)| {
                if parts.len() > 1 {
                    format!("{} {}", v.dollars(), p.name)
                } else {
                    v.dollars()
                }
            })
            .collect();
        let exact = escape(&format!("{}: {}", b.label, exact.join(", ")));
        let _ = write!(out, "<g class=\"bar\" data-label=\"{}\"", escape(b.label));
        for (v, p) in b.values.iter().zip(parts) {
            let name = if parts.len() > 1 {
                data_name(p.name)
            } else {
                "value".to_string()
            };
            let _ = write!(out, " data-{name}=\"{}\"", v.decimal());
        }
        let _ = write!(
            out,
            " aria-label=\"{exact}\"><title>{exact}</title>\
             <text class=\"label\" x=\"{margin}\" y=\"{}\">{}</text>",
            y + 15,
            escape(&clip(b.label, max_chars))
        );
        let (mut right, mut left) = (zero, zero);
        for (v, p) in b.values.iter().zip(parts) {
            let w = width_of(i128::from(v.0).abs());
            let x = if v.0 < 0 {
                left -= w;
                left
            } else {
                right += w;
                right - w
            };
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"18\" fill=\"{}\"/>",
                y + 22,
                p.colour
            );
        }
        let (x, anchor) = if goes_left(b) {
            (left - 6, "end")
        } else {
            (right + 6, "start")
        };
        let _ = write!(
            out,
            "<text class=\"value\" x=\"{x}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text></g>",
            y + 36,
            escape(&value_text(b))
        );
    }
    out.push_str("</svg>");
    out
}

fn legend<'a>(out: &mut String, mut x: i64, items: impl Iterator<Item = (&'a str, &'a str)>) {
    for (name, colour) in items {
        let _ = write!(
            out,
            "<g class=\"legend\"><rect x=\"{x}\" y=\"8\" width=\"14\" height=\"14\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"20\">{}</text></g>",
            x + 20,
            escape(name)
        );
        x += 40 + 8 * name.chars().count() as i64;
    }
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

    fn one(label: &str, cents: i64) -> Bar<'_> {
        Bar {
            label,
            values: vec![Cents(cents)],
        }
    }

    const CHARGE: [Part; 1] = [Part {
        name: "Gross charges",
        colour: CHARGES,
    }];

    #[test]
    fn a_bar_chart_names_itself_and_labels_every_bar_with_its_compact_value() {
        let svg = bar_chart(
            "c",
            "Charges by location",
            "Gross charges per location",
            &CHARGE,
            &[
                one("St. Luke’s <Hospital>", 31_840_012_345),
                one("Clinic", 100),
            ],
        );
        assert!(svg.starts_with("<svg id=\"c\""));
        assert!(svg.contains("role=\"img\" aria-labelledby=\"c-title c-desc\""));
        assert!(svg.contains("<title id=\"c-title\">Charges by location</title>"));
        assert!(svg.contains("<desc id=\"c-desc\">Gross charges per location</desc>"));
        assert!(
            svg.contains("data-label=\"St. Luke’s &lt;Hospital&gt;\" data-value=\"318400123.45\"")
        );
        assert!(svg.contains(">$318.4M</text>"), "{svg}");
        assert!(svg.contains("<title>St. Luke’s &lt;Hospital&gt;: $318,400,123.45</title>"));
        assert!(svg.contains("aria-label=\"Clinic: $1.00\""));
        assert!(
            !svg.contains("http"),
            "no namespace or external reference: {svg}"
        );
    }

    /// `(x, width)` of every rect, and `(x, anchor)` of every value label, in order.
    type Geometry = (Vec<(i64, i64)>, Vec<(i64, String)>);

    fn geometry(svg: &str) -> Geometry {
        let attr = |s: &str, name: &str| -> String {
            let at = s.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            s[at..].split('"').next().unwrap().to_string()
        };
        let rects = svg
            .split("<rect ")
            .skip(1)
            .map(|r| {
                let r = format!(" {r}");
                (
                    attr(&r, "x").parse().unwrap(),
                    attr(&r, "width").parse().unwrap(),
                )
            })
            .collect();
        let values = svg
            .split("<text class=\"value\"")
            .skip(1)
            .map(|t| (attr(t, "x").parse().unwrap(), attr(t, "text-anchor")))
            .collect();
        (rects, values)
    }

    #[test]
    fn negative_bars_go_left_of_the_zero_line_and_every_label_fits() {
        let svg = bar_chart(
            "n",
            "t",
            "d",
            &CHARGE,
            &[one("refunds", -50_000_000), one("charges", 100_000_000)],
        );
        let zero: i64 = svg
            .split("<line class=\"zero\" x1=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        let (rects, values) = geometry(&svg);
        assert_eq!(
            rects[0].0 + rects[0].1,
            zero,
            "the negative bar ends at zero"
        );
        assert_eq!(rects[1].0, zero, "the positive bar starts at zero");
        assert!((rects[1].1 - 2 * rects[0].1).abs() <= 1, "{rects:?}");
        assert_eq!(values[0].1, "end");
        assert!(values[0].0 - text_width("-$500.0K") >= 0, "{values:?}");
        assert!(values[1].0 + text_width("$1.0M") <= BAR_WIDTH, "{values:?}");
    }

    #[test]
    fn a_stacked_chart_carries_both_parts_in_data_attributes() {
        let svg = bar_chart(
            "p",
            "Payers",
            "Collected and pending",
            &[
                Part {
                    name: "Collected",
                    colour: COLLECTED,
                },
                Part {
                    name: "Pending AR",
                    colour: PENDING,
                },
            ],
            &[Bar {
                label: "Aetna",
                values: vec![Cents(500), Cents(-20)],
            }],
        );
        assert!(
            svg.contains("data-label=\"Aetna\" data-collected=\"5.00\" data-pending-ar=\"-0.20\"")
        );
        assert!(svg.contains("Aetna: $5.00 Collected, -$0.20 Pending AR"));
        assert!(svg.contains(">$5 / $0</text>"), "{svg}");
        let (rects, _) = geometry(&svg);
        // The legend's two squares come first.
        assert!(
            rects[3].0 < rects[2].0,
            "the negative part is left of the positive one: {rects:?}"
        );
    }

    #[test]
    fn empty_charts_say_so() {
        assert!(bar_chart("e", "t", "d", &CHARGE, &[]).contains("No data for this selection"));
        assert!(line_chart("l", "t", "d", &[], &[]).contains("No data for this selection"));
    }

    #[test]
    fn a_line_chart_puts_a_point_with_its_value_on_every_period() {
        let labels = vec![
            "2020-01".to_string(),
            "2020-02".to_string(),
            "2020-03".to_string(),
        ];
        let svg = line_chart(
            "m",
            "Monthly",
            "Charges per month",
            &labels,
            &[Series {
                name: "Gross charges",
                colour: CHARGES,
                values: vec![Cents(100_000_000), Cents(0), Cents(50_000)],
            }],
        );
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("data-label=\"2020-02\" data-value=\"0.00\""));
        assert!(svg.contains("<title>2020-01: Gross charges $1,000,000.00</title>"));
        assert!(svg.contains(">$1.0M</text>"), "compact axis labels: {svg}");
    }

    #[test]
    fn very_long_labels_are_shortened_on_the_chart_only() {
        assert_eq!(
            clip("Physical Medicine & Rehabilitation", 12),
            "Physical Me…"
        );
        assert_eq!(clip("short", 12), "short");
    }
}
