"""A full disk: kinesd answers errors, never crashes, and loses no acknowledged record.

The data directory is a small tmpfs mounted for the test (root only; skipped otherwise).
"""

import os
import subprocess
import tempfile
import time

import pytest

import helpers

pytestmark = pytest.mark.own_server


@pytest.fixture
def small_disk():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    root = tempfile.mkdtemp(prefix="kinesd-full-")
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", root], capture_output=True)
    if rc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + rc.stderr.decode(errors="replace"))
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", root])
        os.rmdir(root)


def test_writes_on_a_full_disk_answer_internal_failure_and_every_acknowledged_record_survives(
    kinesd_factory, small_disk
):
    data_dir = os.path.join(small_disk, "data")
    server = kinesd_factory(flags={"--no-limits": None}, data_dir=data_dir)
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="full", ShardCount=1)
    helpers.wait_for_status(kinesis, "full")

    acked, failures = [], []
    payload = os.urandom(60 * 1024)
    for i in range(200):  # 12 MB into a 3 MB disk
        try:
            out = kinesis.put_record(StreamName="full", PartitionKey=f"k{i}", Data=payload + i.to_bytes(4, "big"))
            acked.append((out["SequenceNumber"], i))
        except kinesis.exceptions.ClientError as err:
            failures.append(err.response)
            if len(failures) >= 5:
                break
    assert acked, "nothing was written before the disk filled"
    assert failures, "the disk never filled"
    for resp in failures:
        assert resp["Error"]["Code"] == "InternalFailure"
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 500

    # still serving: the health check and reads answer
    assert helpers.http_request(server.endpoint, "GET", "/healthcheck").status == 200

    # and idle: records that cannot be moved into the full store are retried now and then, not
    # in a busy loop (which burned a whole core once)
    def cpu_seconds():
        with open(f"/proc/{server.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu_seconds()
    time.sleep(2)
    assert cpu_seconds() - before < 0.5, "kinesd keeps a core busy while the disk is full"

    def check_every_acknowledged_record():
        got = {r["SequenceNumber"]: r for r in helpers.read_all(kinesis, "full", "shardId-000000000000")}
        for seq, i in acked:
            assert seq in got, f"acknowledged record {i} is missing"
            assert got[seq]["Data"] == payload + i.to_bytes(4, "big")

    check_every_acknowledged_record()
    # a restart on the same, still full, disk keeps every acknowledged record and serves again
    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    check_every_acknowledged_record()
