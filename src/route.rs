//! Routing: which table an object (a local path or an S3 key) loads into — by its file name, or, when the name
//! decides nothing (the Kaggle copies' `DimPhyscian.csv`, `Dimtrancstion.csv`, `DimPlayer.csv`), by its header.
//! An object that routes nowhere, or to several tables, is refused before anything touches the warehouse.

use crate::schema::{SCHEMA, Table};
use crate::source::Fields;
use crate::transform::map_header;

/// How an object's table was chosen (reported, and recorded in the ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutedBy {
    /// The file name's stem names the table.
    Name,
    /// The name named no table; the header carries exactly one table's source headers.
    Header,
}

impl RoutedBy {
    /// The label in reports and the ledger.
    pub fn label(self) -> &'static str {
        match self {
            RoutedBy::Name => "name",
            RoutedBy::Header => "header",
        }
    }
}

/// Why a header routes to no table, or to more than one. Names only the schema's tables and columns, never the
/// header's own text (it may be a patient's record that lost its line end).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderRouteError {
    /// The header fits no table.
    #[error(
        "the name names no table and the header carries no table's columns (closest: {closest}, which also needs {missing})"
    )]
    NoTable {
        /// The source name of the table the header comes closest to (fewest columns missing).
        closest: String,
        /// That table's source headers the header lacks, comma-separated.
        missing: String,
    },
    /// The header fits more than one table.
    #[error(
        "the name names no table and the header fits several: {candidates}; rename the file to choose one"
    )]
    Several {
        /// The tables it fits, each with its source headers.
        candidates: String,
    },
}

/// How an object's bytes are packed, as its name says (the reader checks the bytes too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.csv`
    Plain,
    /// `.csv.gz`
    Gzip,
}

/// An object's file name without its table-file extension, and the compression that extension names: `None` when
/// the name is not one the loader reads. The one home of the rule: `.csv` or `.csv.gz`, in any case.
pub fn table_file_stem(object: &str) -> Option<(&str, Compression)> {
    let name = file_name(object);
    if let Some(stem) = strip_suffix_ci(name, ".csv.gz") {
        return Some((stem, Compression::Gzip));
    }
    strip_suffix_ci(name, ".csv").map(|stem| (stem, Compression::Plain))
}

/// Whether a name is one the loader reads (see [`table_file_stem`]).
pub fn is_csv_name(object: &str) -> bool {
    table_file_stem(object).is_some()
}

/// The longest prefix of `s` of at most `bytes` bytes that ends on a character boundary.
pub fn cut_at_boundary(s: &str, bytes: usize) -> &str {
    let mut cut = bytes.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Where an object comes in a load of many: the data dictionary, then dimensions, then the fact table, then
/// names that route nowhere (their header decides).
pub fn load_rank(name: &str) -> u8 {
    match route(name).map(|t| t.kind) {
        Ok(crate::schema::TableKind::Dictionary) => 0,
        Ok(crate::schema::TableKind::Dimension) => 1,
        Ok(crate::schema::TableKind::Fact) => 2,
        Ok(crate::schema::TableKind::Ledger) | Err(_) => 3,
    }
}

/// An object routed once, by its name, before it is read: what the pipeline and its callers pass down.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The table its name names; `None` when the name names none and the header will decide.
    pub table: Option<&'static Table>,
    /// The compression its extension names.
    pub compression: Compression,
    /// Its file name as messages show it (control characters escaped).
    pub display_name: String,
}

impl Routed {
    /// Route `object` by its name: refused when it is not a `.csv`/`.csv.gz` file; a table file whose stem names
    /// no table is left for its header to route.
    pub fn of(object: &str) -> Result<Routed, RouteError> {
        let (_, compression) = table_file_stem(object).ok_or_else(|| unknown(object))?;
        Ok(Routed {
            table: route(object).ok(),
            compression,
            display_name: escape_text(file_name(object)),
        })
    }
}

