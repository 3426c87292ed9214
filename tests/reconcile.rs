//! Reconcile against a real S3-compatible server (moto) and PostgreSQL: objects uploaded with notifications off
//! are found and loaded, a second reconcile finds nothing, a changed object is found again, `--enqueue` sends
//! notifications the worker loads, and the scheduled invocation the template wires does the same.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use common::moto::Moto;
use common::{Output, TempDir, TestDb, run_bin_with};
use healthetl::config::Config;
use healthetl::handler::Handler;
use healthetl::warehouse::Postgres;
use serde_json::{Value, json};

const BUCKET: &str = "landing";

async fn healthetl(db: &TestDb, moto: &Moto, tmp: &TempDir, args: &[&str]) -> Output {
    let env = moto.env();
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.push(("DATABASE_URL", &db.url));
    run_bin_with(&pairs, tmp.path(), args.iter().copied()).await
}

/// A queue without any notification wired to it: reconcile is its only sender.
async fn queue(moto: &Moto, name: &str) -> String {
    moto.sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL")
}

/// `healthetl reconcile --json ARGS… URI`, which must succeed: its JSON.
async fn reconcile(db: &TestDb, moto: &Moto, tmp: &TempDir, args: &[&str]) -> Value {
    let mut all = vec!["reconcile", "--json"];
    all.extend_from_slice(args);
    json(&healthetl(db, moto, tmp, &all).await)
}

fn json(out: &Output) -> Value {
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    out.json()
}

/// The sample's nine files under `incoming/` (no notifications are configured), plus what reconcile must skip.
async fn upload_sample(moto: &Moto) -> usize {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let mut count = 0;
    for entry in std::fs::read_dir(&sample).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".csv") {
            moto.put(
                BUCKET,
                &format!("incoming/{name}"),
                std::fs::read(&path).unwrap(),
            )
            .await;
            count += 1;
        }
    }
    moto.put(BUCKET, "incoming/manifest.json", b"{}".to_vec())
        .await;
    moto.put(BUCKET, "quarantine/incoming/dimPayer.csv", b"x".to_vec())
        .await;
    count
}

