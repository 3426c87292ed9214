//! Sources: the bytes of one object (a local file now, an S3 object later), decompressed and decoded into
//! CSV records. Everything here streams: memory does not depend on the object's size.

pub mod records;
pub mod s3;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

pub use records::{
    Anomaly, Fields, Limits, OwnedFields, ReadError, Record, Records, Refusal, TextEncoding,
};

const READ_BUFFER: usize = 256 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One object to load: where it came from, what identifies its bytes, and a reader over them.
pub struct Object {
    /// The name routing uses: a path or an S3 key.
    pub name: String,
    /// A URI for the ledger and reports (`file:///…`, `s3://bucket/key`).
    pub uri: String,
    /// The ledger's quick identity, known before reading: `sha256:<hex>` of a local file's bytes as stored, or
    /// `etag:<etag>[;version:<id>]` for S3 objects.
    pub identity: String,
    /// The SHA-256 (hex) of the decompressed bytes when it is known before reading (a local file that is not
    /// gzip: its bytes are its content). Otherwise the pipeline computes it while reading.
    pub content_sha256: Option<String>,
    /// The raw (possibly compressed) bytes.
    pub reader: Box<dyn Read + Send>,
    /// Size in bytes, when known (for progress).
    pub size: Option<u64>,
}

impl Object {
    /// A local file: its identity is the SHA-256 of its bytes (which is also its content's, unless it is gzip).
    pub fn local(path: &Path) -> io::Result<Object> {
        let (sha, gzip) = sha256_file_and_kind(path)?;
        let identity = format!("sha256:{sha}");
        let content_sha256 = (!gzip).then_some(sha);
        let file = File::open(path)?;
        let size = file.metadata().ok().map(|m| m.len());
        let abs = std::fs::canonicalize(path)?;
        Ok(Object {
            name: path.to_string_lossy().into_owned(),
            uri: format!("file://{}", abs.to_string_lossy()),
            identity,
            content_sha256,
            reader: Box::new(file),
            size,
        })
    }
}

/// SHA-256 of a file's bytes, hex encoded, read in large blocks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    sha256_file_and_kind(path).map(|(sha, _)| sha)
}

/// SHA-256 of a file's bytes, and whether they start like gzip.
fn sha256_file_and_kind(path: &Path) -> io::Result<(String, bool)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut head: Vec<u8> = Vec::with_capacity(2);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 2 {
            head.extend(buf[..n].iter().take(2 - head.len()));
        }
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), head == GZIP_MAGIC))
}

/// The SHA-256 (hex) of an object's decompressed bytes: known once the reader has reached their end.
#[derive(Debug, Clone, Default)]
pub struct ContentDigest(Arc<Mutex<Option<String>>>);

impl ContentDigest {
    /// The digest, if every byte has been read.
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|d| d.clone())
    }
}

/// Decompressed bytes, hashed as they pass; the digest is published at the end of the stream.
struct Hashed<R> {
    inner: R,
    hasher: Option<Sha256>,
    digest: ContentDigest,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
        } else if !buf.is_empty()
            && let Some(h) = self.hasher.take()
            && let Ok(mut d) = self.digest.0.lock()
        {
            *d = Some(hex::encode(h.finalize()));
        }
        Ok(n)
    }
}

/// Limits on one object's decompressed bytes, so that no object runs past the time it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// The most bytes an object may hold after decompression (`u64::MAX`: no limit).
    pub max_bytes: u64,
    /// The largest ratio of decompressed to compressed bytes a gzip object may reach once past
    /// [`RATIO_GRACE_BYTES`] (0: no limit). Real CSV compresses 4–12×; a gzip bomb far more.
    pub max_gzip_ratio: u64,
}

/// The default largest object: 16 GiB after decompression (the Lambda computes its own from its timeout).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 16 << 30;
/// The default largest gzip ratio.
pub const DEFAULT_MAX_GZIP_RATIO: u64 = 100;
/// Decompressed bytes below which the ratio is not checked (tiny files compress very unevenly).
pub const RATIO_GRACE_BYTES: u64 = 64 << 20;

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_gzip_ratio: DEFAULT_MAX_GZIP_RATIO,
        }
    }
}

