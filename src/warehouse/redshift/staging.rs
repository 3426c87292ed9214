//! Staging for Redshift's COPY: the cleaned rows as compressed CSV parts (zstd, or gzip), spilled to local files
//! while the object is parsed (memory stays flat: one block of rows and one compressor per part), then uploaded
//! once to `<prefix><load-id>/part-NNNN.csv.zst` with a COPY manifest beside them, and removed after the load.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::utc;
use crate::config::PartCompression;

use aws_sdk_s3::primitives::ByteStream;
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::source::hex;

/// Rows go to one part in blocks of about this many bytes, round-robin: small files become one part, large files
/// are spread evenly. Rows are never split.
pub const BLOCK: usize = 256 * 1024;
/// Uploads in flight at once.
const UPLOADS: usize = 4;

/// Writes rows, block by block, into up to `wanted` gzip part files in a directory of its own.
pub struct PartWriter {
    dir: PathBuf,
    wanted: usize,
    compression: PartCompression,
    parts: Vec<Part>,
    next: usize,
    block: Vec<u8>,
    block_rows: u64,
}

struct Part {
    path: PathBuf,
    encoder: Encoder,
    rows: u64,
}

/// One part's compressor, writing into its file.
enum Encoder {
    Gzip(GzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Encoder {
    fn new(file: BufWriter<File>, compression: PartCompression) -> io::Result<Encoder> {
        Ok(match compression {
            PartCompression::Gzip => Encoder::Gzip(GzEncoder::new(file, Compression::fast())),
            PartCompression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(file, 1)?),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(bytes),
            Encoder::Zstd(e) => e.write_all(bytes),
        }
    }

    /// End the stream; the file it wrote into.
    fn finish(self) -> io::Result<BufWriter<File>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// One finished part file.
#[derive(Debug, Clone)]
pub struct PartFile {
    /// The local gzip file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its compressed size.
    pub bytes: u64,
}

impl PartWriter {
    /// Parts go into `dir` (created); at most `wanted` of them (at least one), compressed so.
    pub fn new(dir: &Path, wanted: usize, compression: PartCompression) -> io::Result<PartWriter> {
        fs::create_dir_all(dir)?;
        Ok(PartWriter {
            dir: dir.to_path_buf(),
            wanted: wanted.max(1),
            compression,
            parts: Vec::new(),
            next: 0,
            block: Vec::with_capacity(BLOCK + 4096),
            block_rows: 0,
        })
    }

    /// The buffer the next row is written into; call [`PartWriter::end_row`] after each complete row.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.block
    }

    /// A complete row (with its line end) is in the buffer; a full block goes to the next part.
    pub fn end_row(&mut self) -> io::Result<()> {
        self.block_rows += 1;
        if self.block.len() >= BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        if self.next == self.parts.len() {
            let path = self.dir.join(part_name(self.parts.len(), self.compression));
            let file = BufWriter::with_capacity(64 * 1024, File::create(&path)?);
            self.parts.push(Part {
                path,
                encoder: Encoder::new(file, self.compression)?,
                rows: 0,
            });
        }
        let part = &mut self.parts[self.next];
        part.encoder.write_all(&self.block)?;
        part.rows += self.block_rows;
        self.block.clear();
        self.block_rows = 0;
        self.next = (self.next + 1) % self.wanted;
        Ok(())
    }

    /// Write what is buffered and close every part. Parts that received no rows are not created.
    pub fn finish(mut self) -> io::Result<Vec<PartFile>> {
        self.flush_block()?;
        let mut files = Vec::with_capacity(self.parts.len());
        for part in self.parts {
            let mut file = part.encoder.finish()?;
            file.flush()?;
            let bytes = file.get_ref().metadata()?.len();
            files.push(PartFile {
                path: part.path,
                rows: part.rows,
                bytes,
            });
        }
        Ok(files)
    }
}

/// `part-0000.csv.zst`, `part-0001.csv.zst`, … (`.gz` for gzip parts)
pub fn part_name(index: usize, compression: PartCompression) -> String {
    format!("part-{index:04}.csv.{}", compression.extension())
}

static LOADS: AtomicU64 = AtomicU64::new(0);

/// A load id that sorts by time and cannot collide: `20240601T120000Z-fact_table-1a2b3c4d5e6f`.
pub fn load_id(table: &str, identity: &str, now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(identity.as_bytes());
    hasher.update(since.as_nanos().to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(LOADS.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let digest = hex(&hasher.finalize());
    let (date, time) = utc(since.as_secs());
    format!(
        "{}T{}Z-{table}-{}",
        date.replace('-', ""),
        time.replace(':', ""),
        &digest[..12]
    )
}

/// Where the parts of one load live in S3.
#[derive(Debug, Clone)]
pub struct StagedLoad {
    /// The staging bucket.
    pub bucket: String,
    /// Every key written (parts, then the manifest), for cleanup.
    pub keys: Vec<String>,
    /// `s3://bucket/<folder>manifest`.
    pub manifest_url: String,
    /// Rows in all parts.
    pub rows: u64,
    /// How the parts are compressed (the COPY says so).
    pub compression: PartCompression,
}

/// The COPY manifest naming every part; `mandatory` so a missing part fails the COPY instead of loading less.
pub fn manifest(bucket: &str, keys: &[String]) -> String {
    let entries: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| serde_json::json!({ "url": format!("s3://{bucket}/{k}"), "mandatory": true }))
        .collect();
    serde_json::json!({ "entries": entries }).to_string()
}

/// Upload the part files (streamed from disk, a few at a time) and then the manifest.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    folder: &str,
    parts: &[PartFile],
    compression: PartCompression,
) -> Result<StagedLoad, String> {
    let keys: Vec<String> = (0..parts.len())
        .map(|i| format!("{folder}{}", part_name(i, compression)))
        .collect();
    let mut staged = StagedLoad {
        bucket: bucket.to_string(),
        keys: Vec::new(),
        manifest_url: format!("s3://{bucket}/{folder}manifest"),
        rows: parts.iter().map(|p| p.rows).sum(),
        compression,
    };
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(UPLOADS));
    let mut uploads = tokio::task::JoinSet::new();
    for (part, key) in parts.iter().zip(&keys) {
        let (s3, bucket, key, path) = (
            s3.clone(),
            bucket.to_string(),
            key.clone(),
            part.path.clone(),
        );
        let permits = permits.clone();
        uploads.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            let body = ByteStream::from_path(&path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            put(&s3, &bucket, &key, body, compression.content_type()).await?;
            Ok::<String, String>(key)
        });
    }
    let mut results = Vec::with_capacity(keys.len());
    while let Some(joined) = uploads.join_next().await {
        results.push(
            joined
                .map_err(|e| format!("upload task: {e}"))
                .and_then(|r| r),
        );
    }
    let mut failure = None;
    for result in results {
        match result {
            Ok(key) => staged.keys.push(key),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        remove(s3, &staged).await;
        return Err(e);
    }
    let manifest_key = format!("{folder}manifest");
    let body = ByteStream::from(manifest(bucket, &keys).into_bytes());
    if let Err(e) = put(s3, bucket, &manifest_key, body, "application/json").await {
        remove(s3, &staged).await;
        return Err(e);
    }
    staged.keys.push(manifest_key);
    Ok(staged)
}

async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: ByteStream,
    content_type: &str,
) -> Result<(), String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body)
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

