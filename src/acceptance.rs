//! The acceptance kit (`scripts/redshift-acceptance`, `healthetl acceptance`): what only a real warehouse can
//! show, checked in a scratch namespace of it and printed as a pass/fail table. It runs the real binary for every
//! load, reads back through its own connection, and drops what it created. On a Redshift cluster or Serverless
//! workgroup it is the check of everything the local stand-in cannot vouch for; CI runs the same kit against the
//! local PostgreSQL (`--dialect postgres`) so that it cannot rot.
//!
//! The scratch namespace is the three schemas under `HEALTHETL_SCHEMA_PREFIX` (the script sets
//! `healthetl_acceptance_`): the kit refuses to run without a prefix, so it never touches the production schemas.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{CliError, Target};
use crate::config::Dialect;
use crate::schema::{
    ColumnType, Distribution, SCHEMA, SCHEMA_PREFIX_VAR, Table, TableKind, data_schema, etl_schema,
    quote_ident, reporting_schema,
};

/// What the kit is given besides the connection.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder of the nine sample files (`data/sample`).
    pub sample: PathBuf,
    /// Fact rows generated for the load a reader runs against.
    pub reader_rows: u64,
    /// Keep the scratch schemas afterwards (to look at them).
    pub keep: bool,
}

/// How a reader may wait for a load at most.
const READER_BUDGET: Duration = Duration::from_secs(1);

/// Keys of the kit's own rows: far above the sample's, so its files never replace sample rows.
const KIT_KEYS: i64 = 9_000_000_000;

/// One line of the table.
struct Outcome {
    step: String,
    passed: bool,
    seconds: f64,
    detail: String,
}

/// What a step found: its detail when it passed, the reason when it did not.
type StepResult = Result<String, String>;

