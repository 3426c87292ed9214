//! Data-quality figures of one load, counted while its rows are cast: how many accepted rows carry each
//! dimension key (so that the warehouse can say, at commit, how many have no dimension row: orphans) and how many
//! break the table's balance identity (`AR = GrossCharge + Payment + Adjustment`). Figures, never rejections:
//! files arrive in any order. Only counts leave this module, never values in reports or logs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::schema::{Column, SCHEMA, Table};

/// Keys in `0..DENSE_KEYS` are counted in an array indexed by the key (grown as keys arrive: 4 bytes per key up
/// to the largest seen, at most 4 MB per column): the dataset's keys are small integers and dates (days since
/// 1970), and an array index costs a fraction of a hash lookup.
pub const DENSE_KEYS: usize = 1 << 20;

/// The most keys outside `0..DENSE_KEYS` one load tallies, all key columns together (about 2 MB). A column that
/// would pass it is counted by the warehouse instead, from the load's rows (exact, slower).
pub const MAX_SPARSE_KEYS: usize = 1 << 16;

/// A multiplicative hasher for integer keys: the keys are the loader's own cast values, and SipHash would cost more
/// than the rest of the tally.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED);
        }
    }

    fn write_i64(&mut self, i: i64) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(SEED);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The rows of one load per value of one dimension key column (the cast value: the integer, or days since
/// 1970-01-01 for dates).
#[derive(Debug, Clone, Default)]
pub struct KeyCounts {
    dense: Vec<u32>,
    sparse: HashMap<i64, u64, BuildHasherDefault<KeyHasher>>,
    rows: u64,
}

impl KeyCounts {
    /// Count one row with `key`; `false` when the key cannot be counted here (a new sparse key with no `budget`
    /// left, or a count past `u32::MAX`).
    #[inline]
    fn add(&mut self, key: i64, budget: &mut usize) -> bool {
        if let Ok(i) = usize::try_from(key)
            && i < DENSE_KEYS
        {
            if i >= self.dense.len() {
                self.dense
                    .resize((i + 1).next_power_of_two().min(DENSE_KEYS), 0);
            }
            let Some(n) = self.dense[i].checked_add(1) else {
                return false;
            };
            self.dense[i] = n;
        } else if let Some(n) = self.sparse.get_mut(&key) {
            *n += 1;
        } else if *budget == 0 {
            return false;
        } else {
            *budget -= 1;
            self.sparse.insert(key, 1);
        }
        self.rows += 1;
        true
    }

    /// Rows counted (rows whose key is not NULL).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Keys below this are counted densely: [`KeyCounts::dense_rows`] answers for them.
    pub fn dense_len(&self) -> usize {
        self.dense.len()
    }

    /// Rows whose key is `key`, for `key` below [`KeyCounts::dense_len`] (0 otherwise).
    pub fn dense_rows(&self, key: i64) -> u64 {
        usize::try_from(key)
            .ok()
            .and_then(|i| self.dense.get(i))
            .map_or(0, |&n| u64::from(n))
    }

    /// The keys outside the dense range and their row counts, as two arrays.
    pub fn sparse(&self) -> (Vec<i64>, Vec<i64>) {
        self.sparse
            .iter()
            .map(|(&k, &n)| (k, i64::try_from(n).unwrap_or(i64::MAX)))
            .unzip()
    }
}

/// One dimension key column's tally: `None` when the load could not count it within its bounds (the warehouse
/// counts that column from the load's rows).
#[derive(Debug, Clone, Copy)]
pub struct KeyTally<'a> {
    /// Index of the column in its table.
    pub column: usize,
    /// The rows per key value; `None` when the column could not be counted within the tally's bounds.
    pub counts: Option<&'a KeyCounts>,
}

/// Counts the quality figures of one table's accepted rows. Bounded in memory whatever the file holds: at most
/// [`DENSE_KEYS`] array slots per key column and [`MAX_SPARSE_KEYS`] other keys.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    keys: Vec<(usize, Option<KeyCounts>)>,
    balance: Option<crate::schema::Balance>,
    /// The current row's cast values (only the columns the tally looks at are kept).
    row: Vec<Option<i64>>,
    watched: Vec<bool>,
    keys_left: usize,
    mismatched: u64,
}

impl Tally {
    /// A tally for `table`: its balance identity always, its dimension keys when `count_keys` (PostgreSQL; on
    /// Redshift the warehouse counts orphans from the staged rows itself).
    pub fn new(table: &Table, count_keys: bool) -> Self {
        let n = table.columns.len();
        let mut watched = vec![false; n];
        let mut keys = Vec::new();
        if count_keys {
            for (i, _, _) in SCHEMA.dimension_keys(table) {
                watched[i] = true;
                keys.push((i, Some(KeyCounts::default())));
            }
        }
        if let Some(b) = &table.balance {
            for &i in std::iter::once(&b.total).chain(&b.parts) {
                watched[i] = true;
            }
        }
        Tally {
            keys,
            balance: table.balance.clone(),
            row: vec![None; n],
            watched,
            keys_left: MAX_SPARSE_KEYS,
            mismatched: 0,
        }
    }

