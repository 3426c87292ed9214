//! Shared helpers for the integration tests: a fresh PostgreSQL database per test (dropped afterwards), a temporary
//! directory per test, one-value and all-rows queries, and running the `healthetl` binary against a test database.
//!
//! The tests never skip: when PostgreSQL cannot be reached they panic and say how to start it.

pub mod files;
pub mod moto;
use std::ffi::OsString;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Config, NoTls};

/// Where the admin connection goes unless `HEALTHETL_TEST_ADMIN_URL` says otherwise.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// How long any single step (a load, a run of the binary) may take before the test calls it hung.
pub const STEP_LIMIT: Duration = Duration::from_secs(60);
/// The `application_name` of the tests' own connections (the loader's is `healthetl`).
const TEST_APPLICATION: &str = "healthetl-tests";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The admin connection URL for creating and dropping test databases.
pub fn admin_url() -> String {
    std::env::var("HEALTHETL_TEST_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// Connect to `url` as the tests (not as the loader), panicking with directions when the server is unreachable.
pub async fn connect(url: &str) -> Client {
    let mut config = Config::from_str(url).unwrap_or_else(|e| panic!("bad database URL: {e}"));
    config
        .application_name(TEST_APPLICATION)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = match config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => panic!("{}", unreachable_message(&config, &e)),
    };
    tokio::spawn(async move {
        // The server ends the connections of a dropped test database; nothing to report then.
        let _ = connection.await;
    });
    client
}

fn unreachable_message(config: &Config, e: &tokio_postgres::Error) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let cause = std::error::Error::source(e).map_or_else(String::new, |c| format!(": {c}"));
    format!(
        "PostgreSQL is not reachable (host {hosts:?}, port {:?}, database {:?}): {e}{cause}.\n\
         These tests need a real server and never skip. Start the local one with\n    \
         scripts/ensure-postgres\nor\n    \
         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
         or set HEALTHETL_TEST_ADMIN_URL to a server where the user may CREATE DATABASE \
         (default {DEFAULT_ADMIN_URL}).",
        config.get_ports(),
        config.get_dbname().unwrap_or("")
    )
}

