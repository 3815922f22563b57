"""Throughput limits: AWS's per-shard data-plane rates and per-account control-plane rates.

Every test here starts its own kinesd with limits (the default), so
each starts with full token buckets: a bucket holds one second of its rate and refills
continuously. Per shard: writes 1,000 records/s and 1 MiB/s (data + partition key), GetRecords
5 calls/s, GetShardIterator 5 calls/s. Per account: each control-plane operation's rate
(DescribeStreamSummary 20/s, ListStreams 5/s, ...), overridable with --rate-limit.
"""

import time

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import helpers
from helpers import ACCOUNT, raises_aws, shard_id

pytestmark = pytest.mark.own_server

LIMITED = {"--no-limits": False}
THROTTLED = "ProvisionedThroughputExceededException"


def rate_message(stream, shard=0):
    return f"Rate exceeded for shard {shard_id(shard)} in stream {stream} under account {ACCOUNT}."


def limited_server(kinesd_factory, **flags):
    server = kinesd_factory(flags=dict(LIMITED, **flags))
    return server, helpers.make_client(server.endpoint)


def new_stream(kinesis, name, shards=1):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    helpers.wait_for_status(kinesis, name)
    return name


def retrying_client(endpoint):
    """boto3 as a production producer configures it: standard retry mode, 10 attempts."""
    core = botocore.session.get_session()
    if helpers.NEWER_MODEL_DIR:
        core.set_config_variable("data_path", helpers.NEWER_MODEL_DIR)
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=helpers.ACCESS_KEY,
        aws_secret_access_key=helpers.SECRET_KEY,
        region_name=helpers.REGION,
    )
    config = Config(retries={"mode": "standard", "max_attempts": 10}, connect_timeout=10, read_timeout=10)
    return session.client("kinesis", endpoint_url=endpoint, config=config)


def check_put_records_answer(out, stream, shard=0):
    """Every entry is either written (SequenceNumber, ShardId) or throttled (AWS's code and
    message, nothing else); FailedRecordCount counts the throttled ones. Returns the flags."""
    written = []
    for entry in out["Records"]:
        if "ErrorCode" in entry:
            assert entry == {"ErrorCode": THROTTLED, "ErrorMessage": rate_message(stream, shard)}, entry
            written.append(False)
        else:
            assert set(entry) == {"SequenceNumber", "ShardId"}, entry
            assert entry["ShardId"] == shard_id(shard)
            written.append(True)
    assert out.get("FailedRecordCount", 0) == written.count(False)
    return written


def read_shard(kinesis, stream, shard=0):
    return helpers.read_all(kinesis, stream, shard_id(shard))


def call_outcomes(fn, n):
    """Call fn n times as fast as possible: the error code of each call, or None for success."""
    outcomes = []
    start = time.monotonic()
    for _ in range(n):
        try:
            fn()
            outcomes.append(None)
        except ClientError as e:
            outcomes.append((e.response["Error"]["Code"], e.response["Error"].get("Message"),
                             e.response["ResponseMetadata"]["HTTPStatusCode"]))
    return outcomes, time.monotonic() - start


# ================================================================================== writes


def test_a_fresh_shard_admits_a_burst_of_about_a_thousand_records_and_throttles_the_rest(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "burst")
    sent, written = [], []
    start = time.monotonic()
    for call in range(4):
        batch = [{"PartitionKey": f"k{i % 7}", "Data": f"{call}-{i}".encode()} for i in range(500)]
        out = kinesis.put_records(StreamName=stream, Records=batch)
        flags = check_put_records_answer(out, stream)
        if call < 2:  # the first 1,000 records fit in the full bucket
            assert all(flags), (call, out["FailedRecordCount"])
        sent += batch
        written += [(rec, entry.get("SequenceNumber")) for rec, entry, ok in zip(batch, out["Records"], flags) if ok]
    elapsed = time.monotonic() - start

    # 1,000 from the bucket plus at most what refilled (1 per ms) while the calls ran
    assert 1000 <= len(written) <= 1000 + 1000 * elapsed + 2, (len(written), elapsed)
    assert len(written) < len(sent)

    records = read_shard(kinesis, stream)
    assert [(r["PartitionKey"], r["Data"], r["SequenceNumber"]) for r in records] == [
        (rec["PartitionKey"], rec["Data"], seq) for rec, seq in written
    ]


