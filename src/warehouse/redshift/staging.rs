//! Staging for Redshift's COPY: the cleaned rows as compressed CSV parts (zstd, or gzip), streamed to S3 while
//! the object is parsed. Parts are written one after another, each an equal share of the object; a part's
//! compressed bytes leave in pieces of [`CHUNK`] as an S3 multipart upload (a part smaller than one piece is one
//! PUT), so nothing touches local disk and memory holds one piece being filled, one queued and one in flight,
//! whatever the object's size. A COPY manifest naming every part follows the last one; everything is removed
//! after the load.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::utc;
use crate::config::PartCompression;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// Rows reach the compressor in blocks of about this many bytes; a part holds at least one block.
pub const BLOCK: usize = 256 * 1024;
/// Compressed bytes per multipart piece: S3's smallest part (5 MiB; only an upload's last part may be smaller).
pub const CHUNK: usize = 5 * 1024 * 1024;
/// A part's CSV size when the object's size is unknown.
pub const UNSIZED_PART: u64 = 64 * 1024 * 1024;

/// Where the parts of one object end: each of the `wanted` parts takes an equal share of the object's stored
/// bytes, measured by how far the reader has got (`read`), so the number of parts is `wanted` whatever the
/// object's compression or the CSV's growth. Without a size, parts end after [`UNSIZED_PART`] bytes of CSV.
#[derive(Debug, Clone)]
pub struct PartPlan {
    wanted: usize,
    size: Option<u64>,
    read: Arc<AtomicU64>,
}

impl PartPlan {
    /// `wanted` parts (at least one) of an object of `size` stored bytes, of which `read` have been read.
    pub fn new(wanted: usize, size: Option<u64>, read: Arc<AtomicU64>) -> PartPlan {
        PartPlan {
            wanted: wanted.max(1),
            size: size.filter(|&s| s > 0),
            read,
        }
    }

    /// Whether part `index` (0-based), holding `csv` bytes, is complete.
    fn full(&self, index: usize, csv: u64) -> bool {
        if csv < BLOCK as u64 {
            return false;
        }
        match self.size {
            Some(size) => {
                let index = index as u64 + 1;
                let wanted = self.wanted as u64;
                index < wanted
                    && u128::from(self.read.load(Ordering::Relaxed)) * u128::from(wanted)
                        >= u128::from(size) * u128::from(index)
            }
            None => csv >= UNSIZED_PART,
        }
    }
}

/// What the parsing thread hands the uploader, in order.
#[derive(Debug)]
pub enum Piece {
    /// At least [`CHUNK`] compressed bytes of a part; more follow.
    Chunk {
        /// The part's index.
        part: usize,
        /// Compressed bytes.
        bytes: Vec<u8>,
    },
    /// The rest of a part: it is complete.
    Last {
        /// The part's index.
        part: usize,
        /// Its last compressed bytes.
        bytes: Vec<u8>,
        /// Rows in the whole part.
        rows: u64,
    },
    /// Every row is written.
    Done {
        /// Parts written.
        parts: usize,
        /// Rows in them.
        rows: u64,
    },
}

/// Why a piece could not be handed on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Compressing failed.
    #[error("cannot compress the staged parts: {0}")]
    Io(#[from] io::Error),
    /// The uploader stopped (it failed, and says why).
    #[error("the staging upload stopped")]
    Closed,
}

/// Takes each piece; `false` when the uploader is gone.
pub type PieceSink = Box<dyn FnMut(Piece) -> bool + Send>;

/// Writes rows, block by block, into compressed parts one after another, handing out pieces as they fill.
pub struct PartStream {
    plan: PartPlan,
    compression: PartCompression,
    out: PieceSink,
    /// The part being written (its index is `part`).
    encoder: Option<Encoder>,
    part: usize,
    part_rows: u64,
    part_csv: u64,
    rows: u64,
    block: Vec<u8>,
    block_rows: u64,
}

