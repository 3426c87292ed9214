#!/usr/bin/env python3
"""The measuring half of bench/dashboard-load: a page mix from the live filter choices, a cold pass, and wrk runs.

Usage (from bench/dashboard-load): dashboard_load.py ROWS SECONDS CACHED_BASE_URL UNCACHED_BASE_URL
"""
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "bench-dashboard")


def get(url):
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=300) as r:
        body = r.read()
        assert r.status == 200, (url, r.status)
    return (time.monotonic() - started) * 1000, body


def pages(base):
    """Every filter kind once, both date bases, three grains, combinations, the API and two exports."""
    _, body = get(base + "api/filters")
    f = json.loads(body)
    q = urllib.parse.urlencode
    mix = [
        {}, {"grain": "day"}, {"grain": "week"}, {"dates": "service"},
        {"from": "2020-01-01", "to": "2020-06-30"}, {"from": "2019-03-15", "to": "2019-04-20", "grain": "day"},
        {"payer": f["payers"][0]["id"]}, {"payer": f["payers"][1]["name"]},
        {"location": f["locations"][0]["id"]}, {"physician": f["physicians"][0]["id"]},
        {"specialty": f["specialties"][0]}, {"cpt_group": f["cpt_groups"][0]}, {"cpt": f["cpt_codes"][0]},
        {"diagnosis_group": f["diagnosis_groups"][0]}, {"diagnosis": f["diagnosis_codes"][0]},
        {"gender": f["genders"][0]}, {"age_band": f["age_bands"][0]}, {"state": f["states"][0]},
        {"payer": "unknown"},
        {"payer": f["payers"][2]["id"], "specialty": f["specialties"][1], "from": "2019-07-01"},
        {"gender": f["genders"][1], "age_band": f["age_bands"][1], "dates": "service", "grain": "week"},
    ]
    paths = ["/?" + q(m) if m else "/" for m in mix]
    paths += ["/api/summary", "/api/summary?" + q({"grain": "day"}),
              "/export/payers.csv", "/export/timeline.csv?" + q({"grain": "week"})]
    return paths


def wrk(base, paths, seconds):
    script = os.path.join(OUT, "mix.lua")
    with open(script, "w") as s:
        s.write("local paths = {" + ", ".join(json.dumps(p) for p in paths) + "}\n")
        # Each wrk thread starts at its own place in the list, so the two do not ask for the same page in step.
        s.write("local i = 0\nlocal threads = 0\n")
        s.write("setup = function(thread) thread:set('offset', threads * 13); threads = threads + 1 end\n")
        s.write("init = function(args) i = offset end\n")
        s.write("request = function() i = i % #paths + 1; return wrk.format('GET', paths[i]) end\n")
        s.write("done = function(summary, latency, requests)\n"
                "  local e = summary.errors\n"
                "  io.write(string.format('RESULT %d %d %d %d %d %d %d %d %d\\n', latency:percentile(50), "
                "latency:percentile(95), latency:percentile(99), latency.max, summary.requests, summary.duration, "
                "e.connect + e.read + e.write + e.timeout, e.status, e.timeout))\n"
                "end\n")
    run = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--timeout", "120s", "-s", script, base.rstrip("/")],
                         check=True, capture_output=True, text=True)
    line = next(l for l in run.stdout.splitlines() if l.startswith("RESULT "))
    p50, p95, p99, top, requests, duration, socket_errors, status_errors, timeouts = map(int, line.split()[1:])
    return {"p50_ms": p50 / 1000, "p95_ms": p95 / 1000, "p99_ms": p99 / 1000, "max_ms": top / 1000,
            "requests": requests, "requests_per_s": requests / (duration / 1e6), "socket_errors": socket_errors,
            "non_2xx": status_errors, "timeouts": timeouts}


def main():
    rows, seconds, cached, uncached = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    paths = pages(cached)
    cold = [get(cached.rstrip("/") + p)[0] for p in paths]
    results = {"rows": rows, "pages": paths, "cold_ms": cold,
               "cached": wrk(cached, paths, seconds), "uncached": wrk(uncached, paths, seconds)}
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    cold_sorted = sorted(cold)
    print(f"dashboard at {rows:,} fact rows, {len(paths)} distinct pages, 8 concurrent clients (wrk -t2 -c8), "
          f"{seconds} s per run")
    print(f"cold, one at a time (each page's first view; the landing page is computed ahead at start): "
          f"median {statistics.median(cold):.0f} ms, "
          f"p95 {cold_sorted[int(0.95 * (len(cold) - 1))]:.0f} ms, max {max(cold):.0f} ms")
    print(f"{'run':<34} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>8} {'errors':>7}")
    for name, key in (("as shipped (pages kept, 4 sessions)", "cached"), ("--cached-pages 0 (all computed)", "uncached")):
        r = results[key]
        errors = r["socket_errors"] + r["non_2xx"]
        print(f"{name:<34} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.0f} "
              f"{r['requests_per_s']:>8.1f} {errors:>7}")
    verdict = "meets" if results["cached"]["p95_ms"] <= 300 else "MISSES"
    print(f"target p95 <= 300 ms with 8 clients: {verdict} ({results['cached']['p95_ms']:.1f} ms)")
    if results["cached"]["non_2xx"] or results["cached"]["socket_errors"]:
        sys.exit("errors during the run")


if __name__ == "__main__":
    main()
