"""SigV4 verification (--auth FILE): boto3, the AWS CLI and raw signed requests against a kinesd
that checks signatures with keys from an AWS credentials file.

The matrix: the right key works; a wrong secret, an unknown key, a skewed clock, a tampered
body, a tampered signed header, a scope for another service, and a presigned URL replayed after
it expired are refused with AWS's error types and messages; SIGHUP reloads the file.
"""

import datetime
import json
import os
import re
import signal
import subprocess
import time

import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import helpers
from conftest import KinesdServer

pytestmark = pytest.mark.own_server

ALICE = ("AKIAALICEEXAMPLE0001", "alice/Secret+Key/0123456789abcdefghijklm")
BOB = ("AKIABOBEXAMPLE000002", "bob/Secret+Key/0123456789abcdefghijklmnop")
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
TOKEN_INVALID = "The security token included in the request is invalid."
EXPIRED = re.compile(r"Signature expired: (\d{8}T\d{6}Z) is now earlier than (\d{8}T\d{6}Z) \((\d{8}T\d{6}Z) - 5 min\.\)")


def write_credentials(path, *entries):
    text = ""
    for name, (akid, secret) in entries:
        text += f"[{name}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n\n"
    path.write_text(text)


@pytest.fixture(scope="module")
def creds_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "credentials"
    write_credentials(path, ("alice", ALICE), ("bob", BOB))
    return path


def start(tmp_path_factory, creds_file, **flags):
    root = tmp_path_factory.mktemp("kinesd-auth")
    # without limits, as kinesd_factory's servers: these tests poll ListStreams faster than 5/s
    return KinesdServer(root / "data", flags=dict({"--auth": str(creds_file), "--no-limits": None}, **flags)).start()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, creds_file):
    srv = start(tmp_path_factory, creds_file)
    yield srv
    assert srv.stop() == 0, srv.log()


def client(endpoint, key):
    """boto3 signing with key, on the newest Kinesis model installed (as helpers.make_client)."""
    import boto3
    import botocore.session
    from botocore.config import Config

    core = botocore.session.get_session()
    if helpers.NEWER_MODEL_DIR:
        core.set_config_variable("data_path", helpers.NEWER_MODEL_DIR)
    return boto3.session.Session(
        botocore_session=core, aws_access_key_id=key[0], aws_secret_access_key=key[1], region_name=helpers.REGION
    ).client("kinesis", endpoint_url=endpoint, config=Config(retries={"max_attempts": 0}))


def signed(endpoint, operation, payload, key=ALICE, service="kinesis", region=helpers.REGION):
    body = json.dumps(payload).encode()
    req = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": helpers.AMZ_JSON, "X-Amz-Target": f"{helpers.TARGET_PREFIX}.{operation}"},
    )
    SigV4Auth(Credentials(*key), service, region).add_auth(req)
    return body, dict(req.headers.items())


def send(endpoint, body, headers, path="/"):
    return helpers.http_request(endpoint, "POST", path, body, headers)


def test_boto3_with_a_key_from_the_file_creates_writes_and_reads_a_stream(auth_server):
    k = client(auth_server.endpoint, ALICE)
    name = helpers.unique_name("auth")
    k.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(k, name)
    put = k.put_record(StreamName=name, PartitionKey="pk", Data=b"signed")
    it = k.get_shard_iterator(StreamName=name, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")
    assert [r["Data"] for r in k.get_records(ShardIterator=it["ShardIterator"])["Records"]] == [b"signed"]
    # another user of the file works as well
    assert name in client(auth_server.endpoint, BOB).list_streams()["StreamNames"]


def test_a_wrong_secret_is_refused_with_the_canonical_request_and_the_string_to_sign(auth_server):
    body, headers = signed(auth_server.endpoint, "ListStreams", {}, key=(ALICE[0], "not-the-secret"))
    resp = send(auth_server.endpoint, body, headers)
    assert resp.status == 400, resp
    assert resp.error_type == "InvalidSignatureException"
    msg = resp.error_message
    assert msg.startswith(BAD_SIGNATURE + "\n\nThe Canonical String for this request should have been\n'POST\n/\n\n")
    creq, sts = re.fullmatch(
        re.escape(BAD_SIGNATURE)
        + r"\n\nThe Canonical String for this request should have been\n'(.*)'\n\n"
        r"The String-to-Sign should have been\n'(.*)'\n",
        msg,
        re.S,
    ).groups()
    # what we show is what the client signed (only the key differs)
    unsigned = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    req = AWSRequest(method="POST", url=auth_server.endpoint + "/", data=body, headers=unsigned)
    signer = SigV4Auth(Credentials(*ALICE), "kinesis", helpers.REGION)
    req.context["timestamp"] = headers["X-Amz-Date"]
    assert creq == signer.canonical_request(req)
    assert sts == signer.string_to_sign(req, creq)
    # boto3 sees the same error
    with helpers.raises_aws("InvalidSignatureException", re.compile(re.escape(BAD_SIGNATURE) + ".*", re.S)):
        client(auth_server.endpoint, (ALICE[0], "wrong")).list_streams()


def test_an_unknown_access_key_is_an_unrecognized_client(auth_server):
    with helpers.raises_aws("UnrecognizedClientException", TOKEN_INVALID):
        client(auth_server.endpoint, ("AKIANOBODY0000000000", ALICE[1])).list_streams()


def skew_signer_clock(monkeypatch, delta):
    """Make botocore sign as if its clock were off by delta (newer botocore asks
    get_current_datetime, older calls datetime.datetime.utcnow)."""
    if hasattr(botocore.auth, "get_current_datetime"):
        real = botocore.auth.get_current_datetime
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: real() + delta)
        return

    class SkewedDatetime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return datetime.datetime.utcnow() + delta

    class Shim:
        datetime = SkewedDatetime

    monkeypatch.setattr(botocore.auth, "datetime", Shim)


