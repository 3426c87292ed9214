//! The pipeline for one object: route it, read its header, then stream its records through casting into the
//! warehouse while a second thread parses — one transaction, committed only if the object is acceptable.
//! PostgreSQL takes the rows as they are cast (COPY FROM STDIN); Redshift takes them as gzip CSV parts staged in
//! S3 once the whole object has been cast.

use std::fs::{self, File};
use std::io::{self, BufRead, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use crate::route::{Routed, RoutedBy, route_by_header};
use crate::schema::Table;
use crate::source::{
    ContentDigest, Counting, Limits, Object, ReadError as SourceError, Records, StreamLimits,
    TextEncoding, decompress_digested,
};
use crate::transform::{
    CopyBinary, Csv, HeaderError, HeaderMap, Quality, Reject, RejectWriter, RowCaster, RowFormat,
    Tally, TransformStats, map_header,
};
use crate::warehouse::{
    AttemptRecord, BeforeCommit, BeginLoad, Begun, Commit, Committed, LedgerEntry, LoadOutcome,
    Loader, ReadProgress, RowCounts, RowEncoding, RowSink, SinkError, WarehouseError,
};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Reload objects the ledger already has.
    pub force: bool,
    /// The largest share of rejected rows an object may have and still load (0.1 = 10%).
    pub reject_threshold: f64,
    /// Where rejected rows are written (`<name>.<identity>.rejects.csv`).
    pub rejects_dir: PathBuf,
    /// The longest record and field (longer ones are rejected rows).
    pub limits: Limits,
    /// The largest object and gzip ratio (beyond them the object is refused).
    pub stream: StreamLimits,
    /// Count the data-quality figures of fact loads (on unless `HEALTHETL_QUALITY=off`, which exists to
    /// measure their cost in `bench/run`; the ledger then records no figures).
    pub quality: bool,
    /// When the load must be over (the Lambda's deadline less its margin, the CLI's `--timeout`): its statements
    /// run under a statement timeout of the time left. `None`: no limit.
    pub deadline: Option<std::time::Instant>,
    /// Do everything up to the commit — routing, header, casting, rejects, the merge and its counts, the quality
    /// figures — then roll back: the warehouse is left as it was.
    pub dry_run: bool,
    /// A replay of rejected rows: the object they were rejected from (the ledger's `replay_of`).
    pub replay_of: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            force: false,
            reject_threshold: 0.10,
            rejects_dir: PathBuf::from("rejects"),
            limits: Limits::default(),
            stream: StreamLimits::default(),
            quality: true,
            deadline: None,
            dry_run: false,
            replay_of: None,
        }
    }
}

/// The outcome of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Committed.
    Loaded,
    /// Already in the ledger; nothing done.
    Skipped,
    /// Not acceptable (unknown table, bad header, undecodable, too many rejected rows); nothing loaded.
    Refused,
    /// Something broke (database, I/O); nothing loaded; retrying may succeed.
    Failed,
}

/// Why an object was refused or failed, as a category (for history, metrics and alarms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Neither its name nor its header names a table.
    Unrouted,
    /// Its header lacks a column, repeats one, or is malformed.
    Header,
    /// Its bytes are not CSV of an accepted encoding, are malformed past recovery, or are over a limit.
    Input,
    /// Too many rows were rejected.
    Threshold,
    /// Its URI or identity is longer than the ledger stores.
    LedgerLimits,
    /// It was deleted (or replaced) before it could be read.
    Gone,
    /// Reading it failed (S3, disk); a retry may work.
    Read,
    /// The warehouse failed (connection, statement, retries exhausted).
    Warehouse,
    /// Staging its rows in S3 failed.
    Staging,
    /// Publishing its rejected rows or report failed.
    Quarantine,
    /// Too little time was left before the deadline.
    Deadline,
    /// A defect of the loader itself.
    Internal,
}

