//! The dashboard's filters — a date range on post or service date, the time grain, and the slices (payer,
//! location, physician, specialty, CPT group and code, diagnosis group and code, patient gender, age band and
//! state) — parsed and validated from a URL query string or command-line values, and turned into parameterized
//! conditions (never into SQL text). Also the table sort the page's links ask for.

use time::{Date, Month};
use tokio_postgres::types::ToSql;

use crate::reporting::{
    AGE_BAND, Attribute, CPT_CODE, CPT_GROUPING, Condition, DIAGNOSIS_CODE, DIAGNOSIS_GROUP,
    GENDER, LOCATION_ID, LOCATION_NAME, Op, PAYER_ID, PAYER_NAME, PHYSICIAN_ID, PHYSICIAN_NAME,
    POST_DATE, POST_MONTH, POST_WEEK, SERVICE_DATE, SERVICE_MONTH, SERVICE_WEEK, SPECIALTY, STATE,
    UNKNOWN,
};

/// The longest text filter accepted: the widest dimension column filtered on (`VARCHAR(200)` names).
const MAX_TEXT: usize = 200;

/// The age bands of `reporting.patient_demographics`, and `unknown`.
pub const AGE_BANDS: [&str; 4] = ["under 18", "18-65", "over 65", UNKNOWN];

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
    /// A parameter with a fixed set of values got another one.
    #[error("{name}: '{value}' is not one of {expected}")]
    Choice {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// The values accepted, listed.
        expected: String,
    },
    /// A text filter is longer than the dimension's column allows or holds control characters.
    #[error("{name}: expected at most {MAX_TEXT} characters without control characters")]
    Text {
        /// The parameter.
        name: &'static str,
    },
    /// The first date is after the last.
    #[error("from ({from}) is after to ({to})")]
    Range {
        /// The `from` date.
        from: String,
        /// The `to` date.
        to: String,
    },
    /// A parameter that is not a filter (the name given).
    #[error("unknown parameter '{0}'; expected one of {PARAMETERS}")]
    Unknown(String),
    /// A parameter given more than once (its name).
    #[error("parameter '{0}' is given more than once")]
    Repeated(String),
    /// A `%` escape decodes to bytes that are not UTF-8.
    #[error("the query string is not valid percent-encoded UTF-8")]
    Encoding,
}

/// Every parameter the dashboard takes, for the error message.
const PARAMETERS: &str = "from, to, dates, grain, payer, location, physician, specialty, cpt_group, cpt, \
                          diagnosis_group, diagnosis, gender, age_band, state, sort, dir";

/// Which date of a line the range, the time axis and the aging use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DateBasis {
    /// The day the line was posted (`dim_date_post_pk`).
    #[default]
    Post,
    /// The day the service was rendered (`dim_date_service_pk`).
    Service,
}

impl DateBasis {
    /// The parameter value: `post` or `service`.
    pub fn name(self) -> &'static str {
        match self {
            DateBasis::Post => "post",
            DateBasis::Service => "service",
        }
    }

    /// The day attribute the range filters.
    pub fn day(self) -> &'static Attribute {
        match self {
            DateBasis::Post => &POST_DATE,
            DateBasis::Service => &SERVICE_DATE,
        }
    }
}

/// The length of one period of the time axis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Grain {
    /// One point per day.
    Day,
    /// One point per ISO week (starting Monday).
    Week,
    /// One point per calendar month.
    #[default]
    Month,
}

impl Grain {
    /// The parameter value: `day`, `week` or `month`.
    pub fn name(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
        }
    }

    /// The attribute grouping lines into periods of this grain on `basis`.
    pub fn attribute(self, basis: DateBasis) -> &'static Attribute {
        match (basis, self) {
            (DateBasis::Post, Grain::Day) => &POST_DATE,
            (DateBasis::Post, Grain::Week) => &POST_WEEK,
            (DateBasis::Post, Grain::Month) => &POST_MONTH,
            (DateBasis::Service, Grain::Day) => &SERVICE_DATE,
            (DateBasis::Service, Grain::Week) => &SERVICE_WEEK,
            (DateBasis::Service, Grain::Month) => &SERVICE_MONTH,
        }
    }
}

/// A dimension the dashboard can be sliced by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slice {
    /// Payer, by key or name.
    Payer,
    /// Location, by key or name.
    Location,
    /// Physician, by key or name.
    Physician,
    /// Provider specialty.
    Specialty,
    /// CPT grouping.
    CptGroup,
    /// CPT code.
    Cpt,
    /// Diagnosis group (ICD chapter).
    DiagnosisGroup,
    /// ICD diagnosis code.
    Diagnosis,
    /// Patient gender.
    Gender,
    /// Patient age band ([`AGE_BANDS`]).
    AgeBand,
    /// Patient state.
    State,
}

