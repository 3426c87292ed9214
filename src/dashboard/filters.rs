//! The dashboard's filters — post-date range, payer, location, specialty — parsed and validated from a URL query
//! string or command-line values, and turned into parameterized conditions (never into SQL text).

use std::fmt::Write as _;

use tokio_postgres::types::ToSql;

use crate::reporting::{Condition, LOCATION_ID, Op, PAYER_ID, POST_DATE, SPECIALTY};

/// The longest specialty accepted: the width of `dim_physician.provider_specialty`.
const MAX_SPECIALTY: usize = 100;

/// Why a filter was refused; the message names the parameter, the value and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A date filter is not a `YYYY-MM-DD` day that exists.
    #[error("{name}: '{value}' is not a date; expected YYYY-MM-DD, e.g. 2020-01-31")]
    Date {
        /// The parameter (`from` or `to`).
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// A payer or location filter is not a whole number.
    #[error("{name}: '{value}' is not an id; expected a whole number, e.g. 3")]
    Id {
        /// The parameter (`payer` or `location`).
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// The specialty is longer than `dim_physician.provider_specialty` allows or holds control characters.
    #[error("specialty: expected at most {MAX_SPECIALTY} characters without control characters")]
    Specialty,
    /// The first post date is after the last.
    #[error("from ({from}) is after to ({to})")]
    Range {
        /// The `from` date.
        from: String,
        /// The `to` date.
        to: String,
    },
    /// A parameter that is not a filter (the name given).
    #[error("unknown parameter '{0}'; expected from, to, payer, location or specialty")]
    Unknown(String),
    /// A parameter given more than once (its name).
    #[error("parameter '{0}' is given more than once")]
    Repeated(String),
    /// A `%` escape is malformed or the decoded bytes are not UTF-8.
    #[error("the query string is not valid percent-encoded UTF-8")]
    Encoding,
}

/// What the dashboard is filtered to; every field optional. Dates are post dates, inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// First post date, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last post date, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// `dim_payer_pk`.
    pub payer: Option<i64>,
    /// `dim_location_pk`.
    pub location: Option<i64>,
    /// Provider specialty as named in `dim_physician` (or `unknown`).
    pub specialty: Option<String>,
}

/// A query parameter's value, typed for the driver.
#[derive(Debug, Clone)]
pub enum Param {
    /// A text value (a date or a specialty).
    Text(String),
    /// An integer value (a payer or location id).
    Int(i64),
}

impl Param {
    /// The value as the driver takes it.
    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Int(i) => i,
        }
    }
}

impl Filters {
    /// Parse a URL query string (`from=2020-01-01&payer=3`); empty values mean "no filter" (as an HTML form sends
    /// them).
    pub fn from_query(query: &str) -> Result<Filters, FilterError> {
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((percent_decode(name)?, percent_decode(value)?));
        }
        Filters::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// Build from name/value pairs, validating each.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in pairs {
            if seen.iter().any(|s| s == name) {
                return Err(FilterError::Repeated(name.to_string()));
            }
            seen.push(name.to_string());
            let value = value.trim();
            match name {
                "from" => f.from = non_empty(value).map(|v| date("from", v)).transpose()?,
                "to" => f.to = non_empty(value).map(|v| date("to", v)).transpose()?,
                "payer" => f.payer = non_empty(value).map(|v| id("payer", v)).transpose()?,
                "location" => {
                    f.location = non_empty(value).map(|v| id("location", v)).transpose()?;
                }
                "specialty" => f.specialty = non_empty(value).map(specialty).transpose()?,
                other => return Err(FilterError::Unknown(other.to_string())),
            }
        }
        if let (Some(from), Some(to)) = (&f.from, &f.to)
            && from > to
        {
            return Err(FilterError::Range {
                from: from.clone(),
                to: to.clone(),
            });
        }
        Ok(f)
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// The filters as a query string (percent-encoded), empty when there are none.
    pub fn to_query(&self) -> String {
        let mut out = String::new();
        let mut add = |name: &str, value: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(&percent_encode(value));
        };
        if let Some(v) = &self.from {
            add("from", v);
        }
        if let Some(v) = &self.to {
            add("to", v);
        }
        if let Some(v) = self.payer {
            add("payer", &v.to_string());
        }
        if let Some(v) = self.location {
            add("location", &v.to_string());
        }
        if let Some(v) = &self.specialty {
            add("specialty", v);
        }
        out
    }

    /// The `WHERE` conditions and their parameters, numbered from `$1`.
    pub fn conditions(&self) -> (Vec<Condition>, Vec<Param>) {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let mut push = |attribute, op, param: Param| {
            params.push(param);
            conditions.push(Condition {
                attribute,
                op,
                param: params.len(),
            });
        };
        if let Some(v) = &self.from {
            push(&POST_DATE, Op::OnOrAfter, Param::Text(v.clone()));
        }
        if let Some(v) = &self.to {
            push(&POST_DATE, Op::OnOrBefore, Param::Text(v.clone()));
        }
        if let Some(v) = self.payer {
            push(&PAYER_ID, Op::Equals, Param::Int(v));
        }
        if let Some(v) = self.location {
            push(&LOCATION_ID, Op::Equals, Param::Int(v));
        }
        if let Some(v) = &self.specialty {
            push(&SPECIALTY, Op::Equals, Param::Text(v.clone()));
        }
        (conditions, params)
    }
}