impl Reason {
    /// The category's name, as `etl.load_attempts.reason` and the JSON reports spell it.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Unrouted => "unrouted",
            Reason::Header => "header",
            Reason::Input => "input",
            Reason::Threshold => "threshold",
            Reason::LedgerLimits => "ledger_limits",
            Reason::Gone => "gone",
            Reason::Read => "read",
            Reason::Warehouse => "warehouse",
            Reason::Staging => "staging",
            Reason::Quarantine => "quarantine",
            Reason::Deadline => "deadline",
            Reason::Internal => "internal",
        }
    }
}

impl Status {
    /// The status's name, as the reports and `etl.load_attempts.status` spell it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Loaded => "loaded",
            Status::Skipped => "skipped",
            Status::Refused => "refused",
            Status::Failed => "failed",
        }
    }
}

/// What happened to one object. Never contains row contents.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// The object's URI or path.
    pub source: String,
    /// Its quick identity (ETag/version, or a local file's hash), once opened.
    #[serde(rename = "object_identity", skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The table it loads into, once routed.
    pub table: Option<String>,
    /// The outcome.
    pub status: Status,
    /// Records the strict CSV reader found (header excluded).
    pub rows_read: u64,
    /// Rows written: `rows_inserted + rows_updated`.
    pub rows_loaded: u64,
    /// Rows with a key the table did not have.
    pub rows_inserted: u64,
    /// Rows that replaced a stored row of the same key with different values.
    pub rows_updated: u64,
    /// Rows identical to the stored row of their key (not rewritten).
    pub rows_unchanged: u64,
    /// Rows rejected by validation (written to the rejects file).
    pub rows_rejected: u64,
    /// Accepted rows replaced by a later row of the same key in the same object.
    pub rows_duplicate: u64,
    /// Why it was refused or failed, as a category.
    pub reason: Option<Reason>,
    /// Why it was refused or failed (file, line and column; never row contents).
    pub error: Option<String>,
    /// 1-based positions of header columns the table does not have (never their names: see
    /// [`crate::transform::describe_extra_columns`]).
    pub extra_columns: Vec<usize>,
    /// The text encoding the object was decoded from.
    pub encoding: Option<TextEncoding>,
    /// How the table was chosen: by the file name, or by the header when the name named none.
    pub routed_by: Option<RoutedBy>,
    /// The SHA-256 (hex) of the decompressed bytes, once they have all been read.
    pub content_sha256: Option<String>,
    /// Data-quality figures of fact loads: orphan rows per dimension key column, balance mismatches.
    pub quality: Option<Quality>,
    /// Where the rejected rows were written, when there were any.
    pub rejects_file: Option<PathBuf>,
    /// The first rejected rows (where and why, never their values).
    pub rejects: Vec<Reject>,
    /// The ledger row of a committed load.
    pub load_id: Option<i64>,
    /// Wall time of the object, in milliseconds.
    pub duration_ms: u64,
    /// A dry run: the figures are what a load would do; everything was rolled back.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl LoadReport {
    /// Take a committed load's row counts.
    fn set_rows(&mut self, rows: RowCounts) {
        self.rows_loaded = rows.loaded();
        self.rows_inserted = rows.inserted;
        self.rows_updated = rows.updated;
        self.rows_unchanged = rows.unchanged;
        self.rows_duplicate = rows.duplicate;
    }

    fn new(source: &str) -> Self {
        LoadReport {
            source: source.to_string(),
            identity: None,
            table: None,
            status: Status::Failed,
            rows_read: 0,
            rows_loaded: 0,
            rows_inserted: 0,
            rows_updated: 0,
            rows_unchanged: 0,
            rows_rejected: 0,
            rows_duplicate: 0,
            reason: None,
            error: None,
            extra_columns: Vec::new(),
            encoding: None,
            routed_by: None,
            content_sha256: None,
            quality: None,
            rejects_file: None,
            rejects: Vec::new(),
            load_id: None,
            duration_ms: 0,
            dry_run: false,
        }
    }

    /// A report for an object that could not even be opened.
    pub fn failed(source: &str, reason: Reason, error: String) -> Self {
        LoadReport::not_loaded(source, Status::Failed, reason, error)
    }

    /// A report for an object that ended before the pipeline ran (unreadable, gone, refused by name).
    pub fn not_loaded(source: &str, status: Status, reason: Reason, error: String) -> Self {
        LoadReport {
            status,
            reason: Some(reason),
            error: Some(error),
            ..LoadReport::new(source)
        }
    }

    fn with_stats(&mut self, stats: &TransformStats) {
        self.rows_read = stats.rows_read;
        self.rows_rejected = stats.rows_rejected;
        self.rejects = stats.first_rejects.clone();
    }

    fn end(mut self, status: Status, error: Option<(Reason, String)>, started: Instant) -> Self {
        self.status = status;
        (self.reason, self.error) = error.map_or((None, None), |(r, e)| (Some(r), Some(e)));
        self.duration_ms = started.elapsed().as_millis() as u64;
        self
    }
}