/// Delete every staged object. Failures are logged, not raised: the bucket's lifecycle rule expires the staging
/// prefix anyway.
pub async fn remove(s3: &aws_sdk_s3::Client, staged: &StagedLoad) {
    for key in &staged.keys {
        if let Err(e) = s3
            .delete_object()
            .bucket(&staged.bucket)
            .key(key)
            .send()
            .await
        {
            tracing::warn!(bucket = %staged.bucket, key = %key,
                error = %aws_sdk_s3::error::DisplayErrorContext(&e), "staged object not deleted");
        }
    }
}

/// The bucket of an `s3://bucket/key` URI.
pub fn bucket_of(uri: &str) -> Option<&str> {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split('/').next())
        .filter(|b| !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A part's text, decoded as its extension says.
    fn read_part(path: &Path) -> String {
        let mut text = String::new();
        let file = File::open(path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => flate2::read::GzDecoder::new(file).read_to_string(&mut text),
            Some("zst") => zstd::stream::read::Decoder::new(file)
                .unwrap()
                .read_to_string(&mut text),
            other => panic!("unexpected part extension {other:?}"),
        }
        .unwrap();
        text
    }

    const BOTH: [PartCompression; 2] = [PartCompression::Zstd, PartCompression::Gzip];

    #[test]
    fn rows_are_spread_over_parts_in_whole_blocks() {
        for compression in BOTH {
            spread_over_parts(compression);
        }
    }

    fn spread_over_parts(compression: PartCompression) {
        let dir = std::env::temp_dir().join(format!(
            "healthetl-parts-{}-{}",
            std::process::id(),
            compression.extension()
        ));
        let mut w = PartWriter::new(&dir, 3, compression).unwrap();
        let row = format!("{},\"{}\",1\n", 7, "x".repeat(1000));
        let rows = 4 * BLOCK / row.len() + 10;
        for _ in 0..rows {
            w.buffer().extend_from_slice(row.as_bytes());
            w.end_row().unwrap();
        }
        let parts = w.finish().unwrap();
        assert_eq!(parts.len(), 3);
        assert!(
            parts.iter().all(|p| p
                .path
                .to_string_lossy()
                .ends_with(&format!(".csv.{}", compression.extension()))),
            "{parts:?}"
        );
        assert_eq!(parts.iter().map(|p| p.rows).sum::<u64>(), rows as u64);
        let mut lines = 0;
        for p in &parts {
            let text = read_part(&p.path);
            assert!(text.ends_with('\n'));
            assert_eq!(text.lines().count() as u64, p.rows);
            assert!(text.lines().all(|l| l == row.trim_end()));
            lines += p.rows;
        }
        assert_eq!(lines, rows as u64);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_small_object_is_one_part_and_an_empty_one_none() {
        let dir = std::env::temp_dir().join(format!("healthetl-small-{}", std::process::id()));
        let mut w = PartWriter::new(&dir, 8, PartCompression::Zstd).unwrap();
        w.buffer().extend_from_slice(b"1,\"a\",2\n");
        w.end_row().unwrap();
        let parts = w.finish().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(read_part(&parts[0].path), "1,\"a\",2\n");
        assert!(
            PartWriter::new(&dir.join("empty"), 8, PartCompression::Gzip)
                .unwrap()
                .finish()
                .unwrap()
                .is_empty()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_manifest_lists_every_part_as_mandatory() {
        let keys = vec![
            "staging/x/part-0000.csv.gz".to_string(),
            "staging/x/part-0001.csv.gz".to_string(),
        ];
        assert_eq!(
            manifest("b", &keys),
            "{\"entries\":[{\"url\":\"s3://b/staging/x/part-0000.csv.gz\",\"mandatory\":true},\
             {\"url\":\"s3://b/staging/x/part-0001.csv.gz\",\"mandatory\":true}]}"
        );
    }

    #[test]
    fn load_ids_sort_by_time_and_name_the_table() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_717_243_200);
        let a = load_id("dim_payer", "etag:1", t);
        let b = load_id("dim_payer", "etag:1", t);
        assert!(a.starts_with("20240601T120000Z-dim_payer-"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn buckets_come_from_s3_uris_only() {
        assert_eq!(bucket_of("s3://landing/incoming/x.csv"), Some("landing"));
        assert_eq!(bucket_of("file:///tmp/x.csv"), None);
    }
}
