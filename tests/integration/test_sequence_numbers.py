"""Sequence numbers in AWS's version-2 layout, decoded here as tools decode AWS's: the decimal
number read as 47 hex digits,

    2 | shard creation second (9) | shard index's last digit (1) | sequence index (16) |
    00 | record second (9) | shard index (8) | 2 (the version)

and numbers handed out before kinesd took that layout (56 decimal digits starting with 4) are
still taken back."""

import math
import time

import pytest

import helpers
from helpers import ACCOUNT, raises_aws, shard_id

TOP = str(helpers.POW_128 - 1)
END_INDEX = 2**63 - 1


def decode(seq):
    h = format(int(seq), "x")
    assert len(h) == 47 and h[0] == "2" and h[-1] == "2", (seq, h)
    return {
        "created": int(h[1:10], 16),
        "digit": int(h[10], 16),
        "index": int(h[11:27], 16),
        "byte": h[27:29],
        "time": int(h[29:38], 16),
        "shard": int(h[38:46], 16),
    }


def check_shard(fields, index):
    assert fields["shard"] == index and fields["digit"] == index % 16, fields
    assert fields["byte"] == "00", fields


def stream_created_second(kinesis, name):
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return math.floor(summary["StreamCreationTimestamp"].timestamp())


def test_put_records_and_get_records_hand_out_version_2_numbers(kinesis, make_stream):
    name = make_stream(3)
    created = stream_created_second(kinesis, name)
    keys = {0: "0", 2: TOP}
    before = time.time()
    one = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"one", ExplicitHashKey=keys[2])
    batch = kinesis.put_records(StreamName=name, Records=[
        {"PartitionKey": "b", "Data": b"two", "ExplicitHashKey": keys[0]},
        {"PartitionKey": "c", "Data": b"three", "ExplicitHashKey": keys[2]},
    ])["Records"]
    after = time.time()
    written = [(one["ShardId"], one["SequenceNumber"])] + [(r["ShardId"], r["SequenceNumber"]) for r in batch]
    assert [sid for sid, _ in written] == [shard_id(2), shard_id(0), shard_id(2)]
    for sid, seq in written:
        f = decode(seq)
        check_shard(f, int(sid.split("-")[1]))
        assert f["created"] == created, (f, created)
        assert math.floor(before) - 1 <= f["time"] <= after + 1, (f, before, after)
    # GetRecords gives each record the number PutRecord(s) gave it, its time the arrival second
    got = {}
    for index in keys:
        for r in helpers.read_all(kinesis, name, shard_id(index)):
            f = decode(r["SequenceNumber"])
            check_shard(f, index)
            assert f["created"] == created
            assert f["time"] == math.floor(r["ApproximateArrivalTimestamp"].timestamp()), (f, r)
            got[r["SequenceNumber"]] = (shard_id(index), r["Data"])
    assert sorted(got) == sorted(seq for _, seq in written)
    assert got[one["SequenceNumber"]] == (shard_id(2), b"one")


