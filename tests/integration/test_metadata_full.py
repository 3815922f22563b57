"""A control-plane change that cannot be written leaves the stream as the disk has it.

A change is built as a copy, written, and only then swapped in: when the write fails (here the
data directory is a small tmpfs that another file has filled), the call answers a clean error,
and writes go on being routed by the shard layout that is on disk, before and after a restart.
Root only (mounting a tmpfs); skipped otherwise.

The database reuses its free pages, so a small write may still succeed on a full disk; the
changes here are large (hundreds of shard rows, or a stream's full tag set) so they need room.
"""

import os
import subprocess
import tempfile
import time

import pytest

import helpers

pytestmark = pytest.mark.own_server

SHARDS = 400


@pytest.fixture
def small_disk():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    root = tempfile.mkdtemp(prefix="kinesd-meta-full-")
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", root], capture_output=True)
    if rc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + rc.stderr.decode(errors="replace"))
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", root])
        os.rmdir(root)


def fill(path):
    """Write path until the file system is full."""
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError:
                return


def layout(kinesis, name):
    return [
        (s["ShardId"], s["HashKeyRange"]["StartingHashKey"], s["SequenceNumberRange"].get("EndingSequenceNumber"))
        for s in helpers.all_shards(kinesis, name)
    ]


def routed(kinesis, name, keys=100):
    """The shard each of `keys` partition keys is written to, as PutRecords answers."""
    out = kinesis.put_records(StreamName=name, Records=[{"PartitionKey": f"k{i}", "Data": b"x"} for i in range(keys)])
    assert out.get("FailedRecordCount", 0) == 0, out
    return [r["ShardId"] for r in out["Records"]]


@pytest.mark.parametrize("change", ["UpdateShardCount", "AddTagsToStream"])
def test_a_change_that_cannot_be_written_answers_internal_failure_and_routing_stays_as_on_disk(
    kinesd_factory, small_disk, change
):
    data_dir = os.path.join(small_disk, "data")
    flags = {"--update-stream-ms": "200", "--no-limits": None}
    server = kinesd_factory(flags=flags, data_dir=data_dir)
    kinesis = helpers.make_client(server.endpoint)
    name = "meta"
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    helpers.wait_for_status(kinesis, name)
    before = layout(kinesis, name)
    assert len(before) == SHARDS
    on_disk = routed(kinesis, name)

    def call():
        if change == "UpdateShardCount":
            kinesis.update_shard_count(StreamName=name, TargetShardCount=2 * SHARDS, ScalingType="UNIFORM_SCALING")
        else:
            kinesis.add_tags_to_stream(StreamName=name, Tags={f"{i:02d}".ljust(128, "k"): "v" * 256 for i in range(50)})

    filler = os.path.join(small_disk, "filler")
    fill(filler)
    with helpers.raises_aws("InternalFailure", status=500):
        call()
    os.unlink(filler)
    time.sleep(0.5)  # past --update-stream-ms: a change staged in memory would land now

    def as_on_disk():
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summary["StreamStatus"] == "ACTIVE"
        assert summary["OpenShardCount"] == SHARDS
        assert layout(kinesis, name) == before
        assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []
        assert routed(kinesis, name) == on_disk

    as_on_disk()
    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    as_on_disk()
    # with room on the disk again, the same change goes through
    call()
    helpers.wait_for_status(kinesis, name)
    if change == "UpdateShardCount":
        assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"] == 2 * SHARDS
    else:
        assert len(kinesis.list_tags_for_stream(StreamName=name)["Tags"]) == 50
