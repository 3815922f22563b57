#!/usr/bin/python3
"""autoscale: double or halve a Kinesis stream's shard count with UpdateShardCount.

The CloudWatch alarm + Lambda recipe as one client. For each watched stream it measures the
incoming records and bytes per second over consecutive periods and

* doubles the open shard count (UpdateShardCount, UNIFORM_SCALING) when every one of the last
  --periods complete periods ran at or above --high (default 80 %) of the stream's capacity in
  records or in bytes (1,000 records/s and 1 MiB/s per open shard, AWS's write limits);
* halves it (rounding up) when every one of them ran below --low (default 30 %) of capacity in
  both. Halving doubles the utilisation, so --low must stay under half of --high, or a stream
  would flap between the two sizes;

never above --max-shards or below --min-shards, never while the stream is not ACTIVE (an
UPDATING stream is left alone), and at most --scalings-per-day times per stream in any rolling
24 hours (AWS allows 10; the server's LimitExceededException is honoured as well). After a
scaling it waits for a full window of the new layout before deciding again. --dry-run logs what
it would do and changes nothing. Every decision is logged as one JSON line with its figures.

Where the rates come from (--source):
* records: it reads every shard (GetRecords from LATEST, then the child shards of a reshard from
  TRIM_HORIZON) and counts each record into the period of its ApproximateArrivalTimestamp, so
  periods are measured on the server's clock. A period is complete once a record of a later
  period was seen in an earlier poll (every shard is read to its tip in each poll, and the
  server's clock only moves forward), or once --grace seconds have passed since its end on the
  server's clock as estimated here: the local clock plus the largest (arrival - receipt) offset
  seen. Reading costs read throughput, which an AWS stream's consumers share (2 MiB/s per shard).
* metrics: it scrapes a Prometheus endpoint (--metrics-url, default ENDPOINT/metrics) for
  kinesis_incoming_records_total and kinesis_incoming_bytes_total with a stream="NAME" label
  and assigns the growth between two scrapes to the period of the later one (local clock).
* auto (default): metrics when the endpoint serves those series, records otherwise.

It speaks SigV4 through boto3 to any Kinesis endpoint (AWS included): credentials and region
come from the usual boto3 sources, --endpoint-url and --region override.
"""

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.request

RECORDS_PER_SHARD = 1000  # records/s a shard accepts
BYTES_PER_SHARD = 1 << 20  # bytes/s a shard accepts
DAY_S = 86400.0
MAX_READS_PER_SHARD = 50  # GetRecords calls per shard and poll (bounded catch-up)
MAX_PERIODS_KEPT = 1000  # periods of counts kept per stream


def log(event, **fields):
    fields = dict(time=round(time.time(), 3), event=event, **fields)
    print(json.dumps(fields, sort_keys=False), flush=True)


