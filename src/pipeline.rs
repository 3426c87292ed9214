//! The pipeline for one object: route it, read its header, then stream its records through casting into the
//! warehouse while a second thread parses — one transaction, committed only if the object is acceptable.
//! PostgreSQL takes the rows as they are cast (COPY FROM STDIN); Redshift takes them as gzip CSV parts staged in
//! S3 once the whole object has been cast.

use std::fs::{self, File};
use std::io::{self, BufRead, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::route::{RoutedBy, file_name, is_csv_name, route, route_by_header};
use crate::schema::Table;
use crate::source::{
    ContentDigest, Counting, Limits, Object, ReadError as SourceError, Records, StreamLimits,
    TextEncoding, decompress_digested,
};
use crate::transform::{
    Csv, HeaderError, HeaderMap, KeyOrder, Quality, Reject, RejectWriter, RowCaster, RowFormat,
    Tally, TransformStats, end_csv_row, end_row, map_header,
};
use crate::warehouse::LoadOutcome;
use crate::warehouse::postgres::{Committed, LedgerEntry};
use crate::warehouse::redshift::LoadRequest;
use crate::warehouse::redshift::staging::{PartFile, PartWriter, load_id};
use crate::warehouse::{BeforeCommit, LedgerLimits};
use crate::warehouse::{CopyChunk, Postgres, Redshift, Warehouse};
use futures_util::future::BoxFuture;

/// COPY data is sent in chunks of about this many bytes.
const CHUNK: usize = 256 * 1024;
/// Chunks buffered between the parsing thread and the database connection.
const CHUNKS_IN_FLIGHT: usize = 4;

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

/// What happened to one object. Never contains row contents.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub source: String,
    pub table: Option<String>,
    pub status: Status,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    pub rows_duplicate: u64,
    pub error: Option<String>,
    /// 1-based positions of header columns the table does not have (never their names: see
    /// [`crate::transform::describe_extra_columns`]).
    pub extra_columns: Vec<usize>,
    pub encoding: Option<TextEncoding>,
    /// How the table was chosen: by the file name, or by the header when the name named none.
    pub routed_by: Option<RoutedBy>,
    /// The SHA-256 (hex) of the decompressed bytes, once they have all been read.
    pub content_sha256: Option<String>,
    /// Data-quality figures of fact loads: orphan rows per dimension key column, balance mismatches.
    pub quality: Option<Quality>,
    pub rejects_file: Option<PathBuf>,
    pub rejects: Vec<Reject>,
    pub load_id: Option<i64>,
    pub duration_ms: u64,
}

impl LoadReport {
    fn new(source: &str) -> Self {
        LoadReport {
            source: source.to_string(),
            table: None,
            status: Status::Failed,
            rows_read: 0,
            rows_loaded: 0,
            rows_rejected: 0,
            rows_duplicate: 0,
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
        }
    }

    /// A report for an object that could not even be opened.
    pub fn failed(source: &str, error: String) -> Self {
        LoadReport::not_loaded(source, Status::Failed, error)
    }

    /// A report for an object that ended before the pipeline ran (unreadable, gone, refused by name).
    pub fn not_loaded(source: &str, status: Status, error: String) -> Self {
        LoadReport {
            status,
            error: Some(error),
            ..LoadReport::new(source)
        }
    }

    fn with_stats(&mut self, stats: &TransformStats) {
        self.rows_read = stats.rows_read;
        self.rows_rejected = stats.rows_rejected;
        self.rejects = stats.first_rejects.clone();
    }

    fn end(mut self, status: Status, error: Option<String>, started: Instant) -> Self {
        self.status = status;
        self.error = error;
        self.duration_ms = started.elapsed().as_millis() as u64;
        self
    }
}

