//! The event-driven path against real services: objects uploaded to a moto S3 bucket whose notifications go to a
//! moto SQS queue, handed to the Lambda handler in every event shape it accepts (direct S3, SQS, EventBridge), to
//! the `healthetl worker` binary, and to the built binary running under cargo-lambda's Lambda runtime API emulator,
//! loading into a PostgreSQL database of each test's own.
//!
//! Every test starts its own `moto_server` and database. The tools come from `scripts/dev-env`; the tests never skip.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::Message;
use common::moto::{Moto, Process, Queue, SERVICE_LIMIT, Stored, free_port, venv_bin};
use common::{STEP_LIMIT, TempDir, TestDb, scalar, within};
use healthetl::config::Config;
use healthetl::event::parse_event;
use healthetl::handler::{Handler, MessageOutcome};
use healthetl::pipeline::Status;
use healthetl::warehouse::Postgres;
use serde_json::{Value, json};

// -------------------------------------------------------------------------------------------------
// Helpers.

const BUCKET: &str = "healthetl-landing";
const PREFIX: &str = "incoming/";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the committed sample.
fn sample(file: &str) -> Vec<u8> {
    let path = repo().join("data/sample").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// One test's world: a moto server with the landing bucket wired to a queue, an empty database, and a handler
/// configured as the Lambda would be (only `DATABASE_URL` set, so the quarantine prefix is the default).
struct Landing {
    // Dropped in this order: the handler's connection before its database, the server last.
    handler: Handler,
    db: TestDb,
    queue: Queue,
    moto: Moto,
}

impl Landing {
    async fn new(test: &str) -> Landing {
        Landing::with_db(TestDb::new(test).await).await
    }

    async fn with_db(db: TestDb) -> Landing {
        let moto = Moto::start().await;
        moto.create_bucket(BUCKET).await;
        let queue = moto.create_queue_with_notification(BUCKET, PREFIX).await;
        let url = db.url.clone();
        let config = Config::from_lookup(|k| (k == "DATABASE_URL").then(|| url.clone()))
            .expect("a database URL is a complete configuration");
        let postgres = Postgres::new(&db.url).expect("test URL parses");
        // The Lambda writes Embedded Metric Format lines to stdout; here they would only clutter the test output.
        let handler = Handler::new(moto.s3.clone(), postgres, config).with_metrics(false);
        Landing {
            handler,
            db,
            queue,
            moto,
        }
    }

    async fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) -> Stored {
        self.moto.put(BUCKET, key, bytes).await
    }

    /// The next `count` object notifications from the queue, exactly as moto sent them, after the one `s3:TestEvent`
    /// S3 sends when the notification is configured (returned first).
    async fn notifications(&self, count: usize) -> (Message, Vec<Message>) {
        let mut messages = self
            .moto
            .receive_raw_messages(&self.queue.url, count + 1)
            .await;
        let at = messages
            .iter()
            .position(|m| body_json(m)["Event"] == "s3:TestEvent")
            .unwrap_or_else(|| panic!("no s3:TestEvent among {messages:#?}"));
        let test_event = messages.remove(at);
        (test_event, messages)
    }

    async fn handle(&self, event: &Value, request_id: &str) -> Value {
        within(
            &format!("handling {request_id}"),
            self.handler.handle_event(event, request_id),
        )
        .await
        .unwrap_or_else(|e| panic!("{request_id} failed: {e}"))
    }

    async fn handle_incoming(&self, event: &Value, request_id: &str) -> Vec<MessageOutcome> {
        let incoming = parse_event(event).unwrap_or_else(|e| panic!("{request_id}: {e}"));
        within(
            &format!("handling {request_id}"),
            self.handler.handle_incoming(&incoming, request_id),
        )
        .await
    }

    /// The JSON report the handler wrote for `key` under the quarantine prefix.
    async fn quarantine_report(&self, key: &str) -> Value {
        let report_key = format!("quarantine/{key}.report.json");
        let Some(bytes) = self.moto.get(BUCKET, &report_key).await else {
            let keys = self.moto.list(BUCKET, "quarantine/").await;
            panic!("no s3://{BUCKET}/{report_key}; the quarantine holds {keys:?}");
        };
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{report_key} is not JSON ({e}): {bytes:?}"))
    }

    async fn count(&self, table: &str) -> i64 {
        self.db.count(&format!("health.{table}")).await
    }
}

fn body_json(message: &Message) -> Value {
    let body = message
        .body()
        .unwrap_or_else(|| panic!("{message:?} has no body"));
    serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("moto sent a body that is not JSON ({e}): {body}"))
}

/// The record Lambda builds for one SQS message, as in the AWS Lambda guide's sample SQS event.
fn sqs_record(message: &Message, queue: &Queue) -> Value {
    let attributes: serde_json::Map<String, Value> = message
        .attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_string(), json!(value)))
        .collect();
    json!({
        "messageId": message.message_id().expect("moto names every message"),
        "receiptHandle": message.receipt_handle().expect("moto hands out receipt handles"),
        "body": message.body().expect("moto messages have bodies"),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body().expect("moto sends the body's MD5"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn,
        "awsRegion": "us-east-1"
    })
}

