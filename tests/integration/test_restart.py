"""kinesd restarted on the same data directory keeps everything a client could have seen."""

import subprocess

import pytest

import helpers
from conftest import kinesd_binary
from helpers import raises_aws, shard_id

pytestmark = pytest.mark.own_server

TOP = str(helpers.POW_128 - 1)


def records_of(kinesis, name, shard):
    return [(r["SequenceNumber"], r["Data"], r["PartitionKey"]) for r in helpers.read_all(kinesis, name, shard_id(shard))]


def test_restart_keeps_streams_shards_tags_and_records(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="kept", ShardCount=2)
    kinesis.create_stream(StreamName="dropped", ShardCount=1)
    helpers.wait_for_status(kinesis, "kept")
    helpers.wait_for_status(kinesis, "dropped")
    kinesis.add_tags_to_stream(StreamName="kept", Tags={"team": "data", "empty": ""})
    kinesis.put_record(StreamName="kept", PartitionKey="a", Data=bytes(range(256)), ExplicitHashKey="0")
    kinesis.put_records(StreamName="kept", Records=[
        {"PartitionKey": "b", "Data": b"", "ExplicitHashKey": "0"},
        {"PartitionKey": "c", "Data": b"top", "ExplicitHashKey": TOP},
    ])
    kinesis.delete_stream(StreamName="dropped")
    helpers.wait_until_gone(kinesis, "dropped")
    before = {
        "desc": kinesis.describe_stream(StreamName="kept")["StreamDescription"],
        "tags": kinesis.list_tags_for_stream(StreamName="kept")["Tags"],
        "shard0": records_of(kinesis, "kept", 0),
        "shard1": records_of(kinesis, "kept", 1),
    }

    server.restart()
    kinesis = helpers.make_client(server.endpoint)

    assert helpers.list_all_stream_names(kinesis) == ["kept"]
    assert kinesis.describe_stream(StreamName="kept")["StreamDescription"] == before["desc"]
    assert kinesis.list_tags_for_stream(StreamName="kept")["Tags"] == before["tags"]
    assert records_of(kinesis, "kept", 0) == before["shard0"]
    assert records_of(kinesis, "kept", 1) == before["shard1"]
    assert [d for _, d, _ in before["shard0"]] == [bytes(range(256)), b""]
    with raises_aws("ResourceNotFoundException", helpers.not_found_message("dropped")):
        kinesis.describe_stream_summary(StreamName="dropped")


def test_restart_never_reuses_a_sequence_number(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="seq", ShardCount=2)
    helpers.wait_for_status(kinesis, "seq")
    seqs = {0: [], 1: []}

    def put_some():
        for key in ("0", TOP):
            for _ in range(3):
                out = kinesis.put_record(StreamName="seq", PartitionKey="k", Data=b"x", ExplicitHashKey=key)
                seqs[int(out["ShardId"][-1])].append(int(out["SequenceNumber"]))
        out = kinesis.put_records(StreamName="seq", Records=[{"PartitionKey": "k", "Data": b"y", "ExplicitHashKey": "0"}] * 4)
        seqs[0].extend(int(r["SequenceNumber"]) for r in out["Records"])

    put_some()
    for _ in range(2):
        server.restart()
        kinesis = helpers.make_client(server.endpoint)
        put_some()
    for shard, numbers in seqs.items():
        assert all(a < b for a, b in zip(numbers, numbers[1:])), shard
        assert [int(s) for s, _, _ in records_of(kinesis, "seq", shard)] == numbers
        # the sequence index (AWS's layout) counts the shard's records on across the restarts
        indexes = [int(format(n, "x")[11:27], 16) for n in numbers]
        assert [b - a for a, b in zip(indexes, indexes[1:])] == [1] * (len(indexes) - 1), (shard, indexes)


def test_restart_keeps_shard_iterators_valid(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="iter", ShardCount=1)
    helpers.wait_for_status(kinesis, "iter")
    first = kinesis.put_record(StreamName="iter", PartitionKey="k", Data=b"first")["SequenceNumber"]
    kinesis.put_record(StreamName="iter", PartitionKey="k", Data=b"second")

    def it(kind, **kw):
        return kinesis.get_shard_iterator(StreamName="iter", ShardId=shard_id(0), ShardIteratorType=kind, **kw)[
            "ShardIterator"
        ]

    trim, latest, after = it("TRIM_HORIZON"), it("LATEST"), it("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=first)
    next_it = kinesis.get_records(ShardIterator=trim, Limit=1)["NextShardIterator"]

    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    kinesis.put_record(StreamName="iter", PartitionKey="k", Data=b"third")

    def data(iterator):
        return [r["Data"] for r in helpers.read_from_iterator(kinesis, iterator)]

    assert data(trim) == [b"first", b"second", b"third"]
    assert data(latest) == [b"third"]
    assert data(after) == [b"second", b"third"]
    assert data(next_it) == [b"second", b"third"]


def test_restart_finishes_creating_a_stream_that_was_still_being_created(kinesd_factory):
    server = kinesd_factory({"--create-stream-ms": "300"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="young", ShardCount=2)
    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    helpers.wait_for_status(kinesis, "young", "ACTIVE", timeout=10)
    assert kinesis.describe_stream_summary(StreamName="young")["StreamDescriptionSummary"]["OpenShardCount"] == 2
    assert kinesis.put_record(StreamName="young", PartitionKey="k", Data=b"x")["ShardId"].startswith("shardId-")


def test_sigterm_stops_kinesd_with_exit_status_zero(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(kinesis, "s")
    kinesis.put_record(StreamName="s", PartitionKey="k", Data=b"x")
    assert server.stop() == 0


def test_two_servers_on_different_data_directories_share_nothing(kinesd_factory):
    one = helpers.make_client(kinesd_factory().endpoint)
    two = helpers.make_client(kinesd_factory().endpoint)
    one.create_stream(StreamName="only-in-one", ShardCount=1)
    helpers.wait_for_status(one, "only-in-one")
    assert "only-in-one" not in two.list_streams()["StreamNames"]


def test_store_lmdb_dir_names_the_same_store_as_data_dir(kinesd_factory, tmp_path):
    d = tmp_path / "via-store"
    # its own --data-dir comes first on the command line; --store lmdb:DIR names the store
    first = kinesd_factory(flags={"--store": f"lmdb:{d}"})
    kinesis = helpers.make_client(first.endpoint)
    kinesis.create_stream(StreamName="named", ShardCount=1)
    helpers.wait_for_status(kinesis, "named")
    kinesis.put_record(StreamName="named", PartitionKey="a", Data=b"there")
    assert first.stop() == 0
    assert d.is_dir() and any(d.iterdir())
    second = kinesd_factory(data_dir=d)
    kinesis = helpers.make_client(second.endpoint)
    assert [data for _, data, _ in records_of(kinesis, "named", 0)] == [b"there"]


@pytest.mark.parametrize("url", ["mysql://db/x", "lmdb:", "/var/lib/kinesd"])
def test_a_store_that_is_neither_lmdb_nor_postgresql_is_refused_with_exit_status_2(tmp_path, url):
    binary = kinesd_binary()
    out = subprocess.run([str(binary), "--port", "0", "--data-dir", str(tmp_path / "d"), "--store", url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out
    assert "--store expects lmdb:DIR or postgresql://" in out.stderr
    assert not (tmp_path / "d").exists()
