//! The Redshift loader: the object's cleaned rows, streamed to S3 as compressed CSV parts while the object is
//! parsed (staged once, whatever the retries), loaded in one transaction —
//! lock, ledger check, temporary staging table, `COPY … FROM` the manifest, de-duplication, delete-then-insert,
//! ledger row, commit — retried with backoff on serialization conflicts and broken connections, then the staged
//! objects removed.

pub mod auth;
pub mod sql;
pub mod staging;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_postgres::{Client, SimpleQueryMessage, Transaction};

use super::connection::Connection;
use super::error::{WarehouseError, describe};
use super::load::{
    BeforeCommit, BeginLoad, Begun, Commit, Committed, LedgerEntry, Load, LoadOutcome, Loader,
    MergeTally, ReadProgress, RowEncoding, RowSink, SinkError,
};
use super::migrate::{self, Migrated};
use super::{LedgerLimits, comment_columns_from_dictionary};
use crate::calendar::timestamptz;
use crate::schema::{Table, data_schema, etl_schema, quote_ident};
use crate::transform::{KeyOrder, Quality, TransformStats, end_csv_row};
use staging::{
    PartPlan, PartStream, Piece, StagedLoad, Step, StreamError, Uploader, bucket_of, load_id,
};

/// Parts per load when the slice count cannot be read (e.g. Serverless without access to `stv_slices`).
pub const FALLBACK_PARTS: usize = 4;
/// The most parts one load is split into.
pub const MAX_PARTS: usize = 128;

/// The future of a [`RedshiftOnly`] statement.
pub type StatementFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>>;

/// Runs the statements only Redshift can execute: `CREATE TABLE` with distribution, sort and encoding attributes
/// (and the ledger's `IDENTITY`), and `COPY … FROM 's3://…' IAM_ROLE …`. In production that is [`Server`], which
/// sends them as they are; everything else the loader sends goes straight to the connection. The integration tests
/// put a PostgreSQL stand-in here, and only here.
pub trait RedshiftOnly: Send + Sync {
    /// Run `statement` inside `tx`.
    fn execute<'a>(&'a self, tx: &'a Transaction<'a>, statement: &'a str) -> StatementFuture<'a>;
}

/// The real server: statements are sent unchanged.
pub struct Server;

impl RedshiftOnly for Server {
    fn execute<'a>(&'a self, tx: &'a Transaction<'a>, statement: &'a str) -> StatementFuture<'a> {
        Box::pin(tx.batch_execute(statement))
    }
}

/// How a failed load transaction is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before try `attempt + 1`: exponential, with up to 50% jitter so conflicting loads drift apart.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .first_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        exp.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.5)
    }
}

/// What the Redshift loader needs besides its connection.
#[derive(Debug, Clone)]
pub struct RedshiftSettings {
    /// The IAM role Redshift assumes to read the staged parts (`COPY … IAM_ROLE`).
    pub copy_role_arn: String,
    /// Where parts are staged; `None`: the source object's own bucket.
    pub staging_bucket: Option<String>,
    /// Key prefix of staged loads (`staging/`).
    pub staging_prefix: String,
    /// Parts per load; `None`: one per slice of the cluster.
    pub parts: Option<usize>,
    /// How a failed load transaction is retried.
    pub retry: RetryPolicy,
    /// How the parts are compressed.
    pub part_compression: crate::config::PartCompression,
}

/// How a failed retry loop ended, or what the next step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not transient: fail now.
    No,
    /// A conflict: roll back and run the transaction again.
    Again,
    /// The connection broke: connect anew, then run it again.
    Reconnect,
}

/// Whether an error from the server is worth another try: serialization failures (SQLSTATE 40001; Redshift's
/// error 1023 "Serializable isolation violation", which it reports under its own code), deadlocks, and connection
/// exceptions or shutdowns.
pub fn retry_for(code: &str, message: &str, detail: Option<&str>) -> Retry {
    let redshift_conflict = message.trim_start().starts_with("1023")
        || message.contains("Serializable isolation violation")
        || detail.is_some_and(|d| d.contains("Serializable isolation violation"));
    if code == "40001" || code == "40P01" || redshift_conflict {
        Retry::Again
    } else if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") {
        Retry::Reconnect
    } else {
        Retry::No
    }
}