/// Why an object's bytes cannot be read as CSV text: its encoding, container or size. Carried inside an
/// `io::Error` from the stream to the record reader, which turns it into a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefusal {
    /// The object's name says gzip but its bytes do not start with the gzip magic number.
    #[error("the name ends in .gz but the bytes are not gzip")]
    NotGzip,
    /// Decompression failed (the decoder's message): the gzip data is damaged or cut short.
    #[error("the gzip data is corrupt or truncated ({0}); upload the whole file again")]
    CorruptGzip(String),
    /// The decompressed bytes are themselves gzip.
    #[error("the file is gzip inside gzip: decompress it once before uploading")]
    NestedGzip,
    /// The bytes are a ZIP archive.
    #[error("the file is a ZIP archive, not CSV: extract the CSV files and upload those")]
    Zip,
    /// The text is UTF-16 (which byte order and how it was recognised).
    #[error("the file is {0}, not UTF-8 or Windows-1252: save it as CSV UTF-8")]
    Utf16(&'static str),
    /// The object is over [`StreamLimits::max_bytes`] after decompression.
    #[error(
        "the object is larger than {limit} bytes after decompression (the limit, MAX_OBJECT_BYTES, keeps a load \
         inside its time): split it into parts"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A gzip object expands more than [`StreamLimits::max_gzip_ratio`].
    #[error(
        "the gzip data expands more than {ratio}× (the limit, MAX_GZIP_RATIO, stops decompression bombs): \
         nothing loaded"
    )]
    Ratio {
        /// The limit on decompressed over compressed bytes.
        ratio: u64,
    },
}

impl StreamRefusal {
    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The refusal inside an I/O error, if it carries one.
    pub fn from_io(e: &io::Error) -> Option<&StreamRefusal> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }
}

/// An error of the underlying transport (disk, network), told apart from the decoder's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(io::Error);

/// An error as the transport gave it: the transport mark removed (kind and message kept).
fn untagged(e: io::Error) -> io::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<TransportError>()) {
        Some(t) => io::Error::new(t.0.kind(), t.0.to_string()),
        None => e,
    }
}

/// The raw bytes: counted (for the gzip ratio) and with their errors marked as transport errors.
struct Raw {
    inner: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
}

impl Read for Raw {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(io::Error::new(e.kind(), TransportError(e))),
        }
    }
}

/// Decompressed bytes: counted against the limits; a decoder error is a corrupt object, not a transport one.
struct Inflated<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    out: u64,
    limits: StreamLimits,
}

impl<R: Read> Read for Inflated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) if e.get_ref().is_some_and(|i| i.is::<TransportError>()) => {
                return Err(untagged(e));
            }
            Err(e) => return Err(StreamRefusal::CorruptGzip(e.to_string()).into_io()),
        };
        self.out += n as u64;
        if self.out > self.limits.max_bytes {
            return Err(StreamRefusal::TooLarge {
                limit: self.limits.max_bytes,
            }
            .into_io());
        }
        let ratio = self.limits.max_gzip_ratio;
        if ratio > 0 && self.out > RATIO_GRACE_BYTES {
            let compressed = self.compressed.load(Ordering::Relaxed).max(1);
            if self.out / compressed > ratio {
                return Err(StreamRefusal::Ratio { ratio }.into_io());
            }
        }
        Ok(n)
    }
}

/// Plain bytes: counted against the size limit.
struct Plain<R> {
    inner: R,
    out: u64,
    max: u64,
}

impl<R: Read> Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(untagged)?;
        self.out += n as u64;
        if self.out > self.max {
            return Err(StreamRefusal::TooLarge { limit: self.max }.into_io());
        }
        Ok(n)
    }
}

/// Wrap raw bytes so that gzip (by `.gz` name or by magic bytes) is decompressed, within `limits`, and check what
/// the text turns out to be: gzip inside gzip, ZIP and UTF-16 are refused with their real cause. A `.gz` name whose
/// bytes are not gzip is refused, not silently read as text. Errors that refuse the object carry a
/// [`StreamRefusal`] (see [`StreamRefusal::from_io`]); other errors are the transport's (a retry may work).
pub fn decompress_within(
    reader: Box<dyn Read + Send>,
    name: &str,
    size: Option<u64>,
    limits: StreamLimits,
) -> io::Result<Box<dyn BufRead + Send>> {
    decompress_digested(reader, name, size, limits).map(|(text, _)| text)
}