/// Why the parsing side stopped early.
#[derive(Debug)]
enum ReadError {
    /// The object cannot be loaded as it is.
    Refused(Reason, String),
    /// Reading broke (I/O); a retry may work.
    Failed(String),
    /// The loader no longer wants rows (skipped, or the database failed).
    Cancelled,
}

/// What the parsing side found in the header.
struct HeaderInfo {
    table: &'static Table,
    routed_by: RoutedBy,
    extra_columns: Vec<usize>,
}

/// What the parsing side finished with.
struct ReadOutcome {
    stats: TransformStats,
    encoding: TextEncoding,
    rejects_file: Option<PathBuf>,
    tally: Tally,
    content_sha256: Option<String>,
}

/// Publishes what a load found (its report and rejected rows) before the load commits: the Lambda's quarantine. A
/// failure rolls the load back, so a committed load never leaves its rejected rows only as counts.
pub trait Publish: Sync {
    /// Publish `report` (status `loaded`, with the figures the commit will record).
    fn publish<'a>(&'a self, report: &'a LoadReport) -> BoxFuture<'a, Result<(), String>>;
}

/// Load one object into `warehouse`, whichever its dialect: routed by its name (or, when the name decides
/// nothing, by its header). Never panics on bad input; every outcome is a report.
pub async fn load_object(
    warehouse: &mut dyn Loader,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
) -> LoadReport {
    load_publishing(warehouse, object, options, on_bytes, None).await
}

/// [`load_object`], publishing the report and rejected rows of an object with rejected rows before it commits.
pub async fn load_publishing(
    warehouse: &mut dyn Loader,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    match Routed::of(&object.name) {
        Ok(routed) => load_routed(warehouse, routed, object, options, on_bytes, publish).await,
        Err(e) => LoadReport::not_loaded(
            &object.uri,
            Status::Refused,
            Reason::Unrouted,
            e.to_string(),
        ),
    }
}

/// Record the attempt `report` tells of in `etl.load_attempts` (see [`Loader::record_attempt`]), with its local
/// rejects file as where its rejected rows are.
pub async fn record_attempt(warehouse: &mut dyn Loader, report: &LoadReport, forced: bool) -> bool {
    // Its absolute path: `healthetl replay` finds the object the rows came from by it.
    let rejects = report.rejects_file.as_ref().map(|p| {
        fs::canonicalize(p)
            .unwrap_or_else(|_| p.clone())
            .to_string_lossy()
            .into_owned()
    });
    record_attempt_at(warehouse, report, forced, rejects.as_deref()).await
}

