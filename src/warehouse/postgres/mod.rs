//! The PostgreSQL dialect: one connection (re-established when broken), one transaction per object — lock,
//! ledger check, COPY FROM STDIN while the object is parsed (appended straight into the table while keys rise
//! above its largest, into a staging table otherwise), merge, quality figures, ledger row, commit. Its SQL is in
//! [`sql`], its row sink is [`ChunkWriter`].

pub mod sql;

use std::str::FromStr;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connection::Connection;
use super::error::WarehouseError;
use super::load::{
    BeginLoad, Begun, Commit, Committed, Load, LoadOutcome, Loader, MergeTally, ReadProgress,
    RowEncoding, RowSink, SinkError,
};
use super::migrate::{self, Migrated};
use super::tls::tls_connection;
use super::{LedgerLimits, comment_columns_from_dictionary};
use crate::config::{DatabaseUrl, PgCopyFormat, PgFirstLoad, SslMode};
use crate::schema::{SCHEMA, Table, TableKind};
use crate::transform::{KeyOrder, Quality, Tally, TransformStats, binary, end_binary_row, end_row};
use sql::{
    LoadRows, copy_direct_sql, copy_sql, create_changed_sql, create_staging_sql,
    defer_primary_key_sql, delete_replaced_sql, delete_staged_duplicates_sql,
    dense_dimension_keys_sql, find_changed_sql, index_statements, init_statements,
    insert_staged_sql, ledger_insert_sql, ledger_lookup_sql, lock_sql, matched_sparse_rows_sql,
    max_key_sql, orphan_rows_of_load_sql, primary_key_name_sql, restore_primary_key_sql,
    supports_direct_append,
};

/// COPY data is sent in chunks of about this many bytes.
const CHUNK: usize = 256 * 1024;
/// Chunks buffered between the parsing thread and the database connection.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Serializes concurrent `init`s (a transaction-level advisory lock).
const INIT_LOCK: i64 = 7243911;

/// The PostgreSQL warehouse: one connection (see [`Connection`]), one transaction per object.
pub struct Postgres {
    connection: Connection,
    copy_format: PgCopyFormat,
    first_load: PgFirstLoad,
}

impl Postgres {
    /// Parse a `postgres://` URL or key=value string, with libpq's `sslmode` (disable — the default here —,
    /// prefer, require, verify-ca, verify-full) and `sslrootcert`; connects lazily.
    pub fn new(url: &str) -> Result<Self, WarehouseError> {
        let url = DatabaseUrl::parse(url).map_err(|e| WarehouseError::Config(e.to_string()))?;
        let config =
            Config::from_str(&url.rest).map_err(|e| WarehouseError::Config(e.to_string()))?;
        let mode = url.ssl_mode.unwrap_or(SslMode::Disable);
        Ok(Postgres::with_connection(tls_connection(
            config,
            &mode,
            url.root_cert.as_deref(),
        )?))
    }

    /// A connection from driver settings, over TLS when a connector is given (see
    /// [`super::tls::tls_connector`]).
    pub fn with_config(config: Config, tls: Option<MakeRustlsConnect>) -> Self {
        Postgres::with_connection(Connection::new(config, tls))
    }

    /// The warehouse over an existing connection (e.g. one with IAM credentials).
    pub fn with_connection(connection: Connection) -> Self {
        Postgres {
            connection,
            copy_format: PgCopyFormat::default(),
            first_load: PgFirstLoad::default(),
        }
    }

    /// Send rows in this COPY format (binary unless told otherwise).
    pub fn with_copy_format(mut self, format: PgCopyFormat) -> Self {
        self.copy_format = format;
        self
    }

    /// Load empty tables this way (see [`PgFirstLoad`]).
    pub fn with_first_load(mut self, first_load: PgFirstLoad) -> Self {
        self.first_load = first_load;
        self
    }

    /// Create or migrate the schema, then run the reporting statements, in one transaction.
    async fn init_with(&mut self, reporting: &[String]) -> Result<Migrated, WarehouseError> {
        let client = self.connection.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(WarehouseError::db("starting init"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK])
            .await
            .map_err(WarehouseError::db("waiting for other inits"))?;
        let from = migrate::current_version(&tx).await?;
        for stmt in init_statements() {
            tx.batch_execute(&stmt)
                .await
                .map_err(WarehouseError::db("creating the schema"))?;
        }
        let migrated = migrate::add_missing_columns(&tx, |ty| ty.sql(), from).await?;
        for stmt in index_statements().iter().chain(reporting) {
            tx.batch_execute(stmt)
                .await
                .map_err(WarehouseError::db("creating the reporting views"))?;
        }
        migrate::record_version(&tx, &migrated).await?;
        tx.commit()
            .await
            .map_err(WarehouseError::db("committing init"))?;
        Ok(migrated)
    }

