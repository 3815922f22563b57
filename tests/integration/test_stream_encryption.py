"""Kinesis server-side encryption with the built-in KMS: StartStreamEncryption and
StopStreamEncryption, EncryptionType and KeyId in the answers, and the KMS key's state applied to
the data plane at once (boto3's kinesis and kms clients against one kinesd)."""

import signal
import uuid

import boto3
import pytest
from botocore.config import Config

import helpers
from helpers import shard_id
from test_encryption import scan_dir

pytestmark = pytest.mark.own_server


def kms_client(endpoint):
    return boto3.session.Session(
        aws_access_key_id=helpers.ACCESS_KEY, aws_secret_access_key=helpers.SECRET_KEY, region_name=helpers.REGION
    ).client("kms", endpoint_url=endpoint, config=Config(retries={"max_attempts": 0}))


@pytest.fixture
def env(kinesd_factory):
    server = kinesd_factory()
    return server, helpers.make_client(server.endpoint), kms_client(server.endpoint)


def new_stream(kinesis):
    name = helpers.unique_name("sse")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(kinesis, name)
    return name


def summary(kinesis, name):
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]


def records(kinesis, name):
    return helpers.read_all(kinesis, name, shard_id(0))


def test_every_key_id_form_starts_encryption_and_is_reported_as_given(env):
    server, kinesis, kms = env
    key = kms.create_key()["KeyMetadata"]
    alias = f"alias/{uuid.uuid4().hex}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    alias_arn = f"arn:aws:kms:us-east-1:000000000000:{alias}"
    for form in (key["KeyId"], key["Arn"], alias, alias_arn, "alias/aws/kinesis"):
        name = new_stream(kinesis)
        assert summary(kinesis, name)["EncryptionType"] == "NONE"
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=form)
        helpers.wait_for_status(kinesis, name)
        s = summary(kinesis, name)
        assert (s["EncryptionType"], s["KeyId"]) == ("KMS", form)
        d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
        assert (d["EncryptionType"], d["KeyId"]) == ("KMS", form)
    managed = kms.describe_key(KeyId="alias/aws/kinesis")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"


def test_only_records_written_after_the_start_carry_encryption_type_kms(env):
    server, kinesis, kms = env
    key = kms.create_key()["KeyMetadata"]
    name = new_stream(kinesis)
    before = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"before")
    assert "EncryptionType" not in before
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["KeyId"])
    helpers.wait_for_status(kinesis, name)
    after = kinesis.put_record(StreamName=name, PartitionKey="b", Data=b"after")
    assert after["EncryptionType"] == "KMS"
    batch = kinesis.put_records(StreamName=name, Records=[{"PartitionKey": "c", "Data": b"batch"}])
    assert batch["EncryptionType"] == "KMS"
    got = records(kinesis, name)
    assert [(r["Data"], r.get("EncryptionType")) for r in got] == [
        (b"before", None),
        (b"after", "KMS"),
        (b"batch", "KMS"),
    ]
    # stopped (with the old key id, as Terraform sends it): new records are not KMS records
    kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["KeyId"])
    helpers.wait_for_status(kinesis, name)
    assert summary(kinesis, name)["EncryptionType"] == "NONE"
    assert "EncryptionType" not in kinesis.put_record(StreamName=name, PartitionKey="d", Data=b"plain again")
    assert [r.get("EncryptionType") for r in records(kinesis, name)] == [None, "KMS", "KMS", None]


def test_the_key_state_applies_to_writes_and_reads_at_once(env):
    server, kinesis, kms = env
    key = kms.create_key()["KeyMetadata"]
    name = new_stream(kinesis)
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["Arn"])
    helpers.wait_for_status(kinesis, name)
    seq = kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"x")["SequenceNumber"]
    kms.disable_key(KeyId=key["KeyId"])
    # an iterator at a record's number is had without its key: the reads are what the key stops
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        kinesis.get_shard_iterator(StreamName=name, ShardId=helpers.shard_id(0), ShardIteratorType=kind,
                                   StartingSequenceNumber=seq)
    with helpers.raises_aws("KMSDisabledException"):
        kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"y")
    with helpers.raises_aws("KMSDisabledException"):  # the whole call, not one record
        kinesis.put_records(StreamName=name, Records=[{"PartitionKey": "a", "Data": b"z"}] * 3)
    with helpers.raises_aws("KMSDisabledException"):
        records(kinesis, name)
    kms.enable_key(KeyId=key["KeyId"])
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"y")
    assert [r["Data"] for r in records(kinesis, name)] == [b"x", b"y"]
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    with helpers.raises_aws("KMSInvalidStateException"):
        kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"z")


def test_an_unknown_or_disabled_key_is_refused_by_start_stream_encryption(env):
    server, kinesis, kms = env
    name = new_stream(kinesis)
    with helpers.raises_aws("KMSNotFoundException"):
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=str(uuid.uuid4()))
    with helpers.raises_aws("KMSNotFoundException"):
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/none")
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    with helpers.raises_aws("KMSDisabledException"):
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["KeyId"])
    assert summary(kinesis, name)["EncryptionType"] == "NONE"


def test_encrypted_records_survive_kill_9_and_leave_no_plaintext(env):
    server, kinesis, kms = env
    key = kms.create_key()["KeyMetadata"]
    name = new_stream(kinesis)
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["KeyId"])
    helpers.wait_for_status(kinesis, name)
    marker = "SSE" + uuid.uuid4().hex
    for i in range(10):
        kinesis.put_record(StreamName=name, PartitionKey=f"{marker}-{i}", Data=b"data:" + marker.encode())
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.stop()
    assert scan_dir(server.data_dir, marker) == []
    server.start()
    kinesis = helpers.make_client(server.endpoint)
    got = records(kinesis, name)
    assert len(got) == 10 and all(r.get("EncryptionType") == "KMS" for r in got)
    s = summary(kinesis, name)
    assert (s["EncryptionType"], s["KeyId"]) == ("KMS", key["KeyId"])