def test_put_records_writes_what_fits_the_byte_budget_and_throttles_only_what_does_not(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "bytes")
    big = 900 * 1024
    batch = [
        {"PartitionKey": "big", "Data": b"a" * big},
        {"PartitionKey": "big", "Data": b"b" * big},  # 900 KiB more than the 1 MiB budget allows
    ] + [{"PartitionKey": "small", "Data": bytes([i]) * 1024} for i in range(10)]  # 10 KiB: fits
    out = kinesis.put_records(StreamName=stream, Records=batch)
    assert check_put_records_answer(out, stream) == [True, False] + [True] * 10
    assert out["FailedRecordCount"] == 1

    # right away, a call whose every entry is over the budget writes nothing
    out = kinesis.put_records(StreamName=stream, Records=[{"PartitionKey": "big", "Data": b"c" * big}] * 2)
    assert check_put_records_answer(out, stream) == [False, False]
    assert out["FailedRecordCount"] == 2

    records = read_shard(kinesis, stream)
    assert [r["Data"] for r in records] == [batch[0]["Data"]] + [rec["Data"] for rec in batch[2:]]


def test_the_partition_key_counts_towards_the_byte_rate(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "pkbytes")
    # 500 records of 1,900 bytes of data: 950,000 bytes, under 1 MiB; with their 256-byte
    # partition keys 1,078,000 bytes, over it. Only about 1 MiB / 2,156 = 486 fit.
    batch = [{"PartitionKey": f"{i:03d}".ljust(256, "p"), "Data": b"d" * 1900} for i in range(500)]
    out = kinesis.put_records(StreamName=stream, Records=batch)
    flags = check_put_records_answer(out, stream)
    accepted = flags.count(True)
    assert 480 <= accepted <= 495, accepted
    assert flags == [True] * accepted + [False] * (500 - accepted)
    assert [r["PartitionKey"] for r in read_shard(kinesis, stream)] == [rec["PartitionKey"] for rec in batch[:accepted]]


def test_put_record_over_the_byte_rate_answers_provisioned_throughput_exceeded(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "putrecord")
    first = kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"1" * 1_000_000)
    # about 48 KiB are left; 500 KB need half a second of refill
    with raises_aws(THROTTLED, rate_message(stream)):
        kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"2" * 500_000)
    assert [r["SequenceNumber"] for r in read_shard(kinesis, stream)] == [first["SequenceNumber"]]

    time.sleep(1.2)  # the bucket refills to a full second of rate
    third = kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"3" * 500_000)
    assert [(r["SequenceNumber"], r["Data"][:1]) for r in read_shard(kinesis, stream)] == [
        (first["SequenceNumber"], b"1"),
        (third["SequenceNumber"], b"3"),
    ]


def test_write_limits_are_per_shard(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "pershard", shards=2)
    low, high = "0", str(helpers.POW_128 - 1)
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"x" * 1_000_000, ExplicitHashKey=low)
    with raises_aws(THROTTLED, rate_message(stream, 0)):
        kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"x" * 500_000, ExplicitHashKey=low)
    out = kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"x" * 500_000, ExplicitHashKey=high)
    assert out["ShardId"] == shard_id(1)
    # in one PutRecords call, the exhausted shard's entry fails and the other shard's is written
    out = kinesis.put_records(StreamName=stream, Records=[
        {"PartitionKey": "k", "Data": b"y" * 400_000, "ExplicitHashKey": low},
        {"PartitionKey": "k", "Data": b"y" * 400_000, "ExplicitHashKey": high},
    ])
    assert out["FailedRecordCount"] == 1
    assert out["Records"][0] == {"ErrorCode": THROTTLED, "ErrorMessage": rate_message(stream, 0)}
    assert out["Records"][1]["ShardId"] == shard_id(1)
    assert [len(r["Data"]) for r in read_shard(kinesis, stream, 0)] == [1_000_000]
    assert [len(r["Data"]) for r in read_shard(kinesis, stream, 1)] == [500_000, 400_000]


@pytest.mark.parametrize("mib", [4, 10])
def test_a_record_larger_than_the_byte_bucket_is_written_when_the_bucket_is_full_and_throttles_what_follows(
    kinesd_factory, mib
):
    server, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, f"large{mib}")
    api = helpers.RawApi(server.endpoint)
    api.ok("UpdateMaxRecordSize", {"StreamARN": helpers.stream_arn(stream), "MaxRecordSizeInKiB": 10240})
    helpers.wait_for_status(kinesis, stream)
    large = bytes(range(256)) * (mib * 4096 - 1)  # with its 1-byte key, under MaxRecordSizeInKiB
    out = kinesis.put_record(StreamName=stream, PartitionKey="k", Data=large)
    assert out["ShardId"] == shard_id(0)
    # the record is paid for at 1 MiB/s: the shard's next write, however small, waits
    with raises_aws(THROTTLED, rate_message(stream)):
        kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"small")
    # one read: its 4 or 10 MiB answer puts the shard's read bucket in debt in turn
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(0), ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"]
    assert [(r["SequenceNumber"], r["Data"]) for r in records] == [(out["SequenceNumber"], large)]