    /// Lock the table against other loads, check the ledger, read the table's largest key.
    async fn begin_load<'a>(
        &'a mut self,
        request: BeginLoad<'_>,
    ) -> Result<Result<PgLoad<'a>, i64>, WarehouseError> {
        let table = request.table;
        let timeout = super::statement_timeout_sql(request.deadline)?;
        // The load's first statement on a connection kept from an earlier load: a server that ended the session
        // meanwhile (a restart, an idle timeout, an administrator) shows only now. Nothing of this load has run
        // yet, so connect again and go on.
        let first = self
            .connection
            .client()
            .await?
            .batch_execute(&timeout)
            .await;
        if let Err(e) = first {
            if !super::connection::is_connection_lost(&e) {
                return Err(WarehouseError::db("setting the statement timeout")(e));
            }
            tracing::warn!(error = %e, "the warehouse connection was lost; connecting again");
            self.connection.reset();
            self.connection
                .client()
                .await?
                .batch_execute(&timeout)
                .await
                .map_err(WarehouseError::db("setting the statement timeout"))?;
        }
        let client = self.connection.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(WarehouseError::db("starting the load transaction"))?;
        tx.batch_execute(&lock_sql(table))
            .await
            .map_err(WarehouseError::db("locking the table"))?;
        if !request.force {
            let seen = tx
                .query_opt(
                    &ledger_lookup_sql(),
                    &[&request.identity, &table.name, &request.content_sha256],
                )
                .await
                .map_err(WarehouseError::db("reading the ledger"))?;
            if let Some(row) = seen {
                return Ok(Err(row.get::<_, i64>(0)));
            }
        }
        let append_above = if supports_direct_append(table) {
            let row = tx
                .query_one(&max_key_sql(table), &[])
                .await
                .map_err(WarehouseError::db("reading the table's largest key"))?;
            Some(row.get::<_, Option<i64>>(0).unwrap_or(i64::MIN))
        } else {
            None
        };
        // An empty table (its largest key is none), when told to and allowed: build its primary key once, after
        // the rows are in.
        let deferred_key =
            if append_above == Some(i64::MIN) && self.first_load == PgFirstLoad::Exclusive {
                let name: Option<String> = tx
                    .query_opt(primary_key_name_sql(), &[&table.schema, &table.name])
                    .await
                    .map_err(WarehouseError::db("reading the table's primary key"))?
                    .map(|row| row.get(0));
                if let Some(name) = &name {
                    tx.batch_execute(&defer_primary_key_sql(table, name))
                        .await
                        .map_err(WarehouseError::db("deferring the primary key"))?;
                }
                name
            } else {
                None
            };
        Ok(Ok(PgLoad {
            tx,
            table,
            binary: self.copy_format == PgCopyFormat::Binary,
            deferred_key,
            append_above,
            chunks: None,
            appended: 0,
            staged: 0,
            staging: false,
        }))
    }
}

impl Loader for Postgres {
    fn dialect(&self) -> &'static str {
        "postgres"
    }

    fn ledger_limits(&self) -> LedgerLimits {
        // PostgreSQL's VARCHAR(n) counts characters: n bytes always fit; TEXT is unbounded.
        LedgerLimits::of_declared_ledger(|ty| match ty {
            crate::schema::ColumnType::Varchar(n) => Some(n as usize),
            _ => None,
        })
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

    fn begin<'a>(
        &'a mut self,
        request: BeginLoad<'a>,
    ) -> BoxFuture<'a, Result<Begun<'a>, WarehouseError>> {
        Box::pin(async move {
            Ok(match self.begin_load(request).await? {
                Ok(load) => Begun::Load(Box::new(load)),
                Err(load_id) => Begun::Skip { load_id },
            })
        })
    }
}

