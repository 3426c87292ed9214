//! The analytics dashboard: revenue-cycle KPI tiles, server-rendered SVG charts and sortable tables of the
//! warehouse's billing figures, filtered by a post- or service-date range and every slice of the reporting views
//! (payer, location, physician, specialty, CPT group and code, diagnosis group and code, patient gender, age band
//! and state) — served on 127.0.0.1 ([`Server`], with CSV exports of every table) or written as one static HTML
//! file ([`report`]).
//!
//! [`filters`] validates what the user asked for, [`queries`] reads aggregates (never patient-level rows) with
//! parameterized SQL built from the reporting declarations, [`dates`] does the calendar work, [`tables`] lays the
//! figures out as tables (page and CSV), [`charts`] and [`html`] draw them, [`server`] answers HTTP over the
//! sessions of [`pool`], keeping summaries in [`cache`] while the warehouse does not change.

pub mod cache;
pub mod charts;
pub mod dates;
pub mod filters;
pub mod html;
pub mod pool;
pub mod queries;
pub mod server;
pub mod tables;

pub use filters::{FilterError, Filters};
pub use html::Mode;
pub use pool::Connect;
pub use queries::{Cents, FilterOptions, Group, Rate, Summary, Totals};
pub use server::{Server, ServerOptions};

use crate::warehouse::{Loader, WarehouseError};

/// Why the dashboard could not answer or start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The warehouse could not be connected to.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// A dashboard query failed (the driver's message), e.g. because the tables do not exist yet.
    #[error("warehouse query failed: {0} (has `healthetl init` created the tables?)")]
    Query(String),
    /// A query returned a value the dashboard cannot read.
    #[error("unexpected value {value:?} in column {column}")]
    Decode {
        /// The result column.
        column: &'static str,
        /// The value as text, or the driver's error when it could not be read as text.
        value: String,
    },
    /// The server could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Every warehouse session stayed busy longer than a request may wait.
    #[error("the dashboard is busy: {0}")]
    Busy(String),
    /// The server's task ended abnormally (panicked or was cancelled).
    #[error("the dashboard server stopped: {0}")]
    Stopped(String),
}

/// The dashboard for `filters` as one self-contained HTML document (inline CSS and SVG, no script, no external
/// reference), stamped with `generated`.
pub async fn report(
    warehouse: &mut dyn Loader,
    filters: &Filters,
    generated: String,
) -> Result<String, DashboardError> {
    let client = warehouse.client().await?;
    let summary = queries::summary(client, filters).await?;
    let options = queries::filter_options(client).await?;
    Ok(html::page(&summary, &options, &Mode::Static { generated }))
}

/// Check that the warehouse answers the dashboard's queries (the tables exist), so that a misconfigured start fails
/// at once instead of on the first page view.
pub async fn check(warehouse: &mut dyn Loader) -> Result<(), DashboardError> {
    let client = warehouse.client().await?;
    queries::filter_options(client).await.map(|_| ())
}

/// Escape text for HTML and SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch.
pub fn utc_timestamp(secs: u64) -> String {
    let (date, time) = crate::calendar::utc(secs);
    format!("{date} {} UTC", &time[..5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&#39;");
        assert_eq!(escape("St. Luke’s"), "St. Luke’s");
    }

    #[test]
    fn utc_timestamps_follow_the_calendar() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_timestamp(1_735_689_599), "2024-12-31 23:59 UTC");
    }
}