/// [`record_attempt`] with `rejects` naming where the rejected rows are (the quarantine). A failure is logged and
/// returns `false`: the attempt's own outcome stands either way.
pub async fn record_attempt_at(
    warehouse: &mut dyn Loader,
    report: &LoadReport,
    forced: bool,
    rejects: Option<&str>,
) -> bool {
    let finished = std::time::SystemTime::now();
    let started = finished
        .checked_sub(std::time::Duration::from_millis(report.duration_ms))
        .unwrap_or(finished);
    let attempt = AttemptRecord {
        source: &report.source,
        identity: report.identity.as_deref().unwrap_or(""),
        table: report.table.as_deref(),
        status: report.status.label(),
        reason: report.reason.map(Reason::label),
        error: report.error.as_deref(),
        load_id: report.load_id,
        rows_read: report.rows_read,
        rows_loaded: report.rows_loaded,
        rows_unchanged: report.rows_unchanged,
        rows_rejected: report.rows_rejected,
        rows_duplicate: report.rows_duplicate,
        rejects: rejects.filter(|_| report.rows_rejected > 0),
        forced,
        started,
        finished,
    };
    match warehouse.record_attempt(&attempt).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(source = %crate::route::escape_text(&report.source), error = %e,
                "the attempt was not recorded in the attempts table");
            false
        }
    }
}

/// Runs [`Publish`] with the load's final figures, when the object had rejected rows.
struct PublishBeforeCommit<'a> {
    publish: Option<&'a dyn Publish>,
    report: &'a LoadReport,
}

impl BeforeCommit for PublishBeforeCommit<'_> {
    fn before_commit<'a>(&'a self, done: &'a Committed) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(publish) = self.publish else {
                return Ok(());
            };
            if self.report.rejects_file.is_none() {
                return Ok(());
            }
            let mut report = self.report.clone();
            report.status = Status::Loaded;
            report.set_rows(done.rows);
            report.load_id = Some(done.load_id);
            report.quality = done.quality.clone();
            publish.publish(&report).await
        })
    }
}

/// The one load path, for an object routed once by its caller: read the header on a blocking thread (it decides
/// the table when the name did not), begin the load in the warehouse, hand the parsing thread the warehouse's row
/// sink, let the warehouse take the rows while they are cast, then commit — unless too many rows were rejected.
pub async fn load_routed(
    warehouse: &mut dyn Loader,
    routed: Routed,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    let mut report = load_once(warehouse, routed, object, options, on_bytes, publish).await;
    if options.dry_run {
        // What a load would do: a dry run commits nothing, so it names no load of its own.
        report.dry_run = true;
        if report.status == Status::Loaded {
            report.load_id = None;
        }
    }
    report
}

