//! The PostgreSQL loader: one connection (re-established when broken), one transaction per object —
//! lock, ledger check, staging table, COPY FROM STDIN, merge, ledger row, commit.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connection::Connection;
use super::{
    CopyChunk, LoadOutcome, LoadRows, copy_direct_sql, copy_sql, create_staging_sql,
    delete_replaced_sql, dense_dimension_keys_sql, init_statements, insert_staged_sql,
    ledger_insert_sql, ledger_lookup_sql, lock_sql, matched_sparse_rows_sql, max_key_sql,
    orphan_rows_of_load_sql, supports_direct_append,
};
use crate::config::{DatabaseUrl, SslMode};
use crate::schema::{SCHEMA, Table, TableKind};
use crate::transform::{Quality, Tally};

/// A warehouse failure. Messages carry the SQLSTATE and the server's message, except for data and integrity
/// errors, whose messages can quote row values (patient data): those carry the SQLSTATE only.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("invalid database URL: {0}")]
    Config(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database error while {context}: {detail}")]
    Db {
        context: &'static str,
        detail: String,
    },
    #[error("staging in S3 failed: {0}")]
    Staging(String),
    #[error("not committed: {0}")]
    BeforeCommit(String),
    #[error("gave up after {attempts} attempts; the last failed while {context}: {detail}")]
    GaveUp {
        attempts: u32,
        context: &'static str,
        detail: String,
    },
}

impl WarehouseError {
    fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> WarehouseError {
        move |e| WarehouseError::Db {
            context,
            detail: describe(&e),
        }
    }
}

/// Describe a driver error without row contents.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            if code.starts_with("22") || code.starts_with("23") {
                format!("SQLSTATE {code} (details withheld: they may contain row values)")
            } else {
                format!("{} (SQLSTATE {code})", db.message())
            }
        }
        None if e.is_closed() => "the connection was closed".to_string(),
        None => e.to_string(),
    }
}

/// The PostgreSQL warehouse: one connection (see [`Connection`]), one transaction per object.
pub struct Postgres {
    connection: Connection,
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

    /// A connection from driver settings, over TLS when a connector is given (see [`tls_connector`]).
    pub fn with_config(config: Config, tls: Option<MakeRustlsConnect>) -> Self {
        Postgres::with_connection(Connection::new(config, tls))
    }

    /// The warehouse over an existing connection (e.g. one with IAM credentials).
    pub fn with_connection(connection: Connection) -> Self {
        Postgres { connection }
    }

    /// The live client, connecting (again) if there is none or the last one broke.
    pub async fn client(&mut self) -> Result<&mut Client, WarehouseError> {
        self.connection.client().await
    }

    /// Create schemas, tables, the ledger and the reporting views. Idempotent, and safe to run concurrently.
    pub async fn init(&mut self) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(WarehouseError::db("starting init"))?;
        tx.execute("SELECT pg_advisory_xact_lock(7243911)", &[])
            .await
            .map_err(WarehouseError::db("waiting for other inits"))?;
        for stmt in init_statements() {
            tx.batch_execute(&stmt)
                .await
                .map_err(WarehouseError::db("creating the schema"))?;
        }
        for stmt in crate::reporting::view_statements() {
            tx.batch_execute(&stmt)
                .await
                .map_err(WarehouseError::db("creating the reporting views"))?;
        }
        tx.commit()
            .await
            .map_err(WarehouseError::db("committing init"))
    }

    /// Start loading one object into `table`: lock the table against other loads, then check the ledger for its
    /// quick identity and, when known before reading, its content. Returns `None` when the ledger has it and
    /// `force` is off (nothing was changed).
    pub async fn begin_load<'a>(
        &'a mut self,
        table: &'a Table,
        identity: &str,
        content_sha256: Option<&str>,
        force: bool,
    ) -> Result<Option<PgLoad<'a>>, WarehouseError> {
        let client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(WarehouseError::db("starting the load transaction"))?;
        tx.batch_execute(&lock_sql(table))
            .await
            .map_err(WarehouseError::db("locking the table"))?;
        if !force {
            let seen = tx
                .query_opt(
                    &ledger_lookup_sql(),
                    &[&identity, &table.name, &content_sha256],
                )
                .await
                .map_err(WarehouseError::db("reading the ledger"))?;
            if seen.is_some() {
                return Ok(None);
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
        Ok(Some(PgLoad {
            tx,
            table,
            append_above,
            appended: 0,
            staged: 0,
            staging: false,
        }))
    }
}

/// A connection over TLS as `mode` says (see [`tls_connector`]); with `prefer`, plain TCP when the server offers
/// no TLS, as libpq does.
pub fn tls_connection(
    config: Config,
    mode: &SslMode,
    ca_bundle: Option<&Path>,
) -> Result<Connection, WarehouseError> {
    let connection = Connection::new(config, tls_connector(mode, ca_bundle)?);
    Ok(if *mode == SslMode::Prefer {
        connection.tls_optional()
    } else {
        connection
    })
}

