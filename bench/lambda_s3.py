#!/usr/bin/env python3
"""Benchmark of the Lambda binary (issue 3): binary size, time from process start to ready for the first event,
and peak RSS while streaming FactTable objects of 1,000,000 and 4,000,000 rows from the local S3 server.

The release binary is started as the Lambda runtime starts it (no arguments, AWS_LAMBDA_RUNTIME_API set). The
runtime API here is a minimal stand-in written below (it records when the function first asks for an event, hands
it one SQS event wrapping an S3 notification, and records the response) so that "ready" can be timed exactly;
S3 is moto_server and the warehouse the local PostgreSQL. Peak RSS is the process's VmHWM.

Run: bench/run-lambda   (builds, installs tools, then runs this with the project venv's python)
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


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 4_000_000]
    import boto3
    moto_port = free_port()
    moto = subprocess.Popen([os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{moto_port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
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
               AWS_REGION="us-east-1", DATABASE_URL=db_url, LOG_FORMAT="json", RUST_LOG="warn")
    size_mb = os.path.getsize(BIN) / 1e6
    results = {"binary_bytes": os.path.getsize(BIN), "cli_binary_bytes": os.path.getsize(CLI_BIN), "objects": []}
    results["cli_ready_ms_median"] = statistics.median(ready_times(CLI_BIN, env))
    cold = ready_times(BIN, env)
    results["ready_ms_median"] = statistics.median(cold)
    results["ready_ms_all"] = cold

    # One warm process handles every object: the RSS is the whole function's high-water mark.
    with RuntimeApi.lock:
        RuntimeApi.generation += 1
        RuntimeApi.first_next = None
        RuntimeApi.lock.notify_all()
    proc = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for i, rows in enumerate(sizes):
        folder = os.path.join(ROOT, "target", "bench-lambda", str(rows))
        if not os.path.exists(os.path.join(folder, "FactTable.csv")):
            subprocess.run([CLI_BIN, "generate", "--rows", str(rows), "--out", folder, "--seed", "11"], check=True,
                           stdout=subprocess.DEVNULL)
        key = f"incoming/FactTable_{rows}.csv"
        s3.upload_file(os.path.join(folder, "FactTable.csv"), BUCKET, key)
        etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
        notification = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                                     "eventName": "ObjectCreated:Put",
                                     "s3": {"bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                                            "object": {"key": key, "eTag": etag}}}]}
        event = {"Records": [{"messageId": f"m{i}", "receiptHandle": "r", "body": json.dumps(notification),
                              "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                              "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                              "awsRegion": "us-east-1"}]}
        request_id = f"bench-{i}"
        if i > 0:  # every object is an initial load into an empty warehouse, as in bench/run
            psql(db_url, "TRUNCATE health.fact_table, etl.load_log")
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
        count = subprocess.run(["psql", db_url, "-qAtc", "select count(*) from health.fact_table"],
                               check=True, capture_output=True, text=True).stdout.strip()
        results["objects"].append({"rows": rows, "object_mb": os.path.getsize(os.path.join(folder, "FactTable.csv")) / 1e6,
                                   "seconds": done - sent, "peak_rss_mb": vm_hwm_kb(proc.pid) / 1024,
                                   "fact_rows_in_warehouse": int(count)})
    proc.kill()
    proc.wait()
    moto.kill()
    server.shutdown()
    psql(ADMIN, f'DROP DATABASE IF EXISTS "{DB}"')

    cli_mb = results["cli_binary_bytes"] / 1e6
    print(f"Lambda build (no default features): {size_mb:.1f} MB; command-line build: {cli_mb:.1f} MB "
          f"({size_mb / cli_mb:.2f}x; x86_64 release, stripped)")
    print(f"process start -> ready for the first event: Lambda build median {results['ready_ms_median']:.1f} ms "
          f"(runs: {', '.join(f'{c:.1f}' for c in cold)}); command-line build median "
          f"{results['cli_ready_ms_median']:.1f} ms")
    print(f"{'rows':>10} {'object MB':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MB (cumulative)':>26}")
    for o in results["objects"]:
        print(f"{o['rows']:>10} {o['object_mb']:>10.1f} {o['seconds']:>8.2f} {o['rows'] / o['seconds']:>10.0f} "
              f"{o['peak_rss_mb']:>26.1f}")
    peaks = [o["peak_rss_mb"] for o in results["objects"]]
    verdict = "fits" if max(peaks) < 256 else "DOES NOT FIT"
    print(f"peak RSS {max(peaks):.1f} MB: {verdict} a 256 MB Lambda; "
          f"flat in object size: {'yes' if max(peaks) - min(peaks) < max(4, 0.1 * min(peaks)) else 'NO'}")
    with open(os.path.join(ROOT, "target", "bench-lambda", "results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
