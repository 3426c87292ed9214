//! `healthetl history`: the recent load attempts from `etl.load_attempts`, newest first, or one object's whole
//! story (every attempt, where its rejected rows are, its ledger rows and quality figures). Read-only; the same
//! statements on both dialects, every filter a parameter.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::route::escape_text;
use crate::schema::SCHEMA;
use crate::warehouse::{WarehouseError, ledger};

/// Which attempts to show.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only this table's (its warehouse name).
    pub table: Option<String>,
    /// Only attempts of this status.
    pub status: Option<String>,
    /// Only attempts that ended at or after this time (`YYYY-MM-DD HH:MM:SS.ffffff+00`).
    pub since: Option<String>,
    /// Only this object's (its URI or path), oldest first.
    pub object: Option<String>,
    /// At most this many.
    pub limit: i64,
}

/// The statuses an attempt can have.
pub const STATUSES: [&str; 4] = ["loaded", "skipped", "refused", "failed"];

/// `--since`: a date (`2024-06-01`), a UTC time (`2024-06-01T12:00:00Z`), or an age (`90m`, `36h`, `7d`), as
/// the timestamp the query compares with.
pub fn parse_since(text: &str, now: SystemTime) -> Result<String, String> {
    let t = text.trim();
    let age = |n: &str, unit: u64| {
        n.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .and_then(|s| now.checked_sub(Duration::from_secs(s)))
    };
    let relative = match t.char_indices().last() {
        Some((i, 'm')) => age(&t[..i], 60),
        Some((i, 'h')) => age(&t[..i], 3600),
        Some((i, 'd')) => age(&t[..i], 86_400),
        _ => None,
    };
    if let Some(at) = relative {
        return Ok(crate::calendar::timestamptz(at));
    }
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, rest)) => (d, Some(rest.trim_end_matches('Z'))),
        None => (t, None),
    };
    let date_ok = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let time_ok = time.is_none_or(|t| {
        t.len() == 8
            && t.bytes().enumerate().all(|(i, b)| {
                if i == 2 || i == 5 {
                    b == b':'
                } else {
                    b.is_ascii_digit()
                }
            })
    });
    if !date_ok || !time_ok {
        return Err(format!(
            "'{}' is not a date (2024-06-01), a UTC time (2024-06-01T12:00:00Z) or an age (90m, 36h, 7d)",
            escape_text(t)
        ));
    }
    Ok(format!("{date} {}+00", time.unwrap_or("00:00:00")))
}

/// One attempt as the history shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Attempt {
    /// Its key.
    pub attempt_id: i64,
    /// When it ended (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub finished_at: String,
    /// How long it took.
    pub duration_ms: i64,
    /// The object.
    pub source: String,
    /// Its quick identity.
    pub object_identity: String,
    /// The table, once routed.
    pub table: Option<String>,
    /// What became of it.
    pub status: String,
    /// Why not loaded, as a category.
    pub reason: Option<String>,
    /// The error (never row contents).
    pub error: Option<String>,
    /// The ledger row committed, or the one a skipped object duplicates.
    pub load_id: Option<i64>,
    /// Records read.
    pub rows_read: i64,
    /// Rows written.
    pub rows_loaded: i64,
    /// Rows identical to the stored ones.
    pub rows_unchanged: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// Rows replaced by a later row of the same key.
    pub rows_duplicate: i64,
    /// Where the rejected rows are.
    pub rejects: Option<String>,
    /// Tried past the ledger.
    pub forced: bool,
}

/// One committed load of an object, from the ledger.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerRow {
    /// The ledger key.
    pub load_id: i64,
    /// The table.
    pub table: String,
    /// When it committed (UTC).
    pub finished_at: String,
    /// Its quick identity.
    pub object_identity: String,
    /// SHA-256 of its decompressed bytes.
    pub content_sha256: Option<String>,
    /// Its data-quality figures (JSON), for fact loads.
    pub quality: Option<serde_json::Value>,
}

const UTC: &str = "'YYYY-MM-DD HH24:MI:SS'";

fn when(column: &str) -> String {
    format!("TO_CHAR({column} AT TIME ZONE 'UTC', {UTC})")
}

/// The attempts query: `$1` table, `$2` status, `$3` since, `$4` object (each NULL for "any"), `$5` limit.
/// Newest first, or oldest first for one object.
pub fn attempts_sql(one_object: bool) -> String {
    format!(
        "SELECT attempt_id, {}, duration_ms, source, object_identity, table_name, status, reason, error, load_id, \
         rows_read, rows_loaded, rows_unchanged, rows_rejected, rows_duplicate, rejects, forced FROM {} \
         WHERE ($1::VARCHAR IS NULL OR table_name = $1::VARCHAR) AND ($2::VARCHAR IS NULL OR status = $2::VARCHAR) \
         AND ($3::VARCHAR IS NULL OR finished_at >= $3::VARCHAR::TIMESTAMPTZ) \
         AND ($4::VARCHAR IS NULL OR source = $4::VARCHAR) ORDER BY attempt_id {} LIMIT $5::BIGINT",
        when("finished_at"),
        SCHEMA.attempts.qualified(),
        if one_object { "ASC" } else { "DESC" }
    )
}

/// An object's committed loads: `$1` the source.
pub fn ledger_rows_sql() -> String {
    format!(
        "SELECT load_id, table_name, {}, object_identity, content_sha256, CAST(quality AS VARCHAR) FROM {} \
         WHERE source = $1::VARCHAR AND status = 'loaded' ORDER BY load_id",
        when("finished_at"),
        ledger()
    )
}

