"""Capacity modes (ON_DEMAND, PROVISIONED), UpdateStreamMode, DescribeLimits, and the per-stream
maximum record size (CreateStream MaxRecordSizeInKiB, UpdateMaxRecordSize).

Debian's boto3 knows UpdateStreamMode and DescribeLimits through the newer model conftest loads,
but not MaxRecordSizeInKiB nor UpdateMaxRecordSize: those are sent as signed raw JSON, and
DescribeStreamSummary's MaxRecordSizeInKiB is read from the raw answer (boto3 drops members its
model lacks).
"""

import random
import time

import pytest

import helpers
from helpers import (
    ACCOUNT,
    MIB,
    all_shards,
    assert_type_errors,
    assert_validation,
    b64,
    constraint,
    expected_ranges,
    hash_key,
    is_open,
    not_found_message,
    raises_aws,
    shard_for_hash,
    shard_id,
    stream_arn,
    wait_for_status,
    wait_until_gone,
)

HALF = helpers.POW_128 // 2


def on_demand_message(name):
    return f"Request is invalid. Stream {name} under account {ACCOUNT} is in On-Demand mode."


def summary(kinesis, name):
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]


def raw_summary(api, name):
    return api.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]


def key_ranges(shards):
    return [
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    ]


def create_raw(api, kinesis, name, **members):
    resp = api.call("CreateStream", dict({"StreamName": name}, **members))
    assert resp.status == 200, resp
    wait_for_status(kinesis, name)


def set_mode(kinesis, name, mode):
    kinesis.update_stream_mode(StreamARN=stream_arn(name), StreamModeDetails={"StreamMode": mode})
    wait_for_status(kinesis, name)


def blob(size, seed=7):
    return random.Random(seed).randbytes(size)


# ==================================================================================== CreateStream modes


