//! The `healthetl` command line: create the warehouse, load files or directories, generate sample data.

use std::process::ExitCode;

#[cfg(feature = "cli")]
use clap::{FromArgMatches, Parser, Subcommand};
#[cfg(feature = "cli")]
use healthetl::cli;
#[cfg(feature = "cli")]
use std::io::IsTerminal;
#[cfg(feature = "cli")]
use std::path::PathBuf;

/// Healthcare billing CSVs into a typed star schema (PostgreSQL locally, Redshift in production).
#[cfg(feature = "cli")]
#[derive(Parser)]
#[command(name = "healthetl", version, about, long_about = None)]
struct Args {
    /// More log output: -v info, -vv debug, -vvv trace (wins over RUST_LOG).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors in the log, and no progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log lines as text or one JSON object per line (else LOG_FORMAT; default text).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Exit codes, under every command's `--help` (and in the README).
#[cfg(feature = "cli")]
const EXIT_CODES: &str = "Exit codes:
  0  done: every object loaded or skipped, every check passed
  1  done, but an object (or a check, an upload) was refused or failed; the output says which and why
  2  could not run: a usage error, a missing or malformed setting, the warehouse or AWS unreachable

Settings, first found wins: the flags; HEALTHETL_DATABASE_URL or the Lambda's DB_* variables (with DB_SECRET_ARN or
REDSHIFT_AUTH); libpq's PG* variables; DATABASE_URL.";

/// The flags of the commands that connect to the warehouse.
#[cfg(feature = "cli")]
#[derive(clap::Args, Clone)]
struct ConnectFlags {
    /// Warehouse connection URL with libpq's sslmode/sslrootcert, e.g.
    /// postgres://postgres@127.0.0.1:5432/healthetl?sslmode=require (else HEALTHETL_DATABASE_URL, the DB_*, the
    /// PG* variables, DATABASE_URL)
    #[arg(long)]
    database_url: Option<String>,
    /// Warehouse dialect: postgres or redshift (else WAREHOUSE_DIALECT; default postgres). Redshift loads stage
    /// through S3 as the Lambda does (REDSHIFT_COPY_ROLE_ARN, STAGING_BUCKET).
    #[arg(long, value_parser = ["postgres", "redshift"])]
    dialect: Option<String>,
}

#[cfg(feature = "cli")]
impl ConnectFlags {
    fn target(self) -> cli::Target {
        cli::Target::from_flags(self.database_url, self.dialect)
    }
}

/// The command line's definition with the exit codes under every command's help: what parses the arguments and
/// what `completions` and `man` describe.
#[cfg(feature = "cli")]
fn command() -> clap::Command {
    use clap::CommandFactory;
    Args::command()
        .after_help(EXIT_CODES)
        .mut_subcommands(|sub| sub.after_help(EXIT_CODES))
}

/// The flags `load` and `replay` share.
#[cfg(feature = "cli")]
#[derive(clap::Args)]
struct LoadFlags {
    /// Load even if the ledger has the object (by identity or content).
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
    /// Do everything up to the commit (routing, header, casting, rejects files, what would be inserted, updated
    /// and unchanged, quality figures), then roll back. Exit codes as for a real load; nothing is recorded.
    #[arg(long)]
    dry_run: bool,
}

#[cfg(feature = "cli")]
impl LoadFlags {
    /// The load options these flags set; the rest as by default.
    fn options(&self) -> healthetl::pipeline::LoadOptions {
        healthetl::pipeline::LoadOptions {
            force: self.force,
            reject_threshold: self.reject_threshold,
            rejects_dir: self.rejects_dir.clone(),
            dry_run: self.dry_run,
            ..Default::default()
        }
    }
}

