//! Ingest: put the billing tables into S3 under a bucket and prefix, from a local file or folder or from a Kaggle
//! dataset fetched through Kaggle's HTTP API, with multipart uploads for large files and bounded concurrency.
//!
//! Only files that [`route`](crate::route::route) to a table are uploaded (keys are the prefix plus the file name, so
//! the uploads land where the S3-triggered pipeline picks them up); every other file is reported as skipped.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::route::route;

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// Uploads in flight at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Multipart threshold and part size unless told otherwise.
pub const DEFAULT_PART_SIZE: u64 = 16 * MIB;
/// S3's smallest part (every part but the last must be at least this big).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest number of parts in one upload; larger files get proportionally larger parts.
const MAX_PARTS: u64 = 10_000;
/// Kaggle's public API.
pub const DEFAULT_KAGGLE_API: &str = "https://www.kaggle.com/api/v1";
/// The default key prefix: where the pipeline's S3 trigger listens.
pub const DEFAULT_PREFIX: &str = "incoming/";

/// Where and how to upload.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Destination bucket.
    pub bucket: String,
    /// Key prefix, e.g. `incoming/`; a missing trailing `/` is added.
    pub prefix: String,
    /// Requests (whole small files or parts of large ones) in flight at once; at least 1.
    pub concurrency: usize,
    /// Files of at least this many bytes go multipart, in parts of this size; at least [`MIN_PART_SIZE`].
    pub part_size: u64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl IngestOptions {
    /// Defaults for `bucket`: prefix `incoming/`, 4 at once, 16 MiB parts, no progress bar.
    pub fn new(bucket: impl Into<String>) -> Self {
        IngestOptions {
            bucket: bucket.into(),
            prefix: DEFAULT_PREFIX.to_string(),
            concurrency: DEFAULT_CONCURRENCY,
            part_size: DEFAULT_PART_SIZE,
            progress: false,
        }
    }
}

/// What to upload.
#[derive(Debug, Clone)]
pub enum IngestSource {
    /// A file, or a folder searched recursively for table files.
    Local(PathBuf),
    /// A Kaggle dataset: downloaded as a zip, extracted, then uploaded like a local folder.
    Kaggle {
        /// `owner/name`, as in the dataset's URL.
        dataset: String,
        /// API root, normally [`DEFAULT_KAGGLE_API`].
        api_base: String,
        /// The account that downloads.
        credentials: KaggleCredentials,
    },
}

impl IngestSource {
    /// The command-line form: `kaggle:owner/name` (credentials from the environment or kaggle.json), else a path.
    pub fn from_arg(arg: &str, api_base: &str) -> Result<Self, IngestError> {
        match arg.strip_prefix("kaggle:") {
            Some(dataset) => {
                parse_dataset(dataset)?;
                Ok(IngestSource::Kaggle {
                    dataset: dataset.to_string(),
                    api_base: api_base.to_string(),
                    credentials: KaggleCredentials::from_env_or_file(None)?,
                })
            }
            None => Ok(IngestSource::Local(PathBuf::from(arg))),
        }
    }
}

/// A Kaggle account's API token. `Debug` shows the username only.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct KaggleCredentials {
    /// The Kaggle user name.
    pub username: String,
    /// The API key (secret: never logged or shown).
    pub key: String,
}

