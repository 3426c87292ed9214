//! Operating healthetl from the command line against a real PostgreSQL: every attempt recorded (loaded, skipped
//! naming the load it duplicates, refused, failed), `history` and `history --object`, `load --dry-run` changing
//! nothing while reporting what a load would do, rejects files readable by their owner only.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use common::{Output, TempDir, TestDb, rows, run_bin, scalar};
use serde_json::Value;

async fn healthetl(db: &TestDb, tmp: &TempDir, args: &[&str]) -> Output {
    run_bin(Some(&db.url), tmp.path(), args.iter().copied()).await
}

fn attempts(out: &Output) -> Vec<Value> {
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    out.json()["attempts"]
        .as_array()
        .expect("attempts array")
        .clone()
}

#[tokio::test]
async fn every_attempt_is_recorded_and_history_shows_it_newest_first() {
    let db = TestDb::new("op_history").await;
    let tmp = TempDir::new("op_history");
    let good = tmp.write(
        "in/dimPayer.csv",
        "dimPayerPK,PayerName\n1,Medicare\n2,Aetna\n3,Cigna\n",
    );
    let load = healthetl(&db, &tmp, &["load", "--json", good.to_str().unwrap()]).await;
    assert_eq!(load.code, Some(0), "{}", load.stderr);
    let first_load = load.json()["objects"][0]["load_id"]
        .as_i64()
        .expect("load id");
    // The same file again: skipped, naming the load it duplicates.
    let again = healthetl(&db, &tmp, &["load", "--json", good.to_str().unwrap()]).await;
    assert_eq!(again.json()["objects"][0]["status"], "skipped");
    assert_eq!(again.json()["objects"][0]["load_id"], first_load);
    // A header without the payer's name: refused.
    let bad_header = tmp.write("in2/dimPayer.csv", "dimPayerPK\n1\n");
    let refused = healthetl(&db, &tmp, &["load", bad_header.to_str().unwrap()]).await;
    assert_eq!(refused.code, Some(1));
    // Too many bad keys: refused over the threshold; the rejected rows are kept, owner-only.
    let rejected = tmp.write(
        "in3/dimLocation.csv",
        "dimLocationPK,LocationName\nx,Secret Clinic Name\n2,South\n",
    );
    let over = healthetl(
        &db,
        &tmp,
        &[
            "load",
            "--json",
            "--rejects-dir",
            "rej",
            rejected.to_str().unwrap(),
        ],
    )
    .await;
    let over = over.json()["objects"][0].clone();
    assert_eq!(over["status"], "refused", "{over}");
    let rejects_file = over["rejects_file"]
        .as_str()
        .expect("rejects file")
        .to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join(&rejects_file))
            .or_else(|_| std::fs::metadata(&rejects_file))
            .expect("rejects file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "rejects file mode {mode:o}");
    }

    let all = attempts(&healthetl(&db, &tmp, &["history", "--json"]).await);
    let statuses: Vec<&str> = all.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["refused", "refused", "skipped", "loaded"],
        "newest first"
    );
    assert_eq!(all[0]["reason"], "threshold");
    assert_eq!(all[0]["rows_rejected"], 1);
    assert!(
        all[0]["rejects"]
            .as_str()
            .unwrap()
            .ends_with(".rejects.csv")
    );
    assert_eq!(all[1]["reason"], "header");
    assert!(all[1]["error"].as_str().unwrap().contains("PayerName"));
    assert_eq!(
        all[2]["load_id"], first_load,
        "a skip names the load it duplicates"
    );
    assert_eq!(
        (all[3]["rows_read"].as_i64(), all[3]["rows_loaded"].as_i64()),
        (Some(3), Some(3))
    );
    // No row contents anywhere in the attempts.
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains("Secret Clinic Name") && !text.contains("Medicare"),
        "{text}"
    );

    // Filters.
    let refused_only =
        attempts(&healthetl(&db, &tmp, &["history", "--json", "--status", "refused"]).await);
    assert_eq!(refused_only.len(), 2);
    let payer =
        attempts(&healthetl(&db, &tmp, &["history", "--json", "--table", "dim_payer"]).await);
    assert_eq!(payer.len(), 3);
    let later =
        attempts(&healthetl(&db, &tmp, &["history", "--json", "--since", "2999-01-01"]).await);
    assert!(later.is_empty());
    let recent = attempts(&healthetl(&db, &tmp, &["history", "--json", "--since", "1h"]).await);
    assert_eq!(recent.len(), 4);
    let bad = healthetl(&db, &tmp, &["history", "--since", "last tuesday"]).await;
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);

    // One object's story: oldest first, and its committed load.
    let story = healthetl(
        &db,
        &tmp,
        &["history", "--json", "--object", good.to_str().unwrap()],
    )
    .await;
    let story_json = story.json();
    let statuses: Vec<&str> = story_json["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["loaded", "skipped"]);
    assert_eq!(story_json["loads"][0]["load_id"], first_load);
    let text = healthetl(&db, &tmp, &["history", "--object", good.to_str().unwrap()]).await;
    assert!(text.stdout.contains("committed loads:"), "{}", text.stdout);
    assert!(
        text.stdout
            .contains(&format!("load {first_load} into dim_payer"))
    );
}

