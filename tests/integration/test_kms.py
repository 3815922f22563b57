"""The built-in KMS (X-Amz-Target TrentService.*) on kinesd's port, driven by boto3's kms client,
the AWS CLI's `aws kms`, and raw signed calls for operations the Debian SDK's model predates.

Every answer's KeyId is the key's ARN; errors are AWS's types and messages.
"""

import base64
import json
import re
import subprocess
import time
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

import conftest
import helpers

ARN = re.compile(r"arn:aws:kms:us-east-1:000000000000:key/[0-9a-f-]{36}")
DAY_MS = 24 * 3600 * 1000


def kms_client(endpoint):
    return boto3.session.Session(
        aws_access_key_id=helpers.ACCESS_KEY, aws_secret_access_key=helpers.SECRET_KEY, region_name=helpers.REGION
    ).client("kms", endpoint_url=endpoint, config=Config(retries={"max_attempts": 0}))


@pytest.fixture
def kms(endpoint):
    return kms_client(endpoint)


def raw(endpoint, op, payload):
    """A signed TrentService call the SDK's model may not know."""
    body = json.dumps(payload).encode()
    headers = helpers.signed_headers(endpoint, f"TrentService.{op}", body)
    return helpers.http_request(endpoint, "POST", "/", body, headers)


def new_key(kms, **kw):
    return kms.create_key(**kw)["KeyMetadata"]


# ============================================================================================ keys


def test_create_key_answers_aws_key_metadata(kms):
    meta = new_key(kms, Description="for tests", Tags=[{"TagKey": "team", "TagValue": "data"}])
    assert ARN.fullmatch(meta["Arn"]) and meta["Arn"].endswith(meta["KeyId"])
    uuid.UUID(meta["KeyId"])
    assert meta["AWSAccountId"] == helpers.ACCOUNT
    assert meta["Description"] == "for tests"
    assert meta["Enabled"] is True and meta["KeyState"] == "Enabled"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT" and meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["Origin"] == "AWS_KMS" and meta["KeyManager"] == "CUSTOMER"
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert kms.describe_key(KeyId=meta["Arn"])["KeyMetadata"]["KeyId"] == meta["KeyId"]
    assert {"KeyId": meta["KeyId"], "KeyArn": meta["Arn"]} in kms.list_keys(Limit=1000)["Keys"]


def test_describe_key_of_unknown_keys_and_aliases_is_not_found(kms):
    missing = str(uuid.uuid4())
    with helpers.raises_aws("NotFoundException", f"Key 'arn:aws:kms:us-east-1:000000000000:key/{missing}' does not exist"):
        kms.describe_key(KeyId=missing)
    with helpers.raises_aws("NotFoundException", "Invalid keyId 'not-a-key'"):
        kms.describe_key(KeyId="not-a-key")
    with helpers.raises_aws("NotFoundException", "Alias arn:aws:kms:us-east-1:000000000000:alias/none is not found."):
        kms.describe_key(KeyId="alias/none")


def test_list_keys_pages_with_marker(kms):
    for _ in range(3):
        new_key(kms)
    first = kms.list_keys(Limit=2)
    assert len(first["Keys"]) == 2 and first["Truncated"] is True
    rest = kms.list_keys(Limit=1000, Marker=first["NextMarker"])
    ids = [k["KeyId"] for k in first["Keys"] + rest["Keys"]]
    assert len(ids) == len(set(ids)) >= 3


# ===================================================================================== cryptography


def test_encrypt_decrypt_round_trip_binds_the_encryption_context(kms):
    key = new_key(kms)
    out = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"secret", EncryptionContext={"ab": "c"})
    assert out["KeyId"] == key["Arn"] and out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    back = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"ab": "c"})
    assert back["Plaintext"] == b"secret" and back["KeyId"] == key["Arn"]
    for ctx in ({"a": "bc"}, {}, {"ab": "c", "x": "y"}):
        with helpers.raises_aws("InvalidCiphertextException") as e:
            kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=ctx)
        assert not e.error.get("Message")


def test_decrypt_refuses_corrupt_blobs_and_another_key(kms):
    key, other = new_key(kms), new_key(kms)
    blob = bytearray(kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"])
    for i in (0, 40, 50, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 1
        with helpers.raises_aws("InvalidCiphertextException"):
            kms.decrypt(CiphertextBlob=bytes(bad))
    with helpers.raises_aws("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=b"\x01\x02\x03 an Encryption SDK message is not one of ours")
    with helpers.raises_aws(
        "IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation."
    ):
        kms.decrypt(CiphertextBlob=bytes(blob), KeyId=other["KeyId"])
    assert kms.decrypt(CiphertextBlob=bytes(blob), KeyId=key["Arn"])["Plaintext"] == b"x"


def test_generate_data_key_with_and_without_plaintext(kms):
    key = new_key(kms)
    dk = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext={"k": "v"})
    assert len(dk["Plaintext"]) == 32 and dk["KeyId"] == key["Arn"]
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"k": "v"})["Plaintext"] == dk["Plaintext"]
    assert len(kms.generate_data_key(KeyId=key["KeyId"], NumberOfBytes=16)["Plaintext"]) == 16
    np = kms.generate_data_key_without_plaintext(KeyId=key["KeyId"], KeySpec="AES_128")
    assert "Plaintext" not in np
    assert len(kms.decrypt(CiphertextBlob=np["CiphertextBlob"])["Plaintext"]) == 16
    with helpers.raises_aws("ValidationException"):
        kms.generate_data_key(KeyId=key["KeyId"])
    assert len(kms.generate_random(NumberOfBytes=100)["Plaintext"]) == 100


def test_re_encrypt_moves_a_ciphertext_to_another_key(kms):
    a, b = new_key(kms), new_key(kms)
    blob = kms.encrypt(KeyId=a["KeyId"], Plaintext=b"moved", EncryptionContext={"s": "1"})["CiphertextBlob"]
    out = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"s": "1"},
        DestinationKeyId=b["Arn"],
        DestinationEncryptionContext={"d": "2"},
    )
    assert out["SourceKeyId"] == a["Arn"] and out["KeyId"] == b["Arn"]
    back = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"d": "2"})
    assert back["Plaintext"] == b"moved" and back["KeyId"] == b["Arn"]


# ========================================================================================= aliases