def test_a_producer_at_twice_the_limit_gets_about_half_its_records_accepted(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "twice")
    # 2,000 records/s for 3 s: a batch of 200 every 100 ms, on an absolute schedule
    batches, size, period = 30, 200, 0.1
    total = accepted = 0
    start = time.monotonic()
    for n in range(batches):
        delay = start + n * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        batch = [{"PartitionKey": f"k{i}", "Data": f"{n}-{i}".encode()} for i in range(size)]
        out = kinesis.put_records(StreamName=stream, Records=batch)
        flags = check_put_records_answer(out, stream)
        total += size
        accepted += flags.count(True)
    # 1,000 from the initial burst plus ~1,000/s: about two thirds of 6,000
    assert 0.35 * total <= accepted <= 0.80 * total, (accepted, total)


def test_a_producer_with_standard_retries_resending_failed_entries_writes_everything_in_order_per_key(
    kinesd_factory,
):
    server, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "retries")
    producer = retrying_client(server.endpoint)
    keys = [f"user-{i}" for i in range(500)]
    rounds = 6  # 3,000 records: three times the burst
    throttled = 0
    for n in range(rounds):
        # one record per key per call, and the next call only once all of this one is written:
        # resending failed entries can then never reorder a key's records
        pending = [{"PartitionKey": k, "Data": f"{k}:{n}".encode()} for k in keys]
        for _attempt in range(300):
            out = producer.put_records(StreamName=stream, Records=pending)
            flags = check_put_records_answer(out, stream)
            throttled += flags.count(False)
            pending = [rec for rec, ok in zip(pending, flags) if not ok]
            if not pending:
                break
            time.sleep(0.05)
        assert not pending, f"round {n}: {len(pending)} records never written"
    assert throttled > 0, "the producer never hit the limit; the test proves nothing"

    records = read_shard(kinesis, stream)
    assert len(records) == len(keys) * rounds
    per_key = {}
    for r in records:
        key, n = r["Data"].decode().split(":")
        assert key == r["PartitionKey"]
        per_key.setdefault(key, []).append(int(n))
    assert per_key == {k: list(range(rounds)) for k in keys}


# ================================================================================== reads


def test_get_records_allows_five_calls_per_second_per_shard(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "reads", shards=2)
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"r", ExplicitHashKey="0")
    it0 = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(0), ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    it1 = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(1), ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    outcomes, _ = call_outcomes(lambda: kinesis.get_records(ShardIterator=it0), 8)
    assert outcomes[:5] == [None] * 5
    assert outcomes[5] == (THROTTLED, rate_message(stream, 0), 400)
    assert outcomes[5:].count(None) <= 1, outcomes

    # the other shard has its own budget
    assert kinesis.get_records(ShardIterator=it1)["Records"] == []

    time.sleep(1.2)
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it0)["Records"]] == [b"r"]


def test_get_shard_iterator_allows_five_calls_per_second_per_shard(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "iterators", shards=2)

    def get(shard):
        return kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(shard), ShardIteratorType="LATEST")

    outcomes, _ = call_outcomes(lambda: get(0), 8)
    assert outcomes[:5] == [None] * 5
    assert outcomes[5] == (THROTTLED, rate_message(stream, 0), 400)
    assert outcomes[5:].count(None) <= 1, outcomes

    assert get(1)["ShardIterator"]
    time.sleep(1.2)
    assert get(0)["ShardIterator"]


# ================================================================================== control plane


def test_describe_stream_summary_allows_twenty_calls_per_second_for_the_account(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "summary")
    time.sleep(1.1)  # wait_for_status used some of the budget
    outcomes, elapsed = call_outcomes(lambda: kinesis.describe_stream_summary(StreamName=stream), 30)
    assert outcomes[:20] == [None] * 20
    errors = [o for o in outcomes if o is not None]
    assert errors, "30 rapid DescribeStreamSummary calls were all admitted"
    assert all(code == "LimitExceededException" and status == 400 for code, _, status in errors), errors
    assert outcomes.count(None) <= 20 + 20 * elapsed + 1, (outcomes.count(None), elapsed)


def test_list_streams_allows_five_calls_per_second_for_the_account(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory)
    outcomes, _ = call_outcomes(kinesis.list_streams, 8)
    assert outcomes[:5] == [None] * 5
    assert outcomes[5] is not None and outcomes[5][0] == "LimitExceededException" and outcomes[5][2] == 400, outcomes
    assert outcomes[5:].count(None) <= 1, outcomes
    time.sleep(1.2)
    kinesis.list_streams()