/// The one table whose source headers `header` carries (same rules as header mapping: case, spaces and
/// underscores ignored, any order, extra columns allowed).
pub fn route_by_header(header: &Fields<'_>) -> Result<&'static Table, HeaderRouteError> {
    let fits: Vec<&'static Table> = SCHEMA
        .all_tables()
        .filter(|t| map_header(t, header).is_ok())
        .collect();
    match fits.as_slice() {
        [one] => Ok(one),
        [] => {
            let normalized: Vec<String> = header
                .iter()
                .map(crate::transform::normalize_header)
                .collect();
            let missing_of = |t: &Table| -> Vec<&'static str> {
                t.columns
                    .iter()
                    .filter(|c| {
                        let names = [
                            crate::transform::normalize_header(c.source),
                            crate::transform::normalize_header(&c.name),
                        ];
                        !normalized.iter().any(|h| names.contains(h))
                    })
                    .map(|c| c.source)
                    .collect()
            };
            let closest = SCHEMA
                .all_tables()
                .min_by_key(|t| (missing_of(t).len(), t.columns.len()))
                .expect("the schema has tables");
            Err(HeaderRouteError::NoTable {
                closest: closest.source.to_string(),
                missing: missing_of(closest).join(", "),
            })
        }
        several => Err(HeaderRouteError::Several {
            candidates: several
                .iter()
                .map(|t| {
                    let cols: Vec<&str> = t.columns.iter().map(|c| c.source).collect();
                    format!("{} (columns {})", t.source, cols.join(", "))
                })
                .collect::<Vec<_>>()
                .join(" and "),
        }),
    }
}

/// Why an object name does not route to a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The name is not a `.csv`/`.csv.gz` file, or its stem names no table (a source name or alias, alone or
    /// followed by `_ - .` or a space).
    #[error(
        "'{name}' does not name a table: the file name must start with one of {known} (optionally followed by _ - . or space and anything) and end in .csv or .csv.gz"
    )]
    UnknownTable {
        /// The object's file name (control characters escaped).
        name: String,
        /// The tables' source names, for the message.
        known: String,
    },
}