#[tokio::test]
async fn a_failed_attempt_is_recorded_although_its_transaction_rolled_back() {
    let db = TestDb::new("op_failed").await;
    let tmp = TempDir::new("op_failed");
    let init = healthetl(&db, &tmp, &["init"]).await;
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    // A statement timeout of zero seconds left: the load fails at its first statement.
    let file = tmp.write("dimPayer.csv", "dimPayerPK,PayerName\n1,A\n");
    let failed = healthetl(
        &db,
        &tmp,
        &["load", "--json", "--timeout", "0", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(failed.code, Some(1), "{}", failed.stdout);
    assert_eq!(failed.json()["objects"][0]["status"], "failed");
    let all = attempts(&healthetl(&db, &tmp, &["history", "--json"]).await);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "failed");
    assert_eq!(all[0]["reason"], "deadline");
    assert_eq!(db.ledger_rows().await, 0);
}

#[tokio::test]
async fn a_dry_run_reports_what_a_load_would_do_and_changes_nothing() {
    let db = TestDb::new("op_dry_run").await;
    let tmp = TempDir::new("op_dry_run");
    let first = tmp.write(
        "a/dimPayer.csv",
        "dimPayerPK,PayerName\n1,Medicare\n2,Aetna\n",
    );
    let load = healthetl(&db, &tmp, &["load", first.to_str().unwrap()]).await;
    assert_eq!(load.code, Some(0), "{}", load.stderr);
    let before: Vec<Vec<Option<String>>> = rows(
        &db.url,
        "SELECT dim_payer_pk::TEXT, payer_name, xmin::TEXT FROM health.dim_payer ORDER BY 1",
    )
    .await;
    // One row changed, one unchanged, one new, one rejected.
    let second = tmp.write(
        "b/dimPayer.csv",
        "dimPayerPK,PayerName\n1,Medicare\n2,Aetna Inc\n3,Cigna\nbad,Nobody\n",
    );
    let dry = healthetl(
        &db,
        &tmp,
        &[
            "load",
            "--dry-run",
            "--json",
            "--reject-threshold",
            "0.5",
            second.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        dry.code,
        Some(0),
        "exit code as for a real load: {}",
        dry.stderr
    );
    let report = dry.json()["objects"][0].clone();
    assert_eq!(report["status"], "loaded", "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["load_id"], Value::Null);
    assert_eq!(
        (
            report["rows_inserted"].as_i64(),
            report["rows_updated"].as_i64(),
            report["rows_unchanged"].as_i64(),
            report["rows_rejected"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
    assert!(
        report["rejects_file"].is_string(),
        "rejects are written in a dry run too"
    );
    let after: Vec<Vec<Option<String>>> = rows(
        &db.url,
        "SELECT dim_payer_pk::TEXT, payer_name, xmin::TEXT FROM health.dim_payer ORDER BY 1",
    )
    .await;
    assert_eq!(before, after, "nothing changed, not even a row version");
    assert_eq!(db.ledger_rows().await, 1);
    let recorded: i64 = scalar(&db.url, "SELECT COUNT(*) FROM etl.load_attempts").await;
    assert_eq!(recorded, 1, "a dry run records no attempt");
    // Text output says so.
    let text = healthetl(&db, &tmp, &["load", "--dry-run", second.to_str().unwrap()]).await;
    assert!(text.stdout.contains("dry run"), "{}", text.stdout);
    // A dry run that would be refused exits as a refusal does.
    let refused = healthetl(&db, &tmp, &["load", "--dry-run", second.to_str().unwrap()]).await;
    assert_eq!(
        refused.code,
        Some(1),
        "25% rejected is over the default 10%"
    );
}

#[tokio::test]
async fn history_on_an_old_warehouse_says_to_run_init() {
    let db = TestDb::new("op_old").await;
    let tmp = TempDir::new("op_old");
    let out = healthetl(&db, &tmp, &["history"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("healthetl init"), "{}", out.stderr);
}

#[tokio::test]
async fn every_operating_command_has_help() {
    let db = TestDb::new("op_help").await;
    let tmp = TempDir::new("op_help");
    for (command, flags) in [
        (
            "history",
            &["--table", "--status", "--since", "--object", "--json"][..],
        ),
        ("load", &["--dry-run"][..]),
        ("replay", &["--of", "--dry-run", "--force", "--json"][..]),
    ] {
        let out = healthetl(&db, &tmp, &[command, "--help"]).await;
        assert_eq!(out.code, Some(0));
        for flag in flags {
            assert!(out.stdout.contains(flag), "{command} --help lacks {flag}");
        }
    }
}

#[tokio::test]
async fn a_corrected_rejects_file_replays_into_its_table_linked_to_its_object() {
    let db = TestDb::new("op_replay").await;
    let tmp = TempDir::new("op_replay");
    let file = tmp.write(
        "in/dimPayer.csv",
        "dimPayerPK,PayerName\n1,Medicare\n2x,\"Aetna, Inc\"\n3,Cigna\n",
    );
    let load = healthetl(
        &db,
        &tmp,
        &[
            "load",
            "--json",
            "--reject-threshold",
            "0.5",
            file.to_str().unwrap(),
        ],
    )
    .await;
    let report = load.json()["objects"][0].clone();
    assert_eq!(
        (report["status"].as_str(), report["rows_rejected"].as_i64()),
        (Some("loaded"), Some(1))
    );
    let rejects = tmp.path().join(report["rejects_file"].as_str().unwrap());
    let rejects = if rejects.exists() {
        rejects
    } else {
        report["rejects_file"].as_str().unwrap().into()
    };
    // The operator fixes the key in the rejects file, and adds nothing else.
    let fixed = std::fs::read_to_string(&rejects)
        .unwrap()
        .replace(",2x,", ",2,");
    std::fs::write(&rejects, fixed).unwrap();

    let replay = healthetl(&db, &tmp, &["replay", "--json", rejects.to_str().unwrap()]).await;
    assert_eq!(replay.code, Some(0), "{}\n{}", replay.stdout, replay.stderr);
    let replayed = replay.json()["objects"][0].clone();
    assert_eq!(replayed["status"], "loaded", "{replayed}");
    assert_eq!(
        (
            replayed["rows_read"].as_i64(),
            replayed["rows_inserted"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let name: String = scalar(
        &db.url,
        "SELECT payer_name FROM health.dim_payer WHERE dim_payer_pk = 2",
    )
    .await;
    assert_eq!(name, "Aetna, Inc");
    let link = rows(
        &db.url,
        "SELECT source, replay_of FROM etl.load_log ORDER BY load_id",
    )
    .await;
    let original = format!("file://{}", std::fs::canonicalize(&file).unwrap().display());
    assert_eq!(link[0], vec![Some(original.clone()), None]);
    assert_eq!(
        link[1][1],
        Some(original.clone()),
        "the replay names its object"
    );
    assert!(link[1][0].as_deref().unwrap().ends_with(".rejects.csv"));
    // The same corrected file again: skipped; a file that is not a rejects file: refused, exit 2.
    let again = healthetl(&db, &tmp, &["replay", "--json", rejects.to_str().unwrap()]).await;
    assert_eq!(again.json()["objects"][0]["status"], "skipped");
    let not = healthetl(&db, &tmp, &["replay", file.to_str().unwrap()]).await;
    assert_eq!(not.code, Some(2));
    assert!(not.stderr.contains("not a rejects file"), "{}", not.stderr);
    // An unknown rejects file needs --of.
    let stray = tmp.write(
        "stray/x.rejects.csv",
        "rejected_source,rejected_line,rejected_column,rejected_rule,rejected_reason,dimPayerPK,PayerName\nx,2,,r,r,9,Nine\n",
    );
    let unknown = healthetl(&db, &tmp, &["replay", stray.to_str().unwrap()]).await;
    assert_eq!(unknown.code, Some(2));
    assert!(unknown.stderr.contains("--of"), "{}", unknown.stderr);
    let with_of = healthetl(
        &db,
        &tmp,
        &[
            "replay",
            "--json",
            "--of",
            file.to_str().unwrap(),
            stray.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        with_of.json()["objects"][0]["status"],
        "loaded",
        "{}",
        with_of.stdout
    );
}

#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let db = TestDb::new("op_colour").await;
    let tmp = TempDir::new("op_colour");
    let file = tmp.write("dimPayer.csv", "dimPayerPK,PayerName\n1,A\n");
    for extra in [None, Some(("NO_COLOR", "1"))] {
        let mut env = vec![("DATABASE_URL", db.url.as_str()), ("RUST_LOG", "debug")];
        env.extend(extra);
        let out = common::run_bin_with(
            &env,
            tmp.path(),
            ["load", "--force", file.to_str().unwrap()],
        )
        .await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(
            out.stderr.contains("object processed"),
            "debug lines are logged: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains('\u{1b}'),
            "no escape codes on a pipe: {:?}",
            out.stderr
        );
    }
}
