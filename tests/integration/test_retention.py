"""Retention: Increase/DecreaseStreamRetentionPeriod, records expiring past retention, the
background trimmer, iterator expiry, and a data file that stops growing under steady load.

Time travel uses kinesd's --test-clock: POST /_test/advance-clock?ms=N (plain HTTP) moves the
server's clock forward by N ms, for record timestamps, retention and iterator ages alike.
"""

import datetime
import os
import time

import pytest

import helpers
from helpers import raises_aws, shard_id

HOUR_MS = 3600 * 1000
MIN_MESSAGE = "Minimum allowed retention period is 24 hours. Requested retention period ({} hours) is too short."
MAX_MESSAGE = "Maximum allowed retention period is 8760 hours. Requested retention period ({} hours) is too long."
OPS = ["IncreaseStreamRetentionPeriod", "DecreaseStreamRetentionPeriod"]


def retention(kinesis, stream):
    return kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["RetentionPeriodHours"]


def change(kinesis, op, stream, hours):
    method = {OPS[0]: kinesis.increase_stream_retention_period, OPS[1]: kinesis.decrease_stream_retention_period}[op]
    return method(StreamName=stream, RetentionPeriodHours=hours)


def shorter_message(stream, hours, current):
    return (
        f"Requested retention period ({hours} hours) for stream {stream} can not be shorter than existing "
        f"retention period ({current} hours). Use DecreaseRetentionPeriod API."
    )


def longer_message(stream, hours, current):
    return (
        f"Requested retention period ({hours} hours) for stream {stream} can not be longer than existing "
        f"retention period ({current} hours). Use IncreaseRetentionPeriod API."
    )


# ================================================================================== the API


def test_a_new_stream_keeps_records_for_24_hours(kinesis, make_stream):
    stream = make_stream()
    assert retention(kinesis, stream) == 24
    assert kinesis.describe_stream(StreamName=stream)["StreamDescription"]["RetentionPeriodHours"] == 24


def test_increase_and_decrease_change_the_retention_period_within_24_to_8760_hours(kinesis, make_stream):
    stream = make_stream()
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)
    assert retention(kinesis, stream) == 48
    assert kinesis.describe_stream(StreamName=stream)["StreamDescription"]["RetentionPeriodHours"] == 48
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=8760)
    assert retention(kinesis, stream) == 8760
    kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=100)
    assert retention(kinesis, stream) == 100
    kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=24)
    assert retention(kinesis, stream) == 24


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("hours", [1, 23])
def test_a_retention_period_below_24_hours_answers_invalid_argument(kinesis, make_stream, op, hours):
    stream = make_stream()
    with raises_aws("InvalidArgumentException", MIN_MESSAGE.format(hours)):
        change(kinesis, op, stream, hours)
    assert retention(kinesis, stream) == 24


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("hours", [8761, 100000])
def test_a_retention_period_above_8760_hours_answers_invalid_argument(kinesis, make_stream, op, hours):
    stream = make_stream()
    with raises_aws("InvalidArgumentException", MAX_MESSAGE.format(hours)):
        change(kinesis, op, stream, hours)
    assert retention(kinesis, stream) == 24


def test_a_retention_period_of_zero_fails_validation(api, make_stream):
    stream = make_stream()
    for op in OPS:
        resp = api.call(op, {"StreamName": stream, "RetentionPeriodHours": 0})
        helpers.assert_validation(
            resp,
            helpers.constraint(0, "retentionPeriodHours", "Member must have value greater than or equal to 1"),
        )


def test_increasing_to_less_than_the_current_period_answers_invalid_argument(kinesis, make_stream):
    stream = make_stream()
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=72)
    with raises_aws("InvalidArgumentException", shorter_message(stream, 48, 72)):
        kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)
    assert retention(kinesis, stream) == 72


def test_decreasing_to_more_than_the_current_period_answers_invalid_argument(kinesis, make_stream):
    stream = make_stream()
    with raises_aws("InvalidArgumentException", longer_message(stream, 48, 24)):
        kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)
    assert retention(kinesis, stream) == 24


@pytest.mark.parametrize("op", OPS)
def test_changing_the_retention_of_an_unknown_stream_answers_resource_not_found(kinesis, stream_name, op):
    with raises_aws("ResourceNotFoundException", helpers.not_found_message(stream_name)):
        change(kinesis, op, stream_name, 48)


@pytest.mark.own_server
def test_the_retention_period_survives_a_restart(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="kept", ShardCount=1)
    helpers.wait_for_status(kinesis, "kept")
    kinesis.increase_stream_retention_period(StreamName="kept", RetentionPeriodHours=168)
    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    assert retention(kinesis, "kept") == 168
    kinesis.decrease_stream_retention_period(StreamName="kept", RetentionPeriodHours=30)
    server.restart()
    kinesis = helpers.make_client(server.endpoint)
    assert retention(kinesis, "kept") == 30


# ================================================================================== time travel