/// [`decompress_within`], hashing the decompressed bytes: the returned [`ContentDigest`] holds their SHA-256 once
/// the text has been read to its end (the object's identity: a `.csv` and a `.csv.gz` of the same bytes are one).
pub fn decompress_digested(
    reader: Box<dyn Read + Send>,
    name: &str,
    size: Option<u64>,
    limits: StreamLimits,
) -> io::Result<(Box<dyn BufRead + Send>, ContentDigest)> {
    let digest = ContentDigest::default();
    let hashed = |inner: Box<dyn Read + Send>| Hashed {
        inner,
        hasher: Some(Sha256::new()),
        digest: digest.clone(),
    };
    let read = Arc::new(AtomicU64::new(0));
    let raw = Raw {
        inner: reader,
        read: Arc::clone(&read),
    };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, raw);
    let head = buffered.fill_buf().map_err(untagged)?;
    let is_gzip = head.starts_with(&GZIP_MAGIC);
    let named_gzip = crate::route::table_file_stem(name)
        .is_some_and(|(_, c)| c == crate::route::Compression::Gzip);
    if !is_gzip && named_gzip && !head.is_empty() {
        return Err(StreamRefusal::NotGzip.into_io());
    }
    let mut text: Box<dyn BufRead + Send> = if is_gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            hashed(Box::new(Inflated {
                inner: MultiGzDecoder::new(buffered),
                compressed: read,
                out: 0,
                limits,
            })),
        ))
    } else {
        if size.is_some_and(|s| s > limits.max_bytes) {
            return Err(StreamRefusal::TooLarge {
                limit: limits.max_bytes,
            }
            .into_io());
        }
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            hashed(Box::new(Plain {
                inner: buffered,
                out: 0,
                max: limits.max_bytes,
            })),
        ))
    };
    if let Some(refusal) = sniff(text.fill_buf()?, is_gzip) {
        return Err(refusal.into_io());
    }
    Ok((text, digest))
}

/// Wrap raw bytes with the default limits (see [`decompress_within`]).
pub fn decompress(reader: Box<dyn Read + Send>, name: &str) -> io::Result<Box<dyn BufRead + Send>> {
    decompress_within(reader, name, None, StreamLimits::default())
}

/// What the first bytes of the text say it is not: CSV text in UTF-8 or Windows-1252.
fn sniff(head: &[u8], was_gzip: bool) -> Option<StreamRefusal> {
    if was_gzip && head.starts_with(&GZIP_MAGIC) {
        return Some(StreamRefusal::NestedGzip);
    }
    if head.starts_with(b"PK\x03\x04") {
        return Some(StreamRefusal::Zip);
    }
    if head.starts_with(b"\xFF\xFE") {
        return Some(StreamRefusal::Utf16(
            "UTF-16 little-endian (byte-order mark FF FE)",
        ));
    }
    if head.starts_with(b"\xFE\xFF") {
        return Some(StreamRefusal::Utf16(
            "UTF-16 big-endian (byte-order mark FE FF)",
        ));
    }
    // UTF-16 without a mark: NUL in every other byte of ASCII text.
    let sample = &head[..head.len().min(512)];
    if sample.len() >= 8 {
        let nul_at = |parity: usize| {
            sample
                .iter()
                .skip(parity)
                .step_by(2)
                .filter(|&&b| b == 0)
                .count()
        };
        let half = sample.len() / 2;
        if nul_at(1) * 4 >= half * 3 {
            return Some(StreamRefusal::Utf16(
                "UTF-16 little-endian (NUL bytes between characters)",
            ));
        }
        if nul_at(0) * 4 >= half * 3 {
            return Some(StreamRefusal::Utf16(
                "UTF-16 big-endian (NUL bytes between characters)",
            ));
        }
    }
    None
}

/// A reader that reports how many bytes have passed through it (for progress bars).
pub struct Counting<R> {
    inner: R,
    on_read: Box<dyn FnMut(u64) + Send>,
}