/// The quality figures of a load of `table` as the warehouse sees them now (called before the merge, inside the
/// load's transaction): for each dimension key column, the rows the tally counted minus those whose key the
/// dimension has (its keys in the dense range streamed from its key index, the few others matched in one query),
/// or, for a column the tally gave up on, a count over the load's own rows. Mismatches as counted. `None` for
/// tables without dimension keys or a balance identity.
async fn quality_now(
    tx: &Transaction<'_>,
    table: &Table,
    tally: &Tally,
    rows: LoadRows,
    append_above: Option<i64>,
) -> Result<Option<Quality>, WarehouseError> {
    if !tally.is_active() {
        return Ok(None);
    }
    let mut orphans = Vec::new();
    for (key, (_, column, dim)) in tally
        .key_tallies()
        .into_iter()
        .zip(SCHEMA.dimension_keys(table))
    {
        let n = match key.counts {
            Some(counts) => {
                let mut matched = 0u64;
                if counts.dense_len() > 0 {
                    let bound = counts.dense_len() as i64;
                    let stream = tx
                        .query_raw(
                            &dense_dimension_keys_sql(column, dim),
                            [&bound as &(dyn tokio_postgres::types::ToSql + Sync)],
                        )
                        .await
                        .map_err(WarehouseError::db("counting orphan keys"))?;
                    futures_util::pin_mut!(stream);
                    while let Some(row) = stream
                        .try_next()
                        .await
                        .map_err(WarehouseError::db("counting orphan keys"))?
                    {
                        matched += counts.dense_rows(row.get(0));
                    }
                }
                let (keys, rows_per_key) = counts.sparse();
                if !keys.is_empty() {
                    let row = tx
                        .query_one(
                            &matched_sparse_rows_sql(column, dim),
                            &[&keys, &rows_per_key],
                        )
                        .await
                        .map_err(WarehouseError::db("counting orphan keys"))?;
                    matched += u64::try_from(row.get::<_, i64>(0)).unwrap_or_default();
                }
                counts.rows().saturating_sub(matched)
            }
            None => {
                let sql = orphan_rows_of_load_sql(table, column, dim, rows);
                let above = append_above.unwrap_or(i64::MIN);
                let row = if rows.appended {
                    tx.query_one(&sql, &[&above]).await
                } else {
                    tx.query_one(&sql, &[]).await
                }
                .map_err(WarehouseError::db("counting orphan keys"))?;
                u64::try_from(row.get::<_, i64>(0)).unwrap_or_default()
            }
        };
        orphans.push((column, n));
    }
    Ok(Some(Quality::new(
        table,
        orphans,
        tally.balance_mismatches(),
    )))
}

/// One object's open load transaction. Dropping it without committing rolls everything back.
struct PgLoad<'a> {
    tx: Transaction<'a>,
    table: &'static Table,
    /// Binary COPY (else text).
    binary: bool,
    /// The primary key dropped for this load (into an empty table), rebuilt before the commit.
    deferred_key: Option<String>,
    /// Rows whose keys are above this (and strictly increasing) may be appended straight into the table.
    append_above: Option<i64>,
    /// The receiving end of the sink's chunks, until [`Load::receive`] takes it.
    chunks: Option<mpsc::Receiver<CopyChunk>>,
    appended: u64,
    staged: u64,
    staging: bool,
}

type Sink = std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>;

