//! What the command line does, as functions the binary calls: argument values in, printed summaries out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::pipeline::{LoadOptions, LoadReport, Reason, Status, load_routed, record_attempt};
use crate::route::Routed;
use crate::source::Object;
use crate::warehouse::{Connector, Loader};

/// A command-line failure that stops the command (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    /// The warehouse refused or failed (connecting, init, a query).
    Warehouse(#[from] crate::warehouse::WarehouseError),
    #[error(transparent)]
    /// The worker's handler could not start.
    Startup(#[from] crate::handler::StartupError),
    #[error(transparent)]
    /// A setting is missing or malformed.
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    /// The SQS worker stopped.
    Worker(#[from] crate::worker::WorkerError),
    #[error(transparent)]
    /// An upload failed.
    Ingest(#[from] crate::ingest::IngestError),
    #[error(transparent)]
    /// The dashboard could not start or answer.
    Dashboard(#[from] crate::dashboard::DashboardError),
    #[error(transparent)]
    /// A report filter is malformed.
    Filter(#[from] crate::dashboard::FilterError),
    #[error("{0}")]
    /// An operation refused or failed: listing the bucket, sending to the queue, downloading or preparing a
    /// rejects file.
    Operation(String),
    #[error("{path}: {source}")]
    /// A local file or directory could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// `healthetl man`: one man page for the command line and one per command (`healthetl-load.1`, …) in `out`.
pub fn man_pages(command: &clap::Command, out: &Path) -> Result<ExitCode, CliError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CliError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut pages = vec![("healthetl".to_string(), command.clone())];
    for sub in command.get_subcommands() {
        let name = format!("healthetl-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("healthetl {}", sub.get_name()));
        pages.push((name, page));
    }
    for (name, page) in &pages {
        let path = out.join(format!("{name}.1"));
        let mut roff = Vec::new();
        clap_mangen::Man::new(page.clone())
            .render(&mut roff)
            .map_err(io(&path))?;
        std::fs::write(&path, roff).map_err(io(&path))?;
    }
    println!("{} man pages written to {}", pages.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// `--bind`: an IP address, or `localhost` (the IPv4 loopback address).
pub fn parse_bind(s: &str) -> Result<std::net::IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    s.parse()
        .map_err(|_| format!("'{s}' is not an IP address (or localhost)"))
}

/// Parse a share between 0 and 1.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a share between 0 and 1 (e.g. 0.1 for 10%)"
        )),
    }
}

/// Which warehouse a command talks to: the command line's `--database-url` and `--dialect` over the environment
/// (`HEALTHETL_DATABASE_URL`, the `DB_*` variables, the `PG*` variables, then `DATABASE_URL`, and
/// `WAREHOUSE_DIALECT` — the same settings the Lambda reads), connected through one [`Connector`].
#[derive(Clone, Default)]
pub struct Target {
    /// Settings that win over the environment: the flags (`HEALTHETL_DATABASE_URL` from `--database-url`,
    /// `WAREHOUSE_DIALECT` from `--dialect`), or a test's.
    pub settings: Vec<(&'static str, String)>,
    /// How the warehouse is built (the real services, unless a test swaps Redshift's own statements).
    pub connector: Connector,
}

impl Target {
    /// The target of the command-line flags.
    pub fn from_flags(database_url: Option<String>, dialect: Option<String>) -> Target {
        let settings = [
            (crate::config::DATABASE_URL_SETTING, database_url),
            ("WAREHOUSE_DIALECT", dialect),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        Target {
            settings,
            connector: Connector::default(),
        }
    }

    /// The configuration: the settings, then the process environment.
    pub fn config(&self) -> Result<Config, CliError> {
        Ok(Config::from_lookup(|k| {
            match self.settings.iter().find(|(name, _)| *name == k) {
                Some((_, value)) => Some(value.clone()),
                None => std::env::var(k).ok().filter(|v| !v.is_empty()),
            }
        })?)
    }

    /// The configured warehouse, not yet connected.
    pub async fn warehouse(&self) -> Result<Box<dyn Loader>, CliError> {
        Ok(self.connector.connect(&self.config()?).await?)
    }

    /// The configured warehouse, brought to the declared schema.
    async fn ready(&self) -> Result<Box<dyn Loader>, CliError> {
        let mut warehouse = self.warehouse().await?;
        crate::handler::ensure_schema(warehouse.as_mut()).await?;
        Ok(warehouse)
    }
}

/// Print the load attempts `query` selects (a table, or JSON). Read-only: a warehouse at an older schema version
/// is not migrated; the command says to run `healthetl init`.
pub async fn history(
    target: &Target,
    query: &crate::history::HistoryQuery,
    json: bool,
) -> Result<ExitCode, CliError> {
    let mut warehouse = target.warehouse().await?;
    if !warehouse.is_current().await? {
        eprintln!(
            "healthetl: the warehouse is not at schema version {} (no attempts table yet): run `healthetl init`",
            crate::schema::SCHEMA_VERSION
        );
        return Ok(ExitCode::from(2));
    }
    let mut query = query.clone();
    query.object = query.object.map(|o| object_uri(&o));
    let client = warehouse.client().await?;
    let found = crate::history::history(client, &query).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).unwrap_or_default()
        );
    } else {
        print!("{}", crate::history::text(&found));
    }
    Ok(ExitCode::SUCCESS)
}

/// An object as the ledger names it: URIs as they are, a local path as the `file://` URI of its absolute path.
fn object_uri(object: &str) -> String {
    if object.contains("://") {
        return object.to_string();
    }
    match std::fs::canonicalize(object) {
        Ok(abs) => format!("file://{}", abs.to_string_lossy()),
        Err(_) => object.to_string(),
    }
}

/// `healthetl init`: create or migrate the schema and (re)create the reporting views, whatever the version.
pub async fn init(target: &Target) -> Result<ExitCode, CliError> {
    let mut warehouse = target.warehouse().await?;
    let migrated = warehouse.init(&crate::reporting::view_statements()).await?;
    let ledger = &crate::schema::SCHEMA.ledger;
    println!(
        "warehouse ready ({}): schemas {} and {}, {} tables, ledger {}.{}, {} reporting views in {}, schema version {}",
        warehouse.dialect(),
        crate::schema::data_schema(),
        crate::schema::etl_schema(),
        crate::schema::SCHEMA.all_tables().count(),
        ledger.schema,
        ledger.name,
        crate::reporting::views().len(),
        crate::schema::reporting_schema(),
        migrated.to_version
    );
    if !migrated.columns_added.is_empty() {
        println!("columns added: {}", migrated.columns_added.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Expand directories into their `.csv` / `.csv.gz` files; dimensions first, then the fact table, by name.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| CliError::Io {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_csv(p))
                .collect();
            found.sort_by_key(|p| (load_rank(p), p.clone()));
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn is_csv(path: &Path) -> bool {
    crate::route::is_csv_name(&path.to_string_lossy())
}

fn load_rank(path: &Path) -> u8 {
    crate::route::load_rank(&path.to_string_lossy())
}

/// `healthetl load`: every object gets a report; exit 0 when all were loaded or skipped.
pub async fn load(
    target: &Target,
    paths: &[PathBuf],
    options: &LoadOptions,
    json: bool,
    progress: bool,
) -> Result<ExitCode, CliError> {
    let reports = load_files(target, paths, options, progress).await?;
    Ok(print_reports(&reports, json))
}

/// Load files or directories, one report per file.
pub async fn load_files(
    target: &Target,
    paths: &[PathBuf],
    options: &LoadOptions,
    progress: bool,
) -> Result<Vec<LoadReport>, CliError> {
    let files = expand_paths(paths)?;
    let mut warehouse = target.ready().await?;
    let mut reports = Vec::with_capacity(files.len());
    for file in &files {
        let display = file.to_string_lossy();
        let routed = match Routed::of(&display) {
            Ok(r) => r,
            Err(e) => {
                let report = LoadReport::not_loaded(
                    &display,
                    Status::Refused,
                    Reason::Unrouted,
                    e.to_string(),
                );
                if !options.dry_run {
                    record_attempt(warehouse.as_mut(), &report, options.force).await;
                }
                reports.push(report);
                continue;
            }
        };
        let object = match Object::local(file) {
            Ok(o) => o,
            Err(e) => {
                let report = unreadable(file, &e);
                if !options.dry_run {
                    record_attempt(warehouse.as_mut(), &report, options.force).await;
                }
                reports.push(report);
                continue;
            }
        };
        let bar = progress.then(|| progress_bar(file, object.size));
        let on_bytes = bar
            .clone()
            .map(|b| -> Box<dyn FnMut(u64) + Send> { Box::new(move |n| b.inc(n)) });
        let report = load_routed(warehouse.as_mut(), routed, object, options, on_bytes, None).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if !options.dry_run {
            record_attempt(warehouse.as_mut(), &report, options.force).await;
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Print the reports (a summary table, or JSON) and choose the exit code: success when every object was loaded or
/// skipped.
fn print_reports(reports: &[LoadReport], json: bool) -> ExitCode {
    if json {
        let out = serde_json::json!({ "objects": reports, "totals": totals(reports) });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", summary_text(reports));
    }
    let ok = reports
        .iter()
        .all(|r| matches!(r.status, Status::Loaded | Status::Skipped));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn unreadable(file: &Path, e: &std::io::Error) -> LoadReport {
    LoadReport::failed(
        &file.to_string_lossy(),
        Reason::Read,
        format!(
            "{}: cannot read: {e}",
            crate::route::escape_text(&file.to_string_lossy())
        ),
    )
}

fn progress_bar(file: &Path, size: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::new(size.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}

/// Totals over a run's reports.
pub fn totals(reports: &[LoadReport]) -> serde_json::Value {
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    serde_json::json!({
        "objects": reports.len(),
        "loaded": count(Status::Loaded),
        "skipped": count(Status::Skipped),
        "refused": count(Status::Refused),
        "failed": count(Status::Failed),
        "rows_loaded": reports.iter().map(|r| r.rows_loaded).sum::<u64>(),
        "rows_unchanged": reports.iter().map(|r| r.rows_unchanged).sum::<u64>(),
        "rows_rejected": reports.iter().map(|r| r.rows_rejected).sum::<u64>(),
    })
}

/// The human-readable summary: one line per object, then rejections and errors, then totals.
pub fn summary_text(reports: &[LoadReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:<20} {:<8} {:>10} {:>10} {:>9} {:>6} {:>8}",
        "file", "table", "status", "loaded", "unchanged", "rejected", "dups", "ms"
    );
    for r in reports {
        let name = crate::pipeline::display_name(&r.source);
        let status = r.status.label();
        let _ = writeln!(
            out,
            "{:<34} {:<20} {:<8} {:>10} {:>10} {:>9} {:>6} {:>8}",
            name,
            r.table.as_deref().unwrap_or("-"),
            status,
            r.rows_loaded,
            r.rows_unchanged,
            r.rows_rejected,
            r.rows_duplicate,
            r.duration_ms
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    error: {}", crate::route::escape_text(e));
        }
        for reject in r.rejects.iter().take(5) {
            let _ = writeln!(out, "    rejected {}", reject.describe());
        }
        if let Some(f) = &r.rejects_file {
            let shown = crate::route::escape_text(&f.to_string_lossy());
            let _ = writeln!(out, "    rejected rows: {shown}");
        }
        if let Some(extra) = crate::transform::describe_extra_columns(&r.extra_columns) {
            let _ = writeln!(out, "    {extra}");
        }
        if let (Some(q), Some(table)) = (&r.quality, r.table.as_deref())
            && q.has_findings()
            && let Some(t) = crate::schema::SCHEMA.by_name(table)
        {
            let _ = writeln!(out, "    quality: {}", q.describe(t));
        }
    }
    let t = totals(reports);
    let _ = writeln!(
        out,
        "{} objects: {} loaded, {} skipped, {} refused, {} failed; {} rows loaded, {} unchanged, {} rejected",
        t["objects"],
        t["loaded"],
        t["skipped"],
        t["refused"],
        t["failed"],
        t["rows_loaded"],
        t["rows_unchanged"],
        t["rows_rejected"]
    );
    if reports.iter().any(|r| r.dry_run) {
        out.push_str("dry run: everything was rolled back; the figures are what a load would do\n");
    }
    out
}

/// `healthetl replay REJECTS`: load a corrected rejects file (local, or `s3://…/quarantine/….rejects.csv`) into
/// its table, linked in the ledger to the object its rows were rejected from (`--of`, or the attempt that wrote
/// the file). Exit codes as for `load`.
pub async fn replay(
    target: &Target,
    source: &str,
    of: Option<&str>,
    options: &LoadOptions,
    json: bool,
) -> Result<ExitCode, CliError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CliError::Io { path, source }
    };
    let mut warehouse = target.ready().await?;
    let work = options
        .rejects_dir
        .join(format!(".replay-{}", std::process::id()));
    let result = async {
        let (lookup, local) = if source.starts_with("s3://") {
            let (bucket, key) = crate::reconcile::parse_uri(source).map_err(CliError::Operation)?;
            let local = work.join("download.csv");
            std::fs::create_dir_all(&work).map_err(io(&work))?;
            download(&bucket, &key, &local).await?;
            (source.to_string(), local)
        } else {
            let abs = std::fs::canonicalize(source).map_err(io(Path::new(source)))?;
            (abs.to_string_lossy().into_owned(), abs)
        };
        let mut file = std::fs::File::open(&local).map_err(io(&local))?;
        let shown = crate::route::escape_text(source);
        let prepared = crate::replay::prepare(&mut file, &shown, &work.join("rows.csv"))
            .map_err(|e| CliError::Operation(e.to_string()))?;
        let original = match of {
            Some(o) => object_uri(o),
            None => crate::replay::original_of(warehouse.client().await?, &lookup)
                .await?
                .ok_or_else(|| {
                    CliError::Operation(
                        crate::replay::ReplayError::Unknown(crate::route::escape_text(source))
                            .to_string(),
                    )
                })?,
        };
        // Named as the object was, so that it routes (and shows) as the object did.
        let named = work.join("rows").join(crate::route::file_name(&original));
        std::fs::create_dir_all(work.join("rows")).map_err(io(&work))?;
        std::fs::rename(&prepared.path, &named).map_err(io(&named))?;
        let routed = Routed::of(&original).map_err(|e| CliError::Operation(e.to_string()))?;
        let mut object = Object::local(&named).map_err(io(&named))?;
        object.uri = if source.starts_with("s3://") {
            source.to_string()
        } else {
            format!("file://{lookup}")
        };
        let options = LoadOptions {
            replay_of: Some(original),
            ..options.clone()
        };
        let report = load_routed(warehouse.as_mut(), routed, object, &options, None, None).await;
        if !options.dry_run {
            record_attempt(warehouse.as_mut(), &report, options.force).await;
        }
        Ok::<_, CliError>(report)
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(print_reports(&[result?], json))
}

/// Stream `s3://bucket/key` into `path`.
async fn download(bucket: &str, key: &str, path: &Path) -> Result<(), CliError> {
    let s3 = crate::aws::s3_client().await;
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            CliError::Operation(format!(
                "s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
    let mut body = object.body.into_async_read();
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|source| CliError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    tokio::io::copy(&mut body, &mut file)
        .await
        .map_err(|source| CliError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// What `healthetl reconcile` does with the objects it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileAction {
    /// Only report them.
    Report,
    /// Load them here, through the Lambda's handler.
    Load,
    /// Send them to this queue as S3 notifications.
    Enqueue(String),
}

/// `healthetl reconcile s3://bucket/prefix`: compare the prefix with the warehouse and report (or load, or
/// enqueue) what was never loaded, loaded from an older version, or failed last. Exit 0 unless a load it ran was
/// refused or failed (1), or it could not run (2).
pub async fn reconcile(
    target: &Target,
    uri: &str,
    action: &ReconcileAction,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    let (bucket, prefix) = crate::reconcile::parse_uri(uri).map_err(CliError::Operation)?;
    let config = target.config()?;
    let mut warehouse = target.ready().await?;
    let sdk = crate::aws::sdk_config().await;
    let s3 = crate::aws::s3_client_from(&sdk);
    let found = crate::reconcile::find(
        &s3,
        warehouse.client().await?,
        &bucket,
        &prefix,
        &config.own_prefixes(),
    )
    .await
    .map_err(CliError::Operation)?;
    drop(warehouse);
    let wanted: Vec<&crate::reconcile::Found> = found.iter().filter(|f| f.state.wanted()).collect();
    let mut reports = Vec::new();
    let mut enqueued = 0;
    if !dry_run {
        match action {
            ReconcileAction::Report => {}
            ReconcileAction::Load => {
                let handler =
                    crate::handler::Handler::from_config_with(config, target.connector.clone())
                        .await?
                        .with_metrics(false);
                for f in &wanted {
                    let event = crate::reconcile::notification(&bucket, f);
                    let incoming = crate::event::parse_event(&event)
                        .map_err(|e| CliError::Operation(e.to_string()))?;
                    for outcome in handler.handle_incoming(&incoming, "reconcile").await {
                        reports.extend(outcome.reports);
                    }
                }
            }
            ReconcileAction::Enqueue(queue_url) => {
                let sqs = aws_sdk_sqs::Client::new(&sdk);
                enqueued = crate::reconcile::enqueue(&sqs, queue_url, &bucket, &wanted)
                    .await
                    .map_err(CliError::Operation)?;
            }
        }
    }
    let count = |state: crate::reconcile::State| found.iter().filter(|f| f.state == state).count();
    use crate::reconcile::State;
    if json {
        let out = serde_json::json!({
            "bucket": bucket,
            "prefix": prefix,
            "objects": found,
            "totals": {
                "objects": found.len(),
                "loaded": count(State::Loaded),
                "never_loaded": count(State::NeverLoaded),
                "older_version": count(State::OlderVersion),
                "failed_last": count(State::FailedLast),
                "refused_last": count(State::RefusedLast),
            },
            "dry_run": dry_run,
            "enqueued": enqueued,
            "loads": reports,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        let mut out = String::new();
        for f in found.iter().filter(|f| f.state != State::Loaded) {
            let _ = writeln!(
                out,
                "{:<14} {}{}",
                f.state.label(),
                crate::route::escape_text(&f.uri),
                f.last_attempt
                    .as_ref()
                    .map(|a| format!("  (last attempt: {a})"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "{} objects under s3://{bucket}/{prefix}: {} loaded, {} never loaded, {} from an older version, {} failed \
             last, {} refused last",
            found.len(),
            count(State::Loaded),
            count(State::NeverLoaded),
            count(State::OlderVersion),
            count(State::FailedLast),
            count(State::RefusedLast),
        );
        match (action, dry_run) {
            (ReconcileAction::Report, _) => {}
            (_, true) => {
                let _ = writeln!(out, "dry run: {} objects would be handed on", wanted.len());
            }
            (ReconcileAction::Enqueue(url), false) => {
                let _ = writeln!(out, "{enqueued} notifications sent to {url}");
            }
            (ReconcileAction::Load, false) => out.push_str(&summary_text(&reports)),
        }
        print!("{out}");
    }
    let ok = reports
        .iter()
        .all(|r| matches!(r.status, Status::Loaded | Status::Skipped));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `healthetl worker`: the same handler as the Lambda, fed from an SQS queue.
pub async fn worker(
    target: &Target,
    options: &crate::worker::WorkerOptions,
    json: bool,
) -> Result<ExitCode, CliError> {
    let config = target.config()?;
    let handler = crate::handler::Handler::from_config_with(config, target.connector.clone())
        .await?
        .with_metrics(false);
    let sdk = crate::aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let reports = crate::worker::run(&handler, &sqs, options).await?;
    Ok(print_reports(&reports, json))
}

/// `healthetl ingest`: upload a folder or a Kaggle dataset to the bucket.
pub async fn ingest(
    source: &str,
    kaggle_api: &str,
    options: &crate::ingest::IngestOptions,
) -> Result<ExitCode, CliError> {
    let source = crate::ingest::IngestSource::from_arg(source, kaggle_api)?;
    let s3 = crate::aws::s3_client().await;
    let summary = crate::ingest::ingest(&s3, source, options).await?;
    print!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// `healthetl dashboard`: serve the dashboard on `bind:port` (port 0 picks a free one) until stopped. The first line
/// printed is the dashboard's URL.
pub async fn dashboard(
    target: &Target,
    bind: std::net::IpAddr,
    port: u16,
    options: crate::dashboard::ServerOptions,
) -> Result<ExitCode, CliError> {
    let mut warehouse = target.warehouse().await?;
    crate::dashboard::check(warehouse.as_mut()).await?;
    drop(warehouse);
    let sessions_of = target.clone();
    let connect: crate::dashboard::Connect = std::sync::Arc::new(move || {
        let target = sessions_of.clone();
        Box::pin(async move {
            let config = target
                .config()
                .map_err(|e| crate::warehouse::WarehouseError::Config(e.to_string()))?;
            target.connector.connect(&config).await
        })
    });
    let server =
        crate::dashboard::Server::start(connect, std::net::SocketAddr::new(bind, port), options)
            .await?;
    let addr = server.addr();
    let host = if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let signals = crate::dashboard::server::Signals::install().map_err(|source| CliError::Io {
        path: "signal handlers".into(),
        source,
    })?;
    println!("dashboard: http://{host}:{}/", addr.port());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    server.serve_until(signals).await?;
    Ok(ExitCode::SUCCESS)
}

/// `healthetl report`: the dashboard for `filters` as one self-contained HTML file.
pub async fn report(
    target: &Target,
    out: &Path,
    filters: &crate::dashboard::Filters,
) -> Result<ExitCode, CliError> {
    let mut warehouse = target.warehouse().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let html = crate::dashboard::report(
        warehouse.as_mut(),
        filters,
        crate::dashboard::utc_timestamp(now),
    )
    .await?;
    std::fs::write(out, html).map_err(|source| CliError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    println!("report: {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `healthetl generate`.
pub fn generate(rows: u64, out: PathBuf, seed: u64, plain: bool) -> Result<ExitCode, CliError> {
    let options = crate::generate::GenerateOptions {
        fact_rows: rows,
        out_dir: out.clone(),
        seed,
        plain,
    };
    let manifest = crate::generate::generate(&options).map_err(|source| CliError::Io {
        path: out.clone(),
        source,
    })?;
    for (table, t) in &manifest.tables {
        println!(
            "{:<20} {:>10} rows  {}",
            table,
            t.rows,
            out.join(&t.file).display()
        );
    }
    println!("manifest: {}", out.join("manifest.json").display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_takes_addresses_and_localhost() {
        assert_eq!(parse_bind("localhost").unwrap().to_string(), "127.0.0.1");
        assert_eq!(parse_bind("LocalHost").unwrap().to_string(), "127.0.0.1");
        assert_eq!(parse_bind("::1").unwrap().to_string(), "::1");
        assert!(parse_bind("example.com").is_err());
    }

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("10").is_err());
        assert!(parse_ratio("-0.1").is_err());
        assert!(parse_ratio("x").is_err());
    }

    #[test]
    fn directories_load_dimensions_before_the_fact_table() {
        let dir = std::env::temp_dir().join(format!("healthetl-expand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "FactTable.csv",
            "dimPayer.csv",
            "dimDate.csv.gz",
            "manifest.json",
            "zzz.csv",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let names: Vec<String> = expand_paths(std::slice::from_ref(&dir))
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["dimDate.csv.gz", "dimPayer.csv", "FactTable.csv", "zzz.csv"]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
