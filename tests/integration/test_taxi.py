"""The taxi pipeline end to end: taxi-replay -> stream -> taxi-hotspots -> output stream.

The expected windows are computed here from the generator module (the same seed gives the
same trips), never by running the consumer's code: pickups per (window, cell), and per cell
the number and average duration of trips that end at JFK or LaGuardia."""

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]
TAXI = REPO / "tools" / "taxi"
sys.path.insert(0, str(TAXI))

from taxilib import geohash, kpl, trips  # noqa: E402

SEED = 20260101
TRIPS = 1500
START = "2015-01-15 17:00:00"


def expected_windows(seed=SEED, count=TRIPS, precision=6, start=START, source=None):
    """{window start: {cell: (pickups, jfk trips, jfk avg, lga trips, lga avg)}} from the generator
    (or from the given trips)."""
    acc = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0, 0, 0, 0]))
    for t in source if source is not None else trips.synthetic(seed, start, count):
        w = t["pickup"] - t["pickup"] % 60
        c = geohash.encode(t["plat"], t["plon"], precision)
        v = acc[w][c]
        v[0] += 1
        lat, lon = t["dlat"], t["dlon"]
        for i, (alat, alon, r) in ((1, trips.AIRPORTS["JFK"]), (3, trips.AIRPORTS["LGA"])):
            if (lat - alat) ** 2 + (lon - alon) ** 2 <= r * r:
                v[i] += 1
                v[i + 1] += t["dropoff"] - t["pickup"]
    out = {}
    for w, cells in acc.items():
        out[w] = {c: (v[0], v[1], round(v[2] / v[1], 1) if v[1] else None, v[3],
                      round(v[4] / v[3], 1) if v[3] else None) for c, v in cells.items()}
    return out


