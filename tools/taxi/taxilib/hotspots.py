"""taxi-hotspots: hot spots and airport trip durations over tumbling one-minute windows.

Model. The consumer reads every shard of the trip stream by polling GetRecords, parents
before children (a child starts once each parent is read to its end; ChildShards and
ListShards tell the lineage). KPL aggregated records are unpacked. Each trip lands in the
window [floor(pickup/60)*60, +60) of its own pickup time (event time), under its pickup cell
(geohash, --precision 6 or 7): pickups per cell, and for trips ending at JFK or LaGuardia
the count and the sum of their durations.

Closing a window. Each shard keeps the latest pickup time it delivered; the watermark is the
smallest of those over the shards that still have records to give (a shard that answered
nothing while caught up is idle and does not hold it back; when every shard is idle it is
the latest pickup seen anywhere). A window is emitted once the watermark is --lateness
seconds past its end; a trip for a window already emitted is counted as late and dropped.
taxi-replay keeps each shard within 30 s of pickup order, inside the default lateness of
60 s. When every shard has been idle for --idle-flush seconds, all open windows are emitted.

Exactly once. The checkpoint file holds, in one JSON document written to a temporary file,
synced and renamed over the old one: each shard's last processed sequence number (and
whether it is finished), the open windows' state (with the trip ids already counted, so a
trip that a producer wrote twice counts once), the end of the last emitted window, and the
emitted windows whose output record may not have been written yet ("pending"). A window's
emission is: checkpoint with it pending -> write it to --out-stream -> checkpoint without it.
A restart resumes each shard after its sequence number with the state that matched it, and
first settles the pending windows: it reads the output stream from just before the moment
the write was attempted and writes only the parts it does not find there (each output
record names this consumer's id, the window and the part). So a window is never lost,
never counted twice, and appears once in the output stream."""

import argparse
import datetime
import json
import os
import sys
import time
import uuid

from botocore.exceptions import BotoCoreError, ClientError

from . import geohash, kinesis, kpl, trips

WINDOW_S = 60
CELLS_PER_RECORD = 1500
CHECKPOINT_EVERY_S = 1.0


def parse_args(argv):
    p = argparse.ArgumentParser(prog="taxi-hotspots", description="Hot spots of taxi pickups per minute.")
    p.add_argument("--endpoint", help="Kinesis endpoint (default $KINESIS_ENDPOINT or http://127.0.0.1:4567)")
    p.add_argument("--region", help="region (default $AWS_REGION or us-east-1)")
    p.add_argument("--stream", default="taxi-trips", help="trip stream to read (default taxi-trips)")
    p.add_argument("--out-stream", default="taxi-hotspots", help="stream for window results (default taxi-hotspots; '' for none)")
    p.add_argument("--checkpoint", default="taxi-hotspots.checkpoint.json", help="checkpoint file")
    p.add_argument("--precision", type=int, default=6, choices=(6, 7), help="geohash precision (default 6)")
    p.add_argument("--start", default="TRIM_HORIZON", choices=("TRIM_HORIZON", "LATEST"),
                   help="where a shard without a checkpoint starts (default TRIM_HORIZON)")
    p.add_argument("--lateness", type=int, default=60, help="seconds of event time a window waits (default 60)")
    p.add_argument("--idle-flush", type=float, default=10, help="emit every open window after N s idle (default 10)")
    p.add_argument("--exit-when-idle", action="store_true", help="exit after the idle flush")
    p.add_argument("--limit", type=int, default=10000, help="GetRecords Limit (default 10000)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between polls of a caught-up shard (default 1)")
    p.add_argument("--top", type=int, default=10, help="rows of the live table (default 10)")
    return p.parse_args(argv)


def window_name(start):
    return trips.format_time(start)


