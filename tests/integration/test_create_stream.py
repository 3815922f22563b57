"""CreateStream: serialization, validation and behaviour."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import helpers
from helpers import (
    ACCOUNT,
    assert_type_errors,
    assert_validation,
    constraint,
    expected_ranges,
    raises_aws,
    shard_id,
    stream_arn,
)

NAME_PATTERN = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"


# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "path,type_name",
    [("StreamName", "String"), ("ShardCount", "Integer")],
)
def test_create_stream_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "CreateStream", path, type_name)


@pytest.mark.not_kinesalite("no StreamModeDetails")
def test_create_stream_with_stream_mode_details_not_an_object_answers_serialization_exception(api):
    assert_type_errors(api, "CreateStream", "StreamModeDetails", "Structure")


# ---------------------------------------------------------------------------------- validation


def test_create_stream_without_stream_name_answers_validation_exception(api):
    resp = api.call("CreateStream", {"ShardCount": 1})
    assert_validation(resp, constraint(None, "streamName", "Member must not be null"))


def test_create_stream_with_empty_name_and_zero_shards_lists_three_validation_errors(api):
    resp = api.call("CreateStream", {"StreamName": "", "ShardCount": 0})
    assert_validation(
        resp,
        constraint(0, "shardCount", "Member must have value greater than or equal to 1"),
        constraint("", "streamName", NAME_PATTERN),
        constraint("", "streamName", "Member must have length greater than or equal to 1"),
    )


def test_create_stream_with_129_character_name_answers_validation_exception(api):
    name = "a" * 129
    resp = api.call("CreateStream", {"StreamName": name, "ShardCount": 1})
    assert_validation(resp, constraint(name, "streamName", "Member must have length less than or equal to 128"))


@pytest.mark.parametrize("name", ["has space", "slash/name", "colon:name", "ünïcode"])
def test_create_stream_with_name_outside_pattern_answers_validation_exception(api, name):
    resp = api.call("CreateStream", {"StreamName": name, "ShardCount": 1})
    assert_validation(resp, constraint(name, "streamName", NAME_PATTERN))


def test_create_stream_with_negative_shard_count_answers_validation_exception(api, stream_name):
    resp = api.call("CreateStream", {"StreamName": stream_name, "ShardCount": -1})
    assert_validation(resp, constraint(-1, "shardCount", "Member must have value greater than or equal to 1"))


@pytest.mark.not_kinesalite("no StreamModeDetails")
def test_create_stream_with_unknown_stream_mode_answers_validation_exception(api, stream_name):
    resp = api.call(
        "CreateStream",
        {"StreamName": stream_name, "ShardCount": 1, "StreamModeDetails": {"StreamMode": "FAST"}},
    )
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    helpers.check_message(
        resp.error_message,
        re.compile(
            r"1 validation error detected: Value 'FAST' at 'streamModeDetails.streamMode' failed to "
            r"satisfy constraint: Member must satisfy enum value set: "
            r"\[(PROVISIONED, ON_DEMAND|ON_DEMAND, PROVISIONED)\]"
        ),
    )


@pytest.mark.not_kinesalite("no StreamModeDetails")
def test_create_stream_with_stream_mode_details_missing_stream_mode_answers_validation_exception(api, stream_name):
    resp = api.call("CreateStream", {"StreamName": stream_name, "ShardCount": 1, "StreamModeDetails": {}})
    assert_validation(resp, constraint(None, "streamModeDetails.streamMode", "Member must not be null"))


def test_create_stream_that_exists_answers_resource_in_use(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws("ResourceInUseException", f"Stream {name} under account {ACCOUNT} already exists."):
        kinesis.create_stream(StreamName=name, ShardCount=1)


# ---------------------------------------------------------------------------------- behaviour


def test_create_stream_answers_an_empty_body(api, stream_name, kinesis):
    resp = api.call("CreateStream", {"StreamName": stream_name, "ShardCount": 1})
    assert resp.status == 200, resp
    assert resp.raw == b""
    helpers.wait_for_status(kinesis, stream_name)


def test_create_stream_with_three_shards_splits_the_hash_key_space_evenly(kinesis, make_stream):
    name = make_stream(3)
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert desc["StreamStatus"] == "ACTIVE"
    assert [s["ShardId"] for s in desc["Shards"]] == [shard_id(i) for i in range(3)]
    ranges = [(s["HashKeyRange"]["StartingHashKey"], s["HashKeyRange"]["EndingHashKey"]) for s in desc["Shards"]]
    # The exact values AWS gives a 3-shard stream.
    assert ranges == [
        ("0", "113427455640312821154458202477256070484"),
        ("113427455640312821154458202477256070485", "226854911280625642308916404954512140969"),
        ("226854911280625642308916404954512140970", "340282366920938463463374607431768211455"),
    ]


def test_create_stream_with_two_shards_puts_the_boundary_at_half_the_key_space(kinesis, make_stream):
    name = make_stream(2)
    shards = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert shards[0]["HashKeyRange"] == {
        "StartingHashKey": "0",
        "EndingHashKey": "170141183460469231731687303715884105727",
    }
    assert shards[1]["HashKeyRange"] == {
        "StartingHashKey": "170141183460469231731687303715884105728",
        "EndingHashKey": "340282366920938463463374607431768211455",
    }


@pytest.mark.parametrize("count", [1, 5, 7])
def test_create_stream_gives_shard_i_the_range_starting_at_i_times_floor_of_2_to_128_over_n(
    kinesis, make_stream, count
):
    name = make_stream(count)
    shards = helpers.all_shards(kinesis, name)
    got = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in shards]
    assert got == expected_ranges(count)
    for shard in shards:
        seq = shard["SequenceNumberRange"]
        assert re.fullmatch(r"[0-9]+", seq["StartingSequenceNumber"])
        assert "EndingSequenceNumber" not in seq
        assert "ParentShardId" not in shard and "AdjacentParentShardId" not in shard


def test_create_stream_makes_a_provisioned_stream_with_24_hour_retention(kinesis, make_stream):
    name = make_stream(2)
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["StreamName"] == name
    assert summary["StreamARN"] == stream_arn(name)
    assert summary["RetentionPeriodHours"] == 24
    assert summary["EncryptionType"] == "NONE"
    assert summary["OpenShardCount"] == 2


@pytest.mark.not_kinesalite("no StreamModeDetails")
def test_create_stream_with_provisioned_mode_reports_that_mode(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2, StreamModeDetails={"StreamMode": "PROVISIONED"})
    helpers.wait_for_status(kinesis, stream_name)
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert summary["OpenShardCount"] == 2


@pytest.mark.not_kinesalite("ignores Tags in CreateStream")
def test_create_stream_with_tags_attaches_them_to_the_stream(api, kinesis, stream_name):
    # Tags arrived in CreateStream after Debian's SDK models were cut, so send the JSON directly.
    api.ok("CreateStream", {"StreamName": stream_name, "ShardCount": 1, "Tags": {"team": "data", "env": "test"}})
    helpers.wait_for_status(kinesis, stream_name)
    tags = kinesis.list_tags_for_stream(StreamName=stream_name)["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "test"), ("team", "data")]


def test_create_stream_timestamp_is_close_to_now(kinesis, make_stream):
    before = time.time()
    name = make_stream(1)
    created = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    # A generous window: this checks the unit and epoch, not the speed of the server.
    assert before - 300 <= created.timestamp() <= time.time() + 300


def test_create_stream_name_may_use_every_allowed_character(kinesis, stream_name):
    name = stream_name[:60] + "_.-AZaz09"
    try:
        kinesis.create_stream(StreamName=name, ShardCount=1)
        helpers.wait_for_status(kinesis, name)
        assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamName"] == name
    finally:
        kinesis.delete_stream(StreamName=name)


def test_create_stream_name_of_128_characters_is_accepted(kinesis, stream_name):
    name = (stream_name + "x" * 128)[:128]
    try:
        kinesis.create_stream(StreamName=name, ShardCount=1)
        helpers.wait_for_status(kinesis, name)
        assert name in helpers.list_all_stream_names(kinesis)
    finally:
        kinesis.delete_stream(StreamName=name)


@pytest.mark.own_server
def test_create_stream_is_creating_until_the_create_delay_has_passed(kinesd_factory):
    server = kinesd_factory({"--create-stream-ms": "1000"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="slow", ShardCount=2)
    desc = kinesis.describe_stream(StreamName="slow")["StreamDescription"]
    assert desc["StreamStatus"] == "CREATING"
    assert desc["Shards"] == []
    assert desc["HasMoreShards"] is False
    # A stream that is still being created takes no records.
    with raises_aws("ResourceNotFoundException", helpers.not_found_message("slow")):
        kinesis.put_record(StreamName="slow", PartitionKey="a", Data=b"x")
    helpers.wait_for_status(kinesis, "slow", "ACTIVE", timeout=10)
    desc = kinesis.describe_stream(StreamName="slow")["StreamDescription"]
    assert len(desc["Shards"]) == 2
    assert kinesis.put_record(StreamName="slow", PartitionKey="a", Data=b"x")["ShardId"].startswith("shardId-")


@pytest.mark.own_server
def test_create_stream_beyond_the_shard_limit_answers_limit_exceeded(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    with raises_aws("LimitExceededException") as err:
        kinesis.create_stream(StreamName="huge", ShardCount=100000)
    assert err.error["Message"].startswith(
        f"This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. "
        "Current shard count for the account: 0. Limit: "
    )
    assert "Number of additional shards that would have resulted from this request: 100000." in err.error["Message"]
    with raises_aws("ResourceNotFoundException"):
        kinesis.describe_stream_summary(StreamName="huge")


@pytest.mark.own_server
def test_create_stream_over_a_configured_shard_limit_answers_the_exact_aws_message(kinesd_factory):
    server = kinesd_factory({"--shard-limit": "3"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="two", ShardCount=2)
    helpers.wait_for_status(kinesis, "two")
    with raises_aws(
        "LimitExceededException",
        f"This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. "
        "Current shard count for the account: 2. Limit: 3. "
        "Number of additional shards that would have resulted from this request: 2. "
        "Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) "
        "for current limits and how to request higher limits.",
    ):
        kinesis.create_stream(StreamName="more", ShardCount=2)
    kinesis.create_stream(StreamName="one-more", ShardCount=1)
    helpers.wait_for_status(kinesis, "one-more")
    kinesis.delete_stream(StreamName="two")
    helpers.wait_until_gone(kinesis, "two")
    kinesis.create_stream(StreamName="after-delete", ShardCount=2)
    helpers.wait_for_status(kinesis, "after-delete")


def test_create_stream_raced_from_many_clients_succeeds_exactly_once(endpoint, kinesis, stream_name):
    def create(_):
        client = helpers.make_client(endpoint, retry_rate_limited=True)  # CreateStream: 5 calls/s
        try:
            client.create_stream(StreamName=stream_name, ShardCount=1)
            return "created"
        except client.exceptions.ResourceInUseException:
            return "in use"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(8)))
    assert sorted(outcomes) == ["created"] + ["in use"] * 7
    helpers.wait_for_status(kinesis, stream_name)
