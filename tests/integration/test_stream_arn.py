"""StreamARN in place of StreamName, for every stream-scoped operation."""

import pytest

import helpers
from helpers import (
    assert_validation,
    constraint,
    not_found_message,
    raises_aws,
    shard_id,
    stream_arn,
)

NO_ARN = pytest.mark.not_kinesalite("drops StreamARN and asks for StreamName")

ARN_PATTERN = "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"


@pytest.fixture
def arn_client(kinesis):
    """The boto3 client, when its service model knows StreamARN."""
    if not helpers.client_supports(kinesis, "PutRecord", "StreamARN"):
        pytest.skip("the installed Kinesis service model has no StreamARN (awscli package missing)")
    return kinesis


@pytest.fixture
def arn_stream(arn_client, make_stream):
    name = make_stream(2)
    return name, stream_arn(name)


@NO_ARN
def test_describe_stream_by_arn_describes_that_stream(kinesis, arn_stream):
    name, arn = arn_stream
    desc = kinesis.describe_stream(StreamARN=arn)["StreamDescription"]
    assert (desc["StreamName"], desc["StreamARN"], len(desc["Shards"])) == (name, arn, 2)


@NO_ARN
def test_describe_stream_summary_by_arn_describes_that_stream(kinesis, arn_stream):
    name, arn = arn_stream
    summary = kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
    assert (summary["StreamName"], summary["OpenShardCount"]) == (name, 2)


@NO_ARN
def test_list_shards_by_arn_lists_that_streams_shards(kinesis, arn_stream):
    _, arn = arn_stream
    assert [s["ShardId"] for s in kinesis.list_shards(StreamARN=arn)["Shards"]] == [shard_id(0), shard_id(1)]


@NO_ARN
def test_put_and_get_records_by_arn_round_trip(kinesis, arn_stream):
    name, arn = arn_stream
    one = kinesis.put_record(StreamARN=arn, PartitionKey="a", Data=b"one", ExplicitHashKey="0")
    batch = kinesis.put_records(StreamARN=arn, Records=[{"PartitionKey": "a", "Data": b"two", "ExplicitHashKey": "1"}])
    assert one["ShardId"] == batch["Records"][0]["ShardId"] == shard_id(0)
    it = kinesis.get_shard_iterator(StreamARN=arn, ShardId=shard_id(0), ShardIteratorType="TRIM_HORIZON")
    out = kinesis.get_records(StreamARN=arn, ShardIterator=it["ShardIterator"])
    assert [r["Data"] for r in out["Records"]] == [b"one", b"two"]
    # The same records are there by name.
    assert [r["Data"] for r in helpers.read_all(kinesis, name, shard_id(0))] == [b"one", b"two"]


@NO_ARN
def test_tags_by_arn_add_list_and_remove(kinesis, arn_stream):
    name, arn = arn_stream
    kinesis.add_tags_to_stream(StreamARN=arn, Tags={"a": "1", "b": "2"})
    kinesis.remove_tags_from_stream(StreamARN=arn, TagKeys=["a"])
    assert [(t["Key"], t["Value"]) for t in kinesis.list_tags_for_stream(StreamARN=arn)["Tags"]] == [("b", "2")]
    assert [(t["Key"], t["Value"]) for t in kinesis.list_tags_for_stream(StreamName=name)["Tags"]] == [("b", "2")]


@NO_ARN
def test_delete_stream_by_arn_deletes_it(kinesis, arn_stream):
    name, arn = arn_stream
    kinesis.delete_stream(StreamARN=arn)
    helpers.wait_until_gone(kinesis, name)
    with raises_aws("ResourceNotFoundException", not_found_message(name)):
        kinesis.describe_stream_summary(StreamARN=arn)


@NO_ARN
def test_name_and_matching_arn_together_are_accepted(kinesis, arn_stream):
    name, arn = arn_stream
    out = kinesis.put_record(StreamName=name, StreamARN=arn, PartitionKey="a", Data=b"x")
    assert out["ShardId"].startswith("shardId-")