fn non_empty(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// `YYYY-MM-DD` naming a day that exists.
fn date(name: &'static str, value: &str) -> Result<String, FilterError> {
    let bad = || FilterError::Date {
        name,
        value: value.to_string(),
    };
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &value[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(bad());
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if y == 0 || d == 0 || d > days {
        return Err(bad());
    }
    Ok(value.to_string())
}

fn id(name: &'static str, value: &str) -> Result<i64, FilterError> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(FilterError::Id {
            name,
            value: value.to_string(),
        });
    }
    value.parse().map_err(|_| FilterError::Id {
        name,
        value: value.to_string(),
    })
}

fn specialty(value: &str) -> Result<String, FilterError> {
    if value.chars().count() > MAX_SPECIALTY || value.chars().any(char::is_control) {
        return Err(FilterError::Specialty);
    }
    Ok(value.to_string())
}

/// Decode `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, FilterError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(FilterError::Encoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| FilterError::Encoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| FilterError::Encoding)?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FilterError::Encoding)
}

/// Encode a value for a query string: unreserved characters stay, everything else is `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_query_string_parses_into_typed_filters() {
        let f = Filters::from_query(
            "from=2020-01-01&to=2020-03-31&payer=3&location=7&specialty=Hematology+%26+Oncology",
        )
        .unwrap();
        assert_eq!(f.from.as_deref(), Some("2020-01-01"));
        assert_eq!(f.to.as_deref(), Some("2020-03-31"));
        assert_eq!(f.payer, Some(3));
        assert_eq!(f.location, Some(7));
        assert_eq!(f.specialty.as_deref(), Some("Hematology & Oncology"));
        assert_eq!(Filters::from_query(&f.to_query()).unwrap(), f);
    }

    #[test]
    fn empty_values_from_a_form_mean_no_filter() {
        let f = Filters::from_query("from=&to=&payer=&location=&specialty=").unwrap();
        assert!(f.is_empty());
        assert_eq!(f.to_query(), "");
        assert!(Filters::from_query("").unwrap().is_empty());
    }

    #[test]
    fn dates_must_be_iso_days_that_exist() {
        for bad in [
            "2020-02-30",
            "2019-02-29",
            "20200101",
            "1/2/2020",
            "2020-13-01",
            "2020-1-01",
            "x",
        ] {
            let e = Filters::from_query(&format!("from={bad}")).unwrap_err();
            assert!(
                matches!(e, FilterError::Date { name: "from", .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        }
        assert!(Filters::from_query("to=2020-02-29").is_ok());
    }

    #[test]
    fn ids_must_be_whole_numbers() {
        for bad in ["1.5", "abc", "1;DROP TABLE x", "99999999999999999999", "-"] {
            let e = Filters::from_query(&format!("payer={}", percent_encode(bad))).unwrap_err();
            assert!(
                matches!(e, FilterError::Id { name: "payer", .. }),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            Filters::from_query("location=+12+").unwrap().location,
            Some(12)
        );
    }

    #[test]
    fn a_reversed_range_unknown_or_repeated_parameters_are_refused() {
        assert!(matches!(
            Filters::from_query("from=2020-02-01&to=2020-01-01"),
            Err(FilterError::Range { .. })
        ));
        assert_eq!(
            Filters::from_query("sort=name"),
            Err(FilterError::Unknown("sort".into()))
        );
        assert_eq!(
            Filters::from_query("payer=1&payer=2"),
            Err(FilterError::Repeated("payer".into()))
        );
        assert_eq!(
            Filters::from_query("specialty=%FF"),
            Err(FilterError::Encoding)
        );
        assert_eq!(
            Filters::from_query("specialty=%4"),
            Err(FilterError::Encoding)
        );
        assert_eq!(
            Filters::from_query(&format!("specialty={}", "x".repeat(101))),
            Err(FilterError::Specialty)
        );
    }

    #[test]
    fn conditions_number_their_parameters_in_order() {
        let f = Filters {
            to: Some("2020-01-31".into()),
            specialty: Some("Cardiology".into()),
            ..Filters::default()
        };
        let (conditions, params) = f.conditions();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].op, Op::OnOrBefore);
        assert_eq!(conditions[0].param, 1);
        assert_eq!(conditions[1].attribute.name, "specialty");
        assert_eq!(conditions[1].param, 2);
        assert!(matches!(&params[1], Param::Text(s) if s == "Cardiology"));
    }
}