fn sqs_event(messages: &[Message], queue: &Queue) -> Value {
    json!({"Records": messages.iter().map(|m| sqs_record(m, queue)).collect::<Vec<_>>()})
}

fn batch_item_failures(response: &Value) -> Vec<&str> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not an SQS batch response: {response}"))
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .unwrap_or_else(|| panic!("bad failure entry in {response}"))
        })
        .collect()
}

/// The key of the only object a notification names, decoded (moto quote_plus-encodes keys).
fn notified_key(message: &Message) -> String {
    let body = body_json(message);
    let raw = body["Records"][0]["s3"]["object"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no object key in {body}"));
    healthetl::event::decode_key(raw).unwrap_or_else(|e| panic!("{e}"))
}

/// A command for the built `healthetl` binary with none of the caller's AWS or logging settings, so only what the
/// test sets reaches it.
fn healthetl_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_healthetl"));
    for (name, _) in std::env::vars_os() {
        let aws = name.to_str().is_some_and(|n| n.starts_with("AWS_"));
        if aws || name == "RUST_LOG" || name == "LOG_FORMAT" || name == "DATABASE_URL" {
            command.env_remove(name);
        }
    }
    command.current_dir(repo());
    command
}

/// The AWS Lambda S3 tutorial's test event (docs.aws.amazon.com/lambda/latest/dg/with-s3-example.html), as copied
/// into `src/event.rs`'s tests.
const AWS_LAMBDA_S3_SAMPLE: &str = r#"{
  "Records": [
    {
      "eventVersion": "2.0",
      "eventSource": "aws:s3",
      "awsRegion": "us-east-1",
      "eventTime": "1970-01-01T00:00:00.000Z",
      "eventName": "ObjectCreated:Put",
      "userIdentity": {
        "principalId": "EXAMPLE"
      },
      "requestParameters": {
        "sourceIPAddress": "127.0.0.1"
      },
      "responseElements": {
        "x-amz-request-id": "EXAMPLE123456789",
        "x-amz-id-2": "EXAMPLE123/5678abcdefghijklambdaisawesome/mnopqrstuvwxyzABCDEFGH"
      },
      "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "testConfigRule",
        "bucket": {
          "name": "example-bucket",
          "ownerIdentity": {
            "principalId": "EXAMPLE"
          },
          "arn": "arn:aws:s3:::example-bucket"
        },
        "object": {
          "key": "test%2Fkey",
          "size": 1024,
          "eTag": "0123456789abcdef0123456789abcdef",
          "sequencer": "0A1B2C3D4E5F678901"
        }
      }
    }
  ]
}"#;

/// "Object Created" from the S3 user guide's "EventBridge event message structure", as copied into
/// `src/event.rs`'s tests.
const AWS_EVENTBRIDGE_OBJECT_CREATED: &str = r#"{
  "version": "0",
  "id": "17793124-05d4-b198-2fde-7ededc63b103",
  "detail-type": "Object Created",
  "source": "aws.s3",
  "account": "111122223333",
  "time": "2021-11-12T00:00:00Z",
  "region": "ca-central-1",
  "resources": [
    "arn:aws:s3:::amzn-s3-demo-bucket1"
  ],
  "detail": {
    "version": "0",
    "bucket": {
      "name": "amzn-s3-demo-bucket1"
    },
    "object": {
      "key": "example-key",
      "size": 5,
      "etag": "b1946ac92492d2347c6235b4d2611184",
      "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
      "sequencer": "617f08299329d189"
    },
    "request-id": "N4N7GDK58NMKJ12R",
    "requester": "123456789012",
    "source-ip-address": "1.2.3.4",
    "reason": "PutObject"
  }
}"#;

