#!/usr/bin/env python3
"""Benchmark of the Lambda binary (issue 3): binary size, time from process start to ready for the first event,
and peak RSS while streaming FactTable objects of 1,000,000 and 4,000,000 rows from the local S3 server.

The release binary is started as the Lambda runtime starts it (no arguments, AWS_LAMBDA_RUNTIME_API set). The
runtime API here is a minimal stand-in written below (it records when the function first asks for an event, hands
it one SQS event wrapping an S3 notification, and records the response) so that "ready" can be timed exactly;
S3 is moto_server and the warehouse the local PostgreSQL. Peak RSS is the process's VmHWM.

Run: bench/run-lambda   (builds, installs tools, then runs this with the project venv's python)
Before/after a change: HEALTHETL_BASELINE_BIN=/path/to/the/old/lambda/build bench/run-lambda ROWS also times that
binary, alternating with this build's, and prints both sizes and the ratio of the medians.
"""
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The command-line build (default features) generates the data; the Lambda build (no default features, what
# `sam build` deploys) serves the events. Both are timed from process start to ready.
CLI_BIN = os.path.join(ROOT, "target", "release", "healthetl")
BIN = os.path.join(ROOT, "target", "bench-lambda", "healthetl-lambda")
BASELINE_BIN = os.environ.get("HEALTHETL_BASELINE_BIN")
VENV = os.path.join(ROOT, ".venv", "bin")
ADMIN = os.environ.get("DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB = "healthetl_bench_lambda"
BUCKET = "bench"


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """The two runtime API calls a function makes: next event, and its response (or error)."""
    events = []          # queued (request_id, payload)
    first_next = None    # monotonic time of the first GET .../next
    responses = {}       # request_id -> (monotonic time, body)
    generation = 0       # bumped per function process: polls of a killed process never take an event
    lock = threading.Condition()

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/invocation/next"):
            self.send_error(404)
            return
        with RuntimeApi.lock:
            generation = RuntimeApi.generation
            if RuntimeApi.first_next is None:
                RuntimeApi.first_next = time.monotonic()
                RuntimeApi.lock.notify_all()
            while not RuntimeApi.events or generation != RuntimeApi.generation:
                if generation != RuntimeApi.generation:
                    return
                RuntimeApi.lock.wait()
            request_id, payload = RuntimeApi.events.pop(0)
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:healthetl")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        parts = self.path.split("/")
        request_id = parts[-2] if len(parts) >= 2 else "?"
        with RuntimeApi.lock:
            RuntimeApi.responses[request_id] = (time.monotonic(), self.path.endswith("/error"), body)
            RuntimeApi.lock.notify_all()
        self.send_response(202)
        self.end_headers()


def psql(url, sql):
    subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True)


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def ready_times(binary, env, runs=7):
    """Milliseconds from process start to the first request for an event, per run."""
    cold = []
    for _ in range(runs):
        with RuntimeApi.lock:
            RuntimeApi.generation += 1
            RuntimeApi.first_next = None
            RuntimeApi.lock.notify_all()
        started = time.monotonic()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with RuntimeApi.lock:
            while RuntimeApi.first_next is None:
                if not RuntimeApi.lock.wait(timeout=30):
                    sys.exit("the function never asked for an event")
        cold.append((RuntimeApi.first_next - started) * 1000)
        proc.kill()
        proc.wait()
    return cold


LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one full vCPU at 1769 MB, a proportional share below


class CpuQuota:
    """A cgroup whose CPU is capped at a Lambda function's share of a vCPU: cgroup v2 `cpu.max`, or v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us` (both: quota per 100 ms period). Needs root; None when no writable CPU
    controller exists."""

    PERIOD_US = 100_000

    def __init__(self, path, v2):
        self.path, self.v2 = path, v2

    @staticmethod
    def create(name, memory_mb):
        quota = int(CpuQuota.PERIOD_US * memory_mb / LAMBDA_MB_PER_VCPU)
        candidates = []
        if "cpu" in open("/sys/fs/cgroup/cgroup.controllers").read().split() \
                if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else False:
            candidates.append((os.path.join("/sys/fs/cgroup", name), True))
        if os.path.isdir("/sys/fs/cgroup/cpu"):
            candidates.append((os.path.join("/sys/fs/cgroup/cpu", name), False))
        for path, v2 in candidates:
            try:
                os.makedirs(path, exist_ok=True)
                if v2:
                    with open(os.path.join(path, "cpu.max"), "w") as f:
                        f.write(f"{quota} {CpuQuota.PERIOD_US}")
                else:
                    with open(os.path.join(path, "cpu.cfs_period_us"), "w") as f:
                        f.write(str(CpuQuota.PERIOD_US))
                    with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as f:
                        f.write(str(quota))
                return CpuQuota(path, v2)
            except OSError:
                continue
        return None

    def argv(self, binary):
        """Start `binary` inside the cgroup: the shell moves itself in, then execs (nothing runs unthrottled)."""
        procs = os.path.join(self.path, "cgroup.procs")
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$0"', binary]

    def remove(self):
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def quota_runs(env, object_key, etag, rows, db_url):
    """Ready time and the wall time of one object under the CPU of a 256 MB and of a 1769 MB function."""
    out = []
    for memory in (256, LAMBDA_MB_PER_VCPU):
        quota = CpuQuota.create(f"healthetl_bench_{memory}", memory)
        if quota is None:
            out.append({"memory_mb": memory, "skipped": "no writable cgroup CPU controller (run as root)"})
            continue
        run_env = dict(env, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory))
        psql(db_url, "TRUNCATE health.fact_table, etl.load_log")
        with RuntimeApi.lock:
            RuntimeApi.generation += 1
            RuntimeApi.first_next = None
            RuntimeApi.lock.notify_all()
        started = time.monotonic()
        proc = subprocess.Popen(quota.argv(BIN), env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with RuntimeApi.lock:
            while RuntimeApi.first_next is None:
                if not RuntimeApi.lock.wait(timeout=60):
                    sys.exit("the function never asked for an event")
        ready_ms = (RuntimeApi.first_next - started) * 1000
        request_id = f"quota-{memory}"
        seconds = send(request_id, sqs_event(object_key, etag, request_id), rows)
        usage = cpu_seconds(proc.pid)
        proc.kill()
        proc.wait()
        quota.remove()
        out.append({"memory_mb": memory, "vcpu": round(memory / LAMBDA_MB_PER_VCPU, 3), "ready_ms": ready_ms,
                    "rows": rows, "seconds": seconds, "cpu_s": usage,
                    "cgroup": "v2 cpu.max" if quota.v2 else "v1 cpu.cfs_quota_us"})
    return out


def cpu_seconds(pid):
    """User + system CPU of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sqs_event(key, etag, message_id):
    notification = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                                 "eventName": "ObjectCreated:Put",
                                 "s3": {"bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                                        "object": {"key": key, "eTag": etag}}}]}
    return {"Records": [{"messageId": message_id, "receiptHandle": "r", "body": json.dumps(notification),
                         "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                         "awsRegion": "us-east-1"}]}


def send(request_id, event, rows):
    """Hand the function one event; seconds until it answered. Exits on a failed load."""
    sent = time.monotonic()
    with RuntimeApi.lock:
        RuntimeApi.events.append((request_id, event))
        RuntimeApi.lock.notify_all()
        while request_id not in RuntimeApi.responses:
            if not RuntimeApi.lock.wait(timeout=600):
                sys.exit("no response within 10 minutes")
    done, is_error, body = RuntimeApi.responses[request_id]
    if is_error or json.loads(body).get("batchItemFailures"):
        sys.exit(f"load of {rows} rows failed: {body[:300]!r}")
    return done - sent


def start_moto():
    """moto_server from the project venv on a free loopback port, answering; returns (process, endpoint URL)."""
    moto_port = free_port()
    moto = subprocess.Popen([os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{moto_port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return moto, endpoint
        except Exception:
            time.sleep(0.1)
    moto.kill()
    sys.exit("moto_server did not start")


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 4_000_000]
    import boto3
    moto, endpoint = start_moto()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket=BUCKET)
    psql(ADMIN, f'DROP DATABASE IF EXISTS "{DB}"')
    psql(ADMIN, f'CREATE DATABASE "{DB}"')
    db_url = ADMIN.rsplit("/", 1)[0] + "/" + DB

    api_port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", api_port), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{api_port}", AWS_LAMBDA_FUNCTION_NAME="healthetl",
               AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
               AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", DATABASE_URL=db_url, HEALTHETL_DATABASE_URL=db_url, LOG_FORMAT="json", RUST_LOG="warn")
    size_mb = os.path.getsize(BIN) / 1e6
    results = {"binary_bytes": os.path.getsize(BIN), "cli_binary_bytes": os.path.getsize(CLI_BIN), "objects": []}
    results["cli_ready_ms_median"] = statistics.median(ready_times(CLI_BIN, env))
    cold = ready_times(BIN, env)
    if BASELINE_BIN:
        # Alternate the two builds (three rounds of seven starts each) so that a drift of the machine hits both.
        baseline = []
        for _ in range(3):
            baseline += ready_times(BASELINE_BIN, env)
            cold += ready_times(BIN, env)
        results["baseline_binary_bytes"] = os.path.getsize(BASELINE_BIN)
        results["baseline_ready_ms_median"] = statistics.median(baseline)
    results["ready_ms_median"] = statistics.median(cold)
    results["ready_ms_all"] = cold

    # One warm process handles every object: the RSS is the whole function's high-water mark.
    with RuntimeApi.lock:
        RuntimeApi.generation += 1
        RuntimeApi.first_next = None
        RuntimeApi.lock.notify_all()
    proc = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    objects = {}
    for i, rows in enumerate(sizes):
        folder = os.path.join(ROOT, "target", "bench-lambda", str(rows))
        if not os.path.exists(os.path.join(folder, "FactTable.csv")):
            subprocess.run([CLI_BIN, "generate", "--rows", str(rows), "--out", folder, "--seed", "11"], check=True,
                           stdout=subprocess.DEVNULL)
        key = f"incoming/FactTable_{rows}.csv"
        s3.upload_file(os.path.join(folder, "FactTable.csv"), BUCKET, key)
        etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
        request_id = f"bench-{i}"
        if i > 0:  # every object is an initial load into an empty warehouse, as in bench/run
            psql(db_url, "TRUNCATE health.fact_table, etl.load_log")
        seconds = send(request_id, sqs_event(key, etag, f"m{i}"), rows)
        objects[rows] = (key, etag)
        count = subprocess.run(["psql", db_url, "-qAtc", "select count(*) from health.fact_table"],
                               check=True, capture_output=True, text=True).stdout.strip()
        results["objects"].append({"rows": rows, "object_mb": os.path.getsize(os.path.join(folder, "FactTable.csv")) / 1e6,
                                   "seconds": seconds, "peak_rss_mb": vm_hwm_kb(proc.pid) / 1024,
                                   "fact_rows_in_warehouse": int(count)})
    proc.kill()
    proc.wait()
    quota_rows = min(sizes)
    results["cpu_quota"] = quota_runs(env, *objects[quota_rows], quota_rows, db_url)
    moto.kill()
    server.shutdown()
    psql(ADMIN, f'DROP DATABASE IF EXISTS "{DB}"')

    cli_mb = results["cli_binary_bytes"] / 1e6
    print(f"Lambda build (no default features): {size_mb:.1f} MB; command-line build: {cli_mb:.1f} MB "
          f"({size_mb / cli_mb:.2f}x; x86_64 release, stripped)")
    print(f"process start -> ready for the first event: Lambda build median {results['ready_ms_median']:.1f} ms "
          f"(runs: {', '.join(f'{c:.1f}' for c in cold)}); command-line build median "
          f"{results['cli_ready_ms_median']:.1f} ms")
    if BASELINE_BIN:
        base_bytes, base_ms = results["baseline_binary_bytes"], results["baseline_ready_ms_median"]
        print(f"baseline {BASELINE_BIN}: {base_bytes:,} bytes, ready median {base_ms:.1f} ms; this build "
              f"{results['binary_bytes']:,} bytes ({results['binary_bytes'] / base_bytes:.3f}x), ready median "
              f"{results['ready_ms_median']:.1f} ms ({results['ready_ms_median'] / base_ms:.2f}x)")
    print(f"{'rows':>10} {'object MB':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MB (cumulative)':>26}")
    for o in results["objects"]:
        print(f"{o['rows']:>10} {o['object_mb']:>10.1f} {o['seconds']:>8.2f} {o['rows'] / o['seconds']:>10.0f} "
              f"{o['peak_rss_mb']:>26.1f}")
    peaks = [o["peak_rss_mb"] for o in results["objects"]]
    verdict = "fits" if max(peaks) < 256 else "DOES NOT FIT"
    print(f"peak RSS {max(peaks):.1f} MB: {verdict} a 256 MB Lambda; "
          f"flat in object size: {'yes' if max(peaks) - min(peaks) < max(4, 0.1 * min(peaks)) else 'NO'}")
    print(f"under a Lambda function's CPU (a cgroup quota of memory/{LAMBDA_MB_PER_VCPU} of a vCPU; the database "
          f"and S3 are not limited), {quota_rows} rows:")
    for q in results["cpu_quota"]:
        if "skipped" in q:
            print(f"  {q['memory_mb']:>5} MB: skipped, {q['skipped']}")
        else:
            print(f"  {q['memory_mb']:>5} MB ({q['vcpu']:.3f} vCPU, {q['cgroup']}): ready in {q['ready_ms']:.0f} ms, "
                  f"{q['seconds']:.2f} s for the object ({q['rows'] / q['seconds']:,.0f} rows/s), "
                  f"{q['cpu_s']:.2f} s CPU")
    with open(os.path.join(ROOT, "target", "bench-lambda", "results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
