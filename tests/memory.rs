//! Memory does not grow with record length: the binary loads a 200 MB single-line file and a 2 MB gzip holding a
//! 2 GB line against a real PostgreSQL with a peak RSS under 64 MB, rejecting the huge record and loading the rest.
//! This file holds one test, so the process's only child is the binary it measures (getrusage of the children).

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::io::Write;

use common::{TempDir, TestDb, run_bin};
use flate2::{Compression, write::GzEncoder};

const PEAK_RSS_LIMIT_KB: i64 = 64 * 1024;

/// The largest resident set of any child this process has waited for, in KiB.
fn children_peak_rss_kb() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialized by the successful call above.
    unsafe { usage.assume_init() }.ru_maxrss
}

fn gzip_member(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn huge_records_are_rejected_in_bounded_memory() {
    let db = TestDb::initialized("memory").await;
    let dir = TempDir::new("memory");
    let good: String = (2..=4).map(|i| format!("{i},Clinic {i}\n")).collect();

    // 200 MB on one line.
    let path = dir.path().join("dimLocation.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(b"dimLocationPK,Location Name\n1,").unwrap();
    let block = vec![b'x'; 1 << 20];
    for _ in 0..200 {
        f.write_all(&block).unwrap();
    }
    f.write_all(b"\n").unwrap();
    f.write_all(good.as_bytes()).unwrap();
    drop(f);
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        [
            "load",
            "--json",
            "--reject-threshold",
            "0.5",
            "dimLocation.csv",
        ],
    )
    .await;
    let report = &out.json()["objects"][0];
    assert_eq!(report["status"], "loaded", "{report}");
    assert_eq!(report["rows_loaded"], 3);
    assert_eq!(report["rejects"][0]["rule"], "record_too_long", "{report}");
    let plain_kb = children_peak_rss_kb();

    // A small gzip holding a 2 GB line: members of 1 MiB of 'x' each, concatenated.
    let mut gz = gzip_member(b"dimLocationPK,Location Name\n5,");
    let member = gzip_member(&block);
    for _ in 0..2048 {
        gz.extend_from_slice(&member);
    }
    gz.extend(gzip_member(format!("\n{good}").as_bytes()));
    assert!(
        gz.len() < 4 << 20,
        "the gzip stays small: {} bytes",
        gz.len()
    );
    dir.write("z/dimLocation.csv.gz", &gz);
    let out = run_bin(
        Some(&db.url),
        dir.path(),
        [
            "load",
            "--json",
            "--reject-threshold",
            "0.5",
            "--max-gzip-ratio",
            "0",
            "z/dimLocation.csv.gz",
        ],
    )
    .await;
    let report = &out.json()["objects"][0];
    assert_eq!(report["status"], "loaded", "{report}");
    assert_eq!(report["rows_read"], 4);
    assert_eq!(report["rejects"][0]["rule"], "record_too_long", "{report}");
    let both_kb = children_peak_rss_kb();
    eprintln!(
        "peak RSS: 200 MB line {plain_kb} KiB; 2 GB gzip line (max of both runs) {both_kb} KiB"
    );
    assert!(plain_kb < PEAK_RSS_LIMIT_KB, "200 MB line: {plain_kb} KiB");
    assert!(both_kb < PEAK_RSS_LIMIT_KB, "2 GB gzip line: {both_kb} KiB");
}
