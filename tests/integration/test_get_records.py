"""GetShardIterator and GetRecords: serialization, validation and behaviour."""

import base64
import binascii
import datetime
import os
import time

import pytest

import helpers
from helpers import (
    ACCOUNT,
    MIB,
    assert_type_errors,
    assert_validation,
    constraint,
    raises_aws,
    shard_id,
)

ITERATOR_TYPES = "[AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]"
NAME_PATTERN = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
INVALID_ITERATOR = "Invalid ShardIterator."


def either_or_message(kind, has_sequence):
    return (
        "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
        "(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. "
        f"Request specified {kind} and {'also a' if has_sequence else 'no'} StartingSequenceNumber."
    )


def missing_shard_message(stream, shard):
    return f"Shard {shard} in stream {stream} under account {ACCOUNT} does not exist"


def iterator(kinesis, name, kind="TRIM_HORIZON", shard=0, **kw):
    return kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(shard), ShardIteratorType=kind, **kw)[
        "ShardIterator"
    ]


def put(kinesis, name, *datas, key="k"):
    return [kinesis.put_record(StreamName=name, PartitionKey=key, Data=d)["SequenceNumber"] for d in datas]


def at_timestamp(api, name, seconds, shard=0):
    """An AT_TIMESTAMP iterator for a fractional epoch time.

    boto3 truncates Timestamp to whole seconds; the Java and JavaScript SDKs send milliseconds,
    so the request is sent as JSON with the fraction kept.
    """
    body = api.ok(
        "GetShardIterator",
        {"StreamName": name, "ShardId": shard_id(shard), "ShardIteratorType": "AT_TIMESTAMP",
         "Timestamp": round(seconds, 3)},
    )
    return body["ShardIterator"]


def tamper(it):
    """The same iterator with one bit changed (in the next-to-last 16-byte block if it is base64)."""
    try:
        raw = bytearray(base64.b64decode(it, validate=True))
    except (binascii.Error, ValueError):
        raw = None
    if raw is not None and len(raw) >= 32 and base64.b64encode(bytes(raw)).decode() == it:
        raw[-17] ^= 0x01
        return base64.b64encode(bytes(raw)).decode()
    middle = len(it) // 2
    return it[:middle] + ("A" if it[middle] != "A" else "B") + it[middle + 1:]


# ================================================================================== GetShardIterator
# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "path,type_name",
    [
        ("ShardId", "String"),
        ("ShardIteratorType", "String"),
        ("StartingSequenceNumber", "String"),
        ("StreamName", "String"),
        ("Timestamp", "Timestamp"),
    ],
)
def test_get_shard_iterator_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "GetShardIterator", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_get_shard_iterator_without_shard_and_type_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("GetShardIterator", {"StreamName": name})
    assert_validation(
        resp,
        constraint(None, "shardId", "Member must not be null"),
        constraint(None, "shardIteratorType", "Member must not be null"),
    )


def test_get_shard_iterator_with_empty_strings_lists_every_error(api):
    resp = api.call(
        "GetShardIterator",
        {"StreamName": "", "ShardIteratorType": "", "ShardId": "", "StartingSequenceNumber": ""},
    )
    assert_validation(
        resp,
        constraint("", "shardId", NAME_PATTERN),
        constraint("", "shardId", "Member must have length greater than or equal to 1"),
        constraint("", "shardIteratorType", "Member must satisfy enum value set: " + ITERATOR_TYPES),
        constraint("", "startingSequenceNumber", "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})"),
        constraint("", "streamName", NAME_PATTERN),
        constraint("", "streamName", "Member must have length greater than or equal to 1"),
    )


def test_get_shard_iterator_with_long_stream_and_shard_names_lists_both_errors(api):
    name = "f" * 129
    resp = api.call("GetShardIterator", {"StreamName": name, "ShardId": name, "ShardIteratorType": "LATEST"})
    assert_validation(
        resp,
        constraint(name, "shardId", "Member must have length less than or equal to 128"),
        constraint(name, "streamName", "Member must have length less than or equal to 128"),
    )


def test_get_shard_iterator_with_unknown_iterator_type_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("GetShardIterator", {"StreamName": name, "ShardId": shard_id(0), "ShardIteratorType": "OLDEST"})
    assert_validation(
        resp, constraint("OLDEST", "shardIteratorType", "Member must satisfy enum value set: " + ITERATOR_TYPES)
    )