class Checkpoint:
    def __init__(self, path):
        self.path = path

    def load(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def save(self, state):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        d = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(d)
        finally:
            os.close(d)


def _fault(point):
    """Test hook: TAXI_HOTSPOTS_FAULT=<point>:<n> exits at the n-th pass through point."""
    spec = os.environ.get("TAXI_HOTSPOTS_FAULT", "")
    if not spec.startswith(point + ":"):
        return
    _fault.counts[point] = _fault.counts.get(point, 0) + 1
    if _fault.counts[point] == int(spec.split(":", 1)[1]):
        os._exit(75)


_fault.counts = {}


class Consumer:
    def __init__(self, a, out=sys.stdout):
        self.a = a
        self.out = out
        self.tty = out.isatty()
        self.k = kinesis.client(a.endpoint, a.region)
        self.cp = Checkpoint(a.checkpoint)
        st = self.cp.load()
        if st and (st.get("stream") != a.stream or st.get("precision") != a.precision):
            raise ValueError(f"{a.checkpoint} belongs to stream {st.get('stream')} at precision "
                             f"{st.get('precision')}; use another --checkpoint")
        self.state = st or {
            "version": 1,
            "consumer": str(uuid.uuid4()),
            "stream": a.stream,
            "precision": a.precision,
            "shards": {},
            "emitted_until": None,
            "windows": {},
            "late": 0,
            "skipped": 0,
            "emitted": 0,
            "pending": [],
        }
        self.fresh = st is None
        self.live = {}  # shard id -> {"it", "max", "idle", "next"}
        self.listing = {}
        self.last_list = 0.0
        self.last_save = 0.0
        self.dirty = False
        self.idle_since = None
        self.last_window = None  # (name, rows) for the live table
        self.ids = {w: set(v["ids"]) for w, v in self.state["windows"].items()}

    # ---- shards ----

    def refresh_shards(self, children=()):
        self.listing = {s["ShardId"]: s for s in kinesis.list_shards(self.k, self.a.stream)}
        for c in children:  # GetRecords named them; a listing may not show them yet
            if c["ShardId"] not in self.listing:
                parents = c.get("ParentShards") or []
                self.listing[c["ShardId"]] = {"ShardId": c["ShardId"], "SequenceNumberRange": {},
                                              "ParentShardId": parents[0] if parents else None,
                                              "AdjacentParentShardId": parents[1] if len(parents) > 1 else None}
        self.last_list = time.monotonic()
        shards = self.state["shards"]
        for sid, s in self.listing.items():
            if sid not in shards:
                closed = "EndingSequenceNumber" in s.get("SequenceNumberRange", {})
                # starting at LATEST, a closed shard has nothing new to give
                shards[sid] = {"seq": None, "max": None, "done": bool(closed and self.fresh and self.a.start == "LATEST")}
                self.dirty = True
        for sid, sh in shards.items():
            if sh["done"] or sid in self.live:
                continue
            s = self.listing.get(sid)
            if s is None:  # trimmed away: nothing left to read
                sh["done"] = True
                self.dirty = True
                continue
            parents = [s.get("ParentShardId"), s.get("AdjacentParentShardId")]
            if all(p is None or p not in self.listing or shards.get(p, {}).get("done") for p in parents):
                self.live[sid] = {"it": self._iterator(sid, sh), "max": sh["max"], "idle": False, "next": 0.0}
        self.fresh = False

    def _iterator(self, sid, sh):
        kw = {"StreamName": self.a.stream, "ShardId": sid}
        if sh["seq"]:
            kw.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=sh["seq"])
        elif self.a.start == "LATEST" and self.fresh:
            kw.update(ShardIteratorType="LATEST")
        else:
            kw.update(ShardIteratorType="TRIM_HORIZON")
        return kinesis.call(self.k.get_shard_iterator, **kw)["ShardIterator"]

    def poll(self, sid):
        lv = self.live[sid]
        sh = self.state["shards"][sid]
        try:
            r = self.k.get_records(ShardIterator=lv["it"], Limit=self.a.limit)
        except ClientError as e:
            code = kinesis.error_code(e)
            if code == "ExpiredIteratorException":
                lv["it"] = self._iterator(sid, sh)
            elif not kinesis.retryable(e):
                raise
            lv["next"] = time.monotonic() + 0.5
            return
        except BotoCoreError:
            lv["next"] = time.monotonic() + 0.5
            return
        recs = r["Records"]
        for rec in recs:
            for _pk, data in kpl.deaggregate(rec["Data"], rec.get("PartitionKey")):
                self.count(data, lv)
            sh["seq"] = rec["SequenceNumber"]
        sh["max"] = lv["max"]
        if recs:
            self.dirty = True
        lv["idle"] = not recs and r.get("MillisBehindLatest", 0) == 0
        now = time.monotonic()
        lv["next"] = now + (self.a.poll if lv["idle"] else 0.25)  # 4 calls/s: room for others under the 5/s limit
        nxt = r.get("NextShardIterator")
        if nxt:
            lv["it"] = nxt
        else:  # closed and read to its end: its ChildShards may start
            sh["done"] = True
            del self.live[sid]
            self.dirty = True
            self.save()
            self.refresh_shards(children=r.get("ChildShards") or [])

    def count(self, data, lv):
        try:
            t = trips.decode(data)
        except (ValueError, UnicodeDecodeError):
            self.state["skipped"] += 1
            return
        start = t["pickup"] // WINDOW_S * WINDOW_S
        lv["max"] = t["pickup"] if lv["max"] is None else max(lv["max"], t["pickup"])
        eu = self.state["emitted_until"]
        if eu is not None and start < eu:
            self.state["late"] += 1
            return
        key = str(start)
        w = self.state["windows"].get(key)
        if w is None:
            w = self.state["windows"][key] = {"cells": {}, "ids": [], "trips": 0}
            self.ids[key] = set()
        tid = str(t.get("id"))
        if tid in self.ids[key]:
            return  # written twice by the producer: counted once
        self.ids[key].add(tid)
        w["ids"].append(tid)
        w["trips"] += 1
        c = trips.cell(t, self.a.precision, geohash.encode)
        v = w["cells"].setdefault(c, [0, 0, 0, 0, 0])
        v[0] += 1
        ap = trips.airport(t)
        if ap:
            i = 1 if ap == "JFK" else 3
            v[i] += 1
            v[i + 1] += t["dropoff"] - t["pickup"]

    # ---- windows ----

    def watermark(self):
        if not self.live:
            return None
        busy = [lv for lv in self.live.values() if not lv["idle"]]
        if busy:
            if any(lv["max"] is None for lv in busy):
                return None
            return min(lv["max"] for lv in busy)
        seen = [sh["max"] for sh in self.state["shards"].values() if sh["max"] is not None]
        return max(seen) if seen else None

    def emit_ready(self, flush=False):
        wm = self.watermark()
        ready = sorted(int(s) for s in self.state["windows"]
                       if flush or (wm is not None and int(s) + WINDOW_S + self.a.lateness <= wm))
        if not ready:
            return
        for start in ready:
            w = self.state["windows"].pop(str(start))
            self.ids.pop(str(start), None)
            rows = self.results(w)
            parts = [rows[i:i + CELLS_PER_RECORD] for i in range(0, len(rows), CELLS_PER_RECORD)] or [[]]
            for i, cells in enumerate(parts):
                doc = {"consumer": self.state["consumer"], "window": window_name(start), "start": start,
                       "end": start + WINDOW_S, "precision": self.a.precision, "trips": w["trips"],
                       "part": i, "parts": len(parts), "cells": cells}
                self.state["pending"].append({"window": start, "part": i, "at": time.time(),
                                              "data": json.dumps(doc, separators=(",", ":"))})
            self.state["emitted_until"] = max(self.state["emitted_until"] or 0, start + WINDOW_S)
            self.state["emitted"] += 1
            self.last_window = (window_name(start), w["trips"], rows)
            self.report(start, w["trips"], rows)
        self.save()
        _fault("before-put")
        self.write_pending(check=False)

    @staticmethod
    def results(w):
        rows = []
        for cell, (n, jn, js, ln, ls) in w["cells"].items():
            row = {"cell": cell, "pickups": n}
            if jn:
                row["toJFK"] = {"trips": jn, "avgSeconds": round(js / jn, 1)}
            if ln:
                row["toLGA"] = {"trips": ln, "avgSeconds": round(ls / ln, 1)}
            rows.append(row)
        rows.sort(key=lambda r: (-r["pickups"], r["cell"]))
        return rows

    def write_pending(self, check):
        """Write the pending output records; with check, skip those the output stream has."""
        pend = self.state["pending"]
        if not pend:
            return
        if self.a.out_stream:
            have = self.find_written(min(p["at"] for p in pend)) if check else set()
            for p in pend:
                if (p["window"], p["part"]) in have:
                    continue
                kinesis.call(self.k.put_record, StreamName=self.a.out_stream,
                             PartitionKey=window_name(p["window"]), Data=p["data"].encode())
                _fault("after-put")
        self.state["pending"] = []
        self.save()

    def find_written(self, since):
        """(window, part) of this consumer's records in the output stream since about `since`."""
        found = set()
        ts = datetime.datetime.fromtimestamp(since - 60, tz=datetime.timezone.utc)
        for s in kinesis.list_shards(self.k, self.a.out_stream):
            it = kinesis.call(self.k.get_shard_iterator, StreamName=self.a.out_stream, ShardId=s["ShardId"],
                              ShardIteratorType="AT_TIMESTAMP", Timestamp=ts)["ShardIterator"]
            for _ in range(100000):
                r = kinesis.call(self.k.get_records, ShardIterator=it, Limit=10000)
                for rec in r["Records"]:
                    try:
                        d = json.loads(rec["Data"])
                        if d.get("consumer") == self.state["consumer"]:
                            found.add((d["start"], d["part"]))
                    except (ValueError, KeyError, TypeError):
                        pass
                it = r.get("NextShardIterator")
                if not it or (not r["Records"] and r.get("MillisBehindLatest", 0) == 0):
                    break
        return found

    def save(self):
        self.cp.save(self.state)
        self.last_save = time.monotonic()
        self.dirty = False

    # ---- output ----

    def report(self, start, total, rows):
        if self.tty:
            return
        top = ",".join(f"{r['cell']}:{r['pickups']}" for r in rows[:5])
        print(f"window {window_name(start)} trips={total} cells={len(rows)} top={top}", file=self.out, flush=True)

    def table(self):
        if not self.tty or not self.last_window:
            return
        name, total, rows = self.last_window
        behind = sum(1 for lv in self.live.values() if not lv["idle"])
        lines = [f"\x1b[H\x1b[2Jtaxi-hotspots  stream {self.a.stream}  shards reading {len(self.live)} "
                 f"(busy {behind})  windows {self.state['emitted']}  late {self.state['late']}",
                 f"window {name}  {total} pickups in {len(rows)} cells", "",
                 f"{'#':>2}  {'cell':<8} {'lat':>8} {'lon':>9} {'pickups':>7}  {'to JFK':>14}  {'to LGA':>14}"]
        for i, r in enumerate(rows[:self.a.top], 1):
            lat, lon = geohash.decode(r["cell"]) if not r["cell"].startswith(("zone", "inv")) else (0, 0)

            def dur(x):
                return f"{x['avgSeconds'] / 60:5.1f} min ({x['trips']})" if x else "-"
            lines.append(f"{i:>2}  {r['cell']:<8} {lat:8.4f} {lon:9.4f} {r['pickups']:>7}  "
                         f"{dur(r.get('toJFK')):>14}  {dur(r.get('toLGA')):>14}")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    # ---- the loop ----

    def run(self):
        if self.a.out_stream:
            kinesis.ensure_stream(self.k, self.a.out_stream, 1)
        self.write_pending(check=True)
        self.refresh_shards()
        if self.tty:
            print(f"taxi-hotspots: reading {len(self.live)} shards of {self.a.stream}; a window appears "
                  f"{self.a.lateness} s of event time after it ends", file=self.out, flush=True)
        while True:
            now = time.monotonic()
            for sid in list(self.live):
                if sid in self.live and self.live[sid]["next"] <= now:
                    self.poll(sid)
            if now - self.last_list > 10:
                self.refresh_shards()
            emitted = self.state["emitted"]
            self.emit_ready()
            all_idle = all(lv["idle"] for lv in self.live.values())
            if all_idle:
                self.idle_since = self.idle_since or now
                if now - self.idle_since >= self.a.idle_flush:
                    if self.state["windows"]:
                        self.emit_ready(flush=True)
                    if self.a.exit_when_idle:
                        self.save()
                        return 0
            else:
                self.idle_since = None
            if self.state["emitted"] != emitted:
                self.table()
            if self.dirty and time.monotonic() - self.last_save >= CHECKPOINT_EVERY_S:
                self.save()
            nxt = min((lv["next"] for lv in self.live.values()), default=now + self.a.poll)
            time.sleep(max(0.0, min(nxt - time.monotonic(), self.a.poll)))


def main():
    a = parse_args(sys.argv[1:])
    try:
        sys.exit(Consumer(a).run())
    except KeyboardInterrupt:
        sys.exit(0)
    except (ClientError, BotoCoreError, OSError, ValueError) as e:
        print(f"taxi-hotspots: {e}", file=sys.stderr)
        sys.exit(1)
