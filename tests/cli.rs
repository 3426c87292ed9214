//! The command line's conventions: `--help` of every command against the committed snapshots (and the README),
//! connection flags only on the commands that connect, the whole cause of a refused connection, completions and
//! man pages.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use std::path::{Path, PathBuf};

use common::{TempDir, run_bin, run_bin_with};

/// The commands `healthetl --help` lists (clap's own `help` aside).
async fn commands(tmp: &TempDir) -> Vec<String> {
    let out = run_bin(None, tmp.path(), ["--help"]).await;
    assert_eq!(out.code, Some(0), "{out:#?}");
    let listing = out
        .stdout
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands: section")
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .to_string();
    listing
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

fn snapshot(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/help")
        .join(format!("{name}.txt"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_commands_help_matches_its_snapshot_and_the_readme_names_every_command() {
    let tmp = TempDir::new("cli_help");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut names = vec!["healthetl".to_string()];
    let commands = commands(&tmp).await;
    assert!(commands.len() >= 14, "{commands:?}");
    names.extend(commands.iter().cloned());
    let mut stale = Vec::new();
    for name in &names {
        let args: Vec<&str> = if name == "healthetl" {
            vec!["--help"]
        } else {
            vec![name.as_str(), "--help"]
        };
        let out = run_bin(None, tmp.path(), args).await;
        assert_eq!(out.code, Some(0), "{name} --help: {out:#?}");
        assert!(
            out.stdout.contains("Exit codes:\n  0  done"),
            "{name} --help lacks the exit codes"
        );
        let path = snapshot(name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out.stdout).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(out.stdout.as_str()) {
            stale.push(name.clone());
        }
        if name != "healthetl" {
            assert!(
                readme.contains(&format!("`healthetl {name}")),
                "the README's command table lacks `healthetl {name}`"
            );
        }
    }
    assert!(
        stale.is_empty(),
        "--help differs from tests/snapshots/help/ for {stale:?}: review the change, then run \
         UPDATE_SNAPSHOTS=1 cargo test --test cli and update the README's command table"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_flags_are_only_on_commands_that_connect() {
    let tmp = TempDir::new("cli_connect_flags");
    for command in ["generate", "schema", "ingest", "completions", "man"] {
        let out = run_bin(
            None,
            tmp.path(),
            [command, "--database-url", "postgres://x/y"],
        )
        .await;
        assert_eq!(out.code, Some(2), "{command}: {out:#?}");
        assert!(
            out.stderr.contains("unexpected argument '--database-url'"),
            "{command}: {out:#?}"
        );
    }
    for command in [
        "init",
        "acceptance",
        "load",
        "reconcile",
        "replay",
        "history",
        "dashboard",
        "report",
        "worker",
    ] {
        let out = run_bin(None, tmp.path(), [command, "--help"]).await;
        assert!(out.stdout.contains("--database-url"), "{command}");
        assert!(out.stdout.contains("--dialect"), "{command}");
        for global in ["--verbose", "--quiet", "--log-format"] {
            assert!(out.stdout.contains(global), "{command} lacks {global}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_names_the_server_and_the_operating_systems_error() {
    let tmp = TempDir::new("cli_refused");
    let port = common::moto::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let out = run_bin(None, tmp.path(), ["init", "--database-url", url.as_str()]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Connection refused"),
        "no OS error in: {}",
        out.stderr
    );
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_flag_wins_over_the_libpq_variables_and_database_url_comes_last() {
    let tmp = TempDir::new("cli_precedence");
    let flag_port = common::moto::free_port().to_string();
    let pg_port = common::moto::free_port().to_string();
    let url = |port: &str| format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let env_url = url("1");
    let with_pg = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", pg_port.as_str()),
        ("DATABASE_URL", env_url.as_str()),
    ];
    let flag = url(&flag_port);
    let out = run_bin_with(
        &with_pg,
        tmp.path(),
        ["init", "--database-url", flag.as_str()],
    )
    .await;
    assert!(
        out.stderr.contains(&format!(":{flag_port}:")),
        "{}",
        out.stderr
    );
    let out = run_bin_with(&with_pg, tmp.path(), ["init"]).await;
    assert!(
        out.stderr.contains(&format!(":{pg_port}:")),
        "{}",
        out.stderr
    );
    let out = run_bin_with(&with_pg[2..], tmp.path(), ["init"]).await;
    assert!(out.stderr.contains("127.0.0.1:1:"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_and_man_pages_are_generated_for_every_command() {
    let tmp = TempDir::new("cli_completions");
    for shell in ["bash", "zsh", "fish"] {
        let out = run_bin(None, tmp.path(), ["completions", shell]).await;
        assert_eq!(out.code, Some(0), "{shell}: {out:#?}");
        assert!(out.stdout.contains("healthetl"), "{shell}");
        assert!(out.stdout.contains("reconcile"), "{shell}");
    }
    let out = run_bin(None, tmp.path(), ["man", "--out", "pages"]).await;
    assert_eq!(out.code, Some(0), "{out:#?}");
    let commands = commands(&tmp).await;
    for name in std::iter::once("healthetl".to_string())
        .chain(commands.iter().map(|c| format!("healthetl-{c}")))
    {
        let page = std::fs::read_to_string(tmp.path().join("pages").join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH"),
            "{name}"
        );
        assert!(page.contains(&name.replace('-', "\\-")), "{name}");
    }
}
