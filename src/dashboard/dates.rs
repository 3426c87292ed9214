//! Calendar work of the dashboard, with the `time` crate: periods of a grain (day, ISO week, month), the time axis
//! with its empty periods filled in, the month-over-month and year-over-year months, and AR aging by days.

use time::{Date, Duration, Month};

use super::filters::Grain;
use super::queries::{AGING, Bucket, Comparison, NO_SERVICE_DATE, Totals};

/// The first day of the period of `grain` holding `day`.
pub fn start(grain: Grain, day: Date) -> Date {
    match grain {
        Grain::Day => day,
        Grain::Week => day - Duration::days(i64::from(day.weekday().number_days_from_monday())),
        Grain::Month => month_start(day.year(), day.month()),
    }
}

fn month_start(year: i32, month: Month) -> Date {
    // The first of a month exists in every year the warehouse holds (`DATE` columns parsed from four digits).
    Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN)
}

/// The first day of the period after the one starting `period`.
fn next(grain: Grain, period: Date) -> Option<Date> {
    match grain {
        Grain::Day => period.next_day(),
        Grain::Week => period.checked_add(Duration::weeks(1)),
        Grain::Month => {
            let last = Date::from_calendar_date(
                period.year(),
                period.month(),
                period.month().length(period.year()),
            )
            .ok()?;
            last.next_day()
        }
    }
}

/// The first day of the month `months` months before the month starting `month`.
fn months_back(month: Date, months: u32) -> Date {
    let index = month.year() * 12 + i32::from(u8::from(month.month())) - 1 - months as i32;
    let m = u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1);
    month_start(
        index.div_euclid(12),
        Month::try_from(m).unwrap_or(Month::January),
    )
}

/// How a period is labelled: `YYYY-MM` for months, its first day `YYYY-MM-DD` otherwise.
pub fn label(grain: Grain, period: Date) -> String {
    match grain {
        Grain::Month => format!("{:04}-{:02}", period.year(), u8::from(period.month())),
        Grain::Day | Grain::Week => period.to_string(),
    }
}

/// The most periods a time axis reaches out to a range's edges with: past it (a range of centuries by day) the axis
/// spans the periods that have lines only.
pub const MAX_AXIS_PERIODS: usize = 4000;

/// Every period from the first to the last of `periods` (sorted period starts with their sums), reaching out to the
/// periods of the range's edges `from` and `to` when given: those without lines get zero sums, so that the time
/// axis has one evenly spaced point per period and a range shows its empty ends.
pub fn fill(
    grain: Grain,
    periods: &[(Date, Totals)],
    from: Option<Date>,
    to: Option<Date>,
) -> Vec<(Date, Totals)> {
    let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
        return Vec::new();
    };
    let edges = (
        from.map_or(first.0, |d| start(grain, d).min(first.0)),
        to.map_or(last.0, |d| start(grain, d).max(last.0)),
    );
    filled(grain, periods, edges, MAX_AXIS_PERIODS).unwrap_or_else(|| {
        filled(grain, periods, (first.0, last.0), usize::MAX).unwrap_or_default()
    })
}

/// [`fill`] between two period starts, or `None` past `most` periods.
fn filled(
    grain: Grain,
    periods: &[(Date, Totals)],
    (first, last): (Date, Date),
    most: usize,
) -> Option<Vec<(Date, Totals)>> {
    let mut out = Vec::with_capacity(periods.len());
    let mut given = periods.iter().peekable();
    let mut at = Some(first);
    while let Some(period) = at.filter(|p| *p <= last) {
        if out.len() == most {
            return None;
        }
        let totals = match given.peek() {
            Some((p, t)) if *p == period => {
                given.next();
                *t
            }
            _ => Totals::default(),
        };
        out.push((period, totals));
        at = next(grain, period);
    }
    Some(out)
}

/// The as-of date's month against the month before and the same month a year before, from the sums per month.
pub fn compare(as_of: Date, months: &[(Date, Totals)]) -> Comparison {
    let month = start(Grain::Month, as_of);
    let sums = |m: Date| {
        months
            .iter()
            .find(|(p, _)| *p == m)
            .map_or_else(Totals::default, |(_, t)| *t)
    };
    let with_label = |m: Date| (label(Grain::Month, m), sums(m));
    Comparison {
        month: label(Grain::Month, month),
        current: sums(month),
        previous_month: with_label(months_back(month, 1)),
        previous_year: with_label(months_back(month, 12)),
    }
}

