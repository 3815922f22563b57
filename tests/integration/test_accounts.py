"""Accounts and regions isolate streams (under --auth): each credential belongs to an account,
and streams, their ARNs, consumers, tags and iterators are per account and region (the region of
the credential scope). Two accounts may have streams of the same name; one never sees the other's,
except by StreamARN where a resource policy grants it.

Users of the credentials file:
  alice  account 000000000000 (the server's --account-id)
  bob    account 111122223333
"""

import json

import pytest

import helpers
from helpers import raises_aws
from test_auth import aws_cli, client, send, signed, start

pytestmark = pytest.mark.own_server

ALICE_ACCT = helpers.ACCOUNT
BOB_ACCT = "111122223333"
KEYS = {
    "alice": ("AKIAALICEACCOUNT0001", "alice/secret/0123456789abcdefghijklmnopq"),
    "bob": ("AKIABOBACCOUNT000002", "bob/secret/0123456789abcdefghijklmnopqrs"),
}
WEST = "us-west-2"


def arn(name, account, region=helpers.REGION):
    return f"arn:aws:kinesis:{region}:{account}:stream/{name}"


def regional_client(endpoint, key, region):
    import boto3
    from botocore.config import Config

    return boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1], region_name=region).client(
        "kinesis", endpoint_url=endpoint, config=Config(retries={"max_attempts": 0}))


def credentials(d):
    """alice in the server's account, bob in BOB_ACCT."""
    path = d / "credentials"
    path.write_text(
        f"[alice]\naws_access_key_id = {KEYS['alice'][0]}\naws_secret_access_key = {KEYS['alice'][1]}\n"
        f"[bob]\naws_access_key_id = {KEYS['bob'][0]}\naws_secret_access_key = {KEYS['bob'][1]}\n"
        f"aws_account_id = {BOB_ACCT}\n")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    creds = credentials(tmp_path_factory.mktemp("accounts"))
    srv = start(tmp_path_factory, creds)
    k = {user: client(srv.endpoint, key) for user, key in KEYS.items()}
    # a stream of the same name in each account, of different shapes
    k["alice"].create_stream(StreamName="same", ShardCount=1)
    k["bob"].create_stream(StreamName="same", ShardCount=2)
    for user in k:
        helpers.wait_for_status(k[user], "same")
    k["alice"].put_record(StreamName="same", PartitionKey="a", Data=b"alice's")
    k["bob"].put_record(StreamName="same", PartitionKey="a", Data=b"bob's")
    yield srv, k, creds
    assert srv.stop() == 0, srv.log()


def all_records(c, name=None, stream_arn=None):
    by = {"StreamARN": stream_arn} if stream_arn else {"StreamName": name}
    out = []
    for sh in c.list_shards(**by)["Shards"]:
        it = c.get_shard_iterator(ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON", **by)["ShardIterator"]
        out += [r["Data"] for r in c.get_records(ShardIterator=it, **({"StreamARN": stream_arn} if stream_arn else {}))["Records"]]
    return out


def test_two_accounts_each_have_their_own_stream_of_the_same_name(env):
    _, k, _ = env
    a = k["alice"].describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]
    b = k["bob"].describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]
    assert a["StreamARN"] == arn("same", ALICE_ACCT) and a["OpenShardCount"] == 1
    assert b["StreamARN"] == arn("same", BOB_ACCT) and b["OpenShardCount"] == 2
    # creating it again is refused in the account that has it, in that account's words
    with raises_aws("ResourceInUseException", f"Stream same under account {BOB_ACCT} already exists."):
        k["bob"].create_stream(StreamName="same", ShardCount=1)


def test_one_account_never_lists_or_finds_the_others_streams(env):
    _, k, _ = env
    k["bob"].create_stream(StreamName="bobs-only", ShardCount=1)
    helpers.wait_for_status(k["bob"], "bobs-only")
    listed = k["alice"].list_streams()
    assert "bobs-only" not in listed["StreamNames"]
    assert [s["StreamARN"] for s in listed["StreamSummaries"] if s["StreamName"] == "same"] == [arn("same", ALICE_ACCT)]
    bob_listed = k["bob"].list_streams()
    assert sorted(bob_listed["StreamNames"]) == ["bobs-only", "same"]
    assert all(s["StreamARN"].split(":")[4] == BOB_ACCT for s in bob_listed["StreamSummaries"])
    with raises_aws("ResourceNotFoundException", f"Stream bobs-only under account {ALICE_ACCT} not found."):
        k["alice"].describe_stream_summary(StreamName="bobs-only")
    with raises_aws("ResourceNotFoundException"):
        k["alice"].put_record(StreamName="bobs-only", PartitionKey="a", Data=b"x")
    # DescribeLimits counts the caller's own open shards
    assert k["alice"].describe_limits()["OpenShardCount"] == 1
    assert k["bob"].describe_limits()["OpenShardCount"] == 3