impl fmt::Debug for KaggleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KaggleCredentials")
            .field("username", &self.username)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl KaggleCredentials {
    /// From the process environment: see [`KaggleCredentials::from_lookup`]. `home` overrides `$HOME`.
    pub fn from_env_or_file(home: Option<&Path>) -> Result<Self, IngestError> {
        Self::from_lookup(|k| std::env::var(k).ok(), home)
    }

    /// `KAGGLE_USERNAME` and `KAGGLE_KEY` when both are set; else `$KAGGLE_CONFIG_DIR/kaggle.json` when that
    /// variable is set; else `<home>/.kaggle/kaggle.json`, then `${XDG_CONFIG_HOME:-<home>/.config}/kaggle/kaggle.json`,
    /// where `home` is the argument or `$HOME`. `lookup` reads a variable.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Self, IngestError> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        match (var("KAGGLE_USERNAME"), var("KAGGLE_KEY")) {
            (Some(username), Some(key)) => return Ok(KaggleCredentials { username, key }),
            (Some(_), None) => {
                return Err(IngestError::HalfSetCredentials {
                    set: "KAGGLE_USERNAME",
                    unset: "KAGGLE_KEY",
                });
            }
            (None, Some(_)) => {
                return Err(IngestError::HalfSetCredentials {
                    set: "KAGGLE_KEY",
                    unset: "KAGGLE_USERNAME",
                });
            }
            (None, None) => {}
        }
        let candidates: Vec<PathBuf> = match var("KAGGLE_CONFIG_DIR") {
            Some(dir) => vec![Path::new(&dir).join("kaggle.json")],
            None => {
                let home = home
                    .map(Path::to_path_buf)
                    .or_else(|| var("HOME").map(PathBuf::from))
                    .or_else(|| var("USERPROFILE").map(PathBuf::from));
                let config = var("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| home.as_ref().map(|h| h.join(".config")));
                home.map(|h| h.join(".kaggle").join("kaggle.json"))
                    .into_iter()
                    .chain(config.map(|c| c.join("kaggle").join("kaggle.json")))
                    .collect()
            }
        };
        for path in &candidates {
            match std::fs::read(path) {
                Ok(bytes) => return parse_kaggle_json(path, &bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(IngestError::Io {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        let looked = if candidates.is_empty() {
            "~/.kaggle/kaggle.json (no home folder is known: set HOME)".to_string()
        } else {
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(IngestError::NoCredentials { looked })
    }
}

/// Parse a kaggle.json; the error never quotes the file, since the file holds the key.
fn parse_kaggle_json(path: &Path, bytes: &[u8]) -> Result<KaggleCredentials, IngestError> {
    let invalid = |e: serde_json::Error| IngestError::CredentialsFile {
        path: path.to_path_buf(),
        reason: format!(
            "not a JSON object with string fields \"username\" and \"key\" (line {}, column {})",
            e.line(),
            e.column()
        ),
    };
    let creds: KaggleCredentials = serde_json::from_slice(bytes).map_err(invalid)?;
    if creds.username.is_empty() || creds.key.is_empty() {
        return Err(IngestError::CredentialsFile {
            path: path.to_path_buf(),
            reason: "\"username\" or \"key\" is empty".to_string(),
        });
    }
    Ok(creds)
}

/// One uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The file, relative to the folder (or the dataset) it came from.
    pub file: String,
    /// Its key in the bucket.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The ETag S3 returned (quoted, as S3 sends it; multipart ETags end in `-<parts>`).
    pub etag: Option<String>,
    /// Whether it went up as a multipart upload (it was at least the part size).
    pub multipart: bool,
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSummary {
    /// The bucket uploaded to.
    pub bucket: String,
    /// In load order (the data dictionary, the dimensions, the fact table), by file name within each.
    pub uploaded: Vec<Uploaded>,
    /// Files left out: (file, reason).
    pub skipped: Vec<(String, String)>,
}

impl fmt::Display for IngestSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.uploaded.iter().map(|u| u.bytes).sum();
        let multipart = self.uploaded.iter().filter(|u| u.multipart).count();
        writeln!(
            f,
            "uploaded {} file(s), {}, to s3://{} ({multipart} multipart)",
            self.uploaded.len(),
            HumanBytes(total),
            self.bucket
        )?;
        for u in &self.uploaded {
            let how = if u.multipart { "  multipart" } else { "" };
            writeln!(
                f,
                "  {} -> s3://{}/{}  {}{how}",
                u.file,
                self.bucket,
                u.key,
                HumanBytes(u.bytes)
            )?;
        }
        if !self.skipped.is_empty() {
            writeln!(f, "skipped {} file(s):", self.skipped.len())?;
            for (file, reason) in &self.skipped {
                writeln!(f, "  {file}: {reason}")?;
            }
        }
        Ok(())
    }
}

/// Why an ingest stopped. Messages name the file, bucket and key, or the dataset and HTTP status; never a key.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The part size asked for is below [`MIN_PART_SIZE`].
    #[error("part size {got} bytes is below S3's minimum part of 5 MiB ({MIN_PART_SIZE} bytes)")]
    PartSizeTooSmall {
        /// The part size asked for, in bytes.
        got: u64,
    },
    /// The concurrency asked for is 0.
    #[error("concurrency must be at least 1")]
    NoConcurrency,
    /// The bucket name is empty.
    #[error("no bucket given")]
    NoBucket,
    /// A local file or folder could not be read or written (the source, the download or its extraction).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// An S3 request for one file failed (a failed multipart upload is aborted).
    #[error("{file}: {step} for s3://{bucket}/{key} failed: {reason}")]
    Upload {
        /// The file, relative to the folder (or the dataset) it came from.
        file: String,
        /// The destination bucket.
        bucket: String,
        /// The destination key.
        key: String,
        /// What failed: the S3 operation (`PutObject`, `UploadPart`, …) or reading the file.
        step: &'static str,
        /// The error S3 or the file system gave.
        reason: String,
    },
    /// The dataset given is not `owner/name`.
    #[error(
        "'{0}' is not a Kaggle dataset: write it as owner/name, as in kaggle.com/datasets/owner/name"
    )]
    BadDataset(String),
    /// Only one of `KAGGLE_USERNAME` and `KAGGLE_KEY` is set.
    #[error("{set} is set but {unset} is not: set both, or neither and use kaggle.json")]
    HalfSetCredentials {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is not.
        unset: &'static str,
    },
    /// Neither the variables nor any kaggle.json give Kaggle credentials.
    #[error(
        "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save the token from kaggle.com (Settings → API → \
         Create New Token) as one of: {looked}"
    )]
    NoCredentials {
        /// The kaggle.json paths looked at, comma-separated.
        looked: String,
    },
    /// A kaggle.json is not a JSON object with non-empty `username` and `key` (its content is never quoted).
    #[error("{path}: {reason}")]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Kaggle answered the download with an HTTP error status.
    #[error("Kaggle dataset {dataset}: download failed with HTTP {status}{message}: {hint}")]
    KaggleStatus {
        /// The dataset, `owner/name`.
        dataset: String,
        /// The HTTP status.
        status: u16,
        /// Kaggle's message, as ` (<message>)` with the key redacted, or empty.
        message: String,
        /// What to do about it, for the status.
        hint: String,
    },
    /// The download failed before or while the archive was received (the key redacted from the reason).
    #[error("Kaggle dataset {dataset}: download failed: {reason}")]
    KaggleDownload {
        /// The dataset, `owner/name`.
        dataset: String,
        /// What went wrong.
        reason: String,
    },
    /// The downloaded file is not a zip archive that can be extracted.
    #[error("Kaggle dataset {dataset}: the download is not a readable zip archive: {reason}")]
    BadArchive {
        /// The dataset, `owner/name`.
        dataset: String,
        /// The zip reader's error.
        reason: String,
    },
    /// A background task (the download, an upload or a part upload: the first field) panicked or was cancelled;
    /// the second field is its error.
    #[error("{0} stopped unexpectedly: {1}")]
    Task(&'static str, String),
}