#[cfg(feature = "cli")]
#[derive(Subcommand)]
enum Command {
    /// Create the schemas, tables, load ledger and reporting views (idempotent).
    Init {
        #[command(flatten)]
        connect: ConnectFlags,
    },
    /// Check a real warehouse in a scratch namespace (HEALTHETL_SCHEMA_PREFIX, required): init twice, the sample
    /// loaded with each auth mode, table layout, text read back byte for byte, a duplicate delivery, concurrent
    /// loads, a reader during a load, a bad row. Prints a pass/fail table; exit 0 only when all pass. Run by
    /// scripts/redshift-acceptance.
    Acceptance {
        #[command(flatten)]
        connect: ConnectFlags,
        /// The folder of the sample files.
        #[arg(long, default_value = "data/sample")]
        sample: PathBuf,
        /// Fact rows generated for the load the reader runs against.
        #[arg(long, default_value_t = 200_000)]
        reader_rows: u64,
        /// Keep the scratch schemas afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Load CSV files (or directories of them: dimensions first, then the fact table).
    Load {
        #[command(flatten)]
        connect: ConnectFlags,
        /// Files (.csv, .csv.gz) or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        common: LoadFlags,
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
        /// Give up after this many seconds for the whole command: every statement runs under a statement timeout
        /// of the time left, and a file not yet started with under a second left fails (default: no limit).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Compare an S3 prefix with the warehouse: every object under it (paginated) against the ledger and the
    /// attempts, by identity. Reports what was never loaded, loaded only from an older version, or failed last;
    /// --load loads them (dimensions first) through the Lambda's handler, --enqueue sends them to a queue as S3
    /// notifications for the Lambda or the worker. Exit 0 unless a load it ran was refused or failed.
    Reconcile {
        #[command(flatten)]
        connect: ConnectFlags,
        /// s3://bucket/prefix (e.g. s3://landing/incoming/).
        uri: String,
        /// Load what was found here.
        #[arg(long, conflicts_with = "enqueue")]
        load: bool,
        /// Send what was found to this SQS queue as S3 notifications.
        #[arg(long, value_name = "QUEUE_URL")]
        enqueue: Option<String>,
        /// Say what --load or --enqueue would hand on; do nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a corrected rejects file into its table: the rejected_* columns are dropped, the rows load by the
    /// same rules (merged by key), and the ledger links the load to the object they were rejected from. The
    /// file is local or in S3 (s3://…/quarantine/<key>.rejects.csv). Rows still wrong are rejected again.
    Replay {
        #[command(flatten)]
        connect: ConnectFlags,
        /// The rejects file: a path or an s3:// URI.
        source: String,
        /// The object the rows came from (default: the recorded attempt that wrote this rejects file).
        #[arg(long, value_name = "URI")]
        of: Option<String>,
        #[command(flatten)]
        common: LoadFlags,
    },
    /// Show the recent load attempts (loaded, skipped, refused, failed), newest first, with counts and
    /// durations; or one object's whole story with --object.
    History {
        #[command(flatten)]
        connect: ConnectFlags,
        /// Only attempts at this table (its warehouse name, e.g. fact_table).
        #[arg(long)]
        table: Option<String>,
        /// Only attempts with this status.
        #[arg(long, value_parser = healthetl::history::STATUSES)]
        status: Option<String>,
        /// Only attempts since a date (2024-06-01), a UTC time (2024-06-01T12:00:00Z) or an age (90m, 36h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// One object's story (its URI or path as loaded): every attempt oldest first, where its rejected rows
        /// are, its committed loads and their quality figures.
        #[arg(long)]
        object: Option<String>,
        /// At most this many attempts.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `healthetl completions bash > /etc/bash_completion.d/healthetl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (healthetl.1 and one per command, healthetl-load.1, …) into a directory.
    Man {
        /// The directory (created if missing).
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
    /// Print the star schema as Markdown (the README's table reference).
    Schema {
        /// Print the reporting views' reference instead.
        #[arg(long)]
        views: bool,
    },
    /// Serve the analytics dashboard (KPIs, charts, filters; JSON at /api/summary) until SIGINT or SIGTERM.
    Dashboard {
        #[command(flatten)]
        connect: ConnectFlags,
        /// TCP port (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to listen on (an IP address, or localhost); keep the default to serve this machine only.
        #[arg(long, default_value = "127.0.0.1", value_parser = cli::parse_bind)]
        bind: std::net::IpAddr,
        /// Warehouse sessions (read-only) that requests share: how many pages are computed at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        sessions: u16,
        /// Pages (filter sets) kept between loads: a page is computed once per warehouse change; 0 computes every
        /// request.
        #[arg(long, default_value_t = 256)]
        cached_pages: usize,
    },
    /// Write the dashboard as one self-contained static HTML file.
    Report {
        #[command(flatten)]
        connect: ConnectFlags,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
        /// First day of the range, YYYY-MM-DD.
        #[arg(long)]
        from: Option<String>,
        /// Last day of the range, YYYY-MM-DD.
        #[arg(long)]
        to: Option<String>,
        /// Which date the range and the time axis use: post (default) or service.
        #[arg(long)]
        dates: Option<String>,
        /// Time axis by day, week or month (default).
        #[arg(long)]
        grain: Option<String>,
        /// Payer key (dim_payer_pk) or name.
        #[arg(long)]
        payer: Option<String>,
        /// Location key (dim_location_pk) or name.
        #[arg(long)]
        location: Option<String>,
        /// Provider specialty, as named in dim_physician.
        #[arg(long)]
        specialty: Option<String>,
        /// Physician key (dim_physician_pk) or name.
        #[arg(long)]
        physician: Option<String>,
        /// Another filter as NAME=VALUE (cpt_group, cpt, diagnosis_group, diagnosis, gender, age_band, state).
        #[arg(long = "filter", value_name = "NAME=VALUE")]
        filter: Vec<String>,
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
        #[command(flatten)]
        connect: ConnectFlags,
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

/// The Lambda build (no default features): serve events, nothing else.
#[cfg(not(feature = "cli"))]
fn main() -> ExitCode {
    if !healthetl::lambda::started_by_runtime() {
        eprintln!(
            "healthetl: this build only serves Lambda events (AWS_LAMBDA_RUNTIME_API unset); the command line is the \
             default build (cargo build --release)"
        );
        return ExitCode::from(2);
    }
    healthetl::lambda::init_tracing();
    match healthetl::lambda::runtime() {
        Ok(runtime) => runtime.block_on(healthetl::lambda::serve()),
        Err(e) => {
            eprintln!("healthetl: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "cli")]
fn main() -> ExitCode {
    // Started by the Lambda runtime (bootstrap, no arguments): serve events instead of parsing a command line.
    let lambda = healthetl::lambda::started_by_runtime();
    let args = if lambda {
        None
    } else {
        let matches = command().get_matches();
        Some(Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
    };
    let logging = args.as_ref().map_or_else(Default::default, |a| {
        healthetl::lambda::LogOverrides::from_flags(a.verbose, a.quiet, a.log_format.as_deref())
    });
    healthetl::lambda::init_tracing_with(&logging);
    let runtime = match healthetl::lambda::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("healthetl: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(args) = args else {
        return runtime.block_on(healthetl::lambda::serve());
    };
    let quiet = args.quiet;
    let result = runtime.block_on(async move {
        match args.command {
            Command::Init { connect } => cli::init(&connect.target()).await,
            Command::Acceptance {
                connect,
                sample,
                reader_rows,
                keep,
            } => {
                let options = healthetl::acceptance::Options {
                    sample,
                    reader_rows,
                    keep,
                };
                healthetl::acceptance::run(&connect.target(), &options).await
            }
            Command::Load {
                connect,
                paths,
                common,
                max_record_bytes,
                max_field_bytes,
                max_object_bytes,
                max_gzip_ratio,
                timeout,
            } => {
                let json = common.json;
                let options = healthetl::pipeline::LoadOptions {
                    limits: healthetl::source::Limits {
                        max_record_bytes,
                        max_field_bytes,
                    },
                    stream: healthetl::source::StreamLimits {
                        max_bytes: max_object_bytes,
                        max_gzip_ratio,
                    },
                    quality: std::env::var("HEALTHETL_QUALITY").map_or(true, |v| v != "off"),
                    deadline: timeout
                        .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s)),
                    ..common.options()
                };
                let progress = std::io::stderr().is_terminal() && !json && !quiet;
                cli::load(&connect.target(), &paths, &options, json, progress).await
            }
            Command::Replay {
                connect,
                source,
                of,
                common,
            } => {
                let options = common.options();
                cli::replay(
                    &connect.target(),
                    &source,
                    of.as_deref(),
                    &options,
                    common.json,
                )
                .await
            }
            Command::Reconcile {
                connect,
                uri,
                load,
                enqueue,
                dry_run,
                json,
            } => {
                let action = match (load, enqueue) {
                    (true, _) => cli::ReconcileAction::Load,
                    (false, Some(url)) => cli::ReconcileAction::Enqueue(url),
                    (false, None) => cli::ReconcileAction::Report,
                };
                cli::reconcile(&connect.target(), &uri, &action, dry_run, json).await
            }
            Command::History {
                connect,
                table,
                status,
                since,
                object,
                limit,
                json,
            } => {
                match since
                    .as_deref()
                    .map(|s| healthetl::history::parse_since(s, std::time::SystemTime::now()))
                    .transpose()
                {
                    Ok(since) => {
                        let query = healthetl::history::HistoryQuery {
                            table,
                            status,
                            since,
                            object,
                            limit,
                        };
                        cli::history(&connect.target(), &query, json).await
                    }
                    Err(e) => {
                        eprintln!("healthetl: --since: {e}");
                        Ok(ExitCode::from(2))
                    }
                }
            }
            Command::Generate {
                rows,
                out,
                seed,
                plain,
            } => cli::generate(rows, out, seed, plain),
            Command::Worker {
                connect,
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
                cli::worker(&connect.target(), &options, json).await
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
                    progress: std::io::stderr().is_terminal() && !quiet,
                };
                cli::ingest(&source, &kaggle_api, &options).await
            }
            Command::Dashboard {
                connect,
                port,
                bind,
                sessions,
                cached_pages,
            } => {
                let options = healthetl::dashboard::ServerOptions {
                    sessions: usize::from(sessions),
                    cached_summaries: cached_pages,
                };
                cli::dashboard(&connect.target(), bind, port, options).await
            }
            Command::Report {
                connect,
                out,
                from,
                to,
                dates,
                grain,
                payer,
                location,
                specialty,
                physician,
                filter,
            } => {
                let pairs = [
                    ("from", from),
                    ("to", to),
                    ("dates", dates),
                    ("grain", grain),
                    ("payer", payer),
                    ("location", location),
                    ("specialty", specialty),
                    ("physician", physician),
                ];
                match healthetl::dashboard::Filters::from_pairs(
                    pairs
                        .iter()
                        .filter_map(|(name, value)| Some((*name, value.as_deref()?)))
                        .chain(
                            filter
                                .iter()
                                .map(|f| f.split_once('=').unwrap_or((f.as_str(), ""))),
                        ),
                ) {
                    Ok(filters) => cli::report(&connect.target(), &out, &filters).await,
                    Err(e) => Err(e.into()),
                }
            }
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut command(), "healthetl", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
            Command::Man { out } => cli::man_pages(&command(), &out),
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
            eprintln!("healthetl: {}", healthetl::warehouse::with_causes(&e));
            ExitCode::from(2)
        }
    }
}
