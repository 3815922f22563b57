"""A call that waits on storage does not hold up the other connections of its event loop.

kinesd runs with one event loop (--loops 1) on a PostgreSQL store, and the test makes a
control-plane call slow for as long as it likes: a transaction of its own holds the rows of the
streams' headers (SELECT ... FOR UPDATE), so IncreaseStreamRetentionPeriod, which rewrites its
stream's header, waits inside PostgreSQL until the test lets go. PostgreSQL shows that wait in
pg_stat_activity, which proves the call is in progress. While it waits, other connections of the
same loop are served: /healthcheck, PutRecord, and GetRecords (itself on a worker). Readers are
not blocked by row locks, and nothing else kinesd does writes those rows (lifecycle delays are 0).
(Another control-plane call would wait too: they take turns on the registry's change lock.)

Needs a PostgreSQL server: `make test` runs the integration suite under tools/with-postgres.sh,
which names one in KINESD_PG_URL; without it these tests are skipped. No assertion is about time:
each waits for what must happen (the call waiting on the lock, an answer) with a generous bound.
"""

import json
import os
import subprocess
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

import helpers
from frontends import Frontend, fresh_database

pytestmark = [pytest.mark.own_server]

PG_URL = os.environ.get("KINESD_PG_URL")
if not PG_URL:
    pytest.skip("no PostgreSQL: run under tools/with-postgres.sh (make test does)", allow_module_level=True)

FLAGS = ["--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0", "--no-limits", "--loops", "1"]


def psql(url, sql):
    return subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()


def lock_waiters(url):
    """Sessions of this database waiting for a lock: only the slow call takes one the test holds."""
    return int(psql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND wait_event_type = 'Lock'"))


class HeaderLock:
    """A transaction holding every stream header row until release()."""

    def __init__(self, url):
        self.p = subprocess.Popen(["psql", url, "-qAt", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.p.stdin.write("BEGIN;\nSELECT count(*) FROM (SELECT key FROM kinesd_rows WHERE key LIKE 'st/%' "
                           "FOR UPDATE) AS held;\n")
        self.p.stdin.flush()
        assert int(self.p.stdout.readline()) >= 1, "no stream header row to hold"

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("ROLLBACK;\n")
            self.p.stdin.close()
            self.p.wait(timeout=30)


@pytest.fixture
def front(request):
    name = "t_" + request.node.name.lower()[:50]
    store = fresh_database(PG_URL, name)
    started = []

    def _start(extra=()):
        f = Frontend(store, FLAGS + list(extra)).start()
        started.append(f)
        return f

    yield _start
    for f in started:
        if f.proc.poll() is None:
            code = f.stop()
            assert code == 0, f"kinesd exited with {code}:\n{f.log()}"


def ready_stream(f, name):
    k = helpers.make_client(f.endpoint)
    k.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(k, name, "ACTIVE", timeout=30)
    k.put_record(StreamName=name, PartitionKey="p", Data=b"first")  # the shard's data key exists
    return k


def call_in_thread(fn):
    """Run fn() in a thread; the returned dict gets "result" or "error" once it is done."""
    out = {}

    def run():
        try:
            out["result"] = fn()
        except Exception as e:  # noqa: BLE001: handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t
    return out


def wait_for_lock_waiters(url, n, call):
    deadline = time.monotonic() + 30
    while lock_waiters(url) < n:
        assert "error" not in call and "result" not in call, f"the call finished instead of waiting: {call}"
        assert time.monotonic() < deadline, "the call never waited on the held rows"
        time.sleep(0.05)


def test_a_call_waiting_on_postgresql_does_not_stall_other_connections_of_its_loop(front):
    f = front()
    k = ready_stream(f, "slow")
    iterator = k.get_shard_iterator(StreamName="slow", ShardId="shardId-000000000000",
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    lock = HeaderLock(f.store_url)
    try:
        slow_client = helpers.make_client(f.endpoint, read_timeout=120)
        slow = call_in_thread(lambda: slow_client.increase_stream_retention_period(
            StreamName="slow", RetentionPeriodHours=48))
        wait_for_lock_waiters(f.store_url, 1, slow)

        # every one of these is on a connection of its own, served by the same (only) loop
        with urllib.request.urlopen(f.endpoint + "/healthcheck", timeout=30) as r:
            assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
        other = helpers.make_client(f.endpoint, read_timeout=30)
        put = other.put_record(StreamName="slow", PartitionKey="p", Data=b"while the call waits")
        assert put["ShardId"] == "shardId-000000000000"
        got = helpers.make_client(f.endpoint, read_timeout=30).get_records(ShardIterator=iterator)
        assert [r["Data"] for r in got["Records"]] == [b"first", b"while the call waits"]

        # the slow call is provably still in progress: no answer yet, still waiting in PostgreSQL
        assert "result" not in slow and "error" not in slow, slow
        assert lock_waiters(f.store_url) == 1
    finally:
        lock.release()
    slow["thread"].join(timeout=60)
    assert "error" not in slow, slow.get("error")
    assert "result" in slow, "the slow call did not finish once the rows were released"
    summary = helpers.make_client(f.endpoint).describe_stream_summary(StreamName="slow")
    assert summary["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48


def test_past_the_worker_queue_a_call_gets_a_retryable_503_at_once(front):
    f = front(["--workers", "1", "--worker-queue", "1"])
    ready_stream(f, "busy")
    lock = HeaderLock(f.store_url)
    try:
        slow_client = helpers.make_client(f.endpoint, read_timeout=120)
        slow = call_in_thread(lambda: slow_client.increase_stream_retention_period(
            StreamName="busy", RetentionPeriodHours=48))
        wait_for_lock_waiters(f.store_url, 1, slow)  # the only worker is taken

        # two more calls that need a worker: one fits in the queue, the other is turned away
        body = json.dumps({"StreamName": "busy"}).encode()
        target = helpers.TARGET_PREFIX + ".DescribeStreamSummary"
        calls = [call_in_thread(lambda: helpers.http_request(
            f.endpoint, "POST", "/", body, helpers.signed_headers(f.endpoint, target, body), timeout=120))
            for _ in range(2)]
        deadline = time.monotonic() + 30
        while not any("result" in c or "error" in c for c in calls):
            assert time.monotonic() < deadline, "neither call was answered"
            time.sleep(0.05)
        done = [c for c in calls if "result" in c or "error" in c]
        assert len(done) == 1, calls
        resp = done[0].get("result")
        assert resp is not None, done[0]
        assert resp.status == 503, resp
        assert resp.error_type == "ServiceUnavailable", resp
        queued = next(c for c in calls if c is not done[0])
        assert "result" not in slow and "error" not in slow, slow
    finally:
        lock.release()
    for c in [slow, queued]:
        c["thread"].join(timeout=60)
        assert "error" not in c and "result" in c, c
    assert queued["result"].status == 200, queued["result"]
    # the worker takes its queue in order: the queued call ran after the slow one
    assert queued["result"].json["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
    # once the worker is free, calls are served again
    k = helpers.make_client(f.endpoint)
    assert k.describe_stream_summary(StreamName="busy")["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