def clock_server(kinesd_factory, **flags):
    server = kinesd_factory(flags=dict({"--test-clock": None}, **flags))
    return server, helpers.make_client(server.endpoint)


def advance(server, ms):
    resp = helpers.http_request(server.endpoint, "POST", f"/_test/advance-clock?ms={int(ms)}")
    assert resp.status == 200, resp


def new_stream(kinesis, name, shards=1):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    helpers.wait_for_status(kinesis, name)
    return name


def put(kinesis, stream, tag, n=5):
    out = kinesis.put_records(
        StreamName=stream, Records=[{"PartitionKey": f"k{i}", "Data": f"{tag}{i}".encode()} for i in range(n)]
    )
    assert out.get("FailedRecordCount", 0) == 0
    return [e["SequenceNumber"] for e in out["Records"]]


def datas(records):
    return [r["Data"].decode() for r in records]


def readable(kinesis, stream, **kw):
    return datas(helpers.read_all(kinesis, stream, shard_id(0), **kw))


def tags(tag, n=5):
    return [f"{tag}{i}" for i in range(n)]


@pytest.mark.own_server
def test_advance_clock_is_not_served_without_test_clock(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    new_stream(kinesis, "s")
    resp = helpers.http_request(server.endpoint, "POST", f"/_test/advance-clock?ms={48 * HOUR_MS}")
    assert resp.status != 200, resp
    kinesis.put_record(StreamName="s", PartitionKey="k", Data=b"x")
    arrival = helpers.read_all(kinesis, "s", shard_id(0))[0]["ApproximateArrivalTimestamp"]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((arrival - now).total_seconds()) < 600, arrival


@pytest.mark.own_server
def test_records_within_retention_stay_and_older_ones_are_not_returned(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "s")
    old_seqs = put(kinesis, stream, "a")

    advance(server, 23 * HOUR_MS)
    assert readable(kinesis, stream) == tags("a")
    time.sleep(1.2)  # the trimmer has run: nothing within retention went
    assert readable(kinesis, stream) == tags("a")

    advance(server, 2 * HOUR_MS)  # "a" is now 25 hours old
    new_seqs = put(kinesis, stream, "b")
    assert int(new_seqs[0]) > int(old_seqs[-1])
    records = helpers.read_all(kinesis, stream, shard_id(0))
    assert datas(records) == tags("b")  # TRIM_HORIZON starts at the oldest retained record
    # records carry the server's (advanced) clock
    expected = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=25)
    assert abs((records[0]["ApproximateArrivalTimestamp"] - expected).total_seconds()) < 600
    # and an iterator naming an expired record by sequence number starts at the horizon too
    assert readable(kinesis, stream, iterator_type="AT_SEQUENCE_NUMBER", StartingSequenceNumber=old_seqs[0]) == tags("b")


@pytest.mark.own_server
def test_the_trimmer_deletes_records_past_retention_and_keeps_those_of_a_longer_retention(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    short = new_stream(kinesis, "short")
    long_ = new_stream(kinesis, "long")
    kinesis.increase_stream_retention_period(StreamName=long_, RetentionPeriodHours=48)
    put(kinesis, short, "a")
    put(kinesis, long_, "a")

    advance(server, 25 * HOUR_MS)
    put(kinesis, short, "b")
    put(kinesis, long_, "b")
    time.sleep(2.0)  # the trimmer runs about every 0.5 s

    assert readable(kinesis, short) == tags("b")
    assert readable(kinesis, long_) == tags("a") + tags("b")
    # Had the expired records only been hidden, a longer retention would show them again.
    kinesis.increase_stream_retention_period(StreamName=short, RetentionPeriodHours=48)
    assert readable(kinesis, short) == tags("b")


@pytest.mark.own_server
def test_decreasing_the_retention_expires_records_older_than_the_new_period(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "s")
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=72)
    put(kinesis, stream, "a")
    advance(server, 30 * HOUR_MS)
    put(kinesis, stream, "b")
    time.sleep(1.2)
    assert readable(kinesis, stream) == tags("a") + tags("b")  # 30 hours old, 72 retained
    kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=24)
    assert readable(kinesis, stream) == tags("b")


