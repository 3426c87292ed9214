#!/usr/bin/env python3
"""The production topology on one machine: moto_server (a real S3 + SQS server that emits S3 event
notifications to SQS) on loopback, with the landing bucket, the queue and the bucket -> queue notification
for incoming/*.csv and incoming/*.csv.gz, as template.yaml wires them in AWS.

    scripts/local_aws.py up   [--port 5055] [--env-file target/local-aws.env]   start (or reuse) and configure
    scripts/local_aws.py down [--port 5055]                                      stop the server started by `up`

`up` writes the environment (endpoint, dummy credentials, region, bucket, queue URL) to the env file,
ready for `set -a; . target/local-aws.env`. Run it with the project venv's python (scripts/dev-env).
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3

BUCKET = "healthetl-landing"
QUEUE = "healthetl-events"
PREFIX = "incoming/"


def answering(endpoint):
    try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
        return True
    except Exception:
        return False


def up(args):
    endpoint = f"http://127.0.0.1:{args.port}"
    pid_file = f"target/moto-{args.port}.pid"
    if not answering(endpoint):
        os.makedirs("target", exist_ok=True)
        moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
        log = open(f"target/moto-{args.port}.log", "ab")
        proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(args.port)], stdout=log, stderr=log,
                                start_new_session=True)
        with open(pid_file, "w") as f:
            f.write(str(proc.pid))
        for _ in range(100):
            if answering(endpoint):
                break
            if proc.poll() is not None:
                sys.exit(f"error: moto_server exited (see target/moto-{args.port}.log)")
            time.sleep(0.1)
        else:
            sys.exit(f"error: moto_server did not answer on {endpoint}")
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                    region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = [{"Name": "prefix", "Value": PREFIX}]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [
        {"Id": f"csv{suffix}", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": rules + [{"Name": "suffix", "Value": suffix}]}}}
        for suffix in (".csv", ".csv.gz")]})
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "BUCKET": BUCKET,
        "INCOMING_PREFIX": PREFIX,
        "QUEUE_URL": queue_url,
    }
    os.makedirs(os.path.dirname(args.env_file) or ".", exist_ok=True)
    with open(args.env_file, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in env.items())
    print(f"local S3 + SQS on {endpoint}: bucket {BUCKET} -> queue {QUEUE} for {PREFIX}*.csv(.gz); env in {args.env_file}")


def down(args):
    pid_file = f"target/moto-{args.port}.pid"
    try:
        pid = int(open(pid_file).read())
        os.killpg(pid, signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    try:
        os.remove(pid_file)
    except FileNotFoundError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("MOTO_PORT", "5055")))
    parser.add_argument("--env-file", default="target/local-aws.env")
    args = parser.parse_args()
    up(args) if args.command == "up" else down(args)


if __name__ == "__main__":
    main()