/// Run the kit: every step, then the table; exit 0 only when every step passed.
pub async fn run(target: &Target, options: &Options) -> Result<ExitCode, CliError> {
    let prefix = std::env::var(SCHEMA_PREFIX_VAR).unwrap_or_default();
    if prefix.is_empty() {
        eprintln!(
            "healthetl acceptance: {SCHEMA_PREFIX_VAR} is not set: the kit works in a scratch namespace only \
             (scripts/redshift-acceptance sets healthetl_acceptance_)"
        );
        return Ok(ExitCode::from(2));
    }
    let config = target.config()?;
    let dialect = config.dialect;
    let work = std::env::temp_dir().join(format!("healthetl-acceptance-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|source| CliError::Io {
        path: work.clone(),
        source,
    })?;
    let kit = Kit {
        target: target.clone(),
        dialect,
        work,
        binary: std::env::current_exe().map_err(|source| CliError::Io {
            path: "current executable".into(),
            source,
        })?,
        options: options.clone(),
        started: {
            let (date, time) = crate::calendar::utc(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
            format!("{date} {time}")
        },
    };
    println!(
        "healthetl acceptance: {dialect:?} warehouse, scratch schemas {}, {}, {}",
        data_schema(),
        etl_schema(),
        reporting_schema()
    );
    if let Err(e) = kit.drop_scratch().await {
        eprintln!("healthetl acceptance: cannot clear the scratch schemas: {e}");
        return Ok(ExitCode::FAILURE);
    }

    let mut outcomes = Vec::new();
    let mut record = |step: &str, (seconds, result): (f64, StepResult)| {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        println!(
            "  {} {step}: {detail}",
            if passed { "pass" } else { "FAIL" }
        );
        outcomes.push(Outcome {
            step: step.to_string(),
            passed,
            seconds,
            detail,
        });
    };

    record("init twice (idempotent)", timed(kit.init_twice()).await);
    for (i, mode) in kit.auth_modes().iter().enumerate() {
        let step = format!("load the sample, auth {}", mode.name);
        if i == 0 {
            record(&step, timed(kit.load_sample(mode)).await);
        } else {
            record(&step, timed(kit.reload_with(mode)).await);
        }
    }
    record("table layout", timed(kit.layout()).await);
    record("text read back byte for byte", timed(kit.read_back()).await);
    record(
        "duplicate delivery skipped",
        timed(kit.duplicate_delivery()).await,
    );
    record(
        "two loads of one table at once",
        timed(kit.concurrent(false)).await,
    );
    record(
        "two loads of two tables at once",
        timed(kit.concurrent(true)).await,
    );
    record(
        "reader of kpi_summary during a load",
        timed(kit.reader_during_load()).await,
    );
    record(
        "one bad row rejected, the rest loaded",
        timed(kit.bad_row()).await,
    );
    if !options.keep {
        let dropped = async { kit.drop_scratch().await.map(|()| "dropped".to_string()) };
        record("drop the scratch schemas", timed(dropped).await);
    }
    let _ = std::fs::remove_dir_all(&kit.work);

    println!("\n{}", table(&outcomes));
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed == 0 {
        println!("all {} checks passed", outcomes.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {} checks failed", outcomes.len());
        Ok(ExitCode::FAILURE)
    }
}

/// A step's result and how long it took, in seconds.
async fn timed(step: impl std::future::Future<Output = StepResult>) -> (f64, StepResult) {
    let started = Instant::now();
    let result = step.await;
    (started.elapsed().as_secs_f64(), result)
}

fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.step.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!("{:<width$}  result  seconds  detail\n", "step");
    for o in outcomes {
        let _ = writeln!(
            out,
            "{:<width$}  {:<6}  {:>7.2}  {}",
            o.step,
            if o.passed { "pass" } else { "FAIL" },
            o.seconds,
            o.detail
        );
    }
    out
}

/// A way of authenticating the kit's loads try: the configured one, and on Redshift each mode whose settings are
/// present.
struct AuthMode {
    name: &'static str,
    /// Variables set for the child (and removed, when `None`).
    env: Vec<(&'static str, Option<String>)>,
}

/// The result of one child `healthetl load --json`.
struct LoadRun {
    objects: Vec<Value>,
    seconds: f64,
}

impl LoadRun {
    fn statuses(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| o["status"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    fn all(&self, status: &str) -> Result<(), String> {
        let statuses = self.statuses();
        if !statuses.is_empty() && statuses.iter().all(|s| s == status) {
            Ok(())
        } else {
            Err(format!(
                "expected every object {status}, got {}",
                self.describe()
            ))
        }
    }

    /// Each object's status and its error (errors name file, line and column, never row contents).
    fn describe(&self) -> String {
        self.objects
            .iter()
            .map(|o| {
                format!(
                    "{} {}{}",
                    o["source"].as_str().unwrap_or("?"),
                    o["status"].as_str().unwrap_or("?"),
                    o["error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn sum(&self, field: &str) -> u64 {
        self.objects.iter().filter_map(|o| o[field].as_u64()).sum()
    }

    /// rows read = loaded + unchanged + rejected + duplicate, and loaded = inserted + updated, per object.
    fn accounted(&self) -> Result<(), String> {
        for o in &self.objects {
            let n = |f: &str| o[f].as_u64().unwrap_or(0);
            let parts =
                n("rows_loaded") + n("rows_unchanged") + n("rows_rejected") + n("rows_duplicate");
            if n("rows_read") != parts || n("rows_loaded") != n("rows_inserted") + n("rows_updated")
            {
                return Err(format!(
                    "{}: rows read {} ≠ loaded {} (inserted {} + updated {}) + unchanged {} + rejected {} + \
                     duplicate {}",
                    o["source"].as_str().unwrap_or("?"),
                    n("rows_read"),
                    n("rows_loaded"),
                    n("rows_inserted"),
                    n("rows_updated"),
                    n("rows_unchanged"),
                    n("rows_rejected"),
                    n("rows_duplicate")
                ));
            }
        }
        Ok(())
    }
}

struct Kit {
    target: Target,
    dialect: Dialect,
    work: PathBuf,
    binary: PathBuf,
    options: Options,
    /// When the kit started (UTC, `YYYY-MM-DD HH:MM:SS`), for Redshift's load-error tables.
    started: String,
}

impl Kit {
    /// A connection of the kit's own.
    async fn client(&self) -> Result<Box<dyn crate::warehouse::Loader>, String> {
        self.target.warehouse().await.map_err(|e| e.to_string())
    }

    async fn query_i64(&self, sql: &str) -> Result<i64, String> {
        let mut w = self.client().await?;
        let client = w.client().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one(sql, &[])
            .await
            .map_err(|e| e.to_string())?;
        row.try_get::<_, Option<i64>>(0)
            .map(|v| v.unwrap_or(0))
            .map_err(|e| e.to_string())
    }

    async fn count(&self, table: &Table, filter: &str) -> Result<i64, String> {
        self.query_i64(&format!(
            "SELECT COUNT(*) FROM {} {filter}",
            table.qualified()
        ))
        .await
    }

    async fn drop_scratch(&self) -> Result<(), String> {
        let mut w = self.client().await?;
        let client = w.client().await.map_err(|e| e.to_string())?;
        for schema in [reporting_schema(), data_schema(), etl_schema()] {
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(schema)
                ))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The child's environment: the command line's settings (so `--database-url`/`--dialect` reach it), then
    /// `extra`.
    fn command(
        &self,
        args: &[&str],
        extra: &[(&'static str, Option<String>)],
    ) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.args(args);
        for (name, value) in &self.target.settings {
            cmd.env(name, value);
        }
        for (name, value) in extra {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        cmd.stdin(std::process::Stdio::null());
        cmd
    }

    async fn run_child(
        &self,
        args: Vec<String>,
        extra: Vec<(&'static str, Option<String>)>,
    ) -> Result<std::process::Output, String> {
        let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.command(&args_ref, &extra);
        tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot run the healthetl binary: {e}"))
    }

    /// `healthetl load --json <paths>`, rejects under the work folder.
    async fn load(
        &self,
        paths: &[&Path],
        extra: Vec<(&'static str, Option<String>)>,
        force: bool,
    ) -> Result<LoadRun, String> {
        let started = Instant::now();
        let mut args = vec![
            "load".to_string(),
            "--json".to_string(),
            "--rejects-dir".to_string(),
            self.work.join("rejects").display().to_string(),
        ];
        if force {
            args.push("--force".into());
        }
        args.extend(paths.iter().map(|p| p.display().to_string()));
        let out = self.run_child(args, extra).await?;
        let json: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
            format!(
                "healthetl load exited {} without a JSON report: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        Ok(LoadRun {
            objects: json["objects"].as_array().cloned().unwrap_or_default(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn auth_modes(&self) -> Vec<AuthMode> {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
        let url = self
            .target
            .settings
            .iter()
            .any(|(k, _)| *k == crate::config::DATABASE_URL_SETTING)
            || set(crate::config::DATABASE_URL_SETTING)
            || set("DATABASE_URL");
        let mut modes = vec![AuthMode {
            name: if url {
                "as configured (DATABASE_URL)"
            } else {
                "as configured"
            },
            env: vec![],
        }];
        if self.dialect == Dialect::Redshift {
            let without_url = |mode: &'static str| {
                vec![
                    ("DATABASE_URL", None),
                    (crate::config::DATABASE_URL_SETTING, None),
                    ("REDSHIFT_AUTH", Some(mode.to_string())),
                ]
            };
            for (mode, needs) in [
                ("secret", "DB_SECRET_ARN"),
                ("iam-cluster", "REDSHIFT_CLUSTER_ID"),
                ("iam-serverless", "REDSHIFT_WORKGROUP"),
            ] {
                if set(needs) && set("DB_HOST") {
                    modes.push(AuthMode {
                        name: mode,
                        env: without_url(mode),
                    });
                }
            }
        }
        modes
    }

    async fn init_twice(&self) -> StepResult {
        for round in 1..=2 {
            let out = self.run_child(vec!["init".into()], vec![]).await?;
            if !out.status.success() {
                return Err(format!(
                    "init #{round} exited {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let versions = self
            .query_i64(&format!(
                "SELECT COUNT(*) FROM {}.{} WHERE version = {}",
                quote_ident(etl_schema()),
                quote_ident("schema_version"),
                crate::schema::SCHEMA_VERSION
            ))
            .await?;
        if versions != 1 {
            return Err(format!(
                "schema version {} recorded {versions} times after two inits (want once)",
                crate::schema::SCHEMA_VERSION
            ));
        }
        let mut w = self.client().await?;
        let client = w.client().await.map_err(|e| e.to_string())?;
        let mut tables = 0;
        for t in SCHEMA
            .all_tables()
            .chain([&SCHEMA.ledger, &SCHEMA.attempts])
        {
            let rows = client
                .query(
                    "SELECT column_name::VARCHAR FROM information_schema.columns \
                     WHERE table_schema = $1::VARCHAR AND table_name = $2::VARCHAR ORDER BY ordinal_position",
                    &[&t.schema, &t.name],
                )
                .await
                .map_err(|e| e.to_string())?;
            let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let declared: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            if found != declared {
                return Err(format!(
                    "{}.{} has columns {found:?}, the declaration {declared:?}",
                    t.schema, t.name
                ));
            }
            tables += 1;
        }
        Ok(format!(
            "schema version {} recorded once; {tables} tables with the declared columns in order",
            crate::schema::SCHEMA_VERSION
        ))
    }

    async fn load_sample(&self, mode: &AuthMode) -> StepResult {
        let run = self
            .load(&[self.options.sample.as_path()], mode.env.clone(), false)
            .await?;
        run.all("loaded")?;
        run.accounted()?;
        let mut checked = 0;
        for o in &run.objects {
            let Some(table) = o["table"].as_str().and_then(|t| SCHEMA.by_name(t)) else {
                continue;
            };
            let loaded = run
                .objects
                .iter()
                .filter(|p| p["table"].as_str() == Some(&table.name))
                .filter_map(|p| p["rows_loaded"].as_u64())
                .sum::<u64>();
            let in_warehouse = self.count(table, "").await?;
            if u64::try_from(in_warehouse).ok() != Some(loaded) {
                return Err(format!(
                    "{}: {in_warehouse} rows in the warehouse, {loaded} reported loaded",
                    table.name
                ));
            }
            checked += 1;
        }
        Ok(format!(
            "{} files, {} rows loaded, {} rejected, each table's count as reported ({checked} checked), {:.2} s",
            run.objects.len(),
            run.sum("rows_loaded"),
            run.sum("rows_rejected"),
            run.seconds
        ))
    }

    /// A further authentication mode: a forced reload of the smallest sample file.
    async fn reload_with(&self, mode: &AuthMode) -> StepResult {
        let smallest = std::fs::read_dir(&self.options.sample)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.metadata().ok()?.len(), e.path())))
            .min()
            .map(|(_, p)| p)
            .ok_or("the sample folder is empty")?;
        let run = self
            .load(&[smallest.as_path()], mode.env.clone(), true)
            .await?;
        run.all("loaded")?;
        Ok(format!("forced reload of {} loaded", smallest.display()))
    }

    async fn layout(&self) -> StepResult {
        let mut w = self.client().await?;
        let client = w.client().await.map_err(|e| e.to_string())?;
        let mut checked = Vec::new();
        for t in SCHEMA.all_tables() {
            match self.dialect {
                Dialect::Postgres => {
                    let rows = client
                        .query(
                            "SELECT a.attname::VARCHAR FROM pg_index i \
                             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                             WHERE i.indrelid = ($1::VARCHAR || '.' || $2::VARCHAR)::regclass AND i.indisprimary \
                             ORDER BY array_position(i.indkey::int2[], a.attnum)",
                            &[&quote_ident(t.schema), &quote_ident(&t.name)],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                    let declared: Vec<String> =
                        t.key.iter().map(|&i| t.columns[i].name.clone()).collect();
                    if found != declared {
                        return Err(format!(
                            "{}: primary key {found:?}, declared {declared:?}",
                            t.name
                        ));
                    }
                    checked.push(t.name.clone());
                }
                Dialect::Redshift => {
                    let row = client
                        .query_opt(
                            "SELECT diststyle::VARCHAR, sortkey1::VARCHAR, encoded::VARCHAR FROM svv_table_info \
                             WHERE \"schema\" = $1::VARCHAR AND \"table\" = $2::VARCHAR",
                            &[&t.schema, &t.name],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    // svv_table_info lists only tables holding data.
                    let Some(row) = row else { continue };
                    let (dist, sort, encoded): (Option<String>, Option<String>, Option<String>) =
                        (row.get(0), row.get(1), row.get(2));
                    let want_dist = match t.distribution {
                        Distribution::All => "ALL".to_string(),
                        Distribution::Key(c) => format!("KEY({c})"),
                    };
                    let want_sort = t.sort_key.first().map(|&i| t.columns[i].name.clone());
                    let dist = dist.unwrap_or_default();
                    if !dist.eq_ignore_ascii_case(&want_dist) {
                        return Err(format!(
                            "{}: diststyle {dist}, declared {want_dist}",
                            t.name
                        ));
                    }
                    if sort.as_deref().map(str::trim) != want_sort.as_deref() {
                        return Err(format!(
                            "{}: sortkey1 {sort:?}, declared {want_sort:?}",
                            t.name
                        ));
                    }
                    if !encoded.as_deref().unwrap_or("").starts_with('Y') {
                        return Err(format!(
                            "{}: encoded {encoded:?}, want Y (ENCODE AUTO)",
                            t.name
                        ));
                    }
                    checked.push(t.name.clone());
                }
            }
        }
        if checked.is_empty() {
            return Err("no table to check (the sample did not load?)".into());
        }
        Ok(match self.dialect {
            Dialect::Postgres => format!("primary keys as declared on {} tables", checked.len()),
            Dialect::Redshift => format!(
                "dist style, sort key and encoding as declared on {} tables with data (svv_table_info)",
                checked.len()
            ),
        })
    }

    /// The dimension with the most text columns: where byte-exact text matters most.
    fn text_table() -> &'static Table {
        SCHEMA
            .tables
            .iter()
            .filter(|t| t.kind == TableKind::Dimension)
            .max_by_key(|t| {
                t.columns
                    .iter()
                    .filter(|c| matches!(c.ty, ColumnType::Varchar(_)))
                    .count()
            })
            .expect("the schema declares dimensions")
    }

    /// A file of `table` with keys `first..first + rows`, every value valid, text from `text(row, limit)`.
    fn write_file(
        &self,
        name: &str,
        table: &Table,
        first: i64,
        rows: usize,
        text: &dyn Fn(usize, u32) -> Option<String>,
    ) -> Result<PathBuf, String> {
        let mut csv = table
            .columns
            .iter()
            .map(|c| c.source)
            .collect::<Vec<_>>()
            .join(",");
        csv.push_str("\r\n");
        for row in 0..rows {
            let key = first + i64::try_from(row).unwrap_or(0);
            let fields: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| match c.ty {
                    ColumnType::Varchar(limit) if !table.is_key(i) => match text(row, limit) {
                        None => String::new(),
                        Some(v) => format!("\"{}\"", v.replace('"', "\"\"")),
                    },
                    ColumnType::Varchar(_) => format!("K{key}"),
                    ColumnType::BigInt | ColumnType::Integer if table.is_key(i) => key.to_string(),
                    ColumnType::SmallInt | ColumnType::Integer | ColumnType::BigInt => "42".into(),
                    ColumnType::Numeric { .. } => "1.00".into(),
                    ColumnType::Date => "2024-01-31".into(),
                    _ => String::new(),
                })
                .collect();
            csv.push_str(&fields.join(","));
            csv.push_str("\r\n");
        }
        let path = self.work.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, csv).map_err(|e| e.to_string())?;
        Ok(path)
    }

    async fn read_back(&self) -> StepResult {
        let table = Self::text_table();
        let path = self.write_file(
            &format!("tricky/{}.csv", table.source),
            table,
            KIT_KEYS,
            TRICKY.len() + 1,
            &tricky,
        )?;
        let run = self.load(&[path.as_path()], vec![], false).await?;
        run.all("loaded")?;
        let text: Vec<(usize, u32)> = table
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.ty {
                ColumnType::Varchar(n) if !table.is_key(i) => Some((i, n)),
                _ => None,
            })
            .collect();
        let columns: Vec<String> = text
            .iter()
            .map(|&(i, _)| quote_ident(&table.columns[i].name))
            .collect();
        let mut w = self.client().await?;
        let client = w.client().await.map_err(|e| e.to_string())?;
        let rows = client
            .query(
                &format!(
                    "SELECT {} FROM {} WHERE {} >= {KIT_KEYS} AND {} < {} ORDER BY {}",
                    columns.join(", "),
                    table.qualified(),
                    quote_ident(&table.primary_key().name),
                    quote_ident(&table.primary_key().name),
                    KIT_KEYS + 1000,
                    quote_ident(&table.primary_key().name),
                ),
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        if rows.len() != TRICKY.len() + 1 {
            return Err(format!(
                "{} rows read back, {} written",
                rows.len(),
                TRICKY.len() + 1
            ));
        }
        let mut compared = 0;
        for (r, row) in rows.iter().enumerate() {
            for (j, &(i, limit)) in text.iter().enumerate() {
                let got: Option<String> = row.get(j);
                let want = tricky(r, limit).filter(|v| !v.is_empty());
                if got != want {
                    // Names the case and the column, never the value (it could be anyone's data on a real cluster).
                    return Err(format!(
                        "row {} ({}), column {}: read back differs from what was written",
                        r + 1,
                        TRICKY.get(r).map_or("4-byte UTF-8 at the limit", |t| t.0),
                        table.columns[i].name
                    ));
                }
                compared += 1;
            }
        }
        Ok(format!(
            "{compared} values in {} equal byte for byte: {}, 4-byte UTF-8 at each VARCHAR limit",
            table.name,
            TRICKY.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
        ))
    }

    async fn duplicate_delivery(&self) -> StepResult {
        let table = Self::text_table();
        let path = self
            .work
            .join("tricky")
            .join(format!("{}.csv", table.source));
        let before = self.count(table, "").await?;
        let run = self.load(&[path.as_path()], vec![], false).await?;
        run.all("skipped")?;
        let after = self.count(table, "").await?;
        if before != after {
            return Err(format!("{before} rows before, {after} after"));
        }
        Ok(format!(
            "skipped by the ledger; {after} rows before and after"
        ))
    }

    /// Two loads at once: of one table (distinct keys) or of two tables. Both must load, all rows must be there.
    async fn concurrent(&self, two_tables: bool) -> StepResult {
        let first = Self::text_table();
        let second = if two_tables {
            SCHEMA
                .tables
                .iter()
                .find(|t| t.kind == TableKind::Dimension && t.name != first.name)
                .ok_or("only one dimension declared")?
        } else {
            first
        };
        let rows = 20_000;
        let folder = if two_tables {
            "two-tables"
        } else {
            "one-table"
        };
        let plain = |_: usize, _: u32| Some("concurrent".to_string());
        let base = KIT_KEYS + if two_tables { 200_000 } else { 100_000 };
        let a = self.write_file(
            &format!("{folder}/a/{}.csv", first.source),
            first,
            base,
            rows,
            &plain,
        )?;
        let b = self.write_file(
            &format!("{folder}/b/{}.csv", second.source),
            second,
            base + 50_000,
            rows,
            &plain,
        )?;
        let started = Instant::now();
        let (pa, pb) = ([a.as_path()], [b.as_path()]);
        let (ra, rb) = tokio::join!(self.load(&pa, vec![], false), self.load(&pb, vec![], false));
        let wall = started.elapsed().as_secs_f64();
        let (ra, rb) = (ra?, rb?);
        ra.all("loaded")?;
        rb.all("loaded")?;
        for (t, from) in [(first, base), (second, base + 50_000)] {
            let n = self
                .count(
                    t,
                    &format!(
                        "WHERE {k} >= {from} AND {k} < {}",
                        from + rows as i64,
                        k = quote_ident(&t.primary_key().name)
                    ),
                )
                .await?;
            if n != rows as i64 {
                return Err(format!("{}: {n} of {rows} rows present", t.name));
            }
        }
        Ok(format!(
            "{} and {}: both loaded, {rows} rows each present; {:.2} s and {:.2} s, {wall:.2} s together",
            first.name, second.name, ra.seconds, rb.seconds
        ))
    }

    async fn reader_during_load(&self) -> StepResult {
        let dir = self.work.join("generated");
        let manifest = crate::generate::generate(&crate::generate::GenerateOptions {
            fact_rows: self.options.reader_rows,
            out_dir: dir.clone(),
            seed: 7,
            plain: false,
        })
        .map_err(|e| format!("generating the fact file: {e}"))?;
        let fact = SCHEMA
            .tables
            .iter()
            .find(|t| t.kind == TableKind::Fact)
            .ok_or("no fact table declared")?;
        let file = manifest
            .tables
            .get(&fact.name)
            .map(|t| dir.join(&t.file))
            .ok_or("the generator wrote no fact file")?;
        let mut reader = self.client().await?;
        let client = reader.client().await.map_err(|e| e.to_string())?;
        let view = format!(
            "SELECT * FROM {}.{}",
            quote_ident(reporting_schema()),
            quote_ident("kpi_summary")
        );
        // Connect and read once before the load starts, so the reads below time only waiting.
        client.query(&view, &[]).await.map_err(|e| e.to_string())?;
        let paths = [file.as_path()];
        let load = self.load(&paths, vec![], true);
        tokio::pin!(load);
        let mut reads = 0u32;
        let mut slowest = Duration::ZERO;
        let run = loop {
            tokio::select! {
                run = &mut load => break run?,
                read = async {
                    let t = Instant::now();
                    let r = tokio::time::timeout(Duration::from_secs(60), client.query(&view, &[])).await;
                    let took = t.elapsed();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (took, r)
                } => {
                    let (took, r) = read;
                    match r {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(format!("reading kpi_summary: {e}")),
                        Err(_) => return Err("a read of kpi_summary waited 60 s".into()),
                    }
                    reads += 1;
                    slowest = slowest.max(took);
                }
            }
        };
        run.all("loaded")?;
        if reads == 0 {
            return Err(format!(
                "the load took {:.2} s, too short for a read during it: raise --reader-rows",
                run.seconds
            ));
        }
        let detail = format!(
            "{reads} reads during a {:.2} s load of {} fact rows, the slowest {} ms",
            run.seconds,
            run.sum("rows_loaded"),
            slowest.as_millis()
        );
        if slowest > READER_BUDGET {
            Err(format!(
                "{detail}: over the {} ms budget",
                READER_BUDGET.as_millis()
            ))
        } else {
            Ok(detail)
        }
    }

    async fn bad_row(&self) -> StepResult {
        let table = Self::text_table();
        let too_long = |row: usize, limit: u32| {
            Some(if row == 1 {
                "x".repeat(limit as usize + 1)
            } else {
                "fine".to_string()
            })
        };
        let path = self.write_file(
            &format!("bad/{}.csv", table.source),
            table,
            KIT_KEYS + 300_000,
            50,
            &too_long,
        )?;
        let run = self.load(&[path.as_path()], vec![], false).await?;
        run.all("loaded")?;
        run.accounted()?;
        let (loaded, rejected) = (run.sum("rows_loaded"), run.sum("rows_rejected"));
        if (loaded, rejected) != (49, 1) {
            return Err(format!(
                "{loaded} loaded and {rejected} rejected, want 49 and 1"
            ));
        }
        let first = &run.objects[0]["rejects"][0];
        let error = match (first["line"].as_u64(), first["rule"].as_str()) {
            (Some(line), Some(rule)) => format!(
                "line {line}, column {}: {rule}",
                first["column"].as_str().unwrap_or("?")
            ),
            _ => String::new(),
        };
        let rejects_file = run.objects[0]["rejects_file"]
            .as_str()
            .map(PathBuf::from)
            .ok_or("no rejects file reported")?;
        let kept = std::fs::read_to_string(&rejects_file)
            .map_err(|e| format!("{}: {e}", rejects_file.display()))?;
        if kept.lines().count() < 2 {
            return Err(format!("{} holds no rejected row", rejects_file.display()));
        }
        let mut detail = format!(
            "49 loaded, 1 rejected and kept in {}{}",
            rejects_file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            if error.is_empty() {
                String::new()
            } else {
                format!(" ({error})")
            }
        );
        if self.dialect == Dialect::Redshift {
            match self.redshift_load_errors().await {
                Ok(0) => detail.push_str("; no rows in Redshift's load-error tables"),
                Ok(n) => {
                    return Err(format!(
                        "{detail}; WARNING: {n} rows in stl_load_errors/sys_load_error_detail since {}: those \
                         tables keep raw input lines (PHI) for every user who can read them — COPY should never \
                         reject a row the loader cast",
                        self.started
                    ));
                }
                Err(e) => detail.push_str(&format!("; load-error tables not readable ({e})")),
            }
        }
        Ok(detail)
    }

    /// Rows Redshift's COPY rejected since the kit started: `stl_load_errors` on a cluster,
    /// `sys_load_error_detail` on Serverless (the count only: those rows hold raw input).
    async fn redshift_load_errors(&self) -> Result<i64, String> {
        let stl = format!(
            "SELECT COUNT(*)::BIGINT FROM stl_load_errors WHERE starttime >= '{}'",
            self.started
        );
        match self.query_i64(&stl).await {
            Ok(n) => Ok(n),
            Err(_) => {
                self.query_i64(&format!(
                    "SELECT COUNT(*)::BIGINT FROM sys_load_error_detail WHERE start_time >= '{}'",
                    self.started
                ))
                .await
            }
        }
    }
}

/// The text cases read back byte for byte (name, value); only the empty value must come back NULL (text is kept
/// byte-exact, spaces included).
const TRICKY: &[(&str, &str)] = &[
    ("quote and comma", "O\"Brien, Jr."),
    ("CRLF inside", "first\r\nsecond"),
    ("LF inside", "first\nsecond"),
    ("backslash N", "\\N"),
    ("the word NULL", "NULL"),
    ("spaces around", "  padded  "),
    ("accents and CJK", "é ñ ’ 中文 😀"),
    ("leading zeros", "007"),
    ("empty is NULL", ""),
    ("spaces only", "   "),
];

/// Row `row`'s text: the cases above, then one row of 4-byte characters exactly at each column's limit.
fn tricky(row: usize, limit: u32) -> Option<String> {
    match TRICKY.get(row) {
        Some((_, v)) => Some((*v).to_string()),
        None => Some("😀".repeat(limit as usize)),
    }
}
