"""taxi-replay: replays taxi trips into a Kinesis stream.

Model: trips come in pickup order (the seeded generator; a TLC CSV is re-sorted within a
window of REORDER_TRIPS trips, and a jump of over an hour is not waited for); each becomes one
user record whose partition key is its pickup cell (geohash). Records go out in PutRecords
batches; a batch is retried - only its failed entries, with backoff - until every entry is
written, before the next batch leaves, so no trip is lost and a shard never sees a trip
more than one batch (at most BATCH_SPAN_S of event time) out of pickup order. That bound is
what lets taxi-hotspots close a window after a fixed lateness. With --aggregate, user
records bound for the same shard (by the MD5 of their partition keys and the stream's open
hash ranges) are packed into KPL aggregated records of at most 51,200 bytes."""

import argparse
import hashlib
import heapq
import itertools
import sys
import time

from botocore.exceptions import BotoCoreError, ClientError

from . import geohash, kinesis, kpl, trips

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
BATCH_SPAN_S = 30  # event time one batch may cover
BATCH_WAIT_S = 0.2  # wall time a paced batch waits for company
REORDER_TRIPS = 20000  # a CSV's trips are put in pickup order within this many
MAX_GAP_S = 3600  # a longer pause between two pickups (a stray date in a CSV) is not waited for


def parse_args(argv):
    p = argparse.ArgumentParser(prog="taxi-replay", description="Replay NYC taxi trips into a Kinesis stream.")
    p.add_argument("--endpoint", help="Kinesis endpoint (default $KINESIS_ENDPOINT or http://127.0.0.1:4567)")
    p.add_argument("--region", help="region (default $AWS_REGION or us-east-1)")
    p.add_argument("--stream", default="taxi-trips", help="stream to write (default taxi-trips)")
    p.add_argument("--shards", type=int, default=2, help="shards when the stream is created (default 2)")
    p.add_argument("--csv", metavar="FILE", help="a NYC TLC yellow-taxi trip CSV (coordinates or location ids)")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic generator (default 1)")
    p.add_argument("--trips", type=int, default=20000, help="synthetic trips to send (default 20000; 0: no end)")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N trips (to resume a replay)")
    p.add_argument("--start", default="2015-01-15 07:00:00", help="synthetic: first pickup time")
    p.add_argument("--per-minute", type=float, default=120, help="synthetic: pickups per minute at peak")
    p.add_argument("--rate", type=float, default=0, help="at most N records per second (default: no cap)")
    p.add_argument("--speedup", type=float, default=60,
                   help="replay event time X times faster than it happened (default 60; 0: as fast as possible)")
    p.add_argument("--aggregate", action="store_true", help="pack records with KPL aggregation")
    p.add_argument("--precision", type=int, default=6, choices=range(4, 9), metavar="4-8",
                   help="geohash precision of the partition key (default 6)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between progress lines (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


class Progress:
    """A bar on a terminal, a plain line per interval otherwise."""

    def __init__(self, total, interval, quiet):
        self.total, self.interval, self.quiet = total, interval, quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = self.t0

    def show(self, sent, throttled, records, final=False):
        now = time.monotonic()
        if self.quiet or (not final and now - self.last < (0.2 if self.tty else self.interval)):
            return
        self.last = now
        el = now - self.t0
        rate = sent / el if el > 0 else 0
        if self.tty:
            eta = "--:--"
            bar = ""
            if self.total:
                done = min(1.0, sent / self.total)
                bar = "[" + "#" * int(done * 30) + "." * (30 - int(done * 30)) + "] "
                if rate > 0:
                    eta = _clock((self.total - sent) / rate)
            sys.stderr.write(f"\r{bar}{sent}{'/' + str(self.total) if self.total else ''} trips  {rate:,.0f}/s  "
                             f"throttled retries {throttled}  elapsed {_clock(el)}  ETA {eta} ")
            if final:
                sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            print(f"taxi-replay: sent={sent} records={records} rate={rate:.0f}/s throttled={throttled} "
                  f"elapsed={el:.1f}s" + (" done" if final else ""), flush=True)


def _clock(s):
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Sender:
    """Batches entries and writes them with PutRecords until every one succeeds."""

    def __init__(self, k, stream, aggregate, paced):
        self.k, self.stream = k, stream
        self.paced = paced  # a paced replay sends what it has every BATCH_WAIT_S
        self.entries, self.bytes, self.users = [], 0, 0
        self.sent = self.records = self.throttled = 0
        self.first_event = None
        self.first_wall = None
        self.aggregate = aggregate
        self.aggs = {}  # shard index -> Aggregator
        self.ranges = []
        if aggregate:
            self.refresh_ranges()

    def refresh_ranges(self):
        shards = kinesis.list_shards(self.k, self.stream)
        self.ranges = sorted(
            (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]), s["ShardId"])
            for s in shards if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {}))

    def _shard_of(self, key):
        h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
        for lo, hi, sid in self.ranges:
            if lo <= h <= hi:
                return sid
        return None

    def add(self, key, data, event_ts):
        if self.first_event is not None and event_ts - self.first_event > BATCH_SPAN_S:
            self.flush()
        if self.first_event is None:
            self.first_event, self.first_wall = event_ts, time.monotonic()
        if self.aggregate:
            sid = self._shard_of(key)
            agg = self.aggs.setdefault(sid, kpl.Aggregator())
            if not agg.fits(key, data):
                self._entry(*agg.encode(), agg.count)
                agg.clear()
            agg.add(key, data)
        else:
            self._entry(key, data, 1)

    def _entry(self, key, data, users):
        if len(self.entries) == MAX_BATCH_RECORDS or self.bytes + len(data) + len(key) > MAX_BATCH_BYTES:
            self._send()
        self.entries.append(({"PartitionKey": key, "Data": data}, users))
        self.bytes += len(data) + len(key)

    def due(self):
        return self.paced and self.first_wall is not None and time.monotonic() - self.first_wall >= BATCH_WAIT_S

    def flush(self):
        for agg in self.aggs.values():
            if agg.count:
                self._entry(*agg.encode(), agg.count)
                agg.clear()
        self._send()
        self.first_event = self.first_wall = None

    def _send(self):
        pending = self.entries
        self.entries, self.bytes = [], 0
        backoff = kinesis.Backoff()
        while pending:
            try:
                r = self.k.put_records(StreamName=self.stream, Records=[e for e, _ in pending])
            except (ClientError, BotoCoreError) as e:
                if not kinesis.retryable(e):
                    raise
                if kinesis.error_code(e):
                    self.throttled += len(pending)
                else:
                    kinesis.warn(f"taxi-replay: {e}; retrying")
                backoff.sleep()
                continue
            failed = []
            for (entry, users), res in zip(pending, r["Records"]):
                if "ErrorCode" in res:
                    failed.append((entry, users))
                else:
                    self.sent += users
                    self.records += 1
            if failed:
                self.throttled += len(failed)
                backoff.sleep()
            else:
                backoff.reset()
            pending = failed