    /// Whether this tally looks at any column at all (dimensions: no).
    pub fn is_active(&self) -> bool {
        self.watched.iter().any(|&w| w)
    }

    /// Whether column `i`'s cast values are wanted.
    #[inline]
    pub fn watches(&self, i: usize) -> bool {
        self.watched.get(i).copied().unwrap_or(false)
    }

    /// The cast value of column `i` in the current row (`None`: NULL). Money is in units of its scale.
    #[inline]
    pub fn value(&mut self, i: usize, v: Option<i64>) {
        self.row[i] = v;
    }

    /// The current row was accepted: count it.
    pub fn accept(&mut self) {
        if let Some(b) = &self.balance {
            let total = self.row[b.total];
            let parts: Option<i128> = b.parts.iter().map(|&p| self.row[p].map(i128::from)).sum();
            if let (Some(total), Some(parts)) = (total, parts)
                && i128::from(total) != parts
            {
                self.mismatched += 1;
            }
        }
        for (column, counts) in &mut self.keys {
            let (Some(map), Some(key)) = (counts.as_mut(), self.row[*column]) else {
                continue;
            };
            if !map.add(key, &mut self.keys_left) {
                // Past its bounds: the warehouse counts this column (and its memory is given back).
                self.keys_left += map.sparse.len();
                *counts = None;
            }
        }
    }

    /// Rows that break the balance identity, `None` when the table has none.
    pub fn balance_mismatches(&self) -> Option<u64> {
        self.balance.as_ref().map(|_| self.mismatched)
    }

    /// The key tallies, in column order.
    pub fn key_tallies(&self) -> Vec<KeyTally<'_>> {
        self.keys
            .iter()
            .map(|(column, counts)| KeyTally {
                column: *column,
                counts: counts.as_ref(),
            })
            .collect()
    }
}

/// The data-quality figures of one load, as reports, the ledger, metrics and logs carry them (counts only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quality {
    /// Per dimension key column, in table order: accepted rows whose key has no row in its dimension at commit
    /// time.
    pub orphans: Vec<(String, u64)>,
    /// The balance identity's total column (`ar`) and the rows where it is not the sum of its parts.
    pub mismatch: Option<(String, u64)>,
}

impl Quality {
    /// The figures of a load of `table`: orphans per key column (in table order) and the balance mismatches.
    pub fn new(table: &Table, orphans: Vec<(&Column, u64)>, mismatched: Option<u64>) -> Self {
        Quality {
            orphans: orphans
                .into_iter()
                .map(|(c, n)| (c.name.clone(), n))
                .collect(),
            mismatch: table
                .balance
                .as_ref()
                .zip(mismatched)
                .map(|(b, n)| (table.columns[b.total].name.clone(), n)),
        }
    }

    /// Whether any figure is non-zero.
    pub fn has_findings(&self) -> bool {
        self.orphans.iter().any(|(_, n)| *n > 0)
            || self.mismatch.as_ref().is_some_and(|(_, n)| *n > 0)
    }

    /// One line for people: `12 rows with no dim_patient row (dim_patient_pk), …; 3 rows where ar ≠ …`.
    pub fn describe(&self, table: &Table) -> String {
        let mut parts = Vec::new();
        for (column, n) in &self.orphans {
            let dim = table
                .columns
                .iter()
                .find(|c| &c.name == column)
                .and_then(|c| c.references)
                .unwrap_or("its dimension");
            if *n > 0 {
                parts.push(format!("{} with no {dim} row ({column})", rows(*n)));
            }
        }
        if let (Some((total, n)), Some(b)) = (&self.mismatch, &table.balance)
            && *n > 0
        {
            let sum: Vec<&str> = b
                .parts
                .iter()
                .map(|&p| table.columns[p].name.as_str())
                .collect();
            parts.push(format!("{} where {total} ≠ {}", rows(*n), sum.join(" + ")));
        }
        parts.join("; ")
    }

    /// The figures as JSON text: `{"orphans":{"dim_patient_pk":0,…},"ar_mismatch":0}` (the ledger's `quality`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `1 row`, `2 rows`.
fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// The orphan figures as a JSON object, in table order.
struct Orphans<'a>(&'a [(String, u64)]);

impl serde::Serialize for Orphans<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (column, n) in self.0 {
            map.serialize_entry(column, n)?;
        }
        map.end()
    }
}