/// `url` with its database replaced by `db` (URL or key=value form).
fn url_for_database(url: &str, db: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return format!("{url} dbname={db}");
    };
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let base = match head[scheme_end..].find('/') {
        Some(slash) => &head[..scheme_end + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A lower-case identifier made of `[a-z0-9_]` from the process id, a counter and the test name, at most 63 bytes.
fn unique_name(prefix: &str, test: &str) -> String {
    let clean: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{prefix}_{}_{}_{clean}", std::process::id(), next_id());
    name.truncate(63);
    name
}

/// A fresh database for one test, dropped (its connections terminated first) when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Create an empty database named after the process, a counter and `test`.
    pub async fn new(test: &str) -> TestDb {
        let admin_url = admin_url();
        let name = unique_name("healthetl_test", test);
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        TestDb {
            url: url_for_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A fresh database with the star schema and ledger created by the library's `init`.
    pub async fn initialized(test: &str) -> TestDb {
        let db = TestDb::new(test).await;
        db.warehouse().await;
        db
    }

    /// A new loader connection to this database, initialized (idempotent).
    pub async fn warehouse(&self) -> healthetl::warehouse::Postgres {
        let mut pg = healthetl::warehouse::Postgres::new(&self.url).expect("test URL parses");
        within("init", init(&mut pg)).await.expect("init succeeds");
        pg
    }

    /// `count(*)` of a table.
    pub async fn count(&self, table: &str) -> i64 {
        scalar(&self.url, &format!("SELECT count(*) FROM {table}")).await
    }

    /// Rows of the ledger `etl.load_log`.
    pub async fn ledger_rows(&self) -> i64 {
        self.count("etl.load_log").await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(drop_database(&admin_url, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut config = Config::from_str(admin_url).map_err(|e| e.to_string())?;
    config
        .application_name(TEST_APPLICATION)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .map_err(|e| e.to_string())?;
    let forced = client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
    let result = match forced {
        Ok(()) => Ok(()),
        // Servers before 13 have no FORCE; the backends were terminated above.
        Err(_) => client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await
            .map_err(|e| e.to_string()),
    };
    drop(client);
    let _ = driver.await;
    result
}

/// The single value of a query returning one row and one column.
pub async fn scalar<T>(url: &str, sql: &str) -> T
where
    T: for<'a> FromSql<'a>,
{
    let client = connect(url).await;
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get(0)
}

/// Every row of a query whose columns are all text (cast them with `::text`), NULL as `None`.
pub async fn rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let client = connect(url).await;
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
        .collect()
}

/// Await `fut`, panicking if it takes longer than [`STEP_LIMIT`] (a hang is a failure, not a stuck test run).
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(STEP_LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {STEP_LIMIT:?}: it hangs"))
}

/// A directory of its own for one test under the system temp dir, removed (best effort) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("{}_{nanos}", unique_name("healthetl", test)));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `bytes` to `name` inside this directory (creating subdirectories) and return its path.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent directory");
        }
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Output {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout parsed as JSON (for `--json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Run `healthetl ARGS` in `cwd` with `DATABASE_URL` set to `database_url` (or unset), killing it after
/// [`STEP_LIMIT`].
pub async fn run_bin<I, S>(database_url: Option<&str>, cwd: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let env: Vec<(&str, &str)> = database_url
        .map(|u| ("DATABASE_URL", u))
        .into_iter()
        .collect();
    run_bin_with(&env, cwd, args).await
}

/// Run the binary with exactly these connection settings in its environment (no `DATABASE_URL`, `PG*`, `DB_*` or
/// `WAREHOUSE_DIALECT` of the machine running the tests).
pub async fn run_bin_with<I, S>(env: &[(&str, &str)], cwd: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_healthetl"));
    command
        .args(args.into_iter().map(Into::into))
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("LOG_FORMAT")
        .env_remove("WAREHOUSE_DIALECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Only what the test passes: no PG* or DB_* settings of the machine running the tests.
    for (name, _) in std::env::vars() {
        if name.starts_with("PG") || name.starts_with("DB_") {
            command.env_remove(name);
        }
    }
    command.env_remove("DATABASE_URL");
    command.env_remove("HEALTHETL_DATABASE_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    let shown = format!("{command:?}");
    tokio::task::spawn_blocking(move || run_with_limit(command, &shown))
        .await
        .expect("the binary's runner thread")
}

fn run_with_limit(mut command: Command, shown: &str) -> Output {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + STEP_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = Output {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if status.is_none() {
        panic!("{shown} did not finish within {STEP_LIMIT:?}: it hangs (killed)\n{output:#?}");
    }
    output
}

/// `init` with the reporting views, as the commands run it.
pub async fn init(
    warehouse: &mut dyn healthetl::warehouse::Loader,
) -> Result<healthetl::warehouse::migrate::Migrated, healthetl::warehouse::WarehouseError> {
    warehouse
        .init(&healthetl::reporting::view_statements())
        .await
}

/// Holds a load open just before its commit (in the publish step, which runs with the load's locks held) until
/// released, so a test can check what other loads and readers can do meanwhile. The load's object must have a
/// rejected row: only then is there something to publish.
#[derive(Default)]
pub struct CommitGate {
    /// Notified when the load reaches its commit.
    pub entered: tokio::sync::Notify,
    /// Notify to let it commit.
    pub release: tokio::sync::Notify,
}

impl healthetl::pipeline::Publish for CommitGate {
    fn publish<'a>(
        &'a self,
        _report: &'a healthetl::pipeline::LoadReport,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.entered.notify_one();
            self.release.notified().await;
            Ok(())
        })
    }
}

/// `query` answers within `limit` (it is not blocked by a lock): its single count.
pub async fn answers_within(url: &str, query: &str, limit: Duration) -> Result<i64, String> {
    let client = connect(url).await;
    match tokio::time::timeout(limit, client.query_one(query, &[])).await {
        Ok(Ok(row)) => Ok(row.get(0)),
        Ok(Err(e)) => Err(format!("{query}: {e}")),
        Err(_) => Err(format!("{query}: blocked for more than {limit:?}")),
    }
}

/// Each load publishing through it waits, inside its commit (holding its locks), until `loads` of them are inside
/// at once, then holds `hold` longer: loads that a lock serializes never meet, and their publish fails.
pub struct Rendezvous {
    barrier: tokio::sync::Barrier,
    hold: Duration,
}

impl Rendezvous {
    /// A rendezvous of `loads` loads, each holding its commit `hold` once all are in.
    pub fn new(loads: usize, hold: Duration) -> Rendezvous {
        Rendezvous {
            barrier: tokio::sync::Barrier::new(loads),
            hold,
        }
    }
}

impl healthetl::pipeline::Publish for Rendezvous {
    fn publish<'a>(
        &'a self,
        _report: &'a healthetl::pipeline::LoadReport,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            tokio::time::timeout(STEP_LIMIT / 3, self.barrier.wait())
                .await
                .map_err(|_| "the loads were never all inside their commits at once".to_string())?;
            tokio::time::sleep(self.hold).await;
            Ok(())
        })
    }
}

/// Four dimension files of four tables, each with one rejected row (so that its load publishes before committing).
pub fn four_tables(dir: &TempDir) -> Vec<PathBuf> {
    [
        ("dimPayer.csv", "dimPayerPK,PayerName"),
        ("dimLocation.csv", "dimLocationPK,LocationName"),
        (
            "dimTransaction.csv",
            "dimTransactionPK,TransactionType,Transaction,AdjustmentReason",
        ),
        ("dimCptCode.csv", "dimCPTCodePK,CptCode,CptDesc,CptGrouping"),
    ]
    .iter()
    .map(|(name, header)| {
        let fields = header.split(',').count();
        let mut text = format!("{header}\n");
        for i in 1..=2000 {
            let rest: Vec<String> = (1..fields).map(|f| format!("v{i}-{f}")).collect();
            text.push_str(&format!("{i},{}\n", rest.join(",")));
        }
        text.push_str(&format!("bad-key{}\n", ",x".repeat(fields - 1)));
        dir.write(name, text)
    })
    .collect()
}
