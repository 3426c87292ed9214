//! The event handler shared by the Lambda and the local SQS worker: every event shape becomes the same calls —
//! open the object from S3, run the pipeline, quarantine what was refused or rejected, log one JSON line and emit
//! metrics per object. Clients and the warehouse connection are created once and reused while warm.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};

use crate::config::{Config, ConfigError};
use crate::event::{EventError, Incoming, Item, ObjectRef, Shape, batch_response, parse_event};
use crate::pipeline::{
    LoadOptions, LoadReport, Publish, Reason, Status, load_routed, record_attempt_at,
};
use crate::route::{Routed, escape_text};
use crate::source::s3::{self, S3SourceError};
use crate::warehouse::{Connector, Loader, WarehouseError};

/// Of an invocation's time, what a started load leaves for itself after its statements' timeout: rolling back,
/// publishing a refusal to the quarantine, logging and answering the runtime.
pub const FINISH_RESERVE: Duration = Duration::from_secs(5);

/// Why the handler could not start (cold start).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The environment's configuration is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The warehouse could not be connected to.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

/// Why an invocation as a whole failed (the runtime retries or dead-letters it).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event as a whole could not be read (e.g. it is of no shape the handler knows).
    #[error(transparent)]
    Event(#[from] EventError),
    /// Some messages of a direct S3 or EventBridge invocation failed, so the whole invocation is retried.
    #[error("{failed} of {total} messages failed; see the log lines of this request")]
    Failed {
        /// Messages that failed.
        failed: usize,
        /// Messages in the event.
        total: usize,
    },
    /// CloudFormation's custom resource request could not be answered (it times out the request then).
    #[error("{0}")]
    CustomResource(String),
    /// A scheduled reconcile could not list, compare or send.
    #[error("reconcile: {0}")]
    Reconcile(String),
}

/// What happened to one message (one SQS message, one S3 record, one EventBridge event).
#[derive(Debug)]
pub struct MessageOutcome {
    /// The SQS message id; `None` for messages that have none (direct S3 records, EventBridge events).
    pub message_id: Option<String>,
    /// False when the message should be retried (unreadable, an object failed, or not started for lack of time).
    pub ok: bool,
    /// False when it was not started at all: too little time was left in the invocation.
    pub started: bool,
    /// One report per object the message named, in order.
    pub reports: Vec<LoadReport>,
}

struct WarehouseState {
    warehouse: Box<dyn Loader>,
    /// Whether the warehouse is known to be at the declared schema (checked, or migrated, once per cold start).
    ready: bool,
}

impl WarehouseState {
    /// Bring the warehouse to the declared schema, once per cold start.
    async fn ensure_ready(&mut self) -> Result<(), WarehouseError> {
        if !self.ready {
            ensure_schema(self.warehouse.as_mut()).await?;
            self.ready = true;
        }
        Ok(())
    }
}

/// The handler: configuration, S3 client and warehouse connection, shared across invocations.
pub struct Handler {
    s3: aws_sdk_s3::Client,
    warehouse: tokio::sync::Mutex<WarehouseState>,
    config: Config,
    work_dir: PathBuf,
    metrics: bool,
    /// For the scheduled reconcile's notifications; built from the environment when first needed if unset.
    sqs: Option<aws_sdk_sqs::Client>,
}

impl Handler {
    /// Read the configuration and build the clients (once per cold start).
    pub async fn from_env() -> Result<Handler, StartupError> {
        Handler::from_config(Config::from_env()?).await
    }

    /// Build the clients for a configuration.
    pub async fn from_config(config: Config) -> Result<Handler, StartupError> {
        Handler::from_config_with(config, Connector::default()).await
    }