async fn load_once(
    warehouse: &mut dyn Loader,
    routed: Routed,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    let started = Instant::now();
    let Object {
        name,
        uri,
        identity,
        content_sha256,
        reader,
        size,
    } = object;
    let mut report = LoadReport {
        identity: Some(identity.clone()),
        table: routed.table.map(|t| t.name.clone()),
        routed_by: routed.table.map(|_| RoutedBy::Name),
        ..LoadReport::new(&uri)
    };
    let shown = routed.display_name;
    if let Some(reason) = warehouse.ledger_limits().check(&uri, &identity) {
        return report.end(
            Status::Refused,
            Some((Reason::LedgerLimits, format!("{shown}: {reason}"))),
            started,
        );
    }
    let rejects_path = options
        .rejects_dir
        .join(rejects_file_name(&shown, &identity));
    let (header_tx, header_rx) = oneshot::channel();
    let (sink_tx, sink_rx) = oneshot::channel::<Box<dyn RowSink>>();
    let progress = ReadProgress {
        size,
        read: Default::default(),
    };
    let read = progress.read.clone();
    let mut on_bytes = on_bytes;
    let reader: Box<dyn io::Read + Send> = Box::new(Counting::new(
        reader,
        Box::new(move |n| {
            read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            if let Some(f) = on_bytes.as_mut() {
                f(n);
            }
        }),
    ));
    let read_options = ReadOptions::new(options, size);
    let table = routed.table;
    let parse_name = name.clone();
    let worker = tokio::task::spawn_blocking(move || {
        read_object(
            reader,
            &parse_name,
            table,
            (header_tx, sink_rx),
            &rejects_path,
            &read_options,
        )
    });

    let header = match header_rx.await {
        Ok(h) => h,
        Err(_) => return finish_worker_error(worker, report, started).await,
    };
    report.extra_columns = header.extra_columns;
    report.table = Some(header.table.name.clone());
    report.routed_by = Some(header.routed_by);
    let begin = BeginLoad {
        table: header.table,
        source: &uri,
        identity: &identity,
        content_sha256: content_sha256.as_deref(),
        force: options.force,
        deadline: options.deadline,
    };
    let mut load = match warehouse.begin(begin).await {
        Ok(Begun::Load(load)) => load,
        Ok(Begun::Skip { load_id }) => {
            drop(sink_tx);
            let _ = worker.await;
            report.load_id = Some(load_id);
            return report.end(Status::Skipped, None, started);
        }
        Err(e) => {
            drop(sink_tx);
            let _ = worker.await;
            return report.end(Status::Failed, Some((e.reason(), e.to_string())), started);
        }
    };
    let sink = match load.sink(progress) {
        Ok(sink) => sink,
        Err(e) => {
            drop(sink_tx);
            let _ = worker.await;
            return report.end(Status::Failed, Some((e.reason(), e.to_string())), started);
        }
    };
    if sink_tx.send(sink).is_err() {
        return finish_worker_error(worker, report, started).await;
    }
    let received = load.receive().await;
    let outcome = match worker.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(ReadError::Cancelled)) => {
            load.abandon().await;
            let e = received.err().map(|e| (e.reason(), e.to_string()));
            return report.end(Status::Failed, e, started);
        }
        Ok(Err(e)) => {
            load.abandon().await;
            return read_error_report(report, e, started);
        }
        Err(e) => {
            load.abandon().await;
            return report.end(
                Status::Failed,
                Some((Reason::Internal, format!("internal error: {e}"))),
                started,
            );
        }
    };
    report.with_stats(&outcome.stats);
    report.encoding = Some(outcome.encoding);
    report.rejects_file = outcome.rejects_file;
    report.content_sha256 = outcome.content_sha256.or(content_sha256.clone());
    if let Err(e) = received {
        load.abandon().await;
        return report.end(Status::Failed, Some((e.reason(), e.to_string())), started);
    }
    let stats = &outcome.stats;
    if let Some(msg) = over_threshold(&shown, stats, options.reject_threshold) {
        load.abandon().await;
        return report.end(Status::Refused, Some((Reason::Threshold, msg)), started);
    }
    let snapshot = report.clone();
    let before = PublishBeforeCommit {
        publish,
        report: &snapshot,
    };
    let commit = Commit {
        dry_run: options.dry_run,
        dedupe: !stats.keys_increasing,
        entry: LedgerEntry {
            source: &uri,
            identity: &identity,
            rows_read: stats.rows_read,
            rows_rejected: stats.rows_rejected,
            forced: options.force,
            encoding: outcome.encoding.label(),
            routed_by: header.routed_by.label(),
            content_sha256: snapshot.content_sha256.as_deref(),
            tally: &outcome.tally,
            replay_of: options.replay_of.as_deref(),
        },
        before_commit: &before,
    };
    let committed = load.commit(commit).await;
    let report = loaded_report(report, committed, started);
    tracing::debug!(
        source = %report.source,
        table = report.table.as_deref().unwrap_or(""),
        status = ?report.status,
        rows_loaded = report.rows_loaded,
        rows_rejected = report.rows_rejected,
        duration_ms = report.duration_ms,
        "object processed"
    );
    report
}

/// The report of a load that reached the warehouse's commit.
fn loaded_report(
    mut report: LoadReport,
    outcome: Result<LoadOutcome, WarehouseError>,
    started: Instant,
) -> LoadReport {
    match outcome {
        Ok(LoadOutcome::Loaded(done)) => {
            report.set_rows(done.rows);
            report.load_id = Some(done.load_id);
            report.quality = done.quality;
            report.end(Status::Loaded, None, started)
        }
        Ok(LoadOutcome::AlreadyLoaded { load_id }) => {
            // The same content is already loaded: this copy did nothing, so it reports nothing (its rejected
            // rows are the earlier load's, and their file is not kept twice).
            if let Some(file) = report.rejects_file.take() {
                let _ = fs::remove_file(file);
            }
            let report = LoadReport {
                rows_read: 0,
                rows_rejected: 0,
                rejects: Vec::new(),
                load_id: Some(load_id),
                ..report
            };
            report.end(Status::Skipped, None, started)
        }
        Err(e) => report.end(Status::Failed, Some((e.reason(), e.to_string())), started),
    }
}

