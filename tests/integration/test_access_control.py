"""IAM-style access control under --auth: identity policies from the credentials file's
policy_file, resource policies (PutResourcePolicy) granting another account's principals access
to a stream by its ARN, and AWS's AccessDeniedException texts.

Users of the credentials file (account 000000000000 unless named):
  admin   no policy file: everything in its own account
  reader  Allow kinesis:Get*, kinesis:Describe*, kinesis:List*; Deny kinesis:Put*
  narrow  Allow kinesis:DescribeStreamSummary on one stream, only in us-east-1
  nodel   Allow NotAction kinesis:Delete* on every resource
  other   account 111122223333, no policy file
"""

import json

import pytest

import helpers
from helpers import raises_aws
from test_auth import client, start

pytestmark = pytest.mark.own_server

ACCOUNT = helpers.ACCOUNT
OTHER = "111122223333"
KEYS = {
    "admin": ("AKIAADMIN00000000001", "admin/secret/0123456789abcdefghijklmnopqr"),
    "reader": ("AKIAREADER0000000002", "reader/secret/0123456789abcdefghijklmnop"),
    "narrow": ("AKIANARROW0000000003", "narrow/secret/0123456789abcdefghijklmnop"),
    "nodel": ("AKIANODEL00000000004", "nodel/secret/0123456789abcdefghijklmnopq"),
    "other": ("AKIAOTHER00000000005", "other/secret/0123456789abcdefghijklmnopq"),
}


def arn(name, account=ACCOUNT, region=helpers.REGION):
    return f"arn:aws:kinesis:{region}:{account}:stream/{name}"


def denied(user, action, resource, why, account=ACCOUNT):
    return f"User: arn:aws:iam::{account}:user/{user} is not authorized to perform: kinesis:{action} on resource: {resource} {why}"


def no_identity(action):
    return f"because no identity-based policy allows the kinesis:{action} action"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("access")
    (d / "reader.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kinesis:Get*", "kinesis:Describe*", "kinesis:List*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "kinesis:Put*", "Resource": "*"},
    ]}))
    (d / "narrow.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Action": "kinesis:DescribeStreamSummary", "Resource": arn("open*"),
        "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}},
    }}))
    (d / "nodel.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotAction": "kinesis:Delete*", "Resource": "*"},
    ]}))
    text = ""
    for user, (akid, secret) in KEYS.items():
        text += f"[{user}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
        if user == "other":
            text += f"aws_account_id = {OTHER}\n"
        elif user != "admin":
            text += f"policy_file = {user}.json\n"
    (d / "credentials").write_text(text)
    srv = start(tmp_path_factory, d / "credentials")
    clients = {user: client(srv.endpoint, key) for user, key in KEYS.items()}
    admin = clients["admin"]
    for name in ("open-1", "closed-1"):
        admin.create_stream(StreamName=name, ShardCount=1)
        helpers.wait_for_status(admin, name)
    admin.put_record(StreamName="open-1", PartitionKey="a", Data=b"first")
    yield srv, clients
    assert srv.stop() == 0, srv.log()


def signed_call(srv, user, operation, payload, region=helpers.REGION):
    from test_auth import send, signed

    body, headers = signed(srv.endpoint, operation, payload, key=KEYS[user], region=region)
    return send(srv.endpoint, body, headers)


def test_a_user_without_a_policy_file_may_do_everything_in_its_account(env):
    _, k = env
    assert "open-1" in k["admin"].list_streams()["StreamNames"]
    k["admin"].add_tags_to_stream(StreamName="closed-1", Tags={"a": "b"})


def test_an_identity_policy_allows_reads_and_its_explicit_deny_refuses_writes(env):
    _, k = env
    r = k["reader"]
    assert r.describe_stream_summary(StreamName="open-1")["StreamDescriptionSummary"]["StreamName"] == "open-1"
    it = r.get_shard_iterator(StreamName="open-1", ShardId=helpers.shard_id(0), ShardIteratorType="TRIM_HORIZON")
    assert [x["Data"] for x in r.get_records(ShardIterator=it["ShardIterator"])["Records"]] == [b"first"]
    with raises_aws("AccessDeniedException", denied("reader", "PutRecord", arn("open-1"),
                                                    "with an explicit deny in an identity-based policy")):
        r.put_record(StreamName="open-1", PartitionKey="a", Data=b"no")
    with raises_aws("AccessDeniedException", denied("reader", "CreateStream", arn("new-1"), no_identity("CreateStream"))):
        r.create_stream(StreamName="new-1", ShardCount=1)


def test_resource_wildcards_and_conditions_narrow_what_is_allowed(env):
    srv, k = env
    k["narrow"].describe_stream_summary(StreamName="open-1")
    with raises_aws("AccessDeniedException", denied("narrow", "DescribeStreamSummary", arn("closed-1"),
                                                    no_identity("DescribeStreamSummary"))):
        k["narrow"].describe_stream_summary(StreamName="closed-1")
    with raises_aws("AccessDeniedException", denied("narrow", "ListShards", arn("open-1"), no_identity("ListShards"))):
        k["narrow"].list_shards(StreamName="open-1")
    # the condition on aws:RequestedRegion fails in another region
    resp = signed_call(srv, "narrow", "DescribeStreamSummary", {"StreamName": "open-1"}, region="eu-west-1")
    assert resp.error_type == "AccessDeniedException", resp
    assert resp.error_message == denied("narrow", "DescribeStreamSummary", arn("open-1", region="eu-west-1"),
                                        no_identity("DescribeStreamSummary"))


