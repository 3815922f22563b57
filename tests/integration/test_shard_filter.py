"""ListShards ShardFilter: which shards each filter type selects after resharding.

The semantics are AWS's API reference for ShardFilter: AT_LATEST the open shards; AT_TRIM_HORIZON
the shards open at the trim horizon (for a stream younger than its retention period: the shards
it was created with); FROM_TRIM_HORIZON every shard within the retention period; AT_TIMESTAMP the
shards open at the timestamp; FROM_TIMESTAMP the open shards plus the closed shards that closed at
or after the timestamp; AFTER_SHARD_ID the shards after ShardId, as ExclusiveStartShardId. A
NextToken carries the filter, which cannot be sent again beside it.

The stream used below, in creation order (t_a, t_b, t_c fall between the steps):

    create: shard 0 over the whole hash space           t_a
    split 0 at 2^127: shards 1 and 2                    t_b
    split 1 at 2^126: shards 3 and 4                    t_c
"""

import time

import pytest

from helpers import (
    POW_128,
    assert_validation,
    constraint,
    raises_aws,
    shard_id,
    wait_for_status,
)

HALF = POW_128 // 2
GAP = 0.06  # seconds between steps, so millisecond timestamps fall clearly between them


def ids(*indexes):
    return [shard_id(i) for i in indexes]


@pytest.fixture
def resharded(kinesis, make_stream):
    """A stream split twice, and timestamps (epoch seconds) between its steps."""
    name = make_stream(1)
    time.sleep(GAP)
    t_a = time.time()
    time.sleep(GAP)
    kinesis.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(HALF))
    wait_for_status(kinesis, name)
    time.sleep(GAP)
    t_b = time.time()
    time.sleep(GAP)
    kinesis.split_shard(StreamName=name, ShardToSplit=shard_id(1), NewStartingHashKey=str(HALF // 2))
    wait_for_status(kinesis, name)
    time.sleep(GAP)
    t_c = time.time()
    return name, {"t_a": t_a, "t_b": t_b, "t_c": t_c}


def listed(api, name, shard_filter, **extra):
    out = api.ok("ListShards", dict({"StreamName": name, "ShardFilter": shard_filter}, **extra))
    return [s["ShardId"] for s in out["Shards"]]


def test_at_latest_lists_only_the_open_shards(api, resharded):
    name, _ = resharded
    assert listed(api, name, {"Type": "AT_LATEST"}) == ids(2, 3, 4)


def test_at_latest_lists_every_shard_of_a_stream_never_resharded(api, make_stream):
    name = make_stream(3)
    assert listed(api, name, {"Type": "AT_LATEST"}) == ids(0, 1, 2)


def test_from_trim_horizon_lists_every_shard_within_the_retention_period(api, resharded):
    name, _ = resharded
    assert listed(api, name, {"Type": "FROM_TRIM_HORIZON"}) == ids(0, 1, 2, 3, 4)


def test_at_trim_horizon_of_a_young_stream_lists_the_shards_it_was_created_with(api, resharded):
    name, _ = resharded
    assert listed(api, name, {"Type": "AT_TRIM_HORIZON"}) == ids(0)


@pytest.mark.parametrize(
    "moment,expected",
    [("t_a", (0,)), ("t_b", (1, 2)), ("t_c", (2, 3, 4))],
)
def test_at_timestamp_lists_the_shards_open_at_that_moment(api, resharded, moment, expected):
    name, times = resharded
    assert listed(api, name, {"Type": "AT_TIMESTAMP", "Timestamp": round(times[moment], 3)}) == ids(*expected)


@pytest.mark.parametrize(
    "moment,expected",
    [("t_a", (0, 1, 2, 3, 4)), ("t_b", (1, 2, 3, 4)), ("t_c", (2, 3, 4))],
)
def test_from_timestamp_lists_the_open_shards_and_those_closed_since_that_moment(api, resharded, moment, expected):
    name, times = resharded
    assert listed(api, name, {"Type": "FROM_TIMESTAMP", "Timestamp": round(times[moment], 3)}) == ids(*expected)


def test_from_timestamp_before_the_stream_existed_lists_every_shard(api, resharded):
    name, times = resharded
    assert listed(api, name, {"Type": "FROM_TIMESTAMP", "Timestamp": round(times["t_a"] - 3600, 3)}) == ids(
        0, 1, 2, 3, 4
    )


def test_after_shard_id_lists_the_shards_after_the_given_one_as_exclusive_start_shard_id_does(api, resharded):
    name, _ = resharded
    filtered = listed(api, name, {"Type": "AFTER_SHARD_ID", "ShardId": shard_id(1)})
    assert filtered == ids(2, 3, 4)
    exclusive = api.ok("ListShards", {"StreamName": name, "ExclusiveStartShardId": shard_id(1)})["Shards"]
    assert filtered == [s["ShardId"] for s in exclusive]


def test_the_boto3_client_sends_shard_filter_and_gets_the_open_shards(kinesis, resharded):
    name, _ = resharded
    out = kinesis.list_shards(StreamName=name, ShardFilter={"Type": "AT_LATEST"})
    assert [s["ShardId"] for s in out["Shards"]] == ids(2, 3, 4)
    assert all("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in out["Shards"])


def test_a_next_token_keeps_the_shard_filter_of_the_first_page(api, resharded):
    name, _ = resharded
    out = api.ok("ListShards", {"StreamName": name, "ShardFilter": {"Type": "AT_LATEST"}, "MaxResults": 1})
    pages = [[s["ShardId"] for s in out["Shards"]]]
    while out.get("NextToken"):
        assert len(pages) < 10, pages
        out = api.ok("ListShards", {"NextToken": out["NextToken"], "MaxResults": 1})
        pages.append([s["ShardId"] for s in out["Shards"]])
    assert [sid for page in pages for sid in page] == ids(2, 3, 4)
    assert pages[0] == ids(2)


def test_list_shards_with_next_token_and_shard_filter_answers_invalid_argument(api, kinesis, make_stream):
    name = make_stream(3)
    token = kinesis.list_shards(StreamName=name, MaxResults=1)["NextToken"]
    api.error(
        "ListShards",
        {"NextToken": token, "ShardFilter": {"Type": "AT_LATEST"}},
        "InvalidArgumentException",
        "NextToken and ShardFilter cannot be provided together.",
    )


def test_a_shard_filter_without_a_type_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("ListShards", {"StreamName": name, "ShardFilter": {"ShardId": shard_id(0)}})
    assert_validation(resp, constraint(None, "shardFilter.type", "Member must not be null"))


def test_a_shard_filter_of_an_unknown_type_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("ListShards", {"StreamName": name, "ShardFilter": {"Type": "NEWEST"}})
    assert_validation(
        resp,
        constraint(
            "NEWEST",
            "shardFilter.type",
            "Member must satisfy enum value set: "
            "[AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
        ),
    )


def test_shard_filter_on_an_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException"):
        kinesis.list_shards(StreamName=stream_name, ShardFilter={"Type": "AT_LATEST"})