def test_get_shard_iterator_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", missing_shard_message(stream_name, shard_id(0))):
        kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard_id(0), ShardIteratorType="LATEST")


def test_get_shard_iterator_with_unknown_shard_answers_resource_not_found(kinesis, make_stream):
    name = make_stream(2)
    with raises_aws("ResourceNotFoundException", missing_shard_message(name, shard_id(5))):
        kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(5), ShardIteratorType="LATEST")


@pytest.mark.parametrize("kind", ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"])
def test_get_shard_iterator_of_sequence_type_without_sequence_number_answers_invalid_argument(
    kinesis, make_stream, kind
):
    name = make_stream(1)
    with raises_aws("InvalidArgumentException", either_or_message(kind, False)):
        iterator(kinesis, name, kind)


@pytest.mark.parametrize("kind", ["LATEST", "TRIM_HORIZON"])
def test_get_shard_iterator_of_position_type_with_sequence_number_answers_invalid_argument(
    kinesis, make_stream, kind
):
    name = make_stream(1)
    seq = put(kinesis, name, b"x")[0]
    with raises_aws("InvalidArgumentException", either_or_message(kind, True)):
        iterator(kinesis, name, kind, StartingSequenceNumber=seq)


def test_get_shard_iterator_at_timestamp_without_timestamp_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws(
        "InvalidArgumentException",
        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
        "Current request has no timestamp parameter.",
    ):
        iterator(kinesis, name, "AT_TIMESTAMP")


def test_get_shard_iterator_at_a_future_timestamp_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    with raises_aws("InvalidArgumentException") as err:
        iterator(kinesis, name, "AT_TIMESTAMP", Timestamp=future)
    assert err.error["Message"].startswith(
        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: "
    )


def test_get_shard_iterator_with_sequence_number_of_another_shard_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(2)
    out = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"x", ExplicitHashKey=str(helpers.POW_128 - 1))
    assert out["ShardId"] == shard_id(1)
    with raises_aws(
        "InvalidArgumentException",
        f"Invalid StartingSequenceNumber. It encodes {shard_id(1)}, "
        f"while it was used in a call to a shard with {shard_id(0)}",
    ):
        iterator(kinesis, name, "AT_SEQUENCE_NUMBER", 0, StartingSequenceNumber=out["SequenceNumber"])


def test_get_shard_iterator_with_a_small_made_up_sequence_number_names_the_shard_it_encodes(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws(
        "InvalidArgumentException",
        f"Invalid StartingSequenceNumber. It encodes {shard_id(5)}, "
        f"while it was used in a call to a shard with {shard_id(0)}",
    ):
        iterator(kinesis, name, "AT_SEQUENCE_NUMBER", StartingSequenceNumber="5")


def test_get_shard_iterator_with_a_sequence_number_dated_far_in_the_future_answers_invalid_argument(
    kinesis, make_stream
):
    name = make_stream(1)
    seq = str(int("13bb2cc3d80000000000000000000000", 16))
    with raises_aws(
        "InvalidArgumentException",
        f"StartingSequenceNumber {seq} used in GetShardIterator on shard {shard_id(0)} in stream {name} "
        f"under account {ACCOUNT} is invalid.",
    ):
        iterator(kinesis, name, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq)


def test_get_shard_iterator_with_sequence_number_of_another_stream_answers_invalid_argument(kinesis, make_stream):
    # AWS's numbers name a shard by its index and creation second only (as kinesalite does), so
    # the other stream is created in a later second
    first = make_stream(1)
    created = kinesis.describe_stream_summary(StreamName=first)["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    while time.time() < int(created.timestamp()) + 1:
        time.sleep(0.05)
    second = make_stream(1)
    seq = put(kinesis, first, b"x")[0]
    with raises_aws(
        "InvalidArgumentException",
        f"StartingSequenceNumber {seq} used in GetShardIterator on shard {shard_id(0)} in stream {second} "
        f"under account {ACCOUNT} is invalid because it did not come from this stream.",
    ):
        iterator(kinesis, second, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq)


# ---------------------------------------------------------------------------------- behaviour


def test_get_shard_iterator_answers_an_opaque_string(kinesis, make_stream):
    name = make_stream(1)
    it = iterator(kinesis, name, "LATEST")
    assert isinstance(it, str) and 1 <= len(it) <= 512
    assert name not in it  # opaque, not the stream name in clear


def test_get_shard_iterator_accepts_a_short_shard_id(kinesis, make_stream):
    name = make_stream(2)
    put(kinesis, name, b"one", key="a")
    out = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"two", ExplicitHashKey=str(helpers.POW_128 - 1))
    it = kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-1", ShardIteratorType="TRIM_HORIZON")
    records = helpers.read_from_iterator(kinesis, it["ShardIterator"])
    assert [r["SequenceNumber"] for r in records] == [out["SequenceNumber"]]


def test_trim_horizon_iterator_reads_every_record_from_the_start(kinesis, make_stream):
    name = make_stream(1)
    seqs = put(kinesis, name, b"a", b"b", b"c")
    records = helpers.read_from_iterator(kinesis, iterator(kinesis, name))
    assert [(r["SequenceNumber"], r["Data"]) for r in records] == list(zip(seqs, [b"a", b"b", b"c"]))


def test_latest_iterator_sees_only_records_put_after_it(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"before")
    it = iterator(kinesis, name, "LATEST")
    out = kinesis.get_records(ShardIterator=it)
    assert out["Records"] == []
    put(kinesis, name, b"after")
    records = helpers.read_from_iterator(kinesis, out["NextShardIterator"])
    assert [r["Data"] for r in records] == [b"after"]


def test_latest_iterator_obtained_before_a_put_still_sees_that_put(kinesis, make_stream):
    name = make_stream(1)
    it = iterator(kinesis, name, "LATEST")
    put(kinesis, name, b"after")
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, it)] == [b"after"]