def test_aliases_name_keys_for_every_operation(kms):
    key, other = new_key(kms), new_key(kms)
    name = f"alias/{uuid.uuid4().hex}"
    kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    with helpers.raises_aws("AlreadyExistsException", f"An alias with the name arn:aws:kms:us-east-1:000000000000:{name} already exists"):
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    assert kms.encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == key["Arn"]
    alias_arn = f"arn:aws:kms:us-east-1:000000000000:{name}"
    assert kms.describe_key(KeyId=alias_arn)["KeyMetadata"]["Arn"] == key["Arn"]
    listed = [a for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]]
    assert [(a["AliasName"], a["AliasArn"], a["TargetKeyId"]) for a in listed] == [(name, alias_arn, key["KeyId"])]
    kms.update_alias(AliasName=name, TargetKeyId=other["KeyId"])
    assert kms.encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == other["Arn"]
    kms.delete_alias(AliasName=name)
    with helpers.raises_aws("NotFoundException", f"Alias {alias_arn} is not found."):
        kms.encrypt(KeyId=name, Plaintext=b"x")
    with helpers.raises_aws("ValidationException"):
        kms.create_alias(AliasName="no-prefix", TargetKeyId=key["KeyId"])


# ======================================================================================= key state


def test_disabled_and_pending_deletion_keys_refuse_cryptography(kms):
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.disable_key(KeyId=key["KeyId"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    with helpers.raises_aws("DisabledException", f"{key['Arn']} is disabled."):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    with helpers.raises_aws("DisabledException", f"{key['Arn']} is disabled."):
        kms.decrypt(CiphertextBlob=blob)
    kms.enable_key(KeyId=key["KeyId"])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    out = kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert out["KeyId"] == key["Arn"] and out["KeyState"] == "PendingDeletion" and out["PendingWindowInDays"] == 7
    with helpers.raises_aws("KMSInvalidStateException", f"{key['Arn']} is pending deletion."):
        kms.decrypt(CiphertextBlob=blob)
    assert kms.cancel_key_deletion(KeyId=key["KeyId"])["KeyId"] == key["Arn"]
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"  # as AWS leaves it
    with helpers.raises_aws("ValidationException"):
        kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=6)


def test_a_key_is_gone_once_its_deletion_date_passes_on_the_test_clock(kinesd_factory):
    server = kinesd_factory(flags={"--test-clock": None})
    kms = kms_client(server.endpoint)
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=key["KeyId"])  # 30 days by default
    resp = helpers.http_request(server.endpoint, "POST", f"/_test/advance-clock?ms={29 * DAY_MS}")
    assert resp.status == 200
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    helpers.http_request(server.endpoint, "POST", f"/_test/advance-clock?ms={2 * DAY_MS}")
    with helpers.raises_aws("NotFoundException"):
        kms.describe_key(KeyId=key["KeyId"])
    with helpers.raises_aws(
        "AccessDeniedException",
        "The ciphertext refers to a customer master key that does not exist, does not exist in this region, "
        "or you are not allowed to access.",
    ):
        kms.decrypt(CiphertextBlob=blob)


# ===================================================================== rotation, tags and policies


def test_rotation_keeps_old_ciphertexts_readable(kms, endpoint):
    key = new_key(kms)
    old = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"before")["CiphertextBlob"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    resp = raw(endpoint, "RotateKeyOnDemand", {"KeyId": key["KeyId"]})
    assert resp.status == 200 and resp.json == {"KeyId": key["Arn"]}
    new = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"after")["CiphertextBlob"]
    assert old[38:42] != new[38:42]  # the blob names the new material version
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before"
    assert kms.decrypt(CiphertextBlob=new)["Plaintext"] == b"after"
    rot = raw(endpoint, "ListKeyRotations", {"KeyId": key["KeyId"]}).json
    assert [r["RotationType"] for r in rot["Rotations"]] == ["ON_DEMAND"]
    kms.disable_key_rotation(KeyId=key["KeyId"])
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is False


def test_tags_and_key_policies_are_stored(kms):
    key = new_key(kms, Tags=[{"TagKey": "b", "TagValue": "2"}])
    kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "a", "TagValue": "1"}])
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == [
        {"TagKey": "a", "TagValue": "1"},
        {"TagKey": "b", "TagValue": "2"},
    ]
    kms.untag_resource(KeyId=key["KeyId"], TagKeys=["b"])
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == [{"TagKey": "a", "TagValue": "1"}]
    default = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert default["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::000000000000:root"}
    statement = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"}
    service = {"Effect": "Allow", "Principal": {"Service": "logs.amazonaws.com"}, "Action": "kms:Decrypt", "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement, service]})
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy)
    assert kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"] == policy
    # a document that is no policy is refused, and the stored one stays
    for bad in ("{}", json.dumps({"Statement": []}), json.dumps({"Statement": [{"Effect": "Allow"}]}), "[1]"):
        with helpers.raises_aws("MalformedPolicyDocumentException"):
            kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=bad)
        with helpers.raises_aws("MalformedPolicyDocumentException"):
            kms.create_key(Policy=bad)
    assert kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"] == policy


# ====================================================================== persistence and the seed


def test_keys_aliases_and_ciphertexts_survive_kill_9(kinesd_factory):
    server = kinesd_factory()
    kms = kms_client(server.endpoint)
    key = new_key(kms)
    kms.create_alias(AliasName="alias/kept", TargetKeyId=key["KeyId"])
    blob = kms.encrypt(KeyId="alias/kept", Plaintext=b"kept")["CiphertextBlob"]
    server.proc.kill()
    server.proc.wait()
    server.stop()
    server.start()
    kms = kms_client(server.endpoint)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    assert kms.describe_key(KeyId="alias/kept")["KeyMetadata"]["KeyId"] == key["KeyId"]


def test_the_seed_file_makes_stable_keys_across_data_directories(kinesd_factory, tmp_path):
    key_id = str(uuid.uuid4())
    material = base64.b64encode(bytes(range(32))).decode()
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"Keys": [{"KeyId": key_id, "KeyMaterial": material, "Aliases": ["alias/seeded"]}]}))
    a = kinesd_factory(flags={"--kms-seed": str(seed)})
    b = kinesd_factory(flags={"--kms-seed": str(seed)})
    ka, kb = kms_client(a.endpoint), kms_client(b.endpoint)
    assert ka.describe_key(KeyId="alias/seeded")["KeyMetadata"]["KeyId"] == key_id
    blob = ka.encrypt(KeyId="alias/seeded", Plaintext=b"portable")["CiphertextBlob"]
    # the same material on another server (another root key) opens it
    assert kb.decrypt(CiphertextBlob=blob)["Plaintext"] == b"portable"
    a.restart()
    assert kms_client(a.endpoint).decrypt(CiphertextBlob=blob)["Plaintext"] == b"portable"


