"""The deployment of docker/compose.yaml without Docker: one PostgreSQL, three kinesd front-ends
over it and Debian's HAProxy in front, configured by docker/haproxy.cfg itself (its addresses
come from the environment, as compose sets them).

Needs a PostgreSQL server (KINESD_PG_URL: `make test` runs the suite under
tools/with-postgres.sh) and haproxy (`make test` installs it); skipped without either.
"""

import csv
import io
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

import helpers
from frontends import Frontend, free_port, fresh_database

pytestmark = [pytest.mark.own_server]

PG_URL = os.environ.get("KINESD_PG_URL")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
if not PG_URL:
    pytest.skip("no PostgreSQL: run under tools/with-postgres.sh (make test does)", allow_module_level=True)
if not HAPROXY:
    pytest.skip("haproxy is not installed (Debian: haproxy; make test installs it)", allow_module_level=True)

CFG = Path(__file__).resolve().parents[2] / "docker" / "haproxy.cfg"
FLAGS = ("--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0", "--no-limits")


class Haproxy:
    """haproxy -f docker/haproxy.cfg in the foreground, its addresses from the environment."""

    def __init__(self, backends):
        self.port, self.stats_port = free_port(), free_port()
        env = dict(os.environ, KINESIS_BIND=f"127.0.0.1:{self.port}",
                   HAPROXY_STATS_BIND=f"127.0.0.1:{self.stats_port}", HAPROXY_MAXCONN="1000")
        for i, b in enumerate(backends, 1):
            env[f"KINESD_{i}"] = f"127.0.0.1:{b.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(CFG)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def servers(self):
        """{server name: its status (UP, DOWN, ...)} of the kinesd backend, from /stats;csv."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2) as r:
            text = r.read().decode().lstrip("# ")
        return {row["svname"]: row["status"].split(" ")[0] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "kinesd" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait(self, want, timeout=20):
        """Wait until the servers' statuses are want (a dict)."""
        deadline = time.time() + timeout
        seen = None
        while time.time() < deadline:
            assert self.proc.poll() is None, f"haproxy exited with {self.proc.returncode}:\n{self.output()}"
            try:
                seen = self.servers()
                if seen == want:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"servers are {seen}, not {want}:\n{self.output()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def deployment(request):
    store = fresh_database(PG_URL, "t_haproxy_" + request.node.name[-30:].lower())
    fronts = [Frontend(store, FLAGS).start() for _ in range(3)]
    proxy = Haproxy(fronts)
    try:
        proxy.wait({"kinesd-1": "UP", "kinesd-2": "UP", "kinesd-3": "UP"})
        yield proxy, fronts
    finally:
        proxy.stop()
        for f in fronts:
            if f.proc.poll() is None:
                assert f.stop() == 0, f"a front-end exited badly:\n{f.log()}"


def wait_active(k, name, timeout=20):
    deadline = time.time() + timeout
    while k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        assert time.time() < deadline, f"{name} not ACTIVE"
        time.sleep(0.05)


def read_all(k, name):
    """Every record of every shard: {sequence number: data}."""
    out = {}
    for sh in k.list_shards(StreamName=name)["Shards"]:
        it = k.get_shard_iterator(StreamName=name, ShardId=sh["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                assert rec["SequenceNumber"] not in out, "a sequence number was handed out twice"
                out[rec["SequenceNumber"]] = rec["Data"]
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return out


def test_boto3_through_haproxy_creates_writes_reads_and_reshards(deployment):
    proxy, _ = deployment
    k = helpers.make_client(proxy.endpoint)
    k.create_stream(StreamName="lb", ShardCount=2)
    wait_active(k, "lb")
    acked = {}
    for i in range(20):  # round robin: each call on another front-end than the one before
        out = k.put_record(StreamName="lb", PartitionKey=f"k{i}", Data=b"one %d" % i)
        acked[out["SequenceNumber"]] = b"one %d" % i
    out = k.put_records(StreamName="lb", Records=[{"PartitionKey": f"p{i}", "Data": b"batch %d" % i}
                                                  for i in range(50)])
    assert out["FailedRecordCount"] == 0
    for i, r in enumerate(out["Records"]):
        acked[r["SequenceNumber"]] = b"batch %d" % i
    k.update_shard_count(StreamName="lb", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    wait_active(k, "lb")
    shards = k.list_shards(StreamName="lb")["Shards"]
    open_ = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    assert len(open_) == 4 and len(shards) == 6
    out = k.put_record(StreamName="lb", PartitionKey="after", Data=b"after")
    assert out["ShardId"] in {s["ShardId"] for s in open_}
    acked[out["SequenceNumber"]] = b"after"
    assert read_all(k, "lb") == acked


def test_a_killed_front_end_is_marked_down_and_traffic_moves_on_with_nothing_acknowledged_lost(deployment):
    proxy, fronts = deployment
    k = helpers.make_client(proxy.endpoint, read_timeout=5)
    k.create_stream(StreamName="failover", ShardCount=2)
    wait_active(k, "failover")
    acked, failed = {}, []
    stop = threading.Event()

    def producer(tag):
        n = 0
        while not stop.is_set():
            data = f"{tag}:{n}".encode()
            try:
                out = k.put_record(StreamName="failover", PartitionKey=f"{tag}{n}", Data=data)
                acked[out["SequenceNumber"]] = data
            except (ClientError, BotoConnectionError, HTTPClientError) as e:
                failed.append(repr(e))  # in flight on the killed one: not acknowledged
            n += 1

    threads = [threading.Thread(target=producer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        fronts[0].kill()
        proxy.wait({"kinesd-1": "DOWN", "kinesd-2": "UP", "kinesd-3": "UP"})
        failed_before = len(failed)
        before = len(acked)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    # once it is down, every call goes to the other two and succeeds
    assert len(failed) == failed_before, failed[failed_before:]
    assert len(acked) > before
    got = read_all(k, "failover")
    for seq, data in acked.items():
        assert got.get(seq) == data, f"acknowledged record {seq} is missing or changed"
