//! Local AWS for the integration tests: a `moto_server` (a real S3 + SQS server that emits S3 event notifications to
//! SQS) on a free loopback port, SDK clients for it, and child processes that are killed when the test ends.
//!
//! The tools come from the project venv that `scripts/dev-env` installs; when one is missing the test fails and says
//! so, it never skips.

// Every test binary that declares `mod common` compiles this module; only some of them start moto.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter, VersioningConfiguration,
};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use super::TempDir;

/// The region, access key and secret every local client uses.
pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";
/// How long a server may take to start answering, or a queue to deliver what a test waits for.
pub const SERVICE_LIMIT: Duration = Duration::from_secs(20);

/// `.venv/bin/<tool>` of this crate, panicking with directions when `scripts/dev-env` has not installed it.
pub fn venv_bin(tool: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(tool);
    assert!(
        path.is_file(),
        "{} is missing: these tests need the project's Python tools and never skip. Install them with\n    \
         scripts/dev-env\n(it creates .venv with moto_server and cargo-lambda).",
        path.display()
    );
    path
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

/// A child process whose stdout and stderr go to files, killed (and reaped) when dropped.
pub struct Process {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Process {
    /// Start `command`, its output captured for assertions and failure messages.
    pub fn spawn(name: &str, mut command: Command) -> Process {
        let dir = TempDir::new(name);
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        let file = |path: &Path| {
            File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
        };
        command
            .stdin(Stdio::null())
            .stdout(file(&stdout))
            .stderr(file(&stderr));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Process {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// Both outputs, labelled, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait for the process to end, failing the test (after killing it) when it takes longer than `limit`.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{} did not finish within {limit:?}: it hangs (killed)\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the process accepts connections on `127.0.0.1:port`, failing the test when it exits first or
    /// takes longer than `limit`. Only connects: an HTTP request to cargo-lambda's emulator would be an invocation.
    pub async fn wait_until_listening(&mut self, port: u16, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if tokio::task::spawn_blocking(move || listening(port))
                .await
                .unwrap_or(false)
            {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before listening on port {port}\n{}",
                    self.name,
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not listen on 127.0.0.1:{port} within {limit:?}\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_end(&mut bytes));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).is_ok()
}

/// An SQS queue: its URL for the API and its ARN for notifications and Lambda events.
#[derive(Debug, Clone)]
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// What S3 answered to a `PutObject`.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The ETag without quotes.
    pub etag: String,
    /// The version id, on a versioned bucket.
    pub version_id: Option<String>,
    pub size: usize,
}

/// A `moto_server` of the test's own, killed on drop, with S3 and SQS clients for it.
pub struct Moto {
    pub endpoint: String,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    process: Process,
}

impl Moto {
    /// Start `.venv/bin/moto_server` on a free loopback port and wait until it answers S3 requests.
    pub async fn start() -> Moto {
        let port = free_port();
        let mut command = Command::new(venv_bin("moto_server"));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut process = Process::spawn("moto_server", command);
        process.wait_until_listening(port, SERVICE_LIMIT).await;
        let endpoint = format!("http://127.0.0.1:{port}");
        let sdk = sdk_config(&endpoint).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        if let Err(e) = s3.list_buckets().send().await {
            panic!(
                "moto_server listens on {endpoint} but does not answer: {}\n{}",
                sdk_error(&e),
                process.output()
            );
        }
        Moto {
            endpoint,
            s3,
            sqs,
            process,
        }
    }

    /// The environment a `healthetl` process needs to reach this server (as `scripts/local_aws.py` writes it).
    pub fn env(&self) -> [(&'static str, String); 4] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
        ]
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        self.process.output()
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateBucket {bucket}: {}", sdk_error(&e)));
    }

    pub async fn enable_versioning(&self, bucket: &str) {
        self.s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutBucketVersioning {bucket}: {}", sdk_error(&e)));
    }

    /// A queue `<bucket>-events` receiving the bucket's `s3:ObjectCreated:*` notifications for `<prefix>*.csv` and
    /// `<prefix>*.csv.gz`, wired as `scripts/local_aws.py` and `template.yaml` do. S3 (and moto) then sends one
    /// `s3:TestEvent` message to the queue.
    pub async fn create_queue_with_notification(&self, bucket: &str, prefix: &str) -> Queue {
        let name = format!("{bucket}-events");
        let url = self
            .sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateQueue {name}: {}", sdk_error(&e)))
            .queue_url
            .unwrap_or_else(|| panic!("CreateQueue {name} returned no URL"));
        let arn = self
            .queue_attribute(&url, QueueAttributeName::QueueArn)
            .await
            .unwrap_or_else(|| panic!("queue {url} has no QueueArn"));
        let rule = |name: FilterRuleName, value: &str| {
            FilterRule::builder().name(name).value(value).build()
        };
        let configurations = [".csv", ".csv.gz"].map(|suffix| {
            QueueConfiguration::builder()
                .id(format!("csv{suffix}"))
                .queue_arn(&arn)
                .events(Event::from("s3:ObjectCreated:*"))
                .filter(
                    NotificationConfigurationFilter::builder()
                        .key(
                            S3KeyFilter::builder()
                                .filter_rules(rule(FilterRuleName::Prefix, prefix))
                                .filter_rules(rule(FilterRuleName::Suffix, suffix))
                                .build(),
                        )
                        .build(),
                )
                .build()
                .expect("queue configuration is complete")
        });
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .set_queue_configurations(Some(configurations.to_vec()))
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PutBucketNotificationConfiguration {bucket}: {}",
                    sdk_error(&e)
                )
            });
        Queue { url, arn }
    }

    /// One attribute of a queue.
    pub async fn queue_attribute(
        &self,
        queue_url: &str,
        name: QueueAttributeName,
    ) -> Option<String> {
        self.sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(name.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetQueueAttributes {queue_url}: {}", sdk_error(&e)))
            .attributes
            .and_then(|mut attributes| attributes.remove(&name))
    }

    /// Messages in the queue, visible or in flight (SQS's approximate counts, exact on moto).
    pub async fn messages_left(&self, queue_url: &str) -> u64 {
        let mut total = 0;
        for name in [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ] {
            let value = self.queue_attribute(queue_url, name.clone()).await;
            total += value
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("queue {queue_url}: {name:?} is {value:?}"));
        }
        total
    }

    /// Receive `count` messages exactly as moto emitted them (body, ids, system attributes), failing the test when
    /// they do not all arrive within [`SERVICE_LIMIT`]. They stay in the queue, invisible for its visibility timeout.
    pub async fn receive_raw_messages(&self, queue_url: &str, count: usize) -> Vec<Message> {
        let deadline = Instant::now() + SERVICE_LIMIT;
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages arrived on {queue_url} within {SERVICE_LIMIT:?}: {messages:#?}\n{}",
                messages.len(),
                self.log()
            );
            let wanted = i32::try_from((count - messages.len()).min(10)).expect("at most 10");
            let received = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(wanted)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap_or_else(|e| panic!("ReceiveMessage {queue_url}: {}", sdk_error(&e)));
            messages.extend(received.messages.unwrap_or_default());
        }
        messages
    }

    /// Upload `bytes` to `bucket/key`.
    pub async fn put(&self, bucket: &str, key: &str, bytes: impl Into<Vec<u8>>) -> Stored {
        let bytes = bytes.into();
        let size = bytes.len();
        let output = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject s3://{bucket}/{key}: {}", sdk_error(&e)));
        Stored {
            etag: output
                .e_tag()
                .unwrap_or_else(|| panic!("PutObject s3://{bucket}/{key} returned no ETag"))
                .trim_matches('"')
                .to_string(),
            version_id: output.version_id().map(str::to_string),
            size,
        }
    }

    /// The bytes of `bucket/key`, or `None` when there is no such key.
    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(output) => {
                let bytes = output
                    .body
                    .collect()
                    .await
                    .unwrap_or_else(|e| panic!("reading s3://{bucket}/{key}: {e}"));
                Some(bytes.into_bytes().to_vec())
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
            Err(e) => panic!("GetObject s3://{bucket}/{key}: {}", sdk_error(&e)),
        }
    }

    pub async fn delete(&self, bucket: &str, key: &str) {
        self.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteObject s3://{bucket}/{key}: {}", sdk_error(&e)));
    }

    /// The keys under `prefix`, sorted.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let output = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListObjectsV2 s3://{bucket}/{prefix}: {}", sdk_error(&e)));
        let mut keys: Vec<String> = output
            .contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }
}

/// The SDK configuration for a local endpoint: the crate's HTTP client (as `src/aws.rs` builds it), the region and
/// static test credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto"))
        .load()
        .await
}

fn sdk_error<E: std::error::Error>(e: &E) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}