def test_a_bad_seed_file_stops_the_start(tmp_path):
    seed = tmp_path / "bad.json"
    seed.write_text('{"Keys": [{"KeyId": "not-a-uuid"}]}')
    cmd = [str(conftest.kinesd_binary()), "--port", str(conftest.free_port()), "--data-dir", str(tmp_path / "d"),
           "--kms-seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 and "kms-seed" in out.stderr


# ============================================================================================ CLI


def test_the_aws_cli_encrypts_and_decrypts(endpoint, tmp_path):
    def cli(*args):
        out = subprocess.run(["aws", "--endpoint-url", endpoint, "kms", *args, "--output", "json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    key = cli("create-key", "--description", "cli")["KeyMetadata"]
    plain = tmp_path / "plain"
    plain.write_bytes(b"from the cli")
    enc = cli("encrypt", "--key-id", key["KeyId"], "--plaintext", f"fileb://{plain}", "--encryption-context", "app=test")
    assert enc["KeyId"] == key["Arn"]
    blob = tmp_path / "blob"
    blob.write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = cli("decrypt", "--ciphertext-blob", f"fileb://{blob}", "--encryption-context", "app=test")
    assert base64.b64decode(dec["Plaintext"]) == b"from the cli"
    cli("create-alias", "--alias-name", f"alias/cli-{uuid.uuid4().hex}", "--target-key-id", key["KeyId"])
    assert any(a["TargetKeyId"] == key["KeyId"] for a in cli("list-aliases")["Aliases"] if "TargetKeyId" in a)


# ========================================================= key lifecycle: deletion and rotation


def advance(server, ms):
    resp = helpers.http_request(server.endpoint, "POST", f"/_test/advance-clock?ms={int(ms)}")
    assert resp.status == 200


def test_deleting_a_key_removes_its_aliases_and_frees_their_names(kinesd_factory):
    server = kinesd_factory(flags={"--test-clock": None})
    kms = kms_client(server.endpoint)
    doomed, kept = new_key(kms), new_key(kms)
    kms.create_alias(AliasName="alias/doomed-a", TargetKeyId=doomed["KeyId"])
    kms.create_alias(AliasName="alias/doomed-b", TargetKeyId=doomed["KeyId"])
    kms.create_alias(AliasName="alias/kept", TargetKeyId=kept["KeyId"])
    kms.schedule_key_deletion(KeyId=doomed["KeyId"], PendingWindowInDays=7)
    names = lambda: {a["AliasName"] for a in kms.list_aliases()["Aliases"]}  # noqa: E731
    assert {"alias/doomed-a", "alias/doomed-b", "alias/kept"} <= names()  # pending: still there
    advance(server, 8 * DAY_MS)
    # nothing touched the key itself: listing finds it past its date and deletes it with its aliases
    assert "alias/kept" in names() and not {"alias/doomed-a", "alias/doomed-b"} & names()
    assert doomed["KeyId"] not in {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    with helpers.raises_aws("NotFoundException"):
        kms.describe_key(KeyId="alias/doomed-a")
    kms.create_alias(AliasName="alias/doomed-a", TargetKeyId=kept["KeyId"])  # the name is free again
    assert kms.describe_key(KeyId="alias/doomed-a")["KeyMetadata"]["KeyId"] == kept["KeyId"]
    # and it stays so across a restart
    server.restart()
    kms = kms_client(server.endpoint)
    assert {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}["alias/doomed-a"] == kept["KeyId"]
    assert "alias/doomed-b" not in names()


def test_automatic_rotation_follows_the_rotation_period_on_the_server_clock(kinesd_factory):
    server = kinesd_factory(flags={"--test-clock": None})
    kms = kms_client(server.endpoint)
    key = new_key(kms)
    before = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"version 1")["CiphertextBlob"]
    assert raw(server.endpoint, "EnableKeyRotation", {"KeyId": key["KeyId"], "RotationPeriodInDays": 90}).status == 200
    status = raw(server.endpoint, "GetKeyRotationStatus", {"KeyId": key["KeyId"]}).json
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 90
    enabled_at = status["NextRotationDate"] - 90 * 86400
    advance(server, 89 * DAY_MS)  # not yet due
    assert raw(server.endpoint, "ListKeyRotations", {"KeyId": key["KeyId"]}).json["Rotations"] == []
    same = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"still 1")["CiphertextBlob"]
    assert same[38:42] == before[38:42]
    advance(server, 2 * DAY_MS)  # past the 90 days
    rotations = raw(server.endpoint, "ListKeyRotations", {"KeyId": key["KeyId"]}).json["Rotations"]
    assert [(r["RotationType"], r["KeyId"]) for r in rotations] == [("AUTOMATIC", key["Arn"])]
    assert abs(rotations[0]["RotationDate"] - (enabled_at + 90 * 86400)) < 1
    after = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"version 2")["CiphertextBlob"]
    assert after[38:42] != before[38:42]
    assert kms.decrypt(CiphertextBlob=before)["Plaintext"] == b"version 1"
    assert kms.decrypt(CiphertextBlob=after)["Plaintext"] == b"version 2"
    # the next one is a period after the last; an on-demand rotation does not move it and does
    # not count against automatic ones
    status = raw(server.endpoint, "GetKeyRotationStatus", {"KeyId": key["KeyId"]}).json
    assert abs(status["NextRotationDate"] - (enabled_at + 180 * 86400)) < 1
    assert raw(server.endpoint, "RotateKeyOnDemand", {"KeyId": key["KeyId"]}).status == 200
    assert raw(server.endpoint, "GetKeyRotationStatus", {"KeyId": key["KeyId"]}).json["NextRotationDate"] == status[
        "NextRotationDate"
    ]
    # a disabled key does not rotate; once enabled again, a passed date rotates it
    kms.disable_key(KeyId=key["KeyId"])
    advance(server, 100 * DAY_MS)
    kms.enable_key(KeyId=key["KeyId"])
    types = [r["RotationType"] for r in raw(server.endpoint, "ListKeyRotations", {"KeyId": key["KeyId"]}).json["Rotations"]]
    assert types == ["AUTOMATIC", "ON_DEMAND", "AUTOMATIC"]
    # rotation off: nothing more, whatever the clock says
    kms.disable_key_rotation(KeyId=key["KeyId"])
    advance(server, 400 * DAY_MS)
    assert len(raw(server.endpoint, "ListKeyRotations", {"KeyId": key["KeyId"]}).json["Rotations"]) == 3
    assert kms.decrypt(CiphertextBlob=before)["Plaintext"] == b"version 1"


def test_the_rotation_period_must_be_between_90_and_2560_days(kms, endpoint):
    key = new_key(kms)
    for days in (89, 2561):
        resp = raw(endpoint, "EnableKeyRotation", {"KeyId": key["KeyId"], "RotationPeriodInDays": days})
        assert resp.status == 400 and resp.json["__type"] == "ValidationException"
        assert "rotationPeriodInDays" in resp.json["message"]
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is False
    assert raw(endpoint, "EnableKeyRotation", {"KeyId": key["KeyId"], "RotationPeriodInDays": 2560}).status == 200
    status = raw(endpoint, "GetKeyRotationStatus", {"KeyId": key["KeyId"]}).json
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 2560


def test_data_keys_of_a_stream_stay_readable_after_their_kms_key_rotates(kinesd_factory):
    server = kinesd_factory(flags={"--test-clock": None, "--update-stream-ms": "0", "--create-stream-ms": "0"})
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    key = new_key(kms)
    assert raw(server.endpoint, "EnableKeyRotation", {"KeyId": key["KeyId"], "RotationPeriodInDays": 90}).status == 200
    name = sse_stream(kinesis, key["KeyId"])
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=8760)
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"under version 1")
    advance(server, 91 * DAY_MS)
    assert len(raw(server.endpoint, "ListKeyRotations", {"KeyId": key["KeyId"]}).json["Rotations"]) == 1
    kinesis.put_record(StreamName=name, PartitionKey="a", Data=b"under version 2")
    server.restart()  # the data keys are unwrapped again from their rows: each with its version
    kinesis = helpers.make_client(server.endpoint)
    assert [r["Data"] for r in helpers.read_all(kinesis, name, helpers.shard_id(0))] == [
        b"under version 1",
        b"under version 2",
    ]


