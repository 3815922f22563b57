"""DeleteStream: serialization, validation and behaviour."""

import pytest

import helpers
from helpers import (
    ACCOUNT,
    assert_type_errors,
    assert_validation,
    constraint,
    not_found_message,
    raises_aws,
)

# ---------------------------------------------------------------------------------- serialization


def test_delete_stream_with_non_string_name_answers_serialization_exception(api):
    assert_type_errors(api, "DeleteStream", "StreamName", "String")


# ---------------------------------------------------------------------------------- validation


def test_delete_stream_with_empty_name_answers_validation_exception(api):
    resp = api.call("DeleteStream", {"StreamName": ""})
    assert_validation(
        resp,
        constraint("", "streamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "streamName", "Member must have length greater than or equal to 1"),
    )


def test_delete_stream_with_129_character_name_answers_validation_exception(api):
    name = "b" * 129
    resp = api.call("DeleteStream", {"StreamName": name})
    assert_validation(resp, constraint(name, "streamName", "Member must have length less than or equal to 128"))


def test_delete_stream_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.delete_stream(StreamName=stream_name)


# ---------------------------------------------------------------------------------- behaviour


def test_delete_stream_removes_it_from_describe_and_list(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.delete_stream(StreamName=name)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    helpers.wait_until_gone(kinesis, name)
    with raises_aws("ResourceNotFoundException", not_found_message(name)):
        kinesis.describe_stream(StreamName=name)
    assert name not in helpers.list_all_stream_names(kinesis)


def test_delete_stream_answers_an_empty_body(api, kinesis, make_stream):
    name = make_stream(1)
    resp = api.call("DeleteStream", {"StreamName": name})
    assert resp.status == 200, resp
    assert resp.raw == b""
    helpers.wait_until_gone(kinesis, name)


def test_delete_stream_twice_answers_resource_not_found_the_second_time(kinesis, make_stream):
    name = make_stream(1)
    kinesis.delete_stream(StreamName=name)
    helpers.wait_until_gone(kinesis, name)
    with raises_aws("ResourceNotFoundException", not_found_message(name)):
        kinesis.delete_stream(StreamName=name)


def test_delete_stream_then_create_again_gives_an_empty_stream(kinesis, make_stream):
    name = make_stream(1)
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"old incarnation")
    kinesis.delete_stream(StreamName=name)
    helpers.wait_until_gone(kinesis, name)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(kinesis, name)
    assert helpers.read_all(kinesis, name, helpers.shard_id(0)) == []
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"new incarnation")
    assert [r["Data"] for r in helpers.read_all(kinesis, name, helpers.shard_id(0))] == [b"new incarnation"]


def test_delete_stream_makes_its_records_unreachable(kinesis, make_stream):
    name = make_stream(1)
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"x")
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=helpers.shard_id(0), ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    kinesis.delete_stream(StreamName=name)
    helpers.wait_until_gone(kinesis, name)
    with raises_aws(
        "ResourceNotFoundException",
        f"Shard {helpers.shard_id(0)} in stream {name} under account {ACCOUNT} does not exist",
    ):
        kinesis.get_records(ShardIterator=iterator)
    with raises_aws("ResourceNotFoundException", not_found_message(name)):
        kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"x")


def test_delete_stream_leaves_other_streams_alone(kinesis, make_stream):
    keep = make_stream(1)
    drop = make_stream(1)
    kinesis.put_record(StreamName=keep, PartitionKey="a", Data=b"kept")
    kinesis.delete_stream(StreamName=drop)
    helpers.wait_until_gone(kinesis, drop)
    assert [r["Data"] for r in helpers.read_all(kinesis, keep, helpers.shard_id(0))] == [b"kept"]


@pytest.mark.own_server
def test_delete_stream_is_deleting_until_the_delete_delay_has_passed(kinesd_factory):
    server = kinesd_factory({"--delete-stream-ms": "1000"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="going", ShardCount=1)
    helpers.wait_for_status(kinesis, "going")
    kinesis.delete_stream(StreamName="going")
    summary = kinesis.describe_stream_summary(StreamName="going")["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "DELETING"
    # A stream being deleted takes no records, and its name is still taken.
    with raises_aws("ResourceNotFoundException", not_found_message("going")):
        kinesis.put_record(StreamName="going", PartitionKey="a", Data=b"x")
    with raises_aws("ResourceInUseException", f"Stream going under account {ACCOUNT} already exists."):
        kinesis.create_stream(StreamName="going", ShardCount=1)
    helpers.wait_until_gone(kinesis, "going")
    assert "going" not in kinesis.list_streams()["StreamNames"]


@pytest.mark.own_server
def test_delete_stream_while_it_is_still_creating_succeeds(kinesd_factory):
    server = kinesd_factory({"--create-stream-ms": "60000"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="young", ShardCount=1)
    summary = kinesis.describe_stream_summary(StreamName="young")["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "CREATING"
    kinesis.delete_stream(StreamName="young")
    helpers.wait_until_gone(kinesis, "young")
    assert "young" not in kinesis.list_streams()["StreamNames"]
