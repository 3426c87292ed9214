#!/usr/bin/env python3
"""healthetl load vs psql \\copy, psql's hand-written upsert and pgloader: the same fact table file, the same target
table shape, in one run.

For each size (rows, default 1000000 4000000): generate the dataset (`--plain`, so psql and pgloader can read it;
and the noisy file of the same seed), write the "1% changed" file (every 100th row's CPTUnits changed), and load the
dimensions once. Then BENCH_REPEAT times, rotating the order of the tools: bring both fact targets to the tool's
starting state (empty, or holding the plain file's rows), VACUUM ANALYZE + CHECKPOINT, run one tool and measure
its wall time, client CPU and peak RSS (os.wait4, see measured()). Only FactTable.csv is timed; the tables each
tool leaves are compared by a row-hash checksum, per starting state and file.

Initial loads into an empty table (ratio to psql \\copy): psql \\copy; pgloader (Debian's); healthetl load; the
same with PG_FIRST_LOAD=exclusive (key built after a COPY FREEZE); on the noisy file (ratio to the plain load);
with HEALTHETL_QUALITY=off (what the quality figures cost); with PG_COPY_FORMAT=text (what binary COPY saves).
Re-sends into a table holding every key (ratio to the psql upsert of the same file): psql upsert (COPY to a
temporary table, INSERT ... ON CONFLICT DO UPDATE); the same skipping identical rows (... WHERE row IS DISTINCT
FROM EXCLUDED row: the strongest hand-written baseline); healthetl load --force; each on the identical file and on
the 1%-changed one. And the Redshift staging path (the loader in Redshift mode: parse, cast, zstd parts, upload to
moto_server S3, ending at the COPY FROM S3 a cluster would run; see bench/redshift_staging.py).

Prints one table and verdicts against the targets (initial load <= 0.75x psql \\copy, re-sends <= 0.5x the psql
upsert, client CPU <= 1.5 s per 1M rows, peak RSS <= 32 MB and flat from the smallest to the largest size, quality
figures <= 5%); raw numbers go to target/bench/results.json.

Normally run through `bench/run` (which builds the binary and installs pgloader first). Standard library only.
Exit status: 0 when every load was correct (targets missed or not), 1 on any error.
"""

import csv
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
BIN = os.environ.get("HEALTHETL_BIN", str(ROOT / "target" / "release" / "healthetl"))
ADMIN_URL = os.environ.get("DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB = "healthetl_bench"
SEED = 7
CHILD_TIMEOUT_S = 1800  # a hung load fails the benchmark instead of hanging it

TARGET_RATIO = 0.75  # initial load vs psql \copy
TARGET_RESEND_RATIO = 0.5  # re-sends vs the psql upsert of the same file
TARGET_CPU_PER_M = 1.5  # client CPU seconds per 1M rows (goal 1.0)
TARGET_RSS_MB = 32.0
FLAT_RATIO = 0.10  # RSS at the largest size within 10% ...
FLAT_SLACK_MB = 4.0  # ... or within a few MB of the smallest size
BUSY = 0.15  # machine busier than this before a run: warn that timings are noisy
CHANGED_EVERY = 100  # the 1%-changed file: every 100th row differs

PSQL = "psql \\copy"
PGLOADER = "pgloader"
ETL = "healthetl load"
EXCLUSIVE = "healthetl (first exclusive)"
NOISY = "healthetl load (noisy)"
UNCHECKED = "healthetl (no quality)"
TEXT_COPY = "healthetl (text COPY)"
UPSERT = "psql upsert"
UPSERT_SKIP = "psql upsert, skip same"
RESEND = "healthetl re-send"
UPSERT_1 = "psql upsert 1%"
UPSERT_SKIP_1 = "psql upsert, skip same 1%"
RESEND_1 = "healthetl re-send 1%"
REDSHIFT = "healthetl Redshift staging"

# name -> (starting state, file, baseline for the ratio)
TOOL_SPEC = {
    PSQL: ("empty", "plain", None),
    PGLOADER: ("empty", "plain", PSQL),
    ETL: ("empty", "plain", PSQL),
    EXCLUSIVE: ("empty", "plain", PSQL),
    NOISY: ("empty", "noisy", ETL),
    UNCHECKED: ("empty", "plain", PSQL),
    TEXT_COPY: ("empty", "plain", PSQL),
    UPSERT: ("loaded", "plain", None),
    UPSERT_SKIP: ("loaded", "plain", UPSERT),
    RESEND: ("loaded", "plain", UPSERT),
    UPSERT_1: ("loaded", "changed", None),
    UPSERT_SKIP_1: ("loaded", "changed", UPSERT_1),
    RESEND_1: ("loaded", "changed", UPSERT_1),
    REDSHIFT: ("empty", "plain", PSQL),
}
TOOLS = list(TOOL_SPEC)
HEALTHETL = {ETL, EXCLUSIVE, NOISY, UNCHECKED, TEXT_COPY, RESEND, RESEND_1, REDSHIFT}
STAGING_BUCKET = "bench-staging"
FILE_MB = {}  # rows -> the plain file's size in MB
TARGET_STAGING_MB_PER_CORE = 60.0  # the Redshift staging path: MB of input per CPU second
MOTO = {}  # "endpoint": the moto_server S3 the Redshift staging run uploads to (started by main)
QUALITY_COST_TARGET = 1.05  # the data-quality figures may cost at most 5% of a load

# Order-independent fingerprint of a loaded table: every column of every row goes into it.
CHECKSUM_SQL = "SELECT count(*), sum(hashtext(t::text)::bigint) FROM {table} t"


class BenchError(Exception):
    pass


def bench_url():
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path="/" + DB))