impl Slice {
    /// Every slice, in the form's order.
    pub const ALL: [Slice; 11] = [
        Slice::Payer,
        Slice::Location,
        Slice::Physician,
        Slice::Specialty,
        Slice::CptGroup,
        Slice::Cpt,
        Slice::DiagnosisGroup,
        Slice::Diagnosis,
        Slice::Gender,
        Slice::AgeBand,
        Slice::State,
    ];

    /// The query parameter.
    pub fn name(self) -> &'static str {
        match self {
            Slice::Payer => "payer",
            Slice::Location => "location",
            Slice::Physician => "physician",
            Slice::Specialty => "specialty",
            Slice::CptGroup => "cpt_group",
            Slice::Cpt => "cpt",
            Slice::DiagnosisGroup => "diagnosis_group",
            Slice::Diagnosis => "diagnosis",
            Slice::Gender => "gender",
            Slice::AgeBand => "age_band",
            Slice::State => "state",
        }
    }

    /// What people call it (the form's label, the static report's text).
    pub fn label(self) -> &'static str {
        match self {
            Slice::Payer => "Payer",
            Slice::Location => "Location",
            Slice::Physician => "Physician",
            Slice::Specialty => "Specialty",
            Slice::CptGroup => "CPT group",
            Slice::Cpt => "CPT code",
            Slice::DiagnosisGroup => "Diagnosis group",
            Slice::Diagnosis => "Diagnosis code",
            Slice::Gender => "Patient gender",
            Slice::AgeBand => "Age band",
            Slice::State => "Patient state",
        }
    }

    /// The key attribute of a slice chosen by id (payer, location, physician), if it has one.
    pub fn key(self) -> Option<&'static Attribute> {
        match self {
            Slice::Payer => Some(&PAYER_ID),
            Slice::Location => Some(&LOCATION_ID),
            Slice::Physician => Some(&PHYSICIAN_ID),
            _ => None,
        }
    }

    /// The text attribute a named choice is compared with (`unknown` when the dimension row is missing).
    pub fn named(self) -> &'static Attribute {
        match self {
            Slice::Payer => &PAYER_NAME,
            Slice::Location => &LOCATION_NAME,
            Slice::Physician => &PHYSICIAN_NAME,
            Slice::Specialty => &SPECIALTY,
            Slice::CptGroup => &CPT_GROUPING,
            Slice::Cpt => &CPT_CODE,
            Slice::DiagnosisGroup => &DIAGNOSIS_GROUP,
            Slice::Diagnosis => &DIAGNOSIS_CODE,
            Slice::Gender => &GENDER,
            Slice::AgeBand => &AGE_BAND,
            Slice::State => &STATE,
        }
    }
}

/// A slice's chosen value: a dimension key, or a name as a person types it (compared ignoring case; `unknown`
/// selects the lines whose dimension row is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A dimension key (`payer=3`).
    Id(i64),
    /// A name (`payer=Aetna`, `specialty=Cardiology`, `payer=unknown`).
    Name(String),
}

impl Choice {
    /// The value as the query string and the API give it.
    pub fn text(&self) -> String {
        match self {
            Choice::Id(id) => id.to_string(),
            Choice::Name(name) => name.clone(),
        }
    }
}

/// A table sort asked for by a column heading's link: `sort=<table>.<column>&dir=asc|desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    /// The table's id (see [`super::tables`]).
    pub table: String,
    /// The column's key.
    pub column: String,
    /// Largest first.
    pub descending: bool,
}

/// What the dashboard is filtered to; every filter optional. Dates are inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// First day of the range.
    pub from: Option<Date>,
    /// Last day of the range.
    pub to: Option<Date>,
    /// Which date the range, time axis and aging use.
    pub dates: DateBasis,
    /// The time axis' period.
    pub grain: Grain,
    /// The chosen slices, in [`Slice::ALL`] order, each once.
    pub slices: Vec<(Slice, Choice)>,
    /// The table sort asked for.
    pub sort: Option<Sort>,
}