/// Text from input (a file name, an S3 key) made safe to print on a terminal or in a log line: control
/// characters (newlines, ANSI escapes, …) are shown escaped (`\n`, `\u{1b}`), everything else as it is.
pub fn escape_text(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The file name of an object: the part after the last `/` (or `\`).
pub fn file_name(object: &str) -> &str {
    object.rsplit(['/', '\\']).next().unwrap_or(object)
}

/// The table an object loads into. Strip `.gz`, then `.csv`; the stem must equal a source name
/// (case-insensitively), either exactly or followed by one of `_ - . space` and anything.
pub fn route(object: &str) -> Result<&'static Table, RouteError> {
    let stem = table_file_stem(object).map(|(stem, _)| stem);
    let table = stem.and_then(|stem| {
        SCHEMA.all_tables().find(|t| {
            std::iter::once(t.source)
                .chain(t.aliases.iter().copied())
                .any(|src| {
                    stem.len() >= src.len()
                        && stem.is_char_boundary(src.len())
                        && stem[..src.len()].eq_ignore_ascii_case(src)
                        && matches!(
                            stem.as_bytes().get(src.len()),
                            None | Some(b'_' | b'-' | b'.' | b' ')
                        )
                })
        })
    });
    table.ok_or_else(|| unknown(object))
}

fn unknown(object: &str) -> RouteError {
    RouteError::UnknownTable {
        name: escape_text(file_name(object)),
        known: SCHEMA
            .all_tables()
            .map(|t| t.source)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> Option<String> {
        route(name).ok().map(|t| t.name.clone())
    }

    #[test]
    fn contract_examples_route_to_their_tables() {
        assert_eq!(table("FactTable.csv").as_deref(), Some("fact_table"));
        assert_eq!(
            table("FactTable_2024-06.csv").as_deref(),
            Some("fact_table")
        );
        assert_eq!(
            table("factTable-part-0001.csv.gz").as_deref(),
            Some("fact_table")
        );
        assert_eq!(
            table("incoming/2024/dimPatient.csv").as_deref(),
            Some("dim_patient")
        );
        assert_eq!(table("DIMCPTCODE.CSV").as_deref(), Some("dim_cpt_code"));
        assert_eq!(table("dimDate 2020.csv").as_deref(), Some("dim_date"));
        assert_eq!(table("dimDate.v2.csv").as_deref(), Some("dim_date"));
        assert_eq!(table(r"C:\data\dimPayer.csv").as_deref(), Some("dim_payer"));
    }

    #[test]
    fn the_data_dictionary_routes_under_each_of_its_spellings() {
        for name in [
            "Datadictionery.csv",
            "DataDictionary.csv",
            "data_dictionary.csv.gz",
        ] {
            assert_eq!(table(name).as_deref(), Some("data_dictionary"), "{name}");
        }
        let h = crate::source::OwnedFields::from_strs(&["Table", "Column", "Definition"]);
        assert_eq!(
            route_by_header(&h.as_fields()).unwrap().name,
            "data_dictionary"
        );
    }

    #[test]
    fn names_that_only_start_like_a_table_are_refused() {
        assert_eq!(table("dimPatients.csv"), None);
        assert_eq!(table("FactTableX.csv"), None);
        assert_eq!(table("dimDiagnosis.csv"), None);
    }

    #[test]
    fn other_extensions_and_unknown_names_are_refused() {
        for name in [
            "dimPatient.txt",
            "dimPatient.csv.zip",
            "dimPatient",
            "notes.csv",
            "raw/FactTable.csv/evil.csv",
            "x'; DROP TABLE health.fact_table; --.csv",
            "",
        ] {
            assert!(route(name).is_err(), "{name} should be refused");
        }
    }

    #[test]
    fn a_directory_that_looks_like_a_table_does_not_route_its_files() {
        assert_eq!(table("dimPatient/notes.csv"), None);
    }

    fn header(fields: &[&str]) -> crate::source::OwnedFields {
        crate::source::OwnedFields::from_strs(fields)
    }

    #[test]
    fn a_header_routes_to_the_one_table_it_carries() {
        let h = header(&[
            "dimPhysicianPK",
            "ProviderNpi",
            "ProviderName",
            "ProviderSpecialty",
            "ProviderFTE",
        ]);
        assert_eq!(
            route_by_header(&h.as_fields()).unwrap().name,
            "dim_physician"
        );
        let h = header(&["payer name", "DIM_PAYER_PK", "notes"]);
        assert_eq!(route_by_header(&h.as_fields()).unwrap().name, "dim_payer");
    }

    #[test]
    fn a_header_that_fits_several_tables_or_none_is_refused_naming_them() {
        let h = header(&["dimPayerPK", "PayerName", "dimLocationPK", "LocationName"]);
        let e = route_by_header(&h.as_fields()).unwrap_err().to_string();
        assert!(
            e.contains("dimPayer (columns dimPayerPK, PayerName)"),
            "{e}"
        );
        assert!(
            e.contains("dimLocation (columns dimLocationPK, LocationName)"),
            "{e}"
        );
        let h = header(&["dimPayerPK", "Zebulon Quackenbush"]);
        let e = route_by_header(&h.as_fields()).unwrap_err().to_string();
        assert!(
            e.contains("closest: dimPayer") && e.contains("PayerName"),
            "{e}"
        );
        assert!(!e.contains("Zebulon"), "{e}");
    }

    #[test]
    fn csv_names_are_recognised_in_any_case() {
        assert!(is_csv_name("in/DimPhyscian.CSV") && is_csv_name("x.csv.GZ"));
        assert!(!is_csv_name("x.csv.zip") && !is_csv_name("csv"));
    }

    #[test]
    fn control_characters_in_names_are_escaped_in_messages() {
        let e = route("in/evil\n\u{1b}[31mname.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'evil\\n\\u{1b}[31mname.csv'"), "{e}");
        assert!(!e.contains('\n') && !e.contains('\u{1b}'));
        assert_eq!(escape_text("plain é"), "plain é");
    }

    #[test]
    fn refusal_names_the_object_and_the_known_tables() {
        let e = route("s3/notes.csv").unwrap_err().to_string();
        assert!(e.contains("'notes.csv'") && e.contains("dimPatient"), "{e}");
    }
}
