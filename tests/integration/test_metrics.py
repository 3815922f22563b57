"""GET /metrics: the Prometheus exposition, with series named after CloudWatch's Kinesis metrics.

Each test starts its own kinesd (so counters start at zero) and checks the figures against what
the test itself wrote and read, exactly. Every scrape is parsed twice: by a strict parser written
here (the text format 0.0.4 as Prometheus documents it: one HELP and TYPE per family before its
samples, a family's samples together, label values escaped, histograms cumulative and ending in
le="+Inf" equal to _count) and by Debian's python3-prometheus-client parser.
"""

import importlib.util
import math
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import helpers
from helpers import ACCOUNT, REGION, shard_id

pytestmark = pytest.mark.own_server

REPO = Path(__file__).resolve().parents[2]
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = ("counter", "gauge", "histogram", "summary")


def parse_exposition(text):
    """{(name, frozenset(labels)): value} of every sample; fails on any deviation."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    helped, typed, done = set(), {}, set()
    current = None
    samples = {}
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(NAME, name) and name not in helped, line
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in TYPES and name not in typed and name in helped, line
            if current:
                done.add(current)
            typed[name] = kind
            current = name
            continue
        assert not line.startswith("#") and line, f"stray line {line!r}"
        m = SAMPLE.match(line)
        assert m, f"malformed sample {line!r}"
        name, labels_text, value = m.groups()
        family = name
        if typed.get(current) == "histogram":
            family = re.sub(r"_(bucket|sum|count)$", "", name)
        elif typed.get(current) == "summary":
            family = re.sub(r"_(sum|count)$", "", name)
        assert family == current and family not in done, f"{name} outside its family's block"
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = LABEL.match(labels_text, pos)
                assert lm, f"malformed labels in {line!r}"
                assert lm.group(1) not in labels, f"label repeated in {line!r}"
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
                if pos < len(labels_text):
                    assert labels_text[pos] == ",", line
                    pos += 1
        v = float(value)
        assert not math.isnan(v), line
        if typed[current] == "counter":
            assert v >= 0, line
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = v
    check_histograms(samples, [n for n, k in typed.items() if k == "histogram"])
    # the client library's parser reads the same samples
    parsed = sum(len(f.samples) for f in text_string_to_metric_families(text))
    assert parsed == len(samples)
    return samples


def check_histograms(samples, names):
    for name in names:
        series = {}
        for (n, labels), v in samples.items():
            if n == name + "_bucket":
                rest = frozenset(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), v))
        for rest, buckets in series.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{name} buckets not cumulative"
            assert buckets[-1][0] == math.inf
            assert samples[(name + "_count", rest)] == counts[-1]
            assert (name + "_sum", rest) in samples


def scrape(endpoint, path="/metrics"):
    resp = helpers.http_request(endpoint, "GET", path)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_exposition(resp.raw.decode())


def wait_for(endpoint, pred, timeout=15.0):
    """Scrape until pred(samples) holds (or the deadline passes); the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(endpoint)
        if pred(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def labels_of(stream, **extra):
    return frozenset(dict(account=ACCOUNT, region=REGION, stream=stream, **extra).items())


def value(samples, name, stream, **extra):
    return samples[(name, labels_of(stream, **extra))]


def names_for(samples, stream):
    return {n for (n, labels) in samples if ("stream", stream) in labels}


def request_count(samples, operation, error="none"):
    key = ("kinesd_requests_total", frozenset(dict(service="kinesis", operation=operation, error=error).items()))
    return samples.get(key, 0)


def new_stream(kinesis, name, shards):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    helpers.wait_for_status(kinesis, name)
    return name


def read_counting(kinesis, name, shard):
    """Every record of a shard, and the number of GetRecords calls it took."""
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records, calls = [], 0
    while True:
        out = kinesis.get_records(ShardIterator=it)
        calls += 1
        records += out["Records"]
        it = out["NextShardIterator"]
        if not out["Records"]:
            return records, calls


def test_stream_counters_match_exactly_what_was_written_and_read(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "metered", 2)
    singles = [(f"key-{i}", b"x" * (10 + i)) for i in range(3)]
    for pk, data in singles:
        kinesis.put_record(StreamName=name, PartitionKey=pk, Data=data)
    batch = [{"PartitionKey": f"batch-{i}", "Data": bytes([i]) * (100 * i + 1)} for i in range(7)]
    out = kinesis.put_records(StreamName=name, Records=batch)
    assert out["FailedRecordCount"] == 0
    single_bytes = sum(len(pk) + len(d) for pk, d in singles)
    batch_bytes = sum(len(r["PartitionKey"]) + len(r["Data"]) for r in batch)
    read, calls = [], 0
    for shard in (shard_id(0), shard_id(1)):
        got, n = read_counting(kinesis, name, shard)
        read += got
        calls += n
    assert len(read) == 10
    m = scrape(server.endpoint)
    assert value(m, "kinesis_incoming_records_total", name) == 10
    assert value(m, "kinesis_incoming_bytes_total", name) == single_bytes + batch_bytes
    assert value(m, "kinesis_put_record_success_total", name) == 3
    assert value(m, "kinesis_put_record_bytes_total", name) == single_bytes
    assert value(m, "kinesis_put_records_success_total", name) == 1
    assert value(m, "kinesis_put_records_total_records_total", name) == 7
    assert value(m, "kinesis_put_records_successful_records_total", name) == 7
    assert value(m, "kinesis_put_records_records_total", name) == 7
    assert value(m, "kinesis_put_records_failed_records_total", name) == 0
    assert value(m, "kinesis_put_records_throttled_records_total", name) == 0
    assert value(m, "kinesis_put_records_bytes_total", name) == batch_bytes
    assert value(m, "kinesis_get_records_success_total", name) == calls
    assert value(m, "kinesis_get_records_records_total", name) == 10
    assert value(m, "kinesis_get_records_bytes_total", name) == single_bytes + batch_bytes
    assert value(m, "kinesis_put_record_latency_seconds_count", name) == 3
    assert value(m, "kinesis_put_records_latency_seconds_count", name) == 1
    assert value(m, "kinesis_get_records_latency_seconds_count", name) == calls
    assert value(m, "kinesis_put_record_latency_seconds_sum", name) > 0
    assert request_count(m, "PutRecord") == 3
    assert request_count(m, "PutRecords") == 1
    assert request_count(m, "GetRecords") == calls
    assert request_count(m, "GetShardIterator") == 2
    # the registry's figures are as of the last scrape that found its change lock free
    active = ("kinesd_streams", frozenset({("status", "ACTIVE")}))
    m = wait_for(server.endpoint, lambda m: m[active] == 1 and m[("kinesd_open_shards", frozenset())] == 2)
    assert m[("kinesd_open_shards", frozenset())] == 2
    assert m[active] == 1
    # no shard-level series without enhanced monitoring
    assert not any(n.startswith("kinesis_shard_") for n, _ in m)


def test_a_new_stream_has_zero_series_before_its_first_record_and_the_autoscaler_reads_them(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "idle", 1)
    m = scrape(server.endpoint)
    assert value(m, "kinesis_incoming_records_total", name) == 0
    assert value(m, "kinesis_incoming_bytes_total", name) == 0
    kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"12345")
    spec = importlib.util.spec_from_file_location("autoscale", REPO / "tools/autoscale/autoscale.py")
    autoscale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(autoscale)
    assert autoscale.scrape(server.endpoint + "/metrics", name) == (1.0, 6.0)