def psql(url, *commands):
    """Run SQL commands (each its own -c, so VACUUM works); return stdout. Raises on any error."""
    argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url]
    for c in commands:
        argv += ["-c", c]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"psql failed ({r.returncode}) running {commands}: {r.stderr.strip()}")
    return r.stdout.strip()


def become_subreaper():
    """Adopt orphaned descendants (Linux prctl PR_SET_CHILD_SUBREAPER), so measured() can wait4 them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def measured(argv, env=None):
    """Run a child to completion; return (wall seconds, peak RSS in KB, CPU seconds, exit code, stdout, stderr).

    Peak RSS is the child's own ru_maxrss from os.wait4. The kernel also counts in ru_maxrss the memory of the
    image a process was exec'd from, so a child spawned straight from this Python process would never report
    less than Python's own RSS (~16 MB or more). So a small shell starts the tool in the background and exits at
    once; being a subreaper we adopt the tool and wait4 it directly (floor: the shell's ~1 MB).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        env = dict(env or os.environ, BENCH_STDOUT=str(out), BENCH_STDERR=str(err))
        start = time.perf_counter()
        launcher = subprocess.run(
            ["/bin/sh", "-c", '"$@" >"$BENCH_STDOUT" 2>"$BENCH_STDERR" & echo $!', "sh", *argv],
            env=env, capture_output=True, text=True,
        )
        if launcher.returncode != 0:
            raise BenchError(f"cannot start {argv[0]}: {launcher.stderr.strip()}")
        pid = int(launcher.stdout)
        timer = threading.Timer(CHILD_TIMEOUT_S, os.kill, (pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(pid, 0)
        except ChildProcessError:
            raise BenchError(f"lost track of {argv[0]} (pid {pid})")
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        cpu = usage.ru_utime + usage.ru_stime
        code = os.waitstatus_to_exitcode(status)
        return seconds, usage.ru_maxrss, cpu, code, out.read_text(), err.read_text()


def cpu_busy(interval):
    """Share of all CPUs busy over the next `interval` seconds (from /proc/stat): other work skews timings."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def machine():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"]).strip()
    except (BenchError, OSError):
        commit = "?"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(mem_gb, 1),
        "kernel": platform.release(),
        "postgres": psql(ADMIN_URL, "SELECT version()"),
        "commit": commit,
        "loadavg_at_start": os.getloadavg(),
        "cpu_busy_at_start": cpu_busy(2.0),
        "binary": BIN,
    }


def setup_database():
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", f"CREATE DATABASE {DB}")
    env = dict(os.environ, DATABASE_URL=bench_url(), HEALTHETL_DATABASE_URL=bench_url(), RUST_LOG="warn")
    run([BIN, "init"], env=env)
    psql(
        bench_url(),
        "CREATE SCHEMA bench_baseline",
        "CREATE TABLE bench_baseline.fact_table (LIKE health.fact_table INCLUDING ALL)",
        "CREATE TABLE etl.load_lock_fact_table (held BOOLEAN)",  # what the Redshift staging run locks
    )


def generate(rows):
    """Plain and noisy datasets of the same seed; returns the two fact table paths."""
    files = []
    for name, extra in ((str(rows), ["--plain"]), (f"{rows}-noisy", [])):
        out = OUT / name
        shutil.rmtree(out, ignore_errors=True)
        run([BIN, "generate", "--rows", str(rows), "--out", str(out), "--seed", str(SEED), *extra])
        fact = out / "FactTable.csv"
        with open(fact, "rb") as f:  # warm the page cache so neither tool pays for the first read
            while f.read(1 << 20):
                pass
        files.append(fact)
    return files


def load_dimensions(fact):
    """The dimensions of the generated dataset, loaded once per size (reset() keeps them): the fact loads' orphan
    checks then probe real dimension keys, as they do in production."""
    url = bench_url()
    psql(url, "TRUNCATE " + ", ".join(f"health.{t}" for t in DIMENSIONS))
    files = sorted(str(p) for p in fact.parent.glob("dim*.csv"))
    env = dict(os.environ, DATABASE_URL=url, HEALTHETL_DATABASE_URL=url, RUST_LOG="warn")
    run([BIN, "load", "--rejects-dir", str(OUT / "rejects"), *files], env=env)


DIMENSIONS = ["dim_patient", "dim_physician", "dim_transaction", "dim_payer", "dim_location",
              "dim_diagnosis_code", "dim_cpt_code", "dim_date"]


FACT_COLUMNS = ["fact_table_pk", "dim_patient_pk", "dim_physician_pk", "dim_date_post_pk", "dim_date_service_pk",
                "dim_cpt_code_pk", "dim_payer_pk", "dim_transaction_pk", "dim_location_pk", "patient_number",
                "dim_diagnosis_code_pk", "cpt_units", "gross_charge", "payment", "adjustment", "ar"]


def prepare(state, plain):
    """Both fact targets empty, or both holding the plain file's rows; the ledger empty; statistics fresh, dead
    space vacuumed, dirty pages flushed."""
    url = bench_url()
    psql(url, "TRUNCATE health.fact_table, bench_baseline.fact_table, etl.load_log")
    if state == "loaded":
        psql(url, f"\\copy health.fact_table FROM '{plain}' WITH (FORMAT csv, HEADER true)",
             "INSERT INTO bench_baseline.fact_table SELECT * FROM health.fact_table")
    psql(url, "VACUUM ANALYZE", "CHECKPOINT")


def changed_copy(plain):
    """The plain file with every CHANGED_EVERY-th row's CPTUnits changed (not part of the AR identity, so the
    quality figures stay clean): a corrected re-send. Returns its path and the count of changed rows."""
    out = plain.with_name("FactTable-1pct.csv")
    changed = 0
    with open(plain, newline="") as src, open(out, "w", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
        header = next(reader)
        writer.writerow(header)
        units = header.index("CPTUnits")
        for i, row in enumerate(reader):
            if i % CHANGED_EVERY == 0:
                row[units] = f"{float(row[units]) + 1:.2f}"
                changed += 1
            writer.writerow(row)
    return out, changed


def upsert_script(file, skip_identical):
    cols = ", ".join(FACT_COLUMNS)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in FACT_COLUMNS[1:])
    where = " WHERE ROW(t.*) IS DISTINCT FROM ROW(EXCLUDED.*)" if skip_identical else ""
    return (
        "BEGIN;\n"
        "CREATE TEMP TABLE s (LIKE bench_baseline.fact_table) ON COMMIT DROP;\n"
        f"\\copy s FROM '{file}' WITH (FORMAT csv, HEADER true)\n"
        f"INSERT INTO bench_baseline.fact_table AS t ({cols}) SELECT {cols} FROM s "
        f"ON CONFLICT (fact_table_pk) DO UPDATE SET {sets}{where};\n"
        "COMMIT;\n"
    )


def pgloader_script(file):
    parts = urlsplit(bench_url())
    fields = ", ".join(FACT_COLUMNS)
    return (
        f"LOAD CSV FROM '{file}' ({fields})\n"
        f"  INTO postgresql://{parts.netloc}{parts.path}\n"
        f"  TARGET TABLE bench_baseline.fact_table ({fields})\n"
        "  WITH skip header = 1, fields optionally enclosed by '\"', fields escaped by double-quote,\n"
        "       fields terminated by ','\n"
        "  SET client_encoding to 'utf8';\n"
    )


def run_tool(tool, rows, files, changed):
    url = bench_url()
    state, which, _ = TOOL_SPEC[tool]
    file = files[which]
    if tool not in HEALTHETL:
        with tempfile.TemporaryDirectory() as tmp:
            if tool == PGLOADER:
                script = Path(tmp, "fact.load")
                script.write_text(pgloader_script(file))
                argv = ["pgloader", "--root-dir", str(Path(tmp, "pgloader")), "--quiet", str(script)]
            else:
                script = Path(tmp, "load.sql")
                if tool == PSQL:
                    script.write_text(f"\\copy bench_baseline.fact_table FROM '{file}' WITH (FORMAT csv, HEADER true)\n")
                else:
                    script.write_text(upsert_script(file, tool in (UPSERT_SKIP, UPSERT_SKIP_1)))
                argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(script)]
            seconds, rss, cpu, code, out, err = measured(argv)
        if code != 0:
            raise BenchError(f"{tool}: exit {code}, output {out.strip()[-500:]!r}, errors {err.strip()[-500:]!r}")
        table = "bench_baseline.fact_table"
    else:
        env = dict(os.environ, DATABASE_URL=url, HEALTHETL_DATABASE_URL=url, RUST_LOG="warn")
        if tool == UNCHECKED:
            env["HEALTHETL_QUALITY"] = "off"
        if tool == TEXT_COPY:
            env["PG_COPY_FORMAT"] = "text"
        if tool == EXCLUSIVE:
            env["PG_FIRST_LOAD"] = "exclusive"
        if tool == REDSHIFT:
            # The loader in Redshift mode: parse, cast, zstd parts, upload with the manifest to moto S3. The bench
            # database answers the ledger check and the lock; PostgreSQL cannot run COPY FROM 's3://...', so the
            # load ends there (checked below) and rolls back: the time is the staging path.
            env.update(WAREHOUSE_DIALECT="redshift", REDSHIFT_COPY_ROLE_ARN="arn:aws:iam::123456789012:role/bench",
                       STAGING_BUCKET=STAGING_BUCKET, AWS_ENDPOINT_URL=MOTO["endpoint"], AWS_ACCESS_KEY_ID="test",
                       AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
        force = ["--force"] if state == "loaded" else []
        argv = [BIN, "load", "--json", *force, "--rejects-dir", str(OUT / "rejects"), str(file)]
        seconds, rss, cpu, code, out, err = measured(argv, env=env)
        try:
            report = json.loads(out)["objects"][0]
        except (ValueError, KeyError, IndexError):
            raise BenchError(f"{tool}: exit {code}, unreadable output {out[:500]!r}, errors {err.strip()!r}")
        if tool == REDSHIFT:
            error = report.get("error") or ""
            if report["status"] != "failed" or "copying the staged parts from S3" not in error:
                raise BenchError(f"{tool}: expected the load to end at COPY FROM S3, got {report['status']}: "
                                 f"{error[:300]}")
            count = int(psql(url, "SELECT count(*) FROM health.fact_table"))
            if count != 0:
                raise BenchError(f"{tool}: the rolled-back load left {count} rows")
            return seconds, rss, cpu, None
        quality = report.get("quality")
        if tool == UNCHECKED and quality is not None:
            raise BenchError(f"{tool}: HEALTHETL_QUALITY=off still counted quality figures: {quality}")
        if tool != UNCHECKED and (quality is None or any(n != 0 for n in quality["orphans"].values())
                                  or quality["ar_mismatch"] != 0):
            raise BenchError(f"{tool}: expected clean quality figures with every dimension loaded, got {quality}")
        updated = {"plain": 0, "noisy": 0, "changed": changed}[which] if state == "loaded" else 0
        expected = (rows, 0, 0) if state == "empty" else (updated, updated, rows - updated)
        got = (report.get("rows_loaded"), report.get("rows_updated"), report.get("rows_unchanged"))
        if code != 0 or report["status"] != "loaded" or got != expected:
            raise BenchError(
                f"{tool}: exit {code}, status {report['status']}, (loaded, updated, unchanged) {got} "
                f"(expected {expected}), rows_rejected {report['rows_rejected']}, error {report.get('error')!r}"
            )
        table = "health.fact_table"
    count = int(psql(url, f"SELECT count(*) FROM {table}"))
    if count != rows:
        raise BenchError(f"{tool}: {table} has {count} rows after the load, expected {rows}")
    return seconds, rss, cpu, table


def bench_size(rows, repeat, raw):
    t = time.perf_counter()
    plain, noisy = generate(rows)
    changed_file, changed = changed_copy(plain)
    FILE_MB[rows] = plain.stat().st_size / 1e6
    files = {"plain": plain, "noisy": noisy, "changed": changed_file}
    print(
        f"\n{rows} rows: generated in {time.perf_counter() - t:.1f}s "
        f"({plain.stat().st_size / 2**20:.0f} MB plain, {noisy.stat().st_size / 2**20:.0f} MB noisy, "
        f"{changed} rows changed in the 1% file)",
        flush=True,
    )
    load_dimensions(plain)
    # Untimed warm-up: the first load of a new size pays for creating WAL segments and warming the server.
    prepare("empty", plain)
    run_tool(PSQL, rows, files, changed)
    checksums = {}
    for rep in range(repeat):
        order = TOOLS if rep % 2 == 0 else TOOLS[::-1]
        for tool in order:
            state, which, _ = TOOL_SPEC[tool]
            prepare(state, plain)
            busy = cpu_busy(0.5)  # after the checkpoint: nothing of ours runs now, so this is other work
            seconds, rss_kb, cpu, table = run_tool(tool, rows, files, changed)
            if rep == 0 and table:  # same values in the table whichever tool loaded it, per file loaded last
                key = "changed" if which == "changed" else "plain"
                checksums.setdefault(key, {})[tool] = psql(bench_url(), CHECKSUM_SQL.format(table=table))
            raw.append(
                {"rows": rows, "tool": tool, "rep": rep, "seconds": round(seconds, 4), "peak_rss_kb": rss_kb,
                 "client_cpu_s": round(cpu, 3), "cpu_busy_before": round(busy, 3)}
            )
            print(
                f"  rep {rep + 1}/{repeat}  {tool:<28} {seconds:7.2f} s  {rss_kb / 1024:6.1f} MB  "
                f"client CPU {cpu:6.2f} s  (machine {busy:4.0%} busy before)",
                flush=True,
            )
    for key, sums in checksums.items():
        if len(set(sums.values())) != 1:
            raise BenchError(f"{rows} rows, {key} file: the loaded tables differ (count, row-hash sum): {sums}")


def summarize(raw, sizes):
    summary = {}
    for rows in sizes:
        for tool in TOOLS:
            runs = [r for r in raw if r["rows"] == rows and r["tool"] == tool]
            secs = [r["seconds"] for r in runs]
            summary[(rows, tool)] = {
                "rows": rows,
                "tool": tool,
                "median_s": statistics.median(secs),
                "min_s": min(secs),
                "max_s": max(secs),
                "rows_per_s": rows / statistics.median(secs),
                "client_cpu_s": statistics.median(r["client_cpu_s"] for r in runs),
                "peak_rss_mb": max(r["peak_rss_kb"] for r in runs) / 1024,
            }
        for tool in TOOLS:
            base = TOOL_SPEC[tool][2]
            if base:
                s = summary[(rows, tool)]
                s["baseline"] = base
                s["ratio"] = s["median_s"] / summary[(rows, base)]["median_s"]
    return summary


def report(summary, sizes, raw):
    print()
    head = (f"{'rows':>9}  {'tool':<28} {'median s':>9} {'min s':>7} {'max s':>7} {'rows/s':>10} {'CPU s':>7} "
            f"{'RSS MB':>7}  ratio")
    print(head)
    print("-" * (len(head) + 28))
    verdicts, ok = [], True
    for rows in sizes:
        for tool in TOOLS:
            s = summary[(rows, tool)]
            note = f"{s['ratio']:.2f}x {s['baseline']}" if "ratio" in s else "(baseline)"
            print(
                f"{rows:>9}  {tool:<28} {s['median_s']:>9.2f} {s['min_s']:>7.2f} {s['max_s']:>7.2f} "
                f"{s['rows_per_s']:>10,.0f} {s['client_cpu_s']:>7.2f} {s['peak_rss_mb']:>7.1f}  {note}"
            )
        print()
        g = lambda t: summary[(rows, t)]
        for tool, target in ((ETL, TARGET_RATIO), (EXCLUSIVE, TARGET_RATIO), (RESEND, TARGET_RESEND_RATIO),
                             (RESEND_1, TARGET_RESEND_RATIO)):
            r = g(tool)["ratio"]
            met = r <= target
            ok &= met
            verdicts.append(f"{rows:>9} rows: {tool} {r:.2f}x {g(tool)['baseline']} vs target <= {target}x: "
                            f"{'OK' if met else 'MISSED'}")
        for tool in (RESEND, RESEND_1):
            r = g(tool)["median_s"] / g(UPSERT_SKIP if tool == RESEND else UPSERT_SKIP_1)["median_s"]
            verdicts.append(f"{rows:>9} rows: {tool} {r:.2f}x the skip-identical upsert (no target; the strongest "
                            f"hand-written baseline)")
        cpu = g(ETL)["client_cpu_s"] / (rows / 1e6)
        met = cpu <= TARGET_CPU_PER_M
        ok &= met
        verdicts.append(f"{rows:>9} rows: client CPU {cpu:.2f} s per 1M rows vs target <= {TARGET_CPU_PER_M} s: "
                        f"{'OK' if met else 'MISSED'} (psql \\copy {g(PSQL)['client_cpu_s'] / (rows / 1e6):.2f} s)")
        per_core = FILE_MB[rows] / max(g(REDSHIFT)["client_cpu_s"], 1e-9)
        met = per_core >= TARGET_STAGING_MB_PER_CORE
        ok &= met
        verdicts.append(f"{rows:>9} rows: Redshift staging path {per_core:.1f} MB of input per CPU second vs target "
                        f">= {TARGET_STAGING_MB_PER_CORE:.0f}: {'OK' if met else 'MISSED'} "
                        f"({FILE_MB[rows] / g(REDSHIFT)['median_s']:.1f} MB/s wall)")
        rss = max(g(t)["peak_rss_mb"] for t in HEALTHETL)
        met = rss <= TARGET_RSS_MB
        ok &= met
        verdicts.append(f"{rows:>9} rows: healthetl peak RSS {rss:.1f} MB vs target <= {TARGET_RSS_MB:.0f} MB: "
                        f"{'OK' if met else 'MISSED'} (pgloader {g(PGLOADER)['peak_rss_mb']:.0f} MB)")
        cost = g(ETL)["median_s"] / g(UNCHECKED)["median_s"]
        met = cost <= QUALITY_COST_TARGET
        ok &= met
        verdicts.append(
            f"{rows:>9} rows: quality figures cost {100 * (cost - 1):+.1f}% ({cost:.3f}x the load without them) "
            f"vs target <= {100 * (QUALITY_COST_TARGET - 1):.0f}%: {'OK' if met else 'MISSED'}"
        )
    flat = None
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        flat = True
        for tool in sorted(HEALTHETL):
            a, b = summary[(lo, tool)]["peak_rss_mb"], summary[(hi, tool)]["peak_rss_mb"]
            grew = b - a
            tool_flat = grew <= max(a * FLAT_RATIO, FLAT_SLACK_MB)
            flat &= tool_flat
            verdicts.append(
                f"memory {tool}: {a:.1f} MB at {lo} rows -> {b:.1f} MB at {hi} rows ({grew:+.1f} MB): "
                f"{'FLAT' if tool_flat else 'GROWS'}"
            )
        ok &= flat
    busy_runs = [r for r in raw if r["cpu_busy_before"] > BUSY]
    if busy_runs:
        verdicts.append(
            f"WARNING: other work kept the machine over {BUSY:.0%} busy before {len(busy_runs)} of {len(raw)} "
            f"timed runs; timings are noisy (see cpu_busy_before in results.json)"
        )
    print()
    for v in verdicts:
        print(v)
    print("VERDICT: every target met" if ok else "VERDICT: some targets MISSED (see above)")
    return ok, flat


def main():
    try:
        sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 4_000_000]
        repeat = int(os.environ.get("BENCH_REPEAT", "3"))
        if repeat < 1 or any(n < 1 for n in sizes):
            raise ValueError
    except ValueError:
        print("usage: bench/run [ROWS ...]  (positive row counts; BENCH_REPEAT >= 1)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    raw = []
    try:
        info = machine()
        print(f"commit {info['commit']}   binary {info['binary']}")
        print(f"machine: {info['nproc']} cpus, {info['cpu']}, {info['memory_gb']} GB, Linux {info['kernel']}")
        print(f"{info['postgres']}")
        busy = info["cpu_busy_at_start"]
        print(f"CPU busy at start: {busy:.0%}" + ("   (WARNING: machine not idle; timings will be noisy)" if busy > BUSY else ""))
        print(f"sizes {sizes}, {repeat} repetitions, seed {SEED}; peak RSS is the client process's own (not the server's)")
        become_subreaper()
        setup_database()
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import lambda_s3  # the benches' one moto_server start
        moto, MOTO["endpoint"] = lambda_s3.start_moto()
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"{MOTO['endpoint']}/{STAGING_BUCKET}", method="PUT"),
                               timeout=10)
        for rows in sizes:
            bench_size(rows, repeat, raw)
    except BenchError as e:
        if MOTO:
            moto.kill()
        print(f"\nBENCHMARK ERROR: {e}", file=sys.stderr)
        (OUT / "results.json").write_text(json.dumps({"error": str(e), "runs": raw}, indent=2))
        return 1
    moto.kill()
    summary = summarize(raw, sizes)
    ok, flat = report(summary, sizes, raw)
    result = {
        "machine": info,
        "sizes": sizes,
        "repeat": repeat,
        "seed": SEED,
        "targets": {"initial_ratio": TARGET_RATIO, "resend_ratio": TARGET_RESEND_RATIO,
                    "cpu_per_million_s": TARGET_CPU_PER_M, "peak_rss_mb": TARGET_RSS_MB},
        "targets_met": ok,
        "memory_flat": flat,
        "summary": list(summary.values()),
        "runs": raw,
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=2))
    print(f"raw numbers: {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