/// A query parameter's value, typed for the driver.
#[derive(Debug, Clone)]
pub enum Param {
    /// A text value (a date or a name).
    Text(String),
    /// An integer value (a key).
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
    /// Parse a URL query string (`from=2020-01-01&payer=3`, `application/x-www-form-urlencoded`); empty values mean
    /// "no filter" (as an HTML form sends them).
    pub fn from_query(query: &str) -> Result<Filters, FilterError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        // The decoder replaces bytes that are not UTF-8 with U+FFFD; refuse them rather than filter on a mangled name.
        if pairs
            .iter()
            .any(|(n, v)| n.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
        {
            return Err(FilterError::Encoding);
        }
        Filters::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// Build from name/value pairs (the query string's, or the command line's), validating each.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        let mut seen: Vec<&str> = Vec::new();
        let (mut sort, mut dir) = (None, None);
        for (name, value) in pairs {
            if seen.contains(&name) {
                return Err(FilterError::Repeated(name.to_string()));
            }
            seen.push(name);
            let value = value.trim();
            if value.is_empty() {
                if Slice::ALL.iter().all(|s| s.name() != name) && !KNOWN.contains(&name) {
                    return Err(FilterError::Unknown(name.to_string()));
                }
                continue;
            }
            match name {
                "from" => f.from = Some(date("from", value)?),
                "to" => f.to = Some(date("to", value)?),
                "dates" => {
                    f.dates = choose(
                        "dates",
                        value,
                        &[("post", DateBasis::Post), ("service", DateBasis::Service)],
                    )?;
                }
                "grain" => {
                    f.grain = choose(
                        "grain",
                        value,
                        &[
                            ("day", Grain::Day),
                            ("week", Grain::Week),
                            ("month", Grain::Month),
                        ],
                    )?;
                }
                "sort" => sort = Some(value),
                "dir" => dir = Some(choose("dir", value, &[("asc", false), ("desc", true)])?),
                other => {
                    let slice = Slice::ALL
                        .into_iter()
                        .find(|s| s.name() == other)
                        .ok_or_else(|| FilterError::Unknown(other.to_string()))?;
                    f.slices.push((slice, choice(slice, value)?));
                }
            }
        }
        f.slices.sort_by_key(|(s, _)| *s);
        if let Some(value) = sort {
            f.sort = Some(parse_sort(value, dir.unwrap_or(false))?);
        }
        if let (Some(from), Some(to)) = (f.from, f.to)
            && from > to
        {
            return Err(FilterError::Range {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        Ok(f)
    }

    /// The choice of `slice`, if it is filtered.
    pub fn get(&self, slice: Slice) -> Option<&Choice> {
        self.slices
            .iter()
            .find(|(s, _)| *s == slice)
            .map(|(_, c)| c)
    }

    /// The same filters without the date range (the month-over-month and year-over-year comparisons).
    pub fn without_range(&self) -> Filters {
        Filters {
            from: None,
            to: None,
            ..self.clone()
        }
    }

    /// The filters as name/value pairs, in a fixed order (defaults left out), without the sort.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(v) = self.from {
            out.push(("from", v.to_string()));
        }
        if let Some(v) = self.to {
            out.push(("to", v.to_string()));
        }
        if self.dates != DateBasis::default() {
            out.push(("dates", self.dates.name().to_string()));
        }
        if self.grain != Grain::default() {
            out.push(("grain", self.grain.name().to_string()));
        }
        for (slice, choice) in &self.slices {
            out.push((slice.name(), choice.text()));
        }
        out
    }

    /// The filters as a query string (form-encoded), empty when there are none; the sort is left out.
    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs() {
            query.append_pair(name, &value);
        }
        query.finish()
    }

    /// The filters and `sort` as a query string: the link of a sortable column heading.
    pub fn query_sorted(&self, sort: &Sort) -> String {
        let mut query = form_urlencoded::Serializer::new(self.to_query());
        query.append_pair("sort", &format!("{}.{}", sort.table, sort.column));
        query.append_pair("dir", if sort.descending { "desc" } else { "asc" });
        query.finish()
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
        if let Some(v) = self.from {
            push(self.dates.day(), Op::OnOrAfter, Param::Text(v.to_string()));
        }
        if let Some(v) = self.to {
            push(self.dates.day(), Op::OnOrBefore, Param::Text(v.to_string()));
        }
        for (slice, choice) in &self.slices {
            match (choice, slice.key()) {
                (Choice::Id(id), Some(key)) => push(key, Op::Equals, Param::Int(*id)),
                (choice, _) => push(slice.named(), Op::Named, Param::Text(choice.text())),
            }
        }
        (conditions, params)
    }
}