/// A rustls connector for an SSL mode: `None` for disable; `prefer` and `require` encrypt without verifying the
/// server; `verify-ca` checks the chain against the public roots plus an optional PEM bundle (the RDS/Redshift
/// CAs); `verify-full` checks the host name too.
pub fn tls_connector(
    mode: &SslMode,
    ca_bundle: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, WarehouseError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| WarehouseError::Config(format!("TLS: {e}")))?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(path) = ca_bundle {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
                    WarehouseError::Config(format!("CA bundle {}: {e}", path.display()))
                })? {
                    let cert = cert.map_err(|e| {
                        WarehouseError::Config(format!("CA bundle {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        WarehouseError::Config(format!("CA bundle {}: {e}", path.display()))
                    })?;
                }
            }
            if *mode == SslMode::VerifyCa {
                let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| WarehouseError::Config(format!("TLS: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
                    .with_no_client_auth()
            } else {
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// `sslmode=verify-ca`: the certificate must chain to a trusted CA; its host name is not compared (as libpq does).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `sslmode=require`: the channel is encrypted, the certificate is not checked (as libpq does).
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a committed load recorded.
#[derive(Debug, Clone)]
pub struct Committed {
    pub load_id: i64,
    /// Distinct keys of the object now in the table.
    pub rows_loaded: u64,
    /// Accepted rows replaced by a later row of the same object.
    pub rows_duplicate: u64,
    /// The load's data-quality figures (tables with dimension keys or a balance identity).
    pub quality: Option<Quality>,
}

/// The ledger facts of one load.
#[derive(Debug, Clone)]
pub struct LedgerEntry<'a> {
    pub source: &'a str,
    pub identity: &'a str,
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub forced: bool,
    pub encoding: &'a str,
    /// How the table was chosen: `name` or `header`.
    pub routed_by: &'a str,
    /// The SHA-256 (hex) of the decompressed bytes: the object's identity by content.
    pub content_sha256: Option<&'a str>,
    /// The quality figures counted while casting.
    pub tally: &'a Tally,
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

/// One object's open load transaction. Dropping it without [`PgLoad::commit`] rolls everything back.
pub struct PgLoad<'a> {
    tx: Transaction<'a>,
    table: &'a Table,
    /// Rows whose keys are above this (and strictly increasing) may be appended straight into the table.
    pub append_above: Option<i64>,
    appended: u64,
    staged: u64,
    staging: bool,
}

type Sink = std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>;

impl PgLoad<'_> {
    /// Stream COPY chunks until the sender closes: appended chunks straight into the table, staged chunks into the
    /// staging table (created at the first one; appending never resumes after it).
    pub async fn copy(
        &mut self,
        mut chunks: mpsc::Receiver<CopyChunk>,
    ) -> Result<(), WarehouseError> {
        let mut append: Option<Sink> = None;
        let mut stage: Option<Sink> = None;
        while let Some(chunk) = chunks.recv().await {
            match chunk {
                CopyChunk::Append(bytes) => {
                    if append.is_none() {
                        let sink = self
                            .tx
                            .copy_in(&copy_direct_sql(self.table))
                            .await
                            .map_err(WarehouseError::db("starting COPY"))?;
                        append = Some(Box::pin(sink));
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
                            self.appended += finish(sink).await?;
                        }
                        self.tx
                            .batch_execute(&create_staging_sql(self.table))
                            .await
                            .map_err(WarehouseError::db("creating the staging table"))?;
                        self.staging = true;
                        let sink = self
                            .tx
                            .copy_in(&copy_sql(self.table))
                            .await
                            .map_err(WarehouseError::db("starting COPY"))?;
                        stage = Some(Box::pin(sink));
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
            self.appended += finish(sink).await?;
        }
        if let Some(sink) = stage {
            self.staged += finish(sink).await?;
        }
        Ok(())
    }

    /// Check the ledger for the object's content (unless forced), replace the rows the staged rows supersede,
    /// insert them, count the quality figures, write the ledger row and commit. When the ledger already has the
    /// content, everything is rolled back.
    pub async fn commit(
        self,
        dedupe: bool,
        entry: LedgerEntry<'_>,
        before_commit: &dyn super::BeforeCommit,
    ) -> Result<LoadOutcome, WarehouseError> {
        if !entry.forced
            && entry.content_sha256.is_some()
            && self
                .tx
                .query_opt(
                    &ledger_lookup_sql(),
                    &[&entry.identity, &self.table.name, &entry.content_sha256],
                )
                .await
                .map_err(WarehouseError::db("reading the ledger"))?
                .is_some()
        {
            return Ok(LoadOutcome::AlreadyLoaded);
        }
        let rows = LoadRows {
            appended: self.appended > 0,
            staged: self.staging,
        };
        let quality =
            quality_now(&self.tx, self.table, entry.tally, rows, self.append_above).await?;
        let mut rows_loaded = self.appended;
        if self.staging {
            let above = self.append_above.unwrap_or(i64::MAX);
            let delete = delete_replaced_sql(self.table);
            let deleted = if supports_direct_append(self.table) {
                self.tx.query_one(&delete, &[&above]).await
            } else {
                self.tx.query_one(&delete, &[]).await
            }
            .map_err(WarehouseError::db("replacing rows"))?;
            let replaced_appended: i64 = deleted.get(1);
            let inserted = self
                .tx
                .execute(&insert_staged_sql(self.table, dedupe), &[])
                .await
                .map_err(WarehouseError::db("inserting rows"))?;
            rows_loaded = rows_loaded + inserted - replaced_appended as u64;
        }
        let rows_duplicate = (self.appended + self.staged).saturating_sub(rows_loaded);
        if self.table.kind == TableKind::Dictionary {
            super::comment_columns_from_dictionary(&self.tx, true)
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
                    &(rows_loaded as i64),
                    &(entry.rows_rejected as i64),
                    &(rows_duplicate as i64),
                    &entry.forced,
                    &entry.encoding,
                    &entry.routed_by,
                    &entry.content_sha256,
                    &quality_json,
                ],
            )
            .await
            .map_err(WarehouseError::db("writing the ledger"))?;
        let done = Committed {
            load_id: row.get(0),
            rows_loaded,
            rows_duplicate,
            quality,
        };
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

async fn finish(mut sink: Sink) -> Result<u64, WarehouseError> {
    sink.as_mut()
        .finish()
        .await
        .map_err(WarehouseError::db("finishing COPY"))
}