    /// Build the clients for a configuration, the warehouse through `connector`.
    pub async fn from_config_with(
        config: Config,
        connector: Connector,
    ) -> Result<Handler, StartupError> {
        let sdk = crate::aws::sdk_config().await;
        let s3 = crate::aws::s3_client_from(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let warehouse = connector.with_aws(sdk, s3.clone()).connect(&config).await?;
        Ok(Handler::new(s3, warehouse, config).with_sqs(sqs))
    }

    /// A handler over a warehouse of any dialect (a [`crate::warehouse::Postgres`] or
    /// [`crate::warehouse::Redshift`] converts).
    pub fn new(
        s3: aws_sdk_s3::Client,
        warehouse: impl Into<Box<dyn Loader>>,
        config: Config,
    ) -> Handler {
        Handler {
            s3,
            warehouse: tokio::sync::Mutex::new(WarehouseState {
                warehouse: warehouse.into(),
                ready: false,
            }),
            config,
            work_dir: std::env::temp_dir().join("healthetl-rejects"),
            metrics: true,
            sqs: None,
        }
    }

    /// Send the scheduled reconcile's notifications through `sqs`.
    pub fn with_sqs(mut self, sqs: aws_sdk_sqs::Client) -> Handler {
        self.sqs = Some(sqs);
        self
    }

    /// Whether Embedded Metric Format records are written to stdout (on in Lambda; the worker turns it off so its
    /// summary stays readable).
    pub fn with_metrics(mut self, on: bool) -> Handler {
        self.metrics = on;
        self
    }

    /// One Lambda invocation: SQS batches answer with the failed message ids (partial batch response); direct S3
    /// and EventBridge invocations fail as a whole when any object failed, so the runtime retries them.
    pub async fn handle_event(
        &self,
        event: &Value,
        request_id: &str,
    ) -> Result<Value, HandlerError> {
        self.handle_event_until(event, request_id, None).await
    }

    /// [`Handler::handle_event`] for an invocation that must end by `deadline`: no object is started with less
    /// than the configured margin left (its message is reported failed, so it is delivered again), and a started
    /// load's statements run under a statement timeout that ends [`FINISH_RESERVE`] before the deadline.
    pub async fn handle_event_until(
        &self,
        event: &Value,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Value, HandlerError> {
        if let Some(request) = crate::custom_resource::Request::parse(event) {
            return self.answer_custom_resource(&request).await;
        }
        if let Some(request) = crate::reconcile::Scheduled::parse(event) {
            return self.reconcile(&request, request_id).await;
        }
        let incoming = parse_event(event)?;
        let outcomes = self
            .handle_incoming_until(&incoming, request_id, deadline)
            .await;
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.ok)
            .filter_map(|o| o.message_id.clone())
            .collect();
        if incoming.shape == Shape::Sqs {
            let response = batch_response(&incoming, &failed);
            return Ok(serde_json::to_value(response).unwrap_or_else(|_| json!({})));
        }
        let failures = outcomes.iter().filter(|o| !o.ok).count();
        if failures > 0 {
            return Err(HandlerError::Failed {
                failed: failures,
                total: outcomes.len(),
            });
        }
        Ok(json!({ "objects": outcomes.iter().map(|o| o.reports.len()).sum::<usize>() }))
    }

    /// The stack's `Custom::WarehouseSchema`: on create and update bring the warehouse to the declared schema and
    /// (re)create the views, whatever the recorded version (an update ships new views); on delete nothing. The
    /// answer goes to CloudFormation's response URL.
    pub async fn answer_custom_resource(
        &self,
        request: &crate::custom_resource::Request,
    ) -> Result<Value, HandlerError> {
        use crate::custom_resource::RequestType;
        let outcome = match request.request_type {
            RequestType::Delete => Ok(json!({})),
            RequestType::Create | RequestType::Update => {
                let mut state = self.warehouse.lock().await;
                let dialect = state.warehouse.dialect();
                match state
                    .warehouse
                    .init(&crate::reporting::view_statements())
                    .await
                {
                    Ok(migrated) => {
                        state.ready = true;
                        Ok(json!({ "Dialect": dialect, "SchemaVersion": migrated.to_version }))
                    }
                    Err(e) => Err(format!(
                        "bringing the warehouse to the declared schema: {e}"
                    )),
                }
            }
        };
        crate::custom_resource::answer(request, &outcome)
            .await
            .map_err(HandlerError::CustomResource)
    }

    /// Process every message of a parsed event, in order.
    pub async fn handle_incoming(
        &self,
        incoming: &Incoming,
        request_id: &str,
    ) -> Vec<MessageOutcome> {
        self.handle_incoming_until(incoming, request_id, None).await
    }

    /// [`Handler::handle_incoming`] for an invocation that must end by `deadline` (see
    /// [`Handler::handle_event_until`]).
    pub async fn handle_incoming_until(
        &self,
        incoming: &Incoming,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> Vec<MessageOutcome> {
        let mut outcomes = Vec::with_capacity(incoming.messages.len());
        for message in &incoming.messages {
            let mut outcome = MessageOutcome {
                message_id: message.message_id.clone(),
                ok: true,
                started: true,
                reports: Vec::new(),
            };
            if let Some(left) = self.too_little_time(deadline) {
                tracing::warn!(request_id, message_id = ?message.message_id, left_ms = left.as_millis() as u64,
                    margin_ms = self.config.deadline_margin.as_millis() as u64,
                    "not started: too little time left in this invocation; it will be delivered again");
                outcome.ok = false;
                outcome.started = false;
                outcomes.push(outcome);
                continue;
            }
            match &message.items {
                Err(e) => {
                    tracing::error!(request_id, message_id = ?message.message_id, error = %e, "unreadable message");
                    outcome.ok = false;
                }
                Ok(items) => {
                    for item in items {
                        match item {
                            Item::Ignored { reason } => {
                                tracing::info!(request_id, reason = %reason, "event ignored");
                            }
                            Item::Load(object) => {
                                if self.too_little_time(deadline).is_some() {
                                    // A later object of a message already begun: the message is retried (the
                                    // objects it did load are skipped by the ledger then).
                                    outcome.ok = false;
                                    break;
                                }
                                if let Some(report) =
                                    self.process(object, request_id, deadline).await
                                {
                                    outcome.ok &= report.status != Status::Failed;
                                    outcome.reports.push(report);
                                }
                            }
                        }
                    }
                }
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// The time left when it is less than the configured margin (then nothing new is started).
    fn too_little_time(&self, deadline: Option<Instant>) -> Option<Duration> {
        let left = deadline?.saturating_duration_since(Instant::now());
        (left < self.config.deadline_margin).then_some(left)
    }

    /// Load one object and deal with its outcome. `None` when the object is one of our own outputs.
    async fn process(
        &self,
        object: &ObjectRef,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> Option<LoadReport> {
        if self.is_own_output(&object.key) {
            tracing::info!(request_id, bucket = %object.bucket, key = %escape_text(&object.key), "own output ignored");
            return None;
        }
        let started = std::time::Instant::now();
        let uri = format!("s3://{}/{}", object.bucket, object.key);
        // An object whose name routes nowhere is refused before it is read, unless it is a CSV file: then its
        // header decides (in the pipeline).
        let mut report = match Routed::of(&object.key) {
            Err(e) => {
                LoadReport::not_loaded(&uri, Status::Refused, Reason::Unrouted, e.to_string())
            }
            Ok(routed) => match s3::open(&self.s3, object).await {
                Err(e @ S3SourceError::Gone { .. }) => {
                    LoadReport::not_loaded(&uri, Status::Refused, Reason::Gone, e.to_string())
                }
                Err(e) => LoadReport::failed(&uri, Reason::Read, e.to_string()),
                Ok(opened) => {
                    self.load(routed, opened, object, request_id, deadline)
                        .await
                }
            },
        };
        // A loaded object's rejected rows were published before its commit; a refused object's report goes now
        // (nothing was committed for it, and a failed upload makes the message retried).
        if report.status == Status::Refused
            && let Err(e) = self.quarantine(object, &report, request_id).await
        {
            report.status = Status::Failed;
            report.reason = Some(Reason::Quarantine);
            report.error = Some(format!("quarantine failed: {e}"));
        }
        // Where the rejected rows went: the quarantine, once published (a loaded object's before its commit).
        let rejects = (report.rejects_file.is_some()
            && matches!(report.status, Status::Loaded | Status::Refused))
        .then(|| self.rejects_uri(object));
        {
            let mut state = self.warehouse.lock().await;
            if state.ensure_ready().await.is_ok() {
                record_attempt_at(state.warehouse.as_mut(), &report, false, rejects.as_deref())
                    .await;
            }
        }
        if let Some(path) = report.rejects_file.take() {
            let _ = std::fs::remove_file(path);
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        log_and_measure(&report, object, request_id, self.metrics);
        Some(report)
    }

    async fn load(
        &self,
        routed: Routed,
        object: crate::source::Object,
        from: &ObjectRef,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> LoadReport {
        let options = LoadOptions {
            force: false,
            reject_threshold: self.config.reject_threshold,
            rejects_dir: self.work_dir.clone(),
            limits: self.config.read_limits,
            stream: self.config.stream_limits,
            quality: true,
            deadline: deadline.map(|d| d.checked_sub(FINISH_RESERVE).unwrap_or(d)),
            dry_run: false,
            replay_of: None,
        };
        let mut state = self.warehouse.lock().await;
        if let Err(e) = state.ensure_ready().await {
            return LoadReport::failed(&object.uri, e.reason(), e.to_string());
        }
        let publish = Quarantine {
            handler: self,
            object: from,
            request_id,
        };
        load_routed(
            state.warehouse.as_mut(),
            routed,
            object,
            &options,
            None,
            Some(&publish),
        )
        .await
    }

    fn is_own_output(&self, key: &str) -> bool {
        self.config
            .own_prefixes()
            .iter()
            .any(|p| !p.is_empty() && key.starts_with(p))
    }

    /// A scheduled reconcile: list the prefix, compare it with the warehouse, and send what was never loaded,
    /// loaded from an older version, or failed last to the landing queue as S3 notifications (the function then
    /// loads them as any others; one already loaded meanwhile is skipped by the ledger, so running it twice is
    /// harmless). Logs one line with the figures (never object contents).
    pub async fn reconcile(
        &self,
        request: &crate::reconcile::Scheduled,
        request_id: &str,
    ) -> Result<Value, HandlerError> {
        let fail = |e: String| HandlerError::Reconcile(e);
        let queue_url = self
            .config
            .landing_queue_url
            .clone()
            .ok_or_else(|| fail("LANDING_QUEUE_URL is not set".into()))?;
        let (bucket, prefix) = crate::reconcile::parse_uri(&request.uri).map_err(fail)?;
        let found = {
            let mut state = self.warehouse.lock().await;
            state
                .ensure_ready()
                .await
                .map_err(|e| fail(e.to_string()))?;
            let client = state
                .warehouse
                .client()
                .await
                .map_err(|e| fail(e.to_string()))?;
            crate::reconcile::find(
                &self.s3,
                client,
                &bucket,
                &prefix,
                &self.config.own_prefixes(),
            )
            .await
            .map_err(fail)?
        };
        let wanted: Vec<&crate::reconcile::Found> =
            found.iter().filter(|f| f.state.wanted()).collect();
        let sqs = match &self.sqs {
            Some(sqs) => sqs.clone(),
            None => aws_sdk_sqs::Client::new(&crate::aws::sdk_config().await),
        };
        let sent = crate::reconcile::enqueue(&sqs, &queue_url, &bucket, &wanted)
            .await
            .map_err(fail)?;
        tracing::info!(request_id, bucket = %bucket, prefix = %escape_text(&prefix), objects = found.len(),
            enqueued = sent, "reconciled");
        Ok(json!({ "objects": found.len(), "enqueued": sent }))
    }

    /// Where an object's rejected rows are published: `s3://<quarantine bucket>/<quarantine prefix><key>.rejects.csv`.
    fn rejects_uri(&self, object: &ObjectRef) -> String {
        let bucket = self
            .config
            .quarantine_bucket
            .as_deref()
            .unwrap_or(&object.bucket);
        format!(
            "s3://{bucket}/{}{}.rejects.csv",
            self.config.quarantine_prefix, object.key
        )
    }

    /// A refused object, or a loaded one with rejected rows (before its commit), gets a JSON report under the
    /// quarantine prefix, and its rejected rows go there as CSV beside it. Row contents go only into that CSV,
    /// never into logs.
    async fn quarantine(
        &self,
        object: &ObjectRef,
        report: &LoadReport,
        request_id: &str,
    ) -> Result<(), String> {
        let refused = report.status == Status::Refused;
        if !refused && report.rejects_file.is_none() {
            return Ok(());
        }
        let bucket = self
            .config
            .quarantine_bucket
            .as_deref()
            .unwrap_or(&object.bucket);
        let base = format!("{}{}", self.config.quarantine_prefix, object.key);
        let rejects_key = format!("{base}.rejects.csv");
        if let Some(path) = &report.rejects_file {
            self.put(bucket, &rejects_key, Upload::File(path), "text/csv")
                .await?;
        }
        let document = json!({
            "source": report.source,
            "request_id": request_id,
            "table": report.table,
            "status": report.status,
            "reason": report.error,
            "rows_read": report.rows_read,
            "rows_loaded": report.rows_loaded,
            "rows_inserted": report.rows_inserted,
            "rows_updated": report.rows_updated,
            "rows_unchanged": report.rows_unchanged,
            "rows_rejected": report.rows_rejected,
            "rows_duplicate": report.rows_duplicate,
            "load_id": report.load_id,
            "extra_columns": report.extra_columns,
            "rejects": report.rejects,
            "rejected_rows": report.rejects_file.as_ref().map(|_| format!("s3://{bucket}/{rejects_key}")),
        });
        let body = serde_json::to_vec_pretty(&document).map_err(|e| e.to_string())?;
        self.put(
            bucket,
            &format!("{base}.report.json"),
            Upload::Bytes(&body),
            "application/json",
        )
        .await
    }

    /// Upload with the SDK's standard retries, raised to [`QUARANTINE_ATTEMPTS`] tries: after a committed load the
    /// rejected rows exist only here, and a redelivered message would be skipped by the ledger. Both bodies are
    /// retryable (the SDK reopens a file for each try), so there is no loop of our own on top.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Upload<'_>,
        content_type: &str,
    ) -> Result<(), String> {
        let stream = match body {
            Upload::File(path) => ByteStream::from_path(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
            Upload::Bytes(bytes) => ByteStream::from(bytes.to_vec()),
        };
        let retries = aws_sdk_s3::config::retry::RetryConfig::standard()
            .with_max_attempts(QUARANTINE_ATTEMPTS)
            .with_initial_backoff(std::time::Duration::from_millis(200));
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(stream)
            .customize()
            .config_override(aws_sdk_s3::config::Builder::default().retry_config(retries))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "s3://{bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })
    }
}

/// Tries of one quarantine upload (the SDK's default is 3).
const QUARANTINE_ATTEMPTS: u32 = 4;

/// The quarantine of one object, published before its load commits.
struct Quarantine<'a> {
    handler: &'a Handler,
    object: &'a ObjectRef,
    request_id: &'a str,
}

impl Publish for Quarantine<'_> {
    fn publish<'a>(
        &'a self,
        report: &'a LoadReport,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.handler
                .quarantine(self.object, report, self.request_id)
                .await
        })
    }
}

/// What to upload: a file (the SDK reopens it for each try) or bytes.
enum Upload<'a> {
    File(&'a std::path::Path),
    Bytes(&'a [u8]),
}

/// One JSON log line per object (never row contents) and one Embedded Metric Format record for CloudWatch.
fn log_and_measure(report: &LoadReport, object: &ObjectRef, request_id: &str, metrics: bool) {
    let table = report.table.as_deref().unwrap_or("unknown");
    let status = serde_json::to_value(report.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let quality = report
        .quality
        .as_ref()
        .map(crate::transform::Quality::to_json)
        .unwrap_or_default();
    if report.status == Status::Failed {
        tracing::error!(request_id, bucket = %object.bucket, key = %escape_text(&object.key), table, status = %status,
            rows_loaded = report.rows_loaded, rows_unchanged = report.rows_unchanged, rows_rejected = report.rows_rejected,
            duration_ms = report.duration_ms, error = report.error.as_deref().unwrap_or(""), "object processed");
    } else {
        tracing::info!(request_id, bucket = %object.bucket, key = %escape_text(&object.key), table, status = %status,
            rows_loaded = report.rows_loaded, rows_unchanged = report.rows_unchanged, rows_rejected = report.rows_rejected,
            duration_ms = report.duration_ms, error = report.error.as_deref().unwrap_or(""), quality = %quality,
            "object processed");
    }
    if !metrics {
        return;
    }
    let line = emf_record(report, table, now_millis());
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A CloudWatch Embedded Metric Format record: namespace `healthetl`, dimension sets `[Table]` and none. Fact loads
/// add their quality figures: `OrphanRows_<key column>` per dimension key (rows without their dimension row, when
/// counted), `OrphanKeys` (their sum) and `<Total>MismatchRows` (`ArMismatchRows`).
pub fn emf_record(report: &LoadReport, table: &str, timestamp_ms: u128) -> Value {
    let mut metrics = vec![
        json!({"Name": "RowsLoaded", "Unit": "Count"}),
        json!({"Name": "RowsUnchanged", "Unit": "Count"}),
        json!({"Name": "RowsRejected", "Unit": "Count"}),
        json!({"Name": "ObjectsLoaded", "Unit": "Count"}),
        json!({"Name": "ObjectsRefused", "Unit": "Count"}),
        json!({"Name": "LoadDurationMs", "Unit": "Milliseconds"}),
    ];
    let mut values = serde_json::Map::new();
    values.insert("Table".into(), json!(table));
    values.insert("RowsLoaded".into(), json!(report.rows_loaded));
    values.insert("RowsUnchanged".into(), json!(report.rows_unchanged));
    values.insert("RowsRejected".into(), json!(report.rows_rejected));
    values.insert(
        "ObjectsLoaded".into(),
        json!(u8::from(report.status == Status::Loaded)),
    );
    values.insert(
        "ObjectsRefused".into(),
        json!(u8::from(report.status == Status::Refused)),
    );
    values.insert("LoadDurationMs".into(), json!(report.duration_ms));
    if let Some(q) = &report.quality {
        let mut figures: Vec<(String, u64)> = q
            .orphans
            .iter()
            .map(|(column, n)| (format!("OrphanRows_{column}"), *n))
            .collect();
        let total = figures.iter().map(|(_, n)| n).sum();
        figures.push(("OrphanKeys".into(), total));
        if let Some((column, n)) = &q.mismatch {
            let name: String = column
                .split('_')
                .map(|part| {
                    let mut chars = part.chars();
                    chars.next().map_or_else(String::new, |c| {
                        c.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect();
            figures.push((format!("{name}MismatchRows"), *n));
        }
        for (name, n) in figures {
            metrics.push(json!({"Name": name, "Unit": "Count"}));
            values.insert(name, json!(n));
        }
    }
    values.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "healthetl",
                "Dimensions": [["Table"], []],
                "Metrics": metrics
            }]
        }),
    );
    Value::Object(values)
}

/// Bring the warehouse to the declared schema when it is not there yet: one query on a warm, current warehouse;
/// `init` (tables, migrations, reporting views) only when the version differs.
pub async fn ensure_schema(warehouse: &mut dyn Loader) -> Result<(), WarehouseError> {
    if warehouse.is_current().await? {
        return Ok(());
    }
    let migrated = warehouse.init(&crate::reporting::view_statements()).await?;
    tracing::info!(
        dialect = warehouse.dialect(),
        from_version = ?migrated.from_version,
        to_version = migrated.to_version,
        columns_added = ?migrated.columns_added,
        "warehouse schema brought up to date"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names an EMF record declares.
    fn metric_names(v: &Value) -> Vec<&str> {
        v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn metrics_follow_the_embedded_metric_format() {
        let mut report = LoadReport::not_loaded(
            "s3://b/notes.csv",
            Status::Refused,
            Reason::Unrouted,
            "x".into(),
        );
        report.duration_ms = 12;
        let v = emf_record(&report, "unknown", 1_700_000_000_000);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "healthetl");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Table"], []])
        );
        assert_eq!(v["ObjectsRefused"], 1);
        assert_eq!(v["LoadDurationMs"], 12);
        assert_eq!(v["Table"], "unknown");
        let names = metric_names(&v);
        for name in names {
            assert!(v.get(name).is_some(), "{name} has a value");
        }
        assert!(
            v.get("OrphanKeys").is_none(),
            "no quality figures without a fact load"
        );
    }

    #[test]
    fn fact_loads_add_their_quality_figures_as_metrics() {
        let fact = crate::schema::SCHEMA.by_name("fact_table").unwrap();
        let column = |name: &str| fact.columns.iter().find(|c| c.name == name).unwrap();
        let mut report = LoadReport::not_loaded(
            "s3://b/FactTable.csv",
            Status::Loaded,
            Reason::Internal,
            "x".into(),
        );
        report.quality = Some(crate::transform::Quality::new(
            fact,
            vec![
                (column("dim_patient_pk"), 4),
                (column("dim_payer_pk"), 1),
                (column("dim_location_pk"), 0),
            ],
            Some(2),
        ));
        let v = emf_record(&report, "fact_table", 1);
        assert_eq!(v["OrphanRows_dim_patient_pk"], 4);
        assert_eq!(v["OrphanRows_dim_payer_pk"], 1);
        assert_eq!(v["OrphanRows_dim_location_pk"], 0);
        assert_eq!(v["OrphanKeys"], 5);
        assert_eq!(v["ArMismatchRows"], 2);
        let names = metric_names(&v);
        assert!(names.contains(&"ArMismatchRows") && names.contains(&"OrphanKeys"));
        for name in names {
            assert!(v.get(name).is_some(), "{name} has a value");
        }
    }
}