/// One part's compressor, writing into memory.
enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(compression: PartCompression) -> io::Result<Encoder> {
        let out = Vec::with_capacity(CHUNK + BLOCK);
        Ok(match compression {
            PartCompression::Gzip => Encoder::Gzip(GzEncoder::new(out, Compression::fast())),
            PartCompression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, 1)?),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(bytes),
            Encoder::Zstd(e) => e.write_all(bytes),
        }
    }

    /// The compressed bytes not yet handed out (the compressors only ever append to it).
    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// End the stream; the bytes not yet handed out.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl PartStream {
    /// Parts as `plan` says, compressed so, handed to `out`.
    pub fn new(plan: PartPlan, compression: PartCompression, out: PieceSink) -> PartStream {
        PartStream {
            plan,
            compression,
            out,
            encoder: None,
            part: 0,
            part_rows: 0,
            part_csv: 0,
            rows: 0,
            block: Vec::with_capacity(BLOCK + 4096),
            block_rows: 0,
        }
    }

    /// The buffer the next row is written into; call [`PartStream::end_row`] after each complete row.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.block
    }

    /// A complete row (with its line end) is in the buffer; a full block goes to the part.
    pub fn end_row(&mut self) -> Result<(), StreamError> {
        self.block_rows += 1;
        if self.block.len() >= BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    fn send(&mut self, piece: Piece) -> Result<(), StreamError> {
        if (self.out)(piece) {
            Ok(())
        } else {
            Err(StreamError::Closed)
        }
    }

    fn flush_block(&mut self) -> Result<(), StreamError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let encoder = match &mut self.encoder {
            Some(e) => e,
            None => self.encoder.insert(Encoder::new(self.compression)?),
        };
        encoder.write_all(&self.block)?;
        self.part_rows += self.block_rows;
        self.part_csv += self.block.len() as u64;
        self.block.clear();
        self.block_rows = 0;
        if encoder.output().len() >= CHUNK {
            let bytes = std::mem::replace(encoder.output(), Vec::with_capacity(CHUNK + BLOCK));
            self.send(Piece::Chunk {
                part: self.part,
                bytes,
            })?;
        }
        if self.plan.full(self.part, self.part_csv) {
            self.end_part()?;
        }
        Ok(())
    }

    fn end_part(&mut self) -> Result<(), StreamError> {
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        let bytes = encoder.finish()?;
        let rows = std::mem::take(&mut self.part_rows);
        self.send(Piece::Last {
            part: self.part,
            bytes,
            rows,
        })?;
        self.rows += rows;
        self.part += 1;
        self.part_csv = 0;
        Ok(())
    }

    /// Write what is buffered, complete the last part and say so. An object without rows has no parts.
    pub fn finish(mut self) -> Result<(), StreamError> {
        self.flush_block()?;
        self.end_part()?;
        let (parts, rows) = (self.part, self.rows);
        self.send(Piece::Done { parts, rows })
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
    let digest = hex::encode(hasher.finalize());
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
    /// The parts' compressed bytes.
    pub bytes: u64,
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

/// Whether the uploader has more to take.
#[derive(Debug)]
pub enum Step {
    /// More pieces follow.
    More,
    /// Every part and the manifest are in S3 (`None`: the object had no rows, nothing was staged).
    Done(Option<StagedLoad>),
}

/// Puts the pieces of one load into S3 under `folder`, in order: each part as a multipart upload (or one PUT when
/// it is a single piece), then the manifest.
pub struct Uploader {
    s3: aws_sdk_s3::Client,
    staged: StagedLoad,
    folder: String,
    /// The part being uploaded in pieces.
    open: Option<OpenPart>,
}

struct OpenPart {
    key: String,
    upload_id: String,
    done: Vec<CompletedPart>,
}

impl Uploader {
    /// Stage into `s3://bucket/<folder>…`.
    pub fn new(
        s3: aws_sdk_s3::Client,
        bucket: &str,
        folder: &str,
        compression: PartCompression,
    ) -> Uploader {
        Uploader {
            s3,
            staged: StagedLoad {
                bucket: bucket.to_string(),
                keys: Vec::new(),
                manifest_url: format!("s3://{bucket}/{folder}manifest"),
                rows: 0,
                bytes: 0,
                compression,
            },
            folder: folder.to_string(),
            open: None,
        }
    }

    /// Put one piece; on an error the caller should [`Uploader::abandon`].
    pub async fn take(&mut self, piece: Piece) -> Result<Step, String> {
        match piece {
            Piece::Chunk { part, bytes } => {
                self.chunk(part, bytes).await?;
                Ok(Step::More)
            }
            Piece::Last { part, bytes, rows } => {
                self.last(part, bytes).await?;
                self.staged.rows += rows;
                Ok(Step::More)
            }
            Piece::Done { parts, rows } => {
                if parts != self.staged.keys.len()
                    || rows != self.staged.rows
                    || self.open.is_some()
                {
                    return Err(format!(
                        "staging ended with {} of {parts} parts and {} of {rows} rows",
                        self.staged.keys.len(),
                        self.staged.rows
                    ));
                }
                if parts == 0 {
                    return Ok(Step::Done(None));
                }
                let key = format!("{}manifest", self.folder);
                let body = manifest(&self.staged.bucket, &self.staged.keys);
                self.put(&key, body.into_bytes(), "application/json")
                    .await?;
                self.staged.keys.push(key);
                Ok(Step::Done(Some(self.staged.clone())))
            }
        }
    }

    /// The key of part `part`, which must be the next one.
    fn key(&self, part: usize) -> Result<String, String> {
        if part != self.staged.keys.len() {
            return Err(format!(
                "staged part {part} arrived out of order (expected {})",
                self.staged.keys.len()
            ));
        }
        Ok(format!(
            "{}{}",
            self.folder,
            part_name(part, self.staged.compression)
        ))
    }

    async fn chunk(&mut self, part: usize, bytes: Vec<u8>) -> Result<(), String> {
        let key = self.key(part)?;
        if self.open.is_none() {
            let created = self
                .s3
                .create_multipart_upload()
                .bucket(&self.staged.bucket)
                .key(&key)
                .content_type(self.staged.compression.content_type())
                .send()
                .await
                .map_err(|e| s3_error(&self.staged.bucket, &key, &e))?;
            let upload_id = created
                .upload_id()
                .ok_or_else(|| format!("s3://{}/{key}: no upload id", self.staged.bucket))?
                .to_string();
            self.open = Some(OpenPart {
                key,
                upload_id,
                done: Vec::new(),
            });
        }
        self.upload_piece(bytes).await
    }

    /// Upload `bytes` as the next piece of the open part.
    async fn upload_piece(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let Some(open) = self.open.as_mut() else {
            return Err("no multipart upload is open".into());
        };
        let number = i32::try_from(open.done.len() + 1).map_err(|e| e.to_string())?;
        self.staged.bytes += bytes.len() as u64;
        let sent = self
            .s3
            .upload_part()
            .bucket(&self.staged.bucket)
            .key(&open.key)
            .upload_id(&open.upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| s3_error(&self.staged.bucket, &open.key, &e))?;
        open.done.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(sent.e_tag().map(str::to_string))
                .set_checksum_crc32(sent.checksum_crc32().map(str::to_string))
                .set_checksum_crc32_c(sent.checksum_crc32_c().map(str::to_string))
                .set_checksum_sha1(sent.checksum_sha1().map(str::to_string))
                .set_checksum_sha256(sent.checksum_sha256().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    async fn last(&mut self, part: usize, bytes: Vec<u8>) -> Result<(), String> {
        let key = self.key(part)?;
        if self.open.is_none() {
            self.staged.bytes += bytes.len() as u64;
            let content_type = self.staged.compression.content_type();
            self.put(&key, bytes, content_type).await?;
            self.staged.keys.push(key);
            return Ok(());
        }
        self.upload_piece(bytes).await?;
        let Some(open) = self.open.take() else {
            return Err("no multipart upload is open".into());
        };
        let completed = self
            .s3
            .complete_multipart_upload()
            .bucket(&self.staged.bucket)
            .key(&open.key)
            .upload_id(&open.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(open.done.clone()))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = completed {
            let error = s3_error(&self.staged.bucket, &open.key, &e);
            self.open = Some(open);
            return Err(error);
        }
        self.staged.keys.push(open.key);
        Ok(())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), String> {
        put(
            &self.s3,
            &self.staged.bucket,
            key,
            ByteStream::from(bytes),
            content_type,
        )
        .await
    }

    /// Abort the part being uploaded and delete every part written: the load will not use them.
    pub async fn abandon(&mut self) {
        if let Some(open) = self.open.take()
            && let Err(e) = self
                .s3
                .abort_multipart_upload()
                .bucket(&self.staged.bucket)
                .key(&open.key)
                .upload_id(&open.upload_id)
                .send()
                .await
        {
            tracing::warn!(bucket = %self.staged.bucket, key = %open.key,
                error = %aws_sdk_s3::error::DisplayErrorContext(&e), "staged upload not aborted");
        }
        remove(&self.s3, &self.staged).await;
        self.staged.keys.clear();
    }
}

fn s3_error<E: std::error::Error>(bucket: &str, key: &str, e: &E) -> String {
    format!(
        "s3://{bucket}/{key}: {}",
        aws_sdk_s3::error::DisplayErrorContext(e)
    )
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
        .map_err(|e| s3_error(bucket, key, &e))
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
    use std::sync::Mutex;

    const BOTH: [PartCompression; 2] = [PartCompression::Zstd, PartCompression::Gzip];

    fn decode(bytes: &[u8], compression: PartCompression) -> String {
        let mut text = String::new();
        match compression {
            PartCompression::Gzip => flate2::read::GzDecoder::new(bytes).read_to_string(&mut text),
            PartCompression::Zstd => zstd::stream::read::Decoder::new(bytes)
                .unwrap()
                .read_to_string(&mut text),
        }
        .unwrap();
        text
    }

    /// What a stream handed out: each part's pieces (sizes) and text, and the final `Done`.
    struct Streamed {
        pieces: Vec<Vec<usize>>,
        texts: Vec<String>,
        rows: Vec<u64>,
        done: Option<(usize, u64)>,
    }

    /// Stream `rows` (each counted as `stored` bytes read from an object of `size` stored bytes) into parts.
    fn stream(
        rows: &[String],
        wanted: usize,
        size: Option<u64>,
        stored: u64,
        compression: PartCompression,
    ) -> Streamed {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let read = Arc::new(AtomicU64::new(0));
        let plan = PartPlan::new(wanted, size, read.clone());
        let mut w = PartStream::new(
            plan,
            compression,
            Box::new(move |piece| {
                sink.lock().unwrap().push(piece);
                true
            }),
        );
        for row in rows {
            read.fetch_add(stored, Ordering::Relaxed);
            w.buffer().extend_from_slice(row.as_bytes());
            w.end_row().unwrap();
        }
        w.finish().unwrap();
        let mut out = Streamed {
            pieces: Vec::new(),
            texts: Vec::new(),
            rows: Vec::new(),
            done: None,
        };
        let mut bytes: Vec<u8> = Vec::new();
        for piece in got.lock().unwrap().drain(..) {
            assert!(out.done.is_none(), "nothing follows Done");
            match piece {
                Piece::Chunk { part, bytes: b } => {
                    assert_eq!(part, out.texts.len());
                    if out.pieces.len() == part {
                        out.pieces.push(Vec::new());
                    }
                    out.pieces[part].push(b.len());
                    bytes.extend_from_slice(&b);
                }
                Piece::Last {
                    part,
                    bytes: b,
                    rows,
                } => {
                    assert_eq!(part, out.texts.len());
                    if out.pieces.len() == part {
                        out.pieces.push(Vec::new());
                    }
                    out.pieces[part].push(b.len());
                    bytes.extend_from_slice(&b);
                    out.texts.push(decode(&bytes, compression));
                    out.rows.push(rows);
                    bytes.clear();
                }
                Piece::Done { parts, rows } => out.done = Some((parts, rows)),
            }
        }
        out
    }

    #[test]
    fn parts_take_equal_shares_of_the_object_in_whole_rows() {
        for compression in BOTH {
            let row = format!("{},\"{}\",1\n", 7, "x".repeat(1000));
            let count = 12 * BLOCK / row.len();
            let rows = vec![row.clone(); count];
            // The object is stored in 100 bytes a row (compressed, say): shares follow the stored bytes.
            let s = stream(&rows, 3, Some(100 * count as u64), 100, compression);
            assert_eq!(s.done, Some((3, count as u64)), "{compression:?}");
            assert_eq!(s.rows.iter().sum::<u64>(), count as u64);
            for (text, &n) in s.texts.iter().zip(&s.rows) {
                assert_eq!(text.lines().count() as u64, n);
                assert!(text.lines().all(|l| l == row.trim_end()));
                let share = count as u64 / 3;
                assert!(
                    n.abs_diff(share) <= (BLOCK / row.len()) as u64 + 1,
                    "{:?}",
                    s.rows
                );
            }
        }
    }

    #[test]
    fn a_part_leaves_in_pieces_s3_accepts() {
        // Rows that hardly compress: a part of about three pieces.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let rows: Vec<String> = (0..(6 * CHUNK / 100))
            .map(|i| {
                let mut hexed = String::new();
                for _ in 0..5 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    hexed.push_str(&format!("{state:016x}"));
                }
                format!("{i},{hexed}\n")
            })
            .collect();
        for compression in BOTH {
            let s = stream(&rows, 1, None, 1, compression);
            assert_eq!(s.done, Some((1, rows.len() as u64)));
            let pieces = &s.pieces[0];
            assert!(pieces.len() >= 2, "{pieces:?}");
            let (last, rest) = pieces.split_last().unwrap();
            assert!(
                rest.iter().all(|&n| (CHUNK..CHUNK + BLOCK).contains(&n)),
                "{pieces:?}"
            );
            assert!(*last > 0);
            assert_eq!(s.texts[0], rows.concat());
        }
    }

    #[test]
    fn a_small_object_is_one_part_and_an_empty_one_none() {
        let s = stream(
            &["1,\"a\",2\n".to_string()],
            8,
            Some(10),
            10,
            PartCompression::Zstd,
        );
        assert_eq!(s.done, Some((1, 1)));
        assert_eq!(s.texts, vec!["1,\"a\",2\n"]);
        let s = stream(&[], 8, Some(10), 10, PartCompression::Gzip);
        assert_eq!(s.done, Some((0, 0)));
        assert!(s.texts.is_empty());
    }

    #[test]
    fn without_a_size_parts_end_at_a_fixed_size_and_never_below_a_block() {
        let plan = PartPlan::new(4, None, Arc::new(AtomicU64::new(0)));
        assert!(!plan.full(0, UNSIZED_PART - 1));
        assert!(plan.full(0, UNSIZED_PART));
        assert!(plan.full(9, UNSIZED_PART), "no limit on their number");
        let read = Arc::new(AtomicU64::new(1000));
        let plan = PartPlan::new(4, Some(1000), read);
        assert!(
            !plan.full(0, BLOCK as u64 - 1),
            "a part holds a block at least"
        );
        assert!(plan.full(2, BLOCK as u64));
        assert!(!plan.full(3, u64::MAX), "the last part takes the rest");
    }

    #[test]
    fn a_stopped_uploader_stops_the_stream() {
        let plan = PartPlan::new(1, None, Arc::new(AtomicU64::new(0)));
        let mut w = PartStream::new(plan, PartCompression::Zstd, Box::new(|_| false));
        w.buffer().extend_from_slice(b"1\n");
        w.end_row().unwrap();
        assert!(matches!(w.finish(), Err(StreamError::Closed)));
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