def test_a_clock_skewed_by_more_than_five_minutes_is_refused(auth_server, monkeypatch):
    skew_signer_clock(monkeypatch, -datetime.timedelta(minutes=6))
    body, headers = signed(auth_server.endpoint, "ListStreams", {})
    resp = send(auth_server.endpoint, body, headers)
    assert resp.status == 400 and resp.error_type == "InvalidSignatureException", resp
    m = EXPIRED.fullmatch(resp.error_message)
    assert m, resp.error_message
    sent, edge, now = (datetime.datetime.strptime(x, "%Y%m%dT%H%M%SZ") for x in m.groups())
    assert m.group(1) == headers["X-Amz-Date"]
    assert now - edge == datetime.timedelta(minutes=5)
    assert edge > sent
    # ahead of the clock: not yet current
    skew_signer_clock(monkeypatch, datetime.timedelta(minutes=6))
    body, headers = signed(auth_server.endpoint, "ListStreams", {})
    resp = send(auth_server.endpoint, body, headers)
    assert resp.error_type == "InvalidSignatureException", resp
    assert re.fullmatch(
        r"Signature not yet current: \d{8}T\d{6}Z is still later than \d{8}T\d{6}Z \(\d{8}T\d{6}Z \+ 5 min\.\)",
        resp.error_message,
    ), resp.error_message
    # within five minutes it is accepted
    skew_signer_clock(monkeypatch, -datetime.timedelta(minutes=4))
    body, headers = signed(auth_server.endpoint, "ListStreams", {})
    assert send(auth_server.endpoint, body, headers).status == 200


def test_a_tampered_body_is_refused(auth_server):
    k = client(auth_server.endpoint, ALICE)
    name = helpers.unique_name("tamper")
    k.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(k, name)
    body, headers = signed(auth_server.endpoint, "PutRecord", {"StreamName": name, "PartitionKey": "a", "Data": "AAAA"})
    assert send(auth_server.endpoint, body, headers).status == 200
    tampered = body.replace(b'"AAAA"', b'"BBBB"')
    resp = send(auth_server.endpoint, tampered, headers)
    assert resp.status == 400 and resp.error_type == "InvalidSignatureException", resp
    assert resp.error_message.startswith(BAD_SIGNATURE)


def test_a_tampered_signed_header_is_refused(auth_server):
    body, headers = signed(auth_server.endpoint, "ListStreams", {})
    assert "x-amz-target" in headers["Authorization"]
    headers["X-Amz-Target"] = f"{helpers.TARGET_PREFIX}.DescribeLimits"
    resp = send(auth_server.endpoint, body, headers)
    assert resp.error_type == "InvalidSignatureException", resp
    assert "x-amz-target:Kinesis_20131202.DescribeLimits\n" in resp.error_message


def test_a_signature_scoped_to_another_service_is_refused(auth_server):
    body, headers = signed(auth_server.endpoint, "ListStreams", {}, service="kms")
    resp = send(auth_server.endpoint, body, headers)
    assert resp.error_type == "InvalidSignatureException", resp
    assert resp.error_message == "Credential should be scoped to correct service: 'kinesis'. "


def test_the_region_comes_from_the_credential_scope(auth_server):
    name = helpers.unique_name("region")
    body, headers = signed(auth_server.endpoint, "CreateStream", {"StreamName": name, "ShardCount": 1},
                           region="eu-west-1")
    assert send(auth_server.endpoint, body, headers).status == 200
    body, headers = signed(auth_server.endpoint, "DescribeStreamSummary", {"StreamName": name}, region="eu-west-1")
    resp = send(auth_server.endpoint, body, headers)
    assert resp.json["StreamDescriptionSummary"]["StreamARN"].startswith("arn:aws:kinesis:eu-west-1:")


class BodySigningQueryAuth(SigV4QueryAuth):
    """Presigning for a JSON POST: the body stays the body (and is signed), only the auth
    parameters go into the query string."""

    def _modify_request_before_signing(self, request):
        data, request.data = request.data, b""
        super()._modify_request_before_signing(request)
        request.data = data