# ==================================================== Kinesis server-side encryption, data plane


def sse_stream(kinesis, key_id=None):
    name = helpers.unique_name("sse")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(kinesis, name)
    if key_id:
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key_id)
        helpers.wait_for_status(kinesis, name)
    return name


def read_from(kinesis, name, seq=None):
    if seq:
        return helpers.read_all(kinesis, name, helpers.shard_id(0), "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq)
    return helpers.read_all(kinesis, name, helpers.shard_id(0))


def test_get_records_checks_the_key_that_sealed_the_records_not_the_streams_current_one(kinesd_factory):
    server = kinesd_factory(flags={"--update-stream-ms": "0", "--create-stream-ms": "0"})
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    a, b = new_key(kms), new_key(kms)
    name = sse_stream(kinesis, a["KeyId"])
    kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"under a")
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=b["KeyId"])
    helpers.wait_for_status(kinesis, name)
    under_b = kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"under b")["SequenceNumber"]
    kms.disable_key(KeyId=a["KeyId"])  # the stream's key (b) is fine, the first record's is not
    with helpers.raises_aws(
        "KMSDisabledException", "The request was rejected because the specified customer master key (CMK) isn't enabled."
    ):
        read_from(kinesis, name)
    assert [r["Data"] for r in read_from(kinesis, name, under_b)] == [b"under b"]
    kms.enable_key(KeyId=a["KeyId"])
    kms.disable_key(KeyId=b["KeyId"])
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=helpers.shard_id(0), ShardIteratorType="TRIM_HORIZON")
    first = kinesis.get_records(ShardIterator=it["ShardIterator"], Limit=1)  # only a's record: fine
    assert [r["Data"] for r in first["Records"]] == [b"under a"]
    with helpers.raises_aws("KMSDisabledException"):
        kinesis.get_records(ShardIterator=first["NextShardIterator"])
    # stopped: new records are the node key's, and a disabled b no longer stops writes
    kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=b["KeyId"])
    helpers.wait_for_status(kinesis, name)
    plain = kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"plain")
    assert "EncryptionType" not in plain
    assert [r["Data"] for r in read_from(kinesis, name, plain["SequenceNumber"])] == [b"plain"]
    kms.schedule_key_deletion(KeyId=a["KeyId"], PendingWindowInDays=7)
    with helpers.raises_aws("KMSInvalidStateException"):
        read_from(kinesis, name)


def test_records_under_a_deleted_key_fail_with_kms_access_denied_even_after_a_restart(kinesd_factory):
    server = kinesd_factory(flags={"--test-clock": None, "--update-stream-ms": "0", "--create-stream-ms": "0"})
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    key = new_key(kms)
    kms.create_alias(AliasName="alias/stream-key", TargetKeyId=key["KeyId"])
    name = sse_stream(kinesis, "alias/stream-key")
    other = sse_stream(kinesis, key["KeyId"])  # stays encrypted with the key
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=24 * 20)
    kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"sealed")
    kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/stream-key")
    helpers.wait_for_status(kinesis, name)
    plain = kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"plain")["SequenceNumber"]
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    advance(server, 8 * DAY_MS)
    denied = ("KMSAccessDeniedException",
              "The ciphertext references a key that doesn't exist or that you don't have access to.")
    with helpers.raises_aws(*denied):
        read_from(kinesis, name)
    assert [r["Data"] for r in read_from(kinesis, name, plain)] == [b"plain"]
    # writes to a stream whose key is gone: its key cannot be found
    with helpers.raises_aws("KMSNotFoundException"):
        kinesis.put_record(StreamName=other, PartitionKey="k", Data=b"x")
    with helpers.raises_aws("KMSNotFoundException"):
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/stream-key")
    # after a restart the data key stays closed: the same answer, not an internal failure
    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    with helpers.raises_aws(*denied):
        read_from(kinesis, name)
    assert [r["Data"] for r in read_from(kinesis, name, plain)] == [b"plain"]


def sealed_record_under_a_doomed_key(kinesd_factory):
    """A KMS stream with one record, a consumer, and its key past its deletion date."""
    flags = {"--test-clock": None, "--create-stream-ms": "0", "--register-consumer-ms": "0", "--update-stream-ms": "0"}
    server = kinesd_factory(flags=flags)
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    key = new_key(kms)
    name = sse_stream(kinesis, key["KeyId"])
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=24 * 20)
    helpers.wait_for_status(kinesis, name)
    kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"sealed")
    arn = kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="c")["Consumer"]
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    advance(server, 8 * DAY_MS)
    return server, kms, key, name, arn["ConsumerARN"]


def subscription_error(kinesis, consumer_arn):
    events = kinesis.subscribe_to_shard(ConsumerARN=consumer_arn, ShardId=helpers.shard_id(0),
                                        StartingPosition={"Type": "TRIM_HORIZON"})["EventStream"]
    with pytest.raises(botocore.exceptions.EventStreamError) as err:
        for _ in events:
            pass
    return err.value.response["Error"]


def test_a_subscription_to_records_under_a_deleted_key_ends_with_kms_access_denied(kinesd_factory):
    server, _, _, _, consumer = sealed_record_under_a_doomed_key(kinesd_factory)
    # after a restart, where the data key of the record is closed for good
    server.restart()
    advance(server, 8 * DAY_MS)
    error = subscription_error(helpers.make_client(server.endpoint), consumer)
    assert error["Code"] == "KMSAccessDeniedException", error


