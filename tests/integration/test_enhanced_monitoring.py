"""EnableEnhancedMonitoring / DisableEnhancedMonitoring: the stream's shard-level metrics.

AWS answers the set before (Current) and after (Desired) the call, spells "ALL" out as the seven
metrics, needs the stream ACTIVE, and makes it UPDATING while a change is applied; the set shows
in DescribeStream and DescribeStreamSummary as EnhancedMonitoring [{ShardLevelMetrics}].
"""

import pytest

import helpers
from helpers import assert_type_errors, assert_validation, constraint, raises_aws

ALL = {
    "IncomingBytes", "IncomingRecords", "OutgoingBytes", "OutgoingRecords",
    "WriteProvisionedThroughputExceeded", "ReadProvisionedThroughputExceeded", "IteratorAgeMilliseconds",
}
# AWS's own example lists them in this order (the order of its hash set)
AWS_ORDER = [
    "IncomingBytes", "OutgoingRecords", "IteratorAgeMilliseconds", "IncomingRecords",
    "ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded", "OutgoingBytes",
]
ENUM = ("Member must satisfy constraint: [Member must satisfy enum value set: [IncomingBytes, IncomingRecords, "
        "OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, "
        "IteratorAgeMilliseconds, ALL]]")
OPERATIONS = ["EnableEnhancedMonitoring", "DisableEnhancedMonitoring"]


def enabled(kinesis, name):
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]["EnhancedMonitoring"]
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["EnhancedMonitoring"]
    assert desc == summary and len(desc) == 1, (desc, summary)
    return desc[0]["ShardLevelMetrics"]


# ---- serialization and validation


@pytest.mark.parametrize("operation", OPERATIONS)
def test_shard_level_metrics_is_type_checked(api, operation):
    assert_type_errors(api, operation, "ShardLevelMetrics", "List")
    assert_type_errors(api, operation, "StreamName", "String")
    assert_type_errors(api, operation, "StreamARN", "String")
    assert_type_errors(api, operation, "StreamId", "String")


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_metric_element_that_is_not_text_is_a_serialization_error(api, operation):
    resp = api.call(operation, {"StreamName": "x", "ShardLevelMetrics": [23]})
    assert resp.status == 400 and resp.error_type == "SerializationException", resp


@pytest.mark.parametrize("operation", OPERATIONS)
def test_missing_metrics_and_stream_are_validation_errors(api, operation):
    assert_validation(api.call(operation, {}),
                      constraint(None, "streamName", "Member must not be null"),
                      constraint(None, "shardLevelMetrics", "Member must not be null"))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_empty_metric_list_is_a_validation_error(api, operation):
    assert_validation(api.call(operation, {"StreamName": "x", "ShardLevelMetrics": []}),
                      constraint("[]", "shardLevelMetrics", "Member must have length greater than or equal to 1"))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_more_than_seven_metrics_is_a_validation_error(api, operation):
    eight = ["IncomingBytes"] * 8
    assert_validation(api.call(operation, {"StreamName": "x", "ShardLevelMetrics": eight}),
                      constraint("[" + ", ".join(eight) + "]", "shardLevelMetrics",
                                 "Member must have length less than or equal to 7"))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_unknown_metric_is_a_validation_error_naming_the_model_enum(api, operation):
    resp = api.call(operation, {"StreamName": "x", "ShardLevelMetrics": ["IncomingBytes", "Bogus"]})
    assert_validation(resp, constraint("[IncomingBytes, Bogus]", "shardLevelMetrics", ENUM))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_validation_errors_are_counted_together(api, operation):
    resp = api.call(operation, {"StreamName": "bad name!", "ShardLevelMetrics": ["all"]})
    assert_validation(resp,
                      constraint("bad name!", "streamName", "Member must satisfy regular expression pattern: "
                                 "[a-zA-Z0-9_.-]+"),
                      constraint("[all]", "shardLevelMetrics", ENUM))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_unknown_stream_is_not_found(kinesis, operation):
    name = helpers.unique_name("nothing")
    method = getattr(kinesis, "enable_enhanced_monitoring" if operation.startswith("Enable")
                     else "disable_enhanced_monitoring")
    with raises_aws("ResourceNotFoundException", helpers.not_found_message(name)):
        method(StreamName=name, ShardLevelMetrics=["IncomingBytes"])


# ---- behaviour


def test_a_new_stream_has_no_metrics_enabled(kinesis, make_stream):
    assert enabled(kinesis, make_stream(1)) == []