impl PgLoad<'_> {
    /// Stream COPY chunks until the sender closes: appended chunks straight into the table, staged chunks into the
    /// staging table (created at the first one; appending never resumes after it).
    async fn copy(&mut self, mut chunks: mpsc::Receiver<CopyChunk>) -> Result<(), WarehouseError> {
        let mut append: Option<Sink> = None;
        let mut stage: Option<Sink> = None;
        while let Some(chunk) = chunks.recv().await {
            match chunk {
                CopyChunk::Append(bytes) => {
                    if append.is_none() {
                        let freeze = self.deferred_key.is_some();
                        let sql = copy_direct_sql(self.table, self.binary, freeze);
                        append = Some(start_copy(&self.tx, &sql, self.binary).await?);
                    }
                    if let Some(sink) = append.as_mut() {
                        sink.feed(bytes)
                            .await
                            .map_err(WarehouseError::db("streaming COPY data"))?;
                    }
                }
                CopyChunk::Stage(bytes) => {
                    if stage.is_none() {
                        if let Some(sink) = append.take() {
                            self.appended += finish(sink, self.binary).await?;
                        }
                        self.tx
                            .batch_execute(&create_staging_sql(self.table))
                            .await
                            .map_err(WarehouseError::db("creating the staging table"))?;
                        self.staging = true;
                        let sql = copy_sql(self.table, self.binary);
                        stage = Some(start_copy(&self.tx, &sql, self.binary).await?);
                    }
                    if let Some(sink) = stage.as_mut() {
                        sink.feed(bytes)
                            .await
                            .map_err(WarehouseError::db("streaming COPY data"))?;
                    }
                }
            }
        }
        if let Some(sink) = append {
            self.appended += finish(sink, self.binary).await?;
        }
        if let Some(sink) = stage {
            self.staged += finish(sink, self.binary).await?;
        }
        Ok(())
    }

    /// Check the ledger for the object's content (unless forced), replace the rows the staged rows supersede,
    /// insert them, count the quality figures, write the ledger row and commit. When the ledger already has the
    /// content, everything is rolled back.
    async fn commit_load(self, commit: Commit<'_>) -> Result<LoadOutcome, WarehouseError> {
        let Commit {
            dry_run,
            dedupe,
            entry,
            before_commit,
        } = commit;
        if !entry.forced
            && entry.content_sha256.is_some()
            && let Some(row) = self
                .tx
                .query_opt(
                    &ledger_lookup_sql(),
                    &[&entry.identity, &self.table.name, &entry.content_sha256],
                )
                .await
                .map_err(WarehouseError::db("reading the ledger"))?
        {
            return Ok(LoadOutcome::AlreadyLoaded {
                load_id: row.get(0),
            });
        }
        let rows = LoadRows {
            appended: self.appended > 0,
            staged: self.staging,
        };
        let quality =
            quality_now(&self.tx, self.table, entry.tally, rows, self.append_above).await?;
        let mut tally = MergeTally {
            appended: self.appended,
            staged: self.staged,
            ..MergeTally::default()
        };
        if self.staging {
            if dedupe {
                tally.staged_duplicates = self
                    .tx
                    .execute(&delete_staged_duplicates_sql(self.table), &[])
                    .await
                    .map_err(WarehouseError::db("setting duplicate rows aside"))?;
            }
            self.tx
                .batch_execute(&create_changed_sql(self.table))
                .await
                .map_err(WarehouseError::db("comparing the staged rows"))?;
            let above = self.append_above.unwrap_or(i64::MAX);
            let find = find_changed_sql(self.table);
            tally.inserted = if supports_direct_append(self.table) {
                self.tx.execute(&find, &[&above]).await
            } else {
                self.tx.execute(&find, &[]).await
            }
            .map_err(WarehouseError::db("comparing the staged rows"))?;
            let deleted = self
                .tx
                .query_one(&delete_replaced_sql(self.table), &[])
                .await
                .map_err(WarehouseError::db("replacing rows"))?;
            tally.replaced = u64::try_from(deleted.get::<_, i64>(0)).unwrap_or_default();
            tally.replaced_appended = u64::try_from(deleted.get::<_, i64>(1)).unwrap_or_default();
            self.tx
                .execute(&insert_staged_sql(self.table), &[])
                .await
                .map_err(WarehouseError::db("inserting rows"))?;
        }
        if let Some(name) = &self.deferred_key {
            self.tx
                .batch_execute(&restore_primary_key_sql(self.table, name))
                .await
                .map_err(WarehouseError::db("building the primary key"))?;
        }
        let rows = tally.counts();
        if self.table.kind == TableKind::Dictionary {
            comment_columns_from_dictionary(&self.tx, true)
                .await
                .map_err(WarehouseError::db(
                    "commenting columns from the data dictionary",
                ))?;
        }
        let quality_json = quality.as_ref().map(Quality::to_json);
        let row = self
            .tx
            .query_one(
                &ledger_insert_sql(),
                &[
                    &entry.source,
                    &entry.identity,
                    &self.table.name,
                    &(entry.rows_read as i64),
                    &(rows.loaded() as i64),
                    &(entry.rows_rejected as i64),
                    &(rows.duplicate as i64),
                    &entry.forced,
                    &entry.encoding,
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
            .map_err(WarehouseError::db("writing the ledger"))?;
        let done = Committed {
            load_id: row.get(0),
            rows,
            quality,
        };
        if dry_run {
            self.tx
                .rollback()
                .await
                .map_err(WarehouseError::db("rolling the dry run back"))?;
            return Ok(LoadOutcome::Loaded(done));
        }
        before_commit
            .before_commit(&done)
            .await
            .map_err(WarehouseError::BeforeCommit)?;
        self.tx
            .commit()
            .await
            .map_err(WarehouseError::db("committing"))?;
        Ok(LoadOutcome::Loaded(done))
    }
}

/// Start a COPY: the statement, then (binary) the stream's header.
async fn start_copy(tx: &Transaction<'_>, sql: &str, binary: bool) -> Result<Sink, WarehouseError> {
    let mut sink: Sink = Box::pin(
        tx.copy_in(sql)
            .await
            .map_err(WarehouseError::db("starting COPY"))?,
    );
    if binary {
        sink.feed(Bytes::from_static(binary::HEADER))
            .await
            .map_err(WarehouseError::db("streaming COPY data"))?;
    }
    Ok(sink)
}

/// End a COPY: (binary) the trailer, then the rows' count.
async fn finish(mut sink: Sink, binary: bool) -> Result<u64, WarehouseError> {
    if binary {
        sink.feed(Bytes::from_static(binary::TRAILER))
            .await
            .map_err(WarehouseError::db("finishing COPY"))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(WarehouseError::db("finishing COPY"))
}

impl<'a> Load for PgLoad<'a> {
    fn sink(&mut self, _progress: ReadProgress) -> Result<Box<dyn RowSink>, WarehouseError> {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        self.chunks = Some(rx);
        let columns = self.binary.then_some(self.table.columns.len());
        Ok(Box::new(ChunkWriter::new(tx, self.append_above, columns)))
    }

    fn receive(&mut self) -> BoxFuture<'_, Result<(), WarehouseError>> {
        Box::pin(async move {
            match self.chunks.take() {
                Some(chunks) => self.copy(chunks).await,
                None => Ok(()),
            }
        })
    }

    fn commit<'b>(
        self: Box<Self>,
        commit: Commit<'b>,
    ) -> BoxFuture<'b, Result<LoadOutcome, WarehouseError>>
    where
        Self: 'b,
    {
        Box::pin((*self).commit_load(commit))
    }
}

