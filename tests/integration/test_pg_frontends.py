"""Several kinesd front-ends over one PostgreSQL (--store postgresql://...).

Needs a PostgreSQL server: `make test` runs the suite under tools/with-postgres.sh, which starts
one and names it in KINESD_PG_URL; without it these tests are skipped. Each test gets a fresh
database, and starts, kills and restarts its front-ends itself.
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, EventStreamError, HTTPClientError

import helpers
from frontends import Frontend, fresh_database

pytestmark = [pytest.mark.own_server]

PG_URL = os.environ.get("KINESD_PG_URL")
if not PG_URL:
    pytest.skip("no PostgreSQL: run under tools/with-postgres.sh (make test does)", allow_module_level=True)


@pytest.fixture
def store(request):
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:50]
    return fresh_database(PG_URL, name)


@pytest.fixture
def start(store):
    """start(flags) -> a running Frontend on the test's database; all are stopped afterwards."""
    started = []

    def _start(flags=("--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0", "--no-limits")):
        f = Frontend(store, flags).start()
        started.append(f)
        return f

    yield _start
    for f in started:
        if f.proc.poll() is None:
            code = f.stop()
            assert code == 0, f"a front-end exited with {code}:\n{f.log()}"


def client(front, **kw):
    return helpers.make_client(front.endpoint, **kw)