def test_enable_answers_the_sets_before_and_after_and_describe_shows_them(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingBytes", "OutgoingBytes"])
    assert out["StreamName"] == name
    assert out["StreamARN"] == helpers.stream_arn(name)
    assert out["CurrentShardLevelMetrics"] == []
    assert out["DesiredShardLevelMetrics"] == ["IncomingBytes", "OutgoingBytes"]
    helpers.wait_for_status(kinesis, name)
    assert enabled(kinesis, name) == ["IncomingBytes", "OutgoingBytes"]

    out = kinesis.enable_enhanced_monitoring(StreamARN=helpers.stream_arn(name),
                                             ShardLevelMetrics=["IteratorAgeMilliseconds", "IncomingBytes"])
    assert out["CurrentShardLevelMetrics"] == ["IncomingBytes", "OutgoingBytes"]
    assert out["DesiredShardLevelMetrics"] == ["IncomingBytes", "IteratorAgeMilliseconds", "OutgoingBytes"]
    helpers.wait_for_status(kinesis, name)
    assert enabled(kinesis, name) == ["IncomingBytes", "IteratorAgeMilliseconds", "OutgoingBytes"]


def test_all_is_spelled_out_as_the_seven_metrics_in_aws_order(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    assert out["DesiredShardLevelMetrics"] == AWS_ORDER
    assert set(AWS_ORDER) == ALL
    helpers.wait_for_status(kinesis, name)
    assert enabled(kinesis, name) == AWS_ORDER


def test_disable_removes_only_the_named_metrics(kinesis, make_stream):
    name = make_stream(1)
    kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    helpers.wait_for_status(kinesis, name)
    out = kinesis.disable_enhanced_monitoring(StreamName=name,
                                              ShardLevelMetrics=["OutgoingRecords", "IncomingBytes"])
    assert out["StreamName"] == name and out["StreamARN"] == helpers.stream_arn(name)
    assert out["CurrentShardLevelMetrics"] == AWS_ORDER
    rest = [m for m in AWS_ORDER if m not in ("OutgoingRecords", "IncomingBytes")]
    assert out["DesiredShardLevelMetrics"] == rest
    helpers.wait_for_status(kinesis, name)
    assert enabled(kinesis, name) == rest

    out = kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    assert out["CurrentShardLevelMetrics"] == rest
    assert out["DesiredShardLevelMetrics"] == []
    helpers.wait_for_status(kinesis, name)
    assert enabled(kinesis, name) == []


def test_a_change_makes_the_stream_updating_and_a_second_change_meanwhile_is_in_use(kinesis, make_stream):
    name = make_stream(1)
    kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingRecords"])
    status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
    if status == "UPDATING":  # the update lasts --update-stream-ms (500 ms)
        with raises_aws("ResourceInUseException",
                        f"Stream {name} under account {helpers.ACCOUNT} not ACTIVE, instead in state UPDATING"):
            kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    helpers.wait_for_status(kinesis, name)
    assert enabled(kinesis, name) == ["IncomingRecords"]


def test_a_call_that_changes_nothing_leaves_the_stream_active(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingBytes"])
    assert out["CurrentShardLevelMetrics"] == [] and out["DesiredShardLevelMetrics"] == []
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


def test_a_stream_that_is_not_active_is_in_use(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    status = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamStatus"]
    if status != "CREATING":
        pytest.skip("the stream became ACTIVE before the call")
    with raises_aws("ResourceInUseException",
                    f"Stream {stream_name} under account {helpers.ACCOUNT} not ACTIVE, instead in state CREATING"):
        kinesis.enable_enhanced_monitoring(StreamName=stream_name, ShardLevelMetrics=["ALL"])


@pytest.mark.own_server
def test_the_enabled_metrics_survive_a_restart(kinesd_factory):
    server = kinesd_factory(flags={"--create-stream-ms": "0", "--update-stream-ms": "0"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="watched", ShardCount=2)
    helpers.wait_for_status(kinesis, "watched")
    kinesis.enable_enhanced_monitoring(StreamName="watched", ShardLevelMetrics=["ALL"])
    kinesis.disable_enhanced_monitoring(StreamName="watched", ShardLevelMetrics=["OutgoingBytes"])
    expected = [m for m in AWS_ORDER if m != "OutgoingBytes"]
    assert enabled(kinesis, "watched") == expected

    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    assert enabled(kinesis, "watched") == expected
    out = kinesis.enable_enhanced_monitoring(StreamName="watched", ShardLevelMetrics=["OutgoingBytes"])
    assert out["CurrentShardLevelMetrics"] == expected
    assert out["DesiredShardLevelMetrics"] == AWS_ORDER