def presigned(endpoint, operation, payload, expires):
    body = json.dumps(payload).encode()
    req = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": helpers.AMZ_JSON, "X-Amz-Target": f"{helpers.TARGET_PREFIX}.{operation}"},
    )
    BodySigningQueryAuth(Credentials(*ALICE), "kinesis", helpers.REGION, expires=expires).add_auth(req)
    path = req.url[len(endpoint):]
    return body, {k: v for k, v in req.headers.items()}, path


def test_a_presigned_request_works_until_it_expires_then_its_replay_is_refused(tmp_path_factory, creds_file):
    srv = start(tmp_path_factory, creds_file, **{"--test-clock": None})
    try:
        body, headers, path = presigned(srv.endpoint, "ListStreams", {}, expires=60)
        assert "X-Amz-Signature=" in path and "Authorization" not in headers
        assert send(srv.endpoint, body, headers, path).status == 200
        assert send(srv.endpoint, body, headers, path).status == 200  # replay within its time
        # a changed body does not verify
        resp = send(srv.endpoint, b'{"Limit": 1}', headers, path)
        assert resp.error_type == "InvalidSignatureException", resp
        helpers.http_request(srv.endpoint, "POST", "/_test/advance-clock?ms=61000")
        resp = send(srv.endpoint, body, headers, path)
        assert resp.status == 400 and resp.error_type == "InvalidSignatureException", resp
        date = re.search(r"X-Amz-Date=(\d{8}T\d{6}Z)", path).group(1)
        m = re.fullmatch(r"Signature expired: (\d{8}T\d{6}Z) is now earlier than (\d{8}T\d{6}Z) "
                         r"\((\d{8}T\d{6}Z) \+ 60 sec\.\)", resp.error_message)
        assert m, resp.error_message
        assert m.group(3) == date
        edge = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ") + datetime.timedelta(seconds=60)
        assert m.group(1) == edge.strftime("%Y%m%dT%H%M%SZ")
    finally:
        assert srv.stop() == 0


def test_sighup_reloads_the_credentials_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("reload") / "credentials"
    write_credentials(path, ("alice", ALICE))
    srv = start(tmp_path_factory, path)
    try:
        client(srv.endpoint, ALICE).list_streams()
        with helpers.raises_aws("UnrecognizedClientException", TOKEN_INVALID):
            client(srv.endpoint, BOB).list_streams()
        write_credentials(path, ("bob", BOB))
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:  # the reload happens on the main thread, soon after the signal
            try:
                client(srv.endpoint, BOB).list_streams()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with helpers.raises_aws("UnrecognizedClientException", TOKEN_INVALID):
            client(srv.endpoint, ALICE).list_streams()
        # a broken file keeps the loaded credentials
        path.write_text("[broken]\naws_access_key_id = X\n")
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)
        client(srv.endpoint, BOB).list_streams()
    finally:
        assert srv.stop() == 0


def test_a_credentials_file_that_does_not_load_stops_the_server_at_start(tmp_path):
    bad = tmp_path / "credentials"
    bad.write_text("[x]\naws_access_key_id = K\n")
    from conftest import kinesd_binary

    out = subprocess.run([str(kinesd_binary()), "--ephemeral", "--port", "0", "--auth", str(bad)],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0
    assert "aws_secret_access_key" in out.stderr


def aws_cli(endpoint, creds_path, profile, *args):
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(creds_path), AWS_PROFILE=profile,
               AWS_CONFIG_FILE=os.devnull)
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    return subprocess.run(["/usr/bin/aws", "--endpoint-url", endpoint, "--region", helpers.REGION, "kinesis", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_the_aws_cli_signs_with_a_profile_of_the_same_file_and_fails_with_a_wrong_one(auth_server, creds_file,
                                                                                     tmp_path):
    name = helpers.unique_name("cli")
    out = aws_cli(auth_server.endpoint, creds_file, "alice", "create-stream", "--stream-name", name,
                  "--shard-count", "1")
    assert out.returncode == 0, out.stderr
    out = aws_cli(auth_server.endpoint, creds_file, "bob", "list-streams")
    assert out.returncode == 0 and name in json.loads(out.stdout)["StreamNames"], out.stderr
    wrong = tmp_path / "wrong"
    write_credentials(wrong, ("alice", (ALICE[0], "wrong-secret")), ("nobody", ("AKIANOBODY0000000000", "x")))
    out = aws_cli(auth_server.endpoint, wrong, "alice", "list-streams")
    assert out.returncode != 0
    assert "(InvalidSignatureException)" in out.stderr and BAD_SIGNATURE in out.stderr
    out = aws_cli(auth_server.endpoint, wrong, "nobody", "list-streams")
    assert out.returncode != 0
    assert f"(UnrecognizedClientException) when calling the ListStreams operation: {TOKEN_INVALID}" in out.stderr


def test_without_auth_any_credentials_are_accepted(kinesis, endpoint):
    """The shared server runs without --auth: the suite's dummy key works, and so does any."""
    client(endpoint, ("AKIAANYTHING", "anything")).list_streams()