/// The refusal message when too many rows were rejected, `None` when the object may load.
fn over_threshold(display_name: &str, stats: &TransformStats, threshold: f64) -> Option<String> {
    if stats.reject_ratio() <= threshold {
        return None;
    }
    let first = stats
        .first_rejects
        .first()
        .map(|r| format!("; first: {}", r.describe()))
        .unwrap_or_default();
    Some(format!(
        "{display_name}: {} of {} rows rejected ({:.1}%), over the {:.1}% threshold: nothing loaded{first}",
        stats.rows_rejected,
        stats.rows_read,
        stats.reject_ratio() * 100.0,
        threshold * 100.0
    ))
}

async fn finish_worker_error(
    worker: tokio::task::JoinHandle<Result<ReadOutcome, ReadError>>,
    report: LoadReport,
    started: Instant,
) -> LoadReport {
    match worker.await {
        Ok(Err(e)) => read_error_report(report, e, started),
        Ok(Ok(_)) => report.end(
            Status::Failed,
            Some((Reason::Internal, "internal error: no header".into())),
            started,
        ),
        Err(e) => report.end(
            Status::Failed,
            Some((Reason::Internal, format!("internal error: {e}"))),
            started,
        ),
    }
}

fn read_error_report(report: LoadReport, e: ReadError, started: Instant) -> LoadReport {
    match e {
        ReadError::Refused(reason, m) => report.end(Status::Refused, Some((reason, m)), started),
        ReadError::Failed(m) => report.end(Status::Failed, Some((Reason::Read, m)), started),
        ReadError::Cancelled => report.end(
            Status::Failed,
            Some((Reason::Warehouse, "cancelled".into())),
            started,
        ),
    }
}

/// The rejects file of an object: its name without extension, a short identity, `.rejects.csv`. It routes back to
/// the same table, so fixed rows can be dropped back in.
pub fn rejects_file_name(name: &str, identity: &str) -> String {
    let stem = crate::route::table_file_stem(name).map_or(name, |(stem, _)| stem);
    let short: String = identity
        .rsplit(':')
        .next()
        .unwrap_or(identity)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    // File names are limited to 255 bytes; S3 keys are not.
    let stem = crate::route::cut_at_boundary(stem, 120);
    format!("{stem}.{short}.rejects.csv")
}

/// The parsing side's connections to the loader: the header verdict goes out once the header is read; the
/// warehouse's row sink comes back once the load has begun (or never, when it is skipped or fails).
type Channels = (
    oneshot::Sender<HeaderInfo>,
    oneshot::Receiver<Box<dyn RowSink>>,
);

/// What the parsing side needs to know of the load options and the object.
struct ReadOptions {
    limits: Limits,
    stream: StreamLimits,
    size: Option<u64>,
    quality: bool,
}

impl ReadOptions {
    /// The quality tally of a load of `table` (an inactive one when the figures are off).
    fn tally(&self, table: &Table, count_keys: bool) -> Tally {
        if self.quality {
            Tally::new(table, count_keys)
        } else {
            Tally::default()
        }
    }

    fn new(options: &LoadOptions, size: Option<u64>) -> Self {
        ReadOptions {
            limits: options.limits,
            stream: options.stream,
            size,
            quality: options.quality,
        }
    }
}