/// Upload `source` to `opts.bucket` under `opts.prefix` and say what was uploaded and what was skipped.
///
/// Every file is attempted; when some fail, the first failure (in file order) is returned and the others are
/// logged. A failed multipart upload is aborted, so no parts are left behind.
pub async fn ingest(
    s3: &aws_sdk_s3::Client,
    source: IngestSource,
    opts: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    check_options(opts)?;
    match source {
        IngestSource::Local(path) => ingest_local(s3, &path, opts).await,
        IngestSource::Kaggle {
            dataset,
            api_base,
            credentials,
        } => {
            let (owner, name) = parse_dataset(&dataset)?;
            let url = format!(
                "{}/datasets/download/{owner}/{name}",
                api_base.trim_end_matches('/')
            );
            let dir = TempDir::new()?;
            let zip = dir.path().join("dataset.zip");
            let files = dir.path().join("files");
            let progress = opts.progress;
            let (d, z, f) = (dataset.clone(), zip.clone(), files.clone());
            tokio::task::spawn_blocking(move || {
                download(&d, &url, &credentials, &z, progress)?;
                extract(&d, &z, &f)?;
                std::fs::remove_file(&z).map_err(|source| IngestError::Io { path: z, source })
            })
            .await
            .map_err(|e| IngestError::Task("the Kaggle download", e.to_string()))??;
            ingest_local(s3, &files, opts).await
        }
    }
}

