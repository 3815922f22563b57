"""The boto3 client both tools use, and the calls they share (stream creation, shard lists,
retry classification). Our own retry loops decide, so botocore's retries are off."""

import os
import random
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

DEFAULT_ENDPOINT = "http://127.0.0.1:4567"
# Errors after which the same request is sent again, later.
RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
}


def client(endpoint=None, region=None):
    endpoint = endpoint or os.environ.get("KINESIS_ENDPOINT") or DEFAULT_ENDPOINT
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
        region_name=region,
    )
    cfg = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30, max_pool_connections=4)
    return session.client("kinesis", endpoint_url=endpoint, config=cfg)


def error_code(exc):
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def retryable(exc):
    """True for throttling, server-side failures and lost connections."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in RETRYABLE or status >= 500
    return isinstance(exc, BotoCoreError)


class Backoff:
    """Exponential backoff with full jitter: base * 2^n, capped."""

    def __init__(self, base=0.05, cap=2.0):
        self.base, self.cap, self.n = base, cap, 0
        self._rng = random.Random()

    def sleep(self):
        time.sleep(self._rng.uniform(0, min(self.cap, self.base * 2**self.n)))
        self.n = min(self.n + 1, 16)

    def reset(self):
        self.n = 0


_last_warning = [0.0]


def warn(text):
    """A message on stderr, at most one every 10 s (for errors that are retried)."""
    now = time.monotonic()
    if now - _last_warning[0] >= 10:
        _last_warning[0] = now
        print(text, file=sys.stderr, flush=True)


def call(fn, patience=None, **kw):
    """fn(**kw), retried with backoff on retryable errors; a lost connection is retried for
    `patience` seconds at most (None: without end, with a warning every 10 s)."""
    b = Backoff()
    t0 = time.monotonic()
    while True:
        try:
            return fn(**kw)
        except (ClientError, BotoCoreError) as e:
            if not retryable(e):
                raise
            if not error_code(e):
                if patience is not None and time.monotonic() - t0 > patience:
                    raise
                warn(f"{e}; retrying")
            b.sleep()


def ensure_stream(k, name, shards):
    """Create the stream if it does not exist; wait until it is ACTIVE or UPDATING."""
    try:
        call(k.create_stream, patience=10, StreamName=name, ShardCount=shards)
    except ClientError as e:
        if error_code(e) != "ResourceInUseException":
            raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        d = call(k.describe_stream_summary, StreamName=name)["StreamDescriptionSummary"]
        if d["StreamStatus"] in ("ACTIVE", "UPDATING"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"stream {name} did not become ACTIVE")


def list_shards(k, name):
    """Every shard of the stream (open and closed), through all pages."""
    out, token = [], None
    while True:
        r = call(k.list_shards, NextToken=token) if token else call(k.list_shards, StreamName=name)
        out += r["Shards"]
        token = r.get("NextToken")
        if not token:
            return out
