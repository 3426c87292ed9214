//! The seam between the pipeline and a warehouse: what every dialect implements ([`Loader`], [`Load`],
//! [`RowSink`]) and the facts that cross it (ledger entry, committed load, outcome). The pipeline names no dialect;
//! a dialect names no pipeline type.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_postgres::Client;

use super::error::WarehouseError;
use crate::schema::Table;
use crate::transform::{KeyOrder, Quality, Tally, TransformStats};

/// A warehouse of some dialect: creates and migrates its tables, begins loads, and answers read-only queries.
///
/// A load goes: [`Loader::begin`] (lock or check the ledger; `None` when it already has the object) →
/// [`Load::sink`] (handed to the parsing thread, which writes every cast row into it) → [`Load::receive`] (takes
/// the rows while they are written, if the dialect streams) → [`Load::commit`] (merge, quality figures, ledger row,
/// commit). Dropping a [`Load`] before its commit leaves the warehouse as it was.
pub trait Loader: Send {
    /// The dialect's name (`postgres`, `redshift`), for logs and messages.
    fn dialect(&self) -> &'static str;

    /// The longest source and identity texts this dialect's ledger stores.
    fn ledger_limits(&self) -> super::LedgerLimits;

    /// Bring the warehouse to the declared schema: create what is missing, add declared columns it lacks, record
    /// the schema version, then run `reporting` (the caller's view statements) in the same transaction. Returns
    /// what it changed. Idempotent and safe to run concurrently.
    fn init<'a>(
        &'a mut self,
        reporting: &'a [String],
    ) -> BoxFuture<'a, Result<super::migrate::Migrated, WarehouseError>>;

    /// Whether the warehouse is at the declared schema version already (then [`Loader::init`] has nothing to do).
    fn is_current(&mut self) -> BoxFuture<'_, Result<bool, WarehouseError>>;

    /// The live client for read-only queries (the dashboard), connecting if needed.
    fn client(&mut self) -> BoxFuture<'_, Result<&mut Client, WarehouseError>>;

    /// Begin loading one object into `request.table`. [`Begun::Skip`] when the ledger already has it (by its quick
    /// identity or, when known before reading, its content) and the load is not forced: nothing was changed.
    fn begin<'a>(
        &'a mut self,
        request: BeginLoad<'a>,
    ) -> BoxFuture<'a, Result<Begun<'a>, WarehouseError>>;

    /// Record one attempt in `etl.load_attempts`, in a transaction of its own (autocommit): after a failed load's
    /// rollback, or a refusal that never reached the warehouse.
    fn record_attempt<'a>(
        &'a mut self,
        attempt: &'a AttemptRecord<'a>,
    ) -> BoxFuture<'a, Result<(), WarehouseError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let params = attempt.params();
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            client
                .execute(&super::attempt_insert_sql(), &params)
                .await
                .map(|_| ())
                .map_err(WarehouseError::db("recording the attempt"))
        })
    }
}

/// How [`Loader::begin`] went.
pub enum Begun<'a> {
    /// The load is open.
    Load(Box<dyn Load + 'a>),
    /// The ledger has the object already: the load it duplicates.
    Skip {
        /// That load's ledger row.
        load_id: i64,
    },
}

/// One attempt, as `etl.load_attempts` records it. Never row contents: `error` names files, lines and columns.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    /// The object's URI or path.
    pub source: &'a str,
    /// Its quick identity (empty when it was never opened).
    pub identity: &'a str,
    /// The table, once routed.
    pub table: Option<&'a str>,
    /// `loaded`, `skipped`, `refused` or `failed`.
    pub status: &'a str,
    /// The category of a refusal or failure.
    pub reason: Option<&'a str>,
    /// The error.
    pub error: Option<&'a str>,
    /// The ledger row committed, or the one a skipped object duplicates.
    pub load_id: Option<i64>,
    /// Row figures.
    pub rows_read: u64,
    /// Rows written.
    pub rows_loaded: u64,
    /// Rows identical to the stored ones.
    pub rows_unchanged: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// Rows replaced by a later row of the same key.
    pub rows_duplicate: u64,
    /// Where the rejected rows are.
    pub rejects: Option<&'a str>,
    /// Tried past the ledger.
    pub forced: bool,
    /// When it began and ended.
    pub started: std::time::SystemTime,
    /// When it ended.
    pub finished: std::time::SystemTime,
}

