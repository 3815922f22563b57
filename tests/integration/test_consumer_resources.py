"""The resource operations on a consumer's ARN: TagResource, UntagResource and
ListTagsForResource (tags given at RegisterStreamConsumer included), and PutResourcePolicy,
GetResourcePolicy and DeleteResourcePolicy. The installed SDK models predate these members and
operations, so the calls are signed JSON (RawApi)."""

import json
import time

import pytest

import helpers
from helpers import assert_validation, constraint

ACCOUNT = helpers.ACCOUNT


def register(api, stream, name, tags=None):
    payload = {"StreamARN": helpers.stream_arn(stream), "ConsumerName": name}
    if tags is not None:
        payload["Tags"] = tags
    return api.ok("RegisterStreamConsumer", payload)["Consumer"]["ConsumerARN"]


def tags_of(api, arn):
    return api.ok("ListTagsForResource", {"ResourceARN": arn})["Tags"]


def test_tags_given_at_registration_are_listed_in_key_order(api, make_stream):
    arn = register(api, make_stream(1), "tagged", {"team": "data", "env": "prod", "empty": ""})
    assert tags_of(api, arn) == [{"Key": "empty", "Value": ""}, {"Key": "env", "Value": "prod"},
                                 {"Key": "team", "Value": "data"}]


def test_a_consumer_without_tags_lists_none(api, make_stream):
    assert tags_of(api, register(api, make_stream(1), "bare")) == []


def test_tag_and_untag_a_consumer_leave_the_streams_tags_alone(api, make_stream):
    stream = make_stream(1)
    api.ok("AddTagsToStream", {"StreamName": stream, "Tags": {"owner": "stream"}})
    arn = register(api, stream, "app", {"a": "1"})
    api.ok("TagResource", {"ResourceARN": arn, "Tags": {"b": "2", "a": "one"}})
    assert tags_of(api, arn) == [{"Key": "a", "Value": "one"}, {"Key": "b", "Value": "2"}]
    api.ok("UntagResource", {"ResourceARN": arn, "TagKeys": ["a", "unknown"]})
    assert tags_of(api, arn) == [{"Key": "b", "Value": "2"}]
    assert tags_of(api, helpers.stream_arn(stream)) == [{"Key": "owner", "Value": "stream"}]
    assert api.ok("ListTagsForStream", {"StreamName": stream})["Tags"] == [{"Key": "owner", "Value": "stream"}]


def test_a_consumer_holds_at_most_fifty_tags(api, make_stream):
    arn = register(api, make_stream(1), "many", {f"k{i}": "v" for i in range(45)})
    resp = api.error("TagResource", {"ResourceARN": arn, "Tags": {f"n{i}": "v" for i in range(6)}},
                     "InvalidArgumentException")
    assert "50 tags" in resp.error_message
    assert len(tags_of(api, arn)) == 45  # nothing of the refused call was kept
    api.ok("TagResource", {"ResourceARN": arn, "Tags": {f"n{i}": "v" for i in range(5)}})
    assert len(tags_of(api, arn)) == 50


def test_tag_characters_are_checked_for_consumers(api, make_stream):
    arn = register(api, make_stream(1), "chars")
    api.error("TagResource", {"ResourceARN": arn, "Tags": {"bad*key": "v"}}, "InvalidArgumentException",
              "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, "
              "_ . / = + - % @.")
    assert tags_of(api, arn) == []


def test_an_unknown_consumer_is_not_found(api, make_stream):
    stream = make_stream(1)
    arn = f"arn:aws:kinesis:{helpers.REGION}:{ACCOUNT}:stream/{stream}/consumer/ghost:1700000000"
    message = f"Consumer ghost with creation timestamp 1700000000 under stream: {stream}, account {ACCOUNT} not found."
    for op, extra in (("ListTagsForResource", {}), ("TagResource", {"Tags": {"a": "b"}}),
                      ("UntagResource", {"TagKeys": ["a"]}), ("GetResourcePolicy", {}),
                      ("PutResourcePolicy", {"Policy": "{}"}), ("DeleteResourcePolicy", {})):
        api.error(op, {"ResourceARN": arn, **extra}, "ResourceNotFoundException", message)


def test_a_deregistered_consumers_arn_is_not_found(api, make_stream):
    stream = make_stream(1)
    arn = register(api, stream, "short-lived", {"a": "b"})
    api.ok("DeregisterStreamConsumer", {"ConsumerARN": arn})
    # DELETING for --register-consumer-ms, then gone
    deadline = time.monotonic() + 10
    while api.call("DescribeStreamConsumer", {"ConsumerARN": arn}).status == 200:
        assert time.monotonic() < deadline, "the consumer is still there"
        time.sleep(0.05)
    resp = api.call("ListTagsForResource", {"ResourceARN": arn})
    assert resp.error_type == "ResourceNotFoundException", resp


def test_a_consumer_arn_must_still_match_the_resource_pattern(api):
    resp = api.call("TagResource", {"ResourceARN": "arn:aws:kinesis:us-east-1:12:stream/x/consumer/y:1",
                                    "Tags": {"a": "b"}})
    assert_validation(resp, constraint("arn:aws:kinesis:us-east-1:12:stream/x/consumer/y:1", "resourceARN",
                                       "Member must satisfy regular expression pattern: "
                                       "arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+"))


def test_a_resource_policy_on_a_consumer_is_stored_read_and_removed(api, make_stream):
    stream = make_stream(1)
    arn = register(api, stream, "shared")
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": "{}"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": ["kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"], "Resource": arn}]})
    api.ok("PutResourcePolicy", {"ResourceARN": arn, "Policy": policy})
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": policy}
    # the stream's policy is another resource's
    assert api.ok("GetResourcePolicy", {"ResourceARN": helpers.stream_arn(stream)}) == {"Policy": "{}"}
    api.ok("DeleteResourcePolicy", {"ResourceARN": arn})
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": "{}"}


@pytest.mark.own_server
def test_consumer_tags_and_policies_survive_a_restart(kinesd_factory):
    server = kinesd_factory({"--register-consumer-ms": "0"})
    api = helpers.RawApi(server.endpoint)
    api.ok("CreateStream", {"StreamName": "s", "ShardCount": 1})
    helpers.wait_for_status(helpers.make_client(server.endpoint), "s")
    arn = register(api, "s", "c", {"x": "1"})
    api.ok("TagResource", {"ResourceARN": arn, "Tags": {"y": "2"}})
    policy = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kinesis:SubscribeToShard",
                                        "Resource": arn}]})
    api.ok("PutResourcePolicy", {"ResourceARN": arn, "Policy": policy})

    server.restart()
    api = helpers.RawApi(server.endpoint)
    assert tags_of(api, arn) == [{"Key": "x", "Value": "1"}, {"Key": "y", "Value": "2"}]
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": policy}
    # the consumer itself is untouched by the rewrite of its row
    desc = api.ok("DescribeStreamConsumer", {"ConsumerARN": arn})["ConsumerDescription"]
    assert desc["ConsumerStatus"] == "ACTIVE" and desc["ConsumerARN"] == arn
