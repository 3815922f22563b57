"""SplitShard, MergeShards, UpdateShardCount, and reading a stream across resharding.

AWS behaviour: a reshard closes its parent shards (they get an EndingSequenceNumber) and creates
children named with the next shard indexes; GetRecords at the end of a closed shard answers
without NextShardIterator and with ChildShards (the contract KCL checks); messages are AWS's as
recorded in kinesalite's tests against AWS and in AWS answers quoted in public issues.
"""

import collections
import threading
import time

import pytest

import helpers
from helpers import (
    ACCOUNT,
    POW_128,
    all_shards,
    assert_validation,
    constraint,
    expected_ranges,
    hash_key,
    is_open,
    not_found_message,
    open_shards,
    parents_of,
    raises_aws,
    read_from_iterator,
    read_stream_by_lineage,
    read_to_shard_end,
    shard_for_hash,
    shard_id,
    stream_arn,
    wait_for_status,
)

TOP = POW_128 - 1
HALF = POW_128 // 2


def by_id(client, name):
    return {s["ShardId"]: s for s in all_shards(client, name)}


def key_range(shard):
    r = shard["HashKeyRange"]
    return int(r["StartingHashKey"]), int(r["EndingHashKey"])


def rng(start, end):
    return {"StartingHashKey": str(start), "EndingHashKey": str(end)}


def split(client, name, index, hk):
    client.split_shard(StreamName=name, ShardToSplit=shard_id(index), NewStartingHashKey=str(hk))
    wait_for_status(client, name)


def merge(client, name, index, adjacent):
    client.merge_shards(StreamName=name, ShardToMerge=shard_id(index), AdjacentShardToMerge=shard_id(adjacent))
    wait_for_status(client, name)


def scale(client, name, target):
    out = client.update_shard_count(StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
    wait_for_status(client, name)
    return out


def iterator(client, name, index, kind="TRIM_HORIZON", **kw):
    return client.get_shard_iterator(StreamName=name, ShardId=shard_id(index), ShardIteratorType=kind, **kw)[
        "ShardIterator"
    ]


def not_active_message(name, status="UPDATING"):
    return f"Stream {name} under account {ACCOUNT} not ACTIVE, instead in state {status}"


def closed_message(name, index):
    return (
        f"Shard {shard_id(index)} in stream {name} under account {ACCOUNT} has already been merged or split, "
        "and thus is not eligible for merging or splitting."
    )


def not_adjacent_message(name, a, b):
    return (
        f"Shards {shard_id(a)} and {shard_id(b)} in stream {name} under account {ACCOUNT} "
        "are not an adjacent pair of shards eligible for merging"
    )


def on_demand_message(name):
    return f"Request is invalid. Stream {name} under account {ACCOUNT} is in On-Demand mode."


def put_keys(client, name, keys, tag=b""):
    """PutRecords one record per partition key; returns [(key, ShardId, SequenceNumber)]."""
    out = client.put_records(
        StreamName=name, Records=[{"PartitionKey": k, "Data": tag + k.encode()} for k in keys]
    )
    assert out["FailedRecordCount"] == 0, out
    return [(k, r["ShardId"], r["SequenceNumber"]) for k, r in zip(keys, out["Records"])]


def assert_routed_by_md5(client, name, keys):
    """Records with these keys land in the open shard holding MD5(key); returns the shards used."""
    opened = open_shards(client, name)
    used = set()
    for key, sid, _ in put_keys(client, name, keys):
        assert sid == shard_for_hash(opened, hash_key(key)), (key, sid)
        used.add(sid)
    return used


# ==================================================================================== SplitShard


def test_split_shard_closes_the_parent_and_creates_two_children_with_the_next_shard_ids(kinesis, make_stream, api):
    name = make_stream(2)
    hk = HALF + 12345
    written = kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x", ExplicitHashKey=str(HALF))
    assert written["ShardId"] == shard_id(1)

    resp = api.call("SplitShard", {"StreamName": name, "ShardToSplit": shard_id(1), "NewStartingHashKey": str(hk)})
    assert resp.status == 200 and resp.raw == b"", resp
    wait_for_status(kinesis, name)

    shards = by_id(kinesis, name)
    assert sorted(shards) == [shard_id(i) for i in range(4)]
    parent = shards[shard_id(1)]
    assert not is_open(parent)
    ending = int(parent["SequenceNumberRange"]["EndingSequenceNumber"])
    assert ending >= int(written["SequenceNumber"]) >= int(parent["SequenceNumberRange"]["StartingSequenceNumber"])
    assert is_open(shards[shard_id(0)]) and parents_of(shards[shard_id(0)]) == []
    low, high = shards[shard_id(2)], shards[shard_id(3)]
    assert (low["ParentShardId"], "AdjacentParentShardId" in low) == (shard_id(1), False)
    assert (high["ParentShardId"], "AdjacentParentShardId" in high) == (shard_id(1), False)
    assert low["HashKeyRange"] == rng(HALF, hk - 1)
    assert high["HashKeyRange"] == rng(hk, TOP)
    assert is_open(low) and is_open(high)
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"] == 3


def test_split_shard_at_two_gives_children_holding_zero_to_one_and_two_upward(kinesis, make_stream):
    name = make_stream(1)
    split(kinesis, name, 0, 2)
    shards = by_id(kinesis, name)
    assert shards[shard_id(1)]["HashKeyRange"] == rng(0, 1)
    assert shards[shard_id(2)]["HashKeyRange"] == rng(2, TOP)


def test_split_shard_accepts_the_key_just_below_the_shards_ending_hash_key(kinesis, make_stream):
    name = make_stream(2)
    split(kinesis, name, 1, TOP - 1)
    shards = by_id(kinesis, name)
    assert shards[shard_id(2)]["HashKeyRange"] == rng(HALF, TOP - 2)
    assert shards[shard_id(3)]["HashKeyRange"] == rng(TOP - 1, TOP)


def test_split_shard_by_stream_arn_splits_the_shard(kinesis, make_stream):
    name = make_stream(1)
    kinesis.split_shard(StreamARN=stream_arn(name), ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF))
    wait_for_status(kinesis, name)
    assert sorted(by_id(kinesis, name)) == [shard_id(0), shard_id(1), shard_id(2)]