def wait_active(k, name, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        time.sleep(0.05)
    raise AssertionError(f"{name} not ACTIVE after {timeout}s")


def read_shard(k, name, shard_id):
    it = k.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    while it:
        r = k.get_records(ShardIterator=it, Limit=10000)
        out += r["Records"]
        if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
            break
        it = r.get("NextShardIterator")
    return out


def two_front_ends(start, name, shards):
    """Two front-ends, and stream name with shards created through the first: their clients."""
    ka, kb = client(start()), client(start())
    ka.create_stream(StreamName=name, ShardCount=shards)
    wait_active(kb, name)
    return ka, kb


def test_three_front_ends_started_at_once_on_an_empty_database_come_up_sharing_one_store(store):
    # as docker/compose.yaml starts them: the schema, the root and node keys and the iterator
    # key are each made once, by whichever front-end gets there first, and read by the others
    fronts = [Frontend(store, ("--create-stream-ms", "0", "--no-limits")) for _ in range(3)]
    threads = [threading.Thread(target=f.start) for f in fronts]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for f in fronts:
            assert f.proc is not None and f.proc.poll() is None, f.log()
        ks = [client(f) for f in fronts]
        ks[0].create_stream(StreamName="together", ShardCount=1)
        wait_active(ks[2], "together")
        put = ks[1].put_record(StreamName="together", PartitionKey="k", Data=b"one")
        it = ks[2].get_shard_iterator(StreamName="together", ShardId=put["ShardId"],
                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        assert [r["Data"] for r in ks[0].get_records(ShardIterator=it)["Records"]] == [b"one"]
    finally:
        for f in fronts:
            if f.proc is not None and f.proc.poll() is None:
                assert f.stop() == 0, f.log()


def test_a_stream_created_through_one_front_end_is_served_by_the_other(start):
    a, b = start(), start()
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="shared", ShardCount=2)
    wait_active(kb, "shared")
    names = kb.list_streams()["StreamNames"]
    assert names == ["shared"]
    with pytest.raises(ClientError) as err:  # the name is taken for every front-end
        kb.create_stream(StreamName="shared", ShardCount=1)
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"


def test_a_record_acknowledged_by_one_front_end_is_read_at_once_through_the_other(start):
    a, b = start(), start()
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="ryw", ShardCount=1)
    wait_active(kb, "ryw")
    for i in range(20):
        put = ka.put_record(StreamName="ryw", PartitionKey=f"k{i}", Data=f"v{i}".encode())
        it = kb.get_shard_iterator(StreamName="ryw", ShardId=put["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber=put["SequenceNumber"])["ShardIterator"]
        got = kb.get_records(ShardIterator=it, Limit=1)["Records"]
        assert got and got[0]["SequenceNumber"] == put["SequenceNumber"] and got[0]["Data"] == f"v{i}".encode()
    # an iterator from one front-end is accepted by the other (they share the sealing key)
    it = ka.get_shard_iterator(StreamName="ryw", ShardId="shardId-000000000000",
                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert len(kb.get_records(ShardIterator=it)["Records"]) == 20


def test_a_reshard_through_one_front_end_keeps_every_key_in_order_while_both_write(start):
    a, b = start(), start()
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="scale", ShardCount=2)
    wait_active(kb, "scale")
    stop = threading.Event()
    sent = {}  # key -> list of sequence numbers acknowledged, in order sent
    errors = []

    def producer(k, keys):
        n = 0
        while not stop.is_set():
            key = random.choice(keys)
            try:
                out = k.put_record(StreamName="scale", PartitionKey=key, Data=f"{key}:{n}".encode())
                sent.setdefault(key, []).append((n, out["SequenceNumber"], out["ShardId"]))
                n += 1
            except ClientError as e:  # a write routed by an older layout: retryable, retried
                errors.append(e.response["Error"]["Code"])
            except (BotoConnectionError, HTTPClientError):
                pass

    threads = [threading.Thread(target=producer, args=(k, [f"{tag}{i}" for i in range(8)]))
               for k, tag in ((ka, "a"), (kb, "b"))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    ka.update_shard_count(StreamName="scale", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    wait_active(kb, "scale")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert all(code in ("InternalFailure", "ServiceUnavailable") for code in errors), errors
    # read every shard through the other front-end: per key, records in the order they were
    # acknowledged, across parents and children, none lost
    shards = kb.list_shards(StreamName="scale")["Shards"]
    records = []
    for sh in shards:
        records += read_shard(kb, "scale", sh["ShardId"])
    by_seq = {r["SequenceNumber"]: r for r in records}
    for key, acks in sent.items():
        for n, seq, _ in acks:
            assert seq in by_seq, f"acknowledged record {key}:{n} is missing"
            assert by_seq[seq]["Data"] == f"{key}:{n}".encode()
        # within a shard, sequence numbers follow the order of acknowledgement
        per_shard = {}
        for n, seq, shard in acks:
            per_shard.setdefault(shard, []).append(int(seq))
        for seqs in per_shard.values():
            assert seqs == sorted(seqs)
    assert len(shards) == 6  # two closed parents and four children


def lineage(shards):
    """shard id -> the ids of its ancestors (parents, their parents, ...)."""
    parents = {sh["ShardId"]: [p for p in (sh.get("ParentShardId"), sh.get("AdjacentParentShardId")) if p]
               for sh in shards}
    out = {}

    def up(sid):
        if sid not in out:
            out[sid] = set()
            for p in parents.get(sid, []):
                out[sid] |= {p} | up(p)
        return out[sid]

    for sid in parents:
        up(sid)
    return out


def test_writes_routed_by_an_outdated_layout_are_rerouted_not_failed(start):
    # the SDK retries nothing here: every put a reshard through the other front-end catches in
    # flight must be re-routed by the front-end itself
    ka, kb = two_front_ends(start, "reroute", 2)
    stop = threading.Event()
    acks = {}  # key -> [(n, sequence number, shard id)] in the order sent, one call at a time
    errors = []

    def producer(ks, tag, batch):
        n = 0
        keys = [f"{tag}{i}" for i in range(6)]
        while not stop.is_set():
            k = ks[n % len(ks)]  # one writer's calls alternate between the front-ends it has
            key = random.choice(keys)
            try:
                if batch:  # every key once, so the call writes several shards
                    out = k.put_records(StreamName="reroute", Records=[
                        {"PartitionKey": key, "Data": f"{key}:{n}".encode()} for key in keys])
                    for key, r in zip(keys, out["Records"]):
                        if "ErrorCode" in r:
                            errors.append(r["ErrorCode"])
                        else:
                            acks.setdefault(key, []).append((str(n), r["SequenceNumber"], r["ShardId"]))
                else:
                    out = k.put_record(StreamName="reroute", PartitionKey=key, Data=f"{key}:{n}".encode())
                    acks.setdefault(key, []).append((str(n), out["SequenceNumber"], out["ShardId"]))
            except ClientError as e:
                errors.append(e.response["Error"]["Code"])
            n += 1

    threads = [threading.Thread(target=producer, args=((kb,), "b", False)),
               threading.Thread(target=producer, args=((kb,), "c", True)),
               threading.Thread(target=producer, args=((ka, kb), "x", False))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        for step in range(4):  # each reshard through a; b writes by the layout it had
            if step % 2 == 0:
                ka.update_shard_count(StreamName="reroute", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
            else:
                ka.update_shard_count(StreamName="reroute", TargetShardCount=2, ScalingType="UNIFORM_SCALING")
            wait_active(ka, "reroute")
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, f"{len(errors)} puts failed: {sorted(set(errors))}"
    shards = ka.list_shards(StreamName="reroute")["Shards"]
    ranges = {sh["ShardId"]: sh["SequenceNumberRange"] for sh in shards}
    above = lineage(shards)
    got = {}
    for sh in shards:
        it = ka.get_shard_iterator(StreamName="reroute", ShardId=sh["ShardId"],
                                   ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        if "EndingSequenceNumber" in sh["SequenceNumberRange"]:  # a closed shard reports its end
            records, _ = helpers.read_to_shard_end(ka, it)
        else:
            records = read_shard(ka, "reroute", sh["ShardId"])
        for r in records:
            got[r["SequenceNumber"]] = r["Data"]
    for key, seen in acks.items():
        for n, seq, shard in seen:
            assert got.get(seq) == f"{key}:{n}".encode(), f"acknowledged record {key}:{n} is missing"
            end = ranges[shard].get("EndingSequenceNumber")
            assert end is None or int(seq) <= int(end), f"{key}:{n} landed in {shard} after it closed"
        # one call after the other: the next record is later in the same shard or in a
        # descendant of it (a child is written only once its parent is closed)
        for (n0, s0, sh0), (n1, s1, sh1) in zip(seen, seen[1:]):
            if sh0 == sh1:
                assert int(s1) > int(s0), (key, n0, n1)
            else:
                assert sh0 in above[sh1], f"{key}:{n1} went to {sh1}, not below {sh0} where {key}:{n0} is"


def test_killing_one_front_end_under_load_loses_nothing_and_the_other_serves_on(start):
    a, b = start(), start()
    ka = client(a, read_timeout=3)
    kb = client(b, read_timeout=3)
    ka.create_stream(StreamName="crash", ShardCount=2)
    wait_active(kb, "crash")
    stop = threading.Event()
    acked = {}

    def producer(k, tag):
        n = 0
        while not stop.is_set():
            data = f"{tag}:{n}".encode()
            try:
                out = k.put_records(StreamName="crash", Records=[
                    {"PartitionKey": f"{tag}{n}-{i}", "Data": data + b"/%d" % i} for i in range(10)])
                for i, r in enumerate(out["Records"]):
                    if "SequenceNumber" in r:
                        acked[r["SequenceNumber"]] = data + b"/%d" % i
            except (ClientError, BotoConnectionError, HTTPClientError):
                pass
            n += 1

    threads = [threading.Thread(target=producer, args=(ka, "a")), threading.Thread(target=producer, args=(kb, "b"))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    a.kill()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert acked
    got = {}
    for sh in ("shardId-000000000000", "shardId-000000000001"):
        for r in read_shard(kb, "crash", sh):
            assert r["SequenceNumber"] not in got, "a sequence number was handed out twice"
            got[r["SequenceNumber"]] = r["Data"]
    for seq, data in acked.items():
        assert got.get(seq) == data, f"acknowledged record {seq} is missing or changed"
    # and the surviving front-end takes writes on
    kb.put_record(StreamName="crash", PartitionKey="after", Data=b"x")


def pg_ctl(*args):
    """pg_ctl on the suite's server; the server it starts logs to its file, not to our pipes."""
    bin_dir, pg_dir = os.environ["KINESD_PG_BIN"], os.environ["KINESD_PG_DIR"]
    cmd = [f"{bin_dir}/pg_ctl", "-D", pg_dir + "/data", "-l", pg_dir + "/server.log", *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


def test_postgresql_restarted_under_load_gives_retryable_errors_and_loses_nothing_acknowledged(start):
    a = start()
    k = client(a, read_timeout=5)
    k.create_stream(StreamName="pgdown", ShardCount=1)
    wait_active(k, "pgdown")
    acked, codes = {}, set()
    stop = threading.Event()

    def producer():
        n = 0
        while not stop.is_set():
            try:
                out = k.put_record(StreamName="pgdown", PartitionKey=f"k{n}", Data=f"v{n}".encode())
                acked[out["SequenceNumber"]] = f"v{n}".encode()
            except ClientError as e:
                codes.add((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]))
            n += 1

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.5)
    pg_ctl("-m", "fast", "-w", "restart", "-o",
           f"-k {os.environ['KINESD_PG_DIR']} -c listen_addresses='' -c max_connections=200")
    time.sleep(1.0)
    stop.set()
    t.join()
    # errors while the database was away are 5xx ones SDKs retry, never a client error
    assert all(status >= 500 for _, status in codes), codes
    assert all(code in ("InternalFailure", "ServiceUnavailable") for code, _ in codes), codes
    deadline = time.time() + 10
    while True:  # the front-end reconnects by itself
        try:
            k.put_record(StreamName="pgdown", PartitionKey="after", Data=b"after")
            break
        except ClientError:
            assert time.time() < deadline, "the front-end did not reconnect"
            time.sleep(0.2)
    got = {r["SequenceNumber"]: r["Data"] for r in read_shard(k, "pgdown", "shardId-000000000000")}
    for seq, data in acked.items():
        assert got.get(seq) == data, f"acknowledged record {seq} is missing"


def psql(url, sql):
    return subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()


def test_when_the_leader_dies_another_front_end_takes_over_the_background_work(start, store):
    flags = ("--create-stream-ms", "0", "--update-stream-ms", "300", "--delete-stream-ms", "0", "--no-limits",
             "--test-clock")
    a = start(flags)
    b = start(flags)
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="lead", ShardCount=1)
    wait_active(kb, "lead")
    ka.put_records(StreamName="lead", Records=[{"PartitionKey": f"k{i}", "Data": b"old"} for i in range(50)])
    assert int(psql(store, "SELECT count(*) FROM kinesd_records")) == 50
    a.kill()  # the first to start holds the lease; it dies with its session
    for attempt in range(5):
        # a change racing the dying leader's last write loses its compare-and-set and answers a
        # retryable InternalFailure, which SDKs retry (these clients do not, so the test does)
        try:
            kb.split_shard(StreamName="lead", ShardToSplit="shardId-000000000000",
                           NewStartingHashKey=str(2**127))
            break
        except ClientError as e:
            if e.response["Error"]["Code"] != "InternalFailure" or attempt == 4:
                raise
            time.sleep(0.2)
    wait_active(kb, "lead")  # the reshard was applied by the survivor
    shards = kb.list_shards(StreamName="lead")["Shards"]
    assert len(shards) == 3
    assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]
    # and trimming: on the survivor's clock the records are 25 hours old, past the stream's
    # 24; the dead leader's clock never moved, so only the survivor can have deleted them
    resp = helpers.http_request(b.endpoint, "POST", f"/_test/advance-clock?ms={25 * 3600 * 1000}")
    assert resp.status == 200
    deadline = time.time() + 20
    while int(psql(store, "SELECT count(*) FROM kinesd_records")) > 0:
        assert time.time() < deadline, "the survivor did not trim the expired records"
        time.sleep(0.2)


def test_a_database_with_a_newer_schema_is_refused_with_exit_status_2(start, store):
    start().stop()  # creates the schema
    psql(store, "UPDATE kinesd_schema SET version = version + 1")
    version = psql(store, "SELECT version FROM kinesd_schema")
    tables = psql(store, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
                         " WHERE tablename LIKE 'kinesd%'")
    f = Frontend(store)
    proc = subprocess.run([f.binary, "--host", "127.0.0.1", "--port", str(f.port), "--store", store],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert f"schema version {version}" in proc.stderr
    # nothing was changed
    assert psql(store, "SELECT version FROM kinesd_schema") == version
    assert psql(store, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
                       " WHERE tablename LIKE 'kinesd%'") == tables


PK_MARK = "pk-plaintext-4e1f"
DATA_MARK = b"payload-plaintext-8a2c"


def database_text(url):
    """Everything the database holds, as pg_dump writes it (bytea as hex)."""
    cmd = [os.environ["KINESD_PG_BIN"] + "/pg_dump", "--data-only", url]
    return subprocess.run(cmd, check=True, capture_output=True).stdout.decode(errors="replace").lower()


def write_marked_records(front):
    k = client(front)
    k.create_stream(StreamName="secret", ShardCount=2)
    wait_active(k, "secret")
    k.put_record(StreamName="secret", PartitionKey=PK_MARK, Data=DATA_MARK)
    # both sealing paths: records of up to 2 KiB and longer ones
    k.put_records(StreamName="secret", Records=[
        {"PartitionKey": f"{PK_MARK}-{i}", "Data": DATA_MARK * (1 if i % 2 else 200)} for i in range(20)])
    got = read_shard(k, "secret", "shardId-000000000000") + read_shard(k, "secret", "shardId-000000000001")
    assert len(got) == 21


def marks_in(text):
    return [m for m in (PK_MARK.encode(), DATA_MARK) if m.decode() in text or m.hex() in text]


def test_the_database_never_sees_a_plaintext_partition_key_or_payload(start, store):
    write_marked_records(start(("--create-stream-ms", "0", "--no-limits")))
    assert marks_in(database_text(store)) == []
    # the same records stored unencrypted are found by this search
    plain = fresh_database(PG_URL, "t_plaintext_control")
    f = Frontend(plain, ("--create-stream-ms", "0", "--no-limits", "--no-encryption-at-rest")).start()
    try:
        write_marked_records(f)
    finally:
        assert f.stop() == 0, f.log()
    assert marks_in(database_text(plain)) == [PK_MARK.encode(), DATA_MARK]


def test_an_on_demand_shard_hot_through_a_front_end_that_is_not_the_leader_is_split(start):
    a = start()  # the first to start holds the lease: the maintenance leader
    b = start()
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="hot", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_active(kb, "hot")
    before = kb.list_shards(StreamName="hot")["Shards"]
    assert len(before) == 4
    hot = helpers.shard_for_hash(before, helpers.hash_key("hot"))
    deadline = time.monotonic() + 15
    split = []
    while time.monotonic() < deadline and not split:
        # 2,000 records a second into one key, all through the front-end that is not the
        # leader: twice one shard's write capacity
        for _ in range(4):
            out = kb.put_records(StreamName="hot", Records=[{"PartitionKey": "hot", "Data": b"x" * 10}] * 500)
            assert out["FailedRecordCount"] == 0
        time.sleep(0.5)
        split = [sh for sh in kb.list_shards(StreamName="hot")["Shards"] if "ParentShardId" in sh]
    assert len(split) == 2, "no shard was split within 15 s of writing at twice its capacity"
    assert all(sh["ParentShardId"] == hot for sh in split)


LIMITED = ("--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0")  # limits on


def put_batch(k, name):
    """500 records at the stream's one shard: how many were admitted."""
    out = k.put_records(StreamName=name, Records=[{"PartitionKey": "p", "Data": b"x"} for _ in range(500)])
    return 500 - out["FailedRecordCount"]


def test_writes_split_across_two_front_ends_stay_within_one_shards_write_rate(start):
    a, b = start(LIMITED), start(LIMITED)
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="limited", ShardCount=1)
    wait_active(kb, "limited")
    admitted, sent, i = 0, 0, 0
    t0 = time.monotonic()
    # for 5 s (a few batches take less than a second, within the first second's burst, where
    # front-ends that did not share would pass too), alternating front-ends, as fast as they go
    while time.monotonic() - t0 < 5:
        admitted += put_batch((ka, kb)[i % 2], "limited")
        sent += 500
        i += 1
    elapsed = time.monotonic() - t0
    # one shard takes 1,000 records a second after a one-second burst: what both front-ends
    # let through stays within 10 % of that (each alone would let all of it through)
    assert admitted <= 1.1 * 1000 * (1 + elapsed), (admitted, elapsed)
    if sent > 2 * 1.1 * 1000 * (1 + elapsed):  # demand well over the rate: it is mostly used
        assert admitted >= 0.5 * 1000 * elapsed, (admitted, elapsed)


def test_writes_split_unevenly_across_two_front_ends_stay_within_one_shards_write_rate(start):
    a, b = start(LIMITED), start(LIMITED)
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="uneven", ShardCount=1)
    wait_active(kb, "uneven")
    admitted, sent, i = {"a": 0, "b": 0}, 0, 0
    t0 = time.monotonic()
    # for 5 s, long enough that each front-end alone would refill a whole rate of its own
    # several times over: three calls of four through the first front-end, one through the second
    while time.monotonic() - t0 < 5:
        tag = "b" if i % 4 == 3 else "a"
        admitted[tag] += put_batch(ka if tag == "a" else kb, "uneven")
        sent += 500
        i += 1
    elapsed = time.monotonic() - t0
    total = admitted["a"] + admitted["b"]
    # the shard's rate, whatever the share of each front-end (each alone would let through a
    # whole rate of its own: the second's quarter of the demand is itself over the rate)
    assert total <= 1.1 * 1000 * (1 + elapsed), (admitted, elapsed)
    if sent > 2 * 1.1 * 1000 * (1 + elapsed):
        assert total >= 0.5 * 1000 * elapsed, (admitted, elapsed)


def test_writes_spread_over_three_front_ends_stay_within_one_shards_write_rate(start):
    fronts = [start(LIMITED) for _ in range(3)]
    ks = [client(f) for f in fronts]
    ks[0].create_stream(StreamName="three", ShardCount=1)
    for k in ks[1:]:
        wait_active(k, "three")
    admitted, sent, i = 0, 0, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:  # round robin over the three, as fast as they go
        admitted += put_batch(ks[i % 3], "three")
        sent += 500
        i += 1
    elapsed = time.monotonic() - t0
    assert admitted <= 1.1 * 1000 * (1 + elapsed), (admitted, elapsed)
    if sent > 2 * 1.1 * 1000 * (1 + elapsed):
        assert admitted >= 0.5 * 1000 * elapsed, (admitted, elapsed)


def test_reads_split_across_two_front_ends_stay_within_one_shards_read_call_rate(start):
    a, b = start(LIMITED), start(LIMITED)
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="reads", ShardCount=1)
    wait_active(kb, "reads")
    ka.put_record(StreamName="reads", PartitionKey="k", Data=b"x")
    its = [k.get_shard_iterator(StreamName="reads", ShardId="shardId-000000000000",
                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"] for k in (ka, kb)]
    admitted, refused, i = 0, 0, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 6:  # GetRecords as fast as they go, alternating front-ends
        k = (ka, kb)[i % 2]
        try:
            out = k.get_records(ShardIterator=its[i % 2])
            its[i % 2] = out["NextShardIterator"]
            admitted += 1
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ProvisionedThroughputExceededException", e
            refused += 1
        i += 1
    elapsed = time.monotonic() - t0
    # a shard takes 5 GetRecords calls a second after a one-second burst, through both
    # front-ends together (each alone would take 5 of its own)
    assert refused > 0
    assert admitted <= 1.1 * 5 * (1 + elapsed), (admitted, refused, elapsed)
    if admitted + refused > 4 * 5 * elapsed:  # demand well over the rate: it is mostly used
        assert admitted >= 0.5 * 5 * elapsed, (admitted, refused, elapsed)


def test_writes_through_one_front_end_of_two_get_a_shards_whole_write_rate_not_half(start):
    a, b = start(LIMITED), start(LIMITED)
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="lone", ShardCount=1)
    wait_active(kb, "lone")
    kb.list_streams()  # the other front-end is up and idle
    conclusive = 0
    t_prev = None
    for _ in range(12):
        # each round drains the bucket, so what a round admits is what the rate refilled since
        # the previous one ended: 500 records a second if this front-end had half the rate
        admitted, sent = 0, 0
        time.sleep(0.3)
        for _ in range(6):
            admitted += put_batch(ka, "lone")
            sent += 500
        t_end = time.monotonic()
        if t_prev is not None and sent > 2.2 * 1000 * (t_end - t_prev):  # asked for over twice the rate
            span = t_end - t_prev
            assert admitted <= 1.1 * 1000 * (1 + span), (admitted, span)
            if admitted > 1.1 * 500 * span:
                conclusive += 1
                if conclusive == 3:
                    break
        t_prev = t_end
    assert conclusive == 3, "this front-end never got more than half of the shard's write rate"


def consumer_status(k, arn):
    try:
        return k.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return None


def test_a_consumer_registered_through_one_front_end_is_served_and_deregistered_through_the_other(start):
    flags = ("--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0",
             "--register-consumer-ms", "300", "--no-limits")
    a, b = start(flags), start(flags)
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="fan", ShardCount=1)
    wait_active(kb, "fan")
    sarn = kb.describe_stream_summary(StreamName="fan")["StreamDescriptionSummary"]["StreamARN"]
    arn = ka.register_stream_consumer(StreamARN=sarn, ConsumerName="c")["Consumer"]["ConsumerARN"]
    # the very next call through the other front-end knows it (described, listed, counted)
    assert consumer_status(kb, arn) in ("CREATING", "ACTIVE")
    assert [c["ConsumerARN"] for c in kb.list_stream_consumers(StreamARN=sarn)["Consumers"]] == [arn]
    assert kb.describe_stream_summary(StreamName="fan")["StreamDescriptionSummary"]["ConsumerCount"] == 1
    with pytest.raises(ClientError) as err:  # the name is taken for every front-end
        kb.register_stream_consumer(StreamARN=sarn, ConsumerName="c")
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"
    deadline = time.time() + 20
    while consumer_status(kb, arn) != "ACTIVE":  # CREATING -> ACTIVE is seen the same everywhere
        assert time.time() < deadline, "the consumer did not become ACTIVE on the other front-end"
        time.sleep(0.05)
    assert consumer_status(ka, arn) == "ACTIVE"
    put = ka.put_record(StreamName="fan", PartitionKey="k", Data=b"fan-out")
    # a subscription through the second front-end, to the consumer registered through the first
    events = kb.subscribe_to_shard(ConsumerARN=arn, ShardId=put["ShardId"],
                                   StartingPosition={"Type": "TRIM_HORIZON"})["EventStream"]
    got = []
    for ev in events:
        got += ev["SubscribeToShardEvent"]["Records"]
        if got:
            break
    assert [r["Data"] for r in got] == [b"fan-out"]
    # deregistered through the first: the subscription on the second ends (told by the store's
    # notification, not by a call through it), and the second sees it DELETING, then gone
    ka.deregister_stream_consumer(ConsumerARN=arn)
    deadline = time.time() + 30
    with pytest.raises(EventStreamError) as ended:
        for _ in events:  # an event at least every few seconds, so the deadline is checked
            assert time.time() < deadline, "the subscription did not end"
    assert ended.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert consumer_status(kb, arn) in ("DELETING", None)
    assert kb.describe_stream_summary(StreamName="fan")["StreamDescriptionSummary"]["ConsumerCount"] == 0
    deadline = time.time() + 20
    while consumer_status(kb, arn) is not None or consumer_status(ka, arn) is not None:
        assert time.time() < deadline, "the deregistered consumer did not go away"
        time.sleep(0.05)
    assert kb.list_stream_consumers(StreamARN=sarn)["Consumers"] == []
    # registered again through the second front-end: a new ARN, known to the first at once
    again = kb.register_stream_consumer(StreamARN=sarn, ConsumerName="c")["Consumer"]["ConsumerARN"]
    assert again != arn
    assert consumer_status(ka, again) in ("CREATING", "ACTIVE")
    assert consumer_status(ka, arn) is None


def test_a_front_end_stopped_while_another_changes_consumers_exits_cleanly(start):
    """Another front-end's changes are heard (LISTEN) until the store is closed: a front-end
    told of a consumer or stream row while it shuts down must not touch what it freed."""
    flags = ("--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0",
             "--register-consumer-ms", "0", "--no-limits")
    ka = client(start(flags))
    ka.create_stream(StreamName="churn", ShardCount=1)
    wait_active(ka, "churn")
    sarn = ka.describe_stream_summary(StreamName="churn")["StreamDescriptionSummary"]["StreamARN"]
    stop = threading.Event()

    def churn():  # a row change, and its notification to every front-end, after another
        n = 0
        while not stop.is_set():
            try:
                arn = ka.register_stream_consumer(StreamARN=sarn, ConsumerName=f"c{n}")["Consumer"]["ConsumerARN"]
                ka.add_tags_to_stream(StreamName="churn", Tags={"n": str(n)})
                ka.deregister_stream_consumer(ConsumerARN=arn)
            except ClientError:
                pass
            n += 1

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(8):
            b = start(flags)
            client(b).list_stream_consumers(StreamARN=sarn)  # b is up while a's changes go on
            code = b.stop()
            assert code == 0, f"a front-end exited with {code}:\n{b.log()}"
    finally:
        stop.set()
        t.join()


def test_two_accounts_streams_of_one_name_are_kept_apart_by_every_front_end(start, tmp_path):
    from test_accounts import ALICE_ACCT, BOB_ACCT, KEYS, arn, credentials
    from test_auth import client as signed_client

    creds = credentials(tmp_path)
    flags = ("--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0", "--no-limits",
             "--auth", str(creds))
    a, b = start(flags), start(flags)
    alice_a, alice_b = signed_client(a.endpoint, KEYS["alice"]), signed_client(b.endpoint, KEYS["alice"])
    bob_a, bob_b = signed_client(a.endpoint, KEYS["bob"]), signed_client(b.endpoint, KEYS["bob"])
    alice_a.create_stream(StreamName="same", ShardCount=1)
    bob_b.create_stream(StreamName="same", ShardCount=2)  # the name row is the account's: no conflict
    wait_active(alice_b, "same")
    wait_active(bob_a, "same")
    assert alice_b.describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]["StreamARN"] == \
        arn("same", ALICE_ACCT)
    assert bob_a.describe_stream_summary(StreamName="same")["StreamDescriptionSummary"]["OpenShardCount"] == 2
    put = bob_a.put_record(StreamName="same", PartitionKey="k", Data=b"bob's")
    it = bob_b.get_shard_iterator(StreamName="same", ShardId=put["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert [r["Data"] for r in bob_b.get_records(ShardIterator=it)["Records"]] == [b"bob's"]
    it = alice_a.get_shard_iterator(StreamName="same", ShardId=helpers.shard_id(0),
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert alice_b.get_records(ShardIterator=it)["Records"] == []
    # the other account's stream is neither created again nor deleted by this one's calls
    with pytest.raises(ClientError) as err:
        alice_b.create_stream(StreamName="same", ShardCount=1)
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"
    alice_b.delete_stream(StreamName="same")
    deadline = time.time() + 20
    while "same" in alice_a.list_streams()["StreamNames"]:
        assert time.time() < deadline
        time.sleep(0.05)
    assert bob_a.list_streams()["StreamNames"] == ["same"]
    assert bob_b.describe_stream_summary(StreamARN=arn("same", BOB_ACCT))["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


def test_a_resource_policy_put_through_one_front_end_is_read_at_once_through_the_other(start):
    ka, kb = two_front_ends(start, "policed", 1)
    arn = ka.describe_stream_summary(StreamName="policed")["StreamDescriptionSummary"]["StreamARN"]
    a, b = helpers.RawApi(ka.meta.endpoint_url), helpers.RawApi(kb.meta.endpoint_url)
    for i in range(3):
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": f"s{i}", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": ["kinesis:GetRecords"], "Resource": arn}]})
        a.ok("PutResourcePolicy", {"ResourceARN": arn, "Policy": policy})
        assert b.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": policy}
    b.ok("DeleteResourcePolicy", {"ResourceARN": arn})
    assert a.ok("GetResourcePolicy", {"ResourceARN": arn}) == {"Policy": "{}"}



def test_a_resource_policy_put_through_one_front_end_is_enforced_by_the_other(start, tmp_path):
    from test_accounts import KEYS, credentials
    from test_auth import client as signed_client, send, signed

    flags = ("--create-stream-ms", "0", "--update-stream-ms", "0", "--delete-stream-ms", "0", "--no-limits",
             "--auth", str(credentials(tmp_path)))
    a, b = start(flags), start(flags)
    alice_a, alice_b = signed_client(a.endpoint, KEYS["alice"]), signed_client(b.endpoint, KEYS["alice"])
    alice_a.create_stream(StreamName="guarded", ShardCount=1)
    wait_active(alice_b, "guarded")
    alice_b.put_record(StreamName="guarded", PartitionKey="a", Data=b"allowed")
    target = alice_a.describe_stream_summary(StreamName="guarded")["StreamDescriptionSummary"]["StreamARN"]
    policy = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kinesis:PutRecord", "Resource": target}]}
    body, headers = signed(a.endpoint, "PutResourcePolicy", {"ResourceARN": target, "Policy": json.dumps(policy)},
                           key=KEYS["alice"])
    assert send(a.endpoint, body, headers).status == 200
    deadline = time.time() + 10
    while True:  # the other front-end applies it within a bounded delay
        try:
            alice_b.put_record(StreamName="guarded", PartitionKey="a", Data=b"x")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDeniedException"
            break
        assert time.time() < deadline, "the other front-end never applied the policy put through the first"
        time.sleep(0.05)
    alice_b.describe_stream_summary(StreamName="guarded")  # what it does not deny stays allowed