/// The longest error text an attempt keeps (the column's limit, in bytes).
pub const ATTEMPT_ERROR_BYTES: usize = 4000;

impl AttemptRecord<'_> {
    /// The insert's parameters, in [`super::attempt_insert_sql`]'s order.
    fn params(&self) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let at = |t: std::time::SystemTime| crate::calendar::timestamptz(t);
        vec![
            Box::new(self.source.to_string()),
            Box::new(self.identity.to_string()),
            Box::new(self.table.map(str::to_string)),
            Box::new(self.status.to_string()),
            Box::new(self.reason.map(str::to_string)),
            Box::new(self.error.map(|e| clip(e, ATTEMPT_ERROR_BYTES))),
            Box::new(self.load_id),
            Box::new(count(self.rows_read)),
            Box::new(count(self.rows_loaded)),
            Box::new(count(self.rows_unchanged)),
            Box::new(count(self.rows_rejected)),
            Box::new(count(self.rows_duplicate)),
            Box::new(self.rejects.map(str::to_string)),
            Box::new(self.forced),
            Box::new(at(self.started)),
            Box::new(at(self.finished)),
            Box::new(
                self.finished
                    .duration_since(self.started)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ),
        ]
    }
}

/// `text` cut to at most `bytes` bytes on a character boundary, saying so with a trailing `…` when cut.
pub fn clip(text: &str, bytes: usize) -> String {
    if text.len() <= bytes {
        return text.to_string();
    }
    let kept = crate::route::cut_at_boundary(text, bytes.saturating_sub('…'.len_utf8()));
    format!("{kept}…")
}

/// What a load is for.
#[derive(Debug, Clone, Copy)]
pub struct BeginLoad<'a> {
    /// The table, from routing.
    pub table: &'static Table,
    /// The object's URI (an S3 object's bucket is the default staging bucket).
    pub source: &'a str,
    /// The quick identity (ETag/version, or a local file's hash).
    pub identity: &'a str,
    /// The content hash, when known before reading (local plain files).
    pub content_sha256: Option<&'a str>,
    /// Load even if the ledger has the object.
    pub force: bool,
    /// When the work must be over (the Lambda invocation's deadline less a margin, or the CLI's `--timeout`):
    /// every statement of the load runs under a `statement_timeout` of the time left. `None`: no limit.
    pub deadline: Option<Instant>,
}

/// The least time a load starts with: below it, it is not started (a statement would be cancelled at once).
pub const MIN_TIME_LEFT: Duration = Duration::from_secs(1);

/// `SET statement_timeout TO …` (both dialects' spelling, session-wide) for the time left before `deadline`, or
/// `0` (none) without one; an error when less than [`MIN_TIME_LEFT`] is left.
pub fn statement_timeout_sql(deadline: Option<Instant>) -> Result<String, WarehouseError> {
    let Some(deadline) = deadline else {
        return Ok("SET statement_timeout TO 0".into());
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left < MIN_TIME_LEFT {
        return Err(WarehouseError::Deadline(format!(
            "{} ms left, less than the {} ms a load needs to start",
            left.as_millis(),
            MIN_TIME_LEFT.as_millis()
        )));
    }
    Ok(format!("SET statement_timeout TO {}", left.as_millis()))
}

/// How rows are written into a [`RowSink`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowEncoding {
    /// PostgreSQL COPY text (tab-separated, `\N` for NULL, backslash escapes).
    CopyText,
    /// PostgreSQL binary COPY (see [`crate::transform::binary`]).
    CopyBinary,
    /// RFC 4180 CSV (empty unquoted field for NULL).
    Csv,
}

/// Why a sink stopped taking rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The loader no longer wants rows (its load failed or was dropped).
    #[error("the warehouse stopped taking rows")]
    Closed,
    /// Writing the rows broke (local disk).
    #[error("{0}")]
    Io(String),
}