/// The parsing side: runs on a blocking thread, sends the header verdict, then casts every record into the
/// warehouse's sink in the encoding it asks for.
fn read_object(
    reader: Box<dyn io::Read + Send>,
    name: &str,
    table: Option<&'static Table>,
    (header, sink): Channels,
    rejects_path: &Path,
    options: &ReadOptions,
) -> Result<ReadOutcome, ReadError> {
    let shown = display_name(name);
    let shown = shown.as_str();
    let (mut records, map, table, routed_by, digest) = open_records(reader, name, table, options)?;
    let info = HeaderInfo {
        table,
        routed_by,
        extra_columns: map.extra_columns.clone(),
    };
    if header.send(info).is_err() {
        return Err(ReadError::Cancelled);
    }
    let mut sink = sink.blocking_recv().map_err(|_| ReadError::Cancelled)?;
    let mut tally = options.tally(table, sink.tallies_keys());
    let mut cast = Cast {
        records: &mut records,
        map: &map,
        shown,
        sink: sink.as_mut(),
        rejects_path,
        tally: &mut tally,
    };
    let (stats, rejects_file) = match cast.sink.encoding() {
        RowEncoding::CopyText => cast.run(&RowCaster::new(table, &map))?,
        RowEncoding::CopyBinary => cast.run(&RowCaster::<CopyBinary>::with_format(table, &map))?,
        RowEncoding::Csv => cast.run(&RowCaster::<Csv>::with_format(table, &map))?,
    };
    Ok(ReadOutcome {
        stats,
        encoding: records.encoding(),
        rejects_file,
        tally,
        content_sha256: digest.get(),
    })
}

type ObjectRecords = Records<Box<dyn BufRead + Send>>;

/// An object's records, their header matched to a table, and the digest its content will have once read.
type OpenedRecords = (
    ObjectRecords,
    HeaderMap,
    &'static Table,
    RoutedBy,
    ContentDigest,
);

/// Decompress and decode an object, read its header and match it to the table.
fn open_records(
    reader: Box<dyn io::Read + Send>,
    name: &str,
    table: Option<&'static Table>,
    options: &ReadOptions,
) -> Result<OpenedRecords, ReadError> {
    let shown = display_name(name);
    let (input, digest) = decompress_digested(reader, name, options.size, options.stream)
        .map_err(|e| source_error(&shown, SourceError::from(e)))?;
    let mut records =
        Records::with_limits(input, options.limits).map_err(|e| source_error(&shown, e))?;
    let (map, table, routed_by) = {
        let header = records.next_record().map_err(|e| source_error(&shown, e))?;
        let result = match header {
            None => Err(HeaderError::Empty.to_string()),
            Some(h) => match h.anomaly {
                Some(a) => Err(format!("line {}: the header {}", h.line, a.reason())),
                None => match table {
                    Some(t) => Ok((t, RoutedBy::Name)),
                    None => route_by_header(&h.fields)
                        .map(|t| (t, RoutedBy::Header))
                        .map_err(|e| e.to_string()),
                }
                .and_then(|(t, by)| {
                    map_header(t, &h.fields)
                        .map(|m| (m, t, by))
                        .map_err(|e| e.to_string())
                }),
            },
        };
        result.map_err(|e| ReadError::Refused(Reason::Header, format!("{shown}: {e}")))?
    };
    Ok((records, map, table, routed_by, digest))
}

/// A reading error as the pipeline reports it: a refusal of the object, or a failure a retry may cure.
fn source_error(shown: &str, e: SourceError) -> ReadError {
    match e {
        SourceError::Refused(r) => ReadError::Refused(Reason::Input, format!("{shown}: {r}")),
        SourceError::Io(e) => ReadError::Failed(format!("{shown}: reading failed: {e}")),
    }
}

/// An object's file name as messages show it: control characters escaped (no terminal or log injection).
pub fn display_name(name: &str) -> String {
    crate::route::escape_text(crate::route::file_name(name))
}