def test_a_subscription_to_records_whose_deleted_key_was_swept_ends_with_kms_access_denied(kinesd_factory):
    server, kms, key, name, consumer = sealed_record_under_a_doomed_key(kinesd_factory)
    kinesis = helpers.make_client(server.endpoint)
    # a KMS call sweeps what is due: the key is deleted, and the data keys it wrapped closed
    assert key["KeyId"] not in {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    message = "The ciphertext references a key that doesn't exist or that you don't have access to."
    with helpers.raises_aws("KMSAccessDeniedException", message):
        read_from(kinesis, name)
    assert subscription_error(kinesis, consumer) == {"Code": "KMSAccessDeniedException", "Message": message}


def test_new_records_switch_keys_when_the_encryption_change_leaves_updating(kinesd_factory):
    hour = 3600 * 1000
    server = kinesd_factory(
        flags={"--test-clock": None, "--update-stream-ms": str(hour), "--create-stream-ms": "0"}
    )
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    key = new_key(kms)
    name = sse_stream(kinesis)
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["KeyId"])
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "UPDATING"
    during = kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"during")
    assert "EncryptionType" not in during
    kms.disable_key(KeyId=key["KeyId"])  # not in use yet: writes and reads go on
    kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"during, key disabled")
    assert [r.get("EncryptionType") for r in read_from(kinesis, name)] == [None, None]
    kms.enable_key(KeyId=key["KeyId"])
    advance(server, hour + 1000)
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"after")["EncryptionType"] == "KMS"
    # and back: until the stop's UPDATING ends, records are still the KMS key's
    kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["KeyId"])
    assert kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"stopping")["EncryptionType"] == "KMS"
    server.restart()  # the pending switch survives a restart
    kinesis = helpers.make_client(server.endpoint)
    assert kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"still stopping")["EncryptionType"] == "KMS"
    advance(server, 3 * hour)  # a restart starts the test clock again from the real one
    assert "EncryptionType" not in kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"stopped")
    assert [(r["Data"], r.get("EncryptionType")) for r in read_from(kinesis, name)] == [
        (b"during", None),
        (b"during, key disabled", None),
        (b"after", "KMS"),
        (b"stopping", "KMS"),
        (b"still stopping", "KMS"),
        (b"stopped", None),
    ]


# ============================================ --auth: the caller's permissions on the stream's key