def test_errors_are_counted_by_operation_and_error_type(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    for _ in range(2):
        with helpers.raises_aws("ResourceNotFoundException"):
            kinesis.describe_stream_summary(StreamName="no-such-stream")
    resp = helpers.RawApi(server.endpoint).call("NoSuchOperation", {})
    assert resp.status == 400
    m = scrape(server.endpoint)
    assert request_count(m, "DescribeStreamSummary", "ResourceNotFoundException") == 2
    assert request_count(m, "DescribeStreamSummary") == 0
    key = ("kinesd_requests_total", frozenset(dict(service="kinesis", operation="unknown",
                                                   error="UnknownOperationException").items()))
    assert m[key] == 1


def test_throttled_writes_and_reads_move_the_throttling_counters(kinesd_factory):
    server = kinesd_factory(flags={"--no-limits": False})
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "throttled", 1)
    kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    # 1,500 records at once into a shard that takes about 1,000 a second
    throttled = 0
    for _ in range(3):
        out = kinesis.put_records(
            StreamName=name, Records=[{"PartitionKey": "k", "Data": b"r"} for _ in range(500)]
        )
        throttled += out.get("FailedRecordCount", 0)
    assert throttled > 0
    single_throttled = 0
    for _ in range(20):
        try:
            kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"r")
        except kinesis.exceptions.ProvisionedThroughputExceededException:
            single_throttled += 1
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id(0), ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    read_throttled = 0
    for _ in range(12):  # five calls a second are allowed
        try:
            it = kinesis.get_records(ShardIterator=it, Limit=1)["NextShardIterator"]
        except kinesis.exceptions.ProvisionedThroughputExceededException:
            read_throttled += 1
    assert read_throttled > 0
    m = scrape(server.endpoint)
    assert value(m, "kinesis_put_records_throttled_records_total", name) == throttled
    assert value(m, "kinesis_put_records_successful_records_total", name) == 1500 - throttled
    assert value(m, "kinesis_write_provisioned_throughput_exceeded_total", name) == throttled + single_throttled
    assert value(m, "kinesis_read_provisioned_throughput_exceeded_total", name) == read_throttled
    assert value(m, "kinesis_put_record_success_total", name) == 20 - single_throttled
    assert request_count(m, "GetRecords", "ProvisionedThroughputExceededException") == read_throttled
    # the one shard's series say the same
    shard = shard_id(0)
    assert value(m, "kinesis_shard_write_provisioned_throughput_exceeded_total", name, shard=shard) == (
        throttled + single_throttled)
    assert value(m, "kinesis_shard_read_provisioned_throughput_exceeded_total", name, shard=shard) == read_throttled
    assert value(m, "kinesis_shard_incoming_records_total", name, shard=shard) == (
        1500 - throttled + 20 - single_throttled)