def test_at_sequence_number_iterator_starts_at_that_record(kinesis, make_stream):
    name = make_stream(1)
    seqs = put(kinesis, name, b"1", b"2", b"3")
    records = helpers.read_from_iterator(kinesis, iterator(kinesis, name, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1]))
    assert [r["Data"] for r in records] == [b"2", b"3"]


def test_after_sequence_number_iterator_starts_after_that_record(kinesis, make_stream):
    name = make_stream(1)
    seqs = put(kinesis, name, b"1", b"2", b"3")
    records = helpers.read_from_iterator(
        kinesis, iterator(kinesis, name, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1])
    )
    assert [r["Data"] for r in records] == [b"3"]


def test_after_the_last_sequence_number_sees_only_later_records(kinesis, make_stream):
    name = make_stream(1)
    seqs = put(kinesis, name, b"1", b"2")
    it = iterator(kinesis, name, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[-1])
    out = kinesis.get_records(ShardIterator=it)
    assert out["Records"] == []
    put(kinesis, name, b"3")
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, out["NextShardIterator"])] == [b"3"]


def test_at_timestamp_iterator_starts_at_the_first_record_arriving_at_or_after_it(api, kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"early")
    time.sleep(0.05)  # distinct arrival milliseconds, so the timestamp below separates the records
    put(kinesis, name, b"middle")
    time.sleep(0.05)
    put(kinesis, name, b"late")
    records = helpers.read_from_iterator(kinesis, iterator(kinesis, name))
    middle_arrival = records[1]["ApproximateArrivalTimestamp"].timestamp()
    from_middle = helpers.read_from_iterator(kinesis, at_timestamp(api, name, middle_arrival))
    assert [r["Data"] for r in from_middle] == [b"middle", b"late"]


def test_at_timestamp_iterator_in_the_distant_past_reads_from_the_oldest_record(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"1", b"2")
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    records = helpers.read_from_iterator(kinesis, iterator(kinesis, name, "AT_TIMESTAMP", Timestamp=past))
    assert [r["Data"] for r in records] == [b"1", b"2"]


@pytest.mark.not_kinesalite("never answers when no record is at or after the timestamp")
def test_at_timestamp_iterator_after_every_record_sees_only_later_records(api, kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"old")
    [old] = helpers.read_from_iterator(kinesis, iterator(kinesis, name))
    time.sleep(0.05)
    it = at_timestamp(api, name, old["ApproximateArrivalTimestamp"].timestamp() + 0.01)
    out = kinesis.get_records(ShardIterator=it)
    assert out["Records"] == []
    put(kinesis, name, b"new")
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, out["NextShardIterator"])] == [b"new"]


def test_iterators_read_only_their_own_shard(kinesis, make_stream):
    name = make_stream(2)
    top = str(helpers.POW_128 - 1)
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"low", ExplicitHashKey="0")
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"high", ExplicitHashKey=top)
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, iterator(kinesis, name, shard=0))] == [b"low"]
    assert [r["Data"] for r in helpers.read_from_iterator(kinesis, iterator(kinesis, name, shard=1))] == [b"high"]


