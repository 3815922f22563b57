"""Every member of the current AWS model is type-checked (SerializationException on a wrong JSON
type), including the members newer than the SDK models installed here: StreamId on every stream
operation, WarmThroughputMiBps on CreateStream and UpdateStreamMode, MaxRecordSizeInKiB.

The newer members are listed from the current model (botocore 1.43's kinesis service-2.json);
the members the installed botocore model knows are swept from it, so neither list can miss one.
"""

import botocore.session
import pytest

import helpers
from helpers import assert_type_errors, assert_validation, constraint

# Operations kinesd serves whose input has StreamId in the current model.
STREAM_ID_OPERATIONS = [
    "AddTagsToStream", "DecreaseStreamRetentionPeriod", "DeleteStream", "DescribeStream",
    "DescribeStreamSummary", "GetRecords", "GetShardIterator", "IncreaseStreamRetentionPeriod",
    "ListShards", "ListTagsForStream", "MergeShards", "PutRecord", "PutRecords", "RemoveTagsFromStream",
    "SplitShard", "UpdateMaxRecordSize", "UpdateShardCount", "UpdateStreamMode",
    "EnableEnhancedMonitoring", "DisableEnhancedMonitoring", "UpdateStreamWarmThroughput",
]
STREAM_ID_PATTERN = "Member must satisfy regular expression pattern: [a-z0-9]{20}-[a-z0-9]{3}"
SERVED = set(STREAM_ID_OPERATIONS) | {"CreateStream", "ListStreams", "DescribeLimits"}

_TYPES = {"string": "String", "integer": "Integer", "long": "Integer", "blob": "Blob", "list": "List",
          "map": "Map", "structure": "Structure", "timestamp": "Timestamp"}


def installed_members():
    model = botocore.session.get_session().get_service_model("kinesis")
    for op in sorted(model.operation_names):
        if op not in SERVED:
            continue
        shape = model.operation_model(op).input_shape
        for name, member in (shape.members.items() if shape else []):
            if member.type_name in _TYPES:
                yield op, name, _TYPES[member.type_name]


@pytest.mark.parametrize("operation, member, type_name", list(installed_members()))
def test_every_member_of_the_installed_model_is_type_checked(api, operation, member, type_name):
    assert_type_errors(api, operation, member, type_name)


@pytest.mark.parametrize("operation", STREAM_ID_OPERATIONS)
def test_stream_id_is_type_checked_everywhere_the_model_has_it(api, operation):
    assert_type_errors(api, operation, "StreamId", "String")


@pytest.mark.parametrize("operation", STREAM_ID_OPERATIONS)
def test_a_malformed_stream_id_is_a_validation_error(api, operation):
    resp = api.call(operation, {"StreamId": "Not-An-Id"})
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    assert constraint("Not-An-Id", "streamId", STREAM_ID_PATTERN) in resp.error_message


def test_a_well_formed_stream_id_is_accepted(api, make_stream):
    name = make_stream(1)
    out = api.ok("DescribeStreamSummary", {"StreamName": name, "StreamId": "abcdefghij0123456789-abc"})
    assert out["StreamDescriptionSummary"]["StreamName"] == name
    api.ok("PutRecord", {"StreamName": name, "StreamId": "abcdefghij0123456789-abc", "PartitionKey": "k",
                         "Data": "AAAA"})


@pytest.mark.parametrize("operation", ["CreateStream", "UpdateStreamMode"])
def test_warm_throughput_is_type_checked(api, operation):
    assert_type_errors(api, operation, "WarmThroughputMiBps", "Integer")


def test_create_stream_with_negative_warm_throughput_is_a_validation_error(api):
    name = helpers.unique_name("warm")
    resp = api.call("CreateStream", {"StreamName": name, "ShardCount": 1, "WarmThroughputMiBps": -1})
    assert_validation(resp, constraint(-1, "warmThroughputMiBps", "Member must have value greater than or equal to 0"))


@pytest.mark.parametrize("operation", ["CreateStream", "UpdateMaxRecordSize"])
def test_max_record_size_is_type_checked(api, operation):
    assert_type_errors(api, operation, "MaxRecordSizeInKiB", "Integer")