def test_a_deleted_stream_drops_out_of_the_exposition(kinesd_factory):
    server = kinesd_factory(flags={"--delete-stream-ms": "0"})
    kinesis = helpers.make_client(server.endpoint)
    gone = new_stream(kinesis, "gone", 1)
    kept = new_stream(kinesis, "kept", 1)
    for name in (gone, kept):
        kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"v")
    assert names_for(scrape(server.endpoint), gone)
    kinesis.delete_stream(StreamName=gone)
    helpers.wait_until_gone(kinesis, gone)
    # a scrape drops them once it finds the registry's change lock free (the next one, mostly)
    m = wait_for(server.endpoint, lambda m: not names_for(m, gone))
    assert not names_for(m, gone)
    assert value(m, "kinesis_incoming_records_total", kept) == 1


def shard_series(samples, name):
    return {(n, dict(labels)["shard"]) for n, labels in samples if n.startswith("kinesis_shard_")
            and ("stream", name) in labels}


def test_shard_series_appear_only_for_the_metrics_enhanced_monitoring_enables(kinesd_factory):
    server = kinesd_factory(flags={"--update-stream-ms": "0"})
    kinesis = helpers.make_client(server.endpoint)
    plain = new_stream(kinesis, "plain", 2)
    name = new_stream(kinesis, "enhanced", 2)
    kinesis.put_record(StreamName=plain, PartitionKey="k", Data=b"v")
    assert not any(n.startswith("kinesis_shard_") for n, _ in scrape(server.endpoint))

    kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingRecords", "OutgoingBytes"])
    shards = {s["ShardId"]: s for s in helpers.all_shards(kinesis, name)}
    written = {sid: 0 for sid in shards}
    for i in range(12):
        out = kinesis.put_record(StreamName=name, PartitionKey=f"k{i}", Data=b"data")
        written[out["ShardId"]] += 1
    kinesis.put_record(StreamName=plain, PartitionKey="k", Data=b"v")
    got, _ = read_counting(kinesis, name, shard_id(0))
    m = scrape(server.endpoint)
    assert shard_series(m, name) == {(f, sid) for sid in shards for f in (
        "kinesis_shard_incoming_records_total", "kinesis_shard_outgoing_bytes_total")}
    assert not shard_series(m, plain)
    for sid in shards:
        assert value(m, "kinesis_shard_incoming_records_total", name, shard=sid) == written[sid]
    outgoing = sum(len(r["PartitionKey"]) + len(r["Data"]) for r in got)
    assert value(m, "kinesis_shard_outgoing_bytes_total", name, shard=shard_id(0)) == outgoing
    assert value(m, "kinesis_shard_outgoing_bytes_total", name, shard=shard_id(1)) == 0
    # the stream-level series count the same records
    assert value(m, "kinesis_incoming_records_total", name) == 12

    # a split closes shard 0: its series go, its children's come
    parent = shards[shard_id(0)]["HashKeyRange"]
    middle = (int(parent["StartingHashKey"]) + int(parent["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(middle))
    helpers.wait_for_status(kinesis, name)
    children = {shard_id(1), shard_id(2), shard_id(3)}
    m = wait_for(server.endpoint, lambda m: {sid for _, sid in shard_series(m, name)} == children)
    assert {sid for _, sid in shard_series(m, name)} == children

    # disabling one metric removes its series; disabling the rest removes them all
    kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["OutgoingBytes"])
    incoming = {"kinesis_shard_incoming_records_total"}
    m = wait_for(server.endpoint, lambda m: {n for n, _ in shard_series(m, name)} == incoming)
    assert {n for n, _ in shard_series(m, name)} == incoming
    kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    m = wait_for(server.endpoint, lambda m: not shard_series(m, name))
    assert not shard_series(m, name)
    # enabled again: the open shards' series are back
    kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingRecords"])
    back = {("kinesis_shard_incoming_records_total", sid) for sid in children}
    m = wait_for(server.endpoint, lambda m: shard_series(m, name) == back)
    assert shard_series(m, name) == back


def test_all_enables_every_shard_level_series(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "everything", 1)
    kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"12345")
    got, calls = read_counting(kinesis, name, shard_id(0))
    m = scrape(server.endpoint)
    sid = shard_id(0)
    assert value(m, "kinesis_shard_incoming_records_total", name, shard=sid) == 1
    assert value(m, "kinesis_shard_incoming_bytes_total", name, shard=sid) == 6
    assert value(m, "kinesis_shard_outgoing_records_total", name, shard=sid) == 1
    assert value(m, "kinesis_shard_outgoing_bytes_total", name, shard=sid) == 6
    assert value(m, "kinesis_shard_write_provisioned_throughput_exceeded_total", name, shard=sid) == 0
    assert value(m, "kinesis_shard_read_provisioned_throughput_exceeded_total", name, shard=sid) == 0
    assert value(m, "kinesis_shard_iterator_age_milliseconds", name, shard=sid) >= 0


def test_metrics_port_serves_the_exposition_and_only_it(kinesd_factory):
    from conftest import free_port

    port = free_port()
    server = kinesd_factory(flags={"--metrics-port": str(port)})
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "side-port", 1)
    kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"abc")
    side = f"http://127.0.0.1:{port}"
    m = scrape(side)
    assert value(m, "kinesis_incoming_records_total", name) == 1
    assert value(m, "kinesis_incoming_bytes_total", name) == 4
    assert helpers.http_request(side, "GET", "/").status == 404
    assert helpers.http_request(side, "POST", "/metrics").status == 405
    # the same figures as on the API port
    assert value(scrape(server.endpoint), "kinesis_incoming_records_total", name) == 1


