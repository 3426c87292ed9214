//! `healthetl ingest` against a real S3-compatible server (moto_server from `scripts/dev-env`, started per test) and
//! a local fake of Kaggle's download endpoint. These tests never skip: without moto_server they fail and say how to
//! install it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use healthetl::generate::{GenerateOptions, generate};
use healthetl::ingest::{
    IngestError, IngestOptions, IngestSource, IngestSummary, KaggleCredentials, MIB, ingest,
};

/// How long one ingest may take before the test calls it hung.
const STEP_LIMIT: Duration = Duration::from_secs(120);

/// A moto_server on a free local port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/dev-env once to install moto_server (these tests need a real S3-compatible \
             server and never skip)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited with {status} before answering on port {port}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not answer on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn s3(&self) -> aws_sdk_s3::Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .load()
            .await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        )
    }

    /// A client with bucket `bucket` created.
    async fn bucket(&self, bucket: &str) -> aws_sdk_s3::Client {
        let s3 = self.s3().await;
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
        s3
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "healthetl-ingest-test-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The nine table files (and manifest.json) for `rows` fact rows, in `dir`.
fn nine_files(dir: &Path, rows: u64) {
    generate(&GenerateOptions {
        fact_rows: rows,
        out_dir: dir.to_path_buf(),
        seed: 7,
        plain: false,
    })
    .expect("generate");
}

/// The nine table file names `generate` writes.
fn table_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv") && healthetl::route::route(n).is_ok())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        9,
        "generate writes nine table files: {names:?}"
    );
    names
}

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get s3://{bucket}/{key}: {e:?}"));
    out.body.collect().await.expect("read body").to_vec()
}

async fn run(
    s3: &aws_sdk_s3::Client,
    source: IngestSource,
    opts: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    tokio::time::timeout(STEP_LIMIT, ingest(s3, source, opts))
        .await
        .expect("ingest finished within the step limit")
}

/// Every table file of `dir` was uploaded under `incoming/` and reads back byte for byte.
async fn assert_uploaded(s3: &aws_sdk_s3::Client, summary: &IngestSummary, dir: &Path) {
    let mut keys: Vec<&str> = summary.uploaded.iter().map(|u| u.key.as_str()).collect();
    keys.sort();
    let expected: Vec<String> = table_files(dir)
        .iter()
        .map(|n| format!("incoming/{n}"))
        .collect();
    assert_eq!(keys, expected);
    for name in table_files(dir) {
        let original = std::fs::read(dir.join(&name)).expect("read original");
        let stored = object(s3, "billing", &format!("incoming/{name}")).await;
        assert!(stored == original, "{name} differs after the round trip");
        let u = summary
            .uploaded
            .iter()
            .find(|u| u.key.ends_with(&name))
            .expect("reported");
        assert_eq!(u.bytes, original.len() as u64, "{name}");
    }
}

#[tokio::test]
async fn a_local_folder_uploads_exactly_its_nine_table_files_and_reports_the_rest_skipped() {
    let moto = Moto::start();
    let s3 = moto.bucket("billing").await;
    let dir = TempDir::new("folder");
    nine_files(&dir.0, 300);
    std::fs::write(dir.0.join("notes.txt"), "not data").expect("write");
    std::fs::write(dir.0.join("readme.csv"), "a,b\n1,2\n").expect("write");

    let summary = run(
        &s3,
        IngestSource::Local(dir.0.clone()),
        &IngestOptions::new("billing"),
    )
    .await
    .expect("ingest");

    assert_uploaded(&s3, &summary, &dir.0).await;
    assert!(
        summary
            .uploaded
            .iter()
            .all(|u| !u.multipart && u.etag.is_some())
    );
    let mut skipped: Vec<&str> = summary.skipped.iter().map(|(f, _)| f.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["manifest.json", "notes.txt", "readme.csv"]);
    let reason = |f: &str| {
        &summary
            .skipped
            .iter()
            .find(|(n, _)| n == f)
            .expect("skipped")
            .1
    };
    assert_eq!(reason("notes.txt"), "not a .csv or .csv.gz file");
    assert!(
        reason("readme.csv").contains("does not name a table"),
        "{}",
        reason("readme.csv")
    );
    let listed = s3
        .list_objects_v2()
        .bucket("billing")
        .send()
        .await
        .expect("list");
    assert_eq!(
        listed.contents().len(),
        9,
        "nothing else reached the bucket"
    );
}