/// [`retry_for`] of a driver error; an error without a server message means the connection is gone.
pub fn classify(e: &tokio_postgres::Error) -> Retry {
    match e.as_db_error() {
        Some(db) => retry_for(db.code().code(), db.message(), db.detail()),
        None if e.is_closed() => Retry::Reconnect,
        None => {
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                if s.is::<std::io::Error>() {
                    return Retry::Reconnect;
                }
                source = s.source();
            }
            Retry::No
        }
    }
}

/// One try's failure.
enum AttemptError {
    Db {
        context: &'static str,
        error: tokio_postgres::Error,
    },
    Connect(WarehouseError),
    Fatal(WarehouseError),
}

fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AttemptError {
    move |error| AttemptError::Db { context, error }
}

/// One object's load: its staged parts and ledger facts.
struct LoadRequest<'a> {
    /// The staged parts (`None`: the object had no rows).
    pub staged: Option<&'a StagedLoad>,
    /// Whether duplicate keys may be staged (keys were not strictly increasing).
    pub dedupe: bool,
    /// Roll back instead of committing.
    pub dry_run: bool,
    pub entry: LedgerEntry<'a>,
    pub started: SystemTime,
    /// Run before the transaction commits; its failure rolls the load back (not retried here).
    pub before_commit: &'a dyn BeforeCommit,
    /// When the load must be over: each try runs under a statement timeout of the time left, and no try starts
    /// without time left.
    pub deadline: Option<std::time::Instant>,
}

/// The Redshift warehouse: a connection, an S3 client for staging, and the statements only Redshift runs.
pub struct Redshift {
    connection: Connection,
    s3: aws_sdk_s3::Client,
    settings: RedshiftSettings,
    server: Arc<dyn RedshiftOnly>,
    slices: Option<usize>,
}

impl Redshift {
    /// The loader over `connection`, staging through `s3`.
    pub fn new(connection: Connection, s3: aws_sdk_s3::Client, settings: RedshiftSettings) -> Self {
        Redshift {
            connection,
            s3,
            settings,
            server: Arc::new(Server),
            slices: None,
        }
    }

    /// Run the Redshift-only statements through `server` (the integration tests' PostgreSQL stand-in).
    pub fn with_server(mut self, server: Arc<dyn RedshiftOnly>) -> Self {
        self.server = server;
        self
    }

    /// Its settings.
    pub fn settings(&self) -> &RedshiftSettings {
        &self.settings
    }

    /// Create or migrate schemas, tables and the ledger, then run the reporting statements (idempotent), retried
    /// like a load: concurrent cold starts may race.
    async fn init_with(&mut self, reporting: &[String]) -> Result<Migrated, WarehouseError> {
        let mut attempt = 1;
        loop {
            let failure = match self.init_once(reporting).await {
                Ok(migrated) => return Ok(migrated),
                Err(e) => e,
            };
            self.after_failure(failure, attempt, "init").await?;
            attempt += 1;
        }
    }