/// Parameters other than the slices (an empty value of one of these is "not given").
const KNOWN: [&str; 6] = ["from", "to", "dates", "grain", "sort", "dir"];

/// One of a fixed set of values.
fn choose<T: Copy>(
    name: &'static str,
    value: &str,
    choices: &[(&str, T)],
) -> Result<T, FilterError> {
    choices
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(value))
        .map(|(_, v)| *v)
        .ok_or_else(|| FilterError::Choice {
            name,
            value: value.to_string(),
            expected: choices
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `YYYY-MM-DD` naming a day that exists.
fn date(name: &'static str, value: &str) -> Result<Date, FilterError> {
    let bad = || FilterError::Date {
        name,
        value: value.to_string(),
    };
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u16> {
        let s = value.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(bad());
    };
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(d).map_err(|_| bad())?;
    if y == 0 {
        return Err(bad());
    }
    Date::from_calendar_date(i32::from(y), month, day).map_err(|_| bad())
}

/// A `YYYY-MM-DD` day as the warehouse prints dates.
pub fn parse_day(value: &str) -> Option<Date> {
    date("date", value).ok()
}

/// A slice's value: a key for the keyed slices when it is a whole number, else a name (an age band must be one of
/// [`AGE_BANDS`]).
fn choice(slice: Slice, value: &str) -> Result<Choice, FilterError> {
    if value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(FilterError::Text { name: slice.name() });
    }
    if slice == Slice::AgeBand {
        let band = choose("age_band", value, &AGE_BANDS.map(|b| (b, b)))?;
        return Ok(Choice::Name(band.to_string()));
    }
    let digits = value.strip_prefix('-').unwrap_or(value);
    if slice.key().is_some() && !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        return value
            .parse()
            .map(Choice::Id)
            .map_err(|_| FilterError::Choice {
                name: slice.name(),
                value: value.to_string(),
                expected: "a key that fits 64 bits, or a name".into(),
            });
    }
    Ok(Choice::Name(value.to_string()))
}