/// Why the parsing side stopped early.
#[derive(Debug)]
enum ReadError {
    /// The object cannot be loaded as it is.
    Refused(String),
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

/// Load one object into the configured warehouse, whichever its dialect. Never panics on bad input; every
/// outcome is a report.
pub async fn load_into(
    warehouse: &mut Warehouse,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
) -> LoadReport {
    load_publishing(warehouse, object, options, on_bytes, None).await
}

/// [`load_into`], publishing the report and rejected rows of an object with rejected rows before it commits.
pub async fn load_publishing(
    warehouse: &mut Warehouse,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    let target = match warehouse {
        Warehouse::Postgres(pg) => Target::Postgres(pg),
        Warehouse::Redshift(rs) => Target::Redshift(rs),
    };
    load_with(target, object, options, on_bytes, publish).await
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
            report.rows_loaded = done.rows_loaded;
            report.rows_duplicate = done.rows_duplicate;
            report.load_id = Some(done.load_id);
            report.quality = done.quality.clone();
            publish.publish(&report).await
        })
    }
}

/// Load one object into PostgreSQL. Never panics on bad input; every outcome is a report.
pub async fn load_object(
    warehouse: &mut Postgres,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
) -> LoadReport {
    load_with(Target::Postgres(warehouse), object, options, on_bytes, None).await
}

/// Load one object into Redshift. Never panics on bad input; every outcome is a report.
pub async fn load_object_redshift(
    warehouse: &mut Redshift,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
) -> LoadReport {
    load_with(Target::Redshift(warehouse), object, options, on_bytes, None).await
}

enum Target<'a> {
    Postgres(&'a mut Postgres),
    Redshift(&'a mut Redshift),
}

async fn load_with(
    target: Target<'_>,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    let started = Instant::now();
    let report = LoadReport::new(&object.uri);
    let limits = match target {
        Target::Postgres(_) => LedgerLimits::POSTGRES,
        Target::Redshift(_) => LedgerLimits::REDSHIFT,
    };
    if let Some(reason) = limits.check(&object.uri, &object.identity) {
        let shown = display_name(&object.name);
        return report.end(Status::Refused, Some(format!("{shown}: {reason}")), started);
    }
    // By name; when the name decides nothing, by the header (read before anything runs in the warehouse).
    let table = match route(&object.name) {
        Ok(t) => Some(t),
        Err(_) if is_csv_name(&object.name) => None,
        Err(e) => return report.end(Status::Refused, Some(e.to_string()), started),
    };
    let report = LoadReport {
        table: table.map(|t| t.name.clone()),
        routed_by: table.map(|_| RoutedBy::Name),
        ..report
    };
    let report = match target {
        Target::Postgres(pg) => {
            load_routed(pg, table, object, options, on_bytes, report, publish).await
        }
        Target::Redshift(rs) => {
            load_routed_redshift(rs, table, object, options, on_bytes, report, publish).await
        }
    };
    let report = LoadReport {
        duration_ms: started.elapsed().as_millis() as u64,
        ..report
    };
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

async fn load_routed(
    warehouse: &mut Postgres,
    table: Option<&'static Table>,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
    mut report: LoadReport,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    let started = Instant::now();
    let display_name = display_name(&object.name);
    let rejects_path = options
        .rejects_dir
        .join(rejects_file_name(&display_name, &object.identity));
    let (header_tx, header_rx) = oneshot::channel();
    let (mode_tx, mode_rx) = oneshot::channel();
    let (chunk_tx, chunk_rx) = mpsc::channel::<CopyChunk>(CHUNKS_IN_FLIGHT);
    let reader: Box<dyn io::Read + Send> = match on_bytes {
        Some(f) => Box::new(Counting::new(object.reader, f)),
        None => object.reader,
    };
    let name = object.name.clone();
    let read_options = ReadOptions::new(options, object.size);
    let worker = tokio::task::spawn_blocking(move || {
        let channels = Channels {
            header: header_tx,
            mode: mode_rx,
            chunks: chunk_tx,
        };
        read_object(reader, &name, table, channels, &rejects_path, &read_options)
    });

    let header = match header_rx.await {
        Ok(h) => h,
        Err(_) => return finish_worker_error(worker, report, started).await,
    };
    report.extra_columns = header.extra_columns;
    let table = header.table;
    report.table = Some(table.name.clone());
    report.routed_by = Some(header.routed_by);

    let mut load = match warehouse
        .begin_load(
            table,
            &object.identity,
            object.content_sha256.as_deref(),
            options.force,
        )
        .await
    {
        Ok(Some(load)) => load,
        Ok(None) => {
            drop((mode_tx, chunk_rx));
            let _ = worker.await;
            return report.end(Status::Skipped, None, started);
        }
        Err(e) => {
            drop((mode_tx, chunk_rx));
            let _ = worker.await;
            return report.end(Status::Failed, Some(e.to_string()), started);
        }
    };
    if mode_tx.send(load.append_above).is_err() {
        return finish_worker_error(worker, report, started).await;
    }
    let copied = load.copy(chunk_rx).await;
    let outcome = match worker.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(ReadError::Cancelled)) => {
            let e = copied.err().map(|e| e.to_string());
            return report.end(Status::Failed, e, started);
        }
        Ok(Err(e)) => return read_error_report(report, e, started),
        Err(e) => {
            return report.end(
                Status::Failed,
                Some(format!("internal error: {e}")),
                started,
            );
        }
    };
    report.with_stats(&outcome.stats);
    report.encoding = Some(outcome.encoding);
    report.rejects_file = outcome.rejects_file;
    report.content_sha256 = outcome.content_sha256.or(object.content_sha256);
    if let Err(e) = copied {
        return report.end(Status::Failed, Some(e.to_string()), started);
    }
    let stats = &outcome.stats;
    if let Some(msg) = over_threshold(&display_name, stats, options.reject_threshold) {
        return report.end(Status::Refused, Some(msg), started);
    }
    let encoding = outcome.encoding.label();
    let entry = LedgerEntry {
        source: &report.source,
        identity: &object.identity,
        rows_read: stats.rows_read,
        rows_rejected: stats.rows_rejected,
        forced: options.force,
        encoding,
        routed_by: header.routed_by.label(),
        content_sha256: report.content_sha256.as_deref(),
        tally: &outcome.tally,
    };
    let snapshot = report.clone();
    let before = PublishBeforeCommit {
        publish,
        report: &snapshot,
    };
    let outcome = load.commit(!stats.keys_increasing, entry, &before).await;
    loaded_report(report, outcome, started)
}

