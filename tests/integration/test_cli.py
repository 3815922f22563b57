"""The AWS CLI (Debian's awscli, v2) against the server, run as a subprocess.

Each CLI start costs about a second, so setup and checks go through boto3 where the CLI is not
the point of the test.
"""

import base64
import json
import os
import shutil
import subprocess

import pytest

import helpers
from helpers import shard_id, stream_arn

AWS = "/usr/bin/aws"

pytestmark = pytest.mark.skipif(not os.path.exists(AWS), reason="Debian's awscli package is not installed")


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-home")
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=helpers.ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=helpers.SECRET_KEY,
        AWS_DEFAULT_REGION=helpers.REGION,
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_PAGER="",
        HOME=str(home),
    )
    yield env
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def aws(endpoint, cli_env):
    """aws(*args) -> parsed JSON output; aws(*args, check=False) -> CompletedProcess."""

    def run(*args, check=True):
        cmd = [AWS, "--endpoint-url", endpoint, "--output", "json", "--no-cli-pager", "kinesis", *args]
        proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=60)
        if not check:
            return proc
        assert proc.returncode == 0, f"{cmd} exited {proc.returncode}: {proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    return run


def test_cli_create_stream_makes_a_stream_the_cli_then_describes(aws, kinesis, stream_name):
    assert aws("create-stream", "--stream-name", stream_name, "--shard-count", "2") is None
    helpers.wait_for_status(kinesis, stream_name)
    summary = aws("describe-stream-summary", "--stream-name", stream_name)["StreamDescriptionSummary"]
    assert summary["StreamName"] == stream_name
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == 2
    assert summary["StreamARN"] == stream_arn(stream_name)


def test_cli_put_record_takes_base64_data_by_default(aws, kinesis, make_stream):
    name = make_stream(1)
    raw = bytes(range(256))
    out = aws("put-record", "--stream-name", name, "--partition-key", "pk",
              "--data", base64.b64encode(raw).decode())
    assert out["ShardId"] == shard_id(0)
    [record] = helpers.read_all(kinesis, name, shard_id(0))
    assert (record["Data"], record["SequenceNumber"]) == (raw, out["SequenceNumber"])


def test_cli_get_records_prints_data_as_base64(aws, kinesis, make_stream):
    name = make_stream(1)
    kinesis.put_record(StreamName=name, PartitionKey="pk", Data=b"\x00\xffbinary")
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType="TRIM_HORIZON")
    out = aws("get-records", "--shard-iterator", it["ShardIterator"])
    [record] = out["Records"]
    assert base64.b64decode(record["Data"]) == b"\x00\xffbinary"
    assert record["PartitionKey"] == "pk"
    assert out["MillisBehindLatest"] == 0
    assert out["NextShardIterator"]


def test_cli_put_records_answers_each_record_in_order(aws, kinesis, make_stream):
    name = make_stream(3)
    shards = helpers.all_shards(kinesis, name)
    records = [{"PartitionKey": f"key-{i}", "Data": base64.b64encode(f"d{i}".encode()).decode()} for i in range(6)]
    out = aws("put-records", "--stream-name", name, "--records", json.dumps(records))
    assert out["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in out["Records"]] == [
        helpers.shard_for_hash(shards, helpers.hash_key(r["PartitionKey"])) for r in records
    ]


def test_cli_describe_stream_pages_through_every_shard(aws, make_stream):
    name = make_stream(3)
    out = aws("describe-stream", "--stream-name", name, "--page-size", "1")
    assert [s["ShardId"] for s in out["StreamDescription"]["Shards"]] == [shard_id(i) for i in range(3)]


@pytest.mark.not_kinesalite("ignores MaxResults and NextToken")
def test_cli_list_shards_pages_by_hand_with_max_results_and_next_token(aws, make_stream):
    # The CLI's own paginator resends StreamName with NextToken, which AWS refuses
    # (botocore issue 2009), so page by hand as AWS users must.
    name = make_stream(3)
    first = aws("list-shards", "--stream-name", name, "--max-results", "2", "--no-paginate")
    rest = aws("list-shards", "--next-token", first["NextToken"], "--no-paginate")
    assert [s["ShardId"] for s in first["Shards"] + rest["Shards"]] == [shard_id(i) for i in range(3)]
    assert "NextToken" not in rest


@pytest.mark.not_kinesalite("no NextToken or StreamSummaries in ListStreams")
def test_cli_list_streams_pages_through_every_stream_with_next_token(aws, kinesis, make_stream):
    names = [make_stream(1) for _ in range(3)]
    out = aws("list-streams", "--page-size", "2")
    assert set(names) <= set(out["StreamNames"])
    assert len(out["StreamNames"]) == len(set(out["StreamNames"])) == len(helpers.list_all_stream_names(kinesis))
    assert set(names) <= {s["StreamName"] for s in out["StreamSummaries"]}


@pytest.mark.not_kinesalite("drops StreamARN")
def test_cli_accepts_a_stream_arn(aws, kinesis, make_stream):
    name = make_stream(1)
    out = aws("put-record", "--stream-arn", stream_arn(name), "--partition-key", "pk", "--data", "YXJu")
    assert out["ShardId"] == shard_id(0)
    assert [r["Data"] for r in helpers.read_all(kinesis, name, shard_id(0))] == [b"arn"]


def test_cli_reports_an_unknown_stream_with_the_aws_error_and_exit_status_254(aws, stream_name):
    proc = aws("describe-stream-summary", "--stream-name", stream_name, check=False)
    assert proc.returncode == 254, proc
    assert "An error occurred (ResourceNotFoundException) when calling the DescribeStreamSummary operation: " \
           + helpers.not_found_message(stream_name) in proc.stderr