/// Cast every remaining record into `sink`; rejected rows go to the rejects file (created at the first one).
/// One object's casting: its records, header map and name, the sink, where rejected rows go, the tally.
struct Cast<'c> {
    records: &'c mut ObjectRecords,
    map: &'c HeaderMap,
    shown: &'c str,
    sink: &'c mut dyn RowSink,
    rejects_path: &'c Path,
    tally: &'c mut Tally,
}

impl Cast<'_> {
    /// Cast every remaining record into the sink with `caster`.
    fn run<F: RowFormat>(
        &mut self,
        caster: &RowCaster<'_, F>,
    ) -> Result<(TransformStats, Option<PathBuf>), ReadError> {
        let Cast {
            records,
            map,
            shown,
            sink,
            rejects_path,
            tally,
        } = self;
        cast_records(
            records,
            caster,
            map,
            shown,
            &mut **sink,
            rejects_path,
            tally,
        )
    }
}

fn sink_error(e: SinkError) -> ReadError {
    match e {
        SinkError::Closed => ReadError::Cancelled,
        SinkError::Io(m) => ReadError::Failed(m),
    }
}

fn cast_records<F: RowFormat>(
    records: &mut ObjectRecords,
    caster: &RowCaster<'_, F>,
    map: &HeaderMap,
    shown: &str,
    sink: &mut dyn RowSink,
    rejects_path: &Path,
    tally: &mut Tally,
) -> Result<(TransformStats, Option<PathBuf>), ReadError> {
    let active = tally.is_active();
    let mut stats = TransformStats::new();
    let mut rejects: Option<RejectWriter<BufWriter<File>>> = None;
    let partial = rejects_path.with_extension("csv.partial");
    let result = (|| {
        while let Some(record) = records.next_record().map_err(|e| source_error(shown, e))? {
            stats.rows_read += 1;
            let buf = sink.buffer();
            let row_start = buf.len();
            let counted = if active { Some(&mut *tally) } else { None };
            match caster.write_row_tallied(&record, buf, counted) {
                Ok(key) => {
                    stats.rows_accepted += 1;
                    sink.end_row(row_start, key, record.line, &mut stats)
                        .map_err(sink_error)?;
                }
                Err(reject) => {
                    stats.record_reject(&reject);
                    let writer = match rejects.as_mut() {
                        Some(w) => w,
                        None => {
                            rejects.insert(open_rejects(&partial, shown, &map.header).map_err(
                                |e| ReadError::Failed(format!("cannot write rejects file: {e}")),
                            )?)
                        }
                    };
                    writer.write(&reject, &record.fields).map_err(|e| {
                        ReadError::Failed(format!("cannot write rejects file: {e}"))
                    })?;
                }
            }
        }
        sink.finish().map_err(sink_error)
    })();
    if let Err(e) = result {
        drop(rejects);
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    let rejects_file = match rejects {
        Some(w) => {
            w.finish()
                .and_then(|mut f| io::Write::flush(&mut f))
                .and_then(|()| fs::rename(&partial, rejects_path))
                .map_err(|e| ReadError::Failed(format!("cannot write rejects file: {e}")))?;
            Some(rejects_path.to_path_buf())
        }
        None => None,
    };
    Ok((stats, rejects_file))
}

fn open_rejects(
    path: &Path,
    source: &str,
    header: &[String],
) -> io::Result<RejectWriter<BufWriter<File>>> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    // Rejected rows are patient data: readable by their owner only.
    let mut open = fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file = open.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    RejectWriter::new(BufWriter::new(file), source, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_files_route_back_to_their_table() {
        let name = rejects_file_name("dimPatient.csv.gz", "sha256:0123456789abcdef");
        assert_eq!(name, "dimPatient.0123456789ab.rejects.csv");
        assert_eq!(crate::route::route(&name).unwrap().name, "dim_patient");
        assert_eq!(
            rejects_file_name("FactTable_2024.csv", "etag:\"abc-1\""),
            "FactTable_2024.abc1.rejects.csv"
        );
        let long = format!("dimLocation_{}.csv", "é".repeat(500));
        assert!(rejects_file_name(&long, "sha256:00").len() < 255);
    }
}
