//! What the command line does, as functions the binary calls: argument values in, printed summaries out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::pipeline::{LoadOptions, LoadReport, Status, load_object};
use crate::route::route;
use crate::schema::TableKind;
use crate::source::Object;
use crate::warehouse::Postgres;

/// A command-line failure that stops the command (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no database: set DATABASE_URL or pass --database-url")]
    NoDatabase,
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::postgres::WarehouseError),
    #[error(transparent)]
    Startup(#[from] crate::handler::StartupError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Worker(#[from] crate::worker::WorkerError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardError),
    #[error(transparent)]
    Filter(#[from] crate::dashboard::FilterError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Logs go to stderr: human-readable by default, JSON when `LOG_FORMAT=json`; level from `RUST_LOG` (default warn).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_target(false).init();
    }
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

async fn connect(url: Option<&str>) -> Result<Postgres, CliError> {
    let mut warehouse = Postgres::new(url.ok_or(CliError::NoDatabase)?)?;
    warehouse.init().await?;
    Ok(warehouse)
}

/// `healthetl init`.
pub async fn init(url: Option<&str>) -> Result<ExitCode, CliError> {
    connect(url).await?;
    println!(
        "warehouse ready: schemas health and etl, {} tables, ledger etl.load_log, {} reporting views",
        crate::schema::SCHEMA.all_tables().count(),
        crate::reporting::views().len()
    );
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
    match route(&path.to_string_lossy()).map(|t| t.kind) {
        Ok(TableKind::Dictionary) => 0,
        Ok(TableKind::Dimension) => 1,
        Ok(TableKind::Fact) => 2,
        Err(_) => 3,
    }
}

/// `healthetl load`: every object gets a report; exit 0 when all were loaded or skipped.
pub async fn load(
    url: Option<&str>,
    paths: &[PathBuf],
    options: &LoadOptions,
    json: bool,
    progress: bool,
) -> Result<ExitCode, CliError> {
    let files = expand_paths(paths)?;
    let mut warehouse = connect(url).await?;
    let mut reports = Vec::with_capacity(files.len());
    for file in &files {
        let object = match Object::local(file) {
            Ok(o) => o,
            Err(e) => {
                reports.push(unreadable(file, &e));
                continue;
            }
        };
        let bar = progress.then(|| progress_bar(file, object.size));
        let on_bytes = bar
            .clone()
            .map(|b| -> Box<dyn FnMut(u64) + Send> { Box::new(move |n| b.inc(n)) });
        let report = load_object(&mut warehouse, object, options, on_bytes).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        reports.push(report);
    }
    Ok(print_reports(&reports, json))
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
        "rows_rejected": reports.iter().map(|r| r.rows_rejected).sum::<u64>(),
    })
}

/// The human-readable summary: one line per object, then rejections and errors, then totals.
pub fn summary_text(reports: &[LoadReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:<20} {:<8} {:>10} {:>9} {:>6} {:>8}",
        "file", "table", "status", "loaded", "rejected", "dups", "ms"
    );
    for r in reports {
        let name = crate::pipeline::display_name(&r.source);
        let status = serde_json::to_value(r.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<34} {:<20} {:<8} {:>10} {:>9} {:>6} {:>8}",
            name,
            r.table.as_deref().unwrap_or("-"),
            status,
            r.rows_loaded,
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
        "{} objects: {} loaded, {} skipped, {} refused, {} failed; {} rows loaded, {} rejected",
        t["objects"],
        t["loaded"],
        t["skipped"],
        t["refused"],
        t["failed"],
        t["rows_loaded"],
        t["rows_rejected"]
    );
    out
}

/// The Lambda: build the handler once per cold start, then serve events until the runtime stops us.
pub async fn lambda() -> ExitCode {
    let handler = match crate::handler::Handler::from_env().await {
        Ok(h) => std::sync::Arc::new(h),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return ExitCode::FAILURE;
        }
    };
    let service = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let handler = handler.clone();
            async move {
                handler
                    .handle_event(&event.payload, &event.context.request_id)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    );
    match lambda_runtime::run(service).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// `healthetl worker`: the same handler as the Lambda, fed from an SQS queue.
pub async fn worker(
    url: Option<String>,
    options: &crate::worker::WorkerOptions,
    json: bool,
) -> Result<ExitCode, CliError> {
    let config = crate::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => url.clone().or_else(|| std::env::var(k).ok()),
        _ => std::env::var(k).ok().filter(|v| !v.is_empty()),
    })?;
    let handler = crate::handler::Handler::from_config(config)
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
    url: Option<&str>,
    bind: std::net::IpAddr,
    port: u16,
) -> Result<ExitCode, CliError> {
    let mut warehouse = Postgres::new(url.ok_or(CliError::NoDatabase)?)?;
    crate::dashboard::check(&mut warehouse).await?;
    let server =
        crate::dashboard::Server::start(warehouse, std::net::SocketAddr::new(bind, port)).await?;
    let addr = server.addr();
    let host = if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    println!("dashboard: http://{host}:{}/", addr.port());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    server.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// `healthetl report`: the dashboard for `filters` as one self-contained HTML file.
pub async fn report(
    url: Option<&str>,
    out: &Path,
    filters: &crate::dashboard::Filters,
) -> Result<ExitCode, CliError> {
    let mut warehouse = Postgres::new(url.ok_or(CliError::NoDatabase)?)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let html = crate::dashboard::report(
        &mut warehouse,
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
