"""ListShards: serialization, validation and behaviour."""

import pytest

from helpers import (
    assert_type_errors,
    assert_validation,
    constraint,
    expected_ranges,
    not_found_message,
    raises_aws,
    shard_id,
)

# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "path,type_name",
    [
        ("StreamName", "String"),
        ("MaxResults", "Integer"),
        ("ExclusiveStartShardId", "String"),
        ("NextToken", "String"),
        ("StreamCreationTimestamp", "Timestamp"),
    ],
)
def test_list_shards_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "ListShards", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_list_shards_with_empty_name_and_zero_max_results_lists_every_error(api):
    resp = api.call("ListShards", {"StreamName": "", "MaxResults": 0, "ExclusiveStartShardId": ""})
    assert_validation(
        resp,
        constraint(0, "maxResults", "Member must have value greater than or equal to 1"),
        constraint("", "exclusiveStartShardId", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "exclusiveStartShardId", "Member must have length greater than or equal to 1"),
        constraint("", "streamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "streamName", "Member must have length greater than or equal to 1"),
    )


def test_list_shards_with_max_results_above_10000_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("ListShards", {"StreamName": name, "MaxResults": 10001})
    assert_validation(resp, constraint(10001, "maxResults", "Member must have value less than or equal to 10000"))


def test_list_shards_with_next_token_and_stream_name_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws("InvalidArgumentException", "NextToken and StreamName cannot be provided together."):
        kinesis.list_shards(StreamName=name, NextToken="c29tZSB0b2tlbg==")


def test_list_shards_with_neither_next_token_nor_stream_name_answers_invalid_argument(api):
    resp = api.call("ListShards", {})
    assert resp.status == 400, resp
    assert resp.error_type == "InvalidArgumentException", resp


def test_list_shards_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.list_shards(StreamName=stream_name)


@pytest.mark.not_kinesalite("no NextToken in ListShards")
def test_list_shards_with_a_made_up_next_token_answers_invalid_argument(api):
    resp = api.call("ListShards", {"NextToken": "bm90IGEgcmVhbCB0b2tlbg=="})
    assert resp.status == 400, resp
    assert resp.error_type in ("InvalidArgumentException", "ExpiredNextTokenException"), resp


# ---------------------------------------------------------------------------------- behaviour


def test_list_shards_returns_every_shard_with_its_hash_key_range(kinesis, make_stream):
    name = make_stream(3)
    out = kinesis.list_shards(StreamName=name)
    assert "NextToken" not in out
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(i) for i in range(3)]
    ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in out["Shards"]]
    assert ranges == expected_ranges(3)
    for shard in out["Shards"]:
        assert set(shard) == {"ShardId", "HashKeyRange", "SequenceNumberRange"}
        assert set(shard["SequenceNumberRange"]) == {"StartingSequenceNumber"}
        assert shard["SequenceNumberRange"]["StartingSequenceNumber"].isdigit()


def test_list_shards_and_describe_stream_agree(kinesis, make_stream):
    name = make_stream(4)
    listed = kinesis.list_shards(StreamName=name)["Shards"]
    described = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert listed == described


def test_list_shards_after_exclusive_start_shard_id_returns_the_later_shards(kinesis, make_stream):
    name = make_stream(4)
    out = kinesis.list_shards(StreamName=name, ExclusiveStartShardId=shard_id(1))
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(2), shard_id(3)]


@pytest.mark.not_kinesalite("ignores MaxResults and NextToken")
def test_list_shards_with_max_results_returns_that_many_shards_and_a_next_token(kinesis, make_stream):
    name = make_stream(5)
    out = kinesis.list_shards(StreamName=name, MaxResults=2)
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(0), shard_id(1)]
    assert out["NextToken"]


@pytest.mark.not_kinesalite("ignores MaxResults and NextToken")
def test_list_shards_pages_with_next_token_through_every_shard_exactly_once(kinesis, make_stream):
    name = make_stream(5)
    seen, kwargs = [], {"StreamName": name, "MaxResults": 2}
    for _ in range(10):
        out = kinesis.list_shards(**kwargs)
        seen += [s["ShardId"] for s in out["Shards"]]
        if "NextToken" not in out:
            break
        kwargs = {"NextToken": out["NextToken"], "MaxResults": 2}
    assert seen == [shard_id(i) for i in range(5)]


@pytest.mark.not_kinesalite("ignores MaxResults and NextToken")
def test_list_shards_gives_no_next_token_on_a_page_that_ends_exactly_at_the_last_shard(kinesis, make_stream):
    name = make_stream(2)
    out = kinesis.list_shards(StreamName=name, MaxResults=2)
    assert len(out["Shards"]) == 2
    # AWS may give a token whose next page is empty; if it does, that page must be empty.
    if "NextToken" in out:
        again = kinesis.list_shards(NextToken=out["NextToken"])
        assert again["Shards"] == []
        assert "NextToken" not in again


@pytest.mark.not_kinesalite("ignores MaxResults and NextToken")
def test_list_shards_paginator_of_the_sdk_is_refused_on_its_second_page_as_aws_does(kinesis, make_stream):
    # botocore's paginator resends StreamName with NextToken; AWS refuses that (botocore issue 2009).
    name = make_stream(3)
    pages = kinesis.get_paginator("list_shards").paginate(StreamName=name, PaginationConfig={"PageSize": 2})
    with raises_aws("InvalidArgumentException", "NextToken and StreamName cannot be provided together."):
        list(pages)


@pytest.mark.not_kinesalite("ignores MaxResults and NextToken")
def test_list_shards_next_token_with_exclusive_start_shard_id_pages_after_that_shard(kinesis, make_stream):
    name = make_stream(5)
    out = kinesis.list_shards(StreamName=name, ExclusiveStartShardId=shard_id(0), MaxResults=2)
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(1), shard_id(2)]
    out = kinesis.list_shards(NextToken=out["NextToken"])
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(3), shard_id(4)]
