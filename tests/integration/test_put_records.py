"""PutRecord and PutRecords: serialization, validation and behaviour, including hash-key routing."""

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

import helpers
from helpers import (
    MIB,
    POW_128,
    assert_type_errors,
    assert_validation,
    b64,
    constraint,
    hash_key,
    not_found_message,
    raises_aws,
    shard_for_hash,
    shard_id,
)

SEQ_PATTERN = "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})"
HASH_PATTERN = "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})"


def heap_buffer(n):
    return f"java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]"


def bad_hash_key_message(value):
    return (
        "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. "
        f"Specified value was {value}"
    )


# ================================================================================== PutRecord
# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "path,type_name",
    [
        ("Data", "Blob"),
        ("ExplicitHashKey", "String"),
        ("PartitionKey", "String"),
        ("SequenceNumberForOrdering", "String"),
        ("StreamName", "String"),
    ],
)
def test_put_record_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "PutRecord", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_put_record_without_data_and_partition_key_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("PutRecord", {"StreamName": name})
    assert_validation(
        resp,
        constraint(None, "partitionKey", "Member must not be null"),
        constraint(None, "data", "Member must not be null"),
    )


def test_put_record_with_empty_strings_lists_every_error(api):
    resp = api.call(
        "PutRecord",
        {"StreamName": "", "PartitionKey": "", "Data": "", "ExplicitHashKey": "", "SequenceNumberForOrdering": ""},
    )
    assert_validation(
        resp,
        constraint("", "sequenceNumberForOrdering", SEQ_PATTERN),
        constraint("", "partitionKey", "Member must have length greater than or equal to 1"),
        constraint("", "explicitHashKey", HASH_PATTERN),
        constraint("", "streamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "streamName", "Member must have length greater than or equal to 1"),
    )


def test_put_record_with_oversized_members_lists_every_error(api):
    name, key = "e" * 129, "k" * 257
    resp = api.call("PutRecord", {"StreamName": name, "PartitionKey": key, "Data": b64(b"\0" * (MIB + 1))})
    assert_validation(
        resp,
        constraint(key, "partitionKey", "Member must have length less than or equal to 256"),
        constraint(heap_buffer(MIB + 1), "data", "Member must have length less than or equal to 1048576"),
        constraint(name, "streamName", "Member must have length less than or equal to 128"),
    )


# kinesalite tests its patterns as /^0|([1-9]\d{0,38})$/, which accepts anything that merely starts
# with 0 or ends in a digit; AWS matches the whole value.
ANCHORING = pytest.mark.not_kinesalite("anchors only one side of alternation patterns")


@pytest.mark.parametrize(
    "value",
    ["abc", pytest.param("-1", marks=ANCHORING), pytest.param("01", marks=ANCHORING),
     pytest.param("1.5", marks=ANCHORING), pytest.param("1" * 40, marks=ANCHORING)],
)
def test_put_record_with_explicit_hash_key_outside_pattern_answers_validation_exception(api, make_stream, value):
    name = make_stream(1)
    resp = api.call("PutRecord", {"StreamName": name, "PartitionKey": "a", "Data": "", "ExplicitHashKey": value})
    assert_validation(resp, constraint(value, "explicitHashKey", HASH_PATTERN))


def test_put_record_with_explicit_hash_key_of_2_to_the_128_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws("InvalidArgumentException", bad_hash_key_message(POW_128)):
        kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"", ExplicitHashKey=str(POW_128))


def test_put_record_with_largest_39_digit_explicit_hash_key_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws("InvalidArgumentException", bad_hash_key_message("9" * 39)):
        kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"", ExplicitHashKey="9" * 39)


@pytest.mark.parametrize(
    "value", ["abc", pytest.param("-5", marks=ANCHORING), pytest.param("0123", marks=ANCHORING)]
)
def test_put_record_with_sequence_number_for_ordering_outside_pattern_answers_validation_exception(
    api, make_stream, value
):
    name = make_stream(1)
    resp = api.call(
        "PutRecord", {"StreamName": name, "PartitionKey": "a", "Data": "", "SequenceNumberForOrdering": value}
    )
    assert_validation(resp, constraint(value, "sequenceNumberForOrdering", SEQ_PATTERN))