def test_not_action_allows_everything_but_what_it_names(env):
    _, k = env
    k["nodel"].list_streams()
    with raises_aws("AccessDeniedException", denied("nodel", "DeleteStream", arn("closed-1"), no_identity("DeleteStream"))):
        k["nodel"].delete_stream(StreamName="closed-1")


def test_get_records_is_authorized_on_the_iterators_stream(env):
    srv, k = env
    it = k["admin"].get_shard_iterator(StreamName="open-1", ShardId=helpers.shard_id(0),
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    resp = signed_call(srv, "narrow", "GetRecords", {"ShardIterator": it})
    assert resp.error_type == "AccessDeniedException", resp
    assert resp.error_message == denied("narrow", "GetRecords", arn("open-1"), no_identity("GetRecords"))


def test_a_resource_policy_grants_another_account_read_access_by_arn_until_it_is_removed(env):
    srv, k = env
    other = k["other"]
    target = arn("open-1")
    no_resource = "because no resource-based policy allows the kinesis:DescribeStreamSummary action"
    with raises_aws("AccessDeniedException", denied("other", "DescribeStreamSummary", target, no_resource, OTHER)):
        other.describe_stream_summary(StreamARN=target)
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
        "Action": ["kinesis:DescribeStreamSummary", "kinesis:GetShardIterator", "kinesis:GetRecords"],
        "Resource": target,
    }]}
    admin_api = helpers.RawApi(srv.endpoint)
    admin_api.call = lambda op, payload: signed_call(srv, "admin", op, payload)  # signed as admin
    assert admin_api.call("PutResourcePolicy", {"ResourceARN": target, "Policy": json.dumps(policy)}).status == 200
    assert other.describe_stream_summary(StreamARN=target)["StreamDescriptionSummary"]["StreamName"] == "open-1"
    it = other.get_shard_iterator(StreamARN=target, ShardId=helpers.shard_id(0), ShardIteratorType="TRIM_HORIZON")
    assert [x["Data"] for x in other.get_records(ShardIterator=it["ShardIterator"], StreamARN=target)["Records"]][:1] == [b"first"]
    with raises_aws("AccessDeniedException", denied("other", "PutRecord", target,
                                                    "because no resource-based policy allows the kinesis:PutRecord action",
                                                    OTHER)):
        other.put_record(StreamARN=target, PartitionKey="a", Data=b"x")
    # by name, another account names its own streams: it has none
    with raises_aws("ResourceNotFoundException", f"Stream open-1 under account {OTHER} not found."):
        other.describe_stream_summary(StreamName="open-1")
    assert admin_api.call("DeleteResourcePolicy", {"ResourceARN": target}).status == 200
    with raises_aws("AccessDeniedException", denied("other", "DescribeStreamSummary", target, no_resource, OTHER)):
        other.describe_stream_summary(StreamARN=target)


def test_an_explicit_deny_in_a_resource_policy_wins_over_the_identity(env):
    srv, k = env
    target = arn("closed-1")
    policy = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kinesis:PutRecord", "Resource": target}]}
    assert signed_call(srv, "admin", "PutResourcePolicy", {"ResourceARN": target, "Policy": json.dumps(policy)}).status == 200
    try:
        with raises_aws("AccessDeniedException", denied("admin", "PutRecord", target,
                                                        "with an explicit deny in a resource-based policy")):
            k["admin"].put_record(StreamName="closed-1", PartitionKey="a", Data=b"x")
        k["admin"].describe_stream_summary(StreamName="closed-1")  # what it does not deny stays allowed
    finally:
        signed_call(srv, "admin", "DeleteResourcePolicy", {"ResourceARN": target})
    k["admin"].put_record(StreamName="closed-1", PartitionKey="a", Data=b"x")


def test_a_policy_file_that_is_not_an_identity_policy_stops_the_server(tmp_path):
    import subprocess

    from conftest import kinesd_binary

    (tmp_path / "p.json").write_text(json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*",
                                                                 "Action": "*", "Resource": "*"}]}))
    (tmp_path / "credentials").write_text("[u]\naws_access_key_id = K\naws_secret_access_key = S\npolicy_file = p.json\n")
    out = subprocess.run([str(kinesd_binary()), "--ephemeral", "--port", "0", "--auth", str(tmp_path / "credentials")],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and "cannot name a Principal" in out.stderr


def test_a_resource_policy_on_a_consumer_grants_another_account_that_consumer(env):
    srv, k = env
    admin, other = k["admin"], k["other"]
    carn = admin.register_stream_consumer(StreamARN=arn("open-1"), ConsumerName="shared")["Consumer"]["ConsumerARN"]
    no_resource = "because no resource-based policy allows the kinesis:DescribeStreamConsumer action"
    try:
        with raises_aws("AccessDeniedException", denied("other", "DescribeStreamConsumer", carn, no_resource, OTHER)):
            other.describe_stream_consumer(ConsumerARN=carn)
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
            "Action": "kinesis:DescribeStreamConsumer", "Resource": carn}]}
        resp = signed_call(srv, "admin", "PutResourcePolicy", {"ResourceARN": carn, "Policy": json.dumps(policy)})
        assert resp.status == 200, resp
        assert other.describe_stream_consumer(ConsumerARN=carn)["ConsumerDescription"]["ConsumerARN"] == carn
        # the consumer's policy grants nothing on its stream
        with raises_aws("AccessDeniedException"):
            other.describe_stream_summary(StreamARN=arn("open-1"))
        assert signed_call(srv, "admin", "DeleteResourcePolicy", {"ResourceARN": carn}).status == 200
        with raises_aws("AccessDeniedException", denied("other", "DescribeStreamConsumer", carn, no_resource, OTHER)):
            other.describe_stream_consumer(ConsumerARN=carn)
    finally:
        admin.deregister_stream_consumer(ConsumerARN=carn)