# ================================================================================== GetRecords
# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("path,type_name", [("Limit", "Integer"), ("ShardIterator", "String")])
def test_get_records_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "GetRecords", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_get_records_without_shard_iterator_answers_validation_exception(api):
    resp = api.call("GetRecords", {})
    assert_validation(resp, constraint(None, "shardIterator", "Member must not be null"))


def test_get_records_with_empty_iterator_and_zero_limit_lists_both_errors(api):
    resp = api.call("GetRecords", {"ShardIterator": "", "Limit": 0})
    assert_validation(
        resp,
        constraint(0, "limit", "Member must have value greater than or equal to 1"),
        constraint("", "shardIterator", "Member must have length greater than or equal to 1"),
    )


def test_get_records_with_513_character_iterator_and_limit_above_10000_lists_both_errors(api):
    it = "a" * 513
    resp = api.call("GetRecords", {"ShardIterator": it, "Limit": 100000})
    assert_validation(
        resp,
        constraint(100000, "limit", "Member must have value less than or equal to 10000"),
        constraint(it, "shardIterator", "Member must have length less than or equal to 512"),
    )


@pytest.mark.parametrize("it", ["not-an-iterator", "AAAAAAAAAAE=", "A" * 200, "!!!!"])
def test_get_records_with_made_up_iterator_answers_invalid_shard_iterator(kinesis, it):
    with raises_aws("InvalidArgumentException", INVALID_ITERATOR):
        kinesis.get_records(ShardIterator=it)


def test_get_records_with_one_bit_changed_in_an_iterator_answers_invalid_shard_iterator(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"secret")
    it = iterator(kinesis, name)
    forged = tamper(it)
    assert forged != it
    with raises_aws("InvalidArgumentException", INVALID_ITERATOR):
        kinesis.get_records(ShardIterator=forged)


def test_get_records_with_an_iterator_of_a_deleted_stream_reads_nothing_from_its_successor(kinesis, make_stream):
    name = make_stream(2)
    put(kinesis, name, b"old")
    old0 = iterator(kinesis, name, "TRIM_HORIZON", 0)
    old1 = iterator(kinesis, name, "TRIM_HORIZON", 1)
    kinesis.delete_stream(StreamName=name)
    helpers.wait_until_gone(kinesis, name)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(kinesis, name)
    # Recorded against AWS: the old shard 1 no longer exists; the old shard-0 iterator reads nothing.
    with raises_aws("ResourceNotFoundException", missing_shard_message(name, shard_id(1))):
        kinesis.get_records(ShardIterator=old1)
    out = kinesis.get_records(ShardIterator=old0)
    assert out["Records"] == []
    assert out["NextShardIterator"]


def test_get_records_with_truncated_iterator_answers_invalid_shard_iterator(kinesis, make_stream):
    name = make_stream(1)
    it = iterator(kinesis, name)
    with raises_aws("InvalidArgumentException", INVALID_ITERATOR):
        kinesis.get_records(ShardIterator=it[:-8])


# ---------------------------------------------------------------------------------- behaviour


def test_get_records_on_an_empty_shard_answers_no_records_and_a_next_iterator(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name))
    assert out["Records"] == []
    assert out["NextShardIterator"]
    assert out["MillisBehindLatest"] == 0


def test_get_records_returns_every_field_of_a_record(kinesis, make_stream):
    name = make_stream(1)
    before = time.time()
    seq = put(kinesis, name, b"payload", key="the-key")[0]
    after = time.time()
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name))
    [record] = out["Records"]
    assert record["SequenceNumber"] == seq
    assert record["Data"] == b"payload"
    assert record["PartitionKey"] == "the-key"
    arrival = record["ApproximateArrivalTimestamp"].timestamp()
    # A wide window: this checks the epoch and the unit (seconds), not the server's speed.
    assert before - 5 <= arrival <= after + 5


def test_get_records_arrival_timestamps_never_go_backwards(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, *[bytes([i]) for i in range(10)])
    records = helpers.read_from_iterator(kinesis, iterator(kinesis, name))
    arrivals = [r["ApproximateArrivalTimestamp"] for r in records]
    assert arrivals == sorted(arrivals)