def test_under_auth_only_the_metrics_port_serves_the_exposition(kinesd_factory, tmp_path):
    # the exposition names every stream and no signature guards a GET: under --auth the API
    # port answers it as any other GET, and scrapers use --metrics-port
    from conftest import free_port

    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {helpers.ACCESS_KEY}\n"
                     f"aws_secret_access_key = {helpers.SECRET_KEY}\n")
    port = free_port()
    server = kinesd_factory(flags={"--metrics-port": str(port), "--auth": str(creds)})
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "behind-auth", 1)
    resp = helpers.http_request(server.endpoint, "GET", "/metrics")
    assert resp.status == 403 and name.encode() not in resp.raw, resp
    assert value(scrape(f"http://127.0.0.1:{port}"), "kinesis_incoming_records_total", name) == 0


def test_a_client_trickling_its_request_does_not_hold_the_metrics_port(kinesd_factory):
    # one byte every 0.3 s for longer than the port gives a whole request head: a scrape
    # behind it is still answered, as the trickler is cut off at the head's deadline
    from conftest import free_port

    port = free_port()
    kinesd_factory(flags={"--metrics-port": str(port)})
    stop = threading.Event()

    def trickle():
        with socket.create_connection(("127.0.0.1", port)) as s:
            for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 40:
                if stop.wait(0.3):
                    return
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    return  # cut off

    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(0.5)  # the trickler holds the port's one connection by now
        resp = helpers.http_request(f"http://127.0.0.1:{port}", "GET", "/metrics", timeout=8)
        assert resp.status == 200
    finally:
        stop.set()
        t.join()


