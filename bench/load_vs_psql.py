#!/usr/bin/env python3
"""healthetl load vs psql \\copy: the same fact table file, the same target table shape, an empty warehouse.

For each size (rows, default 1000000 4000000): generate the dataset (`--plain`, so psql can read it; and the
noisy file of the same seed) and load its dimensions once, then BENCH_REPEAT times, rotating the order of the
tools: truncate both fact targets and the ledger, VACUUM + CHECKPOINT, run one tool and measure its wall time and
peak RSS (os.wait4 ru_maxrss, see measured()). Only FactTable.csv is timed; the tables each tool loaded are
compared by a row-hash checksum. The tools: psql \copy, healthetl on the plain file, on the noisy file, and on the
plain file with HEALTHETL_QUALITY=off (no data-quality figures: the ratio of the two plain runs is what the
figures cost), and on the plain file with PG_COPY_FORMAT=text (COPY text instead of binary: what binary COPY saves). Prints a table and verdicts against the targets (healthetl <= 1.5x psql, peak RSS <= 64 MB, flat
RSS from the smallest to the largest size, quality figures <= 5%); raw numbers go to target/bench/results.json.

Normally run through `bench/run` (which builds the binary first). Standard library only.
Exit status: 0 when every load was correct (targets missed or not), 1 on any error.
"""

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

TARGET_RATIO = 1.5
TARGET_RSS_MB = 64.0
FLAT_RATIO = 0.10  # RSS at the largest size within 10% ...
FLAT_SLACK_MB = 4.0  # ... or within a few MB of the smallest size
BUSY = 0.15  # machine busier than this before a run: warn that timings are noisy

