//! The binary COPY encoding against the server itself: every edge value sent once as COPY text and once in the
//! binary form the loader writes reads back identical (`row::text`), so the faster format changes no value.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use bytes::Bytes;
use futures_util::SinkExt;
use healthetl::transform::binary;
use healthetl::transform::cast;

/// `(numeric(12,2), numeric(18,4), date, smallint, integer, bigint, varchar)` rows as text, NULL as `None`.
const ROWS: &[[Option<&str>; 7]] = &[
    [
        Some("0"),
        Some("0"),
        Some("2000-01-01"),
        Some("0"),
        Some("0"),
        Some("0"),
        Some("plain"),
    ],
    [
        Some("-0.01"),
        Some("-0.0001"),
        Some("1999-12-31"),
        Some("-1"),
        Some("-1"),
        Some("-1"),
        Some("é ñ ’ 😀 中文"),
    ],
    [
        Some("0.01"),
        Some("0.0001"),
        Some("2000-02-29"),
        Some("1"),
        Some("1"),
        Some("1"),
        Some("tab\there"),
    ],
    [
        Some("9999999999.99"),
        Some("99999999999999.9999"),
        Some("9999-12-31"),
        Some("32767"),
        Some("2147483647"),
        Some("9223372036854775807"),
        Some("line\nbreak\r\n"),
    ],
    [
        Some("-9999999999.99"),
        Some("-99999999999999.9999"),
        Some("0001-01-01"),
        Some("-32768"),
        Some("-2147483648"),
        Some("-9223372036854775808"),
        Some("back\\slash"),
    ],
    [
        Some("1000"),
        Some("10000"),
        Some("1970-01-01"),
        Some("1000"),
        Some("10000"),
        Some("100000000"),
        Some("\\N"),
    ],
    [
        Some("-1000"),
        Some("-10000.5"),
        Some("2024-06-30"),
        Some("-1000"),
        Some("-10000"),
        Some("-100000000"),
        Some("  spaces  "),
    ],
    [
        Some("1234.5"),
        Some("0.5"),
        Some("1900-03-01"),
        Some("12"),
        Some("123"),
        Some("1234567890123"),
        Some("\"quoted\", comma"),
    ],
    [
        Some("0.5"),
        Some("1.2345"),
        Some("2100-12-31"),
        Some("9999"),
        Some("99990000"),
        Some("10000"),
        Some("x"),
    ],
    [
        Some("100000000.00"),
        Some("12345678901234.5678"),
        Some("2000-01-02"),
        Some("-9999"),
        Some("-99990000"),
        Some("-10000"),
        Some("x"),
    ],
    [None, None, None, None, None, None, None],
];

const COLUMNS: &str =
    "m NUMERIC(12,2), u NUMERIC(18,4), d DATE, s SMALLINT, i INTEGER, b BIGINT, t VARCHAR(64)";

fn text_row(row: &[Option<&str>; 7], out: &mut Vec<u8>) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match v {
            None => out.extend_from_slice(b"\\N"),
            Some(v) => healthetl::transform::escape_copy_text(v, out),
        }
    }
    out.push(b'\n');
}

fn binary_row(row: &[Option<&str>; 7], out: &mut Vec<u8>) {
    out.extend_from_slice(&7i16.to_be_bytes());
    for (i, v) in row.iter().enumerate() {
        let Some(v) = v else {
            binary::null(out);
            continue;
        };
        match i {
            0 => binary::numeric(cast::decimal(v, 12, 2).expect("money"), out),
            1 => binary::numeric(cast::decimal(v, 18, 4).expect("units"), out),
            2 => binary::date(cast::days_since_epoch(cast::date(v).expect("date")), out),
            3 => binary::integer(v.parse().unwrap(), 2, out),
            4 => binary::integer(v.parse().unwrap(), 4, out),
            5 => binary::integer(v.parse().unwrap(), 8, out),
            _ => binary::text(v, out),
        }
    }
}

async fn copy(client: &tokio_postgres::Client, sql: &str, data: Vec<u8>) {
    let sink = client
        .copy_in(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data)).await.expect("COPY data");
    let n = sink.finish().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(n, ROWS.len() as u64);
}