def test_puts_and_gets_stay_in_their_account(env):
    _, k, _ = env
    assert all_records(k["alice"], "same") == [b"alice's"]
    assert all_records(k["bob"], "same") == [b"bob's"]


def test_the_aws_cli_lists_only_the_profiles_account(env):
    srv, _, creds = env
    out = aws_cli(srv.endpoint, creds, "bob", "describe-stream-summary", "--stream-name", "same")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["StreamDescriptionSummary"]["StreamARN"] == arn("same", BOB_ACCT)
    out = aws_cli(srv.endpoint, creds, "alice", "list-streams")
    assert out.returncode == 0, out.stderr
    assert "bobs-only" not in json.loads(out.stdout)["StreamNames"]


def test_two_regions_of_one_credential_are_isolated(env):
    srv, k, _ = env
    west = regional_client(srv.endpoint, KEYS["alice"], WEST)
    west.create_stream(StreamName="same", ShardCount=3)
    helpers.wait_for_status(west, "same")
    west.create_stream(StreamName="west-only", ShardCount=1)
    helpers.wait_for_status(west, "west-only")
    assert west.describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]["StreamARN"] == \
        arn("same", ALICE_ACCT, WEST)
    assert west.describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]["OpenShardCount"] == 3
    assert "west-only" not in k["alice"].list_streams()["StreamNames"]
    assert sorted(west.list_streams()["StreamNames"]) == ["same", "west-only"]
    west.put_record(StreamName="same", PartitionKey="a", Data=b"west")
    assert all_records(west, "same") == [b"west"]
    assert all_records(k["alice"], "same") == [b"alice's"]
    # an ARN of another region names nothing here
    with raises_aws("ResourceNotFoundException"):
        k["alice"].describe_stream_summary(StreamARN=arn("west-only", ALICE_ACCT, WEST))
    # an iterator reads only in the region it was issued in
    it = west.get_shard_iterator(StreamName="west-only", ShardId=helpers.shard_id(0),
                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    with raises_aws("InvalidArgumentException", "Invalid ShardIterator."):
        k["alice"].get_records(ShardIterator=it)


def test_tags_and_consumers_belong_to_their_accounts_stream(env):
    _, k, _ = env
    k["alice"].add_tags_to_stream(StreamName="same", Tags={"owner": "alice"})
    assert k["bob"].list_tags_for_stream(StreamName="same")["Tags"] == []
    assert k["alice"].list_tags_for_stream(StreamName="same")["Tags"] == [{"Key": "owner", "Value": "alice"}]
    ca = k["alice"].register_stream_consumer(StreamARN=arn("same", ALICE_ACCT), ConsumerName="c")["Consumer"]
    cb = k["bob"].register_stream_consumer(StreamARN=arn("same", BOB_ACCT), ConsumerName="c")["Consumer"]
    try:
        assert ca["ConsumerARN"].startswith(arn("same", ALICE_ACCT) + "/consumer/c:")
        assert cb["ConsumerARN"].startswith(arn("same", BOB_ACCT) + "/consumer/c:")
        got = k["bob"].describe_stream_consumer(ConsumerARN=cb["ConsumerARN"])["ConsumerDescription"]
        assert got["StreamARN"] == arn("same", BOB_ACCT)
        assert [c["ConsumerARN"] for c in k["bob"].list_stream_consumers(StreamARN=arn("same", BOB_ACCT))["Consumers"]] \
            == [cb["ConsumerARN"]]
        # the other account's consumer is not the caller's to describe without a policy
        with raises_aws("AccessDeniedException"):
            k["bob"].describe_stream_consumer(ConsumerARN=ca["ConsumerARN"])
    finally:
        k["alice"].deregister_stream_consumer(ConsumerARN=ca["ConsumerARN"])
        k["bob"].deregister_stream_consumer(ConsumerARN=cb["ConsumerARN"])


def signed_call(srv, user, operation, payload):
    body, headers = signed(srv.endpoint, operation, payload, key=KEYS[user])
    return send(srv.endpoint, body, headers)


def test_a_resource_policy_lets_another_account_read_the_owners_stream_by_arn_until_deleted(env):
    srv, k, _ = env
    target = arn("same", ALICE_ACCT)
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{BOB_ACCT}:root"},
        "Action": ["kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:GetShardIterator",
                   "kinesis:GetRecords"],
        "Resource": target}]}
    assert signed_call(srv, "alice", "PutResourcePolicy", {"ResourceARN": target, "Policy": json.dumps(policy)}).status == 200
    try:
        # bob's StreamARN of alice's stream names alice's, though bob has one of that name
        got = k["bob"].describe_stream_summary(StreamARN=target)["StreamDescriptionSummary"]
        assert got["StreamARN"] == target and got["OpenShardCount"] == 1
        assert all_records(k["bob"], stream_arn=target) == [b"alice's"]
        it = k["bob"].get_shard_iterator(StreamARN=target, ShardId=helpers.shard_id(0),
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        # ... by its iterator alone too, and its name still names bob's own
        assert [r["Data"] for r in k["bob"].get_records(ShardIterator=it)["Records"]] == [b"alice's"]
        assert all_records(k["bob"], "same") == [b"bob's"]
    finally:
        assert signed_call(srv, "alice", "DeleteResourcePolicy", {"ResourceARN": target}).status == 200
    with raises_aws("AccessDeniedException"):
        k["bob"].describe_stream_summary(StreamARN=target)
    # the iterator bob was given stops reading once the policy is gone
    with raises_aws("AccessDeniedException"):
        k["bob"].get_records(ShardIterator=it)


def test_an_iterator_issued_to_one_account_is_refused_to_another(env):
    srv, k, _ = env
    target = arn("same", ALICE_ACCT)
    it = k["alice"].get_shard_iterator(StreamName="same", ShardId=helpers.shard_id(0),
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    # even where a resource policy lets bob read the stream
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{BOB_ACCT}:root"},
        "Action": "kinesis:GetRecords", "Resource": target}]}
    assert signed_call(srv, "alice", "PutResourcePolicy", {"ResourceARN": target, "Policy": json.dumps(policy)}).status == 200
    try:
        with raises_aws("InvalidArgumentException", "Invalid ShardIterator."):
            k["bob"].get_records(ShardIterator=it)
        with raises_aws("InvalidArgumentException", "Invalid ShardIterator."):
            k["bob"].get_records(ShardIterator=it, StreamARN=target)
    finally:
        signed_call(srv, "alice", "DeleteResourcePolicy", {"ResourceARN": target})
    assert [r["Data"] for r in k["alice"].get_records(ShardIterator=it)["Records"]] == [b"alice's"]