#[tokio::test]
async fn a_file_larger_than_the_part_size_goes_multipart_and_reads_back_identical() {
    let moto = Moto::start();
    let s3 = moto.bucket("billing").await;
    let dir = TempDir::new("multipart");
    nine_files(&dir.0, 120_000);
    let fact = dir.0.join("FactTable.csv");
    let size = std::fs::metadata(&fact).expect("fact table").len();
    assert!(
        size > 10 * MIB,
        "the fact table is {size} bytes, expected over 10 MiB"
    );
    let parts = size.div_ceil(5 * MIB);
    let opts = IngestOptions {
        part_size: 5 * MIB,
        concurrency: 2,
        ..IngestOptions::new("billing")
    };

    let summary = run(&s3, IngestSource::Local(fact.clone()), &opts)
        .await
        .expect("ingest");

    assert_eq!(summary.uploaded.len(), 1);
    let u = &summary.uploaded[0];
    assert_eq!(
        (u.file.as_str(), u.key.as_str()),
        ("FactTable.csv", "incoming/FactTable.csv")
    );
    assert!(u.multipart);
    assert_eq!(u.bytes, size);
    let etag = u.etag.as_deref().expect("an ETag");
    assert!(
        etag.trim_matches('"').ends_with(&format!("-{parts}")),
        "ETag {etag} should end in -{parts}"
    );
    let stored = object(&s3, "billing", "incoming/FactTable.csv").await;
    assert!(
        stored == std::fs::read(&fact).expect("read"),
        "the fact table differs after the round trip"
    );
    let pending = s3
        .list_multipart_uploads()
        .bucket("billing")
        .send()
        .await
        .expect("list uploads");
    assert!(
        pending.uploads().is_empty(),
        "no multipart upload is left open"
    );
}

#[tokio::test]
async fn an_upload_to_a_missing_bucket_fails_naming_the_file_bucket_and_key() {
    let moto = Moto::start();
    let s3 = moto.s3().await;
    let dir = TempDir::new("no-bucket");
    nine_files(&dir.0, 50);

    let e = run(
        &s3,
        IngestSource::Local(dir.0.join("dimPayer.csv")),
        &IngestOptions::new("nowhere"),
    )
    .await
    .expect_err("there is no bucket");

    let text = e.to_string();
    assert!(
        text.starts_with("dimPayer.csv: PutObject for s3://nowhere/incoming/dimPayer.csv failed: "),
        "{text}"
    );
    assert!(text.contains("NoSuchBucket"), "{text}");
}

/// A fake of Kaggle's download endpoint: `/api/v1/datasets/download/acme/billing` answers 302 to a signed storage
/// path when the Basic credentials match (401 otherwise); the storage path serves `zip` and refuses any request
/// that carries credentials (they must not follow the redirect).
struct FakeKaggle {
    api_base: String,
}

impl FakeKaggle {
    fn start(zip: Vec<u8>, username: &str, key: &str) -> FakeKaggle {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{key}"))
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                answer(stream, &zip, &expected, port);
            }
        });
        FakeKaggle {
            api_base: format!("http://127.0.0.1:{port}/api/v1"),
        }
    }
}

fn answer(mut stream: TcpStream, zip: &[u8], expected_auth: &str, port: u16) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            auth = Some(value.trim().to_string());
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let (status, headers, body): (&str, String, &[u8]) = match path {
        "/api/v1/datasets/download/acme/billing" if auth.as_deref() == Some(expected_auth) => (
            "302 Found",
            format!("Location: http://127.0.0.1:{port}/storage/acme-billing.zip?sig=abc\r\n"),
            b"",
        ),
        "/api/v1/datasets/download/acme/billing" => (
            "401 Unauthorized",
            "Content-Type: application/json\r\n".to_string(),
            br#"{"code":401,"message":"Unauthenticated"}"#,
        ),
        "/storage/acme-billing.zip?sig=abc" if auth.is_none() => (
            "200 OK",
            "Content-Type: application/zip\r\n".to_string(),
            zip,
        ),
        "/storage/acme-billing.zip?sig=abc" => (
            "400 Bad Request",
            String::new(),
            b"credentials were sent to storage",
        ),
        _ => ("404 Not Found", String::new(), b"no such path"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// A zip like Kaggle's: the files under a subfolder, plus macOS resource-fork litter.
fn dataset_zip(dir: &Path) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.add_directory("billing-data/", options).expect("dir");
    let mut names: Vec<String> = table_files(dir);
    names.push("manifest.json".to_string());
    for name in names {
        let mut bytes = Vec::new();
        std::fs::File::open(dir.join(&name))
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("read");
        zip.start_file(format!("billing-data/{name}"), options)
            .expect("start");
        zip.write_all(&bytes).expect("write");
    }
    zip.start_file("__MACOSX/billing-data/._FactTable.csv", options)
        .expect("start");
    zip.write_all(b"\x00\x05\x16\x07").expect("write");
    zip.finish().expect("finish").into_inner()
}

fn kaggle(api_base: &str, key: &str) -> IngestSource {
    IngestSource::Kaggle {
        dataset: "acme/billing".to_string(),
        api_base: api_base.to_string(),
        credentials: KaggleCredentials {
            username: "alice".to_string(),
            key: key.to_string(),
        },
    }
}

#[tokio::test]
async fn a_kaggle_dataset_is_downloaded_extracted_and_its_nine_files_uploaded() {
    let moto = Moto::start();
    let s3 = moto.bucket("billing").await;
    let dir = TempDir::new("kaggle");
    nine_files(&dir.0, 500);
    let fake = FakeKaggle::start(dataset_zip(&dir.0), "alice", "s3cr3t-k3y");

    let summary = run(
        &s3,
        kaggle(&fake.api_base, "s3cr3t-k3y"),
        &IngestOptions::new("billing"),
    )
    .await
    .expect("ingest");

    assert_uploaded(&s3, &summary, &dir.0).await;
    assert!(
        summary
            .uploaded
            .iter()
            .all(|u| u.file.starts_with("billing-data/")),
        "files are named by their place in the dataset: {:?}",
        summary.uploaded
    );
    let mut skipped: Vec<&str> = summary.skipped.iter().map(|(f, _)| f.as_str()).collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "__MACOSX/billing-data/._FactTable.csv",
            "billing-data/manifest.json"
        ]
    );
}

