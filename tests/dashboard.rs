//! The dashboard over HTTP against a real PostgreSQL holding the committed sample: the JSON API's figures equal SQL
//! written here by hand, with and without filters; bad parameters are refused with 400 and a message; the page has
//! its SVG charts; `healthetl report` writes one self-contained file.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{TempDir, TestDb, rows, run_bin, within};
use healthetl::dashboard::Server;
use healthetl::pipeline::{LoadOptions, Status, load_object};
use healthetl::source::Object;
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
    let warehouse = healthetl::warehouse::Postgres::new(&db.url).expect("URL");
    Server::start(warehouse, "127.0.0.1:0".parse().expect("address"))
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
        query: "from=2019-01-01&to=2019-06-30&payer=1&specialty=Psychiatry",
        sql: "f.dim_date_post_pk BETWEEN DATE '2019-01-01' AND DATE '2019-06-30' AND f.dim_payer_pk = 1 \
              AND ph.provider_specialty = 'Psychiatry'",
    },
];

const FROM: &str = "FROM health.fact_table f \
    LEFT JOIN health.dim_physician ph ON ph.dim_physician_pk = f.dim_physician_pk \
    LEFT JOIN health.dim_payer pa ON pa.dim_payer_pk = f.dim_payer_pk";

/// `label → gross charges` of an API breakdown.
fn breakdown(v: &Value, name: &str) -> BTreeMap<String, String> {
    v[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is not an array"))
        .iter()
        .map(|g| {
            (
                g["label"].as_str().expect("label").to_string(),
                g["gross_charges"]
                    .as_str()
                    .expect("gross_charges")
                    .to_string(),
            )
        })
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
        assert_eq!(
            breakdown(&api, "monthly"),
            sql_breakdown(&db, "to_char(f.dim_date_post_pk, 'YYYY-MM')", case.sql).await,
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
        ("payer=abc", "payer: 'abc' is not an id"),
        ("location=1.5", "location: '1.5' is not an id"),
        (
            "from=2020-02-30",
            "from: '2020-02-30' is not a date; expected YYYY-MM-DD",
        ),
        ("to=01/02/2020", "to: '01/02/2020' is not a date"),
        (
            "from=2020-03-01&to=2020-02-01",
            "from (2020-03-01) is after to (2020-02-01)",
        ),
        (
            "payer=1;DROP%20TABLE%20x",
            "payer: '1;DROP TABLE x' is not an id",
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
    // The database was never asked: the fact table is intact.
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
        "chart-monthly",
        "chart-payer",
        "chart-specialty",
        "chart-location",
        "chart-cpt",
    ] {
        assert!(
            html.contains(&format!("<svg id=\"{id}\" class=\"chart\"")),
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
    assert_eq!(html.matches("<svg id=\"chart-").count(), 5);
    assert!(html.contains("Filters: post date from 2019-01-01; payer Aetna."));
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
        ["report", "--out", "bad.html", "--payer", "three"],
    )
    .await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert!(
        refused.stderr.contains("payer: 'three' is not an id"),
        "{}",
        refused.stderr
    );
    assert!(!tmp.path().join("bad.html").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_query_answers_500_and_the_next_request_is_served_again() {
    let (db, _tmp) = sample_db("recovers").await;
    let server = start(&db).await;
    let admin = common::connect(&db.url).await;
    admin
        .batch_execute("ALTER TABLE health.dim_physician RENAME TO dim_physician_away")
        .await
        .expect("rename");
    let failed = get(server.addr(), "/api/summary").await;
    assert_eq!(failed.status, 500, "{}", failed.body);
    let error = failed.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("warehouse query failed"), "{error}");
    assert!(error.contains("dim_physician"), "{error}");
    let page = get(server.addr(), "/").await;
    assert_eq!(page.status, 500);
    assert!(page.body.contains("role=\"alert\""));
    admin
        .batch_execute("ALTER TABLE health.dim_physician_away RENAME TO dim_physician")
        .await
        .expect("rename back");
    let served = get(server.addr(), "/api/summary").await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.json()["totals"]["transactions"], 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_head_is_refused_without_querying() {
    let (db, _tmp) = sample_db("oversized").await;
    let server = start(&db).await;
    let long = format!("/api/summary?specialty={}", "x".repeat(20_000));
    let response = get(server.addr(), &long).await;
    assert_eq!(response.status, 431);
}
