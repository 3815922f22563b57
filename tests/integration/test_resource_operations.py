"""TagResource / UntagResource / ListTagsForResource, PutResourcePolicy / GetResourcePolicy /
DeleteResourcePolicy on stream ARNs, and DescribeAccountSettings / UpdateAccountSettings.

The boto3 and AWS CLI models installed here predate these operations, so the calls are signed
raw JSON (helpers.RawApi, botocore's signer); the JavaScript SDK, whose model has them, calls
them in resources.test.mjs.
"""

import json

import pytest

import helpers
from helpers import ACCOUNT, assert_type_errors, assert_validation, constraint, not_found_message, stream_arn

pytestmark = pytest.mark.not_kinesalite("kinesalite has none of these operations")

ARN_PATTERN = "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "read",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": ["kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStreamSummary"],
        "Resource": "*",
    }],
}


def tags_of(api, arn):
    return api.ok("ListTagsForResource", {"ResourceARN": arn})["Tags"]


# ---------------------------------------------------------------------------------------- tags


def test_tag_resource_adds_tags_that_list_tags_for_stream_shows_too(api, kinesis, make_stream):
    name = make_stream(1)
    arn = stream_arn(name)
    assert api.ok("TagResource", {"ResourceARN": arn, "Tags": {"team": "data", "env": "test"}}) is None  # no body
    assert tags_of(api, arn) == [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "data"}]
    assert {(t["Key"], t["Value"]) for t in kinesis.list_tags_for_stream(StreamName=name)["Tags"]} == {
        ("env", "test"), ("team", "data")}
    api.ok("UntagResource", {"ResourceARN": arn, "TagKeys": ["env", "absent"]})
    assert tags_of(api, arn) == [{"Key": "team", "Value": "data"}]


def test_tag_resource_beyond_50_tags_answers_invalid_argument(api, make_stream):
    name = make_stream(1)
    arn = stream_arn(name)
    api.ok("TagResource", {"ResourceARN": arn, "Tags": {f"k{i}": "v" for i in range(50)}})
    resp = api.error("TagResource", {"ResourceARN": arn, "Tags": {"one-more": "v"}}, "InvalidArgumentException")
    assert resp.error_message.startswith(f"Failed to add tags to stream {name} under account {ACCOUNT} because")


def test_tag_resource_checks_tag_characters_as_add_tags_does(api, make_stream):
    arn = stream_arn(make_stream(1))
    resp = api.error("TagResource", {"ResourceARN": arn, "Tags": {"a;b": "1"}}, "InvalidArgumentException")
    assert resp.error_message.startswith("Some tags contain invalid characters.")


@pytest.mark.parametrize("operation, payload", [
    ("TagResource", {"Tags": {"a": "b"}}), ("UntagResource", {"TagKeys": ["a"]}), ("ListTagsForResource", {}),
    ("PutResourcePolicy", {"Policy": json.dumps(POLICY)}), ("GetResourcePolicy", {}), ("DeleteResourcePolicy", {}),
])
def test_resource_operations_on_an_unknown_stream_answer_resource_not_found(api, stream_name, operation, payload):
    api.error(operation, dict(payload, ResourceARN=stream_arn(stream_name)), "ResourceNotFoundException",
              not_found_message(stream_name))


@pytest.mark.parametrize("operation", ["TagResource", "UntagResource", "ListTagsForResource", "PutResourcePolicy",
                                       "GetResourcePolicy", "DeleteResourcePolicy"])
def test_resource_operations_validate_the_resource_arn(api, operation):
    resp = api.call(operation, {"ResourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "Tags": {"a": "b"},
                                "TagKeys": ["a"], "Policy": "{}"})
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    assert constraint("arn:aws:sqs:us-east-1:000000000000:q", "resourceARN", ARN_PATTERN) in resp.error_message
    assert_type_errors(api, operation, "ResourceARN", "String")


def test_tag_resource_without_tags_is_a_validation_error(api, make_stream):
    resp = api.call("TagResource", {"ResourceARN": stream_arn(make_stream(1))})
    assert_validation(resp, constraint(None, "tags", "Member must not be null"))