/// A piece of binary COPY data for one load: rows appended straight into the table (no line column), or rows for the
/// staging table (with the line column). Once a load stages, it never appends again.
#[derive(Debug)]
enum CopyChunk {
    Append(Bytes),
    Stage(Bytes),
}

/// The PostgreSQL row sink: accumulates binary COPY rows and hands it to the load in chunks — appended rows while the
/// keys keep rising above the table's largest key, staged rows from the first key that does not.
pub struct ChunkWriter {
    buf: Vec<u8>,
    chunks: mpsc::Sender<CopyChunk>,
    appending: bool,
    /// Some row was appended (then a staged key may repeat an appended one).
    appended_any: bool,
    last_appended: i64,
    last_staged: Option<i64>,
    /// Binary COPY: the fields of a row without its line (`None`: COPY text).
    binary_columns: Option<usize>,
}

impl ChunkWriter {
    fn new(
        chunks: mpsc::Sender<CopyChunk>,
        append_above: Option<i64>,
        binary_columns: Option<usize>,
    ) -> Self {
        ChunkWriter {
            buf: Vec::with_capacity(CHUNK + 4096),
            chunks,
            appending: append_above.is_some(),
            appended_any: false,
            last_appended: append_above.unwrap_or(i64::MAX),
            last_staged: None,
            binary_columns,
        }
    }

    /// End the row that began at `row_start`, with its line (staged) or without (appended).
    fn end(&mut self, row_start: usize, line: Option<u64>) {
        match self.binary_columns {
            Some(columns) => end_binary_row(&mut self.buf, row_start, columns, line),
            None => end_row(&mut self.buf, line),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
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
            .map_err(|_| SinkError::Closed)
    }
}

impl RowSink for ChunkWriter {
    fn encoding(&self) -> RowEncoding {
        match self.binary_columns {
            Some(_) => RowEncoding::CopyBinary,
            None => RowEncoding::CopyText,
        }
    }

    fn tallies_keys(&self) -> bool {
        true
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn end_row(
        &mut self,
        mut row_start: usize,
        key: KeyOrder,
        line: u64,
        stats: &mut TransformStats,
    ) -> Result<(), SinkError> {
        let mut appended = false;
        if self.appending {
            if key > self.last_appended {
                self.last_appended = key;
                self.end(row_start, None);
                appended = true;
                self.appended_any = true;
            } else {
                // Keys stopped rising: what came before is appended, this row and the rest are staged and merged,
                // so a later duplicate still replaces an earlier row. Nothing appended yet (a re-send starts at or
                // below the table's largest key): the staged keys may still rise throughout, with no duplicates.
                let row = self.buf.split_off(row_start);
                self.flush()?;
                self.buf = row;
                row_start = 0;
                self.appending = false;
                if self.appended_any {
                    stats.keys_increasing = false;
                }
            }
        } else if self.last_staged.is_some_and(|last| key <= last) {
            stats.keys_increasing = false;
        }
        if !appended {
            self.last_staged = Some(key);
            self.end(row_start, Some(line));
        }
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}
