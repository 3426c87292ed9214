//! Replay: a corrected rejects file loaded into its table. The file is what the loader wrote — the five
//! `rejected_*` columns, then the object's own header — with its rows fixed by hand; the replay drops the
//! `rejected_*` columns (streaming, row by row), loads the rest like the original object (same table, same
//! rules, merged by key), and links the load to the original object in the ledger (`replay_of`). Rows still
//! wrong are rejected again, into a new rejects file: nothing is lost.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use crate::schema::SCHEMA;
use crate::transform::REJECT_COLUMNS;
use crate::warehouse::WarehouseError;

/// Why a file cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// It is not a rejects file.
    #[error("{0}: not a rejects file (its header does not start with {cols})", cols = REJECT_COLUMNS.join(","))]
    NotRejects(String),
    /// Reading or writing failed.
    #[error("{0}: {1}")]
    Io(String, io::Error),
    /// The CSV is malformed.
    #[error("{0}: line {1}: {2}")]
    Csv(String, u64, String),
    /// Nobody recorded where its rows came from.
    #[error(
        "{0}: no recorded attempt names this rejects file, so the object its rows came from is unknown: pass --of URI"
    )]
    Unknown(String),
}

/// What a rejects file became: the object's own rows.
#[derive(Debug)]
pub struct Prepared {
    /// The rows without the `rejected_*` columns.
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
}

/// Drop the `rejected_*` columns of `rejects` (shown as `shown`) into the file `path`, mode 0600.
pub fn prepare(rejects: &mut dyn Read, shown: &str, path: &Path) -> Result<Prepared, ReplayError> {
    let io_err = |e: io::Error| ReplayError::Io(shown.to_string(), e);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    let path = path.to_path_buf();
    let mut open = fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file: File = open.open(&path).map_err(io_err)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(rejects);
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(BufWriter::new(file));
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    let mut first = true;
    loop {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            ReplayError::Csv(shown.to_string(), line, e.kind_message())
        })?;
        if !more {
            break;
        }
        if first {
            let lead: Vec<&[u8]> = record.iter().take(REJECT_COLUMNS.len()).collect();
            let expected: Vec<&[u8]> = REJECT_COLUMNS.iter().map(|c| c.as_bytes()).collect();
            if lead != expected || record.len() <= REJECT_COLUMNS.len() {
                return Err(ReplayError::NotRejects(shown.to_string()));
            }
            first = false;
        } else {
            rows += 1;
        }
        writer
            .write_record(record.iter().skip(REJECT_COLUMNS.len()))
            .map_err(|e| ReplayError::Io(shown.to_string(), io::Error::other(e.to_string())))?;
    }
    if first {
        return Err(ReplayError::NotRejects(shown.to_string()));
    }
    writer
        .flush()
        .map_err(|e| ReplayError::Io(shown.to_string(), e))?;
    Ok(Prepared { path, rows })
}

trait KindMessage {
    fn kind_message(&self) -> String;
}

impl KindMessage for csv::Error {
    /// The error without the row's bytes (a CSV error can quote the field it broke on).
    fn kind_message(&self) -> String {
        match self.kind() {
            csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
            csv::ErrorKind::Io(e) => e.to_string(),
            _ => "malformed CSV".into(),
        }
    }
}

/// The object whose rejected rows `rejects` (a rejects file's absolute path or S3 URI) holds, from the attempts.
pub async fn original_of(client: &Client, rejects: &str) -> Result<Option<String>, WarehouseError> {
    let sql = format!(
        "SELECT source FROM {} WHERE rejects = $1::VARCHAR ORDER BY attempt_id DESC LIMIT 1",
        SCHEMA.attempts.qualified()
    );
    let row = client
        .query_opt(&sql, &[&rejects])
        .await
        .map_err(WarehouseError::db("reading the attempts"))?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("healthetl-replay-{}-{name}", std::process::id()))
    }

    #[test]
    fn the_rejected_columns_are_dropped_and_every_row_kept() {
        let dir = tmp("drop");
        let text = "rejected_source,rejected_line,rejected_column,rejected_rule,rejected_reason,dimPayerPK,PayerName\n\
                    dimPayer.csv,3,dimPayerPK,integer,is not an integer,7,\"Aetna, Inc\"\n\
                    dimPayer.csv,9,,record_too_long,too long\n";
        let out = prepare(&mut text.as_bytes(), "r.csv", &dir.join("rows.csv")).unwrap();
        assert_eq!(out.rows, 2);
        assert_eq!(
            fs::read_to_string(&out.path).unwrap(),
            "dimPayerPK,PayerName\n7,\"Aetna, Inc\"\n\"\"\n",
            "a row that had no fields stays a row (and is rejected again)"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&out.path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_rejects_file_is_refused() {
        let dir = tmp("refuse");
        for text in [
            "dimPayerPK,PayerName\n1,A\n",
            "",
            "rejected_source,rejected_line\n",
        ] {
            assert!(matches!(
                prepare(&mut text.as_bytes(), "x.csv", &dir.join("rows.csv")),
                Err(ReplayError::NotRejects(_))
            ));
        }
        let _ = fs::remove_dir_all(dir);
    }
}