# ------------------------------------------------------------------------------------ policies


def test_put_get_and_delete_a_resource_policy(api, make_stream):
    arn = stream_arn(make_stream(1))
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": "{}"}
    text = json.dumps(POLICY)
    assert api.ok("PutResourcePolicy", {"ResourceARN": arn, "Policy": text}) == {}
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": text}
    api.ok("DeleteResourcePolicy", {"ResourceARN": arn})
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": "{}"}


def test_a_resource_policy_survives_a_restart_and_not_the_stream(kinesd_factory):
    server = kinesd_factory()
    api = helpers.RawApi(server.endpoint)
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="kept", ShardCount=1)
    helpers.wait_for_status(kinesis, "kept")
    arn = stream_arn("kept")
    api.ok("PutResourcePolicy", {"ResourceARN": arn, "Policy": json.dumps(POLICY)})
    server.restart()
    api = helpers.RawApi(server.endpoint)
    kinesis = helpers.make_client(server.endpoint)
    assert json.loads(api.ok("GetResourcePolicy", {"ResourceARN": arn})["Policy"]) == POLICY
    kinesis.delete_stream(StreamName="kept")
    helpers.wait_until_gone(kinesis, "kept")
    kinesis.create_stream(StreamName="kept", ShardCount=1)
    helpers.wait_for_status(kinesis, "kept")
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": "{}"}


@pytest.mark.parametrize("policy, why", [
    ("not json", "not valid JSON"),
    ("[]", "JSON object"),
    (json.dumps({"Version": "2012-10-17"}), "Statement"),
    (json.dumps({"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "kinesis:*"}]}), "Effect"),
    (json.dumps({"Statement": [{"Effect": "Allow", "Action": "kinesis:*"}]}), "Principal"),
    (json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*"}]}), "Action"),
    (json.dumps(dict(POLICY, Statement=[dict(POLICY["Statement"][0], Sid="x" * 21000)])), "at most 20480 bytes"),
])
def test_put_resource_policy_refuses_a_document_that_is_not_a_resource_policy(api, make_stream, policy, why):
    arn = stream_arn(make_stream(1))
    resp = api.error("PutResourcePolicy", {"ResourceARN": arn, "Policy": policy}, "InvalidArgumentException")
    assert resp.error_message.startswith("Invalid policy document: ") and why in resp.error_message, resp
    assert api.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": "{}"}


def test_put_resource_policy_without_a_policy_is_a_validation_error(api, make_stream):
    resp = api.call("PutResourcePolicy", {"ResourceARN": stream_arn(make_stream(1))})
    assert_validation(resp, constraint(None, "policy", "Member must not be null"))


# ---------------------------------------------------------------------------- account settings


@pytest.mark.own_server
def test_account_settings_enable_and_disable_the_commitment_after_its_24_hours(kinesd_factory):
    server = kinesd_factory({"--test-clock": None})
    api = helpers.RawApi(server.endpoint)
    assert api.ok("DescribeAccountSettings", {}) == {"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}}
    on = api.ok("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}})
    c = on["MinimumThroughputBillingCommitment"]
    assert c["Status"] == "ENABLED"
    assert c["EarliestAllowedEndAt"] - c["StartedAt"] == 24 * 3600
    assert api.ok("DescribeAccountSettings", {}) == on
    # disabling early keeps it until its earliest allowed end
    early = api.ok("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}})
    assert early["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END"
    helpers.http_request(server.endpoint, "POST", f"/_test/advance-clock?ms={24 * 3600 * 1000}")
    done = api.ok("DescribeAccountSettings", {})["MinimumThroughputBillingCommitment"]
    assert done["Status"] == "DISABLED" and done["EndedAt"] == c["EarliestAllowedEndAt"]


def test_update_account_settings_validates_the_status(api):
    resp = api.call("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "MAYBE"}})
    assert_validation(resp, constraint("MAYBE", "minimumThroughputBillingCommitment.status",
                                       "Member must satisfy enum value set: [ENABLED, DISABLED]"))
    resp = api.call("UpdateAccountSettings", {})
    assert_validation(resp, constraint(None, "minimumThroughputBillingCommitment", "Member must not be null"))
