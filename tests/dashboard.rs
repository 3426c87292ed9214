//! The dashboard over HTTP against a real PostgreSQL holding the committed sample: the JSON API's figures equal SQL
//! written here by hand, with and without filters; bad parameters are refused with 400 and a message; the page has
//! its SVG charts; `healthetl report` writes one self-contained file.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{TempDir, TestDb, rows, run_bin, within};
use std::sync::Arc;

use healthetl::dashboard::{Connect, Server, ServerOptions};
use healthetl::pipeline::{LoadOptions, Status, load_object};
use healthetl::source::Object;
use healthetl::warehouse::Loader;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn sample_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

/// A test database holding the committed sample, loaded through the library.
async fn sample_db(test: &str) -> (TestDb, TempDir) {
    let db = TestDb::initialized(test).await;
    let tmp = TempDir::new(test);
    let options = LoadOptions {
        force: false,
        reject_threshold: 0.0,
        rejects_dir: tmp.path().join("rejects"),
        ..LoadOptions::default()
    };
    let files = healthetl::cli::expand_paths(&[sample_dir()]).expect("sample files");
    let mut pg = db.warehouse().await;
    for file in &files {
        let object = Object::local(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let report = within(
            "loading the sample",
            load_object(&mut pg, object, &options, None),
        )
        .await;
        assert_eq!(report.status, Status::Loaded, "{report:#?}");
    }
    (db, tmp)
}

/// Start the dashboard on a free loopback port over `db`.
async fn start(db: &TestDb) -> Server {
    start_with(db, ServerOptions::default()).await
}

/// Opens PostgreSQL sessions on `db`, as the dashboard's pool asks for them.
fn sessions_of(db: &TestDb) -> Connect {
    let url = db.url.clone();
    Arc::new(move || {
        let url = url.clone();
        Box::pin(async move {
            Ok(Box::new(healthetl::warehouse::Postgres::new(&url)?) as Box<dyn Loader>)
        })
    })
}

/// Load a one-row `dimPayer.csv` (a committed load: one more ledger row).
async fn load_payer(db: &TestDb, tmp: &TempDir, pk: u32, name: &str) {
    let payers = tmp.write(
        "dimPayer.csv",
        format!("dimPayerPK,PayerName\n{pk},{name}\n"),
    );
    let mut pg = db.warehouse().await;
    let options = LoadOptions {
        rejects_dir: tmp.path().join("rejects"),
        ..LoadOptions::default()
    };
    let report = load_object(
        &mut pg,
        Object::local(&payers).expect("file"),
        &options,
        None,
    )
    .await;
    assert_eq!(report.status, Status::Loaded, "{report:#?}");
}

/// Start the dashboard on a free loopback port over `db`, sized by `options`.
async fn start_with(db: &TestDb, options: ServerOptions) -> Server {
    Server::start(
        sessions_of(db),
        "127.0.0.1:0".parse().expect("address"),
        options,
    )
    .await
    .expect("the dashboard starts")
}

/// A response: status, lower-cased header lines, body.
struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request over a plain TCP connection; the server closes it after answering.
async fn request(addr: SocketAddr, method: &str, target: &str, host: &str) -> Response {
    within(&format!("{method} {target}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head =
            format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("send");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("receive");
        let text = String::from_utf8(bytes).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        Response {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    })
    .await
}

async fn get(addr: SocketAddr, target: &str) -> Response {
    request(addr, "GET", target, &addr.to_string()).await
}

/// The filters of one API call, as a query string and as SQL conditions written independently of the library.
struct Case {
    query: &'static str,
    sql: &'static str,
}

const CASES: &[Case] = &[
    Case {
        query: "",
        sql: "TRUE",
    },
    Case {
        query: "payer=3",
        sql: "f.dim_payer_pk = 3",
    },
    Case {
        query: "from=2020-01-01&to=2020-06-30&location=2",
        sql: "f.dim_date_post_pk BETWEEN DATE '2020-01-01' AND DATE '2020-06-30' AND f.dim_location_pk = 2",
    },
    Case {
        query: "specialty=Hematology+%26+Oncology&payer=&location=",
        sql: "ph.provider_specialty = 'Hematology & Oncology'",
    },
    Case {
        query: "payer=blue+cross%2C+blue+shield&dates=service&from=2019-07-01",
        sql: "pa.payer_name = 'Blue Cross, Blue Shield' AND f.dim_date_service_pk >= DATE '2019-07-01'",
    },
    Case {
        query: "from=2018-11-01&to=2019-02-28",
        sql: "f.dim_date_post_pk BETWEEN DATE '2018-11-01' AND DATE '2019-02-28'",
    },
    Case {
        query: "from=2019-01-01&to=2019-06-30&payer=1&specialty=Psychiatry",
        sql: "f.dim_date_post_pk BETWEEN DATE '2019-01-01' AND DATE '2019-06-30' AND f.dim_payer_pk = 1 \
              AND ph.provider_specialty = 'Psychiatry'",
    },
];

const FROM: &str = "FROM health.fact_table f \
    LEFT JOIN health.dim_physician ph ON ph.dim_physician_pk = f.dim_physician_pk \
    LEFT JOIN health.dim_payer pa ON pa.dim_payer_pk = f.dim_payer_pk";

/// `(label, value)` of each element of an API list, both strings.
fn pairs(list: &Value, label: &str, value: &str) -> Vec<(String, String)> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|g| {
            (
                g[label].as_str().expect("label").to_string(),
                g[value].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

/// `label → gross charges` of an API breakdown.
fn breakdown(v: &Value, name: &str) -> BTreeMap<String, String> {
    pairs(&v[name], "label", "gross_charges")
        .into_iter()
        .collect()
}

async fn sql_breakdown(db: &TestDb, label: &str, condition: &str) -> BTreeMap<String, String> {
    rows(
        &db.url,
        &format!("SELECT {label}, sum(f.gross_charge)::text {FROM} WHERE {condition} GROUP BY 1"),
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone().expect("label"), r[1].clone().expect("sum")))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_summary_api_equals_sql_written_in_the_test_with_and_without_filters() {
    let (db, _tmp) = sample_db("api_summary").await;
    let server = start(&db).await;
    let mut seen = std::collections::BTreeSet::new();
    for case in CASES {
        let response = get(server.addr(), &format!("/api/summary?{}", case.query)).await;
        assert_eq!(response.status, 200, "{}: {}", case.query, response.body);
        assert!(response.headers.contains("content-type: application/json"));
        let api = response.json();
        // "Data as of": one entry per loaded table, the ledger's last load of each.
        let as_of = rows(
            &db.url,
            "SELECT table_name, to_char(max(finished_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') \
             FROM etl.load_log GROUP BY 1 ORDER BY 1",
        )
        .await;
        let served: Vec<Vec<Option<String>>> = api["data_as_of"]
            .as_array()
            .expect("data_as_of")
            .iter()
            .map(|e| {
                vec![
                    e["table"].as_str().map(str::to_string),
                    e["last_load_utc"].as_str().map(str::to_string),
                ]
            })
            .collect();
        assert_eq!(served, as_of, "data as of");
        assert_eq!(served.len(), 9);
        let t = &api["totals"];
        let want = rows(
            &db.url,
            &format!(
                "SELECT count(*)::text, COALESCE(sum(f.gross_charge), 0)::text, \
                 COALESCE(-sum(f.payment), 0)::text, COALESCE(sum(f.ar), 0)::text, \
                 COALESCE(sum(f.adjustment), 0)::text, COALESCE(sum(f.cpt_units), 0)::text, \
                 round(-sum(f.payment) / sum(f.gross_charge), 4)::text, \
                 round(-sum(f.payment) / (sum(f.gross_charge) + sum(f.adjustment)), 4)::text \
                 {FROM} WHERE {}",
                case.sql
            ),
        )
        .await;
        let got = vec![
            Some(t["transactions"].to_string()),
            t["gross_charges"].as_str().map(String::from),
            t["collected"].as_str().map(String::from),
            t["ar"].as_str().map(String::from),
            t["adjustments"].as_str().map(String::from),
            t["cpt_units"].as_str().map(String::from),
            t["gross_collection_rate"].as_str().map(String::from),
            t["net_collection_rate"].as_str().map(String::from),
        ];
        assert_eq!(got, want[0], "totals for ?{}", case.query);
        assert_ne!(t["transactions"], 0, "?{} selects some lines", case.query);
        seen.insert(t["gross_charges"].to_string());

        assert_eq!(
            breakdown(&api, "payers"),
            sql_breakdown(&db, "COALESCE(pa.payer_name, 'unknown')", case.sql).await,
            "payers for ?{}",
            case.query
        );
        assert_eq!(
            breakdown(&api, "specialties"),
            sql_breakdown(&db, "COALESCE(ph.provider_specialty, 'unknown')", case.sql).await,
            "specialties for ?{}",
            case.query
        );
        // The time axis: every month from the first to the last with lines, the empty ones at zero.
        let periods = &api["timeline"]["periods"];
        let mut months = breakdown(&api["timeline"], "periods");
        let labels: Vec<&String> = months.keys().collect();
        assert_eq!(labels.len(), periods.as_array().map_or(0, Vec::len));
        for pair in labels.windows(2) {
            let (y, m) = pair[0].split_once('-').expect("YYYY-MM");
            let (y, m): (u32, u32) = (y.parse().expect("year"), m.parse().expect("month"));
            let next = if m == 12 {
                format!("{}-01", y + 1)
            } else {
                format!("{y}-{:02}", m + 1)
            };
            assert_eq!(
                *pair[1], next,
                "months follow each other for ?{}",
                case.query
            );
        }
        // A range's axis reaches out to the months of its edges, with or without lines there.
        for (edge, label) in [("from=", labels.first()), ("to=", labels.last())] {
            if let Some(at) = case.query.find(edge) {
                let day = &case.query[at + edge.len()..at + edge.len() + 7];
                assert_eq!(
                    label.map(|l| l.as_str()),
                    Some(day),
                    "axis edge {edge} for ?{}",
                    case.query
                );
            }
        }
        months.retain(|_, gross| gross != "0.00");
        let month = if case.query.contains("dates=service") {
            "to_char(f.dim_date_service_pk, 'YYYY-MM')"
        } else {
            "to_char(f.dim_date_post_pk, 'YYYY-MM')"
        };
        assert_eq!(
            months,
            sql_breakdown(&db, month, case.sql).await,
            "months for ?{}",
            case.query
        );
    }
    assert_eq!(seen.len(), CASES.len(), "each filter changes the figures");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_filters_api_lists_payers_locations_and_specialties() {
    let (db, _tmp) = sample_db("api_filters").await;
    let server = start(&db).await;
    let response = get(server.addr(), "/api/filters").await;
    assert_eq!(response.status, 200);
    let v = response.json();
    assert_eq!(v["payers"].as_array().map(Vec::len), Some(8));
    assert_eq!(v["locations"].as_array().map(Vec::len), Some(10));
    assert!(
        v["payers"]
            .as_array()
            .expect("payers")
            .iter()
            .any(|p| p["id"] == 4 && p["name"] == "Blue Cross, Blue Shield")
    );
    assert!(
        v["specialties"]
            .as_array()
            .expect("specialties")
            .iter()
            .any(|s| s == "Hematology & Oncology")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_refused_with_400_and_a_message_naming_them() {
    let (db, _tmp) = sample_db("bad_params").await;
    let server = start(&db).await;
    let cases = [
        (
            "payer=123456789012345678901",
            "payer: '123456789012345678901' is not one of a key that fits 64 bits, or a name",
        ),
        ("grain=year", "grain: 'year' is not one of day, week, month"),
        (
            "dates=billed",
            "dates: 'billed' is not one of post, service",
        ),
        (
            "age_band=40s",
            "age_band: '40s' is not one of under 18, 18-65, over 65, unknown",
        ),
        (
            "sort=payers.patient",
            "sort: 'payers.patient' is not one of",
        ),
        (
            "from=2020-02-30",
            "from: '2020-02-30' is not a date; expected YYYY-MM-DD",
        ),
        ("to=01/02/2020", "to: '01/02/2020' is not a date"),
        (
            "from=2020-03-01&to=2020-02-01",
            "from (2020-03-01) is after to (2020-02-01)",
        ),
        ("order=name", "unknown parameter 'order'"),
        ("payer=1&payer=2", "given more than once"),
    ];
    for (query, message) in cases {
        let api = get(server.addr(), &format!("/api/summary?{query}")).await;
        assert_eq!(api.status, 400, "{query}: {}", api.body);
        let error = api.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(message), "{query}: {error}");
        let page = get(server.addr(), &format!("/?{query}")).await;
        assert_eq!(page.status, 400, "{query}");
        assert!(page.headers.contains("content-type: text/html"));
        assert!(page.body.contains("role=\"alert\""), "{query}");
    }
    // A name that is SQL is only ever a parameter: it matches no payer.
    let injected = get(
        server.addr(),
        "/api/summary?payer=1%27%3BDROP%20TABLE%20x%3B--",
    )
    .await;
    assert_eq!(injected.status, 200, "{}", injected.body);
    assert_eq!(injected.json()["totals"]["transactions"], 0);
    assert_eq!(db.count("health.fact_table").await, 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_html_with_the_svg_charts_kpis_and_a_get_form() {
    let (db, _tmp) = sample_db("page").await;
    let server = start(&db).await;
    let page = get(server.addr(), "/?payer=3").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.headers
            .contains("content-type: text/html; charset=utf-8")
    );
    assert!(
        page.headers
            .contains("content-security-policy: default-src 'none'")
    );
    let html = &page.body;
    for id in [
        "chart-timeline",
        "chart-payers",
        "chart-aging",
        "chart-adjustments",
        "chart-specialties",
        "chart-locations",
        "chart-cpt_groups",
        "chart-physicians",
        "chart-cpt_codes",
    ] {
        assert!(
            html.contains(&format!("<svg id=\"{id}\" class=\"chart")),
            "{id}"
        );
        assert!(html.contains(&format!("<title id=\"{id}-title\">")), "{id}");
        assert!(html.contains(&format!("<desc id=\"{id}-desc\">")), "{id}");
    }
    assert!(html.contains("<form class=\"filters\" method=\"get\" action=\"/\""));
    assert!(html.contains("<option value=\"3\" selected>Aetna</option>"));
    // The payer chart has Aetna's bar only, and the tile its charges.
    assert_eq!(html.matches("data-collected=").count(), 1);
    let aetna: String = common::scalar(
        &db.url,
        "SELECT sum(gross_charge)::text FROM health.fact_table WHERE dim_payer_pk = 3",
    )
    .await;
    assert!(html.contains(&format!(
        "data-kpi=\"gross_charges\" data-value=\"{aetna}\""
    )));
    assert!(!html.contains("<script"), "no script");
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_other_methods_and_foreign_host_names_are_refused() {
    let (db, _tmp) = sample_db("refusals").await;
    let server = start(&db).await;
    let addr = server.addr();
    assert_eq!(get(addr, "/nope").await.status, 404);
    assert_eq!(
        get(addr, "/api/nope").await.json()["error"],
        "no such page; the dashboard is at /"
    );
    let post = request(addr, "POST", "/api/summary", &addr.to_string()).await;
    assert_eq!(post.status, 405);
    assert!(post.headers.contains("allow: get, head"));
    let head = request(addr, "HEAD", "/api/summary", &addr.to_string()).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let rebound = request(addr, "GET", "/api/summary", "attacker.example:80").await;
    assert_eq!(rebound.status, 400);
    assert!(
        rebound.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Host header")
    );
    assert_eq!(
        request(
            addr,
            "GET",
            "/api/summary",
            &format!("localhost:{}", addr.port())
        )
        .await
        .status,
        200
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_command_writes_one_self_contained_html_file() {
    let (db, tmp) = sample_db("report").await;
    let out = tmp.path().join("report.html");
    let run = run_bin(
        Some(&db.url),
        tmp.path(),
        [
            "report",
            "--out",
            "report.html",
            "--payer",
            "3",
            "--from",
            "2019-01-01",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let html = read(&out);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg id=\"chart-").count(), 9);
    assert!(html.contains("Filters: post date from 2019-01-01; payer Aetna."));
    assert!(html.contains("@media print"));
    // Nothing outside the file: no scheme anywhere, no script, no linked resource, no form posting elsewhere.
    for banned in [
        "http://", "https://", "<script", "<link", "src=", "url(", "<form", "@import",
    ] {
        assert!(!html.contains(banned), "{banned} in the report");
    }
    let aetna: String = common::scalar(
        &db.url,
        "SELECT sum(gross_charge)::text FROM health.fact_table WHERE dim_payer_pk = 3",
    )
    .await;
    assert!(html.contains(&format!(
        "data-kpi=\"gross_charges\" data-value=\"{aetna}\""
    )));

    let refused = run_bin(
        Some(&db.url),
        tmp.path(),
        ["report", "--out", "bad.html", "--grain", "year"],
    )
    .await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert!(
        refused
            .stderr
            .contains("grain: 'year' is not one of day, week, month"),
        "{}",
        refused.stderr
    );
    assert!(!tmp.path().join("bad.html").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_query_answers_500_and_the_next_request_is_served_again() {
    let (db, _tmp) = sample_db("recovers").await;
    let server = start(&db).await;
    // The landing page is computed ahead at start: the failing requests below are filtered ones, computed then.
    kept_at(&server, db.ledger_rows().await).await;
    let admin = common::connect(&db.url).await;
    admin
        .batch_execute("ALTER TABLE health.dim_physician RENAME TO dim_physician_away")
        .await
        .expect("rename");
    let failed = get(server.addr(), "/api/summary?payer=3").await;
    assert_eq!(failed.status, 500, "{}", failed.body);
    let error = failed.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("warehouse query failed"), "{error}");
    assert!(error.contains("dim_physician"), "{error}");
    let page = get(server.addr(), "/?payer=3").await;
    assert_eq!(page.status, 500);
    assert!(page.body.contains("role=\"alert\""));
    admin
        .batch_execute("ALTER TABLE health.dim_physician_away RENAME TO dim_physician")
        .await
        .expect("rename back");
    let served = get(server.addr(), "/api/summary?payer=3").await;
    assert_eq!(served.status, 200, "{}", served.body);
    let want: i64 = common::scalar(
        &db.url,
        "SELECT count(*) FROM health.fact_table WHERE dim_payer_pk = 3",
    )
    .await;
    assert_eq!(served.json()["totals"]["transactions"], want);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_head_or_query_is_refused_without_querying() {
    let (db, _tmp) = sample_db("oversized").await;
    let server = start(&db).await;
    let long = format!("/api/summary?specialty={}", "x".repeat(20_000));
    let response = get(server.addr(), &long).await;
    assert_eq!(response.status, 431);
    let long = format!("/api/summary?specialty={}", "x".repeat(5_000));
    let response = get(server.addr(), &long).await;
    assert_eq!(response.status, 414, "{}", response.body);
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("longer than 4096 bytes")
    );
    assert!(response.headers.contains("content-security-policy:"));
}

/// Read one response (status, body) from a kept-alive connection: the head, then Content-Length bytes.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("receive");
        assert_eq!(n, 1, "the connection closed inside a response head");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes)
        .expect("UTF-8 head")
        .to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("the body");
    (status, String::from_utf8(body).expect("UTF-8 body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_serves_request_after_request() {
    let (db, _tmp) = sample_db("keep_alive").await;
    let server = start(&db).await;
    let addr = server.addr();
    within("three requests on one connection", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        for target in ["/api/summary", "/api/filters", "/api/summary?payer=3"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            stream.write_all(head.as_bytes()).await.expect("send");
            let (status, body) = read_response(&mut stream).await;
            assert_eq!(status, 200, "{target}: {body}");
            assert!(body.starts_with('{'), "{target}: {body}");
        }
    })
    .await;
}

/// Hold an ACCESS EXCLUSIVE lock on the fact table in an open transaction: every summary query waits on it.
async fn lock_the_fact_table(db: &TestDb) -> tokio_postgres::Client {
    let admin = common::connect(&db.url).await;
    admin
        .batch_execute("BEGIN; LOCK TABLE health.fact_table IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    admin
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_page_does_not_hold_up_the_other_viewers() {
    let (db, _tmp) = sample_db("side_by_side").await;
    let server = start_with(
        &db,
        ServerOptions {
            sessions: 2,
            ..ServerOptions::default()
        },
    )
    .await;
    let addr = server.addr();
    // The landing page is computed ahead at start; a filtered page is not.
    kept_at(&server, db.ledger_rows().await).await;
    let admin = lock_the_fact_table(&db).await;
    let slow = tokio::spawn(async move { get(addr, "/api/summary?payer=3").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!slow.is_finished(), "the summary waits on the lock");
    // The filter choices read the dimensions only: a second session answers them while the first one waits.
    let filters =
        tokio::time::timeout(std::time::Duration::from_secs(5), get(addr, "/api/filters"))
            .await
            .expect("the second viewer is answered while the first waits");
    assert_eq!(filters.status, 200, "{}", filters.body);
    admin.batch_execute("COMMIT").await.expect("unlock");
    let slow = slow.await.expect("the slow request");
    assert_eq!(slow.status, 200, "{}", slow.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_of_a_page_being_computed_wait_for_it_instead_of_computing_it_again() {
    let (db, _tmp) = sample_db("single_flight").await;
    let server = start(&db).await;
    let addr = server.addr();
    kept_at(&server, db.ledger_rows().await).await;
    let admin = lock_the_fact_table(&db).await;
    let viewers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, "/api/summary?payer=3").await }))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let waiting: i64 = common::scalar(
        &db.url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
            db.url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default()
        ),
    )
    .await;
    assert_eq!(
        waiting, 1,
        "one computation of the page waits on the lock, not three"
    );
    admin.batch_execute("COMMIT").await.expect("unlock");
    let mut bodies = Vec::new();
    for viewer in viewers {
        let answered = within("a viewer", viewer).await.expect("task");
        assert_eq!(answered.status, 200, "{}", answered.body);
        bodies.push(answered.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the same figures for all"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_finishes_the_request_in_progress_and_accepts_no_more() {
    let (db, _tmp) = sample_db("graceful").await;
    let server = start(&db).await;
    let addr = server.addr();
    kept_at(&server, db.ledger_rows().await).await;
    let admin = lock_the_fact_table(&db).await;
    let in_flight = tokio::spawn(async move { get(addr, "/api/summary?payer=3").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopping server accepts no connection"
    );
    assert!(
        !stopping.is_finished(),
        "the stop waits for the request in progress"
    );
    admin.batch_execute("COMMIT").await.expect("unlock");
    let answered = within("the request in progress", in_flight)
        .await
        .expect("task");
    assert_eq!(answered.status, 200, "{}", answered.body);
    within("the stop", stopping)
        .await
        .expect("task")
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn summaries_are_kept_until_a_load_commits() {
    let (db, tmp) = sample_db("cache").await;
    let server = start(&db).await;
    let addr = server.addr();
    let before = get(addr, "/api/summary").await.json();
    assert_eq!(before["totals"]["transactions"], 1000);
    // A write that bypasses the loader leaves the ledger as it was: the kept summary is still served.
    let admin = common::connect(&db.url).await;
    admin
        .batch_execute("DELETE FROM health.fact_table WHERE fact_table_pk IN (SELECT fact_table_pk FROM health.fact_table ORDER BY 1 LIMIT 10)")
        .await
        .expect("delete");
    assert_eq!(
        get(addr, "/api/summary").await.json()["totals"]["transactions"],
        1000
    );
    // A committed load adds its ledger row: the next request reads the warehouse again.
    load_payer(&db, &tmp, 99, "Test Payer").await;
    assert_eq!(
        get(addr, "/api/summary").await.json()["totals"]["transactions"],
        990
    );
    let choices = get(addr, "/api/filters").await.json();
    assert!(choices.to_string().contains("Test Payer"), "{choices}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_sessions_cannot_write() {
    let db = TestDb::initialized("read_only").await;
    let pool = healthetl::dashboard::pool::Pool::new(sessions_of(&db), 1);
    for round in 0..2 {
        let mut session = pool.get().await.expect("a session");
        let client = session.client().await.expect("connected");
        let refused = client
            .batch_execute("CREATE TABLE health.written_by_the_dashboard (x int)")
            .await
            .expect_err("a write is refused");
        assert!(
            refused.to_string().contains("read-only transaction")
                || format!("{refused:?}").contains("read-only transaction"),
            "round {round}: {refused:?}"
        );
    }
    assert_eq!(
        common::scalar::<i64>(
            &db.url,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'written_by_the_dashboard'"
        )
        .await,
        0
    );
}

/// Wait until the server keeps pages of the warehouse holding `loads` ledger rows.
async fn kept_at(server: &Server, loads: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.kept_version() != Some(loads) {
        assert!(
            std::time::Instant::now() < deadline,
            "the landing page was not computed ahead for {loads} loads (kept: {:?})",
            server.kept_version()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_landing_page_is_computed_ahead_at_start_and_after_each_load() {
    let (db, tmp) = sample_db("warm").await;
    let server = start(&db).await;
    let addr = server.addr();
    kept_at(&server, db.ledger_rows().await).await;
    load_payer(&db, &tmp, 98, "Warm Payer").await;
    // Nobody asked for a page: the server saw the new ledger row and computed the landing page by itself.
    kept_at(&server, db.ledger_rows().await).await;
    // With the fact table locked, only a page computed ahead can be answered.
    let admin = lock_the_fact_table(&db).await;
    let quick = std::time::Duration::from_secs(5);
    let page = tokio::time::timeout(quick, get(addr, "/"))
        .await
        .expect("the landing page is answered without reading the fact table");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Warm Payer"),
        "the new payer is a choice"
    );
    let summary = tokio::time::timeout(quick, get(addr, "/api/summary"))
        .await
        .expect("its figures too");
    assert_eq!(summary.json()["totals"]["transactions"], 1000);
    admin.batch_execute("COMMIT").await.expect("unlock");
}

#[test]
fn sigterm_stops_the_dashboard_cleanly() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (db, _tmp) = runtime.block_on(sample_db("sigterm"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_healthetl"))
        .args(["-q", "dashboard", "--port", "0", "--database-url", &db.url])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the URL line");
    assert!(line.starts_with("dashboard: http://127.0.0.1:"), "{line}");
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?} after SIGTERM");
}

/// Every kind of filter, alone and combined, against SQL written here: the totals of the API equal the hand query's.
#[tokio::test(flavor = "multi_thread")]
async fn every_filter_kind_selects_what_sql_written_in_the_test_selects() {
    let (db, _tmp) = sample_db("filter_kinds").await;
    let server = start(&db).await;
    let from = "FROM health.fact_table f \
        LEFT JOIN health.dim_physician ph ON ph.dim_physician_pk = f.dim_physician_pk \
        LEFT JOIN health.dim_payer pa ON pa.dim_payer_pk = f.dim_payer_pk \
        LEFT JOIN health.dim_location lo ON lo.dim_location_pk = f.dim_location_pk \
        LEFT JOIN health.dim_cpt_code c ON c.dim_cpt_code_pk = f.dim_cpt_code_pk \
        LEFT JOIN health.dim_diagnosis_code dx ON dx.dim_diagnosis_code_pk = f.dim_diagnosis_code_pk \
        LEFT JOIN health.dim_patient pt ON pt.dim_patient_pk = f.dim_patient_pk";
    let cases = [
        (
            "location=St.+Luke%E2%80%99s+Hospital",
            "lo.location_name = 'St. Luke’s Hospital'",
        ),
        ("physician=2", "f.dim_physician_pk = 2"),
        (
            "physician=andr%C3%A9+martinez%2C+md%2C+phd",
            "ph.provider_name = 'André Martinez, MD, PhD'",
        ),
        ("cpt_group=surgery", "c.cpt_grouping = 'Surgery'"),
        ("cpt=99213", "c.cpt_code = '99213'"),
        ("diagnosis=I10", "dx.diagnosis_code = 'I10'"),
        (
            "diagnosis_group=Diseases+of+the+circulatory+system",
            "dx.diagnosis_code_group = 'Diseases of the circulatory system'",
        ),
        ("gender=female", "pt.patient_gender = 'Female'"),
        ("age_band=18-65", "pt.patient_age BETWEEN 18 AND 65"),
        ("age_band=over+65", "pt.patient_age > 65"),
        ("state=KY", "pt.state = 'KY'"),
        (
            "dates=service&from=2019-03-01&to=2019-09-30",
            "f.dim_date_service_pk BETWEEN DATE '2019-03-01' AND DATE '2019-09-30'",
        ),
        (
            "gender=Male&payer=1&cpt_group=Evaluation+and+Management&grain=day",
            "pt.patient_gender = 'Male' AND f.dim_payer_pk = 1 AND c.cpt_grouping = 'Evaluation and Management'",
        ),
    ];
    for (query, condition) in cases {
        let response = get(server.addr(), &format!("/api/summary?{query}")).await;
        assert_eq!(response.status, 200, "{query}: {}", response.body);
        let t = &response.json()["totals"];
        let want = rows(
            &db.url,
            &format!(
                "SELECT count(*)::text, COALESCE(sum(f.gross_charge), 0)::text, COALESCE(sum(f.ar), 0)::text \
                 {from} WHERE {condition}"
            ),
        )
        .await;
        let got = vec![
            Some(t["transactions"].to_string()),
            t["gross_charges"].as_str().map(String::from),
            t["ar"].as_str().map(String::from),
        ];
        assert_eq!(got, want[0], "?{query}");
        assert_ne!(t["transactions"], 0, "?{query} selects some lines");
    }
    // "unknown": the lines whose key is missing from its dimension (after the payer's row is removed).
    let admin = common::connect(&db.url).await;
    admin
        .batch_execute("DELETE FROM health.dim_payer WHERE dim_payer_pk = 8")
        .await
        .expect("delete a payer");
    let unknown = get(server.addr(), "/api/summary?payer=unknown")
        .await
        .json();
    let orphans: i64 = common::scalar(
        &db.url,
        "SELECT count(*) FROM health.fact_table WHERE dim_payer_pk = 8",
    )
    .await;
    assert!(orphans > 0);
    assert_eq!(unknown["totals"]["transactions"], orphans);
    let options = get(server.addr(), "/api/filters").await.json();
    for list in [
        "physicians",
        "cpt_groups",
        "cpt_codes",
        "diagnosis_groups",
        "diagnosis_codes",
        "genders",
        "age_bands",
        "states",
    ] {
        assert!(
            options[list].as_array().is_some_and(|l| !l.is_empty()),
            "{list}: {options}"
        );
    }
}

/// The CSV export of each table has the API's figures (the same filters), aggregates only.
#[tokio::test(flavor = "multi_thread")]
async fn each_table_exports_as_csv_with_the_apis_exact_figures() {
    let (db, _tmp) = sample_db("export").await;
    let server = start(&db).await;
    let query = "payer=3&grain=week&sort=payers.gross_charges&dir=asc";
    let api = get(server.addr(), &format!("/api/summary?{query}"))
        .await
        .json();
    for (table, key, name, value) in [
        ("payers", "payers", "payer", "gross_charges"),
        ("timeline", "timeline", "period", "gross_charges"),
        ("physicians", "top_physicians", "physician", "gross_charges"),
        ("cpt_codes", "top_cpt_codes", "cpt_code", "gross_charges"),
        (
            "adjustments",
            "adjustments_by_reason",
            "reason",
            "adjustments",
        ),
        ("aging", "ar_aging", "bucket", "ar"),
    ] {
        let response = get(server.addr(), &format!("/export/{table}.csv?{query}")).await;
        assert_eq!(response.status, 200, "{table}: {}", response.body);
        assert!(response.headers.contains("content-type: text/csv"));
        let (header, records) = common::files::records(&response.body);
        assert_eq!(header[0], name, "{table}");
        assert!(
            !header.iter().any(|h| h.contains("patient")),
            "{table}: {header:?}"
        );
        let at = header
            .iter()
            .position(|h| h == value)
            .expect("value column");
        let exported: BTreeMap<String, String> = records
            .into_iter()
            .map(|r| (r[0].clone(), r[at].clone()))
            .collect();
        let list = if key == "timeline" {
            &api[key]["periods"]
        } else {
            &api[key]
        };
        let label = if key == "ar_aging" { "bucket" } else { "label" };
        let served: BTreeMap<String, String> = pairs(list, label, value).into_iter().collect();
        assert_eq!(exported, served, "{table}");
        assert!(!exported.is_empty(), "{table}");
    }
    let missing = get(server.addr(), "/export/patients.csv").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("expected one of timeline, payers"),
        "{}",
        missing.body
    );
    assert_eq!(
        get(server.addr(), "/export/payers.csv?grain=year")
            .await
            .status,
        400
    );
}

/// One fact line of the sample, read from the files with what the revenue-cycle figures need.
struct Line {
    post: time::Date,
    service: time::Date,
    payer: String,
    physician: String,
    reason: String,
    gross: i64,
    payment: i64,
    adjustment: i64,
    ar: i64,
}

fn day((y, m, d): common::files::Date) -> time::Date {
    let month = time::Month::try_from(u8::try_from(m).expect("month")).expect("month");
    time::Date::from_calendar_date(
        i32::try_from(y).expect("year"),
        month,
        u8::try_from(d).expect("day"),
    )
    .expect("a day")
}

fn sample_lines() -> Vec<Line> {
    use common::files::{field, key, parse_date, parse_money, read_table};
    let dir = sample_dir();
    let manifest: Value =
        serde_json::from_str(&read(&dir.join("manifest.json"))).expect("manifest");
    let table = |name: &str| {
        let t = &manifest["tables"][name];
        read_table(
            &dir,
            t["file"].as_str().expect("file"),
            t["encoding"].as_str().expect("encoding"),
        )
    };
    let names = |name: &str, pk: &str, column: &str| -> BTreeMap<i64, String> {
        table(name)
            .iter()
            .map(|r| (key(r, pk), field(r, column).to_string()))
            .collect()
    };
    let payers = names("dim_payer", "dimPayerPK", "PayerName");
    let physicians = names("dim_physician", "dimPhysicianPK", "ProviderName");
    let reasons = names("dim_transaction", "dimTransactionPK", "AdjustmentReason");
    let named = |map: &BTreeMap<i64, String>, k: i64| {
        map.get(&k)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    };
    table("fact_table")
        .iter()
        .map(|r| Line {
            post: day(parse_date(field(r, "dimDatePostPK"))),
            service: day(parse_date(field(r, "dimDateServicePK"))),
            payer: named(&payers, key(r, "dimPayerPK")),
            physician: named(&physicians, key(r, "dimPhysicianPK")),
            reason: named(&reasons, key(r, "dimTransactionPK")),
            gross: parse_money(field(r, "GrossCharge")),
            payment: parse_money(field(r, "Payment")),
            adjustment: parse_money(field(r, "Adjustment")),
            ar: parse_money(field(r, "AR")),
        })
        .collect()
}

/// `(gross, collected, adjustments, ar)` of lines.
fn sums<'a>(lines: impl Iterator<Item = &'a Line>) -> (i64, i64, i64, i64) {
    lines.fold((0, 0, 0, 0), |(g, c, a, r), l| {
        (g + l.gross, c - l.payment, a + l.adjustment, r + l.ar)
    })
}

/// The revenue-cycle figures of the API — AR aging, days in AR, adjustments by reason, collection rates per payer,
/// top physicians, the weekly time axis with its empty weeks, and the month-over-month and year-over-year months —
/// equal an independent computation over the sample's CSV files, in exact cents.
#[tokio::test(flavor = "multi_thread")]
async fn the_revenue_cycle_figures_equal_a_computation_over_the_csv_files() {
    use common::files::{decimal, rate};
    let (db, _tmp) = sample_db("revenue_cycle").await;
    let server = start(&db).await;
    let all = sample_lines();
    let to = day((2020, 3, 31));
    type Pick = fn(&Line, time::Date) -> bool;
    let cases: [(&str, Pick, Option<time::Date>); 2] = [
        ("grain=week", |_, _| true, None),
        (
            "grain=week&payer=aetna&to=2020-03-31",
            |l, to| l.payer == "Aetna" && l.post <= to,
            Some(to),
        ),
    ];
    for (query, pick, range_end) in cases {
        let api = get(server.addr(), &format!("/api/summary?{query}"))
            .await
            .json();
        let lines: Vec<&Line> = all.iter().filter(|l| pick(l, to)).collect();
        assert!(lines.len() > 20, "{query}");
        let (gross, collected, adjustments, ar) = sums(lines.iter().copied());
        let first = lines.iter().map(|l| l.post).min().expect("lines");
        let as_of = range_end.unwrap_or_else(|| lines.iter().map(|l| l.post).max().expect("lines"));
        assert_eq!(api["as_of"], as_of.to_string(), "{query}");
        assert_eq!(
            api["totals"]["adjustments"],
            decimal(adjustments),
            "{query}"
        );

        // AR aging: days from the service date to the as-of date.
        let mut buckets = [0_i64; 5];
        for l in &lines {
            let days = (as_of - l.service).whole_days().max(0);
            let i = [30, 60, 90, 120]
                .iter()
                .position(|b| days <= *b)
                .unwrap_or(4);
            buckets[i] += l.ar;
        }
        let served = pairs(&api["ar_aging"], "bucket", "ar");
        let want: Vec<(String, String)> = ["0-30", "31-60", "61-90", "91-120", "120+"]
            .iter()
            .zip(buckets)
            .map(|(b, v)| (b.to_string(), decimal(v)))
            .collect();
        assert_eq!(served, want, "aging for ?{query}");
        assert_eq!(buckets.iter().sum::<i64>(), ar);

        // Days in AR: AR ÷ (gross ÷ days of the period), in tenths, half away from zero.
        let days = (as_of - first).whole_days() + 1;
        let (n, d) = (i128::from(ar) * i128::from(days) * 10, i128::from(gross));
        let tenths =
            (2 * n.abs() + d.abs()) / (2 * d.abs()) * if (n < 0) != (d < 0) { -1 } else { 1 };
        let want = format!("{}.{}", tenths / 10, (tenths % 10).abs());
        assert_eq!(api["days_in_ar"], want, "days in AR for ?{query}");
        assert_eq!(api["period_days"], days);

        // Adjustments by reason, and each reason's rate over the selection's gross charges.
        let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
        for l in lines.iter().filter(|l| l.adjustment != 0) {
            *reasons.entry(l.reason.clone()).or_default() += l.adjustment;
        }
        reasons.retain(|_, v| *v != 0);
        let served: BTreeMap<String, (String, Option<String>)> = api["adjustments_by_reason"]
            .as_array()
            .expect("adjustments")
            .iter()
            .map(|g| {
                (
                    g["label"].as_str().expect("label").into(),
                    (
                        g["adjustments"].as_str().expect("sum").into(),
                        g["adjustment_rate"].as_str().map(String::from),
                    ),
                )
            })
            .collect();
        let want: BTreeMap<String, (String, Option<String>)> = reasons
            .iter()
            .map(|(r, v)| (r.clone(), (decimal(*v), rate(-v, gross))))
            .collect();
        assert_eq!(served, want, "adjustments for ?{query}");
        assert!(want.len() > 2, "several reasons");

        // Collection rates per payer.
        let mut payers: BTreeMap<String, Vec<&Line>> = BTreeMap::new();
        for l in &lines {
            payers.entry(l.payer.clone()).or_default().push(l);
        }
        for p in api["payers"].as_array().expect("payers") {
            let (g, c, a, _) = sums(payers[p["label"].as_str().expect("label")].iter().copied());
            assert_eq!(
                p["gross_collection_rate"].as_str().map(String::from),
                rate(c, g)
            );
            assert_eq!(
                p["net_collection_rate"].as_str().map(String::from),
                rate(c, g + a)
            );
        }

        // Top physicians by gross charges.
        let mut physicians: BTreeMap<String, i64> = BTreeMap::new();
        for l in &lines {
            *physicians.entry(l.physician.clone()).or_default() += l.gross;
        }
        let mut top: Vec<(String, i64)> = physicians.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        let served = pairs(&api["top_physicians"], "label", "gross_charges");
        let want: Vec<(String, String)> = top.into_iter().map(|(n, g)| (n, decimal(g))).collect();
        assert_eq!(served, want, "top physicians for ?{query}");

        // Weekly time axis: every Monday from the first week to the last (the range's last day's week when a range
        // ends the selection), empty weeks at zero.
        let monday = |d: time::Date| {
            d - time::Duration::days(i64::from(d.weekday().number_days_from_monday()))
        };
        let mut weeks: BTreeMap<time::Date, i64> = BTreeMap::new();
        let last_line = lines.iter().map(|l| l.post).max().expect("lines");
        let last_week = monday(range_end.map_or(last_line, |end| end.max(last_line)));
        let mut w = monday(first);
        while w <= last_week {
            weeks.insert(w, 0);
            w += time::Duration::weeks(1);
        }
        for l in &lines {
            *weeks.get_mut(&monday(l.post)).expect("a week") += l.gross;
        }
        let served = pairs(&api["timeline"]["periods"], "label", "gross_charges");
        let want: Vec<(String, String)> = weeks
            .iter()
            .map(|(w, g)| (w.to_string(), decimal(*g)))
            .collect();
        assert_eq!(served, want, "weeks for ?{query}");

        // Month over month and year over year: the as-of month, the month before, the month a year before, with
        // the same filters but any date.
        let month_of = |d: time::Date| (d.year(), u8::from(d.month()));
        let unranged: Vec<&Line> = all.iter().filter(|l| pick(l, time::Date::MAX)).collect();
        let (y, m) = month_of(as_of);
        let before = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        for (key, (y, m)) in [
            ("current", (y, m)),
            ("previous_month", before),
            ("previous_year", (y - 1, m)),
        ] {
            let (g, c, _, _) = sums(
                unranged
                    .iter()
                    .copied()
                    .filter(|l| month_of(l.post) == (y, m)),
            );
            let served = &api["comparison"][key];
            assert_eq!(served["gross_charges"], decimal(g), "{key} for ?{query}");
            assert_eq!(served["collected"], decimal(c), "{key} for ?{query}");
        }
        assert_eq!(api["totals"]["collected"], decimal(collected));
    }
}
