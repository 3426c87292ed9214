//! The `healthetl` command line: create the warehouse, load files or directories, generate sample data.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use healthetl::cli;

/// Healthcare billing CSVs into a typed star schema (PostgreSQL locally, Redshift in production).
#[derive(Parser)]
#[command(name = "healthetl", version, about, long_about = None)]
struct Args {
    /// PostgreSQL connection URL, e.g. postgres://postgres@127.0.0.1:5432/healthetl
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the schemas, tables, load ledger and reporting views (idempotent).
    Init,
    /// Load CSV files (or directories of them: dimensions first, then the fact table).
    Load {
        /// Files (.csv, .csv.gz) or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Reload objects the ledger already has.
        #[arg(long)]
        force: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Where rejected rows are written.
        #[arg(long, default_value = "rejects")]
        rejects_dir: PathBuf,
        /// Refuse a file when more than this share of its rows is rejected.
        #[arg(long, default_value_t = 0.10, value_parser = cli::parse_ratio)]
        reject_threshold: f64,
        /// A longer record (bytes of field data) is a rejected row (rule record_too_long).
        #[arg(long, env = "MAX_RECORD_BYTES", default_value_t = healthetl::source::records::DEFAULT_MAX_RECORD_BYTES)]
        max_record_bytes: usize,
        /// A longer field is a rejected row (rule field_too_long).
        #[arg(long, env = "MAX_FIELD_BYTES", default_value_t = healthetl::source::records::DEFAULT_MAX_FIELD_BYTES)]
        max_field_bytes: usize,
        /// A file larger than this after decompression is refused.
        #[arg(long, env = "MAX_OBJECT_BYTES", default_value_t = healthetl::source::DEFAULT_MAX_OBJECT_BYTES)]
        max_object_bytes: u64,
        /// A gzip file that expands more than this many times is refused (0: no limit).
        #[arg(long, env = "MAX_GZIP_RATIO", default_value_t = healthetl::source::DEFAULT_MAX_GZIP_RATIO)]
        max_gzip_ratio: u64,
    },
    /// Write a deterministic synthetic dataset shaped like the original nine files.
    Generate {
        /// Number of fact rows.
        #[arg(long, default_value_t = 1000)]
        rows: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Random seed: the same seed and rows give byte-identical files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Write the fact table without format noise (plain decimals, ISO dates), readable by psql \copy too.
        #[arg(long)]
        plain: bool,
    },
    /// Print the star schema as Markdown (the README's table reference).
    Schema {
        /// Print the reporting views' reference instead.
        #[arg(long)]
        views: bool,
    },
    /// Serve the analytics dashboard (KPIs, charts, filters; JSON at /api/summary) until stopped.
    Dashboard {
        /// TCP port (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to listen on; keep the default to serve this machine only.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
    },
    /// Write the dashboard as one self-contained static HTML file.
    Report {
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
        /// First post date, YYYY-MM-DD.
        #[arg(long)]
        from: Option<String>,
        /// Last post date, YYYY-MM-DD.
        #[arg(long)]
        to: Option<String>,
        /// Payer key (dim_payer_pk).
        #[arg(long)]
        payer: Option<String>,
        /// Location key (dim_location_pk).
        #[arg(long)]
        location: Option<String>,
        /// Provider specialty, as named in dim_physician.
        #[arg(long)]
        specialty: Option<String>,
    },
    /// Upload table files to S3, from a file or folder or a Kaggle dataset (multipart for large files).
    Ingest {
        /// A file or folder (searched recursively), or kaggle:owner/name (credentials from KAGGLE_USERNAME and
        /// KAGGLE_KEY, else kaggle.json).
        source: String,
        /// Destination bucket.
        #[arg(long)]
        bucket: String,
        /// Key prefix; the pipeline's S3 trigger listens on incoming/.
        #[arg(long, default_value = healthetl::ingest::DEFAULT_PREFIX)]
        prefix: String,
        /// Requests (whole files or parts) in flight at once.
        #[arg(long, default_value_t = healthetl::ingest::DEFAULT_CONCURRENCY)]
        concurrency: usize,
        /// Files of at least this many MiB go multipart, in parts of this size (S3's minimum is 5).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(5..))]
        part_size_mb: u64,
        /// Kaggle API root (a local fake in tests).
        #[arg(long, default_value = healthetl::ingest::DEFAULT_KAGGLE_API, hide = true)]
        kaggle_api: String,
    },
    /// Long-poll an SQS queue of S3 event notifications and load each object, exactly as the Lambda does.
    Worker {
        /// The queue's URL.
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        /// Long-poll wait per receive, in seconds (0-20).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(0..=20))]
        wait_seconds: i32,
        /// Exit after this many seconds without messages, printing the summary (default: run until stopped).
        #[arg(long)]
        exit_when_idle: Option<u64>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Started by the Lambda runtime (bootstrap, no arguments): serve events instead of parsing a command line.
    let lambda =
        std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() && std::env::args_os().len() == 1;
    let args = if lambda { None } else { Some(Args::parse()) };
    cli::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("healthetl: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(args) = args else {
        return runtime.block_on(cli::lambda());
    };
    let url = args.database_url;
    let result = runtime.block_on(async move {
        match args.command {
            Command::Init => cli::init(url.as_deref()).await,
            Command::Load {
                paths,
                force,
                json,
                rejects_dir,
                reject_threshold,
                max_record_bytes,
                max_field_bytes,
                max_object_bytes,
                max_gzip_ratio,
            } => {
                let options = healthetl::pipeline::LoadOptions {
                    force,
                    reject_threshold,
                    rejects_dir,
                    limits: healthetl::source::Limits {
                        max_record_bytes,
                        max_field_bytes,
                    },
                    stream: healthetl::source::StreamLimits {
                        max_bytes: max_object_bytes,
                        max_gzip_ratio,
                    },
                    quality: std::env::var("HEALTHETL_QUALITY").map_or(true, |v| v != "off"),
                };
                let progress = std::io::stderr().is_terminal() && !json;
                cli::load(url.as_deref(), &paths, &options, json, progress).await
            }
            Command::Generate {
                rows,
                out,
                seed,
                plain,
            } => cli::generate(rows, out, seed, plain),
            Command::Worker {
                queue_url,
                wait_seconds,
                exit_when_idle,
                json,
            } => {
                let options = healthetl::worker::WorkerOptions {
                    queue_url,
                    wait_seconds,
                    exit_when_idle: exit_when_idle.map(std::time::Duration::from_secs),
                };
                cli::worker(url, &options, json).await
            }
            Command::Ingest {
                source,
                bucket,
                prefix,
                concurrency,
                part_size_mb,
                kaggle_api,
            } => {
                let options = healthetl::ingest::IngestOptions {
                    bucket,
                    prefix,
                    concurrency,
                    part_size: part_size_mb.saturating_mul(healthetl::ingest::MIB),
                    progress: std::io::stderr().is_terminal(),
                };
                cli::ingest(&source, &kaggle_api, &options).await
            }
            Command::Dashboard { port, bind } => cli::dashboard(url.as_deref(), bind, port).await,
            Command::Report {
                out,
                from,
                to,
                payer,
                location,
                specialty,
            } => {
                let pairs = [
                    ("from", from),
                    ("to", to),
                    ("payer", payer),
                    ("location", location),
                    ("specialty", specialty),
                ];
                match healthetl::dashboard::Filters::from_pairs(
                    pairs
                        .iter()
                        .filter_map(|(name, value)| Some((*name, value.as_deref()?))),
                ) {
                    Ok(filters) => cli::report(url.as_deref(), &out, &filters).await,
                    Err(e) => Err(e.into()),
                }
            }
            Command::Schema { views } => {
                if views {
                    print!("{}", healthetl::reporting::markdown());
                } else {
                    print!("{}", healthetl::schema::SCHEMA.markdown());
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("healthetl: {e}");
            ExitCode::from(2)
        }
    }
}