def test_put_record_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.put_record(StreamName=stream_name, PartitionKey="a", Data=b"x")


@pytest.mark.not_kinesalite("does not count the partition key in the 1 MiB record limit")
def test_put_record_whose_data_and_partition_key_exceed_1_mib_is_refused(api, make_stream):
    name = make_stream(1)
    resp = api.call("PutRecord", {"StreamName": name, "PartitionKey": "key", "Data": b64(b"x" * MIB)})
    assert resp.status == 400, resp
    assert resp.error_type in ("ValidationException", "InvalidArgumentException"), resp


# ---------------------------------------------------------------------------------- behaviour


def test_put_record_answers_shard_id_and_a_decimal_sequence_number(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"hello")
    assert out["ShardId"] == shard_id(0)
    assert re.fullmatch(r"[1-9][0-9]*", out["SequenceNumber"])


def test_put_record_round_trips_all_256_byte_values_exactly(kinesis, make_stream):
    name = make_stream(1)
    data = bytes(range(256))
    seq = kinesis.put_record(StreamName=name, PartitionKey="bytes", Data=data)["SequenceNumber"]
    records = helpers.read_all(kinesis, name, shard_id(0))
    assert [(r["Data"], r["PartitionKey"], r["SequenceNumber"]) for r in records] == [(data, "bytes", seq)]


def test_put_record_round_trips_random_binary_data_exactly(kinesis, make_stream):
    name = make_stream(1)
    blobs = [os.urandom(n) for n in (1, 2, 3, 4, 1000, 65537)]
    for blob in blobs:
        kinesis.put_record(StreamName=name, PartitionKey="r", Data=blob)
    assert [r["Data"] for r in helpers.read_all(kinesis, name, shard_id(0))] == blobs


