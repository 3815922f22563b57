"""Fault injection: --error-probability P fails PutRecord(s) entries and GetRecords calls with
ProvisionedThroughputExceededException or InternalFailure; --latency-ms N delays every API call.

Each test starts its own kinesd (without throughput limits, the default flags), so every
failure seen here is an injected one.
"""

import time

import pytest
from botocore.exceptions import ClientError

import helpers
from helpers import ACCOUNT, shard_id

pytestmark = pytest.mark.own_server

THROTTLED = "ProvisionedThroughputExceededException"
INTERNAL = "InternalFailure"


def rate_message(stream, shard=0):
    return f"Rate exceeded for shard {shard_id(shard)} in stream {stream} under account {ACCOUNT}."


def faulty_server(kinesd_factory, probability="0.5"):
    server = kinesd_factory(flags={"--error-probability": probability})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(kinesis, "s")
    return server, kinesis


def outcome(fn):
    """None when fn succeeds, else (error code, HTTP status)."""
    try:
        fn()
        return None
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def iterator(kinesis, kind="TRIM_HORIZON"):
    return kinesis.get_shard_iterator(StreamName="s", ShardId=shard_id(0), ShardIteratorType=kind)["ShardIterator"]


def read_back(kinesis):
    """The whole shard, retrying the GetRecords calls that fail on purpose."""
    it, records = iterator(kinesis), []
    for _ in range(2000):
        try:
            out = kinesis.get_records(ShardIterator=it)
        except ClientError as e:
            assert e.response["Error"]["Code"] in (THROTTLED, INTERNAL), e.response
            continue
        records += out["Records"]
        it = out["NextShardIterator"]
        if not out["Records"]:
            return records
    raise AssertionError("GetRecords never reached the tip of the shard")


def test_about_half_of_put_records_entries_fail_and_failed_entries_are_not_written(kinesd_factory):
    _, kinesis = faulty_server(kinesd_factory)
    written, codes = [], {THROTTLED: 0, INTERNAL: 0}
    total = 0
    for call in range(4):
        batch = [{"PartitionKey": f"k{i % 10}", "Data": f"{call}-{i}".encode()} for i in range(500)]
        out = kinesis.put_records(StreamName="s", Records=batch)
        failed = 0
        for rec, entry in zip(batch, out["Records"]):
            if "ErrorCode" in entry:
                failed += 1
                codes[entry["ErrorCode"]] += 1  # KeyError: an unexpected code
                expected = rate_message("s") if entry["ErrorCode"] == THROTTLED else "Internal service failure."
                assert entry == {"ErrorCode": entry["ErrorCode"], "ErrorMessage": expected}, entry
            else:
                assert set(entry) == {"SequenceNumber", "ShardId"}, entry
                written.append((entry["SequenceNumber"], rec["Data"]))
        assert out["FailedRecordCount"] == failed
        total += len(batch)
    failures = total - len(written)
    assert 0.40 * total <= failures <= 0.60 * total, failures
    assert codes[THROTTLED] >= 0.15 * total and codes[INTERNAL] >= 0.15 * total, codes

    assert [(r["SequenceNumber"], r["Data"]) for r in read_back(kinesis)] == written


def test_put_record_sometimes_fails_with_throttling_or_internal_failure(kinesd_factory):
    _, kinesis = faulty_server(kinesd_factory)
    results, written = [], []
    for i in range(80):
        data = f"r{i}".encode()
        try:
            out = kinesis.put_record(StreamName="s", PartitionKey="k", Data=data)
            written.append((out["SequenceNumber"], data))
            results.append(None)
        except ClientError as e:
            err, status = e.response["Error"], e.response["ResponseMetadata"]["HTTPStatusCode"]
            if err["Code"] == THROTTLED:
                assert status == 400 and err["Message"] == rate_message("s"), e.response
            else:
                assert (err["Code"], status) == (INTERNAL, 500), e.response
            results.append(err["Code"])
    assert None in results and THROTTLED in results and INTERNAL in results, results
    assert 0.25 * len(results) <= len(results) - results.count(None) <= 0.75 * len(results), results
    assert [(r["SequenceNumber"], r["Data"]) for r in read_back(kinesis)] == written


def test_get_records_sometimes_fails_with_throttling_or_internal_failure(kinesd_factory):
    _, kinesis = faulty_server(kinesd_factory)
    for _ in range(100):  # PutRecord fails half the time too
        if outcome(lambda: kinesis.put_record(StreamName="s", PartitionKey="k", Data=b"only")) is None:
            break
    it = iterator(kinesis)
    results = []
    for _ in range(60):
        try:
            out = kinesis.get_records(ShardIterator=it)
            assert [r["Data"] for r in out["Records"]] == [b"only"]
            results.append(None)
        except ClientError as e:
            err, status = e.response["Error"], e.response["ResponseMetadata"]["HTTPStatusCode"]
            if err["Code"] == THROTTLED:
                assert status == 400 and err["Message"] == rate_message("s"), e.response
            else:
                assert (err["Code"], status) == (INTERNAL, 500), e.response
            results.append(err["Code"])
    assert None in results and THROTTLED in results and INTERNAL in results, results


def test_error_probability_leaves_the_other_operations_alone(kinesd_factory):
    _, kinesis = faulty_server(kinesd_factory, probability="0.9")
    for _ in range(20):
        kinesis.list_streams()
        kinesis.describe_stream_summary(StreamName="s")
        kinesis.list_shards(StreamName="s")
        assert iterator(kinesis)


def test_error_probability_zero_never_fails(kinesd_factory):
    _, kinesis = faulty_server(kinesd_factory, probability="0")
    for call in range(4):
        out = kinesis.put_records(
            StreamName="s", Records=[{"PartitionKey": f"k{i}", "Data": f"{call}-{i}".encode()} for i in range(500)]
        )
        assert out["FailedRecordCount"] == 0
    for i in range(50):
        kinesis.put_record(StreamName="s", PartitionKey="k", Data=f"p{i}".encode())
    it = iterator(kinesis)
    for _ in range(50):
        out = kinesis.get_records(ShardIterator=it, Limit=100)
        assert len(out["Records"]) == 100
    assert len(helpers.read_all(kinesis, "s", shard_id(0))) == 2050


def test_latency_ms_delays_every_call_by_at_least_that_long(kinesd_factory):
    server = kinesd_factory(flags={"--latency-ms": "200"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(kinesis, "s")
    iterator_value = iterator(kinesis)
    calls = {
        "ListStreams": lambda: kinesis.list_streams(),
        "PutRecord": lambda: kinesis.put_record(StreamName="s", PartitionKey="k", Data=b"x"),
        "GetShardIterator": lambda: iterator(kinesis),
        "GetRecords": lambda: kinesis.get_records(ShardIterator=iterator_value),
        "DescribeStreamSummary (unknown stream)": lambda: outcome(
            lambda: kinesis.describe_stream_summary(StreamName="missing")
        ),
    }
    for name, call in calls.items():
        start = time.monotonic()
        call()
        elapsed = time.monotonic() - start
        assert elapsed >= 0.2, (name, elapsed)