fn check_options(opts: &IngestOptions) -> Result<(), IngestError> {
    if opts.bucket.is_empty() {
        return Err(IngestError::NoBucket);
    }
    if opts.concurrency == 0 {
        return Err(IngestError::NoConcurrency);
    }
    if opts.part_size < MIN_PART_SIZE {
        return Err(IngestError::PartSizeTooSmall {
            got: opts.part_size,
        });
    }
    Ok(())
}

/// `owner/name`, each of letters, digits, `-`, `_` and `.` (and not `.` or `..`).
fn parse_dataset(dataset: &str) -> Result<(&str, &str), IngestError> {
    let ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match dataset.split_once('/') {
        Some((owner, name)) if ok(owner) && ok(name) => Ok((owner, name)),
        _ => Err(IngestError::BadDataset(dataset.to_string())),
    }
}

/// The prefix with exactly one trailing `/` (or empty) and no leading `/`.
fn normalize_prefix(prefix: &str) -> String {
    let p = prefix.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

/// A file chosen for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    path: PathBuf,
    file: String,
    key: String,
    bytes: u64,
    kind: crate::schema::TableKind,
}

/// What an ingest of a folder will do.
struct Plan {
    uploads: Vec<Planned>,
    skipped: Vec<(String, String)>,
}

/// The table a local CSV file's header routes to, read as the loader reads it.
fn route_local_by_header(path: &Path) -> Result<&'static crate::schema::Table, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let input = crate::source::decompress(Box::new(file), &path.to_string_lossy())
        .map_err(|e| e.to_string())?;
    let mut records = crate::source::Records::new(input).map_err(|e| e.to_string())?;
    let header = records
        .next_record()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the file is empty".to_string())?;
    crate::route::route_by_header(&header.fields).map_err(|e| e.to_string())
}

/// The table files under `root` (or `root` itself) with their keys, and the files left out with why.
fn plan(root: &Path, prefix: &str) -> Result<Plan, IngestError> {
    let meta = std::fs::metadata(root).map_err(|source| IngestError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(root, &mut files)?;
    } else {
        files.push(root.to_path_buf());
    }
    files.sort();
    let prefix = normalize_prefix(prefix);
    let mut planned: Vec<Planned> = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let shown = if meta.is_dir() {
            path.strip_prefix(root).unwrap_or(&path)
        } else {
            Path::new(path.file_name().unwrap_or(path.as_os_str()))
        };
        let shown = shown.to_string_lossy().replace('\\', "/");
        let name = crate::route::file_name(&shown).to_string();
        if !crate::route::is_csv_name(&name) {
            skipped.push((shown, "not a .csv or .csv.gz file".to_string()));
            continue;
        }
        let table = match route(&name) {
            Ok(table) => table,
            // The name decides nothing: the header may (as the loader will decide it).
            Err(e) => match route_local_by_header(&path) {
                Ok(table) => table,
                Err(reason) => {
                    skipped.push((shown, format!("{e}; {reason}")));
                    continue;
                }
            },
        };
        let key = format!("{prefix}{name}");
        if let Some(first) = planned.iter().find(|p| p.key == key) {
            let reason = format!(
                "same file name as {}, which already goes to {key}",
                first.file
            );
            skipped.push((shown, reason));
            continue;
        }
        let bytes = std::fs::metadata(&path)
            .map_err(|source| IngestError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        planned.push(Planned {
            path,
            file: shown,
            key,
            bytes,
            kind: table.kind,
        });
    }
    // Uploaded in the order a folder loads (dictionary, dimensions, fact table), so that the events usually arrive
    // in that order too and the fact load finds its dimensions (files may still arrive in any order).
    planned.sort_by_key(|p| match p.kind {
        crate::schema::TableKind::Dictionary => 0,
        crate::schema::TableKind::Dimension => 1,
        crate::schema::TableKind::Fact | crate::schema::TableKind::Ledger => 2,
    });
    Ok(Plan {
        uploads: planned,
        skipped,
    })
}