@pytest.mark.own_server
def test_an_iterator_whose_position_was_trimmed_continues_from_the_trim_horizon(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "s")
    seqs = put(kinesis, stream, "a")
    advance(server, 24 * HOUR_MS - 60_000)  # "a" is a minute short of expiring
    put(kinesis, stream, "b")

    def iterator(kind, **kw):
        return kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(0), ShardIteratorType=kind, **kw)[
            "ShardIterator"
        ]

    trim_horizon = iterator("TRIM_HORIZON")
    at_first = iterator("AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[0])
    after_second = iterator("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1])
    assert datas(kinesis.get_records(ShardIterator=iterator("TRIM_HORIZON"))["Records"]) == tags("a") + tags("b")

    advance(server, 120_000)  # "a" has expired; the iterators are two minutes old, still valid
    time.sleep(1.2)  # and the trimmer has deleted it
    for it in (trim_horizon, at_first, after_second):
        assert datas(helpers.read_from_iterator(kinesis, it)) == tags("b")


@pytest.mark.own_server
def test_a_shard_whose_records_all_expired_still_orders_new_records_after_the_old(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "s")
    old_seqs = put(kinesis, stream, "a")
    advance(server, 25 * HOUR_MS)
    time.sleep(1.2)  # the trimmer empties the shard
    assert readable(kinesis, stream) == []
    latest = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(0), ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    new_seqs = put(kinesis, stream, "b")
    assert int(new_seqs[0]) > int(old_seqs[-1])
    assert datas(helpers.read_from_iterator(kinesis, latest)) == tags("b")
    assert readable(kinesis, stream) == tags("b")
    assert readable(kinesis, stream, iterator_type="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=old_seqs[-1]) == tags("b")


@pytest.mark.own_server
def test_at_timestamp_iterators_use_the_advanced_clock(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "s")
    put(kinesis, stream, "a")
    first = helpers.read_all(kinesis, stream, shard_id(0))[0]["ApproximateArrivalTimestamp"]
    advance(server, 2 * HOUR_MS)
    put(kinesis, stream, "b")

    def at(ts):
        return readable(kinesis, stream, iterator_type="AT_TIMESTAMP", Timestamp=ts)

    assert at(first - datetime.timedelta(minutes=1)) == tags("a") + tags("b")
    assert at(first + datetime.timedelta(hours=1)) == tags("b")
    # an hour ahead of real time, but an hour behind the server's clock
    real_now = datetime.datetime.now(datetime.timezone.utc)
    assert at(real_now + datetime.timedelta(hours=1)) == tags("b")
    with raises_aws("InvalidArgumentException"):  # still refused beyond the server's clock
        at(real_now + datetime.timedelta(hours=3))


@pytest.mark.own_server
def test_an_iterator_older_than_five_minutes_answers_expired_iterator(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "s")
    put(kinesis, stream, "a")
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id(0), ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    advance(server, 250_000)
    out = kinesis.get_records(ShardIterator=it)  # 250 s old: still valid
    assert datas(out["Records"]) == tags("a")
    fresh = out["NextShardIterator"]

    advance(server, 60_000)  # the first is now 310 s old, the one GetRecords answered 60 s
    with raises_aws("ExpiredIteratorException") as expired:
        kinesis.get_records(ShardIterator=it)
    message = expired.error["Message"]
    assert message.startswith("Iterator expired. The iterator was created at time "), message
    assert "which is further in the future than the tolerated delay of 300000 milliseconds." in message
    put(kinesis, stream, "b")
    assert datas(kinesis.get_records(ShardIterator=fresh)["Records"]) == tags("b")


@pytest.mark.own_server
def test_the_data_file_stops_growing_once_old_records_are_trimmed(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "s")
    data_file = os.path.join(server.data_dir, "data.mdb")
    payload = os.urandom(4000)
    sizes = []
    for n in range(30):
        # about 2 MB a round, then two hours pass: 24 hours of retention hold about 12 rounds
        out = kinesis.put_records(
            StreamName=stream, Records=[{"PartitionKey": f"{n}-{i}", "Data": payload} for i in range(500)]
        )
        assert out.get("FailedRecordCount", 0) == 0
        advance(server, 2 * HOUR_MS)
        time.sleep(0.25)  # let the trimmer (every ~0.5 s) keep up
        sizes.append(os.path.getsize(data_file))
    assert sizes[-1] < 1.5 * sizes[14], sizes
    assert sizes[-1] < 30 * 500 * 4000, sizes  # far below what 30 rounds wrote
    records = helpers.read_all(kinesis, stream, shard_id(0))
    rounds = sorted({int(r["PartitionKey"].split("-")[0]) for r in records})
    assert rounds and rounds[-1] == 29 and len(rounds) <= 13, rounds


@pytest.mark.own_server
def test_a_closed_shard_whose_records_all_expired_leaves_listings_while_its_children_stay(kinesd_factory):
    server, kinesis = clock_server(kinesd_factory, **{"--no-limits": None})
    name = new_stream(kinesis, "expiring-parent")
    put(kinesis, name, "old")
    kinesis.split_shard(StreamName=name, ShardToSplit="shardId-000000000000",
                        NewStartingHashKey=str(2**127))
    helpers.wait_for_status(kinesis, name)
    ids = [s["ShardId"] for s in kinesis.list_shards(StreamName=name)["Shards"]]
    assert ids == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    advance(server, 25 * HOUR_MS)
    listed = kinesis.list_shards(StreamName=name)["Shards"]
    assert [s["ShardId"] for s in listed] == ["shardId-000000000001", "shardId-000000000002"]
    assert all(s["ParentShardId"] == "shardId-000000000000" for s in listed)
    described = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert [s["ShardId"] for s in described] == ["shardId-000000000001", "shardId-000000000002"]
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000",
                                   ShardIteratorType="TRIM_HORIZON")