/// AR outstanding per aging bucket: days from each service date to `as_of` (a later service date is 0 days);
/// lines without a service date last, when they hold any.
pub fn age(as_of: Date, by_service_date: &[(Option<Date>, Totals)]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = AGING
        .iter()
        .map(|&(label, _)| Bucket {
            label,
            ar: Default::default(),
            transactions: 0,
        })
        .collect();
    let mut undated = Bucket {
        label: NO_SERVICE_DATE,
        ar: Default::default(),
        transactions: 0,
    };
    for (service, totals) in by_service_date {
        let bucket = match service {
            Some(service) => {
                let days = (as_of - *service).whole_days().max(0);
                let i = AGING
                    .iter()
                    .position(|(_, upto)| upto.is_none_or(|u| days <= u))
                    .unwrap_or(AGING.len() - 1);
                &mut buckets[i]
            }
            None => &mut undated,
        };
        bucket.ar.0 += totals.ar.0;
        bucket.transactions += totals.transactions;
    }
    if undated.transactions > 0 {
        buckets.push(undated);
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::super::queries::Cents;
    use super::*;

    fn d(s: &str) -> Date {
        super::super::filters::parse_day(s).unwrap()
    }

    fn sums(gross: i64) -> Totals {
        Totals {
            transactions: 1,
            gross_charges: Cents(gross),
            ar: Cents(gross),
            ..Totals::default()
        }
    }

    #[test]
    fn periods_start_on_the_day_the_monday_or_the_first() {
        assert_eq!(start(Grain::Day, d("2020-03-05")), d("2020-03-05"));
        // 2020-03-05 is a Thursday; its ISO week starts Monday 2020-03-02; a week can span two years.
        assert_eq!(start(Grain::Week, d("2020-03-05")), d("2020-03-02"));
        assert_eq!(start(Grain::Week, d("2021-01-01")), d("2020-12-28"));
        assert_eq!(start(Grain::Month, d("2020-02-29")), d("2020-02-01"));
        assert_eq!(label(Grain::Month, d("2020-02-01")), "2020-02");
        assert_eq!(label(Grain::Week, d("2020-03-02")), "2020-03-02");
    }

    #[test]
    fn empty_periods_are_filled_with_zero_in_order() {
        let months = fill(
            Grain::Month,
            &[(d("2019-11-01"), sums(5)), (d("2020-02-01"), sums(7))],
            None,
            None,
        );
        let labels: Vec<String> = months
            .iter()
            .map(|(p, _)| label(Grain::Month, *p))
            .collect();
        assert_eq!(labels, ["2019-11", "2019-12", "2020-01", "2020-02"]);
        assert_eq!(months[1].1, Totals::default());
        assert_eq!(months[3].1.gross_charges, Cents(7));
        let days = fill(
            Grain::Day,
            &[(d("2020-02-28"), sums(1)), (d("2020-03-01"), sums(2))],
            None,
            None,
        );
        assert_eq!(days.len(), 3, "2020 is a leap year");
        let weeks = fill(
            Grain::Week,
            &[(d("2020-12-21"), sums(1)), (d("2021-01-04"), sums(2))],
            None,
            None,
        );
        assert_eq!(
            weeks.iter().map(|w| w.0).collect::<Vec<_>>(),
            [d("2020-12-21"), d("2020-12-28"), d("2021-01-04")]
        );
        assert!(fill(Grain::Day, &[], None, None).is_empty());
    }

    #[test]
    fn a_range_reaches_out_to_its_edges_and_a_huge_one_stays_with_the_lines() {
        let lines = [(d("2020-03-10"), sums(5)), (d("2020-05-20"), sums(7))];
        let months = fill(
            Grain::Month,
            &lines,
            Some(d("2020-01-15")),
            Some(d("2020-07-31")),
        );
        let labels: Vec<String> = months
            .iter()
            .map(|(p, _)| label(Grain::Month, *p))
            .collect();
        assert_eq!(
            labels,
            [
                "2020-01", "2020-02", "2020-03", "2020-04", "2020-05", "2020-06", "2020-07"
            ]
        );
        assert_eq!(months[0].1, Totals::default());
        assert_eq!(months[6].1, Totals::default());
        let days = fill(Grain::Day, &lines, Some(d("2020-03-08")), None);
        assert_eq!(days.first().map(|p| p.0), Some(d("2020-03-08")));
        assert_eq!(days.last().map(|p| p.0), Some(d("2020-05-20")));
        // Centuries by day would be tens of thousands of points: the axis spans the lines only.
        let wide = fill(
            Grain::Day,
            &lines,
            Some(d("1900-01-01")),
            Some(d("2099-12-31")),
        );
        assert_eq!(wide.first().map(|p| p.0), Some(d("2020-03-10")));
        assert_eq!(wide.len(), 72);
    }

    #[test]
    fn the_comparison_takes_the_month_before_and_the_same_month_a_year_before() {
        let c = compare(
            d("2020-01-15"),
            &[
                (d("2019-01-01"), sums(1)),
                (d("2019-12-01"), sums(2)),
                (d("2020-01-01"), sums(3)),
            ],
        );
        assert_eq!(c.month, "2020-01");
        assert_eq!(c.current.gross_charges, Cents(3));
        assert_eq!(c.previous_month.0, "2019-12");
        assert_eq!(c.previous_month.1.gross_charges, Cents(2));
        assert_eq!(c.previous_year.0, "2019-01");
        assert_eq!(c.previous_year.1.gross_charges, Cents(1));
        let empty = compare(d("2020-03-31"), &[]);
        assert_eq!(empty.previous_month.0, "2020-02");
        assert_eq!(empty.previous_month.1, Totals::default());
    }

    #[test]
    fn ar_ages_by_days_from_service_to_the_as_of_date_with_inclusive_bounds() {
        let as_of = d("2020-05-31");
        let buckets = age(
            as_of,
            &[
                (Some(d("2020-06-10")), sums(1)),  // after the as-of date: 0 days
                (Some(d("2020-05-01")), sums(2)),  // 30 days
                (Some(d("2020-04-30")), sums(4)),  // 31 days
                (Some(d("2020-03-02")), sums(8)),  // 90 days
                (Some(d("2020-02-01")), sums(16)), // 120 days
                (Some(d("2020-01-31")), sums(32)), // 121 days
                (None, sums(64)),
            ],
        );
        let got: Vec<(&str, i64)> = buckets.iter().map(|b| (b.label, b.ar.0)).collect();
        assert_eq!(
            got,
            [
                ("0-30", 3),
                ("31-60", 4),
                ("61-90", 8),
                ("91-120", 16),
                ("120+", 32),
                (NO_SERVICE_DATE, 64)
            ]
        );
        assert_eq!(age(as_of, &[]).len(), AGING.len());
    }
}