def test_after_a_split_records_are_routed_only_to_the_open_children_by_md5_of_the_partition_key(kinesis, make_stream):
    name = make_stream(1)
    split(kinesis, name, 0, HALF)
    keys = [f"key-{i}" for i in range(100)]
    assert assert_routed_by_md5(kinesis, name, keys) == {shard_id(1), shard_id(2)}
    for i in range(10):  # PutRecord too
        out = kinesis.put_record(StreamName=name, PartitionKey=keys[i], Data=b"single")
        assert out["ShardId"] == (shard_id(1) if hash_key(keys[i]) < HALF else shard_id(2))
    assert read_from_iterator(kinesis, iterator(kinesis, name, 0)) == []


@pytest.mark.parametrize(
    "hk",
    [
        pytest.param(lambda s, e: s, id="the-starting-hash-key"),
        pytest.param(lambda s, e: s + 1, id="one-above-the-starting-hash-key"),
        pytest.param(lambda s, e: e, id="the-ending-hash-key"),
        pytest.param(lambda s, e: e + 1, id="above-2-to-the-128"),
        pytest.param(lambda s, e: 0, id="zero-below-the-shard"),
        pytest.param(lambda s, e: 10**39 - 1, id="thirty-nine-nines"),
    ],
)
def test_split_shard_with_a_new_starting_hash_key_not_strictly_inside_answers_invalid_argument(
    kinesis, make_stream, hk
):
    name = make_stream(2)
    value = hk(HALF, TOP)
    message = (
        f"NewStartingHashKey {value} used in SplitShard() on shard {shard_id(1)} in stream {name} under account "
        f"{ACCOUNT} is not both greater than one plus the shard's StartingHashKey {HALF} and less than the "
        f"shard's EndingHashKey {TOP}."
    )
    with raises_aws("InvalidArgumentException", message):
        kinesis.split_shard(StreamName=name, ShardToSplit=shard_id(1), NewStartingHashKey=str(value))
    assert sorted(by_id(kinesis, name)) == [shard_id(0), shard_id(1)]