def test_numbers_and_their_sequence_index_strictly_increase_within_a_shard(kinesis, make_stream):
    name = make_stream(1)
    seqs = []
    for i in range(4):
        answer = kinesis.put_records(StreamName=name, Records=[
            {"PartitionKey": str(j), "Data": b"%d" % j} for j in range(25)
        ])
        assert answer["FailedRecordCount"] == 0
        seqs += [r["SequenceNumber"] for r in answer["Records"]]
        seqs.append(kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x")["SequenceNumber"])
    assert all(int(a) < int(b) for a, b in zip(seqs, seqs[1:]))
    indexes = [decode(s)["index"] for s in seqs]
    assert all(a < b for a, b in zip(indexes, indexes[1:]))
    assert [r["SequenceNumber"] for r in helpers.read_all(kinesis, name, shard_id(0))] == seqs


def test_a_shards_sequence_index_steps_by_one_per_record(kinesis, make_stream):
    name = make_stream(3)
    third = helpers.POW_128 // 3
    keys = ["0", str(third * 2 - 1), TOP]  # one hash key in each of the three shards
    written = {0: [], 1: [], 2: []}
    for i in range(6):
        put = kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x", ExplicitHashKey=keys[i % 3])
        written[int(put["ShardId"].split("-")[1])].append(put["SequenceNumber"])
    # one PutRecords that goes back and forth between the shards (kinesalite's case)
    batch = kinesis.put_records(StreamName=name, Records=[
        {"PartitionKey": "a", "Data": b"", "ExplicitHashKey": keys[s]} for s in (0, 1, 2, 1, 2, 1, 2)
    ])
    assert batch["FailedRecordCount"] == 0
    for r in batch["Records"]:
        written[int(r["ShardId"].split("-")[1])].append(r["SequenceNumber"])
    for index, seqs in written.items():
        ix = [decode(seq)["index"] for seq in seqs]
        assert [b - a for a, b in zip(ix, ix[1:])] == [1] * (len(ix) - 1), (index, ix)
        assert [r["SequenceNumber"] for r in helpers.read_all(kinesis, name, shard_id(index))] == seqs


def test_at_and_after_a_number_find_their_record_among_many_of_the_same_second(kinesis, make_stream):
    name = make_stream(1)
    seqs = []
    for _ in range(2):
        answer = kinesis.put_records(StreamName=name, Records=[
            {"PartitionKey": "p", "Data": b"%d" % (len(seqs) + j)} for j in range(400)
        ])
        assert answer["FailedRecordCount"] == 0
        seqs += [r["SequenceNumber"] for r in answer["Records"]]
    for i in (0, 1, 137, 399, 400, 401, 798, 799):
        for kind, first in (("AT_SEQUENCE_NUMBER", i), ("AFTER_SEQUENCE_NUMBER", i + 1)):
            it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType=kind,
                                            StartingSequenceNumber=seqs[i])["ShardIterator"]
            got = kinesis.get_records(ShardIterator=it, Limit=2)["Records"]
            assert [r["SequenceNumber"] for r in got] == seqs[first:first + 2], (kind, i)
            assert [r["Data"] for r in got] == [b"%d" % j for j in range(first, min(first + 2, len(seqs)))]


def test_shard_ranges_start_at_index_0_and_a_closed_shard_ends_at_the_last_index(kinesis, make_stream):
    name = make_stream(2)
    created = stream_created_second(kinesis, name)
    written = kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x", ExplicitHashKey="0")
    for index, shard in enumerate(helpers.all_shards(kinesis, name)):
        start = decode(shard["SequenceNumberRange"]["StartingSequenceNumber"])
        check_shard(start, index)
        assert (start["created"], start["index"], start["time"]) == (created, 0, created), start
    before = time.time()
    kinesis.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(2**126))
    helpers.wait_for_status(kinesis, name)
    after = time.time()
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=name)["Shards"]}
    parent = shards[shard_id(0)]["SequenceNumberRange"]
    end = decode(parent["EndingSequenceNumber"])
    check_shard(end, 0)
    assert end["created"] == created and end["index"] == END_INDEX, end
    assert math.floor(before) - 1 <= end["time"] <= after + 1, (end, before, after)
    assert int(parent["StartingSequenceNumber"]) < int(written["SequenceNumber"]) < int(parent["EndingSequenceNumber"])
    for index in (2, 3):
        child = decode(shards[shard_id(index)]["SequenceNumberRange"]["StartingSequenceNumber"])
        check_shard(child, index)
        assert child["index"] == 0 and child["time"] == child["created"] >= end["time"], (child, end)
        # a child's numbers hold its own creation second
        key = "0" if index == 2 else str(2**126)
        put = kinesis.put_record(StreamName=name, PartitionKey="q", Data=b"y", ExplicitHashKey=key)
        assert put["ShardId"] == shard_id(index)
        assert decode(put["SequenceNumber"])["created"] == child["created"]


def test_at_and_after_sequence_number_read_from_a_new_number(kinesis, make_stream):
    name = make_stream(1)
    seqs = [kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"%d" % i)["SequenceNumber"] for i in range(3)]
    for kind, want in (("AT_SEQUENCE_NUMBER", [b"1", b"2"]), ("AFTER_SEQUENCE_NUMBER", [b"2"])):
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType=kind,
                                        StartingSequenceNumber=seqs[1])["ShardIterator"]
        assert [r["Data"] for r in helpers.read_from_iterator(kinesis, it)] == want, kind
    # the starting number reads the whole shard; AFTER the ending number of a closed one, nothing
    start = helpers.all_shards(kinesis, name)[0]["SequenceNumberRange"]["StartingSequenceNumber"]
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType="AT_SEQUENCE_NUMBER",
                                    StartingSequenceNumber=start)["ShardIterator"]
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, it)] == [b"0", b"1", b"2"]


