"""IAM condition keys that describe the connection: aws:SourceIp (the client's address, for
IpAddress / NotIpAddress) and aws:SecureTransport (true over TLS, for Bool), under --auth, on a
server that speaks HTTP and HTTPS on one port.

Users (account 000000000000):
  admin  no policy file
  lo     DescribeStreamSummary from 127.0.0.0/8; ListShards from 10.0.0.0/8; ListStreams denied
         from anywhere but 127.0.0.1
  tls    ListStreams and DescribeStreamSummary only over TLS; PutRecord denied without it
"""

import json

import pytest

import helpers
from helpers import raises_aws
from test_auth import start

pytestmark = pytest.mark.own_server

KEYS = {
    "admin": ("AKIACONDADMIN0000001", "admin/cond/0123456789abcdefghijklmnopqrs"),
    "lo": ("AKIACONDLO0000000002", "lo/cond/0123456789abcdefghijklmnopqrstuvw"),
    "tls": ("AKIACONDTLS000000003", "tls/cond/0123456789abcdefghijklmnopqrstuv"),
}


def denied(user, action, resource):
    return (f"User: arn:aws:iam::{helpers.ACCOUNT}:user/{user} is not authorized to perform: kinesis:{action} "
            f"on resource: {resource} because no identity-based policy allows the kinesis:{action} action")


def explicit(user, action, resource):
    return (f"User: arn:aws:iam::{helpers.ACCOUNT}:user/{user} is not authorized to perform: kinesis:{action} "
            f"on resource: {resource} with an explicit deny in an identity-based policy")


def client(server, key, tls=False):
    import boto3
    import botocore.session
    from botocore.config import Config

    core = botocore.session.get_session()
    if helpers.NEWER_MODEL_DIR:
        core.set_config_variable("data_path", helpers.NEWER_MODEL_DIR)
    scheme = "https" if tls else "http"
    return boto3.session.Session(
        botocore_session=core, aws_access_key_id=key[0], aws_secret_access_key=key[1], region_name=helpers.REGION
    ).client("kinesis", endpoint_url=f"{scheme}://127.0.0.1:{server.port}",
             verify=str(server.data_dir / "tls" / "kinesd-cert.pem") if tls else None,
             config=Config(retries={"max_attempts": 0}))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("cond")
    (d / "lo.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kinesis:DescribeStreamSummary", "kinesis:ListStreams"], "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Effect": "Allow", "Action": "kinesis:ListShards", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}},
        {"Effect": "Deny", "Action": "kinesis:ListStreams", "Resource": "*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": "127.0.0.1/32"}}},
    ]}))
    (d / "tls.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kinesis:ListStreams", "kinesis:DescribeStreamSummary", "kinesis:PutRecord"],
         "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
        {"Effect": "Deny", "Action": "kinesis:PutRecord", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}))
    text = ""
    for user, (akid, secret) in KEYS.items():
        text += f"[{user}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
        if user != "admin":
            text += f"policy_file = {user}.json\n"
    (d / "credentials").write_text(text)
    srv = start(tmp_path_factory, d / "credentials", **{"--tls-self-signed": None})
    admin = client(srv, KEYS["admin"])
    admin.create_stream(StreamName="cond-1", ShardCount=1)
    helpers.wait_for_status(admin, "cond-1")
    yield srv
    assert srv.stop() == 0, srv.log()


def test_ip_address_conditions_see_the_clients_address(env):
    lo = client(env, KEYS["lo"])
    assert lo.describe_stream_summary(StreamName="cond-1")["StreamDescriptionSummary"]["StreamName"] == "cond-1"
    assert "cond-1" in lo.list_streams()["StreamNames"]  # from 127.0.0.1: the NotIpAddress deny does not apply
    with raises_aws("AccessDeniedException", denied("lo", "ListShards", helpers.stream_arn("cond-1"))):
        lo.list_shards(StreamName="cond-1")


def test_secure_transport_is_false_over_http(env):
    plain = client(env, KEYS["tls"])
    with raises_aws("AccessDeniedException",
                    denied("tls", "ListStreams", f"arn:aws:kinesis:{helpers.REGION}:{helpers.ACCOUNT}:stream/*")):
        plain.list_streams()
    with raises_aws("AccessDeniedException", explicit("tls", "PutRecord", helpers.stream_arn("cond-1"))):
        plain.put_record(StreamName="cond-1", PartitionKey="k", Data=b"x")


def test_secure_transport_is_true_over_tls(env):
    secure = client(env, KEYS["tls"], tls=True)
    assert "cond-1" in secure.list_streams()["StreamNames"]
    assert secure.describe_stream_summary(StreamName="cond-1")["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert secure.put_record(StreamName="cond-1", PartitionKey="k", Data=b"x")["SequenceNumber"]