@pytest.mark.parametrize("given", ["shardId-000000000009", "shardId-9"])
def test_split_shard_of_a_shard_not_in_the_stream_answers_resource_not_found(kinesis, make_stream, given):
    name = make_stream(2)
    message = f"Could not find shard shardId-000000000009 in stream {name} under account {ACCOUNT}."
    with raises_aws("ResourceNotFoundException", message):
        kinesis.split_shard(StreamName=name, ShardToSplit=given, NewStartingHashKey=str(HALF))


def test_split_shard_on_an_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.split_shard(StreamName=stream_name, ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF))


def test_split_shard_of_an_already_split_shard_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    split(kinesis, name, 0, HALF)
    with raises_aws("InvalidArgumentException", closed_message(name, 0)):
        kinesis.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF // 2))
    assert len(all_shards(kinesis, name)) == 3


@pytest.mark.own_server
def test_reshard_calls_while_the_stream_is_updating_answer_resource_in_use(kinesd_factory):
    server = kinesd_factory(flags={"--update-stream-ms": "2000"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="busy", ShardCount=2)
    wait_for_status(kinesis, "busy")
    kinesis.split_shard(StreamName="busy", ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF // 2))
    assert kinesis.describe_stream_summary(StreamName="busy")["StreamDescriptionSummary"]["StreamStatus"] == "UPDATING"
    with raises_aws("ResourceInUseException", not_active_message("busy")):
        kinesis.split_shard(StreamName="busy", ShardToSplit=shard_id(1), NewStartingHashKey=str(HALF + 5))
    with raises_aws("ResourceInUseException", not_active_message("busy")):
        kinesis.merge_shards(StreamName="busy", ShardToMerge=shard_id(0), AdjacentShardToMerge=shard_id(1))
    with raises_aws("ResourceInUseException", not_active_message("busy")):
        kinesis.update_shard_count(StreamName="busy", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    wait_for_status(kinesis, "busy", timeout=5)
    kinesis.split_shard(StreamName="busy", ShardToSplit=shard_id(1), NewStartingHashKey=str(HALF + 5))
    wait_for_status(kinesis, "busy", timeout=5)
    assert len(open_shards(kinesis, "busy")) == 4


@pytest.mark.own_server
def test_while_a_split_is_updating_the_old_shards_are_listed_and_writes_go_to_the_parent(kinesd_factory):
    server = kinesd_factory(flags={"--update-stream-ms": "1500"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="slow", ShardCount=1)
    wait_for_status(kinesis, "slow")
    kinesis.split_shard(StreamName="slow", ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF))
    assert kinesis.describe_stream_summary(StreamName="slow")["StreamDescriptionSummary"]["StreamStatus"] == "UPDATING"
    during = kinesis.put_record(StreamName="slow", PartitionKey="p", Data=b"during", ExplicitHashKey="0")
    listed = [s["ShardId"] for s in all_shards(kinesis, "slow")]
    wait_for_status(kinesis, "slow", timeout=5)
    after = kinesis.put_record(StreamName="slow", PartitionKey="p", Data=b"after", ExplicitHashKey="0")
    assert listed == [shard_id(0)]
    assert during["ShardId"] == shard_id(0)
    assert after["ShardId"] == shard_id(1)
    assert sorted(by_id(kinesis, "slow")) == [shard_id(0), shard_id(1), shard_id(2)]


@pytest.mark.own_server
def test_split_shard_beyond_the_account_shard_limit_answers_limit_exceeded(kinesd_factory):
    server = kinesd_factory(flags={"--shard-limit": "3"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="capped", ShardCount=2)
    wait_for_status(kinesis, "capped")
    split(kinesis, "capped", 0, HALF // 2)  # 3 open shards: at the limit
    with raises_aws("LimitExceededException") as err:
        kinesis.split_shard(StreamName="capped", ShardToSplit=shard_id(1), NewStartingHashKey=str(HALF + 5))
    message = err.error["Message"]
    assert message.startswith(
        f"This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. "
        "Current shard count for the account: 3. Limit: 3. "
        "Number of additional shards that would have resulted from this request: 1."
    ), message
    merge(kinesis, "capped", 2, 3)  # closed shards do not count: back to 2 open
    split(kinesis, "capped", 1, HALF + 5)
    assert len(open_shards(kinesis, "capped")) == 3


# ==================================================================================== MergeShards


def test_merge_shards_creates_one_child_with_both_parents_and_the_union_of_their_ranges(kinesis, make_stream, api):
    name = make_stream(3)
    before = by_id(kinesis, name)
    resp = api.call(
        "MergeShards", {"StreamName": name, "ShardToMerge": shard_id(1), "AdjacentShardToMerge": shard_id(2)}
    )
    assert resp.status == 200 and resp.raw == b"", resp
    wait_for_status(kinesis, name)
    shards = by_id(kinesis, name)
    assert sorted(shards) == [shard_id(i) for i in range(4)]
    child = shards[shard_id(3)]
    assert child["ParentShardId"] == shard_id(1)
    assert child["AdjacentParentShardId"] == shard_id(2)
    assert key_range(child) == (key_range(before[shard_id(1)])[0], TOP)
    assert is_open(child) and is_open(shards[shard_id(0)])
    assert not is_open(shards[shard_id(1)]) and not is_open(shards[shard_id(2)])
    assert assert_routed_by_md5(kinesis, name, [f"k{i}" for i in range(60)]) == {shard_id(0), shard_id(3)}


def test_merge_shards_by_stream_arn_merges_the_shards(kinesis, make_stream):
    name = make_stream(2)
    kinesis.merge_shards(StreamARN=stream_arn(name), ShardToMerge=shard_id(0), AdjacentShardToMerge=shard_id(1))
    wait_for_status(kinesis, name)
    assert [s["ShardId"] for s in open_shards(kinesis, name)] == [shard_id(2)]
    assert key_range(by_id(kinesis, name)[shard_id(2)]) == (0, TOP)


@pytest.mark.parametrize(
    "count,first,second",
    [
        pytest.param(3, 0, 2, id="with-a-gap-between"),
        pytest.param(3, 1, 0, id="in-reversed-order"),
        pytest.param(3, 2, 1, id="in-reversed-order-at-the-top"),
        pytest.param(3, 1, 1, id="a-shard-with-itself"),
        # the top shard ends at 2^128-1: one more is not the bottom shard's 0
        pytest.param(2, 1, 0, id="the-top-shard-with-the-bottom-shard"),
        pytest.param(3, 2, 0, id="the-top-shard-with-the-bottom-shard-across-a-gap"),
        pytest.param(1, 0, 0, id="the-only-shard-with-itself"),
    ],
)
def test_merge_shards_of_shards_that_are_not_an_adjacent_pair_answers_invalid_argument(
    kinesis, make_stream, count, first, second
):
    name = make_stream(count)
    with raises_aws("InvalidArgumentException", not_adjacent_message(name, first, second)):
        kinesis.merge_shards(StreamName=name, ShardToMerge=shard_id(first), AdjacentShardToMerge=shard_id(second))
    assert sorted(by_id(kinesis, name)) == [shard_id(i) for i in range(count)]


def test_merge_shards_with_a_closed_shard_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(3)
    merge(kinesis, name, 0, 1)  # shard 1 closed, still adjacent to shard 2 by hash range
    with raises_aws("InvalidArgumentException", closed_message(name, 1)):
        kinesis.merge_shards(StreamName=name, ShardToMerge=shard_id(1), AdjacentShardToMerge=shard_id(2))
    assert len(all_shards(kinesis, name)) == 4


def test_merge_shards_with_a_shard_not_in_the_stream_answers_resource_not_found(kinesis, make_stream):
    name = make_stream(2)
    message = f"Could not find shard shardId-000000000009 in stream {name} under account {ACCOUNT}."
    with raises_aws("ResourceNotFoundException", message):
        kinesis.merge_shards(StreamName=name, ShardToMerge=shard_id(1), AdjacentShardToMerge=shard_id(9))


# ==================================================================================== UpdateShardCount


def test_update_shard_count_answers_the_stream_and_the_current_and_target_counts(api, kinesis, make_stream):
    name = make_stream(2)
    resp = api.call("UpdateShardCount", {"StreamName": name, "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"})
    assert resp.status == 200, resp
    assert resp.json == {
        "StreamName": name,
        "StreamARN": stream_arn(name),
        "CurrentShardCount": 2,
        "TargetShardCount": 4,
    }
    wait_for_status(kinesis, name)
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"] == 4


@pytest.mark.parametrize("initial,target", [(1, 2), (2, 4), (4, 2), (3, 5), (5, 3), (4, 7), (2, 1), (3, 2), (6, 12)])
def test_update_shard_count_leaves_exactly_target_open_shards_splitting_the_hash_space_uniformly(
    kinesis, make_stream, initial, target
):
    name = make_stream(initial)
    original = set(by_id(kinesis, name))
    out = scale(kinesis, name, target)
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (initial, target)

    shards = by_id(kinesis, name)
    opened = open_shards(kinesis, name)
    assert [key_range(s) for s in opened] == expected_ranges(target)
    for i, shard in enumerate(opened):
        assert int(shard["HashKeyRange"]["StartingHashKey"]) == i * (POW_128 // target)
    assert original <= set(shards)
    for sid, shard in shards.items():
        if sid in original:
            continue
        parents = parents_of(shard)
        assert 1 <= len(parents) <= 2, shard
        for p in parents:
            assert p in shards and not is_open(shards[p]), (sid, p)
        if len(parents) == 2:  # a merge: the parents are adjacent and the child is their union
            a, b = key_range(shards[parents[0]]), key_range(shards[parents[1]])
            assert a[1] + 1 == b[0] and key_range(shard) == (a[0], b[1]), shard
        else:  # a split: the child lies inside its parent
            a = key_range(shards[parents[0]])
            assert a[0] <= key_range(shard)[0] <= key_range(shard)[1] <= a[1], shard
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert (summary["OpenShardCount"], summary["StreamStatus"]) == (target, "ACTIVE")
    assert_routed_by_md5(kinesis, name, [f"k{i}" for i in range(40)])


def test_update_shard_count_by_stream_arn_scales_the_stream(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.update_shard_count(StreamARN=stream_arn(name), TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    assert out["StreamName"] == name
    wait_for_status(kinesis, name)
    assert [key_range(s) for s in open_shards(kinesis, name)] == expected_ranges(2)


def test_update_shard_count_above_double_the_open_shards_answers_limit_exceeded(kinesis, make_stream):
    name = make_stream(2)
    message = (
        "UpdateShardCount cannot scale up over double your current open shard count. "
        "Current open shard count: 2, Target shard count: 5"
    )
    with raises_aws("LimitExceededException", message):
        kinesis.update_shard_count(StreamName=name, TargetShardCount=5, ScalingType="UNIFORM_SCALING")
    assert len(all_shards(kinesis, name)) == 2


def test_update_shard_count_below_half_the_open_shards_answers_limit_exceeded(kinesis, make_stream):
    name = make_stream(4)
    message = (
        "UpdateShardCount cannot scale down below half your current open shard count. "
        "Current open shard count: 4, Target shard count: 1"
    )
    with raises_aws("LimitExceededException", message):
        kinesis.update_shard_count(StreamName=name, TargetShardCount=1, ScalingType="UNIFORM_SCALING")
    assert len(all_shards(kinesis, name)) == 4


def test_update_shard_count_halves_with_real_division_so_five_may_go_to_three_but_not_two(kinesis, make_stream):
    name = make_stream(5)
    message = (
        "UpdateShardCount cannot scale down below half your current open shard count. "
        "Current open shard count: 5, Target shard count: 2"
    )
    with raises_aws("LimitExceededException", message):
        kinesis.update_shard_count(StreamName=name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    scale(kinesis, name, 3)
    assert len(open_shards(kinesis, name)) == 3


def test_update_shard_count_counts_open_shards_not_closed_ones(kinesis, make_stream):
    name = make_stream(1)
    split(kinesis, name, 0, HALF)  # 1 closed + 2 open: double is 4, half is 1
    out = scale(kinesis, name, 4)
    assert out["CurrentShardCount"] == 2
    message = (
        "UpdateShardCount cannot scale up over double your current open shard count. "
        "Current open shard count: 4, Target shard count: 9"
    )
    with raises_aws("LimitExceededException", message):
        kinesis.update_shard_count(StreamName=name, TargetShardCount=9, ScalingType="UNIFORM_SCALING")


def test_update_shard_count_with_a_bad_scaling_type_and_zero_target_lists_both_errors(api, make_stream):
    name = make_stream(1)
    resp = api.call("UpdateShardCount", {"StreamName": name, "TargetShardCount": 0, "ScalingType": "HALVING"})
    assert_validation(
        resp,
        constraint(0, "targetShardCount", "Member must have value greater than or equal to 1"),
        constraint("HALVING", "scalingType", "Member must satisfy enum value set: [UNIFORM_SCALING]"),
    )


def test_update_shard_count_on_an_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.update_shard_count(StreamName=stream_name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")


def test_update_shard_count_on_an_on_demand_stream_answers_validation_exception(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_for_status(kinesis, stream_name)
    with raises_aws("ValidationException", on_demand_message(stream_name)):
        kinesis.update_shard_count(StreamName=stream_name, TargetShardCount=5, ScalingType="UNIFORM_SCALING")
    assert len(all_shards(kinesis, stream_name)) == 4


@pytest.mark.own_server
def test_update_shard_count_above_the_shard_limit_answers_limit_exceeded_before_the_doubling_rule(kinesd_factory):
    server = kinesd_factory(flags={"--shard-limit": "5"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="small", ShardCount=2)
    kinesis.create_stream(StreamName="big", ShardCount=3)
    wait_for_status(kinesis, "small")
    wait_for_status(kinesis, "big")
    # 6 is within double of 3 and over the limit
    with raises_aws(
        "LimitExceededException",
        "Target shard count or number of open shards cannot be greater than 5. "
        "Current open shard count: 3, Target shard count: 6",
    ):
        kinesis.update_shard_count(StreamName="big", TargetShardCount=6, ScalingType="UNIFORM_SCALING")
    # 6 is both over double of 2 and over the limit: the limit is named
    with raises_aws(
        "LimitExceededException",
        "Target shard count or number of open shards cannot be greater than 5. "
        "Current open shard count: 2, Target shard count: 6",
    ):
        kinesis.update_shard_count(StreamName="small", TargetShardCount=6, ScalingType="UNIFORM_SCALING")
    # 3 + 4 open shards across the account would exceed 5
    with raises_aws("LimitExceededException"):
        kinesis.update_shard_count(StreamName="small", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert len(open_shards(kinesis, "small")) == 2
    assert len(open_shards(kinesis, "big")) == 3


@pytest.mark.own_server
def test_update_shard_count_allows_only_the_configured_scalings_per_rolling_day_per_stream(kinesd_factory):
    server = kinesd_factory(flags={"--scalings-per-day": "2"})
    kinesis = helpers.make_client(server.endpoint)
    for name in ("often", "other"):
        kinesis.create_stream(StreamName=name, ShardCount=2)
        wait_for_status(kinesis, name)
    scale(kinesis, "often", 4)
    scale(kinesis, "often", 2)
    with raises_aws("LimitExceededException"):
        kinesis.update_shard_count(StreamName="often", TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    assert len(open_shards(kinesis, "often")) == 2
    scale(kinesis, "other", 3)  # the count is per stream
    assert len(open_shards(kinesis, "other")) == 3


# ==================================================================================== GetRecords at a shard's end


def child_entries(kinesis, name, parent_index):
    """The ChildShards entries AWS gives for a parent: every shard naming it, with all its parents."""
    out = []
    for sid, shard in sorted(by_id(kinesis, name).items()):
        if shard_id(parent_index) in parents_of(shard):
            out.append({"ShardId": sid, "ParentShards": parents_of(shard), "HashKeyRange": shard["HashKeyRange"]})
    return out


def sorted_children(children):
    return sorted(children, key=lambda c: c["ShardId"])


def test_get_records_on_a_split_shard_returns_its_records_then_child_shards_without_an_iterator(kinesis, make_stream):
    name = make_stream(1)
    for i in range(3):
        kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"r%d" % i)
    before_split = iterator(kinesis, name, 0)
    split(kinesis, name, 0, HALF)

    records, children = read_to_shard_end(kinesis, before_split, limit=1)
    assert [r["Data"] for r in records] == [b"r0", b"r1", b"r2"]
    assert sorted_children(children) == [
        {"ShardId": shard_id(1), "ParentShards": [shard_id(0)], "HashKeyRange": rng(0, HALF - 1)},
        {"ShardId": shard_id(2), "ParentShards": [shard_id(0)], "HashKeyRange": rng(HALF, TOP)},
    ]


def test_get_records_on_a_closed_shard_from_an_iterator_taken_after_the_split_reaches_the_end(kinesis, make_stream):
    name = make_stream(1)
    kinesis.put_records(StreamName=name, Records=[{"PartitionKey": str(i), "Data": b"d"} for i in range(5)])
    split(kinesis, name, 0, HALF)
    records, children = read_to_shard_end(kinesis, iterator(kinesis, name, 0))
    assert len(records) == 5
    assert sorted_children(children) == child_entries(kinesis, name, 0)


def test_get_records_on_a_closed_shard_that_never_held_a_record_answers_child_shards(kinesis, make_stream):
    name = make_stream(1)
    split(kinesis, name, 0, HALF)
    records, children = read_to_shard_end(kinesis, iterator(kinesis, name, 0))
    assert records == []
    assert [c["ShardId"] for c in sorted_children(children)] == [shard_id(1), shard_id(2)]


def test_get_records_from_latest_on_a_closed_shard_answers_no_records_and_child_shards(kinesis, make_stream):
    name = make_stream(1)
    kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"old")
    split(kinesis, name, 0, HALF)
    out = kinesis.get_records(ShardIterator=iterator(kinesis, name, 0, "LATEST"))
    assert out["Records"] == []
    assert "NextShardIterator" not in out
    assert sorted_children(out["ChildShards"]) == child_entries(kinesis, name, 0)


def test_get_records_after_the_last_sequence_number_of_a_closed_shard_answers_child_shards(kinesis, make_stream):
    name = make_stream(1)
    last = kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"last")["SequenceNumber"]
    split(kinesis, name, 0, HALF)
    at = iterator(kinesis, name, 0, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=last)
    records, children = read_to_shard_end(kinesis, at)
    assert [r["Data"] for r in records] == [b"last"]
    after = iterator(kinesis, name, 0, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=last)
    records, children = read_to_shard_end(kinesis, after)
    assert records == []
    assert len(children) == 2


def test_get_records_at_the_end_of_merged_parents_names_the_child_with_both_parents(kinesis, make_stream):
    name = make_stream(2)
    kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"low", ExplicitHashKey="0")
    kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"high", ExplicitHashKey=str(TOP))
    merge(kinesis, name, 0, 1)
    expected = [{"ShardId": shard_id(2), "ParentShards": [shard_id(0), shard_id(1)], "HashKeyRange": rng(0, TOP)}]
    for index, data in ((0, b"low"), (1, b"high")):
        records, children = read_to_shard_end(kinesis, iterator(kinesis, name, index))
        assert [r["Data"] for r in records] == [data]
        assert children == expected


def test_get_records_on_an_open_shard_never_answers_child_shards(kinesis, make_stream):
    name = make_stream(1)
    split(kinesis, name, 0, HALF)
    kinesis.put_record(StreamName=name, PartitionKey="p", Data=b"x", ExplicitHashKey="0")
    it = iterator(kinesis, name, 1)
    for _ in range(3):
        out = kinesis.get_records(ShardIterator=it)
        assert "ChildShards" not in out or out["ChildShards"] == [], out
        assert out.get("NextShardIterator"), out
        it = out["NextShardIterator"]


# ==================================================================================== lineage


KEYS = 200


def test_every_acknowledged_record_is_read_exactly_once_and_in_order_per_key_across_scaling_split_and_merge(
    kinesis, make_stream, endpoint
):
    name = make_stream(2)
    writer = helpers.make_client(endpoint)
    acked = {}  # (key, counter) -> (ShardId, SequenceNumber)
    counters = [0] * KEYS
    batches = [0]
    stop = threading.Event()
    errors = []

    def write():
        i = 0
        try:
            while not stop.is_set():
                entries = []
                for _ in range(100):  # 100 distinct keys per call: one record per key per call
                    key = i % KEYS
                    i += 1
                    entries.append((key, counters[key]))
                    counters[key] += 1
                out = writer.put_records(
                    StreamName=name,
                    Records=[{"PartitionKey": f"key-{k}", "Data": f"{k}:{c}".encode()} for k, c in entries],
                )
                for (k, c), r in zip(entries, out["Records"]):
                    if "SequenceNumber" in r:
                        acked[(k, c)] = (r["ShardId"], r["SequenceNumber"])
                batches[0] += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    def more_writes(n=4, timeout=15.0):
        target = batches[0] + n
        deadline = time.monotonic() + timeout
        while batches[0] < target and not errors:
            assert time.monotonic() < deadline, "the writer stalled"
            time.sleep(0.005)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        more_writes()
        scale(kinesis, name, 4)
        more_writes()
        scale(kinesis, name, 2)
        more_writes()
        opened = open_shards(kinesis, name)
        start, end = key_range(opened[0])
        kinesis.split_shard(
            StreamName=name, ShardToSplit=opened[0]["ShardId"], NewStartingHashKey=str((start + end) // 2)
        )
        wait_for_status(kinesis, name)
        more_writes()
        opened = open_shards(kinesis, name)
        assert key_range(opened[0])[1] + 1 == key_range(opened[1])[0]
        kinesis.merge_shards(
            StreamName=name, ShardToMerge=opened[0]["ShardId"], AdjacentShardToMerge=opened[1]["ShardId"]
        )
        wait_for_status(kinesis, name)
        more_writes()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert len(open_shards(kinesis, name)) == 2
    assert len(acked) >= 1000

    records, order = read_stream_by_lineage(kinesis, name)
    seen = collections.Counter()
    per_key = collections.defaultdict(list)
    last_seq = {}
    for sid, record in records:
        key, counter = map(int, record["Data"].decode().split(":"))
        assert record["PartitionKey"] == f"key-{key}"
        seen[(key, counter)] += 1
        assert acked.get((key, counter)) == (sid, record["SequenceNumber"]), (key, counter, sid)
        seq = int(record["SequenceNumber"])
        assert seq > last_seq.get(sid, -1), f"{sid} returned sequence numbers out of order"
        last_seq[sid] = seq
        per_key[key].append(counter)
    duplicates = [k for k, n in seen.items() if n > 1]
    missing = sorted(set(acked) - set(seen))
    assert not duplicates, f"{len(duplicates)} records read twice, e.g. {duplicates[:5]}"
    assert not missing, f"{len(missing)} acknowledged records never read, e.g. {missing[:5]}"
    assert set(seen) == set(acked)
    for key, counters_read in per_key.items():
        assert counters_read == sorted(counters_read), f"key-{key} read out of order: {counters_read[:20]}"
    assert len(order) == len(all_shards(kinesis, name)) > 6


# ==================================================================================== restart while UPDATING


@pytest.mark.own_server
def test_a_restart_while_a_split_is_updating_keeps_the_split_and_the_stream_turns_active_after_the_delay(
    kinesd_factory,
):
    server = kinesd_factory(flags={"--update-stream-ms": "3000"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="mid", ShardCount=1)
    wait_for_status(kinesis, "mid")
    keys = [f"k{i}" for i in range(50)]
    before = put_keys(kinesis, "mid", keys, b"before-")
    split_at = time.monotonic()
    kinesis.split_shard(StreamName="mid", ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF))

    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    status = kinesis.describe_stream_summary(StreamName="mid")["StreamDescriptionSummary"]["StreamStatus"]
    assert status == "UPDATING"
    during = put_keys(kinesis, "mid", keys, b"during-")
    wait_for_status(kinesis, "mid", timeout=10)
    active_after = time.monotonic() - split_at
    assert 2.5 <= active_after <= 8, active_after

    shards = by_id(kinesis, "mid")
    assert sorted(shards) == [shard_id(0), shard_id(1), shard_id(2)]
    assert not is_open(shards[shard_id(0)])
    assert [shards[shard_id(i)].get("ParentShardId") for i in (1, 2)] == [shard_id(0), shard_id(0)]
    assert shards[shard_id(1)]["HashKeyRange"] == rng(0, HALF - 1)
    assert shards[shard_id(2)]["HashKeyRange"] == rng(HALF, TOP)
    after = put_keys(kinesis, "mid", keys, b"after-")
    for key, sid, _ in after:
        assert sid == (shard_id(1) if hash_key(key) < HALF else shard_id(2))

    records, _ = read_stream_by_lineage(kinesis, "mid")
    read = sorted((r["Data"], sid, r["SequenceNumber"]) for sid, r in records)
    written = sorted(
        (tag + k.encode(), sid, seq)
        for tag, batch in ((b"before-", before), (b"during-", during), (b"after-", after))
        for k, sid, seq in batch
    )
    assert read == written