/// What `history` found.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// The attempts.
    pub attempts: Vec<Attempt>,
    /// With `--object`: its committed loads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loads: Option<Vec<LedgerRow>>,
}

/// Run the query.
pub async fn history(client: &Client, query: &HistoryQuery) -> Result<History, WarehouseError> {
    let params: [&(dyn ToSql + Sync); 5] = [
        &query.table,
        &query.status,
        &query.since,
        &query.object,
        &query.limit,
    ];
    let rows = client
        .query(&attempts_sql(query.object.is_some()), &params)
        .await
        .map_err(WarehouseError::db("reading the attempts"))?;
    let attempts = rows
        .iter()
        .map(|r| Attempt {
            attempt_id: r.get(0),
            finished_at: r.get(1),
            duration_ms: r.get(2),
            source: r.get(3),
            object_identity: r.get(4),
            table: r.get(5),
            status: r.get(6),
            reason: r.get(7),
            error: r.get(8),
            load_id: r.get(9),
            rows_read: r.get(10),
            rows_loaded: r.get(11),
            rows_unchanged: r.get(12),
            rows_rejected: r.get(13),
            rows_duplicate: r.get(14),
            rejects: r.get(15),
            forced: r.get(16),
        })
        .collect();
    let loads = match &query.object {
        None => None,
        Some(object) => {
            let rows = client
                .query(&ledger_rows_sql(), &[object])
                .await
                .map_err(WarehouseError::db("reading the ledger"))?;
            Some(
                rows.iter()
                    .map(|r| LedgerRow {
                        load_id: r.get(0),
                        table: r.get(1),
                        finished_at: r.get(2),
                        object_identity: r.get(3),
                        content_sha256: r.get(4),
                        quality: r
                            .get::<_, Option<String>>(5)
                            .and_then(|q| serde_json::from_str(&q).ok()),
                    })
                    .collect(),
            )
        }
    };
    Ok(History { attempts, loads })
}

/// The history as a table: one line per attempt, its error indented below it.
pub fn text(history: &History) -> String {
    let mut out = String::new();
    if history.attempts.is_empty() {
        out.push_str("no attempts recorded\n");
    } else {
        let _ = writeln!(
            out,
            "{:<19}  {:<8}  {:<17}  {:>9}  {:>9}  {:>9}  {:>8}  {:>9}  {:>8}  {:>7}  source",
            "finished (UTC)",
            "status",
            "table",
            "read",
            "loaded",
            "unchanged",
            "rejected",
            "duplicate",
            "seconds",
            "load"
        );
    }
    for a in &history.attempts {
        let _ = writeln!(
            out,
            "{:<19}  {:<8}  {:<17}  {:>9}  {:>9}  {:>9}  {:>8}  {:>9}  {:>8.1}  {:>7}  {}",
            a.finished_at,
            a.status,
            a.table.as_deref().unwrap_or("-"),
            a.rows_read,
            a.rows_loaded,
            a.rows_unchanged,
            a.rows_rejected,
            a.rows_duplicate,
            a.duration_ms as f64 / 1000.0,
            a.load_id.map_or("-".to_string(), |id| id.to_string()),
            escape_text(&a.source)
        );
        if let Some(error) = &a.error {
            let _ = writeln!(
                out,
                "    {}: {}",
                a.reason.as_deref().unwrap_or("error"),
                escape_text(error)
            );
        }
        if let Some(rejects) = &a.rejects {
            let _ = writeln!(out, "    rejected rows: {}", escape_text(rejects));
        }
    }
    if let Some(loads) = &history.loads {
        if loads.is_empty() {
            out.push_str("\nnever loaded\n");
        } else {
            out.push_str("\ncommitted loads:\n");
        }
        for l in loads {
            let _ = writeln!(
                out,
                "  load {} into {} at {} ({}){}",
                l.load_id,
                l.table,
                l.finished_at,
                escape_text(&l.object_identity),
                l.quality
                    .as_ref()
                    .map(|q| format!("; quality {q}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn since_takes_dates_utc_times_and_ages() {
        let now = UNIX_EPOCH + Duration::from_secs(1_717_243_200); // 2024-06-01 12:00:00 UTC
        assert_eq!(
            parse_since("2024-05-31", now).unwrap(),
            "2024-05-31 00:00:00+00"
        );
        assert_eq!(
            parse_since("2024-05-31T08:30:00Z", now).unwrap(),
            "2024-05-31 08:30:00+00"
        );
        assert_eq!(
            parse_since("36h", now).unwrap(),
            "2024-05-31 00:00:00.000000+00"
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            "2024-05-25 12:00:00.000000+00"
        );
        assert_eq!(
            parse_since("90m", now).unwrap(),
            "2024-06-01 10:30:00.000000+00"
        );
        for bad in [
            "yesterday",
            "2024-6-1",
            "2024-06-01T8:30",
            "'; DROP TABLE x; --",
            "h",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_filter_is_a_parameter() {
        let sql = attempts_sql(false);
        assert!(sql.contains("$1::VARCHAR IS NULL") && sql.contains("LIMIT $5::BIGINT"));
        assert!(sql.contains("ORDER BY attempt_id DESC"));
        assert!(attempts_sql(true).contains("ORDER BY attempt_id ASC"));
    }
}
