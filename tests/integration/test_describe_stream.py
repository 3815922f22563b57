"""DescribeStream and DescribeStreamSummary: serialization, validation and behaviour."""

import pytest

from helpers import (
    assert_type_errors,
    assert_validation,
    constraint,
    not_found_message,
    raises_aws,
    shard_id,
    stream_arn,
)

# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "path,type_name",
    [("StreamName", "String"), ("Limit", "Integer"), ("ExclusiveStartShardId", "String")],
)
def test_describe_stream_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "DescribeStream", path, type_name)


def test_describe_stream_summary_with_non_string_name_answers_serialization_exception(api):
    assert_type_errors(api, "DescribeStreamSummary", "StreamName", "String")


# ---------------------------------------------------------------------------------- validation


def test_describe_stream_with_empty_members_and_zero_limit_lists_every_error(api):
    resp = api.call("DescribeStream", {"StreamName": "", "Limit": 0, "ExclusiveStartShardId": ""})
    assert_validation(
        resp,
        constraint(0, "limit", "Member must have value greater than or equal to 1"),
        constraint("", "exclusiveStartShardId", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "exclusiveStartShardId", "Member must have length greater than or equal to 1"),
        constraint("", "streamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "streamName", "Member must have length greater than or equal to 1"),
    )


def test_describe_stream_with_limit_above_10000_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("DescribeStream", {"StreamName": name, "Limit": 10001})
    assert_validation(resp, constraint(10001, "limit", "Member must have value less than or equal to 10000"))


def test_describe_stream_summary_with_129_character_name_answers_validation_exception(api):
    name = "c" * 129
    resp = api.call("DescribeStreamSummary", {"StreamName": name})
    assert_validation(resp, constraint(name, "streamName", "Member must have length less than or equal to 128"))


def test_describe_stream_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.describe_stream(StreamName=stream_name)


def test_describe_stream_summary_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.describe_stream_summary(StreamName=stream_name)


# ---------------------------------------------------------------------------------- behaviour


def test_describe_stream_reports_every_field_of_an_active_stream(kinesis, make_stream):
    name = make_stream(2)
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert desc["StreamName"] == name
    assert desc["StreamARN"] == stream_arn(name)
    assert desc["StreamStatus"] == "ACTIVE"
    assert desc["HasMoreShards"] is False
    assert desc["RetentionPeriodHours"] == 24
    assert desc["EncryptionType"] == "NONE"
    assert desc["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert "StreamCreationTimestamp" in desc
    assert [s["ShardId"] for s in desc["Shards"]] == [shard_id(0), shard_id(1)]


@pytest.mark.not_kinesalite("no StreamModeDetails")
def test_describe_stream_reports_provisioned_mode(kinesis, make_stream):
    name = make_stream(1)
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert desc["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}


def test_describe_stream_summary_reports_every_field_of_an_active_stream(kinesis, make_stream):
    name = make_stream(3)
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["StreamName"] == name
    assert summary["StreamARN"] == stream_arn(name)
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["RetentionPeriodHours"] == 24
    assert summary["EncryptionType"] == "NONE"
    assert summary["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert summary["OpenShardCount"] == 3
    assert summary["ConsumerCount"] == 0
    assert "Shards" not in summary and "HasMoreShards" not in summary


@pytest.mark.not_kinesalite("no StreamModeDetails")
def test_describe_stream_summary_reports_provisioned_mode(kinesis, make_stream):
    name = make_stream(1)
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}


def test_describe_stream_and_summary_agree_on_creation_time(kinesis, make_stream):
    name = make_stream(1)
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert desc["StreamCreationTimestamp"] == summary["StreamCreationTimestamp"]


@pytest.mark.not_kinesalite("ignores Limit and ExclusiveStartShardId")
def test_describe_stream_with_limit_returns_that_many_shards_and_has_more_shards(kinesis, make_stream):
    name = make_stream(5)
    desc = kinesis.describe_stream(StreamName=name, Limit=2)["StreamDescription"]
    assert [s["ShardId"] for s in desc["Shards"]] == [shard_id(0), shard_id(1)]
    assert desc["HasMoreShards"] is True


@pytest.mark.not_kinesalite("ignores Limit and ExclusiveStartShardId")
def test_describe_stream_with_exclusive_start_shard_id_returns_the_shards_after_it(kinesis, make_stream):
    name = make_stream(5)
    desc = kinesis.describe_stream(StreamName=name, ExclusiveStartShardId=shard_id(1))["StreamDescription"]
    assert [s["ShardId"] for s in desc["Shards"]] == [shard_id(2), shard_id(3), shard_id(4)]
    assert desc["HasMoreShards"] is False


@pytest.mark.not_kinesalite("ignores Limit and ExclusiveStartShardId")
def test_describe_stream_pages_through_every_shard_exactly_once(kinesis, make_stream):
    name = make_stream(7)
    seen, kwargs = [], {"StreamName": name, "Limit": 3}
    for _ in range(10):
        desc = kinesis.describe_stream(**kwargs)["StreamDescription"]
        seen += [s["ShardId"] for s in desc["Shards"]]
        if not desc["HasMoreShards"]:
            break
        kwargs["ExclusiveStartShardId"] = desc["Shards"][-1]["ShardId"]
    assert seen == [shard_id(i) for i in range(7)]


@pytest.mark.not_kinesalite("ignores Limit and ExclusiveStartShardId")
def test_describe_stream_with_exclusive_start_at_the_last_shard_returns_no_shards(kinesis, make_stream):
    name = make_stream(2)
    desc = kinesis.describe_stream(StreamName=name, ExclusiveStartShardId=shard_id(1))["StreamDescription"]
    assert desc["Shards"] == []
    assert desc["HasMoreShards"] is False


def test_describe_stream_paginator_of_the_sdk_collects_every_shard(kinesis, make_stream):
    name = make_stream(4)
    pages = kinesis.get_paginator("describe_stream").paginate(StreamName=name)
    shards = [s["ShardId"] for page in pages for s in page["StreamDescription"]["Shards"]]
    assert shards == [shard_id(i) for i in range(4)]


@pytest.mark.not_kinesalite("ignores Limit and ExclusiveStartShardId")
def test_describe_stream_returns_at_most_100_shards_per_call(kinesis, make_stream):
    name = make_stream(101)
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert [s["ShardId"] for s in desc["Shards"]] == [shard_id(i) for i in range(100)]
    assert desc["HasMoreShards"] is True
    desc = kinesis.describe_stream(StreamName=name, Limit=10000)["StreamDescription"]
    assert len(desc["Shards"]) == 100 and desc["HasMoreShards"] is True
    desc = kinesis.describe_stream(StreamName=name, ExclusiveStartShardId=shard_id(99))["StreamDescription"]
    assert [s["ShardId"] for s in desc["Shards"]] == [shard_id(100)]
    assert desc["HasMoreShards"] is False