#[tokio::test]
async fn objects_s3_never_announced_are_found_loaded_once_and_found_again_when_changed() {
    let db = TestDb::new("reconcile_load").await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let tmp = TempDir::new("reconcile_load");
    let files = upload_sample(&moto).await;
    assert_eq!(files, 9);
    let uri = "s3://landing/incoming/";

    let found = reconcile(&db, &moto, &tmp, &[uri]).await;
    assert_eq!(found["totals"]["objects"], 9, "{found}");
    assert_eq!(found["totals"]["never_loaded"], 9);
    let keys: Vec<&str> = found["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys.last(),
        Some(&"incoming/FactTable.csv"),
        "dimensions first: {keys:?}"
    );

    let dry = reconcile(&db, &moto, &tmp, &["--load", "--dry-run", uri]).await;
    assert_eq!(dry["loads"].as_array().unwrap().len(), 0);
    assert_eq!(db.ledger_rows().await, 0, "a dry run loads nothing");

    let loaded = reconcile(&db, &moto, &tmp, &["--load", uri]).await;
    let statuses: Vec<&str> = loaded["loads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["loaded"; 9], "{loaded}");
    assert_eq!(db.ledger_rows().await, 9);
    assert!(db.count("health.fact_table").await > 0);

    let again = reconcile(&db, &moto, &tmp, &["--load", uri]).await;
    assert_eq!(again["totals"]["loaded"], 9, "{again}");
    assert!(
        again["loads"].as_array().unwrap().is_empty(),
        "a second reconcile finds nothing"
    );

    // A corrected dimension file replaces the object: loaded from an older version.
    moto.put(
        BUCKET,
        "incoming/dimPayer.csv",
        b"dimPayerPK,PayerName\n1,Medicare\n".to_vec(),
    )
    .await;
    let text = healthetl(&db, &moto, &tmp, &["reconcile", uri]).await;
    assert_eq!(text.code, Some(0));
    assert!(
        text.stdout.contains("older_version")
            && text.stdout.contains("s3://landing/incoming/dimPayer.csv"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("1 from an older version"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn a_refused_object_is_reported_refused_last_and_not_loaded_again() {
    let db = TestDb::new("reconcile_failed").await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let tmp = TempDir::new("reconcile_failed");
    moto.put(BUCKET, "incoming/dimPayer.csv", b"dimPayerPK\n1\n".to_vec())
        .await;
    let first = healthetl(
        &db,
        &moto,
        &tmp,
        &["reconcile", "--json", "--load", "s3://landing/incoming/"],
    )
    .await;
    assert_eq!(
        first.code,
        Some(1),
        "the load it ran was refused: {}",
        first.stdout
    );
    let again = reconcile(&db, &moto, &tmp, &["s3://landing/incoming/"]).await;
    assert_eq!(again["totals"]["refused_last"], 1, "{again}");
    assert_eq!(again["objects"][0]["last_attempt"], "refused (header)");
}

#[tokio::test]
async fn enqueued_notifications_are_loaded_by_the_worker() {
    let db = TestDb::new("reconcile_enqueue").await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let tmp = TempDir::new("reconcile_enqueue");
    upload_sample(&moto).await;
    moto.put(
        BUCKET,
        "incoming/more/dim Payer 2.csv",
        b"dimPayerPK,PayerName\n77,Tricare West\n".to_vec(),
    )
    .await;
    let queue = queue(&moto, "reconcile").await;
    let sent = json(
        &healthetl(
            &db,
            &moto,
            &tmp,
            &[
                "reconcile",
                "--json",
                "--enqueue",
                &queue,
                "s3://landing/incoming/",
            ],
        )
        .await,
    );
    assert_eq!(sent["enqueued"], 10, "{sent}");
    assert_eq!(moto.messages_left(&queue).await, 10);
    let worker = healthetl(
        &db,
        &moto,
        &tmp,
        &[
            "worker",
            "--json",
            "--queue-url",
            &queue,
            "--wait-seconds",
            "1",
            "--exit-when-idle",
            "3",
        ],
    )
    .await;
    assert_eq!(worker.code, Some(0), "{}\n{}", worker.stdout, worker.stderr);
    assert_eq!(db.ledger_rows().await, 10);
    let payer: i64 = common::scalar(
        &db.url,
        "SELECT COUNT(*) FROM health.dim_payer WHERE dim_payer_pk = 77",
    )
    .await;
    assert_eq!(
        payer, 1,
        "the key with spaces arrived encoded and decoded back"
    );
    let after = reconcile(&db, &moto, &tmp, &["s3://landing/incoming/"]).await;
    assert_eq!(after["totals"]["loaded"], 10, "{after}");
}

#[tokio::test]
async fn the_scheduled_invocation_enqueues_what_is_missing() {
    let db = TestDb::new("reconcile_scheduled").await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    moto.put(
        BUCKET,
        "incoming/dimPayer.csv",
        b"dimPayerPK,PayerName\n1,A\n".to_vec(),
    )
    .await;
    let queue = queue(&moto, "landing").await;
    let (url, queue_url) = (db.url.clone(), queue.clone());
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LANDING_QUEUE_URL" => Some(queue_url.clone()),
        _ => None,
    })
    .unwrap();
    let handler = Handler::new(moto.s3.clone(), Postgres::new(&db.url).unwrap(), config)
        .with_metrics(false)
        .with_sqs(moto.sqs.clone());
    // The template's schedule sends exactly this.
    let event = json!({"healthetl": "reconcile", "uri": "s3://landing/incoming/"});
    let answer = handler.handle_event(&event, "scheduled").await.unwrap();
    assert_eq!(answer, json!({"objects": 1, "enqueued": 1}));
    let messages = moto.receive_raw_messages(&queue, 1).await;
    let body = messages[0].body().unwrap();
    let items = healthetl::event::parse_s3_notification(body).unwrap();
    assert!(format!("{items:?}").contains("incoming/dimPayer.csv"));
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml"),
    )
    .unwrap();
    assert!(
        template
            .contains(r#"'{"healthetl": "reconcile", "uri": "s3://${LandingBucket}/${Prefix}"}'"#),
        "the template's schedule sends the event tested here"
    );
}

#[tokio::test]
async fn reconcile_has_help_and_refuses_what_is_not_an_s3_uri() {
    let db = TestDb::new("reconcile_help").await;
    let moto = Moto::start().await;
    let tmp = TempDir::new("reconcile_help");
    let help = healthetl(&db, &moto, &tmp, &["reconcile", "--help"]).await;
    assert_eq!(help.code, Some(0));
    for flag in ["--load", "--enqueue", "--dry-run", "--json"] {
        assert!(help.stdout.contains(flag), "{flag}");
    }
    let bad = healthetl(&db, &moto, &tmp, &["reconcile", "/tmp/x"]).await;
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("s3://bucket/prefix"), "{}", bad.stderr);
}

#[tokio::test]
async fn a_corrected_quarantine_rejects_file_replays_from_s3() {
    let db = TestDb::new("replay_s3").await;
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let tmp = TempDir::new("replay_s3");
    let rows: String = (1..=20)
        .map(|i| {
            if i == 7 {
                "7x,Seven\n".to_string()
            } else {
                format!("{i},Payer {i}\n")
            }
        })
        .collect();
    moto.put(
        BUCKET,
        "incoming/dimPayer.csv",
        format!("dimPayerPK,PayerName\n{rows}"),
    )
    .await;
    let loaded = reconcile(&db, &moto, &tmp, &["--load", "s3://landing/incoming/"]).await;
    assert_eq!(loaded["loads"][0]["rows_rejected"], 1, "{loaded}");
    let key = "quarantine/incoming/dimPayer.csv.rejects.csv";
    let rejects = String::from_utf8(
        moto.get(BUCKET, key)
            .await
            .expect("rejects in the quarantine"),
    )
    .unwrap();
    moto.put(BUCKET, key, rejects.replace(",7x,", ",7,")).await;
    let uri = format!("s3://{BUCKET}/{key}");
    let replay = json(&healthetl(&db, &moto, &tmp, &["replay", "--json", &uri]).await);
    assert_eq!(replay["objects"][0]["status"], "loaded", "{replay}");
    let link = common::rows(
        &db.url,
        "SELECT source, replay_of FROM etl.load_log ORDER BY load_id",
    )
    .await;
    assert_eq!(
        link[1],
        vec![
            Some(uri.clone()),
            Some("s3://landing/incoming/dimPayer.csv".to_string())
        ]
    );
    assert_eq!(db.count("health.dim_payer").await, 20);
}

#[tokio::test]
async fn listing_follows_every_page() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let files = upload_sample(&moto).await;
    let one_page =
        healthetl::reconcile::list(&moto.s3, BUCKET, "incoming/", &["quarantine/"], None)
            .await
            .unwrap();
    // Two keys a page: five pages for the nine files (and the manifest skipped).
    let paged =
        healthetl::reconcile::list(&moto.s3, BUCKET, "incoming/", &["quarantine/"], Some(2))
            .await
            .unwrap();
    assert_eq!(one_page.len(), files);
    assert_eq!(paged, one_page);
    let everything = healthetl::reconcile::list(&moto.s3, BUCKET, "", &["quarantine/"], Some(3))
        .await
        .unwrap();
    assert_eq!(everything.len(), files, "own outputs are never listed");
}