/// The report of a load that reached the warehouse's commit.
fn loaded_report(
    mut report: LoadReport,
    outcome: Result<LoadOutcome, crate::warehouse::postgres::WarehouseError>,
    started: Instant,
) -> LoadReport {
    match outcome {
        Ok(LoadOutcome::Loaded(done)) => {
            report.rows_loaded = done.rows_loaded;
            report.rows_duplicate = done.rows_duplicate;
            report.load_id = Some(done.load_id);
            report.quality = done.quality;
            report.end(Status::Loaded, None, started)
        }
        Ok(LoadOutcome::AlreadyLoaded) => {
            // The same content is already loaded: this copy did nothing, so it reports nothing (its rejected
            // rows are the earlier load's, and their file is not kept twice).
            if let Some(file) = report.rejects_file.take() {
                let _ = fs::remove_file(file);
            }
            let report = LoadReport {
                rows_read: 0,
                rows_rejected: 0,
                rejects: Vec::new(),
                ..report
            };
            report.end(Status::Skipped, None, started)
        }
        Err(e) => report.end(Status::Failed, Some(e.to_string()), started),
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

/// Redshift: check the ledger, cast the whole object into gzip CSV part files on a blocking thread, then hand
/// them to the loader (staging in S3, COPY, merge, ledger, commit, cleanup).
async fn load_routed_redshift(
    warehouse: &mut Redshift,
    table: Option<&'static Table>,
    object: Object,
    options: &LoadOptions,
    on_bytes: Option<Box<dyn FnMut(u64) + Send>>,
    mut report: LoadReport,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let Object {
        name,
        uri,
        identity,
        content_sha256,
        reader,
        size,
    } = object;
    // A cheap check before parsing, when the name routes; the load's transaction checks again either way.
    if let Some(table) = table
        && !options.force
        && warehouse
            .already_loaded(table, &identity, content_sha256.as_deref())
            .await
    {
        return report.end(Status::Skipped, None, started);
    }
    let wanted = warehouse.parts_wanted().await;
    let load_id = load_id(
        table.map_or("by-header", |t| t.name.as_str()),
        &identity,
        started_at,
    );
    let part_dir = warehouse.settings().work_dir.join(&load_id);
    let display_name = display_name(&name);
    let rejects_path = options
        .rejects_dir
        .join(rejects_file_name(&display_name, &identity));
    let reader: Box<dyn io::Read + Send> = match on_bytes {
        Some(f) => Box::new(Counting::new(reader, f)),
        None => reader,
    };
    let dir = part_dir.clone();
    let read_options = ReadOptions::new(options, size);
    let staged = tokio::task::spawn_blocking(move || {
        stage_object(
            reader,
            &name,
            table,
            &dir,
            wanted,
            &rejects_path,
            &read_options,
        )
    })
    .await;
    let report = match staged {
        Ok(Ok(outcome)) => {
            report.extra_columns = outcome.extra_columns.clone();
            report.table = Some(outcome.table.name.clone());
            report.routed_by = Some(outcome.routed_by);
            report.with_stats(&outcome.stats);
            report.encoding = Some(outcome.encoding);
            report.rejects_file = outcome.rejects_file.clone();
            report.content_sha256 = outcome.content_sha256.clone().or(content_sha256);
            let staged = Staged {
                load_id: &load_id,
                display_name: &display_name,
                uri: &uri,
                identity: &identity,
                outcome,
                started_at,
            };
            load_staged(warehouse, options, staged, report, publish).await
        }
        Ok(Err(e)) => read_error_report(report, e, started),
        Err(e) => report.end(
            Status::Failed,
            Some(format!("internal error: {e}")),
            started,
        ),
    };
    let _ = fs::remove_dir_all(&part_dir);
    report
}

/// An object cast into part files, ready to load.
struct Staged<'a> {
    load_id: &'a str,
    display_name: &'a str,
    uri: &'a str,
    identity: &'a str,
    outcome: StageOutcome,
    started_at: SystemTime,
}

async fn load_staged(
    warehouse: &mut Redshift,
    options: &LoadOptions,
    staged: Staged<'_>,
    report: LoadReport,
    publish: Option<&dyn Publish>,
) -> LoadReport {
    let started = Instant::now();
    let outcome = &staged.outcome;
    let stats = &outcome.stats;
    if let Some(msg) = over_threshold(staged.display_name, stats, options.reject_threshold) {
        return report.end(Status::Refused, Some(msg), started);
    }
    let source = report.source.clone();
    let snapshot = report.clone();
    let before = PublishBeforeCommit {
        publish,
        report: &snapshot,
    };
    let request = LoadRequest {
        load_id: staged.load_id,
        uri: staged.uri,
        parts: &outcome.parts,
        dedupe: !stats.keys_increasing,
        entry: LedgerEntry {
            source: &source,
            identity: staged.identity,
            rows_read: stats.rows_read,
            rows_rejected: stats.rows_rejected,
            forced: options.force,
            encoding: outcome.encoding.label(),
            routed_by: outcome.routed_by.label(),
            content_sha256: snapshot.content_sha256.as_deref(),
            tally: &outcome.tally,
        },
        started: staged.started_at,
        before_commit: &before,
    };
    let loaded = warehouse.load(outcome.table, &request).await;
    loaded_report(report, loaded, started)
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
            Some("internal error: no header".into()),
            started,
        ),
        Err(e) => report.end(
            Status::Failed,
            Some(format!("internal error: {e}")),
            started,
        ),
    }
}