    async fn init_once(&mut self, reporting: &[String]) -> Result<Migrated, AttemptError> {
        let server = self.server.clone();
        let client = self
            .connection
            .client()
            .await
            .map_err(AttemptError::Connect)?;
        let tx = client.transaction().await.map_err(db("starting init"))?;
        let from = migrate::current_version(&tx)
            .await
            .map_err(AttemptError::Fatal)?;
        for schema in [data_schema(), etl_schema()] {
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            ))
            .await
            .map_err(db("creating the schemas"))?;
        }
        for table in crate::schema::SCHEMA.all_tables() {
            server
                .execute(&tx, &sql::create_table(table))
                .await
                .map_err(db("creating the tables"))?;
        }
        server
            .execute(&tx, &sql::create_ledger())
            .await
            .map_err(db("creating the ledger"))?;
        server
            .execute(&tx, &sql::create_attempts())
            .await
            .map_err(db("creating the attempts table"))?;
        for stmt in sql::create_load_locks() {
            tx.batch_execute(&stmt)
                .await
                .map_err(db("creating the load lock tables"))?;
        }
        tx.batch_execute(&migrate::create_version_table_sql())
            .await
            .map_err(db("creating the schema version table"))?;
        let migrated = migrate::add_missing_columns(&tx, sql::column_type, from)
            .await
            .map_err(AttemptError::Fatal)?;
        for stmt in reporting {
            tx.batch_execute(stmt)
                .await
                .map_err(db("creating the reporting views"))?;
        }
        migrate::record_version(&tx, &migrated)
            .await
            .map_err(AttemptError::Fatal)?;
        tx.commit().await.map_err(db("committing init"))?;
        Ok(migrated)
    }

    /// The load that already has this identity for this table: a cheap check before parsing and staging. Best
    /// effort (`None` on any error): the check inside the load transaction is the one that counts.
    async fn already_loaded(
        &mut self,
        table: &Table,
        identity: &str,
        content_sha256: Option<&str>,
    ) -> Option<i64> {
        let client = match self.connection.client().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ledger pre-check skipped");
                return None;
            }
        };
        match client
            .query_opt(
                &sql::ledger_lookup(),
                &[&identity, &table.name, &content_sha256],
            )
            .await
        {
            Ok(row) => row.map(|r| r.get(0)),
            Err(e) => {
                tracing::warn!(error = %describe(&e), "ledger pre-check skipped");
                None
            }
        }
    }

    /// How many parts to stage: configured, or one per slice (read once), or [`FALLBACK_PARTS`].
    pub async fn parts_wanted(&mut self) -> usize {
        if let Some(n) = self.settings.parts.or(self.slices) {
            return n.clamp(1, MAX_PARTS);
        }
        let counted = match self.connection.client().await {
            Ok(client) => client
                .query_one(sql::slice_count(), &[])
                .await
                .map_err(|e| describe(&e))
                .and_then(|row| row.try_get::<_, i64>(0).map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        let n = match counted {
            Ok(n) if n > 0 => usize::try_from(n).unwrap_or(MAX_PARTS),
            Ok(_) => FALLBACK_PARTS,
            Err(e) => {
                tracing::warn!(error = %e, parts = FALLBACK_PARTS, "slice count unavailable");
                FALLBACK_PARTS
            }
        };
        self.slices = Some(n);
        n.clamp(1, MAX_PARTS)
    }

    /// Load the staged parts in one transaction (retried), and remove the staged objects whatever happened.
    async fn load(
        &mut self,
        table: &Table,
        request: &LoadRequest<'_>,
    ) -> Result<LoadOutcome, WarehouseError> {
        let result = self.transaction(table, request.staged, request).await;
        if let Some(staged) = request.staged {
            staging::remove(&self.s3, staged).await;
        }
        result
    }

    async fn transaction(
        &mut self,
        table: &Table,
        staged: Option<&StagedLoad>,
        request: &LoadRequest<'_>,
    ) -> Result<LoadOutcome, WarehouseError> {
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(table, staged, request).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) => e,
            };
            self.after_failure(failure, attempt, &table.name).await?;
            attempt += 1;
        }
    }

    /// Decide whether to try again after try `attempt` failed: `Err` to stop, `Ok` after waiting (and dropping the
    /// connection when it broke).
    async fn after_failure(
        &mut self,
        failure: AttemptError,
        attempt: u32,
        what: &str,
    ) -> Result<(), WarehouseError> {
        let (retry, context, detail) = match failure {
            AttemptError::Fatal(e) => return Err(e),
            AttemptError::Connect(e) => (Retry::Reconnect, "connecting", e.to_string()),
            AttemptError::Db { context, error } => (classify(&error), context, describe(&error)),
        };
        if retry == Retry::No {
            return Err(WarehouseError::Db { context, detail });
        }
        let policy = self.settings.retry;
        if attempt >= policy.attempts {
            return Err(WarehouseError::GaveUp {
                attempts: attempt,
                context,
                detail,
            });
        }
        if retry == Retry::Reconnect {
            self.connection.reset();
        }
        let jitter = f64::from(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
                % 1000,
        ) / 1000.0;
        let delay = policy.delay(attempt, jitter);
        tracing::warn!(what, attempt, context, error = %detail, delay_ms = delay.as_millis() as u64,
            "warehouse transaction failed; trying again");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    async fn attempt(
        &mut self,
        table: &Table,
        staged: Option<&StagedLoad>,
        request: &LoadRequest<'_>,
    ) -> Result<LoadOutcome, AttemptError> {
        let server = self.server.clone();
        let role = self.settings.copy_role_arn.clone();
        let entry = &request.entry;
        let timeout =
            super::statement_timeout_sql(request.deadline).map_err(AttemptError::Fatal)?;
        let client = self
            .connection
            .client()
            .await
            .map_err(AttemptError::Connect)?;
        client
            .batch_execute(&timeout)
            .await
            .map_err(db("setting the statement timeout"))?;
        let tx = client
            .transaction()
            .await
            .map_err(db("starting the load transaction"))?;
        tx.batch_execute(&sql::lock(table))
            .await
            .map_err(db("taking the table's load lock"))?;
        if !entry.forced
            && let Some(row) = tx
                .query_opt(
                    &sql::ledger_lookup(),
                    &[&entry.identity, &table.name, &entry.content_sha256],
                )
                .await
                .map_err(db("reading the ledger"))?
        {
            return Ok(LoadOutcome::AlreadyLoaded {
                load_id: row.get(0),
            });
        }
        let mut orphans = None;
        let mut tally = MergeTally::default();
        match staged {
            None => {}
            Some(staged) => {
                tally.staged = staged.rows;
                tx.batch_execute(&sql::create_staging(table))
                    .await
                    .map_err(db("creating the staging table"))?;
                tx.batch_execute(&sql::add_line_column())
                    .await
                    .map_err(db("creating the staging table"))?;
                server
                    .execute(
                        &tx,
                        &sql::copy(table, &staged.manifest_url, &role, staged.compression),
                    )
                    .await
                    .map_err(db("copying the staged parts from S3"))?;
                let copied = count(
                    &tx,
                    &format!("SELECT COUNT(*) FROM {}", quote_ident(super::STAGING)),
                )
                .await
                .map_err(db("counting the staged rows"))?;
                if copied != staged.rows {
                    return Err(AttemptError::Fatal(WarehouseError::Db {
                        context: "copying the staged parts from S3",
                        detail: format!(
                            "COPY loaded {copied} rows but the parts under {} hold {}",
                            staged.manifest_url, staged.rows
                        ),
                    }));
                }
                if let Some(statement) = sql::orphan_rows(table).filter(|_| entry.tally.is_active())
                {
                    let row = tx
                        .query_one(&statement, &[])
                        .await
                        .map_err(db("counting orphan keys"))?;
                    orphans = Some(
                        (0..row.len())
                            .map(|i| u64::try_from(row.get::<_, i64>(i)).unwrap_or_default())
                            .collect::<Vec<u64>>(),
                    );
                }
                if request.dedupe {
                    tally.staged_duplicates = affected(&tx, &sql::delete_staged_duplicates(table))
                        .await
                        .map_err(db("setting duplicate rows aside"))?;
                }
                tally.replaced = affected(&tx, &sql::delete_replaced(table))
                    .await
                    .map_err(db("replacing rows"))?;
                affected(&tx, &sql::delete_unchanged(table))
                    .await
                    .map_err(db("setting unchanged rows aside"))?;
                tally.inserted = affected(&tx, &sql::insert_staged(table))
                    .await
                    .map_err(db("inserting rows"))?;
                tx.batch_execute(&sql::drop_staging())
                    .await
                    .map_err(db("dropping the staging table"))?;
            }
        }
        let rows = tally.counts();
        if table.kind == crate::schema::TableKind::Dictionary {
            comment_columns_from_dictionary(&tx, false)
                .await
                .map_err(db("commenting columns from the data dictionary"))?;
        }
        let quality = entry.tally.is_active().then(|| {
            let columns = crate::schema::SCHEMA
                .dimension_keys(table)
                .enumerate()
                .map(|(k, (_, column, _))| (column, orphans.as_ref().map_or(0, |o| o[k])))
                .collect();
            Quality::new(table, columns, entry.tally.balance_mismatches())
        });
        let quality_json = quality.as_ref().map(Quality::to_json);
        let started = timestamptz(request.started);
        let finished = timestamptz(SystemTime::now());
        tx.execute(
            &sql::ledger_insert(),
            &[
                &entry.source,
                &entry.identity,
                &table.name,
                &(entry.rows_read as i64),
                &(rows.loaded() as i64),
                &(entry.rows_rejected as i64),
                &(rows.duplicate as i64),
                &entry.forced,
                &entry.encoding,
                &started,
                &finished,
                &entry.routed_by,
                &entry.content_sha256,
                &quality_json,
                &(rows.inserted as i64),
                &(rows.updated as i64),
                &(rows.unchanged as i64),
                &entry.replay_of,
            ],
        )
        .await
        .map_err(db("writing the ledger"))?;
        let load_id: Option<i64> = tx
            .query_one(
                &sql::ledger_load_id(),
                &[&entry.identity, &table.name, &finished],
            )
            .await
            .map_err(db("reading the ledger row back"))?
            .get(0);
        let done = Committed {
            load_id: load_id.unwrap_or_default(),
            rows,
            quality,
        };
        if request.dry_run {
            tx.rollback()
                .await
                .map_err(db("rolling the dry run back"))?;
            return Ok(LoadOutcome::Loaded(done));
        }
        request
            .before_commit
            .before_commit(&done)
            .await
            .map_err(|e| AttemptError::Fatal(WarehouseError::BeforeCommit(e)))?;
        tx.commit().await.map_err(db("committing"))?;
        Ok(LoadOutcome::Loaded(done))
    }
}