/// Where one load's accepted rows go, written on the parsing thread: a buffer the caster writes each row into,
/// told where every row ends.
pub trait RowSink: Send {
    /// How rows must be encoded.
    fn encoding(&self) -> RowEncoding;
    /// Whether the sink's warehouse wants fact keys tallied while casting (it counts orphans from the tally);
    /// otherwise the warehouse counts them itself and only the balance is tallied.
    fn tallies_keys(&self) -> bool;
    /// The buffer the next row is written to.
    fn buffer(&mut self) -> &mut Vec<u8>;
    /// The row that starts at `row_start` in the buffer is complete (without its line end). The sink notes in
    /// `stats.keys_increasing` when keys stop strictly increasing (then the merge must de-duplicate).
    fn end_row(
        &mut self,
        row_start: usize,
        key: KeyOrder,
        line: u64,
        stats: &mut TransformStats,
    ) -> Result<(), SinkError>;
    /// Every row has been written.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// How far the parsing thread has read its object: bytes as stored (before decompression), of `size` when known.
#[derive(Debug, Clone, Default)]
pub struct ReadProgress {
    /// The object's stored size.
    pub size: Option<u64>,
    /// Stored bytes read so far (a little ahead of the rows cast: the reader buffers).
    pub read: Arc<AtomicU64>,
}

/// One object's open load. Dropping it without [`Load::commit`] rolls everything back.
pub trait Load: Send {
    /// The sink for this load's rows (called once, before any row is cast); `progress` follows the reading.
    fn sink(&mut self, progress: ReadProgress) -> Result<Box<dyn RowSink>, WarehouseError>;

    /// Take rows while the sink is written to, until it finishes or is dropped (streaming dialects); others
    /// return at once and take the rows at commit.
    fn receive(&mut self) -> BoxFuture<'_, Result<(), WarehouseError>>;

    /// Merge the rows, count the quality figures, write the ledger row, run `commit.before_commit`, commit. When
    /// the ledger already has the object's content (and the load is not forced), everything is rolled back.
    fn commit<'b>(
        self: Box<Self>,
        commit: Commit<'b>,
    ) -> BoxFuture<'b, Result<LoadOutcome, WarehouseError>>
    where
        Self: 'b;

    /// The load will not be committed (its object was refused, or failed, after the rows were taken): remove what
    /// it wrote outside the warehouse (staged objects). Dropping it instead leaves those to the staging prefix's
    /// lifecycle rule.
    fn abandon<'b>(self: Box<Self>) -> BoxFuture<'b, ()>
    where
        Self: 'b,
    {
        Box::pin(async move { drop(self) })
    }
}

/// What a commit needs from the pipeline.
pub struct Commit<'a> {
    /// Roll back instead of committing (after everything else, `before_commit` excepted, has run).
    pub dry_run: bool,
    /// Whether duplicate keys may have been written (keys were not strictly increasing).
    pub dedupe: bool,
    /// The ledger facts.
    pub entry: LedgerEntry<'a>,
    /// Run once the load is complete but not committed; its failure rolls the load back.
    pub before_commit: &'a dyn BeforeCommit,
}

/// What a committed load recorded.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The ledger row's key.
    pub load_id: i64,
    /// What became of the accepted rows.
    pub rows: RowCounts,
    /// The load's data-quality figures (tables with dimension keys or a balance identity).
    pub quality: Option<Quality>,
}

/// What became of a load's accepted rows: each is inserted, updated, unchanged or a duplicate, so
/// `rows_read = loaded() + unchanged + duplicate + rows_rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows with a key the table did not have before the load.
    pub inserted: u64,
    /// Rows that replaced a stored row of the same key with different values.
    pub updated: u64,
    /// Rows identical to the stored row of their key: left as they were, not rewritten.
    pub unchanged: u64,
    /// Rows replaced by a later row of the same key in the same object.
    pub duplicate: u64,
}

impl RowCounts {
    /// Rows written: inserted + updated.
    pub fn loaded(&self) -> u64 {
        self.inserted + self.updated
    }
}

/// What a dialect's merge statements counted, from which [`RowCounts`] follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeTally {
    /// Rows copied straight into the table (keys above its largest, strictly increasing: no duplicates).
    pub appended: u64,
    /// Rows copied into the staging table.
    pub staged: u64,
    /// Staged rows removed because a later staged row has the same key.
    pub staged_duplicates: u64,
    /// Table rows deleted because a staged row of the same key differs from them or supersedes them.
    pub replaced: u64,
    /// Of `replaced`, the rows this load had appended (earlier occurrences of a key, so duplicates).
    pub replaced_appended: u64,
    /// Staged rows inserted (the rest were identical to the stored row of their key).
    pub inserted: u64,
}