fn read_error_report(report: LoadReport, e: ReadError, started: Instant) -> LoadReport {
    match e {
        ReadError::Refused(m) => report.end(Status::Refused, Some(m), started),
        ReadError::Failed(m) => report.end(Status::Failed, Some(m), started),
        ReadError::Cancelled => report.end(Status::Failed, Some("cancelled".into()), started),
    }
}

/// The rejects file of an object: its name without extension, a short identity, `.rejects.csv`. It routes back to
/// the same table, so fixed rows can be dropped back in.
pub fn rejects_file_name(name: &str, identity: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let stem_len = if lower.ends_with(".csv.gz") {
        name.len() - 7
    } else if lower.ends_with(".csv") {
        name.len() - 4
    } else {
        name.len()
    };
    let short: String = identity
        .rsplit(':')
        .next()
        .unwrap_or(identity)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    // File names are limited to 255 bytes; S3 keys are not.
    let mut stem = &name[..stem_len];
    if stem.len() > 120 {
        let mut cut = 120;
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        stem = &stem[..cut];
    }
    format!("{stem}.{short}.rejects.csv")
}

/// The parsing side's connections to the loader.
struct Channels {
    /// The header verdict, sent once the header is read.
    header: oneshot::Sender<HeaderInfo>,
    /// The loader's answer: the key above which rows may be appended directly, if any.
    mode: oneshot::Receiver<Option<i64>>,
    /// COPY text, in chunks.
    chunks: mpsc::Sender<CopyChunk>,
}