@NO_ARN
def test_name_and_arn_of_different_streams_are_refused(kinesis, arn_stream, make_stream):
    _, arn = arn_stream
    other = make_stream(1)
    with pytest.raises(kinesis.exceptions.ClientError) as err:
        kinesis.put_record(StreamName=other, StreamARN=arn, PartitionKey="a", Data=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert helpers.read_all(kinesis, other, shard_id(0)) == []


@NO_ARN
@pytest.mark.parametrize(
    "call",
    [
        lambda k, arn: k.describe_stream(StreamARN=arn),
        lambda k, arn: k.describe_stream_summary(StreamARN=arn),
        lambda k, arn: k.list_shards(StreamARN=arn),
        lambda k, arn: k.put_record(StreamARN=arn, PartitionKey="a", Data=b"x"),
        lambda k, arn: k.put_records(StreamARN=arn, Records=[{"PartitionKey": "a", "Data": b"x"}]),
        lambda k, arn: k.add_tags_to_stream(StreamARN=arn, Tags={"a": "b"}),
        lambda k, arn: k.list_tags_for_stream(StreamARN=arn),
        lambda k, arn: k.remove_tags_from_stream(StreamARN=arn, TagKeys=["a"]),
        lambda k, arn: k.delete_stream(StreamARN=arn),
    ],
    ids=["DescribeStream", "DescribeStreamSummary", "ListShards", "PutRecord", "PutRecords",
         "AddTagsToStream", "ListTagsForStream", "RemoveTagsFromStream", "DeleteStream"],
)
def test_arn_of_an_unknown_stream_answers_resource_not_found(arn_client, stream_name, call):
    kinesis = arn_client
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        call(kinesis, stream_arn(stream_name))


@NO_ARN
@pytest.mark.parametrize("arn", ["not-an-arn", "arn:aws:kinesis:us-east-1:123:stream/x",
                                 "arn:aws:sqs:us-east-1:000000000000:stream/x",
                                 "arn:aws:kinesis:us-east-1:000000000000:table/x"])
def test_malformed_arn_answers_validation_exception(api, arn):
    resp = api.call("DescribeStreamSummary", {"StreamARN": arn})
    assert_validation(resp, constraint(arn, "streamARN", ARN_PATTERN))


@NO_ARN
def test_get_shard_iterator_by_arn_of_unknown_stream_answers_resource_not_found(arn_client, stream_name):
    kinesis = arn_client
    with raises_aws(
        "ResourceNotFoundException",
        f"Shard {shard_id(0)} in stream {stream_name} under account {helpers.ACCOUNT} does not exist",
    ):
        kinesis.get_shard_iterator(StreamARN=stream_arn(stream_name), ShardId=shard_id(0),
                                   ShardIteratorType="LATEST")


@pytest.mark.parametrize(
    "operation,payload",
    [("DescribeStreamSummary", {}), ("DescribeStream", {}), ("DeleteStream", {}),
     ("PutRecord", {"PartitionKey": "a", "Data": ""}), ("ListTagsForStream", {})],
)
def test_neither_name_nor_arn_is_refused(api, operation, payload):
    # AWS has not documented this message; a ValidationException on streamName (pre-ARN AWS and
    # kinesalite) and an InvalidArgumentException are both plausible.
    resp = api.call(operation, payload)
    assert resp.status == 400, resp
    assert resp.error_type in ("ValidationException", "InvalidArgumentException"), resp


@NO_ARN
def test_get_records_with_the_arn_of_another_stream_than_the_iterators_is_refused(kinesis, arn_stream, make_stream):
    name, arn = arn_stream
    other = make_stream(1)
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"mine", ExplicitHashKey="0")
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType="TRIM_HORIZON")
    with raises_aws("InvalidArgumentException", "Invalid ShardIterator."):
        kinesis.get_records(StreamARN=stream_arn(other), ShardIterator=it["ShardIterator"])
    # the iterator still reads its own stream, named or not
    assert [r["Data"] for r in kinesis.get_records(StreamARN=arn, ShardIterator=it["ShardIterator"])["Records"]] == [b"mine"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"]] == [b"mine"]