/// Regular files under `dir`, recursively; symlinks to files count, symlinked folders are not followed.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IngestError> {
    let io_err = |source| IngestError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err)?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

async fn ingest_local(
    s3: &aws_sdk_s3::Client,
    root: &Path,
    opts: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    let Plan {
        uploads: planned,
        skipped,
    } = plan(root, &opts.prefix)?;
    let total: u64 = planned.iter().map(|p| p.bytes).sum();
    let bar = if opts.progress {
        progress_bar(total, &format!("s3://{}", opts.bucket))
    } else {
        ProgressBar::hidden()
    };
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let mut tasks = JoinSet::new();
    for (i, p) in planned.into_iter().enumerate() {
        let job = Job {
            s3: s3.clone(),
            bucket: opts.bucket.clone(),
            part_size: opts.part_size,
            permits: permits.clone(),
            bar: bar.clone(),
        };
        tasks.spawn(async move { (i, job.upload(p).await) });
    }
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(done) = tasks.join_next().await {
        results.push(done.map_err(|e| IngestError::Task("an upload", e.to_string()))?);
    }
    bar.finish_and_clear();
    results.sort_by_key(|(i, _)| *i);
    let mut uploaded = Vec::with_capacity(results.len());
    let mut first_error = None;
    for (_, result) in results {
        match result {
            Ok(u) => uploaded.push(u),
            Err(e) if first_error.is_none() => first_error = Some(e),
            Err(e) => tracing::error!(error = %e, "upload failed"),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(IngestSummary {
            bucket: opts.bucket.clone(),
            uploaded,
            skipped,
        }),
    }
}

fn progress_bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// What every upload of one ingest shares: each request (a whole file or one part) holds a permit while in flight.
#[derive(Clone)]
struct Job {
    s3: aws_sdk_s3::Client,
    bucket: String,
    part_size: u64,
    permits: Arc<Semaphore>,
    bar: ProgressBar,
}

impl Job {
    fn failed(&self, p: &Planned, step: &'static str, reason: impl fmt::Display) -> IngestError {
        IngestError::Upload {
            file: p.file.clone(),
            bucket: self.bucket.clone(),
            key: p.key.clone(),
            step,
            reason: reason.to_string(),
        }
    }

    async fn upload(self, p: Planned) -> Result<Uploaded, IngestError> {
        if p.bytes >= self.part_size {
            self.multipart(p).await
        } else {
            self.put(p).await
        }
    }

    async fn put(self, p: Planned) -> Result<Uploaded, IngestError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| self.failed(&p, "PutObject", e))?;
        let body = ByteStream::from_path(&p.path)
            .await
            .map_err(|e| self.failed(&p, "reading the file", e))?;
        let out = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&p.key)
            .content_type(content_type(&p.key))
            .body(body)
            .send()
            .await
            .map_err(|e| self.failed(&p, "PutObject", DisplayErrorContext(&e)))?;
        self.bar.inc(p.bytes);
        Ok(Uploaded {
            file: p.file,
            key: p.key,
            bytes: p.bytes,
            etag: out.e_tag,
            multipart: false,
        })
    }

    async fn multipart(self, p: Planned) -> Result<Uploaded, IngestError> {
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&p.key)
            .content_type(content_type(&p.key))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| self.failed(&p, "CreateMultipartUpload", DisplayErrorContext(&e)))?;
        let upload_id = created.upload_id.ok_or_else(|| {
            self.failed(&p, "CreateMultipartUpload", "no upload id in the answer")
        })?;
        let finished = match self.parts(&p, &upload_id).await {
            Ok(parts) => self
                .s3
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&p.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.failed(&p, "CompleteMultipartUpload", DisplayErrorContext(&e))),
            Err(e) => Err(e),
        };
        match finished {
            Ok(out) => Ok(Uploaded {
                file: p.file,
                key: p.key,
                bytes: p.bytes,
                etag: out.e_tag,
                multipart: true,
            }),
            Err(e) => {
                let aborted = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&p.key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                if let Err(abort) = aborted {
                    tracing::warn!(
                        bucket = %self.bucket, key = %p.key, upload_id = %upload_id,
                        error = %DisplayErrorContext(&abort),
                        "could not abort the multipart upload; its parts stay billed until a lifecycle rule removes them"
                    );
                }
                Err(e)
            }
        }
    }

    /// Upload every part (each streamed from its range of the file) and return them in order.
    async fn parts(&self, p: &Planned, upload_id: &str) -> Result<Vec<CompletedPart>, IngestError> {
        let size = part_size_for(p.bytes, self.part_size);
        let count = p.bytes.div_ceil(size);
        let mut tasks = JoinSet::new();
        for index in 0..count {
            let (job, p, upload_id) = (self.clone(), p.clone(), upload_id.to_string());
            let offset = index * size;
            let len = size.min(p.bytes - offset);
            tasks.spawn(async move { job.part(&p, &upload_id, index + 1, offset, len).await });
        }
        let mut parts = Vec::with_capacity(tasks.len());
        while let Some(done) = tasks.join_next().await {
            let part = done
                .map_err(|e| IngestError::Task("a part upload", e.to_string()))
                .and_then(|r| r);
            match part {
                Ok(part) => parts.push(part),
                Err(e) => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    return Err(e);
                }
            }
        }
        parts.sort_by_key(|part| part.part_number);
        Ok(parts)
    }

    async fn part(
        &self,
        p: &Planned,
        upload_id: &str,
        number: u64,
        offset: u64,
        len: u64,
    ) -> Result<CompletedPart, IngestError> {
        let step = "UploadPart";
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| self.failed(p, step, e))?;
        let body = ByteStream::read_from()
            .path(&p.path)
            .offset(offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| self.failed(p, "reading the file", e))?;
        let number = i32::try_from(number).map_err(|e| self.failed(p, step, e))?;
        let out = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&p.key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                self.failed(
                    p,
                    step,
                    format!("part {number}: {}", DisplayErrorContext(&e)),
                )
            })?;
        self.bar.inc(len);
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .build())
    }
}