PSQL = "psql \\copy"
ETL = "healthetl load"
NOISY = "healthetl load (noisy)"
UNCHECKED = "healthetl (no quality)"
TEXT_COPY = "healthetl (text COPY)"
TOOLS = [PSQL, ETL, NOISY, UNCHECKED, TEXT_COPY]
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
    env = dict(os.environ, DATABASE_URL=bench_url(), RUST_LOG="warn")
    run([BIN, "init"], env=env)
    psql(
        bench_url(),
        "CREATE SCHEMA bench_baseline",
        "CREATE TABLE bench_baseline.fact_table (LIKE health.fact_table INCLUDING ALL)",
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
    env = dict(os.environ, DATABASE_URL=url, RUST_LOG="warn")
    run([BIN, "load", "--rejects-dir", str(OUT / "rejects"), *files], env=env)


DIMENSIONS = ["dim_patient", "dim_physician", "dim_transaction", "dim_payer", "dim_location",
              "dim_diagnosis_code", "dim_cpt_code", "dim_date"]


def reset():
    """Empty fact tables: both targets and the ledger truncated, dead space vacuumed, dirty pages flushed."""
    url = bench_url()
    psql(url, "TRUNCATE health.fact_table, bench_baseline.fact_table, etl.load_log", "VACUUM", "CHECKPOINT")


def run_tool(tool, rows, plain, noisy):
    url = bench_url()
    if tool == PSQL:
        copy = f"\\copy bench_baseline.fact_table FROM '{plain}' WITH (FORMAT csv, HEADER true)"
        seconds, rss, cpu, code, out, err = measured(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", copy])
        if code != 0 or out.strip() != f"COPY {rows}":
            raise BenchError(f"{tool}: exit {code}, output {out.strip()!r}, errors {err.strip()!r}")
        table = "bench_baseline.fact_table"
    else:
        file = noisy if tool == NOISY else plain
        env = dict(os.environ, DATABASE_URL=url, RUST_LOG="warn")
        if tool == UNCHECKED:
            env["HEALTHETL_QUALITY"] = "off"
        if tool == TEXT_COPY:
            env["PG_COPY_FORMAT"] = "text"
        argv = [BIN, "load", "--json", "--rejects-dir", str(OUT / "rejects"), str(file)]
        seconds, rss, cpu, code, out, err = measured(argv, env=env)
        try:
            report = json.loads(out)["objects"][0]
        except (ValueError, KeyError, IndexError):
            raise BenchError(f"{tool}: exit {code}, unreadable output {out[:500]!r}, errors {err.strip()!r}")
        quality = report.get("quality")
        if tool == UNCHECKED and quality is not None:
            raise BenchError(f"{tool}: HEALTHETL_QUALITY=off still counted quality figures: {quality}")
        if tool != UNCHECKED and (quality is None or any(n != 0 for n in quality["orphans"].values())
                                  or quality["ar_mismatch"] != 0):
            raise BenchError(f"{tool}: expected clean quality figures with every dimension loaded, got {quality}")
        if code != 0 or report["status"] != "loaded" or report["rows_loaded"] != rows:
            raise BenchError(
                f"{tool}: exit {code}, status {report['status']}, rows_loaded {report['rows_loaded']} "
                f"(expected {rows}), rows_rejected {report['rows_rejected']}, error {report.get('error')!r}"
            )
        table = "health.fact_table"
    count = int(psql(url, f"SELECT count(*) FROM {table}"))
    if count != rows:
        raise BenchError(f"{tool}: {table} has {count} rows after the load, expected {rows}")
    return seconds, rss, cpu, table


def bench_size(rows, repeat, raw):
    t = time.perf_counter()
    plain, noisy = generate(rows)
    print(
        f"\n{rows} rows: generated in {time.perf_counter() - t:.1f}s "
        f"({plain.stat().st_size / 2**20:.0f} MB plain, {noisy.stat().st_size / 2**20:.0f} MB noisy)",
        flush=True,
    )
    load_dimensions(plain)
    # Untimed warm-up: the first load of a new size pays for creating WAL segments and warming the server.
    reset()
    run_tool(PSQL, rows, plain, noisy)
    checksums = {}
    for rep in range(repeat):
        order = TOOLS if rep % 2 == 0 else TOOLS[::-1]
        for tool in order:
            reset()
            busy = cpu_busy(0.5)  # after the checkpoint: nothing of ours runs now, so this is other work
            seconds, rss_kb, cpu, table = run_tool(tool, rows, plain, noisy)
            if rep == 0:  # same values in the table whichever tool and file loaded it
                checksums[tool] = psql(bench_url(), CHECKSUM_SQL.format(table=table))
            raw.append(
                {"rows": rows, "tool": tool, "rep": rep, "seconds": round(seconds, 4), "peak_rss_kb": rss_kb,
                 "client_cpu_s": round(cpu, 3), "cpu_busy_before": round(busy, 3)}
            )
            print(
                f"  rep {rep + 1}/{repeat}  {tool:<24} {seconds:7.2f} s  {rss_kb / 1024:6.1f} MB  "
                f"client CPU {cpu:6.2f} s  (machine {busy:4.0%} busy before)",
                flush=True,
            )
    if len(set(checksums.values())) != 1:
        raise BenchError(f"{rows} rows: the loaded tables differ (count, row-hash sum): {checksums}")


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
                "peak_rss_mb": max(r["peak_rss_kb"] for r in runs) / 1024,
            }
    return summary


def report(summary, sizes, raw):
    print()
    head = f"{'rows':>9}  {'tool':<24} {'median s':>9} {'min s':>7} {'max s':>7} {'rows/s':>10} {'peak RSS MB':>12}  ratio"
    print(head)
    print("-" * len(head))
    verdicts, ok = [], True
    for rows in sizes:
        p, e, n, u, x = (summary[(rows, t)] for t in TOOLS)
        ratio = e["median_s"] / p["median_s"]
        e["ratio_vs_psql"] = ratio
        n["ratio_vs_plain"] = n["median_s"] / e["median_s"]
        cost = e["median_s"] / u["median_s"]
        e["quality_cost"] = cost
        u["ratio_vs_psql"] = u["median_s"] / p["median_s"]
        x["ratio_vs_psql"] = x["median_s"] / p["median_s"]
        x["ratio_vs_binary"] = x["median_s"] / e["median_s"]
        for s, note in ((p, ""), (e, f"{ratio:.2f}x psql"), (n, f"{n['ratio_vs_plain']:.2f}x plain"),
                        (u, f"{u['ratio_vs_psql']:.2f}x psql"),
                        (x, f"{x['ratio_vs_psql']:.2f}x psql, {x['ratio_vs_binary']:.2f}x binary")):
            print(
                f"{rows:>9}  {s['tool']:<24} {s['median_s']:>9.2f} {s['min_s']:>7.2f} {s['max_s']:>7.2f} "
                f"{s['rows_per_s']:>10,.0f} {s['peak_rss_mb']:>12.1f}  {note}"
            )
        time_ok = ratio <= TARGET_RATIO
        rss = max(e["peak_rss_mb"], n["peak_rss_mb"])
        rss_ok = rss <= TARGET_RSS_MB
        ok &= time_ok and rss_ok
        parity = "  (parity reached)" if ratio <= 1.0 else ""
        verdicts.append(
            f"{rows:>9} rows: time {ratio:.2f}x psql vs target {TARGET_RATIO}x: {'OK' if time_ok else 'MISSED'}{parity}; "
            f"peak RSS {rss:.1f} MB vs {TARGET_RSS_MB:.0f} MB: {'OK' if rss_ok else 'MISSED'}"
        )
        cost_ok = cost <= QUALITY_COST_TARGET
        ok &= cost_ok
        verdicts.append(
            f"{rows:>9} rows: quality figures cost {100 * (cost - 1):+.1f}% ({cost:.3f}x the load without them) "
            f"vs target <= {100 * (QUALITY_COST_TARGET - 1):.0f}%: {'OK' if cost_ok else 'MISSED'}"
        )
    flat = None
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        flat = True
        for tool in (ETL, NOISY, UNCHECKED):
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
    if ok:
        print(f"VERDICT: targets met (<= {TARGET_RATIO}x psql, <= {TARGET_RSS_MB:.0f} MB, flat memory, quality "
              f"<= {100 * (QUALITY_COST_TARGET - 1):.0f}%); product goal is parity.")
    else:
        print("!" * 72)
        print(f"!!! VERDICT: TARGET MISSED (<= {TARGET_RATIO}x psql, <= {TARGET_RSS_MB:.0f} MB peak RSS, flat memory)")
        print("!" * 72)
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
        for rows in sizes:
            bench_size(rows, repeat, raw)
    except BenchError as e:
        print(f"\nBENCHMARK ERROR: {e}", file=sys.stderr)
        (OUT / "results.json").write_text(json.dumps({"error": str(e), "runs": raw}, indent=2))
        return 1
    summary = summarize(raw, sizes)
    ok, flat = report(summary, sizes, raw)
    result = {
        "machine": info,
        "sizes": sizes,
        "repeat": repeat,
        "seed": SEED,
        "targets": {"ratio": TARGET_RATIO, "peak_rss_mb": TARGET_RSS_MB},
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
