//! Sources: the bytes of one object (a local file now, an S3 object later), decompressed and decoded into
//! CSV records. Everything here streams: memory does not depend on the object's size.

pub mod records;
pub mod s3;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

pub use records::{Records, TextEncoding};

const READ_BUFFER: usize = 256 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One object to load: where it came from, what identifies its bytes, and a reader over them.
pub struct Object {
    /// The name routing uses: a path or an S3 key.
    pub name: String,
    /// A URI for the ledger and reports (`file:///…`, `s3://bucket/key`).
    pub uri: String,
    /// The ledger identity: `sha256:<hex>` of the bytes, or `etag:<etag>` for S3 objects.
    pub identity: String,
    /// The raw (possibly compressed) bytes.
    pub reader: Box<dyn Read + Send>,
    /// Size in bytes, when known (for progress).
    pub size: Option<u64>,
}

impl Object {
    /// A local file: its identity is the SHA-256 of its bytes.
    pub fn local(path: &Path) -> io::Result<Object> {
        let identity = format!("sha256:{}", sha256_file(path)?);
        let file = File::open(path)?;
        let size = file.metadata().ok().map(|m| m.len());
        let abs = std::fs::canonicalize(path)?;
        Ok(Object {
            name: path.to_string_lossy().into_owned(),
            uri: format!("file://{}", abs.to_string_lossy()),
            identity,
            reader: Box::new(file),
            size,
        })
    }
}

/// SHA-256 of a file's bytes, hex encoded, read in large blocks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Wrap raw bytes so that gzip (by `.gz` name or by magic bytes) is decompressed.
/// A `.gz` name whose bytes are not gzip is an error, not silently read as text.
pub fn decompress(reader: Box<dyn Read + Send>, name: &str) -> io::Result<Box<dyn BufRead + Send>> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER, reader);
    let head = buffered.fill_buf()?;
    let is_gzip = head.starts_with(&GZIP_MAGIC);
    if !is_gzip && name.to_ascii_lowercase().ends_with(".gz") && !head.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the name ends in .gz but the bytes are not gzip",
        ));
    }
    if is_gzip {
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// A reader that reports how many bytes have passed through it (for progress bars).
pub struct Counting<R> {
    inner: R,
    on_read: Box<dyn FnMut(u64) + Send>,
}

impl<R> Counting<R> {
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