impl Loader for Redshift {
    fn dialect(&self) -> &'static str {
        "redshift"
    }

    fn ledger_limits(&self) -> LedgerLimits {
        LedgerLimits::of_declared_ledger(sql::text_bytes)
    }

    fn init<'a>(
        &'a mut self,
        reporting: &'a [String],
    ) -> BoxFuture<'a, Result<Migrated, WarehouseError>> {
        Box::pin(self.init_with(reporting))
    }

    fn is_current(&mut self) -> BoxFuture<'_, Result<bool, WarehouseError>> {
        Box::pin(async move { migrate::is_current(&*self.connection.client().await?).await })
    }

    fn client(&mut self) -> BoxFuture<'_, Result<&mut Client, WarehouseError>> {
        Box::pin(self.connection.client())
    }

    /// A cheap ledger check (the one under the lock comes at commit), then a folder for this load's parts.
    fn begin<'a>(
        &'a mut self,
        request: BeginLoad<'a>,
    ) -> BoxFuture<'a, Result<Begun<'a>, WarehouseError>> {
        Box::pin(async move {
            let table = request.table;
            // A local file has no bucket of its own: say so before it is read, not after it was cast.
            if self.settings.staging_bucket.is_none() && bucket_of(request.source).is_none() {
                return Err(WarehouseError::Staging(format!(
                    "{} is not in S3 and no STAGING_BUCKET is configured",
                    crate::route::escape_text(request.source)
                )));
            }
            if !request.force
                && let Some(load_id) = self
                    .already_loaded(table, request.identity, request.content_sha256)
                    .await
            {
                return Ok(Begun::Skip { load_id });
            }
            let wanted = self.parts_wanted().await;
            let started = SystemTime::now();
            let load_id = load_id(&table.name, request.identity, started);
            let bucket = self
                .settings
                .staging_bucket
                .as_deref()
                .or_else(|| bucket_of(request.source))
                .unwrap_or_default()
                .to_string();
            let folder = format!("{}{}/", self.settings.staging_prefix, load_id);
            Ok(Begun::Load(Box::new(RedshiftLoad {
                redshift: self,
                table,
                bucket,
                folder,
                wanted,
                started,
                deadline: request.deadline,
                pieces: None,
                staged: None,
            })))
        })
    }
}