def in_pickup_order(source, window=REORDER_TRIPS):
    """The trips of source, re-sorted by pickup time within a window of that many trips (TLC
    files are only roughly in pickup order); the sort is stable for equal times."""
    heap = []
    for n, t in enumerate(source):
        heapq.heappush(heap, (t["pickup"], n, t))
        if len(heap) > window:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def run(argv=None):
    a = parse_args(argv)
    k = kinesis.client(a.endpoint, a.region)
    kinesis.ensure_stream(k, a.stream, a.shards)
    skipped = {}
    if a.csv:
        with open(a.csv, "rb") as f:
            total = max(0, sum(1 for _ in f) - 1)
        source = in_pickup_order(trips.csv_trips(a.csv, skipped))
    else:
        total = a.trips or None
        source = trips.synthetic(a.seed, a.start, total, a.per_minute)
    if a.skip:
        source = itertools.islice(source, a.skip, None)
        total = total - a.skip if total else total
    sender = Sender(k, a.stream, a.aggregate, a.speedup > 0 or a.rate > 0)
    prog = Progress(total, a.interval, a.quiet)
    t0 = time.monotonic()
    first = prev = None
    n = 0
    try:
        for trip in source:
            if first is None:
                first = prev = trip["pickup"]
            if trip["pickup"] - prev > MAX_GAP_S:
                first += trip["pickup"] - prev
            prev = trip["pickup"]
            # pacing: event time at --speedup, and at most --rate records per second
            wait = 0.0
            if a.speedup > 0:
                wait = max(wait, (trip["pickup"] - first) / a.speedup - (time.monotonic() - t0))
            if a.rate > 0:
                wait = max(wait, n / a.rate - (time.monotonic() - t0))
            while wait > 0:
                if sender.due():
                    sender.flush()
                step = min(wait, BATCH_WAIT_S)
                time.sleep(step)
                wait -= step
                prog.show(sender.sent, sender.throttled, sender.records)
            cell = trips.cell(trip, a.precision, geohash.encode)
            sender.add(cell, trips.encode(trip), trip["pickup"])
            n += 1
            if sender.due():
                sender.flush()
            prog.show(sender.sent, sender.throttled, sender.records)
        sender.flush()
    except KeyboardInterrupt:
        sender.flush()
    prog.show(sender.sent, sender.throttled, sender.records, final=True)
    if skipped.get("rows"):
        print(f"taxi-replay: skipped {skipped['rows']} rows that did not parse", file=sys.stderr)
    return 0


def main():
    try:
        sys.exit(run())
    except (ClientError, BotoCoreError, OSError, ValueError) as e:
        print(f"taxi-replay: {e}", file=sys.stderr)
        sys.exit(1)