/// Accumulates COPY text and hands it to the loader in chunks: appended rows while the keys keep rising above the
/// table's largest key, staged rows from the first key that does not.
struct ChunkWriter {
    buf: Vec<u8>,
    chunks: mpsc::Sender<CopyChunk>,
    appending: bool,
    last_appended: i64,
    last_staged: Option<i64>,
}

impl ChunkWriter {
    /// Finish the row that starts at `row_start` in the buffer; its key decides where it goes.
    fn end_row(
        &mut self,
        row_start: usize,
        key: i64,
        line: u64,
        stats: &mut TransformStats,
    ) -> Result<(), ReadError> {
        if self.appending {
            if key > self.last_appended {
                self.last_appended = key;
                end_row(&mut self.buf, None);
                return Ok(());
            }
            // Keys stopped rising: what came before is appended, this row and the rest are staged and merged,
            // so a later duplicate still replaces an earlier row.
            let row = self.buf.split_off(row_start);
            self.flush()?;
            self.buf = row;
            self.appending = false;
            stats.keys_increasing = false;
        } else if self.last_staged.is_some_and(|last| key <= last) {
            stats.keys_increasing = false;
        }
        self.last_staged = Some(key);
        end_row(&mut self.buf, Some(line));
        Ok(())
    }

    fn flush_if_full(&mut self) -> Result<(), ReadError> {
        if self.buf.len() >= CHUNK {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), ReadError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + 4096),
        ));
        let chunk = if self.appending {
            CopyChunk::Append(bytes)
        } else {
            CopyChunk::Stage(bytes)
        };
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| ReadError::Cancelled)
    }
}

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

/// The parsing side: runs on a blocking thread, sends the header verdict, then COPY chunks.
fn read_object(
    reader: Box<dyn io::Read + Send>,
    name: &str,
    table: Option<&'static Table>,
    channels: Channels,
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
    if channels.header.send(info).is_err() {
        return Err(ReadError::Cancelled);
    }
    let append_above = channels
        .mode
        .blocking_recv()
        .map_err(|_| ReadError::Cancelled)?;
    let mut out = ChunkWriter {
        buf: Vec::with_capacity(CHUNK + 4096),
        chunks: channels.chunks,
        appending: append_above.is_some(),
        last_appended: append_above.unwrap_or(i64::MAX),
        last_staged: None,
    };
    let caster = RowCaster::new(table, &map);
    let mut tally = options.tally(table, true);
    let (stats, rejects_file) = cast_records(
        &mut records,
        &caster,
        &map,
        shown,
        &mut out,
        rejects_path,
        &mut tally,
    )?;
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
        result.map_err(|e| ReadError::Refused(format!("{shown}: {e}")))?
    };
    Ok((records, map, table, routed_by, digest))
}

/// A reading error as the pipeline reports it: a refusal of the object, or a failure a retry may cure.
fn source_error(shown: &str, e: SourceError) -> ReadError {
    match e {
        SourceError::Refused(r) => ReadError::Refused(format!("{shown}: {r}")),
        SourceError::Io(e) => ReadError::Failed(format!("{shown}: reading failed: {e}")),
    }
}

/// An object's file name as messages show it: control characters escaped (no terminal or log injection).
pub fn display_name(name: &str) -> String {
    crate::route::escape_text(file_name(name))
}