#[tokio::test]
async fn wrong_kaggle_credentials_give_an_error_naming_the_dataset_and_status_but_not_the_key() {
    let moto = Moto::start();
    let s3 = moto.bucket("billing").await;
    let fake = FakeKaggle::start(Vec::new(), "alice", "s3cr3t-k3y");

    let e = run(
        &s3,
        kaggle(&fake.api_base, "wr0ng-k3y"),
        &IngestOptions::new("billing"),
    )
    .await
    .expect_err("wrong credentials are refused");

    let text = e.to_string();
    assert!(
        text.contains("acme/billing") && text.contains("HTTP 401"),
        "{text}"
    );
    assert!(
        text.contains("'alice'") && text.contains("KAGGLE_KEY"),
        "says what to check: {text}"
    );
    assert!(
        !text.contains("wr0ng-k3y") && !format!("{e:?}").contains("wr0ng-k3y"),
        "{e:?}"
    );
    let listed = s3
        .list_objects_v2()
        .bucket("billing")
        .send()
        .await
        .expect("list");
    assert!(listed.contents().is_empty(), "nothing was uploaded");
}

/// A variable lookup over `pairs` instead of the process environment (which parallel tests must not change).
fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn kaggle_credentials_come_from_the_environment_before_any_file() {
    let home = TempDir::new("creds-env");
    std::fs::create_dir_all(home.0.join(".kaggle")).expect("mkdir");
    std::fs::write(
        home.0.join(".kaggle/kaggle.json"),
        r#"{"username":"file","key":"fk"}"#,
    )
    .expect("write");
    let creds = KaggleCredentials::from_lookup(
        vars(&[("KAGGLE_USERNAME", "env"), ("KAGGLE_KEY", "ek")]),
        Some(&home.0),
    )
    .expect("credentials");
    assert_eq!((creds.username.as_str(), creds.key.as_str()), ("env", "ek"));
}

#[test]
fn kaggle_credentials_come_from_kaggle_json_in_the_home_folder() {
    let home = TempDir::new("creds-home");
    std::fs::create_dir_all(home.0.join(".kaggle")).expect("mkdir");
    std::fs::write(
        home.0.join(".kaggle/kaggle.json"),
        r#"{"username":"bob","key":"bk"}"#,
    )
    .expect("write");
    let creds = KaggleCredentials::from_lookup(vars(&[]), Some(&home.0)).expect("credentials");
    assert_eq!((creds.username.as_str(), creds.key.as_str()), ("bob", "bk"));
}

#[test]
fn kaggle_config_dir_says_where_kaggle_json_is() {
    let home = TempDir::new("creds-config-dir");
    std::fs::create_dir_all(home.0.join(".kaggle")).expect("mkdir");
    std::fs::write(
        home.0.join(".kaggle/kaggle.json"),
        r#"{"username":"home","key":"hk"}"#,
    )
    .expect("write");
    let config = TempDir::new("creds-config-dir-target");
    std::fs::write(
        config.0.join("kaggle.json"),
        r#"{"username":"cfg","key":"ck"}"#,
    )
    .expect("write");
    let dir = config.0.to_string_lossy();
    let creds = KaggleCredentials::from_lookup(vars(&[("KAGGLE_CONFIG_DIR", &dir)]), Some(&home.0))
        .expect("credentials");
    assert_eq!(creds.username, "cfg");
}

#[test]
fn missing_or_half_set_kaggle_credentials_say_how_to_provide_them() {
    let home = TempDir::new("creds-none");
    let e = KaggleCredentials::from_lookup(vars(&[]), Some(&home.0))
        .expect_err("no credentials")
        .to_string();
    assert!(e.contains("KAGGLE_USERNAME and KAGGLE_KEY"), "{e}");
    assert!(
        e.contains(&home.0.join(".kaggle/kaggle.json").display().to_string()),
        "{e}"
    );
    let e = KaggleCredentials::from_lookup(vars(&[("KAGGLE_USERNAME", "u")]), Some(&home.0))
        .expect_err("half set")
        .to_string();
    assert!(e.contains("KAGGLE_KEY is not"), "{e}");
}

#[test]
fn debug_output_of_kaggle_credentials_hides_the_key() {
    let creds = KaggleCredentials {
        username: "alice".to_string(),
        key: "0123456789abcdef".to_string(),
    };
    let shown = format!("{creds:?} {:?}", kaggle("http://x", "0123456789abcdef"));
    assert!(
        shown.contains("alice") && !shown.contains("0123456789abcdef"),
        "{shown}"
    );
}