/// Pieces queued between the parsing thread and the uploader: with the one being filled and the one being
/// uploaded, at most three pieces ([`staging::CHUNK`] each) are in memory.
const PIECES_QUEUED: usize = 1;

/// One object's Redshift load: its rows are compressed into parts while the object is parsed, and the parts
/// stream to S3 meanwhile ([`Load::receive`]); the commit runs the load transaction on them. The staged objects
/// are removed when the load ends, committed or abandoned.
struct RedshiftLoad<'a> {
    redshift: &'a mut Redshift,
    table: &'static Table,
    bucket: String,
    /// The parts' S3 folder, `<prefix><load_id>/`.
    folder: String,
    wanted: usize,
    started: SystemTime,
    deadline: Option<std::time::Instant>,
    /// The pieces the sink hands out, until [`Load::receive`] takes them.
    pieces: Option<mpsc::Receiver<Piece>>,
    /// What [`Load::receive`] staged (`None` inside: the object had no rows).
    staged: Option<Option<StagedLoad>>,
}

impl Load for RedshiftLoad<'_> {
    fn sink(&mut self, progress: ReadProgress) -> Result<Box<dyn RowSink>, WarehouseError> {
        let (tx, rx) = mpsc::channel(PIECES_QUEUED);
        self.pieces = Some(rx);
        let plan = PartPlan::new(self.wanted, progress.size, progress.read);
        let parts = PartStream::new(
            plan,
            self.redshift.settings.part_compression,
            Box::new(move |piece| tx.blocking_send(piece).is_ok()),
        );
        Ok(Box::new(PartSink {
            parts: Some(parts),
            last_key: None,
            scratch: Vec::new(),
        }))
    }

    /// Upload the pieces as they come; on any failure (or rows that end early) abort and remove what was staged.
    fn receive(&mut self) -> BoxFuture<'_, Result<(), WarehouseError>> {
        Box::pin(async move {
            let Some(mut pieces) = self.pieces.take() else {
                return Ok(());
            };
            let mut uploader = Uploader::new(
                self.redshift.s3.clone(),
                &self.bucket,
                &self.folder,
                self.redshift.settings.part_compression,
            );
            let failure = loop {
                let Some(piece) = pieces.recv().await else {
                    break "the rows ended before the last part was staged".to_string();
                };
                match uploader.take(piece).await {
                    Ok(Step::More) => {}
                    Ok(Step::Done(staged)) => {
                        if let Some(staged) = &staged {
                            tracing::debug!(bucket = %staged.bucket, folder = %self.folder,
                                parts = staged.keys.len() - 1, bytes = staged.bytes, "parts staged");
                        }
                        self.staged = Some(staged);
                        return Ok(());
                    }
                    Err(e) => break e,
                }
            };
            drop(pieces);
            uploader.abandon().await;
            Err(WarehouseError::Staging(failure))
        })
    }

    fn commit<'b>(
        mut self: Box<Self>,
        commit: Commit<'b>,
    ) -> BoxFuture<'b, Result<LoadOutcome, WarehouseError>>
    where
        Self: 'b,
    {
        Box::pin(async move {
            let Some(staged) = self.staged.take() else {
                return Err(WarehouseError::Staging(
                    "the staged parts were not finished".into(),
                ));
            };
            let request = LoadRequest {
                staged: staged.as_ref(),
                dedupe: commit.dedupe,
                dry_run: commit.dry_run,
                entry: commit.entry.clone(),
                started: self.started,
                before_commit: commit.before_commit,
                deadline: self.deadline,
            };
            let table = self.table;
            self.redshift.load(table, &request).await
        })
    }

    fn abandon<'b>(mut self: Box<Self>) -> BoxFuture<'b, ()>
    where
        Self: 'b,
    {
        Box::pin(async move {
            if let Some(Some(staged)) = self.staged.take() {
                staging::remove(&self.redshift.s3, &staged).await;
            }
        })
    }
}