/// Where accepted rows go: a buffer the caster writes each row into, told where every row ends.
trait RowSink {
    fn buffer(&mut self) -> &mut Vec<u8>;
    /// The row that starts at `row_start` in the buffer is complete (without its line end).
    fn end_row(
        &mut self,
        row_start: usize,
        key: KeyOrder,
        line: u64,
        stats: &mut TransformStats,
    ) -> Result<(), ReadError>;
    /// Every row has been written.
    fn finish(&mut self) -> Result<(), ReadError>;
}

impl RowSink for ChunkWriter {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn end_row(
        &mut self,
        row_start: usize,
        key: KeyOrder,
        line: u64,
        stats: &mut TransformStats,
    ) -> Result<(), ReadError> {
        ChunkWriter::end_row(self, row_start, key, line, stats)?;
        self.flush_if_full()
    }

    fn finish(&mut self) -> Result<(), ReadError> {
        self.flush()
    }
}

/// Cast every remaining record into `sink`; rejected rows go to the rejects file (created at the first one).
fn cast_records<F: RowFormat, S: RowSink>(
    records: &mut ObjectRecords,
    caster: &RowCaster<'_, F>,
    map: &HeaderMap,
    shown: &str,
    sink: &mut S,
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
                    sink.end_row(row_start, key, record.line, &mut stats)?;
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
        sink.finish()
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

/// Accepted rows as CSV into part files, noting whether keys stay strictly increasing (then the merge needs no
/// de-duplication).
struct PartSink {
    parts: PartWriter,
    last_key: Option<KeyOrder>,
}

impl RowSink for PartSink {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.parts.buffer()
    }

    fn end_row(
        &mut self,
        _row_start: usize,
        key: KeyOrder,
        line: u64,
        stats: &mut TransformStats,
    ) -> Result<(), ReadError> {
        if self.last_key.is_some_and(|last| key <= last) {
            stats.keys_increasing = false;
        }
        self.last_key = Some(key);
        end_csv_row(self.parts.buffer(), line);
        self.parts.end_row().map_err(part_error)
    }

    fn finish(&mut self) -> Result<(), ReadError> {
        Ok(())
    }
}

fn part_error(e: io::Error) -> ReadError {
    ReadError::Failed(format!("cannot write staged parts: {e}"))
}

/// What the Redshift parsing side finished with.
struct StageOutcome {
    table: &'static Table,
    routed_by: RoutedBy,
    stats: TransformStats,
    encoding: TextEncoding,
    extra_columns: Vec<usize>,
    rejects_file: Option<PathBuf>,
    parts: Vec<PartFile>,
    tally: Tally,
    content_sha256: Option<String>,
}

/// The Redshift parsing side: runs on a blocking thread, casts the whole object into up to `wanted` gzip CSV
/// part files in `dir`.
fn stage_object(
    reader: Box<dyn io::Read + Send>,
    name: &str,
    table: Option<&'static Table>,
    dir: &Path,
    wanted: usize,
    rejects_path: &Path,
    options: &ReadOptions,
) -> Result<StageOutcome, ReadError> {
    let shown = display_name(name);
    let shown = shown.as_str();
    let (mut records, map, table, routed_by, digest) = open_records(reader, name, table, options)?;
    let mut sink = PartSink {
        parts: PartWriter::new(dir, wanted).map_err(part_error)?,
        last_key: None,
    };
    let caster = RowCaster::<Csv>::with_format(table, &map);
    // Redshift counts orphans from the staged rows itself; the tally keeps the balance figure.
    let mut tally = options.tally(table, false);
    let (stats, rejects_file) = cast_records(
        &mut records,
        &caster,
        &map,
        shown,
        &mut sink,
        rejects_path,
        &mut tally,
    )?;
    let parts = sink.parts.finish().map_err(part_error)?;
    Ok(StageOutcome {
        table,
        routed_by,
        stats,
        encoding: records.encoding(),
        extra_columns: map.extra_columns,
        rejects_file,
        parts,
        tally,
        content_sha256: digest.get(),
    })
}

fn open_rejects(
    path: &Path,
    source: &str,
    header: &[String],
) -> io::Result<RejectWriter<BufWriter<File>>> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    RejectWriter::new(BufWriter::new(File::create(path)?), source, header)
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