/// `<table>.<column>`, both lower-case identifiers naming a sortable column (see [`super::tables::sortable`]).
fn parse_sort(value: &str, descending: bool) -> Result<Sort, FilterError> {
    let bad = || FilterError::Choice {
        name: "sort",
        value: value.to_string(),
        expected: "<table>.<column> of a table on the page, e.g. payers.collected".into(),
    };
    let (table, column) = value.split_once('.').ok_or_else(bad)?;
    if !super::tables::sortable(table, column) {
        return Err(bad());
    }
    Ok(Sort {
        table: table.to_string(),
        column: column.to_string(),
        descending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Date {
        date("from", s).unwrap()
    }

    #[test]
    fn a_full_query_string_parses_into_typed_filters_and_back() {
        let f = Filters::from_query(
            "from=2020-01-01&to=2020-03-31&payer=3&location=St.+Luke%E2%80%99s&specialty=Hematology+%26+Oncology\
             &dates=service&grain=week&physician=unknown&cpt_group=Surgery&cpt=99213&diagnosis_group=X\
             &diagnosis=I10&gender=Female&age_band=over+65&state=KY",
        )
        .unwrap();
        assert_eq!(f.from, Some(day("2020-01-01")));
        assert_eq!(f.to, Some(day("2020-03-31")));
        assert_eq!(f.dates, DateBasis::Service);
        assert_eq!(f.grain, Grain::Week);
        assert_eq!(f.get(Slice::Payer), Some(&Choice::Id(3)));
        assert_eq!(
            f.get(Slice::Location),
            Some(&Choice::Name("St. Luke’s".into()))
        );
        assert_eq!(
            f.get(Slice::Specialty),
            Some(&Choice::Name("Hematology & Oncology".into()))
        );
        assert_eq!(f.get(Slice::Cpt), Some(&Choice::Name("99213".into())));
        assert_eq!(f.slices.len(), 11);
        assert_eq!(Filters::from_query(&f.to_query()).unwrap(), f);
    }

    #[test]
    fn empty_values_from_a_form_mean_no_filter() {
        let f = Filters::from_query(
            "from=&to=&dates=&grain=&payer=&location=&specialty=&cpt=&age_band=&sort=&dir=",
        )
        .unwrap();
        assert!(f == Filters::default());
        assert_eq!(f.to_query(), "");
        assert_eq!(Filters::from_query("").unwrap(), Filters::default());
        assert_eq!(
            Filters::from_query("nope="),
            Err(FilterError::Unknown("nope".into()))
        );
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
            "0000-01-01",
            "x",
        ] {
            let e = Filters::from_query(&format!("from={bad}")).unwrap_err();
            assert!(
                matches!(e, FilterError::Date { name: "from", .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        }
        assert_eq!(
            Filters::from_query("to=2020-02-29").unwrap().to,
            Some(day("2020-02-29"))
        );
    }

    #[test]
    fn keyed_slices_take_a_key_or_a_name_as_typed() {
        let f = Filters::from_pairs([("payer", "Blue Cross, Blue Shield"), ("location", " 12 ")])
            .unwrap();
        assert_eq!(
            f.get(Slice::Payer),
            Some(&Choice::Name("Blue Cross, Blue Shield".into()))
        );
        assert_eq!(f.get(Slice::Location), Some(&Choice::Id(12)));
        let e = Filters::from_query("payer=99999999999999999999").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("payer: '99999999999999999999' is not one of a key"),
            "{e}"
        );
        // A CPT code is text, even when it is all digits: leading zeros are data.
        assert_eq!(
            Filters::from_query("cpt=00100").unwrap().get(Slice::Cpt),
            Some(&Choice::Name("00100".into()))
        );
    }

    #[test]
    fn fixed_choices_name_what_they_accept() {
        let e = Filters::from_query("grain=year").unwrap_err();
        assert_eq!(
            e.to_string(),
            "grain: 'year' is not one of day, week, month"
        );
        let e = Filters::from_query("dates=billed").unwrap_err();
        assert_eq!(e.to_string(), "dates: 'billed' is not one of post, service");
        let e = Filters::from_query("age_band=40s").unwrap_err();
        assert_eq!(
            e.to_string(),
            "age_band: '40s' is not one of under 18, 18-65, over 65, unknown"
        );
        assert_eq!(
            Filters::from_query("age_band=UNKNOWN")
                .unwrap()
                .get(Slice::AgeBand),
            Some(&Choice::Name("unknown".into()))
        );
    }

    #[test]
    fn a_reversed_range_unknown_or_repeated_parameters_are_refused() {
        assert!(matches!(
            Filters::from_query("from=2020-02-01&to=2020-01-01"),
            Err(FilterError::Range { .. })
        ));
        assert_eq!(
            Filters::from_query("order=name"),
            Err(FilterError::Unknown("order".into()))
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
            Filters::from_query(&format!("state={}", "x".repeat(201))),
            Err(FilterError::Text { name: "state" })
        );
        assert_eq!(
            Filters::from_query("gender=a%0Ab"),
            Err(FilterError::Text { name: "gender" })
        );
    }

    #[test]
    fn a_sort_names_a_table_column_and_a_direction() {
        let f = Filters::from_query("payer=3&sort=payers.collected&dir=desc").unwrap();
        let sort = f.sort.clone().unwrap();
        assert_eq!(
            (sort.table.as_str(), sort.column.as_str()),
            ("payers", "collected")
        );
        assert!(sort.descending);
        assert_eq!(
            f.query_sorted(&sort),
            "payer=3&sort=payers.collected&dir=desc"
        );
        assert_eq!(f.to_query(), "payer=3");
        for bad in [
            "payers",
            "payers.nope",
            "nope.collected",
            "payers.collected;x",
        ] {
            let e = Filters::from_query(&format!("sort={bad}")).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("sort: '{bad}' is not one of")),
                "{e}"
            );
        }
    }

    #[test]
    fn conditions_number_their_parameters_in_order_on_the_chosen_date() {
        let f = Filters::from_pairs([
            ("to", "2020-01-31"),
            ("dates", "service"),
            ("specialty", "cardiology"),
            ("payer", "7"),
        ])
        .unwrap();
        let (conditions, params) = f.conditions();
        assert_eq!(conditions.len(), 3);
        assert_eq!(conditions[0].op, Op::OnOrBefore);
        assert_eq!(conditions[0].attribute.name, "service_date");
        assert_eq!(conditions[1].attribute.name, "payer_id");
        assert_eq!(conditions[1].op, Op::Equals);
        assert_eq!(conditions[2].attribute.name, "specialty");
        assert_eq!(conditions[2].op, Op::Named);
        assert_eq!(conditions[2].param, 3);
        assert!(matches!(&params[2], Param::Text(s) if s == "cardiology"));
        let named = Filters::from_pairs([("payer", "unknown")])
            .unwrap()
            .conditions();
        assert_eq!(named.0[0].attribute.name, "payer_name");
    }
}