USERS = {  # name: (access key id, secret, identity policy statements or None)
    "admin": ("AKIAKMSADMIN00000001", "admin/secret/0123456789abcdefghijklmnopq", None),
    "producer": ("AKIAKMSPRODUCER00002", "producer/secret/0123456789abcdefghijklm", [
        {"Effect": "Allow", "Action": ["kinesis:*", "kms:GenerateDataKey"], "Resource": "*"}]),
    "consumer": ("AKIAKMSCONSUMER00003", "consumer/secret/0123456789abcdefghijklm", [
        {"Effect": "Allow", "Action": ["kinesis:*", "kms:Decrypt"], "Resource": "*"}]),
    "denied": ("AKIAKMSDENIED0000004", "denied/secret/0123456789abcdefghijklmnop", [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:*:*:key/*"}]),
}


def auth_server(tmp_path_factory, users, **flags):
    """kinesd under --auth with users {name: (akid, secret, identity statements or None[, account])}."""
    from test_auth import start

    d = tmp_path_factory.mktemp("kms-auth")
    text = ""
    for user, (akid, secret, statements, *account) in users.items():
        text += f"[{user}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
        if account:
            text += f"aws_account_id = {account[0]}\n"
        if statements:
            (d / f"{user}.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": statements}))
            text += f"policy_file = {user}.json\n"
    (d / "credentials").write_text(text)
    return start(tmp_path_factory, d / "credentials", **dict({"--update-stream-ms": "0", "--create-stream-ms": "0"}, **flags))


def kms_as(endpoint, key):
    return boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1], region_name=helpers.REGION).client(
        "kms", endpoint_url=endpoint, config=Config(retries={"max_attempts": 0})
    )


def test_a_kms_encrypted_stream_needs_generate_data_key_to_write_and_decrypt_to_read(tmp_path_factory):
    from test_auth import client

    srv = auth_server(tmp_path_factory, USERS)
    try:
        k = {u: client(srv.endpoint, USERS[u][:2]) for u in USERS}
        kms_of = lambda u: kms_as(srv.endpoint, USERS[u])  # noqa: E731
        key = kms_of("admin").create_key()["KeyMetadata"]
        name = sse_stream(k["admin"], key["KeyId"])

        def refused(user, action, why):
            return ("KMSAccessDeniedException",
                    f"User: arn:aws:iam::{helpers.ACCOUNT}:user/{user} is not authorized to perform: {action} "
                    f"on resource: {key['Arn']} {why}")

        assert k["producer"].put_record(StreamName=name, PartitionKey="p", Data=b"x")["EncryptionType"] == "KMS"
        with helpers.raises_aws(*refused("consumer", "kms:GenerateDataKey",
                                         "because no identity-based policy allows the kms:GenerateDataKey action")):
            k["consumer"].put_records(StreamName=name, Records=[{"PartitionKey": "p", "Data": b"y"}])
        assert [r["Data"] for r in read_from(k["consumer"], name)] == [b"x"]
        with helpers.raises_aws(*refused("producer", "kms:Decrypt",
                                         "because no identity-based policy allows the kms:Decrypt action")):
            read_from(k["producer"], name)
        with helpers.raises_aws(*refused("denied", "kms:Decrypt", "with an explicit deny in an identity-based policy")):
            read_from(k["denied"], name)
        assert [r["Data"] for r in read_from(k["admin"], name)] == [b"x"]  # no policy file: the account's
        # a plain stream asks nothing of KMS
        plain = sse_stream(k["admin"])
        k["producer"].put_record(StreamName=plain, PartitionKey="p", Data=b"plain")
        assert [r["Data"] for r in read_from(k["producer"], plain)] == [b"plain"]
        with helpers.raises_aws(*refused("consumer", "kms:GenerateDataKey",
                                         "because no identity-based policy allows the kms:GenerateDataKey action")):
            k["consumer"].start_stream_encryption(StreamName=plain, EncryptionType="KMS", KeyId=key["Arn"])
        # the built-in KMS's own operations are kms: actions on the key (its ARN in the message)
        with helpers.raises_aws("AccessDeniedException", refused("consumer", "kms:Encrypt",
                                "because no identity-based policy allows the kms:Encrypt action")[1]):
            kms_of("consumer").encrypt(KeyId=key["KeyId"], Plaintext=b"z")
        blob = kms_of("admin").encrypt(KeyId=key["KeyId"], Plaintext=b"z")["CiphertextBlob"]
        assert kms_of("consumer").decrypt(CiphertextBlob=blob)["Plaintext"] == b"z"
    finally:
        assert srv.stop() == 0, srv.log()


# ============================================== front-ends sharing a store (PostgreSQL)


def test_a_front_end_that_learns_of_an_encryption_change_wraps_its_data_keys_with_the_kms_key():
    import os

    from frontends import Frontend, fresh_database

    if not os.environ.get("KINESD_PG_URL"):
        pytest.skip("no PostgreSQL: run under tools/with-postgres.sh (make test does)")
    store = fresh_database(os.environ["KINESD_PG_URL"], "t_kms_two_frontends")
    flags = ("--create-stream-ms", "0", "--update-stream-ms", "0", "--no-limits")
    a, b = Frontend(store, flags).start(), Frontend(store, flags).start()
    try:
        ka, kb = helpers.make_client(a.endpoint), helpers.make_client(b.endpoint)
        key = kms_client(a.endpoint).create_key()["KeyMetadata"]
        name = sse_stream(ka)
        kb.put_record(StreamName=name, PartitionKey="k", Data=b"plain, through b")  # b knows the stream
        ka.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key["KeyId"])
        helpers.wait_for_status(ka, name)
        for _ in range(200):  # a control-plane call on b reloads what changed elsewhere
            if kb.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["EncryptionType"] == "KMS":
                break
            time.sleep(0.05)
        assert kb.put_record(StreamName=name, PartitionKey="k", Data=b"sealed, through b")["EncryptionType"] == "KMS"
        # the record's data key is the KMS key's: a reads it as a KMS record, and its key's state applies
        got = read_from(ka, name)
        assert [(r["Data"], r.get("EncryptionType")) for r in got] == [
            (b"plain, through b", None),
            (b"sealed, through b", "KMS"),
        ]
        kms_client(a.endpoint).disable_key(KeyId=key["KeyId"])
        with helpers.raises_aws("KMSDisabledException"):
            read_from(ka, name)
    finally:
        for f in (a, b):
            assert f.stop() == 0, f.log()


KP_USERS = {
    "admin": ("AKIAKPADMIN000000001", "kp-admin/secret/0123456789abcdefghijklmn", None),
    "alice": ("AKIAKPALICE000000002", "kp-alice/secret/0123456789abcdefghijklmn", [
        {"Effect": "Allow", "Action": ["kinesis:*", "kms:*"], "Resource": "*"}]),
    "bob": ("AKIAKPBOB00000000003", "kp-bob/secret/0123456789abcdefghijklmnopq", [
        {"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]),
}


def user_arn(user, account=helpers.ACCOUNT):
    return f"arn:aws:iam::{account}:user/{user}"


def key_policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ROOT_STATEMENT = {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                  "Principal": {"AWS": f"arn:aws:iam::{helpers.ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}


ALIAS_USERS = {
    "admin": ("AKIAALIASADMIN000003", "alias-admin/secret/0123456789abcdefghi", None),
    # kms:* on keys only: the alias operations need the action on the alias too
    "keys": ("AKIAALIASKEYS0000001", "alias-keys/secret/0123456789abcdefghijk", [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "arn:aws:kms:*:*:key/*"}]),
    "both": ("AKIAALIASBOTH0000002", "alias-both/secret/0123456789abcdefghijk", [
        {"Effect": "Allow", "Action": "kms:*", "Resource": ["arn:aws:kms:*:*:key/*", "arn:aws:kms:*:*:alias/app-*"]},
        {"Effect": "Deny", "Action": "kms:DeleteAlias", "Resource": "arn:aws:kms:*:*:alias/app-kept"}]),
}


def test_the_alias_operations_need_the_action_on_the_alias_as_well_as_on_the_key(tmp_path_factory):
    srv = auth_server(tmp_path_factory, ALIAS_USERS)
    try:
        kms = {u: kms_as(srv.endpoint, ALIAS_USERS[u]) for u in ALIAS_USERS}
        key = kms["admin"].create_key()["KeyMetadata"]["KeyId"]
        other = kms["admin"].create_key()["KeyMetadata"]["KeyId"]

        def denied(user, action, alias, why):
            arn = f"arn:aws:kms:{helpers.REGION}:{helpers.ACCOUNT}:{alias}"
            return "AccessDeniedException", f"User: {user_arn(user)} is not authorized to perform: {action} on resource: {arn} {why}"

        no_allow = "because no identity-based policy allows the {} action"
        with helpers.raises_aws(*denied("keys", "kms:CreateAlias", "alias/app-a", no_allow.format("kms:CreateAlias"))):
            kms["keys"].create_alias(AliasName="alias/app-a", TargetKeyId=key)
        with helpers.raises_aws(*denied("both", "kms:CreateAlias", "alias/other", no_allow.format("kms:CreateAlias"))):
            kms["both"].create_alias(AliasName="alias/other", TargetKeyId=key)
        kms["both"].create_alias(AliasName="alias/app-a", TargetKeyId=key)
        kms["both"].create_alias(AliasName="alias/app-kept", TargetKeyId=key)
        with helpers.raises_aws(*denied("keys", "kms:UpdateAlias", "alias/app-a", no_allow.format("kms:UpdateAlias"))):
            kms["keys"].update_alias(AliasName="alias/app-a", TargetKeyId=other)
        kms["both"].update_alias(AliasName="alias/app-a", TargetKeyId=other)
        with helpers.raises_aws(*denied("keys", "kms:DeleteAlias", "alias/app-a", no_allow.format("kms:DeleteAlias"))):
            kms["keys"].delete_alias(AliasName="alias/app-a")
        with helpers.raises_aws(*denied("both", "kms:DeleteAlias", "alias/app-kept",
                                        "with an explicit deny in an identity-based policy")):
            kms["both"].delete_alias(AliasName="alias/app-kept")
        kms["both"].delete_alias(AliasName="alias/app-a")
        names = {a["AliasName"]: a.get("TargetKeyId") for a in kms["admin"].list_aliases()["Aliases"]}
        assert "alias/app-a" not in names and names["alias/app-kept"] == key, names
    finally:
        assert srv.stop() == 0, srv.log()


def test_key_policies_decide_with_identity_policies_who_may_use_a_key(tmp_path_factory):
    srv = auth_server(tmp_path_factory, KP_USERS)
    try:
        kms = {u: kms_as(srv.endpoint, KP_USERS[u]) for u in KP_USERS}

        def denied(user, action, arn, why):
            return "AccessDeniedException", f"User: {user_arn(user)} is not authorized to perform: {action} on resource: {arn} {why}"

        # the default policy delegates to the account's identity policies
        default = kms["admin"].create_key()["KeyMetadata"]
        blob = kms["alice"].encrypt(KeyId=default["KeyId"], Plaintext=b"a")["CiphertextBlob"]
        with helpers.raises_aws(*denied("bob", "kms:Decrypt", default["Arn"],
                                        "because no identity-based policy allows the kms:Decrypt action")):
            kms["bob"].decrypt(CiphertextBlob=blob, KeyId=default["Arn"])
        # without a KeyId, AWS names the ciphertext's key only as that
        with helpers.raises_aws("AccessDeniedException", f"User: {user_arn('bob')} is not authorized to perform: "
                                "kms:Decrypt on the resource associated with this ciphertext because no "
                                "identity-based policy allows the kms:Decrypt action"):
            kms["bob"].decrypt(CiphertextBlob=blob)

        # a key policy naming a user is enough on its own; one that grants the account nothing
        # refuses even a user whose identity policy allows everything
        bob_only = key_policy({"Effect": "Allow", "Principal": {"AWS": user_arn("bob")}, "Action": "kms:*", "Resource": "*"})
        # the lockout safety check: the caller must keep kms:PutKeyPolicy
        with helpers.raises_aws("MalformedPolicyDocumentException",
                                "The new key policy will not allow you to update the key policy in the future."):
            kms["admin"].create_key(Policy=bob_only)
        key = kms["admin"].create_key(Policy=bob_only, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
        sealed = kms["bob"].encrypt(KeyId=key["KeyId"], Plaintext=b"b")["CiphertextBlob"]
        assert kms["bob"].decrypt(CiphertextBlob=sealed)["Plaintext"] == b"b"
        for user in ("alice", "admin"):
            with helpers.raises_aws(*denied(user, "kms:Encrypt", key["Arn"],
                                            "because no resource-based policy allows the kms:Encrypt action")):
                kms[user].encrypt(KeyId=key["KeyId"], Plaintext=b"x")
            with helpers.raises_aws(*denied(user, "kms:DescribeKey", key["Arn"],
                                            "because no resource-based policy allows the kms:DescribeKey action")):
                kms[user].describe_key(KeyId=key["Arn"])
        with helpers.raises_aws("AccessDeniedException", f"User: {user_arn('alice')} is not authorized to perform: "
                                "kms:Decrypt on the resource associated with this ciphertext because no "
                                "resource-based policy allows the kms:Decrypt action"):
            kms["alice"].decrypt(CiphertextBlob=sealed)
        # an explicit Deny in the key policy wins over the root's Allow and the identity policy
        deny = key_policy(ROOT_STATEMENT, {"Effect": "Deny", "Principal": {"AWS": user_arn("alice")},
                                           "Action": "kms:Decrypt", "Resource": "*"})
        guarded = kms["admin"].create_key(Policy=deny)["KeyMetadata"]
        blob = kms["alice"].encrypt(KeyId=guarded["KeyId"], Plaintext=b"g")["CiphertextBlob"]
        with helpers.raises_aws(*denied("alice", "kms:Decrypt", guarded["Arn"],
                                        "with an explicit deny in a resource-based policy")):
            kms["alice"].decrypt(CiphertextBlob=blob, KeyId=guarded["KeyId"])
        assert kms["admin"].decrypt(CiphertextBlob=blob)["Plaintext"] == b"g"
        # PutKeyPolicy changes what is allowed from the next call on
        kms["admin"].put_key_policy(KeyId=guarded["KeyId"], PolicyName="default", Policy=key_policy(ROOT_STATEMENT))
        assert kms["alice"].decrypt(CiphertextBlob=blob)["Plaintext"] == b"g"
        # the account-wide operations are the identity policy's alone
        with helpers.raises_aws("AccessDeniedException", re.compile(r".*user/bob is not authorized to perform: kms:ListKeys on resource: \* .*")):
            kms["bob"].list_keys()
    finally:
        assert srv.stop() == 0, srv.log()


def test_a_key_policy_decides_the_kinesis_data_path_too(tmp_path_factory):
    from test_auth import client

    srv = auth_server(tmp_path_factory, KP_USERS)
    try:
        kms = {u: kms_as(srv.endpoint, KP_USERS[u]) for u in KP_USERS}
        k = {u: client(srv.endpoint, KP_USERS[u][:2]) for u in KP_USERS}

        def refused(user, action, arn, why):
            return ("KMSAccessDeniedException",
                    f"User: {user_arn(user)} is not authorized to perform: {action} on resource: {arn} {why}")

        # bob may write through the key (its policy names him) but not read; alice is denied writing
        policy = key_policy(
            ROOT_STATEMENT,
            {"Effect": "Allow", "Principal": {"AWS": user_arn("bob")}, "Action": "kms:GenerateDataKey", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": user_arn("alice")}, "Action": "kms:GenerateDataKey", "Resource": "*"},
        )
        key = kms["admin"].create_key(Policy=policy)["KeyMetadata"]
        name = sse_stream(k["admin"], key["KeyId"])
        assert k["bob"].put_record(StreamName=name, PartitionKey="p", Data=b"by bob")["EncryptionType"] == "KMS"
        with helpers.raises_aws(*refused("bob", "kms:Decrypt", key["Arn"],
                                         "because no identity-based policy allows the kms:Decrypt action")):
            read_from(k["bob"], name)
        with helpers.raises_aws(*refused("alice", "kms:GenerateDataKey", key["Arn"],
                                         "with an explicit deny in a resource-based policy")):
            k["alice"].put_records(StreamName=name, Records=[{"PartitionKey": "p", "Data": b"x"}])
        assert [r["Data"] for r in read_from(k["alice"], name)] == [b"by bob"]
        # a key whose policy grants the account nothing: even the account's admin cannot
        # encrypt a stream with it, nor write to or read from a stream it encrypts
        bob_only = key_policy({"Effect": "Allow", "Principal": {"AWS": user_arn("bob")}, "Action": "kms:*", "Resource": "*"})
        closed = kms["admin"].create_key(Policy=bob_only, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
        other = sse_stream(k["admin"])
        with helpers.raises_aws(*refused("admin", "kms:GenerateDataKey", closed["Arn"],
                                         "because no resource-based policy allows the kms:GenerateDataKey action")):
            k["admin"].start_stream_encryption(StreamName=other, EncryptionType="KMS", KeyId=closed["Arn"])
        k["bob"].start_stream_encryption(StreamName=other, EncryptionType="KMS", KeyId=closed["Arn"])
        helpers.wait_for_status(k["admin"], other)
        k["bob"].put_record(StreamName=other, PartitionKey="p", Data=b"closed")
        assert [r["Data"] for r in read_from(k["bob"], other)] == [b"closed"]
        with helpers.raises_aws(*refused("admin", "kms:Decrypt", closed["Arn"],
                                         "because no resource-based policy allows the kms:Decrypt action")):
            read_from(k["admin"], other)
        # the AWS managed key lets every user of the account use it through Kinesis, and no one directly
        managed = sse_stream(k["admin"], "alias/aws/kinesis")
        k["bob"].put_record(StreamName=managed, PartitionKey="p", Data=b"managed")
        assert [r["Data"] for r in read_from(k["bob"], managed)] == [b"managed"]
        arn = kms["admin"].describe_key(KeyId="alias/aws/kinesis")["KeyMetadata"]["Arn"]
        with helpers.raises_aws("AccessDeniedException", f"User: {user_arn('alice')} is not authorized to perform: "
                                f"kms:Encrypt on resource: {arn} because no resource-based policy allows the kms:Encrypt action"):
            kms["alice"].encrypt(KeyId="alias/aws/kinesis", Plaintext=b"x")
    finally:
        assert srv.stop() == 0, srv.log()


OTHER = "111111111111"
ACCT_USERS = {
    "alice": ("AKIAACCTALICE0000001", "acct-alice/secret/0123456789abcdefghijk", [
        {"Effect": "Allow", "Action": ["kinesis:*", "kms:*"], "Resource": "*"}]),
    "eve": ("AKIAACCTEVE000000002", "acct-eve/secret/0123456789abcdefghijklmn", [
        {"Effect": "Allow", "Action": ["kinesis:*", "kms:*"], "Resource": "*"}], OTHER),
    "mallory": ("AKIAACCTMALLORY00003", "acct-mallory/secret/0123456789abcdefghi", [
        {"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}], OTHER),
}


def test_keys_and_aliases_are_per_account_and_another_accounts_key_needs_its_key_policy(tmp_path_factory):
    srv = auth_server(tmp_path_factory, ACCT_USERS)
    try:
        kms = {u: kms_as(srv.endpoint, ACCT_USERS[u]) for u in ACCT_USERS}
        mine = kms["alice"].create_key()["KeyMetadata"]
        theirs = kms["eve"].create_key()["KeyMetadata"]
        assert theirs["AWSAccountId"] == OTHER and theirs["Arn"] == f"arn:aws:kms:us-east-1:{OTHER}:key/{theirs['KeyId']}"
        assert mine["AWSAccountId"] == helpers.ACCOUNT
        listed = lambda u: {k["KeyId"] for k in kms[u].list_keys()["Keys"]}  # noqa: E731
        assert mine["KeyId"] in listed("alice") and theirs["KeyId"] not in listed("alice")
        assert listed("eve") == {theirs["KeyId"]}
        # a key id or an alias name names a key of the caller's own account
        with helpers.raises_aws("NotFoundException", f"Key 'arn:aws:kms:us-east-1:{OTHER}:key/{mine['KeyId']}' does not exist"):
            kms["eve"].describe_key(KeyId=mine["KeyId"])
        kms["alice"].create_alias(AliasName="alias/shared", TargetKeyId=mine["KeyId"])
        kms["eve"].create_alias(AliasName="alias/shared", TargetKeyId=theirs["KeyId"])  # another account's name
        assert kms["alice"].describe_key(KeyId="alias/shared")["KeyMetadata"]["KeyId"] == mine["KeyId"]
        assert kms["eve"].describe_key(KeyId="alias/shared")["KeyMetadata"]["KeyId"] == theirs["KeyId"]
        assert [a["AliasArn"] for a in kms["eve"].list_aliases()["Aliases"]] == [f"arn:aws:kms:us-east-1:{OTHER}:alias/shared"]
        with helpers.raises_aws("NotFoundException"):  # an alias must name a key of its own account
            kms["eve"].create_alias(AliasName="alias/theirs", TargetKeyId=mine["Arn"])
        # by ARN, another account's key is there, but its default policy grants that account nothing
        hidden = ("User: arn:aws:iam::{acct}:user/{user} is not authorized to perform: {action} on this resource "
                  "because the resource does not exist in this Region, no resource-based policies allow access, or a "
                  "resource-based policy explicitly denies access")
        with helpers.raises_aws("AccessDeniedException", hidden.format(acct=OTHER, user="eve", action="kms:Encrypt")):
            kms["eve"].encrypt(KeyId=mine["Arn"], Plaintext=b"x")
        blob = kms["alice"].encrypt(KeyId=mine["KeyId"], Plaintext=b"for eve")["CiphertextBlob"]
        with helpers.raises_aws("AccessDeniedException", hidden.format(acct=OTHER, user="eve", action="kms:Decrypt")):
            kms["eve"].decrypt(CiphertextBlob=blob)
        # once the key policy names the other account, its identity policies decide for its users
        kms["alice"].put_key_policy(KeyId=mine["KeyId"], PolicyName="default", Policy=key_policy(
            ROOT_STATEMENT,
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}))
        assert kms["eve"].decrypt(CiphertextBlob=blob)["Plaintext"] == b"for eve"
        assert kms["eve"].describe_key(KeyId=mine["Arn"])["KeyMetadata"]["AWSAccountId"] == helpers.ACCOUNT
        sealed = kms["eve"].encrypt(KeyId=mine["Arn"], Plaintext=b"from eve")["CiphertextBlob"]
        assert kms["alice"].decrypt(CiphertextBlob=sealed)["Plaintext"] == b"from eve"
        with helpers.raises_aws("AccessDeniedException", f"User: arn:aws:iam::{OTHER}:user/mallory is not authorized to "
                                f"perform: kms:Encrypt on resource: {mine['Arn']} because no identity-based policy "
                                "allows the kms:Encrypt action"):
            kms["mallory"].encrypt(KeyId=mine["Arn"], Plaintext=b"x")
        with helpers.raises_aws("AccessDeniedException", hidden.format(acct=OTHER, user="eve", action="kms:DisableKey")):
            kms["eve"].disable_key(KeyId=mine["Arn"])  # not granted to the other account
    finally:
        assert srv.stop() == 0, srv.log()


def test_keys_are_per_region(kms, endpoint):
    west = boto3.session.Session(
        aws_access_key_id=helpers.ACCESS_KEY, aws_secret_access_key=helpers.SECRET_KEY, region_name="us-west-2"
    ).client("kms", endpoint_url=endpoint, config=Config(retries={"max_attempts": 0}))
    key = west.create_key()["KeyMetadata"]
    assert key["Arn"].startswith(f"arn:aws:kms:us-west-2:{helpers.ACCOUNT}:key/")
    assert west.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"] == key["Arn"]
    with helpers.raises_aws("NotFoundException", f"Key 'arn:aws:kms:us-east-1:{helpers.ACCOUNT}:key/{key['KeyId']}' does not exist"):
        kms.describe_key(KeyId=key["KeyId"])
    with helpers.raises_aws("NotFoundException", f"Invalid arn {key['Arn']}"):
        kms.describe_key(KeyId=key["Arn"])
    assert key["KeyId"] not in {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    west.create_alias(AliasName="alias/west-only", TargetKeyId=key["KeyId"])
    with helpers.raises_aws("NotFoundException"):
        kms.describe_key(KeyId="alias/west-only")