#[tokio::test]
async fn every_edge_value_reads_back_the_same_from_binary_and_text_copy() {
    let db = common::TestDb::new("binary_copy").await;
    let client = common::connect(&db.url).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE as_text (n INT, {COLUMNS}); CREATE TABLE as_binary (n INT, {COLUMNS});"
        ))
        .await
        .expect("tables");
    let mut text = Vec::new();
    let mut bin = binary::HEADER.to_vec();
    for (n, row) in ROWS.iter().enumerate() {
        let mut numbered = format!("{n}\t").into_bytes();
        text_row(row, &mut numbered);
        text.extend_from_slice(&numbered);
        let mut fields = Vec::new();
        binary_row(row, &mut fields);
        // The row number as a first INTEGER column: field count 8.
        bin.extend_from_slice(&8i16.to_be_bytes());
        binary::integer(n as i64, 4, &mut bin);
        bin.extend_from_slice(&fields[2..]);
    }
    bin.extend_from_slice(binary::TRAILER);
    copy(&client, "COPY as_text FROM STDIN", text).await;
    copy(&client, "COPY as_binary FROM STDIN (FORMAT binary)", bin).await;
    let read = |table: &str| format!("SELECT n, r::text FROM {table} r ORDER BY n");
    let as_text = client.query(&read("as_text"), &[]).await.expect("read");
    let as_binary = client.query(&read("as_binary"), &[]).await.expect("read");
    assert_eq!(as_text.len(), ROWS.len());
    for (a, b) in as_text.iter().zip(&as_binary) {
        let (a, b): (String, String) = (a.get(1), b.get(1));
        assert_eq!(a, b, "the binary row differs from the text row");
    }
    // And the values are the ones written (not merely the same mistake twice).
    let money: Vec<Option<String>> = client
        .query("SELECT m::text FROM as_binary ORDER BY n", &[])
        .await
        .expect("read")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        money,
        [
            Some("0.00"),
            Some("-0.01"),
            Some("0.01"),
            Some("9999999999.99"),
            Some("-9999999999.99"),
            Some("1000.00"),
            Some("-1000.00"),
            Some("1234.50"),
            Some("0.50"),
            Some("100000000.00"),
            None
        ]
        .map(|v| v.map(str::to_string))
    );
    let scale: i32 = client
        .query_one("SELECT scale(u) FROM as_binary WHERE n = 6", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(scale, 4, "the display scale is the column's");
}

/// Every table's rows, as text, in key order.
async fn contents(url: &str) -> Vec<(String, Vec<String>)> {
    let client = common::connect(url).await;
    let mut all = Vec::new();
    for t in healthetl::schema::SCHEMA.all_tables() {
        let rows = client
            .query(
                &format!("SELECT r::text FROM {} r ORDER BY 1", t.qualified()),
                &[],
            )
            .await
            .expect("read");
        all.push((t.name.clone(), rows.iter().map(|r| r.get(0)).collect()));
    }
    all
}

fn load(url: &str, format: &str, paths: &[&std::path::Path]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_healthetl"))
        .arg("load")
        .args(paths)
        .env("DATABASE_URL", url)
        .env("PG_COPY_FORMAT", format)
        .output()
        .expect("run healthetl");
    assert!(
        out.status.success(),
        "{format}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn binary_and_text_copy_load_identical_warehouses() {
    let dir = common::TempDir::new("binary_vs_text");
    // The generator's noisy files (money formats, US dates, BOM, CRLF, Windows-1252), then a second fact file
    // whose keys overlap the first: appended rows, staged rows and the merge, in both formats.
    let generated = dir.path().join("generated");
    healthetl::generate::generate(&healthetl::generate::GenerateOptions {
        fact_rows: 20_000,
        out_dir: generated.clone(),
        seed: 11,
        plain: false,
    })
    .expect("generate");
    let resend = dir.path().join("resend");
    healthetl::generate::generate(&healthetl::generate::GenerateOptions {
        fact_rows: 5_000,
        out_dir: resend.clone(),
        seed: 12,
        plain: false,
    })
    .expect("generate");
    let resent_fact = std::fs::read_dir(&resend)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("FactTable"))
        })
        .expect("a fact file");
    let (text, binary) = (
        common::TestDb::new("copy_text").await,
        common::TestDb::new("copy_binary").await,
    );
    for (db, format) in [(&text, "text"), (&binary, "binary")] {
        load(&db.url, format, &[generated.as_path()]);
        load(&db.url, format, &[resent_fact.as_path()]);
    }
    let (a, b) = (contents(&text.url).await, contents(&binary.url).await);
    let fact = a.iter().find(|(t, _)| t == "fact_table").expect("fact");
    assert!(fact.1.len() >= 20_000, "{} fact rows", fact.1.len());
    for ((table, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len(), "{table}: row counts differ");
        assert!(
            x == y,
            "{table}: binary COPY stored other values than text COPY"
        );
    }
}