def test_create_stream_on_demand_has_four_uniform_shards_and_reports_on_demand(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_for_status(kinesis, stream_name)
    shards = all_shards(kinesis, stream_name)
    assert [s["ShardId"] for s in shards] == [shard_id(i) for i in range(4)]
    assert key_ranges(shards) == expected_ranges(4)
    got = summary(kinesis, stream_name)
    assert got["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert got["OpenShardCount"] == 4
    described = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert described["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    for i in range(20):
        key = f"k{i}"
        out = kinesis.put_record(StreamName=stream_name, PartitionKey=key, Data=b"x")
        assert out["ShardId"] == shard_for_hash(shards, hash_key(key))


def test_create_stream_with_neither_shard_count_nor_mode_makes_an_on_demand_stream_of_four_shards(
    api, kinesis, stream_name
):
    create_raw(api, kinesis, stream_name)
    assert len(all_shards(kinesis, stream_name)) == 4
    assert summary(kinesis, stream_name)["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}


def test_create_stream_with_a_shard_count_is_provisioned(kinesis, make_stream):
    name = make_stream(3)
    assert summary(kinesis, name)["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}


def test_create_stream_with_a_shard_count_and_on_demand_answers_validation_exception(kinesis, stream_name):
    with raises_aws("ValidationException", "ShardCount is not expected when StreamMode=ON_DEMAND"):
        kinesis.create_stream(StreamName=stream_name, ShardCount=2, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.describe_stream_summary(StreamName=stream_name)


# ==================================================================================== UpdateStreamMode


def test_update_stream_mode_by_arn_switches_between_modes_and_keeps_the_open_shards(api, kinesis, make_stream):
    name = make_stream(2)
    before = key_ranges(all_shards(kinesis, name))
    resp = api.call(
        "UpdateStreamMode", {"StreamARN": stream_arn(name), "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}
    )
    assert resp.status == 200 and resp.raw == b"", resp
    wait_for_status(kinesis, name)
    assert summary(kinesis, name)["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}

    set_mode(kinesis, name, "PROVISIONED")
    got = summary(kinesis, name)
    assert got["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert key_ranges([s for s in all_shards(kinesis, name) if is_open(s)]) == before
    kinesis.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF // 2))
    wait_for_status(kinesis, name)
    assert summary(kinesis, name)["OpenShardCount"] == 3


def test_an_on_demand_stream_switched_to_provisioned_can_be_rescaled(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_for_status(kinesis, stream_name)
    set_mode(kinesis, stream_name, "PROVISIONED")
    out = kinesis.update_shard_count(StreamName=stream_name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (4, 2)
    wait_for_status(kinesis, stream_name)
    assert key_ranges([s for s in all_shards(kinesis, stream_name) if is_open(s)]) == expected_ranges(2)


@pytest.mark.parametrize(
    "operation,args",
    [
        ("split_shard", {"ShardToSplit": shard_id(0), "NewStartingHashKey": str(HALF // 2)}),
        ("merge_shards", {"ShardToMerge": shard_id(0), "AdjacentShardToMerge": shard_id(1)}),
        ("update_shard_count", {"TargetShardCount": 3, "ScalingType": "UNIFORM_SCALING"}),
    ],
)
def test_provisioned_only_operations_on_a_stream_switched_to_on_demand_answer_validation_exception(
    kinesis, make_stream, operation, args
):
    name = make_stream(2)
    set_mode(kinesis, name, "ON_DEMAND")
    with raises_aws("ValidationException", on_demand_message(name)):
        getattr(kinesis, operation)(StreamName=name, **args)
    assert [s["ShardId"] for s in all_shards(kinesis, name)] == [shard_id(0), shard_id(1)]


@pytest.mark.parametrize(
    "operation,args",
    [
        ("split_shard", {"ShardToSplit": shard_id(0), "NewStartingHashKey": str(HALF // 4)}),
        ("merge_shards", {"ShardToMerge": shard_id(0), "AdjacentShardToMerge": shard_id(1)}),
    ],
)
def test_split_and_merge_on_a_stream_created_on_demand_answer_validation_exception(
    kinesis, stream_name, operation, args
):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_for_status(kinesis, stream_name)
    with raises_aws("ValidationException", on_demand_message(stream_name)):
        getattr(kinesis, operation)(StreamName=stream_name, **args)
    assert len(all_shards(kinesis, stream_name)) == 4


def test_update_stream_mode_without_a_stream_arn_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("UpdateStreamMode", {"StreamName": name, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})
    assert_validation(resp, constraint(None, "streamARN", "Member must not be null"))


def test_update_stream_mode_with_an_unknown_mode_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("UpdateStreamMode", {"StreamARN": stream_arn(name), "StreamModeDetails": {"StreamMode": "FAST"}})
    assert_validation(
        resp,
        constraint(
            "FAST", "streamModeDetails.streamMode", "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"
        ),
    )


def test_update_stream_mode_of_an_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.update_stream_mode(StreamARN=stream_arn(stream_name), StreamModeDetails={"StreamMode": "ON_DEMAND"})


# ==================================================================================== DescribeLimits


@pytest.mark.own_server
def test_describe_limits_counts_open_shards_and_on_demand_streams_across_the_account(kinesd_factory):
    server = kinesd_factory(flags={"--shard-limit": "50"})
    kinesis = helpers.make_client(server.endpoint)
    api = helpers.RawApi(server.endpoint)

    def limits():
        return api.ok("DescribeLimits", {})

    assert limits() == {"ShardLimit": 50, "OpenShardCount": 0, "OnDemandStreamCount": 0, "OnDemandStreamCountLimit": 50}
    kinesis.create_stream(StreamName="prov", ShardCount=3)
    kinesis.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_for_status(kinesis, "prov")
    wait_for_status(kinesis, "od")
    assert limits() == {"ShardLimit": 50, "OpenShardCount": 7, "OnDemandStreamCount": 1, "OnDemandStreamCountLimit": 50}

    kinesis.split_shard(StreamName="prov", ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF // 2))
    wait_for_status(kinesis, "prov")
    assert limits()["OpenShardCount"] == 8  # the split parent is closed and not counted

    set_mode(kinesis, "od", "PROVISIONED")
    assert (limits()["OnDemandStreamCount"], limits()["OpenShardCount"]) == (0, 8)
    set_mode(kinesis, "prov", "ON_DEMAND")
    assert limits()["OnDemandStreamCount"] == 1

    kinesis.delete_stream(StreamName="prov")
    wait_until_gone(kinesis, "prov")
    assert limits() == {"ShardLimit": 50, "OpenShardCount": 4, "OnDemandStreamCount": 0, "OnDemandStreamCountLimit": 50}

    out = kinesis.describe_limits()
    assert (out["ShardLimit"], out["OpenShardCount"]) == (50, 4)


# ==================================================================================== maximum record size


def test_a_new_stream_reports_a_maximum_record_size_of_1024_kib(api, make_stream):
    name = make_stream(1)
    assert raw_summary(api, name)["MaxRecordSizeInKiB"] == 1024


def test_a_stream_created_with_2048_kib_records_accepts_a_1_5_mib_record_and_returns_it_byte_exact(
    api, kinesis, stream_name
):
    create_raw(api, kinesis, stream_name, ShardCount=2, MaxRecordSizeInKiB=2048)
    assert raw_summary(api, stream_name)["MaxRecordSizeInKiB"] == 2048
    data = blob(MIB * 3 // 2)
    # one record per shard: a 1.5 MiB record leaves its shard's 1 MiB/s write budget in debt
    kinesis.put_record(StreamName=stream_name, PartitionKey="big", Data=data, ExplicitHashKey="0")
    out = kinesis.put_records(
        StreamName=stream_name,
        Records=[{"PartitionKey": "big", "Data": data[::-1], "ExplicitHashKey": str(helpers.POW_128 - 1)}],
    )
    assert out["FailedRecordCount"] == 0
    records = [r for i in range(2) for r in helpers.read_all(kinesis, stream_name, shard_id(i))]
    assert [r["Data"] for r in records] == [data, data[::-1]]


@pytest.mark.parametrize("kib", [1024, 10240])
def test_update_max_record_size_by_arn_accepts_the_bounds_of_its_range(api, make_stream, kib):
    name = make_stream(1)
    resp = api.call("UpdateMaxRecordSize", {"StreamARN": stream_arn(name), "MaxRecordSizeInKiB": kib})
    assert resp.status == 200 and resp.raw == b"", resp
    assert raw_summary(api, name)["MaxRecordSizeInKiB"] == kib


@pytest.mark.parametrize(
    "kib,rule",
    [
        (1023, "Member must have value greater than or equal to 1024"),
        (10241, "Member must have value less than or equal to 10240"),
    ],
)
def test_update_max_record_size_out_of_range_answers_validation_exception(api, make_stream, kib, rule):
    name = make_stream(1)
    resp = api.call("UpdateMaxRecordSize", {"StreamARN": stream_arn(name), "MaxRecordSizeInKiB": kib})
    assert_validation(resp, constraint(kib, "maxRecordSizeInKiB", rule))
    assert raw_summary(api, name)["MaxRecordSizeInKiB"] == 1024


@pytest.mark.parametrize(
    "kib,rule",
    [
        (0, "Member must have value greater than or equal to 1024"),
        (1023, "Member must have value greater than or equal to 1024"),
        (10241, "Member must have value less than or equal to 10240"),
    ],
)
def test_create_stream_with_max_record_size_out_of_range_answers_validation_exception(
    api, kinesis, stream_name, kib, rule
):
    resp = api.call("CreateStream", {"StreamName": stream_name, "ShardCount": 1, "MaxRecordSizeInKiB": kib})
    assert_validation(resp, constraint(kib, "maxRecordSizeInKiB", rule))
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.describe_stream_summary(StreamName=stream_name)


def test_create_stream_with_wrongly_typed_max_record_size_answers_serialization_exception(api):
    assert_type_errors(api, "CreateStream", "MaxRecordSizeInKiB", "Integer")


def test_update_max_record_size_with_wrongly_typed_max_record_size_answers_serialization_exception(api):
    assert_type_errors(api, "UpdateMaxRecordSize", "MaxRecordSizeInKiB", "Integer")


def test_update_max_record_size_of_an_unknown_stream_answers_resource_not_found(api, stream_name):
    api.error(
        "UpdateMaxRecordSize",
        {"StreamARN": stream_arn(stream_name), "MaxRecordSizeInKiB": 2048},
        "ResourceNotFoundException",
        not_found_message(stream_name),
    )


def test_raising_and_lowering_the_maximum_record_size_changes_which_records_are_accepted(api, kinesis, make_stream):
    name = make_stream(1)
    api.ok("UpdateMaxRecordSize", {"StreamARN": stream_arn(name), "MaxRecordSizeInKiB": 4096})
    wait_for_status(kinesis, name)
    assert raw_summary(api, name)["MaxRecordSizeInKiB"] == 4096
    three = blob(3 * MIB, seed=3)
    kinesis.put_record(StreamName=name, PartitionKey="p", Data=three)

    api.ok("UpdateMaxRecordSize", {"StreamARN": stream_arn(name), "MaxRecordSizeInKiB": 1024})
    wait_for_status(kinesis, name)
    with raises_aws("ValidationException") as err:
        kinesis.put_record(StreamName=name, PartitionKey="p", Data=blob(MIB * 3 // 2))
    assert "at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576" in (
        err.error["Message"]
    )
    assert [r["Data"] for r in helpers.read_all(kinesis, name, shard_id(0))] == [three]


@pytest.mark.parametrize("operation", ["PutRecord", "PutRecords"])
def test_a_record_over_the_streams_maximum_answers_validation_exception_naming_the_limit_in_bytes(
    api, kinesis, stream_name, operation
):
    create_raw(api, kinesis, stream_name, ShardCount=1, MaxRecordSizeInKiB=2048)
    data = b64(b"o" * (2048 * 1024 + 1))
    if operation == "PutRecord":
        payload, member = {"StreamName": stream_name, "PartitionKey": "p", "Data": data}, "data"
    else:
        payload = {"StreamName": stream_name, "Records": [{"PartitionKey": "p", "Data": data}]}
        member = "records.1.member.data"
    resp = api.call(operation, payload)
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    expected = f"at '{member}' failed to satisfy constraint: Member must have length less than or equal to 2097152"
    assert resp.error_message.startswith("1 validation error detected: Value "), resp.error_message
    assert expected in resp.error_message, resp.error_message
    assert helpers.read_all(kinesis, stream_name, shard_id(0)) == []


def test_put_records_over_5_mib_in_total_on_a_default_stream_answers_invalid_argument(api, kinesis, make_stream):
    name = make_stream(1)
    part = b64(b"f" * 883_334)  # 6 of them: over 5 MiB, and their base64 within the 7 MiB body cap
    records = [{"PartitionKey": f"p{i}", "Data": part} for i in range(6)]
    api.error("PutRecords", {"StreamName": name, "Records": records}, "InvalidArgumentException",
              "Records size exceeds 5 MB limit")
    assert helpers.read_all(kinesis, name, shard_id(0)) == []


@pytest.mark.own_server
def test_an_on_demand_stream_splits_a_shard_whose_writes_stay_above_its_capacity(kinesd_factory):
    server = kinesd_factory(flags={"--no-limits": None})
    kinesis = helpers.make_client(server.endpoint)
    name = "hot-on-demand"
    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    helpers.wait_for_status(kinesis, name)
    before = kinesis.list_shards(StreamName=name)["Shards"]
    assert len(before) == 4
    hot = helpers.shard_for_hash(before, helpers.hash_key("hot"))
    deadline = time.monotonic() + 15
    split = []
    while time.monotonic() < deadline and not split:
        # 2,000 records a second into one partition key: twice one shard's write capacity
        for _ in range(4):
            out = kinesis.put_records(StreamName=name, Records=[{"PartitionKey": "hot", "Data": b"x" * 10}] * 500)
            assert out["FailedRecordCount"] == 0
        time.sleep(0.5)
        split = [s for s in kinesis.list_shards(StreamName=name)["Shards"] if "ParentShardId" in s]
    assert len(split) == 2, "no shard was split within 15 s of writing at twice its capacity"
    parent = split[0]["ParentShardId"]
    assert all(s["ParentShardId"] == parent for s in split)
    assert parent == hot
    helpers.wait_for_status(kinesis, name)  # the split is complete once the stream is ACTIVE again
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=name)["Shards"]}
    assert "EndingSequenceNumber" in shards[parent]["SequenceNumberRange"]
    # the children tile the parent's range
    lo, hi = (int(shards[parent]["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    kids = sorted(split, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    assert int(kids[0]["HashKeyRange"]["StartingHashKey"]) == lo
    assert int(kids[1]["HashKeyRange"]["EndingHashKey"]) == hi
    assert int(kids[0]["HashKeyRange"]["EndingHashKey"]) + 1 == int(kids[1]["HashKeyRange"]["StartingHashKey"])