def test_get_records_with_limit_pages_through_the_shard_with_next_shard_iterator(kinesis, make_stream):
    name = make_stream(1)
    sent = [f"r{i}".encode() for i in range(7)]
    put(kinesis, name, *sent)
    it, pages = iterator(kinesis, name), []
    for _ in range(5):
        out = kinesis.get_records(ShardIterator=it, Limit=3)
        pages.append([r["Data"] for r in out["Records"]])
        it = out["NextShardIterator"]
    assert pages == [sent[0:3], sent[3:6], sent[6:7], [], []]


def test_get_records_with_limit_10000_is_accepted(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"x")
    assert len(kinesis.get_records(ShardIterator=iterator(kinesis, name), Limit=10000)["Records"]) == 1


def test_get_records_returns_up_to_10000_records_by_default(kinesis, make_stream):
    name = make_stream(1)
    for _ in range(3):  # more than the shard's 1,000 records/s: throttled entries are resent
        helpers.put_records_all(kinesis, name, [{"PartitionKey": "k", "Data": b"d"}] * 500)
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name))
    assert len(out["Records"]) == 1500


def test_get_records_next_iterator_continues_where_the_last_call_stopped(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"1")
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name))
    assert [r["Data"] for r in out["Records"]] == [b"1"]
    put(kinesis, name, b"2", b"3")
    out = kinesis.get_records(ShardIterator=out["NextShardIterator"])
    assert [r["Data"] for r in out["Records"]] == [b"2", b"3"]


def test_get_records_with_the_same_iterator_twice_returns_the_same_records(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"a", b"b")
    it = iterator(kinesis, name)
    first = kinesis.get_records(ShardIterator=it)["Records"]
    second = kinesis.get_records(ShardIterator=it)["Records"]
    assert [r["SequenceNumber"] for r in first] == [r["SequenceNumber"] for r in second]
    assert len(first) == 2


def test_get_records_millis_behind_latest_is_zero_once_caught_up(kinesis, make_stream):
    name = make_stream(1)
    put(kinesis, name, b"a", b"b", b"c")
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name), Limit=1)
    assert isinstance(out["MillisBehindLatest"], int) and out["MillisBehindLatest"] >= 0
    records = helpers.read_from_iterator(kinesis, out["NextShardIterator"])
    assert len(records) == 2
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name, "LATEST"))
    assert out["MillisBehindLatest"] == 0


@pytest.mark.not_kinesalite("does not cap a GetRecords answer at 10 MiB")
def test_get_records_answers_at_most_10_mib_of_data_per_call(kinesis, make_stream):
    name = make_stream(1)
    blob = os.urandom(MIB - 1)
    for _ in range(11):
        kinesis.put_record(StreamName=name, PartitionKey="k", Data=blob)
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name))
    assert 1 <= len(out["Records"]) < 11
    assert sum(len(r["Data"]) + len(r["PartitionKey"]) for r in out["Records"]) <= 10 * MIB
    rest = helpers.read_from_iterator(kinesis, out["NextShardIterator"])
    assert len(out["Records"]) + len(rest) == 11


@pytest.mark.parametrize("given", ["shard-1", "x-1", "1", "shardId-00000000000000000001", "-1"])
def test_get_shard_iterator_reads_the_number_after_the_first_dash_as_aws_does(kinesis, make_stream, given):
    name = make_stream(2)
    out = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"top", ExplicitHashKey=str(helpers.POW_128 - 1))
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=given, ShardIteratorType="TRIM_HORIZON")
    records = helpers.read_from_iterator(kinesis, it["ShardIterator"])
    assert [r["SequenceNumber"] for r in records] == [out["SequenceNumber"]]


@pytest.mark.parametrize("given", ["shardId-abc", "shardId-", "shard-1-2", "shardId-2147483648", "1x", "a"])
def test_get_shard_iterator_with_an_unreadable_shard_id_cannot_find_it(kinesis, make_stream, given):
    name = make_stream(1)
    with raises_aws("ResourceNotFoundException", f"Could not find shard {given} in stream {name} under account {ACCOUNT}."):
        kinesis.get_shard_iterator(StreamName=name, ShardId=given, ShardIteratorType="LATEST")


def test_get_shard_iterator_with_the_largest_shard_number_is_a_missing_shard(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws("ResourceNotFoundException", missing_shard_message(name, "shardId-002147483647")):
        kinesis.get_shard_iterator(StreamName=name, ShardId="x-2147483647", ShardIteratorType="LATEST")