impl MergeTally {
    /// Every appended or staged row is counted once: inserted, updated, unchanged or duplicate.
    pub fn counts(&self) -> RowCounts {
        let updated = self.replaced.saturating_sub(self.replaced_appended);
        RowCounts {
            inserted: (self.appended + self.inserted)
                .saturating_sub(self.replaced_appended + updated),
            updated,
            unchanged: self
                .staged
                .saturating_sub(self.staged_duplicates + self.inserted),
            duplicate: self.staged_duplicates + self.replaced_appended,
        }
    }
}

/// The ledger facts of one load.
#[derive(Debug, Clone)]
pub struct LedgerEntry<'a> {
    /// The object's URI.
    pub source: &'a str,
    /// Its quick identity.
    pub identity: &'a str,
    /// Rows the strict CSV reader found.
    pub rows_read: u64,
    /// Rows rejected by validation.
    pub rows_rejected: u64,
    /// Whether the load was forced past the ledger.
    pub forced: bool,
    /// The text encoding the object was decoded from.
    pub encoding: &'a str,
    /// How the table was chosen: `name` or `header`.
    pub routed_by: &'a str,
    /// The SHA-256 (hex) of the decompressed bytes: the object's identity by content.
    pub content_sha256: Option<&'a str>,
    /// The quality figures counted while casting.
    pub tally: &'a Tally,
    /// A replay of rejected rows: the object they were rejected from.
    pub replay_of: Option<&'a str>,
}

/// What a load came to.
#[derive(Debug, Clone)]
pub enum LoadOutcome {
    /// Committed.
    Loaded(Committed),
    /// The ledger already had this object, by its quick identity or its content (another worker loaded it
    /// meanwhile, or the same bytes arrived under another name or compression).
    AlreadyLoaded {
        /// The load it duplicates.
        load_id: i64,
    },
}

/// Work that must succeed before a load commits — publishing its rejected rows and report, so that a committed
/// load never leaves them only as counts. It is given the load's final figures; an error rolls the load back.
pub trait BeforeCommit: Sync {
    /// Run once the load is complete but not yet committed (again on each retry of the transaction).
    fn before_commit<'a>(&'a self, done: &'a Committed) -> BoxFuture<'a, Result<(), String>>;
}

/// Nothing to do before committing.
pub struct NothingBeforeCommit;

impl BeforeCommit for NothingBeforeCommit {
    fn before_commit<'a>(&'a self, _done: &'a Committed) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every appended or staged row lands in exactly one count.
    fn accounted(t: MergeTally) -> RowCounts {
        let c = t.counts();
        assert_eq!(
            c.loaded() + c.unchanged + c.duplicate,
            t.appended + t.staged,
            "{t:?} -> {c:?}"
        );
        c
    }

    #[test]
    fn merge_counts_tell_new_changed_identical_and_duplicate_rows_apart() {
        let cases = [
            // A first load, appended: all new.
            (
                MergeTally {
                    appended: 5,
                    ..MergeTally::default()
                },
                (5, 0, 0, 0),
            ),
            // The same 5 rows again, one of them changed: 1 updated, 4 untouched.
            (
                MergeTally {
                    staged: 5,
                    replaced: 1,
                    inserted: 1,
                    ..MergeTally::default()
                },
                (0, 1, 4, 0),
            ),
            // 3 appended, then a row repeating an appended key (it wins), a new key and a changed old key, plus
            // an earlier staged occurrence of that old key.
            (
                MergeTally {
                    appended: 3,
                    staged: 4,
                    staged_duplicates: 1,
                    replaced: 2,
                    replaced_appended: 1,
                    inserted: 3,
                },
                (4, 1, 0, 2),
            ),
        ];
        for (tally, expected) in cases {
            let c = accounted(tally);
            assert_eq!(
                (c.inserted, c.updated, c.unchanged, c.duplicate),
                expected,
                "{tally:?}"
            );
        }
    }

    #[test]
    fn the_statement_timeout_is_the_time_left_and_none_without_a_deadline() {
        assert_eq!(
            statement_timeout_sql(None).unwrap(),
            "SET statement_timeout TO 0"
        );
        let sql = statement_timeout_sql(Some(Instant::now() + Duration::from_secs(90))).unwrap();
        let ms: u64 = sql.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((89_000..=90_000).contains(&ms), "{sql}");
        let late = statement_timeout_sql(Some(Instant::now() + Duration::from_millis(200)));
        assert!(matches!(late, Err(WarehouseError::Deadline(_))), "{late:?}");
        assert!(statement_timeout_sql(Some(Instant::now())).is_err());
    }
}