def test_each_accounts_streams_survive_a_restart(env):
    srv, k, _ = env
    srv.restart()
    for user in k:
        k[user] = client(srv.endpoint, KEYS[user])
    assert k["alice"].describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]["OpenShardCount"] == 1
    assert k["bob"].describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]["OpenShardCount"] == 2
    assert all_records(k["alice"], "same") == [b"alice's"]
    assert all_records(k["bob"], "same") == [b"bob's"]
    assert "bobs-only" not in k["alice"].list_streams()["StreamNames"]
    # the name is free again in an account once its stream is gone, and only there
    k["bob"].delete_stream(StreamName="bobs-only")
    helpers.wait_until_gone(k["bob"], "bobs-only")
    k["alice"].create_stream(StreamName="bobs-only", ShardCount=1)
    helpers.wait_for_status(k["alice"], "bobs-only")
    assert "bobs-only" not in k["bob"].list_streams()["StreamNames"]


def test_the_shard_limit_is_per_account(tmp_path_factory):
    creds = credentials(tmp_path_factory.mktemp("accounts-limit"))
    srv = start(tmp_path_factory, creds, **{"--shard-limit": "2"})
    try:
        alice, bob = client(srv.endpoint, KEYS["alice"]), client(srv.endpoint, KEYS["bob"])
        alice.create_stream(StreamName="a", ShardCount=2)
        bob.create_stream(StreamName="b", ShardCount=2)  # alice's shards do not count for bob
        with raises_aws("LimitExceededException"):
            bob.create_stream(StreamName="c", ShardCount=1)
    finally:
        assert srv.stop() == 0, srv.log()