/// The Redshift row sink: accepted rows as CSV into the compressed parts, noting whether keys stay strictly
/// increasing (then the merge needs no de-duplication).
struct PartSink {
    parts: Option<PartStream>,
    last_key: Option<KeyOrder>,
    /// Where rows written after the finish go (never: the pipeline writes none), instead of a panic.
    scratch: Vec<u8>,
}

impl PartSink {
    fn writer(&mut self) -> Result<&mut PartStream, SinkError> {
        self.parts
            .as_mut()
            .ok_or_else(|| SinkError::Io("the staged parts are already finished".into()))
    }
}

fn part_error(e: StreamError) -> SinkError {
    match e {
        StreamError::Closed => SinkError::Closed,
        StreamError::Io(e) => SinkError::Io(format!("cannot compress staged parts: {e}")),
    }
}

impl RowSink for PartSink {
    fn encoding(&self) -> RowEncoding {
        RowEncoding::Csv
    }

    /// Redshift counts orphans from the staged rows itself; the tally keeps the balance figure.
    fn tallies_keys(&self) -> bool {
        false
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        match self.parts.as_mut() {
            Some(p) => p.buffer(),
            None => &mut self.scratch,
        }
    }

    fn end_row(
        &mut self,
        _row_start: usize,
        key: KeyOrder,
        line: u64,
        stats: &mut TransformStats,
    ) -> Result<(), SinkError> {
        if self.last_key.is_some_and(|last| key <= last) {
            stats.keys_increasing = false;
        }
        self.last_key = Some(key);
        let writer = self.writer()?;
        end_csv_row(writer.buffer(), line);
        writer.end_row().map_err(part_error)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        match self.parts.take() {
            Some(parts) => parts.finish().map_err(part_error),
            None => Ok(()),
        }
    }
}

