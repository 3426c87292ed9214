#!/usr/bin/env python3
"""The Redshift staging path, measured without a cluster: parse, validate, cast, write gzip CSV parts and upload them
with a COPY manifest to S3 (moto_server) — everything the loader does before Redshift's own COPY.

The loader runs exactly as in production (`WAREHOUSE_DIALECT=redshift`), pointed at a PostgreSQL database that
plays only the parts of the connection that come before COPY: the ledger check, the load lock table, the
temporary staging table. PostgreSQL cannot run `COPY … FROM 's3://…' IAM_ROLE …`, so the load ends there with that
error (checked), its transaction rolls back and the staged objects are removed, as after any failed COPY. The
time measured is therefore the staging path plus a few milliseconds of SQL. A real cluster's COPY comes on top:
see `scripts/redshift-acceptance` for that.

Each size runs twice: zstd parts (the default) and gzip parts (`REDSHIFT_PART_COMPRESSION=gzip`), so the
difference is what the compression costs the loader. The bytes each produces are measured by the gzip and zstd
command-line tools at the same levels on the same CSV (the staged parts are removed after the failed COPY).

With HEALTHETL_BASELINE_BIN set to another build of healthetl, each zstd row is also run with that build, the two
alternating, so a change is measured against what it replaces in the same run (this machine's speed drifts by 2x
between days; only same-run ratios mean anything).

Run: bench/redshift-staging [ROWS ...]   (default 1000000 4000000; builds first)
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lambda_s3  # noqa: E402  (start_moto())
import load_vs_psql as lp  # noqa: E402  (measured(), psql(), become_subreaper(), the generator's layout)

ROOT = lp.ROOT
VENV = ROOT / ".venv" / "bin"
DB = "healthetl_bench_redshift"
BUCKET = "bench-staging"
ROLE = "arn:aws:iam::123456789012:role/healthetl-copy"


def db_url(binary=None):
    """The bench database; a baseline build gets its own (its schema version may differ)."""
    return lp.ADMIN_URL.rsplit("/", 1)[0] + "/" + DB + ("_baseline" if binary else "")


def prepare_db(binary=None):
    name = DB + ("_baseline" if binary else "")
    lp.psql(lp.ADMIN_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    lp.run([binary or lp.BIN, "init"], env=dict(os.environ, DATABASE_URL=db_url(binary), HEALTHETL_DATABASE_URL=db_url(binary), RUST_LOG="warn"))
    lp.psql(db_url(binary), "CREATE TABLE etl.load_lock_fact_table (held BOOLEAN)")


def start_moto():
    """moto_server (see lambda_s3.start_moto) with the staging bucket."""
    import urllib.request
    proc, endpoint = lambda_s3.start_moto()
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=10)
    return proc, endpoint


def fact_file(rows):
    folder = lp.OUT / str(rows)
    fact = folder / "FactTable.csv"
    if not fact.exists():
        lp.run([lp.BIN, "generate", "--rows", str(rows), "--out", str(folder), "--seed", str(lp.SEED), "--plain"])
    return fact


def stage(fact, endpoint, compression, binary=None):
    env = dict(os.environ, WAREHOUSE_DIALECT="redshift", REDSHIFT_PART_COMPRESSION=compression, DATABASE_URL=db_url(binary), HEALTHETL_DATABASE_URL=db_url(binary), REDSHIFT_COPY_ROLE_ARN=ROLE,
               STAGING_BUCKET=BUCKET, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test",
               AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1", RUST_LOG="warn", HEALTHETL_QUALITY="off")
    argv = [binary or lp.BIN, "load", "--json", "--force", "--rejects-dir", str(lp.OUT / "rejects"), str(fact)]
    seconds, rss_kb, cpu, code, out, err = lp.measured(argv, env=env)
    report = json.loads(out)["objects"][0]
    error = report.get("error") or ""
    if report["status"] != "failed" or "copying the staged parts from S3" not in error:
        raise lp.BenchError(f"expected the load to end at COPY FROM S3, got {report['status']}: {error[:300]}")
    return seconds, rss_kb / 1024, cpu


def compressors(fact):
    """CPU seconds and output bytes of each compressor over the file."""
    out = []
    for name, argv in (("gzip -1", ["gzip", "-1", "-c"]), ("gzip -6", ["gzip", "-6", "-c"]),
                       ("zstd -1", ["zstd", "-1", "-c", "-q"]), ("zstd -3", ["zstd", "-3", "-c", "-q"])):
        with open(fact, "rb") as src:
            start = os.times()
            r = subprocess.run(argv, stdin=src, capture_output=True)
            end = os.times()
        if r.returncode != 0:
            raise lp.BenchError(f"{name}: {r.stderr[:200]!r}")
        cpu = (end.children_user - start.children_user) + (end.children_system - start.children_system)
        out.append((name, cpu, len(r.stdout)))
    return out


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 4_000_000]
    lp.become_subreaper()
    baseline = os.environ.get("HEALTHETL_BASELINE_BIN")
    prepare_db()
    if baseline:
        prepare_db(baseline)
    moto, endpoint = start_moto()
    results = []
    try:
        for rows in sizes:
            fact = fact_file(rows)
            mb = fact.stat().st_size / 1e6
            runs = [("zstd", None), ("gzip", None)]
            if baseline:
                runs = [("zstd", baseline), ("zstd", None), ("zstd", baseline), ("zstd", None), ("gzip", None)]
            for compression, binary in runs:
                seconds, rss, cpu = stage(fact, endpoint, compression, binary)
                results.append({"rows": rows, "parts": compression, "build": "baseline" if binary else "this",
                                "input_mb": mb, "seconds": seconds, "cpu_s": cpu, "peak_rss_mb": rss})
        tools = compressors(fact_file(min(sizes)))
    finally:
        moto.kill()
        lp.psql(lp.ADMIN_URL, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)",
                f"DROP DATABASE IF EXISTS {DB}_baseline WITH (FORCE)")
    print(f"{'rows':>9} {'parts':>5} {'build':>8} {'input MB':>9} {'wall s':>7} {'rows/s':>9} {'MB/s':>6} {'CPU s':>6} "
          f"{'MB/s/core':>9} {'CPU us/row':>10} {'RSS MB':>7}")
    for r in results:
        print(f"{r['rows']:>9} {r['parts']:>5} {r['build']:>8} {r['input_mb']:>9.0f} {r['seconds']:>7.2f} "
              f"{r['rows'] / r['seconds']:>9,.0f} "
              f"{r['input_mb'] / r['seconds']:>6.1f} {r['cpu_s']:>6.2f} {r['input_mb'] / r['cpu_s']:>9.1f} "
              f"{1e6 * r['cpu_s'] / r['rows']:>10.2f} {r['peak_rss_mb']:>7.1f}")
    small = results[0]
    for rows in sizes:
        pair = {b: [r for r in results if r["rows"] == rows and r["parts"] == "zstd" and r["build"] == b]
                for b in ("this", "baseline")}
        if pair["baseline"]:
            best = {b: min(pair[b], key=lambda r: r["seconds"]) for b in pair}
            cpu = {b: min(r["cpu_s"] for r in pair[b]) for b in pair}
            print(f"{rows} rows, zstd, best of each: wall {best['this']['seconds']:.2f} s against "
                  f"{best['baseline']['seconds']:.2f} s ({best['this']['seconds'] / best['baseline']['seconds']:.2f}x), "
                  f"CPU {cpu['this']:.2f} s against {cpu['baseline']:.2f} s "
                  f"({cpu['this'] / cpu['baseline']:.2f}x)")
    print(f"\npart compression over the {small['rows']}-row CSV ({small['input_mb']:.0f} MB), command-line tools "
          f"(bytes; the loader's own CPU is above):")
    for name, cpu, size in tools:
        print(f"  {name:<8} {cpu:6.2f} s CPU  {size / 1e6:7.1f} MB  ({small['input_mb'] / max(cpu, 1e-9):6.1f} MB/s)")
    (lp.OUT / "redshift-staging.json").write_text(json.dumps({"loads": results, "compressors": tools}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lp.BenchError as e:
        print(f"BENCHMARK ERROR: {e}", file=sys.stderr)
        sys.exit(1)