def read_stream(client, name):
    """Every record of every shard, waiting out read throttling (limits may be on)."""
    recs = []
    for s in helpers.all_shards(client, name):
        it = client.get_shard_iterator(StreamName=name, ShardId=s["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for _ in range(1000):
            try:
                r = client.get_records(ShardIterator=it, Limit=10000)
            except client.exceptions.ProvisionedThroughputExceededException:
                time.sleep(0.3)
                continue
            recs += r["Records"]
            it = r.get("NextShardIterator")
            if not it or (not r["Records"] and r["MillisBehindLatest"] == 0):
                break
    return recs


def output_windows(client, name):
    """The window results in the output stream; fails on a (window, part) written twice."""
    seen = collections.Counter()
    windows = collections.defaultdict(dict)
    for rec in read_stream(client, name):
        d = json.loads(rec["Data"])
        seen[(d["start"], d["part"])] += 1
        for row in d["cells"]:
            jfk, lga = row.get("toJFK") or {}, row.get("toLGA") or {}
            windows[d["start"]][row["cell"]] = (row["pickups"], jfk.get("trips", 0), jfk.get("avgSeconds"),
                                                lga.get("trips", 0), lga.get("avgSeconds"))
    twice = [k for k, n in seen.items() if n > 1]
    assert not twice, f"windows written more than once: {twice}"
    return dict(windows)


def env_for(endpoint):
    return dict(os.environ, KINESIS_ENDPOINT=endpoint, PYTHONDONTWRITEBYTECODE="1")


def replay(endpoint, stream, *extra, shards=2, seed=SEED, count=TRIPS, per_minute=120, skip=0):
    cmd = [sys.executable, str(TAXI / "taxi-replay"), "--stream", stream, "--shards", str(shards),
           "--seed", str(seed), "--trips", str(count), "--start", START, "--speedup", "0",
           "--per-minute", str(per_minute), "--skip", str(skip), *extra]
    p = subprocess.run(cmd, env=env_for(endpoint), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr + p.stdout
    last = p.stdout.strip().splitlines()[-1]
    assert f"sent={count - skip} " in last, p.stdout
    return dict(kv.split("=", 1) for kv in last.split()[1:] if "=" in kv)


def hotspots_cmd(stream, out, checkpoint, *extra):
    return [sys.executable, str(TAXI / "taxi-hotspots"), "--stream", stream, "--out-stream", out,
            "--checkpoint", str(checkpoint), "--idle-flush", "1", "--exit-when-idle", "--poll", "0.2", *extra]


def hotspots(endpoint, stream, out, checkpoint, *extra, fault=None):
    env = env_for(endpoint)
    if fault:
        env["TAXI_HOTSPOTS_FAULT"] = fault
    return subprocess.run(hotspots_cmd(stream, out, checkpoint, *extra), env=env, capture_output=True,
                          text=True, timeout=120)


# ---- the building blocks against published vectors ----


def test_geohash_encodes_the_published_example_and_its_cells_contain_their_points():
    assert geohash.encode(57.64911, 10.40744, 11) == "u4pruydqqvj"  # Niemeyer's example
    assert geohash.encode(40.7549, -73.9840, 5) == "dr5ru"  # Midtown
    rng = random.Random(5)
    for _ in range(200):
        lat, lon = rng.uniform(40.5, 40.9), rng.uniform(-74.2, -73.7)
        for p in (6, 7):
            a, b, c, d = geohash.bounds(geohash.encode(lat, lon, p))
            assert a <= lat <= c and b <= lon <= d


def test_kpl_aggregate_has_the_magic_the_protobuf_and_its_md5():
    agg = kpl.Aggregator()
    agg.add("a", b"x")
    agg.add("bb", b"yz")
    agg.add("a", b"")
    key, data = agg.encode()
    body = (b"\x0a\x01a" b"\x0a\x02bb"  # partition_key_table
            b"\x1a\x05\x08\x00\x1a\x01x" b"\x1a\x06\x08\x01\x1a\x02yz" b"\x1a\x04\x08\x00\x1a\x00")  # records
    import hashlib

    assert key == "a"
    assert data == b"\xf3\x89\x9a\xc2" + body + hashlib.md5(body).digest()
    assert kpl.deaggregate(data) == [("a", b"x"), ("bb", b"yz"), ("a", b"")]
    # a corrupted digest makes it an ordinary record
    assert kpl.deaggregate(data[:-1] + b"\0", "pk") == [("pk", data[:-1] + b"\0")]


def test_the_generator_is_reproducible_and_clusters_at_the_four_places():
    a = list(trips.synthetic(3, START, 800))
    assert a == list(trips.synthetic(3, START, 800))
    assert a != list(trips.synthetic(4, START, 800))
    assert all(x["pickup"] <= y["pickup"] for x, y in zip(a, a[1:]))
    near = collections.Counter()
    for t in a:
        for name, lat, lon, spread in (trips.MIDTOWN, trips.FIDI, trips.JFK, trips.LGA):
            if abs(t["plat"] - lat) < 3 * spread and abs(t["plon"] - lon) < 4 * spread:
                near[name] += 1
        assert 120 <= t["dropoff"] - t["pickup"] < 3 * 3600
        assert 3 <= t["fare"] < 250
    assert all(near[n] > 20 for n in ("Midtown", "Financial District", "JFK", "LaGuardia")), near


def test_a_csv_header_decides_between_coordinates_and_location_ids(tmp_path):
    coords = tmp_path / "c.csv"
    coords.write_text("VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,"
                      "pickup_longitude,pickup_latitude,RateCodeID,store_and_fwd_flag,dropoff_longitude,"
                      "dropoff_latitude,payment_type,fare_amount,total_amount\n"
                      "2,2015-01-15 19:05:39,2015-01-15 19:23:42,1,1.59,-73.993896,40.750111,1,N,"
                      "-73.974785,40.750618,1,12,17.05\n"
                      "2,2015-01-15 19:05:40,2015-01-15 19:50:00,1,15.1,-73.98,40.75,1,N,-73.78,40.64,1,52,60\n")
    zones = tmp_path / "z.csv"
    zones.write_text("VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,"
                     "RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,"
                     "total_amount\n"
                     "1,2019-01-01 00:46:40,2019-01-01 00:53:20,1,1.50,1,N,151,239,1,7,9.95\n"
                     "1,2019-01-01 00:59:47,2019-01-01 01:18:59,1,2.60,1,N,161,138,1,14,16.3\n")
    c = list(trips.csv_trips(str(coords)))
    assert [t["plat"] for t in c] == [40.750111, 40.75] and c[0]["pu"] is None
    assert [trips.airport(t) for t in c] == [None, "JFK"]
    z = list(trips.csv_trips(str(zones)))
    assert [(t["pu"], t["do"]) for t in z] == [(151, 239), (161, 138)] and z[0]["plat"] is None
    assert [trips.airport(t) for t in z] == [None, "LGA"]
    assert z[1]["dropoff"] - z[1]["pickup"] == 19 * 60 + 12
    bad = tmp_path / "b.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        list(trips.csv_trips(str(bad)))


# ---- the pipeline ----


@pytest.mark.parametrize("aggregate", [False, True], ids=["plain", "kpl"])
def test_replay_then_hotspots_gives_exactly_the_windows_of_the_seed(endpoint, kinesis, tmp_path, aggregate):
    src, out = helpers.unique_name("taxi"), helpers.unique_name("hot")
    try:
        stats = replay(endpoint, src, *(["--aggregate"] if aggregate else []))
        n_records = sum(1 for _ in read_stream(kinesis, src))
        if aggregate:
            assert n_records < TRIPS // 10, "aggregation packed nothing"
        else:
            assert n_records == TRIPS
        assert int(stats["records"]) == n_records
        p = hotspots(endpoint, src, out, tmp_path / "cp.json")
        assert p.returncode == 0, p.stderr
        got = output_windows(kinesis, out)
        want = expected_windows()
        assert len(want) > 10
        assert got == want
    finally:
        for s in (src, out):
            kinesis.delete_stream(StreamName=s)


def test_a_killed_consumer_resumes_without_losing_or_repeating_a_window(endpoint, kinesis, tmp_path):
    src, out = helpers.unique_name("taxi"), helpers.unique_name("hot")
    cp = tmp_path / "cp.json"
    small = ["--limit", "40"]  # many small reads, so that there is a middle to die in
    try:
        replay(endpoint, src)
        # dies after saving an emission as pending, before writing it to the output stream
        p = hotspots(endpoint, src, out, cp, *small, fault="before-put:3")
        assert p.returncode == 75, p.stderr
        # dies right after an output record is written, before the checkpoint says so
        p = hotspots(endpoint, src, out, cp, *small, fault="after-put:4")
        assert p.returncode == 75, p.stderr
        # SIGKILL at an arbitrary moment once more windows came out
        before = len(read_stream(kinesis, out))
        proc = subprocess.Popen(hotspots_cmd(src, out, cp, *small), env=env_for(endpoint),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3):
            line = proc.stdout.readline()
            assert line.startswith("window "), line + proc.stderr.read()
        time.sleep(random.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(read_stream(kinesis, out)) > before
        # and to the end
        p = hotspots(endpoint, src, out, cp, *small)
        assert p.returncode == 0, p.stderr
        assert output_windows(kinesis, out) == expected_windows()
        state = json.loads(cp.read_text())
        assert state["late"] == 0 and not state["pending"] and not state["windows"]
    finally:
        for s in (src, out):
            kinesis.delete_stream(StreamName=s)


def test_a_tlc_csv_replays_in_pickup_order_into_the_same_windows(endpoint, kinesis, tmp_path):
    # a 2015-style file (coordinates), rows only roughly in pickup order as TLC's are
    src_trips = list(trips.synthetic(77, START, 800))
    rows = src_trips[:]
    rng = random.Random(1)
    for i in range(0, len(rows) - 300, 7):
        j = i + rng.randrange(1, 300)
        rows[i], rows[j] = rows[j], rows[i]  # up to 300 trips (minutes, past the lateness) out of order
    csv = tmp_path / "yellow_tripdata_2015-01.csv"
    with open(csv, "w") as f:
        f.write("VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,"
                "pickup_longitude,pickup_latitude,RateCodeID,store_and_fwd_flag,dropoff_longitude,"
                "dropoff_latitude,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,"
                "improvement_surcharge,total_amount\n")
        for t in rows:
            f.write(f"2,{trips.format_time(t['pickup'])},{trips.format_time(t['dropoff'])},{t['passengers']},"
                    f"{t['distance']},{t['plon']!r},{t['plat']!r},1,N,{t['dlon']!r},{t['dlat']!r},1,{t['fare']},"
                    f"0,0.5,0,0,0.3,{t['total']}\n")
        f.write("2,not a date,2015-01-15 08:00:00,1,1,-73.98,40.75,1,N,-73.97,40.76,1,5,0,0.5,0,0,0.3,6\n")
    stream, out = helpers.unique_name("csv"), helpers.unique_name("hot")
    try:
        cmd = [sys.executable, str(TAXI / "taxi-replay"), "--stream", stream, "--csv", str(csv), "--speedup", "0"]
        p = subprocess.run(cmd, env=env_for(endpoint), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert "sent=800 " in p.stdout.splitlines()[-1] and "skipped 1 rows" in p.stderr
        p = hotspots(endpoint, stream, out, tmp_path / "cp.json", "--limit", "40")  # small reads: lateness counts
        assert p.returncode == 0, p.stderr
        assert output_windows(kinesis, out) == expected_windows(source=src_trips)
        assert json.loads((tmp_path / "cp.json").read_text())["late"] == 0
    finally:
        for s in (stream, out):
            kinesis.delete_stream(StreamName=s)


def test_the_consumer_follows_a_reshard_from_parents_to_children(endpoint, kinesis, tmp_path):
    src, out = helpers.unique_name("taxi"), helpers.unique_name("hot")
    try:
        replay(endpoint, src, shards=2, count=500)
        # a third of the trips before a split, a third between it and a merge of its children
        kinesis.split_shard(StreamName=src, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
        helpers.wait_for_status(kinesis, src)
        replay(endpoint, src, count=1000, skip=500)
        kinesis.merge_shards(StreamName=src, ShardToMerge="shardId-000000000002",
                             AdjacentShardToMerge="shardId-000000000003")
        helpers.wait_for_status(kinesis, src)
        replay(endpoint, src, count=TRIPS, skip=1000)
        shards = helpers.all_shards(kinesis, src)
        assert len(shards) == 5 and sum(1 for s in shards if helpers.is_open(s)) == 2
        p = hotspots(endpoint, src, out, tmp_path / "cp.json")
        assert p.returncode == 0, p.stderr
        assert output_windows(kinesis, out) == expected_windows()
        state = json.loads((tmp_path / "cp.json").read_text())
        assert state["late"] == 0
        assert sorted(sid for sid, sh in state["shards"].items() if sh["done"]) == sorted(
            s["ShardId"] for s in shards if not helpers.is_open(s))
    finally:
        for s in (src, out):
            kinesis.delete_stream(StreamName=s)


@pytest.mark.own_server
@pytest.mark.parametrize("aggregate", [False, True], ids=["plain", "kpl"])
def test_throttling_slows_the_producer_but_loses_no_trip(kinesd_factory, tmp_path, aggregate):
    srv = kinesd_factory(flags={"--no-limits": False})
    k = helpers.make_client(srv.endpoint)
    # a busy evening: 20,000 pickups a minute make full batches (500 records, or 2.6 MB of
    # aggregates in one call), more than one shard takes in a second (1,000 records, 1 MiB)
    count, rate = (5000, 20000) if not aggregate else (8000, 20000)
    stats = replay(srv.endpoint, "taxi", *(["--aggregate"] if aggregate else []), shards=1, count=count,
                   per_minute=rate)
    assert int(stats["throttled"]) > 0, "one shard at 1,000 records/s (1 MiB/s) never throttled"
    ids = collections.Counter()
    for rec in read_stream(k, "taxi"):
        for _pk, data in kpl.deaggregate(rec["Data"], rec["PartitionKey"]):
            ids[json.loads(data)["id"]] += 1
    want = collections.Counter(t["id"] for t in trips.synthetic(SEED, START, count, rate))
    assert ids == want