/// Rows affected by a statement without parameters (simple query protocol, as Redshift reports them).
async fn affected(tx: &Transaction<'_>, statement: &str) -> Result<u64, tokio_postgres::Error> {
    let messages = tx.simple_query(statement).await?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .sum())
}

/// The single number a `SELECT COUNT(*)` returns.
async fn count(tx: &Transaction<'_>, statement: &str) -> Result<u64, tokio_postgres::Error> {
    let row = tx.query_one(statement, &[]).await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_conflicts_and_broken_connections_are_retried() {
        assert_eq!(
            retry_for("40001", "could not serialize", None),
            Retry::Again
        );
        assert_eq!(retry_for("40P01", "deadlock detected", None), Retry::Again);
        assert_eq!(
            retry_for(
                "XX000",
                "1023",
                Some(
                    "Serializable isolation violation on table - 101, transactions forming the cycle are: 1, 2"
                )
            ),
            Retry::Again
        );
        assert_eq!(
            retry_for("XX000", "Serializable isolation violation on table", None),
            Retry::Again
        );
        assert_eq!(
            retry_for("08006", "connection failure", None),
            Retry::Reconnect
        );
        assert_eq!(
            retry_for("57P01", "terminating connection", None),
            Retry::Reconnect
        );
        assert_eq!(retry_for("42601", "syntax error", None), Retry::No);
        assert_eq!(
            retry_for("XX000", "Load into table 'healthetl_staging' failed", None),
            Retry::No
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_bounded_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay(2, 0.0), Duration::from_millis(1000));
        assert_eq!(p.delay(3, 0.0), Duration::from_millis(2000));
        assert_eq!(p.delay(10, 0.0), Duration::from_secs(8));
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(750));
    }
}
