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
    /// Create the schemas, tables and load ledger (idempotent).
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
    Schema,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
            } => {
                let options = healthetl::pipeline::LoadOptions {
                    force,
                    reject_threshold,
                    rejects_dir,
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
            Command::Schema => {
                print!("{}", healthetl::schema::SCHEMA.markdown());
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