def test_rate_limit_zero_removes_the_list_streams_limit_and_no_other(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory, **{"--rate-limit": "ListStreams=0"})
    stream = new_stream(kinesis, "unlimited")
    outcomes, _ = call_outcomes(kinesis.list_streams, 30)
    assert outcomes == [None] * 30
    time.sleep(1.1)
    outcomes, _ = call_outcomes(lambda: kinesis.describe_stream_summary(StreamName=stream), 30)
    assert any(o is not None and o[0] == "LimitExceededException" for o in outcomes), outcomes


def test_rate_limit_one_makes_the_second_rapid_list_streams_call_fail(kinesd_factory):
    _, kinesis = limited_server(kinesd_factory, **{"--rate-limit": "ListStreams=1"})
    kinesis.list_streams()
    with raises_aws("LimitExceededException"):
        kinesis.list_streams()
    time.sleep(1.2)
    kinesis.list_streams()


# ================================================================================== --no-limits


def test_no_limits_admits_a_burst_of_five_thousand_records_and_twenty_rapid_reads(kinesd_factory):
    server = kinesd_factory(flags={"--no-limits": None})
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, "nolimits")
    for call in range(10):
        batch = [{"PartitionKey": "k", "Data": f"{call}-{i}".encode() * 50} for i in range(500)]
        out = kinesis.put_records(StreamName=stream, Records=batch)
        assert out["FailedRecordCount"] == 0
        assert all("SequenceNumber" in e for e in out["Records"])
    assert len(read_shard(kinesis, stream)) == 5000

    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(0), ShardIteratorType="LATEST")["ShardIterator"]
    outcomes, _ = call_outcomes(lambda: kinesis.get_records(ShardIterator=it), 20)
    assert outcomes == [None] * 20
    outcomes, _ = call_outcomes(
        lambda: kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(0), ShardIteratorType="LATEST"), 20
    )
    assert outcomes == [None] * 20
    outcomes, _ = call_outcomes(kinesis.list_streams, 20)
    assert outcomes == [None] * 20
    big = kinesis.put_records(StreamName=stream, Records=[{"PartitionKey": "k", "Data": b"z" * 1_000_000}] * 3)
    assert big["FailedRecordCount"] == 0


def test_write_limits_hold_per_shard_under_many_concurrent_connections(kinesd_factory):
    """32 producers, each with its own connection, hammer one shard at once: the shard still
    admits one bucket (1,000 records) plus what refilled while they ran, and no more."""
    import threading

    server, kinesis = limited_server(kinesd_factory)
    stream = new_stream(kinesis, "crowd")
    clients = [helpers.make_client(server.endpoint) for _ in range(32)]
    accepted = []
    lock = threading.Lock()
    go = threading.Event()

    def produce(client, n):
        go.wait()
        mine = 0
        for call in range(3):
            out = client.put_records(
                StreamName=stream, Records=[{"PartitionKey": f"p{n}", "Data": f"{n}-{call}-{i}".encode()} for i in range(50)]
            )
            mine += sum(1 for e in out["Records"] if "SequenceNumber" in e)
        with lock:
            accepted.append(mine)

    threads = [threading.Thread(target=produce, args=(c, n)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    start = time.monotonic()
    go.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = sum(accepted)
    assert len(accepted) == 32
    assert 1000 <= total <= 1000 + 1000 * elapsed + 2, (total, elapsed)
    assert total < 32 * 3 * 50  # 4,800 offered
    assert len(read_shard(kinesis, stream)) == total


def test_calls_that_fail_validation_are_not_charged_to_the_account_rate(kinesd_factory):
    server, kinesis = limited_server(kinesd_factory, **{"--rate-limit": "ListTagsForStream=1"})
    name = new_stream(kinesis, "checked")
    api = helpers.RawApi(server.endpoint)
    for _ in range(5):
        api.error("ListTagsForStream", {"StreamName": "not a name!"}, "ValidationException")
        api.error("ListTagsForStream", {"StreamName": name, "Limit": 0}, "ValidationException")
    # the bucket holds one call: still full, since none of the calls above was valid
    kinesis.list_tags_for_stream(StreamName=name)
    with raises_aws("LimitExceededException"):
        kinesis.list_tags_for_stream(StreamName=name)


def test_get_shard_iterator_calls_with_invalid_arguments_are_not_charged_to_the_shard(kinesd_factory):
    server, kinesis = limited_server(kinesd_factory)
    name = new_stream(kinesis, "iters")
    for _ in range(10):
        with raises_aws("InvalidArgumentException"):
            kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType="AT_SEQUENCE_NUMBER")
    for _ in range(5):  # the shard's five calls per second are all still there
        kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType="LATEST")