impl serde::Serialize for Quality {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("orphans", &Orphans(&self.orphans))?;
        if let Some((total, n)) = &self.mismatch {
            map.serialize_entry(&format!("{total}_mismatch"), n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact() -> &'static Table {
        SCHEMA.by_name("fact_table").unwrap()
    }

    fn index(name: &str) -> usize {
        fact().columns.iter().position(|c| c.name == name).unwrap()
    }

    fn patient(tally: &Tally) -> KeyTally<'_> {
        let column = index("dim_patient_pk");
        tally
            .key_tallies()
            .into_iter()
            .find(|k| k.column == column)
            .unwrap()
    }

    fn row(tally: &mut Tally, patient: Option<i64>, money: [Option<i64>; 4]) {
        for i in 0..fact().columns.len() {
            tally.value(i, None);
        }
        tally.value(index("dim_patient_pk"), patient);
        for (name, v) in ["gross_charge", "payment", "adjustment", "ar"]
            .iter()
            .zip(money)
        {
            tally.value(index(name), v);
        }
        tally.accept();
    }

    #[test]
    fn the_fact_table_watches_its_nine_dimension_keys_and_its_balance() {
        let tally = Tally::new(fact(), true);
        assert_eq!(tally.key_tallies().len(), 9);
        assert!(tally.watches(index("ar")));
        assert!(tally.watches(index("dim_date_post_pk")));
        assert!(!tally.watches(index("patient_number")));
        let payer = SCHEMA.by_name("dim_payer").unwrap();
        assert!(!Tally::new(payer, true).is_active());
    }

    #[test]
    fn keys_are_counted_per_value_and_nulls_are_not_keys() {
        let mut tally = Tally::new(fact(), true);
        row(&mut tally, Some(7), [None; 4]);
        row(&mut tally, Some(7), [None; 4]);
        row(&mut tally, Some(9), [None; 4]);
        row(&mut tally, None, [None; 4]);
        let counts = patient(&tally).counts.unwrap();
        assert_eq!(
            (counts.dense_rows(7), counts.dense_rows(9), counts.rows()),
            (2, 1, 3)
        );
        assert_eq!(counts.dense_rows(8), 0);
    }

    #[test]
    fn a_row_whose_ar_is_not_the_sum_of_its_parts_is_a_mismatch() {
        let mut tally = Tally::new(fact(), false);
        // 2030.00 - 905.38 - 419.48 = 705.14
        row(
            &mut tally,
            Some(1),
            [Some(203_000), Some(-90_538), Some(-41_948), Some(70_514)],
        );
        row(
            &mut tally,
            Some(1),
            [Some(203_000), Some(-90_538), Some(-41_948), Some(70_515)],
        );
        // A NULL part decides nothing.
        row(
            &mut tally,
            Some(1),
            [Some(203_000), None, Some(-41_948), Some(1)],
        );
        assert_eq!(tally.balance_mismatches(), Some(1));
        assert!(tally.key_tallies().is_empty());
    }

    #[test]
    fn small_keys_dates_and_large_or_negative_keys_are_all_counted() {
        let mut tally = Tally::new(fact(), true);
        let big = DENSE_KEYS as i64 + 5;
        for k in [3, 3, big, -2, big, 0] {
            row(&mut tally, Some(k), [None; 4]);
        }
        let counts = patient(&tally).counts.unwrap();
        assert_eq!(counts.rows(), 6);
        assert_eq!((counts.dense_rows(0), counts.dense_rows(3)), (1, 2));
        let (keys, rows) = counts.sparse();
        let mut sparse: Vec<(i64, i64)> = keys.into_iter().zip(rows).collect();
        sparse.sort();
        assert_eq!(sparse, vec![(-2, 1), (big, 2)]);
        assert_eq!(
            tally.keys_left,
            MAX_SPARSE_KEYS - 2,
            "only sparse keys use the budget"
        );
    }

    #[test]
    fn past_the_key_budget_a_column_is_left_to_the_warehouse_and_its_memory_returns() {
        let mut tally = Tally::new(fact(), true);
        tally.keys_left = 3;
        for k in 0..5 {
            row(&mut tally, Some(-1 - k), [None; 4]);
        }
        assert!(patient(&tally).counts.is_none());
        assert_eq!(tally.keys_left, 3);
    }

    #[test]
    fn figures_read_as_json_and_as_a_sentence_without_values() {
        let t = fact();
        let patient = &t.columns[index("dim_patient_pk")];
        let payer = &t.columns[index("dim_payer_pk")];
        let q = Quality::new(t, vec![(patient, 12), (payer, 0)], Some(1));
        assert_eq!(
            q.to_json(),
            r#"{"orphans":{"dim_patient_pk":12,"dim_payer_pk":0},"ar_mismatch":1}"#
        );
        assert!(q.has_findings());
        assert_eq!(
            q.describe(t),
            "12 rows with no dim_patient row (dim_patient_pk); 1 row where ar ≠ gross_charge + payment + adjustment"
        );
        let clean = Quality::new(t, vec![(payer, 0)], Some(0));
        assert!(!clean.has_findings());
    }
}