// -------------------------------------------------------------------------------------------------
// Event shapes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_s3_notification_as_moto_emits_it_loads_the_object_and_the_test_event_is_ignored()
{
    let landing = Landing::new("direct_s3").await;
    landing
        .put("incoming/dimPayer.csv", sample("dimPayer.csv"))
        .await;
    let (test_event, objects) = landing.notifications(1).await;

    let ignored = landing.handle(&body_json(&test_event), "test-event").await;
    let loaded = landing.handle(&body_json(&objects[0]), "direct-s3").await;

    assert_eq!(
        ignored,
        json!({"objects": 0}),
        "the s3:TestEvent is acknowledged and loads nothing"
    );
    assert_eq!(loaded, json!({"objects": 1}));
    assert_eq!(landing.count("dim_payer").await, 8);
    assert_eq!(landing.db.ledger_rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_event_of_moto_notifications_loads_every_object_without_batch_item_failures() {
    let landing = Landing::new("sqs_batch").await;
    for file in ["dimPayer.csv", "dimLocation.csv", "dimTransaction.csv"] {
        landing.put(&format!("{PREFIX}{file}"), sample(file)).await;
    }
    let (_, objects) = landing.notifications(3).await;

    let response = landing
        .handle(&sqs_event(&objects, &landing.queue), "sqs-batch")
        .await;

    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(landing.count("dim_payer").await, 8);
    assert_eq!(landing.count("dim_location").await, 10);
    assert_eq!(landing.count("dim_transaction").await, 10);
    assert_eq!(landing.db.ledger_rows().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_object_created_event_loads_the_version_it_names() {
    let landing = Landing::new("eventbridge").await;
    landing.moto.enable_versioning(BUCKET).await;
    let key = "incoming/dimPhysician.csv";
    let stored = landing.put(key, sample("dimPhysician.csv")).await;
    let version = stored
        .version_id
        .clone()
        .expect("a versioned bucket names the version");
    // A later upload under the same key: the event still names (and loads) the first version.
    landing.put(key, "ProviderName,dimPhysicianPK\n").await;
    let mut event: Value =
        serde_json::from_str(AWS_EVENTBRIDGE_OBJECT_CREATED).expect("sample parses");
    event["resources"] = json!([format!("arn:aws:s3:::{BUCKET}")]);
    event["detail"]["bucket"]["name"] = json!(BUCKET);
    event["detail"]["object"]["key"] = json!(key);
    event["detail"]["object"]["size"] = json!(stored.size);
    event["detail"]["object"]["etag"] = json!(stored.etag);
    event["detail"]["object"]["version-id"] = json!(version);

    let response = landing.handle(&event, "eventbridge").await;

    assert_eq!(response, json!({"objects": 1}));
    assert_eq!(landing.count("dim_physician").await, 20);
    let identity: String = scalar(
        &landing.db.url,
        "SELECT string_agg(object_identity, ',') FROM etl.load_log",
    )
    .await;
    assert!(
        identity.contains(&version),
        "the ledger names the version: {identity}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sample_s3_event_loads_its_object_with_plus_decoded_to_a_space() {
    let landing = Landing::new("aws_s3_sample").await;
    let stored = landing
        .put("incoming/dimPayer 2024.csv", sample("dimPayer.csv"))
        .await;
    let mut event: Value = serde_json::from_str(AWS_LAMBDA_S3_SAMPLE).expect("sample parses");
    let s3 = &mut event["Records"][0]["s3"];
    s3["bucket"]["name"] = json!(BUCKET);
    s3["bucket"]["arn"] = json!(format!("arn:aws:s3:::{BUCKET}"));
    s3["object"]["key"] = json!("incoming/dimPayer+2024.csv");
    s3["object"]["size"] = json!(stored.size);
    s3["object"]["eTag"] = json!(stored.etag);

    let outcomes = landing.handle_incoming(&event, "aws-s3-sample").await;

    let report = &outcomes[0].reports[0];
    assert_eq!(report.status, Status::Loaded, "{report:#?}");
    assert_eq!(
        report.source,
        format!("s3://{BUCKET}/incoming/dimPayer 2024.csv")
    );
    assert_eq!(landing.count("dim_payer").await, 8);
}

// -------------------------------------------------------------------------------------------------
// Redelivery, refusals, rejects and partial batch failures.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_twice_loads_once_and_the_second_delivery_is_skipped() {
    let landing = Landing::new("redelivery").await;
    landing
        .put("incoming/dimLocation.csv", sample("dimLocation.csv"))
        .await;
    let (_, objects) = landing.notifications(1).await;
    let event = sqs_event(&objects, &landing.queue);

    let first = landing.handle(&event, "first-delivery").await;
    let rows_after_first = landing.count("dim_location").await;
    let second = landing.handle_incoming(&event, "second-delivery").await;

    assert_eq!(first, json!({"batchItemFailures": []}));
    assert!(second[0].ok);
    assert_eq!(
        second[0].reports[0].status,
        Status::Skipped,
        "{:#?}",
        second[0].reports
    );
    assert_eq!(rows_after_first, 10);
    assert_eq!(landing.count("dim_location").await, 10);
    assert_eq!(landing.db.ledger_rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_an_object_replaced_since_is_refused_and_the_replacement_loads() {
    let landing = Landing::new("replaced").await;
    landing
        .put("incoming/dimPayer.csv", sample("dimPayer.csv"))
        .await;
    landing
        .put(
            "incoming/dimPayer.csv",
            "dimPayerPK,PayerName\n1,Medicare\n2,Aetna\n",
        )
        .await;
    let (_, objects) = landing.notifications(2).await;

    let outcomes = landing
        .handle_incoming(&sqs_event(&objects, &landing.queue), "replaced")
        .await;

    let statuses: Vec<Status> = outcomes
        .iter()
        .flat_map(|o| o.reports.iter().map(|r| r.status))
        .collect();
    // Whatever the delivery order: the first version is gone (If-Match fails), the second loads.
    assert_eq!(statuses.len(), 2, "{outcomes:#?}");
    assert!(
        statuses.contains(&Status::Refused) && statuses.contains(&Status::Loaded),
        "{outcomes:#?}"
    );
    assert!(
        outcomes.iter().all(|o| o.ok),
        "a replaced object is not retried"
    );
    assert_eq!(
        landing.count("dim_payer").await,
        2,
        "only the replacement is loaded"
    );
    assert_eq!(landing.db.ledger_rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_objects_get_a_quarantine_report_and_leave_nothing_in_the_warehouse() {
    let landing = Landing::with_db(TestDb::initialized("refused").await).await;
    landing.put("incoming/notes.csv", "note\nhello\n").await;
    landing
        .put("incoming/dimPayer.csv", "dimPayerPK,Name\n1,Medicare\n")
        .await;
    let (_, objects) = landing.notifications(2).await;

    let response = landing
        .handle(&sqs_event(&objects, &landing.queue), "refusals")
        .await;

    assert_eq!(
        response,
        json!({"batchItemFailures": []}),
        "refusals are final, not retried"
    );
    let notes = landing.quarantine_report("incoming/notes.csv").await;
    assert_eq!(notes["status"], "refused");
    assert_eq!(notes["source"], format!("s3://{BUCKET}/incoming/notes.csv"));
    assert_eq!(notes["request_id"], "refusals");
    assert!(
        notes["reason"].as_str().is_some_and(|r| r.contains(
            "notes.csv: the name names no table and the header carries no table's columns"
        )),
        "{notes:#}"
    );
    let payer = landing.quarantine_report("incoming/dimPayer.csv").await;
    assert_eq!(payer["status"], "refused");
    assert_eq!(payer["table"], "dim_payer");
    assert_eq!(payer["rows_loaded"], 0);
    assert!(
        payer["reason"]
            .as_str()
            .is_some_and(|r| r.contains("missing column 'PayerName'")),
        "{payer:#}"
    );
    assert_eq!(
        landing.moto.list(BUCKET, "quarantine/").await,
        [
            "quarantine/incoming/dimPayer.csv.report.json",
            "quarantine/incoming/notes.csv.report.json"
        ],
        "reports only: no rows were rejected"
    );
    assert_eq!(landing.count("dim_payer").await, 0);
    assert_eq!(landing.db.ledger_rows().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_rows_go_to_quarantine_with_their_line_numbers_and_the_good_rows_load() {
    let landing = Landing::new("rejects").await;
    let bad_rows = [5, 17];
    let mut csv = String::from("dimLocationPK,Location Name\n");
    for row in 1..=30 {
        if bad_rows.contains(&row) {
            csv.push_str(&format!("row{row},Clinic {row}\n"));
        } else {
            csv.push_str(&format!("{row},Clinic {row}\n"));
        }
    }
    landing.put("incoming/dimLocation.csv", csv).await;
    let (_, objects) = landing.notifications(1).await;

    let response = landing
        .handle(&sqs_event(&objects, &landing.queue), "rejects")
        .await;

    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(landing.count("dim_location").await, 28);
    let report = landing.quarantine_report("incoming/dimLocation.csv").await;
    let rejects_key = "quarantine/incoming/dimLocation.csv.rejects.csv";
    assert_eq!(report["status"], "loaded");
    assert_eq!(report["rows_read"], 30);
    assert_eq!(report["rows_loaded"], 28);
    assert_eq!(report["rows_rejected"], 2);
    assert_eq!(
        report["rejected_rows"],
        format!("s3://{BUCKET}/{rejects_key}")
    );
    let rejects = landing
        .moto
        .get(BUCKET, rejects_key)
        .await
        .unwrap_or_else(|| panic!("no {rejects_key}"));
    let mut reader = csv::Reader::from_reader(rejects.as_slice());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let records: Vec<csv::StringRecord> =
        reader.records().map(|r| r.expect("a CSV record")).collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let (line, rejected_column, pk) = (
        column("rejected_line"),
        column("rejected_column"),
        column("dimLocationPK"),
    );
    let rows: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| (&r[line], &r[rejected_column], &r[pk]))
        .collect();
    // The header is line 1, so data row n is on line n + 1.
    assert_eq!(
        rows,
        [
            ("6", "dimLocationPK", "row5"),
            ("18", "dimLocationPK", "row17")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_malformed_message_in_an_sqs_batch_is_the_only_batch_item_failure() {
    let landing = Landing::new("partial_batch").await;
    for file in ["dimPayer.csv", "dimLocation.csv", "dimTransaction.csv"] {
        landing.put(&format!("{PREFIX}{file}"), sample(file)).await;
    }
    let (_, objects) = landing.notifications(3).await;
    // Deleted before it is processed: refused as gone (a retry cannot bring it back), not failed.
    assert!(
        objects
            .iter()
            .any(|m| notified_key(m) == "incoming/dimTransaction.csv")
    );
    landing
        .moto
        .delete(BUCKET, "incoming/dimTransaction.csv")
        .await;
    let mut event = sqs_event(&objects, &landing.queue);
    let mut malformed = event["Records"][0].clone();
    malformed["messageId"] = json!("malformed-0001");
    malformed["body"] = json!("incoming/dimPayer.csv was uploaded");
    event["Records"]
        .as_array_mut()
        .expect("records")
        .insert(1, malformed);

    let response = landing.handle(&event, "partial-batch").await;

    assert_eq!(batch_item_failures(&response), ["malformed-0001"]);
    assert_eq!(landing.count("dim_payer").await, 8);
    assert_eq!(landing.count("dim_location").await, 10);
    assert_eq!(landing.count("dim_transaction").await, 0);
    let report = landing
        .quarantine_report("incoming/dimTransaction.csv")
        .await;
    assert_eq!(report["status"], "refused", "{report:#}");
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no longer exists")),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_objects_stream_from_s3_and_load() {
    let landing = Landing::new("gzip").await;
    landing
        .put("incoming/dimPayer.csv.gz", gzip(&sample("dimPayer.csv")))
        .await;
    landing
        .put("incoming/FactTable.csv.gz", gzip(&sample("FactTable.csv")))
        .await;
    let (_, objects) = landing.notifications(2).await;

    let response = landing
        .handle(&sqs_event(&objects, &landing.queue), "gzip")
        .await;

    assert_eq!(response, json!({"batchItemFailures": []}));
    let manifest =
        healthetl::generate::read_manifest(&repo().join("data/sample")).expect("sample manifest");
    assert_eq!(landing.count("dim_payer").await, 8);
    assert_eq!(
        landing.count("fact_table").await,
        manifest.tables["fact_table"].rows as i64
    );
    let gross: String = scalar(
        &landing.db.url,
        "SELECT sum(gross_charge)::text FROM health.fact_table",
    )
    .await;
    assert_eq!(gross, manifest.tables["fact_table"].sums["gross_charge"]);
}

// -------------------------------------------------------------------------------------------------
// The binary: the local worker, and the Lambda under the runtime API emulator.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_loads_the_whole_sample_from_the_queue_and_leaves_it_empty() {
    let landing = Landing::new("worker").await;
    let sample_dir = repo().join("data/sample");
    let manifest = healthetl::generate::read_manifest(&sample_dir).expect("sample manifest");
    for table in manifest.tables.values() {
        landing
            .put(&format!("{PREFIX}{}", table.file), sample(&table.file))
            .await;
    }
    let mut command = healthetl_command();
    command
        .args(["worker", "--queue-url", &landing.queue.url])
        .args(["--wait-seconds", "1", "--exit-when-idle", "3", "--json"])
        .env("DATABASE_URL", &landing.db.url)
        .envs(landing.moto.env());
    let started = Instant::now();

    let mut worker = Process::spawn("healthetl worker", command);
    let status = worker.wait(STEP_LIMIT).await;

    let elapsed = started.elapsed();
    assert!(
        status.success(),
        "worker exited with {status}\n{}",
        worker.output()
    );
    let summary: Value = serde_json::from_str(&worker.stdout()).unwrap_or_else(|e| {
        panic!(
            "the worker's --json summary is not JSON ({e})\n{}",
            worker.output()
        )
    });
    assert_eq!(summary["totals"]["loaded"], 9, "{summary:#}");
    assert_eq!(summary["totals"]["failed"], 0, "{summary:#}");
    for (table, expected) in &manifest.tables {
        assert_eq!(landing.count(table).await, expected.rows as i64, "{table}");
    }
    assert_eq!(landing.db.ledger_rows().await, 9);
    assert_eq!(
        landing.moto.messages_left(&landing.queue.url).await,
        0,
        "every message (the s3:TestEvent included) is deleted"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the worker took {elapsed:?}"
    );
}

/// cargo-lambda's runtime API emulator without a function (`--only-lambda-apis`), so nothing is built.
struct Emulator {
    port: u16,
    process: Process,
}

impl Emulator {
    async fn start() -> Emulator {
        let port = free_port();
        let mut command = Command::new(venv_bin("cargo-lambda"));
        command
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            // It reads the package with `cargo metadata`, so it must start in the crate.
            .current_dir(repo());
        let mut process = Process::spawn("cargo-lambda watch", command);
        process.wait_until_listening(port, SERVICE_LIMIT).await;
        Emulator { port, process }
    }

    /// The runtime API a function named `function` polls: the printed `http://…/.rt` serves only the function `_`.
    fn runtime_api(&self, function: &str) -> String {
        format!("http://127.0.0.1:{}/.rt/{function}", self.port)
    }

    /// `cargo-lambda lambda invoke <function> --data-file <event>`: the function's response.
    async fn invoke(&self, function: &str, event: &Value) -> Value {
        let dir = TempDir::new("invoke");
        let event_file = dir.write("event.json", event.to_string());
        let mut command = Command::new(venv_bin("cargo-lambda"));
        command
            .args(["lambda", "invoke", function, "--data-file"])
            .arg(&event_file)
            // Long names: -A means both --invoke-address and --data-ascii in cargo-lambda 1.9.2's help.
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &self.port.to_string(),
            ])
            .current_dir(repo());
        let mut invoke = Process::spawn("cargo-lambda invoke", command);
        let status = invoke.wait(STEP_LIMIT).await;
        assert!(
            status.success(),
            "invoke exited with {status}\n{}\n{}",
            invoke.output(),
            self.process.output()
        );
        serde_json::from_str(invoke.stdout().trim())
            .unwrap_or_else(|e| panic!("the invoke output is not JSON ({e})\n{}", invoke.output()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_binary_answers_an_sqs_event_under_the_lambda_runtime_emulator() {
    let landing = Landing::new("lambda_emulator").await;
    for file in ["dimPayer.csv", "dimLocation.csv"] {
        landing.put(&format!("{PREFIX}{file}"), sample(file)).await;
    }
    let (_, objects) = landing.notifications(2).await;
    let emulator = Emulator::start().await;
    let mut command = healthetl_command();
    command
        .env("AWS_LAMBDA_RUNTIME_API", emulator.runtime_api("healthetl"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "healthetl")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("DATABASE_URL", &landing.db.url)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(landing.moto.env());
    let mut function = Process::spawn("healthetl (Lambda)", command);

    let response = emulator
        .invoke("healthetl", &sqs_event(&objects, &landing.queue))
        .await;

    assert_eq!(
        response,
        json!({"batchItemFailures": []}),
        "{}",
        function.output()
    );
    assert_eq!(landing.count("dim_payer").await, 8);
    assert_eq!(landing.count("dim_location").await, 10);
    assert!(
        function.exited().is_none(),
        "the function keeps serving\n{}",
        function.output()
    );
    let rows_loaded: u64 = function
        .stdout()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record.get("_aws").is_some())
        .filter_map(|record| record["RowsLoaded"].as_u64())
        .sum();
    assert_eq!(
        rows_loaded,
        18,
        "one metric record per object on stdout\n{}",
        function.output()
    );
}

// -------------------------------------------------------------------------------------------------
// Malformed input and faults on the event path.

/// Patient strings that must never reach the worker's output, its logs, the quarantine report or the ledger.
const PHI_PROBES: [&str; 3] = ["PHIPROBE-8812", "Wilhelmina Zzyzx", "wz.secret@example.org"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_text_in_malformed_objects_stays_out_of_logs_reports_and_the_ledger() {
    let landing = Landing::new("phi_worker").await;
    let header =
        "dimPatientPK,PatientNumber,FirstName,LastName,Email,PatientGender,PatientAge,City,State";
    // The header lost its line end: the first patient's fields become extra columns.
    landing
        .put(
            "incoming/dimPatient.csv",
            format!(
                "{header},1,{},Wilhelmina,Zzyzx,{},F,40,Austin,TX\n2,P2,Ann,Lee,a@b.c,F,30,Waco,TX\n3,P3,Bo,Ray,b@c.d,M,31,Waco,TX\n",
                PHI_PROBES[0], PHI_PROBES[2]
            ),
        )
        .await;
    // Rejected values, and an unclosed quote.
    landing
        .put(
            "incoming/dimPatient_rejects.csv",
            format!(
                "{header}\n1,{},Wilhelmina Zzyzx,x,{},F,{},Austin,TX\n2,P2,Ann,Lee,a@b.c,F,30,Waco,TX\n",
                PHI_PROBES[0], PHI_PROBES[2], PHI_PROBES[1]
            ),
        )
        .await;
    landing
        .put(
            "incoming/dimPatient_open.csv",
            format!("{header}\n1,\"{},Wilhelmina,Zzyzx\n", PHI_PROBES[0]),
        )
        .await;
    let mut command = healthetl_command();
    command
        .args(["worker", "--queue-url", &landing.queue.url])
        .args(["--wait-seconds", "1", "--exit-when-idle", "3", "--json"])
        .env("DATABASE_URL", &landing.db.url)
        .env("REJECT_THRESHOLD", "1")
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .envs(landing.moto.env());
    let mut worker = Process::spawn("healthetl worker", command);
    worker.wait(STEP_LIMIT).await;
    let output = worker.output();
    let summary: Value = serde_json::from_str(&worker.stdout())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {output}"));
    assert_eq!(summary["totals"]["objects"], 3, "{summary:#}");
    let mut quarantine = String::new();
    for key in landing.moto.list(BUCKET, "quarantine/").await {
        if key.ends_with(".report.json") {
            let bytes = landing.moto.get(BUCKET, &key).await.unwrap_or_default();
            quarantine.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(
        quarantine.contains("\"extra_columns\"")
            && quarantine.contains("unclosed") | quarantine.contains("never closed"),
        "the reports are there: {quarantine}"
    );
    let ledger = common::rows(
        &landing.db.url,
        "SELECT row_to_json(l)::text FROM etl.load_log l",
    )
    .await;
    let ledger: String = ledger.into_iter().flatten().flatten().collect();
    for probe in PHI_PROBES {
        assert!(
            !output.contains(probe),
            "the worker printed {probe}:\n{output}"
        );
        assert!(
            !quarantine.contains(probe),
            "a quarantine report holds {probe}:\n{quarantine}"
        );
        assert!(
            !ledger.contains(probe),
            "the ledger holds {probe}: {ledger}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_whose_rejected_rows_cannot_reach_the_quarantine_is_not_committed() {
    let db = TestDb::new("quarantine_first").await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let queue = moto.create_queue_with_notification(BUCKET, PREFIX).await;
    let url = db.url.clone();
    // A quarantine bucket that does not exist: every upload of the rejects file fails.
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "QUARANTINE_BUCKET" => Some("no-such-quarantine-bucket".to_string()),
        _ => None,
    })
    .expect("config");
    let handler = Handler::new(
        moto.s3.clone(),
        Postgres::new(&db.url).expect("url"),
        config,
    )
    .with_metrics(false);
    let csv =
        "dimLocationPK,Location Name\n1,A\n2,B\nx,C\n4,D\n5,E\n6,F\n7,G\n8,H\n9,I\n10,J\n11,K\n";
    moto.put(BUCKET, "incoming/dimLocation.csv", csv).await;
    let mut messages = moto.receive_raw_messages(&queue.url, 2).await;
    messages.retain(|m| body_json(m)["Event"] != "s3:TestEvent");
    let response = within(
        "handling",
        handler.handle_event(&sqs_event(&messages, &queue), "quarantine-first"),
    )
    .await
    .expect("an SQS batch answers with its failures");
    assert_eq!(
        batch_item_failures(&response).len(),
        1,
        "the message is retried: {response}"
    );
    assert_eq!(
        db.count("health.dim_location").await,
        0,
        "nothing committed"
    );
    assert_eq!(db.ledger_rows().await, 0);
    drop(handler);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_backs_off_when_sqs_is_unreachable_instead_of_exiting() {
    let port = free_port();
    let mut command = healthetl_command();
    command
        .args([
            "worker",
            "--queue-url",
            &format!("http://127.0.0.1:{port}/123456789012/none"),
        ])
        .args(["--wait-seconds", "1", "--exit-when-idle", "3"])
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    let started = Instant::now();
    let mut worker = Process::spawn("healthetl worker", command);
    let status = worker.wait(STEP_LIMIT).await;
    let elapsed = started.elapsed();
    let output = worker.output();
    assert!(
        elapsed >= Duration::from_secs(3),
        "the worker kept trying for its idle limit, not {elapsed:?}:\n{output}"
    );
    assert_eq!(
        status.code(),
        Some(2),
        "then it stops with the error:\n{output}"
    );
    assert!(
        output.matches("backing off").count() >= 2,
        "each failure is logged with its backoff:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_object_whose_name_names_no_table_routes_by_its_header_even_gzipped() {
    let landing = Landing::new("route_by_header").await;
    let physicians =
        std::fs::read(repo().join("tests/fixtures/kaggle-names/DimPhyscian.csv")).unwrap();
    landing
        .put("incoming/DimPhyscian.csv.gz", gzip(&physicians))
        .await;
    landing
        .put("incoming/notes.csv", "when,what\r\nmonday,call\r\n")
        .await;
    let (_, objects) = landing.notifications(2).await;
    let outcomes = landing
        .handle_incoming(&sqs_event(&objects, &landing.queue), "route-by-header")
        .await;
    let reports: Vec<_> = outcomes.iter().flat_map(|o| &o.reports).collect();
    let physician = reports
        .iter()
        .find(|r| r.source.ends_with("DimPhyscian.csv.gz"))
        .expect("a report for the physicians");
    assert_eq!(physician.status, Status::Loaded, "{physician:?}");
    assert_eq!(physician.table.as_deref(), Some("dim_physician"));
    assert_eq!(
        physician.routed_by,
        Some(healthetl::route::RoutedBy::Header)
    );
    assert_eq!(landing.count("dim_physician").await, 2);
    let notes = reports
        .iter()
        .find(|r| r.source.ends_with("notes.csv"))
        .expect("notes");
    assert_eq!(notes.status, Status::Refused, "{notes:?}");
    let report = landing.quarantine_report("incoming/notes.csv").await;
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("carries no table's columns"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_under_another_key_or_gzipped_are_skipped_by_their_content() {
    let landing = Landing::new("content_identity").await;
    let bytes = sample("dimLocation.csv");
    landing.put("incoming/dimLocation.csv", bytes.clone()).await;
    let (_, first) = landing.notifications(1).await;
    let loaded = landing
        .handle_incoming(&sqs_event(&first, &landing.queue), "plain")
        .await;
    assert_eq!(loaded[0].reports[0].status, Status::Loaded);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(
        loaded[0].reports[0].content_sha256.as_deref(),
        Some(sha.as_str())
    );

    // Another ETag (gzip), another key: the same content, so nothing is loaded twice.
    landing
        .put("incoming/2024/dimLocation.csv.gz", gzip(&bytes))
        .await;
    landing
        .put("incoming/dimLocation_copy.csv", bytes.clone())
        .await;
    let again = landing
        .moto
        .receive_raw_messages(&landing.queue.url, 2)
        .await;
    let outcomes = landing
        .handle_incoming(&sqs_event(&again, &landing.queue), "copies")
        .await;
    let statuses: Vec<Status> = outcomes
        .iter()
        .flat_map(|o| &o.reports)
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [Status::Skipped, Status::Skipped],
        "{outcomes:#?}"
    );
    assert_eq!(landing.db.ledger_rows().await, 1);
    let recorded: String = scalar(&landing.db.url, "SELECT content_sha256 FROM etl.load_log").await;
    assert_eq!(recorded, sha);
    let identity: String =
        scalar(&landing.db.url, "SELECT object_identity FROM etl.load_log").await;
    assert!(
        identity.starts_with("etag:"),
        "the quick check stays the ETag: {identity}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_starts_no_object_with_less_than_the_margin_left_and_reports_those_messages_failed()
{
    let landing = Landing::new("deadline_batch").await;
    for file in ["dimPayer.csv", "dimLocation.csv"] {
        landing.put(&format!("{PREFIX}{file}"), sample(file)).await;
    }
    let (_, objects) = landing.notifications(2).await;
    let event = sqs_event(&objects, &landing.queue);
    let ids: Vec<String> = objects
        .iter()
        .map(|m| m.message_id.clone().expect("message id"))
        .collect();
    // 10 s left, under the default 30 s margin: nothing is started, every message is a batch item failure.
    let soon = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let response = within(
        "handling near the deadline",
        landing
            .handler
            .handle_event_until(&event, "late", Some(soon)),
    )
    .await
    .expect("an SQS answer");
    let mut failed = batch_item_failures(&response);
    failed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(failed, expected, "{response}");
    let touched: i64 = scalar(
        &landing.db.url,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('health', 'etl')",
    )
    .await;
    assert_eq!(
        touched, 0,
        "nothing started: the warehouse was not even initialized"
    );
    assert!(
        landing.moto.list(BUCKET, "quarantine/").await.is_empty(),
        "messages not started leave nothing"
    );
    // Delivered again with time enough: both load.
    let later = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let response = within(
        "handling with time",
        landing
            .handler
            .handle_event_until(&event, "on-time", Some(later)),
    )
    .await
    .expect("an SQS answer");
    assert!(batch_item_failures(&response).is_empty(), "{response}");
    assert_eq!(landing.count("dim_payer").await, 8);
    assert_eq!(landing.db.ledger_rows().await, 2);
}

// -------------------------------------------------------------------------------------------------
// The stack's custom resource.

/// A one-shot HTTP server on loopback in the place of CloudFormation's pre-signed response URL: it answers 200 to
/// one request and hands back its request line and JSON body.
async fn response_endpoint() -> (String, tokio::task::JoinHandle<(String, Value)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/cloudformation-response?X-Amz-Signature=abc",
        listener.local_addr().expect("addr")
    );
    let answered = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        let body_at = loop {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the connection closed before the headers ended");
            request.extend_from_slice(&buf[..n]);
            if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&request[..body_at]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a content-length");
        while request.len() < body_at + length {
            let n = socket.read(&mut buf).await.expect("read body");
            assert!(n > 0, "the connection closed inside the body");
            request.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .expect("answer");
        let body =
            serde_json::from_slice(&request[body_at..body_at + length]).expect("a JSON body");
        (head.lines().next().unwrap_or_default().to_string(), body)
    });
    (url, answered)
}

async fn reporting_views(db: &TestDb) -> i64 {
    scalar(
        &db.url,
        "SELECT count(*) FROM information_schema.views WHERE table_schema = 'reporting'",
    )
    .await
}

fn custom_resource_request(kind: &str, response_url: &str) -> Value {
    json!({
        "RequestType": kind,
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:111122223333:stack/healthetl/abc",
        "RequestId": format!("request-{kind}"),
        "ResourceType": "Custom::WarehouseSchema",
        "LogicalResourceId": "WarehouseSchema",
        "PhysicalResourceId": (kind != "Create").then_some("healthetl-warehouse-schema"),
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:healthetl-loader",
                               "SchemaVersion": healthetl::schema::SCHEMA_VERSION.to_string()}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_custom_resource_creates_the_views_before_quicksight_and_answers_cloudformation()
{
    let landing = Landing::new("custom_resource").await;
    assert_eq!(reporting_views(&landing.db).await, 0);

    let (url, answered) = response_endpoint().await;
    let out = landing
        .handle(&custom_resource_request("Create", &url), "cfn-create")
        .await;
    assert_eq!(out["custom_resource"], "SUCCESS", "{out}");
    let (request_line, body) = within("the answer", answered).await.expect("answered");
    assert!(
        request_line.starts_with("PUT /cloudformation-response?"),
        "{request_line}"
    );
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], "healthetl-warehouse-schema");
    assert_eq!(body["RequestId"], "request-Create");
    assert_eq!(body["LogicalResourceId"], "WarehouseSchema");
    assert_eq!(body["Data"]["Dialect"], "postgres");
    assert_eq!(
        body["Data"]["SchemaVersion"],
        i64::from(healthetl::schema::SCHEMA_VERSION)
    );
    let created = reporting_views(&landing.db).await;
    assert_eq!(
        created,
        i64::try_from(healthetl::reporting::views().len()).unwrap()
    );

    // Delete drops nothing: the warehouse outlives the stack.
    let (url, answered) = response_endpoint().await;
    landing
        .handle(&custom_resource_request("Delete", &url), "cfn-delete")
        .await;
    let (_, body) = within("the answer", answered).await.expect("answered");
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(reporting_views(&landing.db).await, created);

    // A warehouse the loader cannot reach: FAILED, with the reason, at once (not a timed-out deploy).
    let config = Config::from_lookup(|k| {
        (k == "DATABASE_URL").then(|| "postgres://postgres@127.0.0.1:1/nowhere".to_string())
    })
    .expect("config");
    let unreachable = Handler::new(
        landing.moto.s3.clone(),
        Postgres::new("postgres://postgres@127.0.0.1:1/nowhere").expect("url"),
        config,
    )
    .with_metrics(false);
    let (url, answered) = response_endpoint().await;
    let out = within(
        "custom resource",
        unreachable.handle_event(&custom_resource_request("Update", &url), "cfn-update"),
    )
    .await
    .expect("answered");
    assert_eq!(out["custom_resource"], "FAILED", "{out}");
    let (_, body) = within("the answer", answered).await.expect("answered");
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert_eq!(body["PhysicalResourceId"], "healthetl-warehouse-schema");
    let reason = body["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains("declared schema"), "{reason}");
}