def test_sequence_number_for_ordering_takes_any_well_formed_number_of_the_past(kinesis, make_stream):
    name = make_stream(1)
    now = int(time.time())

    def v2(created, index, second, shard):
        return str(int(f"2{created:09x}{shard % 16:x}{index:016x}00{second:09x}{shard:08x}2", 16))

    ours = kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x")["SequenceNumber"]
    for seq in (ours, v2(now - 100, 5, now - 10, 7), v2(0, 0, 0, 0), "5"):
        put = kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x", SequenceNumberForOrdering=seq)
        assert int(put["SequenceNumber"]) > int(ours)
    future = v2(now - 100, 5, now + 3600, 0)
    with raises_aws(
        "InvalidArgumentException",
        f"ExclusiveMinimumSequenceNumber {future} used in PutRecord on stream {name} under account {ACCOUNT} is invalid.",
    ):
        kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x", SequenceNumberForOrdering=future)


def test_a_number_names_the_shard_it_encodes_as_aws_prints_it(kinesis, make_stream):
    name = make_stream(1)
    # shard field 0x80000000: AWS reads it as a signed 32-bit index
    seq = str(int("20000000000000000000000000000000000000800000002", 16))
    with raises_aws(
        "InvalidArgumentException",
        f"Invalid StartingSequenceNumber. It encodes shardId--02147483648, while it was used in a call to a "
        f"shard with {shard_id(0)}",
    ):
        kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber=seq)


@pytest.mark.own_server
def test_a_number_of_a_deleted_and_recreated_stream_is_refused(kinesd_factory):
    server = kinesd_factory({"--create-stream-ms": "0", "--delete-stream-ms": "0"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="again", ShardCount=1)
    helpers.wait_for_status(kinesis, "again")
    old = kinesis.put_record(StreamName="again", PartitionKey="p", Data=b"old")["SequenceNumber"]
    kinesis.delete_stream(StreamName="again")
    helpers.wait_until_gone(kinesis, "again")
    kinesis.create_stream(StreamName="again", ShardCount=1)
    helpers.wait_for_status(kinesis, "again")
    # refused whether or not the new shard was created within the same second as the old one
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        with raises_aws(
            "InvalidArgumentException",
            f"StartingSequenceNumber {old} used in GetShardIterator on shard {shard_id(0)} in stream again under "
            f"account {ACCOUNT} is invalid because it did not come from this stream.",
        ):
            kinesis.get_shard_iterator(StreamName="again", ShardId=shard_id(0), ShardIteratorType=kind,
                                       StartingSequenceNumber=old)
    new = kinesis.put_record(StreamName="again", PartitionKey="p", Data=b"new")["SequenceNumber"]
    it = kinesis.get_shard_iterator(StreamName="again", ShardId=shard_id(0), ShardIteratorType="AT_SEQUENCE_NUMBER",
                                    StartingSequenceNumber=new)["ShardIterator"]
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, it)] == [b"new"]


# A number kinesd handed out before it took AWS's layout: stream uid 1 (the first stream of a data
# directory), shard 0, the position of 2025-12-02T08:00:00Z.
OLD_LAYOUT = "40185038264074240000000000000000000000000000000000146407"


@pytest.mark.own_server
def test_numbers_of_the_old_layout_are_still_taken_back(kinesd_factory):
    server = kinesd_factory({"--create-stream-ms": "0"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="first", ShardCount=1)
    kinesis.create_stream(StreamName="second", ShardCount=1)
    helpers.wait_for_status(kinesis, "first")
    helpers.wait_for_status(kinesis, "second")
    kinesis.put_record(StreamName="first", PartitionKey="p", Data=b"a")
    # its stream reads from its position on; another stream refuses it
    it = kinesis.get_shard_iterator(StreamName="first", ShardId=shard_id(0), ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                    StartingSequenceNumber=OLD_LAYOUT)["ShardIterator"]
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, it)] == [b"a"]
    with raises_aws(
        "InvalidArgumentException",
        f"StartingSequenceNumber {OLD_LAYOUT} used in GetShardIterator on shard {shard_id(0)} in stream second "
        f"under account {ACCOUNT} is invalid because it did not come from this stream.",
    ):
        kinesis.get_shard_iterator(StreamName="second", ShardId=shard_id(0), ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber=OLD_LAYOUT)
    put = kinesis.put_record(StreamName="second", PartitionKey="p", Data=b"b", SequenceNumberForOrdering=OLD_LAYOUT)
    check_shard(decode(put["SequenceNumber"]), 0)