impl<R> Counting<R> {
    /// Wrap `inner`, calling `on_read` with the byte count of every read.
    pub fn new(inner: R, on_read: Box<dyn FnMut(u64) + Send>) -> Self {
        Counting { inner, on_read }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_read)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn read_all(r: &mut dyn Read) -> Vec<u8> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_whatever_the_name() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(b"a,b\n1,2\n").unwrap();
        let gz = enc.finish().unwrap();
        let mut r = decompress(Box::new(io::Cursor::new(gz)), "FactTable.csv").unwrap();
        assert_eq!(read_all(&mut r), b"a,b\n1,2\n");
    }

    #[test]
    fn a_gz_name_over_plain_bytes_is_an_error() {
        let r = decompress(Box::new(io::Cursor::new(b"a,b\n".to_vec())), "x.csv.gz");
        assert!(r.is_err());
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn refusal(r: io::Result<Box<dyn BufRead + Send>>) -> StreamRefusal {
        let e = match r {
            Ok(mut r) => {
                let mut v = Vec::new();
                r.read_to_end(&mut v).unwrap_err()
            }
            Err(e) => e,
        };
        StreamRefusal::from_io(&e)
            .cloned()
            .unwrap_or_else(|| panic!("not a refusal: {e}"))
    }

    #[test]
    fn a_truncated_gzip_is_refused_as_corrupt() {
        let gz = gzip(&b"a,b\n1,2\n".repeat(10_000));
        let cut = gz[..gz.len() / 2].to_vec();
        let r = decompress(Box::new(io::Cursor::new(cut)), "x.csv.gz");
        assert!(matches!(refusal(r), StreamRefusal::CorruptGzip(_)));
    }

    #[test]
    fn gzip_inside_gzip_zip_and_utf16_name_their_real_cause() {
        let nested = gzip(&gzip(b"a,b\n"));
        let r = decompress(Box::new(io::Cursor::new(nested)), "x.csv.gz");
        assert_eq!(refusal(r), StreamRefusal::NestedGzip);
        let zip = b"PK\x03\x04rest".to_vec();
        assert_eq!(
            refusal(decompress(Box::new(io::Cursor::new(zip)), "x.csv")),
            StreamRefusal::Zip
        );
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend("a,b\n1,2\n".encode_utf16().flat_map(u16::to_le_bytes));
        assert!(matches!(
            refusal(decompress(
                Box::new(io::Cursor::new(utf16.clone())),
                "x.csv"
            )),
            StreamRefusal::Utf16(_)
        ));
        let no_bom = utf16[2..].to_vec();
        assert!(matches!(
            refusal(decompress(Box::new(io::Cursor::new(no_bom)), "x.csv")),
            StreamRefusal::Utf16(_)
        ));
    }

    #[test]
    fn objects_over_the_size_limit_are_refused() {
        let limits = StreamLimits {
            max_bytes: 100,
            max_gzip_ratio: 0,
        };
        let plain = b"a\n".repeat(100);
        let r = decompress_within(
            Box::new(io::Cursor::new(plain.clone())),
            "x.csv",
            Some(200),
            limits,
        );
        assert_eq!(refusal(r), StreamRefusal::TooLarge { limit: 100 });
        let r = decompress_within(
            Box::new(io::Cursor::new(plain.clone())),
            "x.csv",
            None,
            limits,
        );
        assert_eq!(refusal(r), StreamRefusal::TooLarge { limit: 100 });
        let r = decompress_within(
            Box::new(io::Cursor::new(gzip(&plain))),
            "x.csv.gz",
            None,
            limits,
        );
        assert_eq!(refusal(r), StreamRefusal::TooLarge { limit: 100 });
    }

    #[test]
    fn a_gzip_bomb_is_refused_by_its_ratio() {
        let limits = StreamLimits {
            max_bytes: u64::MAX,
            max_gzip_ratio: 100,
        };
        let bomb = gzip(&vec![b'x'; (RATIO_GRACE_BYTES + (1 << 20)) as usize]);
        let r = decompress_within(Box::new(io::Cursor::new(bomb)), "x.csv.gz", None, limits);
        assert_eq!(refusal(r), StreamRefusal::Ratio { ratio: 100 });
    }

    #[test]
    fn transport_errors_are_not_refusals() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let e = decompress(Box::new(Broken), "x.csv").err().unwrap();
        assert!(StreamRefusal::from_io(&e).is_none());
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn plain_bytes_pass_through() {
        let mut r = decompress(Box::new(io::Cursor::new(b"a\n".to_vec())), "x.csv").unwrap();
        assert_eq!(read_all(&mut r), b"a\n");
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut out = Vec::new();
        for part in [&b"a\n"[..], &b"b\n"[..]] {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(part).unwrap();
            out.extend(enc.finish().unwrap());
        }
        let mut r = decompress(Box::new(io::Cursor::new(out)), "x.csv.gz").unwrap();
        assert_eq!(read_all(&mut r), b"a\nb\n");
    }
}