class RecordSampler:
    """Counts a stream's records per period by reading every shard."""

    def __init__(self, client, stream, period, grace):
        self.client = client
        self.stream = stream
        self.period = period
        self.grace = grace
        self.latest = None  # period index of the newest arrival seen
        self.complete = None  # the last complete period, as of the start of the last poll
        self.iters = {}  # shard id -> iterator, or None once the shard is read to its end
        self.last_seq = {}  # shard id -> sequence number of the last record read
        self.began_at = {}  # shard id -> server time its LATEST iterator was taken
        self.started = False
        self.offset = 0.0  # server clock - local clock, the largest seen
        self.counts = {}  # period index -> [records, bytes]

    def server_now(self):
        return time.time() + self.offset

    def _shards(self):
        shards, token = [], None
        for _ in range(100):
            kw = {"NextToken": token} if token else {"StreamName": self.stream}
            page = self.client.list_shards(**kw)
            shards += page.get("Shards", [])
            token = page.get("NextToken")
            if not token:
                break
        return shards

    def complete_upto(self):
        return self.complete

    def _iterator(self, sid, kind, **kw):
        return self.client.get_shard_iterator(StreamName=self.stream, ShardId=sid, ShardIteratorType=kind, **kw)[
            "ShardIterator"
        ]

    def _renew(self, sid):
        """A fresh iterator where an expired one stood: after the last record read, or from where
        reading began."""
        if self.last_seq.get(sid):
            return self._iterator(sid, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self.last_seq[sid])
        if sid in self.began_at:
            return self._iterator(sid, "AT_TIMESTAMP", Timestamp=self.began_at[sid])
        return self._iterator(sid, "TRIM_HORIZON")

    def poll(self):
        by_clock = int((self.server_now() - self.grace) // self.period) - 1
        self.complete = by_clock if self.latest is None else max(by_clock, self.latest - 1)
        for shard in self._shards():
            sid = shard["ShardId"]
            if sid in self.iters:
                continue
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            if not self.started and closed:
                self.iters[sid] = None  # closed before we started: nothing new will arrive
                continue
            if self.started:  # a child of a reshard: all of it is new
                self.iters[sid] = self._iterator(sid, "TRIM_HORIZON")
            else:
                self.began_at[sid] = self.server_now()
                self.iters[sid] = self._iterator(sid, "LATEST")
        self.started = True
        for sid, it in list(self.iters.items()):
            for _ in range(MAX_READS_PER_SHARD):
                if it is None:
                    break
                try:
                    out = self.client.get_records(ShardIterator=it, Limit=10000)
                except self.client.exceptions.ExpiredIteratorException:
                    it = self._renew(sid)
                    continue
                received = time.time()
                for rec in out.get("Records", []):
                    arrived = rec["ApproximateArrivalTimestamp"].timestamp()
                    self.offset = max(self.offset, arrived - received)
                    k = int(arrived // self.period)
                    self.latest = k if self.latest is None else max(self.latest, k)
                    slot = self.counts.setdefault(k, [0, 0])
                    slot[0] += 1
                    slot[1] += len(rec["Data"]) + len(rec["PartitionKey"].encode())
                    self.last_seq[sid] = rec["SequenceNumber"]
                it = out.get("NextShardIterator")
                if not out.get("Records") or out.get("MillisBehindLatest", 0) == 0:
                    break
            self.iters[sid] = it
        for k in sorted(self.counts)[:-MAX_PERIODS_KEPT]:
            del self.counts[k]


class MetricsSampler:
    """Counts a stream's records per period from Prometheus counters."""

    def __init__(self, url, stream, period):
        self.url = url
        self.stream = stream
        self.period = period
        self.last = None  # (records_total, bytes_total)
        self.counts = {}

    def server_now(self):
        return time.time()

    def complete_upto(self):
        return int(time.time() // self.period) - 1

    def poll(self):
        totals = scrape(self.url, self.stream)
        if totals is None:
            raise RuntimeError(f"{self.url} serves no kinesis_incoming_* series for {self.stream}")
        if self.last is not None:
            slot = self.counts.setdefault(int(time.time() // self.period), [0, 0])
            slot[0] += max(0, totals[0] - self.last[0])
            slot[1] += max(0, totals[1] - self.last[1])
        self.last = totals
        for k in sorted(self.counts)[:-MAX_PERIODS_KEPT]:
            del self.counts[k]


SERIES = re.compile(r'^(kinesis_incoming_(records|bytes)_total)\{([^}]*)\}\s+([0-9.eE+]+)')


def scrape(url, stream):
    """(records_total, bytes_total) of the stream, or None without such series."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read(16 << 20).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    found = {}
    for line in text.splitlines():
        m = SERIES.match(line)
        if m and f'stream="{stream}"' in m.group(3):
            found[m.group(2)] = found.get(m.group(2), 0.0) + float(m.group(4))
    if "records" not in found or "bytes" not in found:
        return None
    return found["records"], found["bytes"]


class Scaler:
    def __init__(self, client, stream, sampler, args):
        self.client = client
        self.stream = stream
        self.sampler = sampler
        self.args = args
        self.scalings = []  # server-clock times of this stream's scalings
        self.watch_from = None  # first period index that counts for the next decision
        self.decided_upto = None  # last complete period a decision was logged for

    def step(self):
        a = self.args
        self.sampler.poll()
        now = self.sampler.server_now()
        if self.watch_from is None:
            self.watch_from = int(now // a.period) + 1  # the first period seen whole
        last_complete = self.sampler.complete_upto()
        if self.decided_upto is not None and last_complete <= self.decided_upto:
            return
        first = last_complete - a.periods + 1
        if first < self.watch_from:
            return
        self.decided_upto = last_complete
        summary = self.client.describe_stream_summary(StreamName=self.stream)["StreamDescriptionSummary"]
        status = summary["StreamStatus"]
        shards = summary["OpenShardCount"]
        cap_rec = shards * RECORDS_PER_SHARD
        cap_bytes = shards * BYTES_PER_SHARD
        periods = []
        for k in range(first, last_complete + 1):
            recs, nbytes = self.sampler.counts.get(k, [0, 0])
            periods.append(
                {
                    "start": k * a.period,
                    "records_per_s": round(recs / a.period, 1),
                    "bytes_per_s": round(nbytes / a.period, 1),
                    "records_util": round(recs / a.period / cap_rec, 3),
                    "bytes_util": round(nbytes / a.period / cap_bytes, 3),
                }
            )
        high = all(p["records_util"] >= a.high or p["bytes_util"] >= a.high for p in periods)
        low = all(p["records_util"] < a.low and p["bytes_util"] < a.low for p in periods)
        recent = [t for t in self.scalings if t > now - DAY_S]
        self.scalings = recent
        figures = dict(
            stream=self.stream,
            status=status,
            open_shards=shards,
            capacity={"records_per_s": cap_rec, "bytes_per_s": cap_bytes},
            thresholds={"high": a.high, "low": a.low},
            periods=periods,
            scalings_last_24h=len(recent),
            dry_run=a.dry_run,
        )
        if high:
            target, action = min(shards * 2, a.max_shards), "scale-out"
        elif low:
            target, action = max(math.ceil(shards / 2), a.min_shards), "scale-in"
        else:
            log("decision", action="hold", reason="between thresholds", **figures)
            return
        if target == shards:
            bound = "max-shards" if action == "scale-out" else "min-shards"
            log("decision", action="hold", reason=f"{action} wanted, already at {bound}", **figures)
            return
        if status != "ACTIVE":
            log("decision", action="hold", reason=f"{action} wanted, stream is {status}", **figures)
            self.decided_upto = last_complete - 1  # look again once it is ACTIVE
            return
        if len(recent) >= a.scalings_per_day:
            reason = f"{action} wanted, {len(recent)} scalings in the last 24 h (limit {a.scalings_per_day})"
            log("decision", action="hold", reason=reason, **figures)
            return
        if a.dry_run:
            log("decision", action=action, target_shards=target, reason="dry run: not called", **figures)
        else:
            try:
                self.client.update_shard_count(
                    StreamName=self.stream, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
                )
            except self.client.exceptions.LimitExceededException as e:
                log("decision", action="hold", reason=f"{action} refused by the server: {e}", **figures)
                return
            except self.client.exceptions.ResourceInUseException as e:
                log("decision", action="hold", reason=f"{action} refused, stream busy: {e}", **figures)
                self.decided_upto = last_complete - 1
                return
            self.scalings.append(now)
            log("decision", action=action, target_shards=target, reason="UpdateShardCount called", **figures)
        # a full window of the new layout before the next decision
        self.watch_from = last_complete + 2


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint-url", help="Kinesis endpoint (default: boto3's, i.e. AWS)")
    p.add_argument("--region", help="region (default: boto3's)")
    p.add_argument("--stream", action="append", help="stream to watch (repeatable; default: all)")
    p.add_argument("--period", type=float, default=60.0, help="seconds per datapoint (default 60)")
    p.add_argument("--periods", type=int, default=3, help="datapoints in a row to act on (default 3)")
    p.add_argument("--high", type=float, default=0.8, help="scale out at this share of capacity (0.8)")
    p.add_argument("--low", type=float, default=0.3, help="scale in below this share (0.3)")
    p.add_argument("--max-shards", type=int, default=64, help="never above (default 64)")
    p.add_argument("--min-shards", type=int, default=1, help="never below (default 1)")
    p.add_argument("--scalings-per-day", type=int, default=10, help="per stream, rolling 24 h (10)")
    p.add_argument("--interval", type=float, help="seconds between polls (default period / 4)")
    p.add_argument("--grace", type=float, help="records source: seconds after a period's end before it "
                   "counts as complete without a later record (default: one period)")
    p.add_argument("--source", choices=("auto", "records", "metrics"), default="auto")
    p.add_argument("--metrics-url", help="Prometheus endpoint (default ENDPOINT/metrics)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run on)")
    p.add_argument("--dry-run", action="store_true", help="log decisions, call nothing")
    a = p.parse_args(argv)
    if a.period <= 0 or a.periods < 1 or not 0 < a.low < a.high <= 1:
        p.error("need period > 0, periods >= 1 and 0 < low < high <= 1")
    if a.low * 2 >= a.high:
        p.error("--low must be under half of --high, or halving would scale straight back out")
    if a.min_shards < 1 or a.max_shards < a.min_shards or a.scalings_per_day < 0:
        p.error("need 1 <= min-shards <= max-shards and scalings-per-day >= 0")
    if a.interval is None:
        a.interval = a.period / 4
    if a.grace is None:
        a.grace = a.period
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    import boto3  # after argument checks, so --help works without it

    client = boto3.client("kinesis", endpoint_url=a.endpoint_url, region_name=a.region)
    streams = a.stream
    if not streams:
        streams, kw = [], {}
        while True:
            page = client.list_streams(**kw)
            streams += page["StreamNames"]
            if not page.get("HasMoreStreams") or not page["StreamNames"]:
                break
            kw = {"ExclusiveStartStreamName": page["StreamNames"][-1]}
    metrics_url = a.metrics_url or ((a.endpoint_url or "").rstrip("/") + "/metrics" if a.endpoint_url else None)
    scalers = []
    for s in streams:
        use_metrics = a.source == "metrics" or (
            a.source == "auto" and metrics_url is not None and scrape(metrics_url, s) is not None
        )
        if use_metrics and metrics_url is None:
            sys.exit("autoscale: --source metrics needs --metrics-url or --endpoint-url")
        sampler = MetricsSampler(metrics_url, s, a.period) if use_metrics else RecordSampler(client, s, a.period, a.grace)
        scalers.append(Scaler(client, s, sampler, a))
        log("watch", stream=s, source="metrics" if use_metrics else "records", period=a.period, periods=a.periods)
    deadline = None if a.duration is None else time.monotonic() + a.duration
    while deadline is None or time.monotonic() < deadline:
        for sc in scalers:
            try:
                sc.step()
            except Exception as e:  # one failed poll is logged; the next one tries again
                log("error", stream=sc.stream, error=f"{type(e).__name__}: {e}")
        time.sleep(a.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