/// The part size for a file: the configured one, grown when the file would need more than S3's 10,000 parts.
fn part_size_for(bytes: u64, part_size: u64) -> u64 {
    part_size.max(bytes.div_ceil(MAX_PARTS))
}

fn content_type(key: &str) -> &'static str {
    match crate::route::table_file_stem(key) {
        Some((_, crate::route::Compression::Gzip)) => "application/gzip",
        _ => "text/csv",
    }
}

/// Download `url` to `to` with HTTP Basic auth, following redirects (the credentials are not sent on to the
/// redirect's target, which for Kaggle is a signed storage URL).
fn download(
    dataset: &str,
    url: &str,
    credentials: &KaggleCredentials,
    to: &Path,
    progress: bool,
) -> Result<(), IngestError> {
    let failed = |reason: String| IngestError::KaggleDownload {
        dataset: dataset.to_string(),
        reason: reason.replace(&credentials.key, "<redacted>"),
    };
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(concat!("healthetl/", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.key));
    let response = agent
        .get(url)
        .header("Authorization", format!("Basic {token}"))
        .call()
        .map_err(|e| failed(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = response.into_body();
    if !(200..300).contains(&status) {
        let text = body
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        return Err(IngestError::KaggleStatus {
            dataset: dataset.to_string(),
            status,
            message: status_message(&text, &credentials.key),
            hint: status_hint(status, &credentials.username),
        });
    }
    let bar = if progress {
        progress_bar(length.unwrap_or(0), &format!("kaggle {dataset}"))
    } else {
        ProgressBar::hidden()
    };
    let file = std::fs::File::create(to).map_err(|source| IngestError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    let mut sink = Counted {
        inner: io::BufWriter::with_capacity(1 << 20, file),
        bar: &bar,
    };
    io::copy(&mut body.into_reader(), &mut sink)
        .map_err(|e| failed(format!("reading the body: {e}")))?;
    sink.flush().map_err(|source| IngestError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// The `message` of Kaggle's JSON error body, if any, as `: message`, with the key masked should it ever appear.
fn status_message(body: &str, key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({})", m.replace(key, "<redacted>")))
        .unwrap_or_default()
}

fn status_hint(status: u16, username: &str) -> String {
    match status {
        401 => format!(
            "Kaggle did not accept the token of user '{username}'; check KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json \
             (a new token comes from kaggle.com, Settings → API)"
        ),
        403 => "the account may first have to accept the dataset's rules on its Kaggle page"
            .to_string(),
        404 => "no such dataset: check owner/name against the dataset's URL".to_string(),
        429 => "Kaggle is rate-limiting this account; try again later".to_string(),
        _ => "try again later; if it persists, check the dataset page on kaggle.com".to_string(),
    }
}

/// A writer that advances a progress bar.
struct Counted<'a, W> {
    inner: W,
    bar: &'a ProgressBar,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Extract the regular files of `zip` under `dir`; entries whose names would escape `dir`, and symlinks, are left out.
fn extract(dataset: &str, zip: &Path, dir: &Path) -> Result<(), IngestError> {
    let bad = |e: zip::result::ZipError| IngestError::BadArchive {
        dataset: dataset.to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(zip).map_err(|source| IngestError::Io {
        path: zip.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(bad)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        if !entry.is_file() || entry.is_symlink() {
            continue;
        }
        let Some(relative) = entry.enclosed_name() else {
            tracing::warn!(dataset, entry = %entry.name().unwrap_or_default(), "zip entry with an unsafe path left out");
            continue;
        };
        let path = dir.join(relative);
        let io_err = |source| IngestError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut out = io::BufWriter::new(std::fs::File::create(&path).map_err(io_err)?);
        io::copy(&mut entry, &mut out).map_err(io_err)?;
        out.flush().map_err(io_err)?;
    }
    Ok(())
}

/// A fresh folder under the system temp dir, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, IngestError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "healthetl-ingest-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).map_err(|source| IngestError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "could not remove a temporary folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_uploaded_dictionary_first_then_dimensions_then_the_fact_table() {
        let dir = std::env::temp_dir().join(format!("healthetl-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in [
            ("FactTable.csv", "FactTablePK\n"),
            ("dimPayer.csv", "dimPayerPK,PayerName\n"),
            (
                "DimPhyscian.csv",
                "dimPhysicianPK,ProviderNpi,ProviderName,ProviderSpecialty,ProviderFTE\n",
            ),
            ("Datadictionery.csv", "Table,Column,Definition\n"),
            ("Afile.csv", "dimLocationPK,LocationName\n"),
        ] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        let plan = plan(&dir, "incoming/").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let order: Vec<&str> = plan.uploads.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(
            order,
            [
                "Datadictionery.csv",
                "Afile.csv",
                "DimPhyscian.csv",
                "dimPayer.csv",
                "FactTable.csv"
            ]
        );
    }

    #[test]
    fn datasets_are_owner_slash_name_of_safe_characters() {
        assert_eq!(
            parse_dataset("acme/billing-2024").ok(),
            Some(("acme", "billing-2024"))
        );
        assert_eq!(parse_dataset("a.b/c_d").ok(), Some(("a.b", "c_d")));
        for bad in [
            "acme", "acme/", "/billing", "a/b/c", "../x", "a/..", "a b/c", "a/b?x=1", "",
        ] {
            assert!(parse_dataset(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn the_prefix_gets_one_trailing_slash_and_no_leading_one() {
        assert_eq!(normalize_prefix("incoming/"), "incoming/");
        assert_eq!(normalize_prefix("incoming"), "incoming/");
        assert_eq!(normalize_prefix("/a/b"), "a/b/");
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
    }

    #[test]
    fn parts_grow_only_when_a_file_would_need_more_than_ten_thousand() {
        assert_eq!(part_size_for(12 * MIB, 5 * MIB), 5 * MIB);
        assert_eq!(part_size_for(100_000 * MIB, 5 * MIB), 10 * MIB);
        assert!((200_000 * MIB).div_ceil(part_size_for(200_000 * MIB, 16 * MIB)) <= MAX_PARTS);
    }

    #[test]
    fn options_below_s3_limits_are_refused() {
        let mut o = IngestOptions::new("b");
        assert!(check_options(&o).is_ok());
        o.part_size = MIN_PART_SIZE - 1;
        assert!(matches!(
            check_options(&o),
            Err(IngestError::PartSizeTooSmall { .. })
        ));
        o.part_size = MIN_PART_SIZE;
        o.concurrency = 0;
        assert!(matches!(check_options(&o), Err(IngestError::NoConcurrency)));
        assert!(matches!(
            check_options(&IngestOptions::new("")),
            Err(IngestError::NoBucket)
        ));
    }

    #[test]
    fn a_malformed_kaggle_json_is_refused_without_quoting_it() {
        for body in [
            &b"{\"username\": \"u\", \"key\": 12345678}"[..],
            b"{\"username\": \"u\", \"key\": \"\"}",
            b"nope",
        ] {
            let e = parse_kaggle_json(Path::new("/h/kaggle.json"), body)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("/h/kaggle.json: "), "{e}");
            assert!(!e.contains("12345678") && !e.contains("nope"), "{e}");
        }
    }

    #[test]
    fn kaggle_error_messages_are_shown_and_a_key_in_them_masked() {
        assert_eq!(
            status_message(r#"{"code":403,"message":"Forbidden"}"#, "k3y"),
            " (Forbidden)"
        );
        assert_eq!(
            status_message(r#"{"message":"bad k3y"}"#, "k3y"),
            " (bad <redacted>)"
        );
        assert_eq!(status_message("<html>", "k3y"), "");
        assert!(status_hint(401, "alice").contains("'alice'"));
    }

    #[test]
    fn the_summary_lists_uploads_with_their_s3_urls_and_skips_with_their_reasons() {
        let summary = IngestSummary {
            bucket: "b".to_string(),
            uploaded: vec![Uploaded {
                file: "sub/FactTable.csv".to_string(),
                key: "incoming/FactTable.csv".to_string(),
                bytes: 2048,
                etag: Some("\"x-2\"".to_string()),
                multipart: true,
            }],
            skipped: vec![(
                "notes.txt".to_string(),
                "not a .csv or .csv.gz file".to_string(),
            )],
        };
        let text = summary.to_string();
        assert!(
            text.starts_with("uploaded 1 file(s), 2.00 KiB, to s3://b (1 multipart)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sub/FactTable.csv -> s3://b/incoming/FactTable.csv  2.00 KiB  multipart"
            ),
            "{text}"
        );
        assert!(
            text.contains("skipped 1 file(s):\n  notes.txt: not a .csv or .csv.gz file"),
            "{text}"
        );
    }
}