def test_control_plane_rates_are_per_account(tmp_path_factory):
    creds = credentials(tmp_path_factory.mktemp("accounts-rates"))
    srv = start(tmp_path_factory, creds, **{"--no-limits": False, "--rate-limit": "ListStreams=1"})
    try:
        alice, bob = client(srv.endpoint, KEYS["alice"]), client(srv.endpoint, KEYS["bob"])
        alice.list_streams()
        with raises_aws("LimitExceededException"):
            alice.list_streams()
        bob.list_streams()  # alice's calls took nothing from bob's account
        with raises_aws("LimitExceededException"):
            bob.list_streams()
    finally:
        assert srv.stop() == 0, srv.log()


def test_stream_metrics_are_labelled_with_the_streams_account_and_region(tmp_path_factory):
    from conftest import free_port

    port = free_port()
    srv = start(tmp_path_factory, credentials(tmp_path_factory.mktemp("accounts-metrics")),
                **{"--metrics-port": str(port)})
    try:
        for user in KEYS:
            c = client(srv.endpoint, KEYS[user])
            c.create_stream(StreamName="m", ShardCount=1)
            helpers.wait_for_status(c, "m")
            c.put_record(StreamName="m", PartitionKey="m", Data=b"m")
        text = helpers.http_request(f"http://127.0.0.1:{port}", "GET", "/metrics").raw.decode()
        lines = [line for line in text.splitlines() if 'stream="m"' in line]
        for acct in (ALICE_ACCT, BOB_ACCT):
            assert any(f'account="{acct}",region="{helpers.REGION}",stream="m"' in line for line in lines), lines[:5]
    finally:
        assert srv.stop() == 0, srv.log()


def test_kinesd_admin_tells_two_accounts_streams_of_the_same_name_apart(tmp_path_factory):
    import test_admin

    srv = start(tmp_path_factory, credentials(tmp_path_factory.mktemp("accounts-admin")))
    try:
        for user in KEYS:
            c = client(srv.endpoint, KEYS[user])
            c.create_stream(StreamName="twice", ShardCount=1)
            helpers.wait_for_status(c, "twice")
            c.put_record(StreamName="twice", PartitionKey="k", Data=user.encode())
    finally:
        assert srv.stop() == 0, srv.log()
    st = test_admin.stat(srv.data_dir)
    assert sorted((s["Account"], s["Region"]) for s in st["Streams"] if s["StreamName"] == "twice") == \
        [(ALICE_ACCT, helpers.REGION), (BOB_ACCT, helpers.REGION)]
    assert "give its StreamARN" in test_admin.admin(srv.data_dir, "dump", "twice", check=test_admin.USAGE).stderr
    for user, acct in (("alice", ALICE_ACCT), ("bob", BOB_ACCT)):
        assert [d for _, _, d in test_admin.dumped(srv.data_dir, arn("twice", acct)).values()] == [user.encode()]
    test_admin.admin(srv.data_dir, "verify", check=0)


def test_account_settings_are_each_accounts_own(env):
    srv, _, _ = env
    on = signed_call(srv, "bob", "UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}})
    assert on.status == 200, on
    assert signed_call(srv, "bob", "DescribeAccountSettings", {}).json["MinimumThroughputBillingCommitment"]["Status"] \
        == "ENABLED"
    assert signed_call(srv, "alice", "DescribeAccountSettings", {}).json == \
        {"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}}


def test_list_shards_pages_of_another_accounts_stream_follow_its_resource_policy(env):
    srv, k, _ = env
    k["alice"].create_stream(StreamName="pages", ShardCount=2)
    helpers.wait_for_status(k["alice"], "pages")
    target = arn("pages", ALICE_ACCT)
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{BOB_ACCT}:root"},
        "Action": "kinesis:ListShards", "Resource": target}]}
    assert signed_call(srv, "alice", "PutResourcePolicy", {"ResourceARN": target, "Policy": json.dumps(policy)}).status == 200
    try:
        first = k["bob"].list_shards(StreamARN=target, MaxResults=1)
        token = first["NextToken"]
        second = k["bob"].list_shards(NextToken=token)
        assert [s["ShardId"] for s in first["Shards"] + second["Shards"]] == [helpers.shard_id(0), helpers.shard_id(1)]
        # a page token is the account's it was issued to
        with raises_aws("InvalidArgumentException", "Invalid NextToken."):
            k["alice"].list_shards(NextToken=token)
    finally:
        assert signed_call(srv, "alice", "DeleteResourcePolicy", {"ResourceARN": target}).status == 200
    with raises_aws("AccessDeniedException"):
        k["bob"].list_shards(NextToken=token)