def test_put_record_accepts_empty_data_and_returns_it_empty(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.put_record(StreamName=name, PartitionKey="empty", Data=b"")
    records = helpers.read_all(kinesis, name, shard_id(0))
    assert [(r["Data"], r["SequenceNumber"]) for r in records] == [(b"", out["SequenceNumber"])]


def test_put_record_accepts_a_record_of_exactly_1_mib_including_its_partition_key(kinesis, make_stream):
    name = make_stream(1)
    key = "k" * 10
    data = os.urandom(MIB - len(key))
    kinesis.put_record(StreamName=name, PartitionKey=key, Data=data)
    records = helpers.read_all(kinesis, name, shard_id(0))
    assert len(records) == 1 and records[0]["Data"] == data


def test_put_record_accepts_a_256_character_partition_key(kinesis, make_stream):
    name = make_stream(1)
    key = "p" * 256
    kinesis.put_record(StreamName=name, PartitionKey=key, Data=b"x")
    assert helpers.read_all(kinesis, name, shard_id(0))[0]["PartitionKey"] == key


def test_put_record_routes_each_partition_key_by_its_md5_hash(kinesis, make_stream):
    name = make_stream(4)
    shards = helpers.all_shards(kinesis, name)
    for i in range(24):
        key = f"key-{i}"
        out = kinesis.put_record(StreamName=name, PartitionKey=key, Data=b"x")
        assert out["ShardId"] == shard_for_hash(shards, hash_key(key)), key


def test_put_record_hashes_a_unicode_partition_key_as_utf8(kinesis, make_stream):
    name = make_stream(5)
    shards = helpers.all_shards(kinesis, name)
    for key in ["ü", "日本語のキー", "emoji-\U0001f600", "naïve café"]:
        out = kinesis.put_record(StreamName=name, PartitionKey=key, Data=b"x")
        assert out["ShardId"] == shard_for_hash(shards, hash_key(key)), key
        records = helpers.read_all(kinesis, name, out["ShardId"], "AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber=out["SequenceNumber"])
        assert records[0]["PartitionKey"] == key


def test_put_record_routes_by_explicit_hash_key_instead_of_the_partition_key(kinesis, make_stream):
    name = make_stream(4)
    shards = helpers.all_shards(kinesis, name)
    key = next(k for k in (f"k{i}" for i in range(1000)) if shard_for_hash(shards, hash_key(k)) == shard_id(0))
    out = kinesis.put_record(StreamName=name, PartitionKey=key, Data=b"x", ExplicitHashKey=str(POW_128 - 1))
    assert out["ShardId"] == shard_id(3)


@pytest.mark.parametrize(
    "explicit,expected",
    [
        ("0", 0),
        (str(POW_128 // 3 - 1), 0),
        (str(POW_128 // 3), 1),
        (str((POW_128 // 3) * 2 - 1), 1),
        (str((POW_128 // 3) * 2), 2),
        (str(POW_128 - 1), 2),
    ],
)
def test_put_record_with_explicit_hash_key_at_a_range_boundary_lands_in_the_right_shard(
    kinesis, make_stream, explicit, expected
):
    name = make_stream(3)
    out = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"", ExplicitHashKey=explicit)
    assert out["ShardId"] == shard_id(expected)


def test_put_record_sequence_numbers_strictly_increase_within_a_shard(kinesis, make_stream):
    name = make_stream(1)
    seqs = [int(kinesis.put_record(StreamName=name, PartitionKey=str(i), Data=b"x")["SequenceNumber"])
            for i in range(20)]
    assert all(a < b for a, b in zip(seqs, seqs[1:]))


def test_put_record_sequence_numbers_are_unique_across_shards(kinesis, make_stream):
    name = make_stream(3)
    seqs = [kinesis.put_record(StreamName=name, PartitionKey=str(i), Data=b"x")["SequenceNumber"] for i in range(30)]
    assert len(set(seqs)) == 30


def test_put_record_sequence_number_is_at_least_the_shard_starting_sequence_number(kinesis, make_stream):
    name = make_stream(1)
    start = int(helpers.all_shards(kinesis, name)[0]["SequenceNumberRange"]["StartingSequenceNumber"])
    seq = int(kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"x")["SequenceNumber"])
    assert seq >= start


def test_put_record_with_sequence_number_for_ordering_gets_a_larger_sequence_number(kinesis, make_stream):
    name = make_stream(1)
    first = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"1")["SequenceNumber"]
    second = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"2", SequenceNumberForOrdering=first)
    assert int(second["SequenceNumber"]) > int(first)
    assert [r["Data"] for r in helpers.read_all(kinesis, name, shard_id(0))] == [b"1", b"2"]


def test_put_record_round_trips_partition_keys_that_need_json_escaping(kinesis, make_stream):
    name = make_stream(1)
    keys = ['quote"inside', "back\\slash", "new\nline", "tab\there", "ctrl\x01\x1f", "slash/</script>",
            "\u2028\u2029", "nul-free ü € \U0001f600"]
    for key in keys:
        kinesis.put_record(StreamName=name, PartitionKey=key, Data=key.encode())
    records = helpers.read_all(kinesis, name, shard_id(0))
    assert [(r["PartitionKey"], r["Data"]) for r in records] == [(k, k.encode()) for k in keys]


def test_put_record_validation_message_quotes_the_value_verbatim(api, make_stream):
    name = make_stream(1)
    key = 'say "hi"\n\\' + "x" * 260
    resp = api.call("PutRecord", {"StreamName": name, "PartitionKey": key, "Data": ""})
    assert_validation(resp, constraint(key, "partitionKey", "Member must have length less than or equal to 256"))


def test_put_record_with_sequence_number_for_ordering_of_an_unknown_version_answers_invalid_argument(
    kinesis, make_stream
):
    name = make_stream(1)
    seq = str(int("20000000000000000000000000000000000000000000004", 16))
    with raises_aws(
        "InvalidArgumentException",
        f"ExclusiveMinimumSequenceNumber {seq} used in PutRecord on stream {name} "
        f"under account {helpers.ACCOUNT} is invalid.",
    ):
        kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"", SequenceNumberForOrdering=seq)


def test_put_record_concurrent_writers_to_one_shard_get_distinct_ordered_sequence_numbers(
    endpoint, kinesis, make_stream
):
    name = make_stream(1)
    writers, per_writer = 8, 25

    def write(w):
        client = helpers.make_client(endpoint)
        return [(client.put_record(StreamName=name, PartitionKey=f"w{w}", Data=f"{w}:{i}".encode())["SequenceNumber"],
                 f"{w}:{i}".encode()) for i in range(per_writer)]

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(write, range(writers)))
    for mine in results:  # each writer's own puts are ordered
        assert all(int(a) < int(b) for (a, _), (b, _) in zip(mine, mine[1:]))
    answered = sorted((int(seq), data) for mine in results for seq, data in mine)
    assert len({seq for seq, _ in answered}) == writers * per_writer
    records = helpers.read_all(kinesis, name, shard_id(0))
    assert [(int(r["SequenceNumber"]), r["Data"]) for r in records] == answered


def test_put_record_keeps_records_in_put_order_when_read_back(kinesis, make_stream):
    name = make_stream(1)
    sent = [f"record {i}".encode() for i in range(25)]
    for i, data in enumerate(sent):
        kinesis.put_record(StreamName=name, PartitionKey=f"pk{i}", Data=data)
    records = helpers.read_all(kinesis, name, shard_id(0))
    assert [r["Data"] for r in records] == sent
    assert [r["PartitionKey"] for r in records] == [f"pk{i}" for i in range(25)]


# ================================================================================== PutRecords
# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "path,type_name",
    [
        ("Records", "List"),
        ("Records.0", "Structure"),
        ("Records.0.Data", "Blob"),
        ("Records.0.ExplicitHashKey", "String"),
        ("Records.0.PartitionKey", "String"),
        ("StreamName", "String"),
    ],
)
def test_put_records_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "PutRecords", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_put_records_without_records_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("PutRecords", {"StreamName": name})
    assert_validation(resp, constraint(None, "records", "Member must not be null"))


def test_put_records_with_no_records_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("PutRecords", {"StreamName": name, "Records": []})
    assert_validation(resp, constraint("[]", "records", "Member must have length greater than or equal to 1"))


def test_put_records_with_501_records_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("PutRecords", {"StreamName": name, "Records": [{"PartitionKey": "a", "Data": ""}] * 501})
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    helpers.check_message(
        resp.error_message,
        re.compile(
            r"1 validation error detected: Value '\[[^']*\]' at 'records' failed to satisfy constraint: "
            r"Member must have length less than or equal to 500"
        ),
    )


def test_put_records_with_entry_missing_members_names_the_entry_position(api, make_stream):
    name = make_stream(1)
    resp = api.call("PutRecords", {"StreamName": name, "Records": [{"PartitionKey": "a", "Data": ""}, {}]})
    assert_validation(
        resp,
        constraint(None, "records.2.member.partitionKey", "Member must not be null"),
        constraint(None, "records.2.member.data", "Member must not be null"),
    )


def test_put_records_with_entry_over_1_mib_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call(
        "PutRecords", {"StreamName": name, "Records": [{"PartitionKey": "a", "Data": b64(b"z" * (MIB + 1))}]}
    )
    assert_validation(
        resp,
        constraint(heap_buffer(MIB + 1), "records.1.member.data",
                   "Member must have length less than or equal to 1048576"),
    )


def test_put_records_with_bad_explicit_hash_key_pattern_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call(
        "PutRecords",
        {"StreamName": name, "Records": [{"PartitionKey": "a", "Data": "", "ExplicitHashKey": "x"}]},
    )
    assert_validation(resp, constraint("x", "records.1.member.explicitHashKey", HASH_PATTERN))


def test_put_records_with_explicit_hash_key_out_of_range_rejects_the_whole_request(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws("InvalidArgumentException", bad_hash_key_message(POW_128)):
        kinesis.put_records(
            StreamName=name,
            Records=[
                {"PartitionKey": "a", "Data": b"kept?"},
                {"PartitionKey": "a", "Data": b"", "ExplicitHashKey": str(POW_128)},
            ],
        )
    assert helpers.read_all(kinesis, name, shard_id(0)) == []


def test_put_records_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.put_records(StreamName=stream_name, Records=[{"PartitionKey": "a", "Data": b"x"}])


@pytest.mark.not_kinesalite("does not enforce the 5 MiB request limit")
def test_put_records_over_5_mib_in_total_answers_invalid_argument(api, make_stream):
    name = make_stream(1)
    big = b64(b"q" * (MIB - 1))
    records = [{"PartitionKey": "a", "Data": big}] * 5 + [{"PartitionKey": "a", "Data": b64(b"q" * 1000)}]
    resp = api.call("PutRecords", {"StreamName": name, "Records": records})
    assert resp.status == 400, resp
    assert resp.error_type == "InvalidArgumentException", resp
    assert resp.error_message == "Records size exceeds 5 MB limit"


# ---------------------------------------------------------------------------------- behaviour


def test_put_records_accepts_exactly_5_mib_including_partition_keys(kinesis, make_stream):
    name = make_stream(5)
    key = "k"
    # one MiB per shard: each fits its shard's write rate (1 MiB/s), so none is throttled
    starts = [r[0] for r in helpers.expected_ranges(5)]
    records = [
        {"PartitionKey": key, "Data": bytes([i]) * (MIB - len(key)), "ExplicitHashKey": str(starts[i])}
        for i in range(5)
    ]
    out = kinesis.put_records(StreamName=name, Records=records)
    assert out["FailedRecordCount"] == 0
    got = [r for i in range(5) for r in helpers.read_all(kinesis, name, shard_id(i))]
    assert [r["Data"] for r in got] == [r["Data"] for r in records]


def test_put_records_with_500_entries_answers_each_in_request_order(kinesis, make_stream):
    name = make_stream(3)
    shards = helpers.all_shards(kinesis, name)
    records = [{"PartitionKey": f"pk-{i}", "Data": f"data-{i}".encode()} for i in range(500)]
    out = kinesis.put_records(StreamName=name, Records=records)
    assert out["FailedRecordCount"] == 0
    assert len(out["Records"]) == 500
    for sent, result in zip(records, out["Records"]):
        assert result["ShardId"] == shard_for_hash(shards, hash_key(sent["PartitionKey"]))
        assert result["SequenceNumber"].isdigit()
        assert "ErrorCode" not in result
    # Within each shard, sequence numbers follow request order and reads return that order.
    for shard in shards:
        sid = shard["ShardId"]
        expected = [(r["Data"], res["SequenceNumber"]) for r, res in zip(records, out["Records"]) if res["ShardId"] == sid]
        seqs = [int(s) for _, s in expected]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        got = helpers.read_all(kinesis, name, sid)
        assert [(r["Data"], r["SequenceNumber"]) for r in got] == expected


def test_put_records_honours_explicit_hash_keys_per_entry(kinesis, make_stream):
    name = make_stream(4)
    step = POW_128 // 4
    records = [{"PartitionKey": "same", "Data": bytes([i]), "ExplicitHashKey": str(i * step + 5)} for i in range(4)]
    out = kinesis.put_records(StreamName=name, Records=records)
    assert [r["ShardId"] for r in out["Records"]] == [shard_id(i) for i in range(4)]


def test_put_records_round_trips_binary_and_empty_data(kinesis, make_stream):
    name = make_stream(1)
    blobs = [b"", bytes(range(256)), os.urandom(4096), b"\x00", b"\xff\xfe"]
    out = kinesis.put_records(StreamName=name, Records=[{"PartitionKey": "p", "Data": b} for b in blobs])
    assert out["FailedRecordCount"] == 0
    assert [r["Data"] for r in helpers.read_all(kinesis, name, shard_id(0))] == blobs


def test_put_records_sequence_numbers_continue_after_put_record(kinesis, make_stream):
    name = make_stream(1)
    first = int(kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"1")["SequenceNumber"])
    batch = kinesis.put_records(StreamName=name, Records=[{"PartitionKey": "a", "Data": b"2"}] * 3)
    last = int(kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"3")["SequenceNumber"])
    seqs = [first] + [int(r["SequenceNumber"]) for r in batch["Records"]] + [last]
    assert all(a < b for a, b in zip(seqs, seqs[1:]))