def test_subscribe_to_shard_counts_subscriptions_and_events(kinesd_factory):
    server = kinesd_factory(flags={"--register-consumer-ms": "0"})
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "fanout", 1)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c1")["Consumer"]["ConsumerARN"]
    for _ in range(50):
        if kinesis.describe_stream_consumer(ConsumerARN=consumer)["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    data = [b"one", b"two", b"three"]
    for d in data:
        kinesis.put_record(StreamName=name, PartitionKey="k", Data=d)
    out = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId=shard_id(0), StartingPosition={"Type": "TRIM_HORIZON"}
    )
    seen = []
    for event in out["EventStream"]:
        seen += event["SubscribeToShardEvent"]["Records"]
        if len(seen) >= 3:
            break
    out["EventStream"].close()
    with pytest.raises(kinesis.exceptions.LimitExceededException):
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=shard_id(0), StartingPosition={"Type": "LATEST"})
    m = scrape(server.endpoint)
    assert value(m, "kinesis_subscribe_to_shard_success_total", name) == 1
    assert value(m, "kinesis_subscribe_to_shard_rate_exceeded_total", name) == 1
    assert value(m, "kinesis_subscribe_to_shard_event_records_total", name) == 3
    assert value(m, "kinesis_subscribe_to_shard_event_bytes_total", name) == sum(len(d) + 1 for d in data)
    assert value(m, "kinesis_subscribe_to_shard_event_success_total", name) >= 1


def test_server_figures_follow_commits_flushes_connections_and_retention_trims(kinesd_factory):
    server = kinesd_factory(flags={"--test-clock": None, "--memory-budget-mb": "64"})
    kinesis = helpers.make_client(server.endpoint)
    name = new_stream(kinesis, "trimmed", 1)
    before = scrape(server.endpoint)
    syncs = before[("kinesd_wal_sync_seconds_count", frozenset())]
    out = kinesis.put_records(StreamName=name, Records=[{"PartitionKey": "k", "Data": b"d"} for _ in range(5)])
    assert out["FailedRecordCount"] == 0
    one = frozenset()
    m = wait_for(server.endpoint, lambda m: m[("kinesd_flush_duration_seconds_count", one)] > 0
                 and m[("kinesd_unflushed_bytes", one)] == 0)
    assert m[("kinesd_wal_sync_seconds_count", one)] > syncs  # the write was one durable commit at least
    assert m[("kinesd_flush_duration_seconds_count", one)] > 0
    assert m[("kinesd_unflushed_bytes", one)] == 0
    assert m[("kinesd_db_bytes", one)] > 0 and m[("kinesd_db_page_size_bytes", one)] > 0
    assert m[("kinesd_memory_budget_bytes", one)] == 64 << 20
    assert m[("kinesd_connections", one)] >= 1 and m[("kinesd_connections_accepted_total", one)] >= 1
    assert m[("kinesd_retention_trimmed_records_total", one)] == 0
    # past the 24 h retention the trimmer deletes the five records
    helpers.http_request(server.endpoint, "POST", "/_test/advance-clock?ms=" + str(25 * 3600 * 1000))
    m = wait_for(server.endpoint, lambda m: m[("kinesd_retention_trimmed_records_total", one)] == 5)
    assert m[("kinesd_retention_trimmed_records_total", one)] == 5
    assert m[("kinesd_retention_trims_total", one)] >= 1
