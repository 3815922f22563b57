"""tools/autoscale against a real kinesd: it doubles a stream under load and halves it when the
load stops, and honours --dry-run, --max-shards, --scalings-per-day and an UPDATING stream.

The server runs with --test-clock, so the load is exact in the server's time: each step of the
producer moves the server's clock to just past its next whole second and puts that second's
records. The autoscaler counts records by their arrival timestamps in one-second periods
(--source records: kinesd's /metrics would be sampled on the local clock), so
1,800 records a step are 90 % of a 2-shard stream's 2,000 records/s, however fast this machine
is. (The server's clock is the real-time clock plus what the test advanced, so the test knows
it.) When the load stops, the producer still puts one record a step, which carries the server's
time forward to the autoscaler.
"""

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import helpers

pytestmark = pytest.mark.own_server

AUTOSCALE = Path(__file__).resolve().parents[2] / "tools" / "autoscale" / "autoscale.py"
FULL_LOAD = 1800  # records per server-second: 90 % of two shards' 2,000 records/s
STEP_DEADLINE_S = 120  # wall-clock bound on every wait below


class Autoscaler:
    """tools/autoscale as a subprocess; its JSON log lines are collected as they come."""

    def __init__(self, endpoint, stream, *extra):
        cmd = [sys.executable, str(AUTOSCALE), "--endpoint-url", endpoint, "--region", helpers.REGION,
               "--stream", stream, "--period", "1", "--periods", "3", "--interval", "0.05",
               "--grace", "60", "--duration", str(STEP_DEADLINE_S * 3), "--source", "records", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def events(self, kind="decision"):
        out = []
        for line in list(self.lines):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == kind:
                out.append(ev)
        return out

    def watching(self):
        return bool(self.events("watch"))

    def log(self):
        return "\n".join(self.lines[-40:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


@pytest.fixture
def autoscaler():
    started = []

    def start(endpoint, stream, *extra):
        a = Autoscaler(endpoint, stream, *extra)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


class ServerClock:
    """The server's clock: this machine's real-time clock plus what the test advanced."""

    def __init__(self, server):
        self.server = server
        self.offset_ms = 0

    def now(self):
        return time.time() + self.offset_ms / 1000

    def advance(self, ms):
        resp = helpers.http_request(self.server.endpoint, "POST", f"/_test/advance-clock?ms={int(ms)}")
        assert resp.status == 200, resp
        self.offset_ms += int(ms)

    def to_next_second(self):
        """To 20 ms past the server's next whole second."""
        now = self.now()
        self.advance(math.ceil((math.floor(now) + 1.02 - now) * 1000))


def clock_server(kinesd_factory, **flags):
    # instant lifecycle transitions: the load is measured in server-seconds of the test clock,
    # and an UPDATING period in real time would shift the periods the decisions report
    instant = {"--create-stream-ms": "0", "--update-stream-ms": "0", "--delete-stream-ms": "0"}
    server = kinesd_factory(flags={"--test-clock": None, **instant, **flags})
    server.clock = ServerClock(server)
    return server, helpers.make_client(server.endpoint)


def open_count(kinesis, stream):
    return kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["OpenShardCount"]


def new_stream(kinesis, name, shards=2):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    helpers.wait_for_status(kinesis, name)
    return name


def put_step(server, kinesis, stream, records, step):
    """records records (100 bytes each) in the server's next whole second."""
    server.clock.to_next_second()
    left = records
    while left > 0:
        n = min(left, 500)
        batch = [{"PartitionKey": f"k-{step}-{left}-{i}", "Data": bytes(100)} for i in range(n)]
        out = kinesis.put_records(StreamName=stream, Records=batch)
        assert out.get("FailedRecordCount", 0) == 0, out
        left -= n


def run_until(server, kinesis, stream, records, done, scaler, what):
    """Put records a step until done() holds; fails with the autoscaler's log after the bound."""
    deadline = time.monotonic() + STEP_DEADLINE_S
    step = 0
    while not done():
        assert time.monotonic() < deadline, f"{what} did not happen; autoscaler log:\n{scaler.log()}"
        assert scaler.proc.poll() is None, f"autoscaler exited:\n{scaler.log()}"
        put_step(server, kinesis, stream, records, step)
        step += 1
        time.sleep(0.05)  # let the autoscaler poll between server-seconds


def wait_watching(scaler):
    deadline = time.monotonic() + STEP_DEADLINE_S
    while not scaler.watching():
        assert time.monotonic() < deadline and scaler.proc.poll() is None, scaler.log()
        time.sleep(0.05)
    time.sleep(0.3)  # its first poll takes the shards' LATEST iterators


def decisions(scaler, action):
    return [d for d in scaler.events() if d["action"] == action]


def logged(scaler, action):
    """The decisions of that action, waiting for the first: the autoscaler logs a scaling after
    UpdateShardCount has answered, so the line can follow the change it describes."""
    deadline = time.monotonic() + STEP_DEADLINE_S
    while not decisions(scaler, action):
        assert time.monotonic() < deadline, f"no {action} logged:\n{scaler.log()}"
        time.sleep(0.02)
    return decisions(scaler, action)


def test_scales_out_at_ninety_percent_and_back_in_when_the_load_stops(kinesd_factory, autoscaler):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "auto")
    scaler = autoscaler(server.endpoint, stream, "--max-shards", "8")
    wait_watching(scaler)

    run_until(server, kinesis, stream, FULL_LOAD, lambda: open_count(kinesis, stream) == 4, scaler, "scale-out to 4")
    out = logged(scaler, "scale-out")
    assert len(out) == 1, scaler.log()
    assert out[0]["open_shards"] == 2 and out[0]["target_shards"] == 4
    assert out[0]["capacity"] == {"records_per_s": 2000, "bytes_per_s": 2 * helpers.MIB}
    assert [p["records_per_s"] for p in out[0]["periods"]] == [FULL_LOAD] * 3, out[0]
    assert all(p["records_util"] == 0.9 for p in out[0]["periods"]), out[0]

    # the same load on four shards is 45 %: between the thresholds, it stays
    run_until(server, kinesis, stream, FULL_LOAD,
              lambda: any(d["open_shards"] == 4 for d in decisions(scaler, "hold")), scaler, "a hold at 4 shards")
    hold = [d for d in decisions(scaler, "hold") if d["open_shards"] == 4][0]
    assert hold["reason"] == "between thresholds"
    assert all(p["records_util"] == 0.45 for p in hold["periods"]), hold
    assert open_count(kinesis, stream) == 4

    run_until(server, kinesis, stream, 1, lambda: open_count(kinesis, stream) == 2, scaler, "scale-in to 2")
    back = logged(scaler, "scale-in")
    assert len(back) == 1 and back[0]["open_shards"] == 4 and back[0]["target_shards"] == 2, scaler.log()
    assert all(p["records_util"] < 0.3 for p in back[0]["periods"])
    assert len(decisions(scaler, "scale-out")) == 1


def test_dry_run_logs_the_decision_and_changes_nothing(kinesd_factory, autoscaler):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "dry")
    before = helpers.all_shards(kinesis, stream)
    scaler = autoscaler(server.endpoint, stream, "--dry-run")
    wait_watching(scaler)
    run_until(server, kinesis, stream, FULL_LOAD, lambda: decisions(scaler, "scale-out"), scaler, "a dry-run decision")
    d = decisions(scaler, "scale-out")[0]
    assert d["dry_run"] is True and d["target_shards"] == 4 and d["reason"] == "dry run: not called"
    assert helpers.all_shards(kinesis, stream) == before
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


def test_max_shards_caps_the_target(kinesd_factory, autoscaler):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "cap")
    scaler = autoscaler(server.endpoint, stream, "--max-shards", "3")
    wait_watching(scaler)
    run_until(server, kinesis, stream, FULL_LOAD, lambda: open_count(kinesis, stream) == 3, scaler, "scale-out to 3")
    assert logged(scaler, "scale-out")[0]["target_shards"] == 3
    # 1,800 records/s on 3 shards is 60 %: held, and never above the cap
    run_until(server, kinesis, stream, FULL_LOAD,
              lambda: any(d["open_shards"] == 3 for d in decisions(scaler, "hold")), scaler, "a hold at 3 shards")
    assert open_count(kinesis, stream) == 3

    server2, kinesis2 = clock_server(kinesd_factory)
    stream2 = new_stream(kinesis2, "atcap")
    scaler2 = autoscaler(server2.endpoint, stream2, "--max-shards", "2")
    wait_watching(scaler2)
    at_cap = "scale-out wanted, already at max-shards"
    run_until(server2, kinesis2, stream2, FULL_LOAD, lambda: any(d["reason"] == at_cap for d in decisions(scaler2, "hold")),
              scaler2, "a hold at the cap")
    assert open_count(kinesis2, stream2) == 2 and not decisions(scaler2, "scale-out")


def test_scalings_per_day_holds_until_the_rolling_day_has_passed(kinesd_factory, autoscaler):
    server, kinesis = clock_server(kinesd_factory)
    stream = new_stream(kinesis, "daily")
    scaler = autoscaler(server.endpoint, stream, "--scalings-per-day", "1")
    wait_watching(scaler)
    run_until(server, kinesis, stream, FULL_LOAD, lambda: open_count(kinesis, stream) == 4, scaler, "scale-out to 4")

    limited = "scale-in wanted, 1 scalings in the last 24 h (limit 1)"
    run_until(server, kinesis, stream, 1, lambda: any(d["reason"] == limited for d in decisions(scaler, "hold")),
              scaler, "a hold for the daily limit")
    assert open_count(kinesis, stream) == 4

    server.clock.advance(24 * 3600 * 1000)
    run_until(server, kinesis, stream, 1, lambda: open_count(kinesis, stream) == 2, scaler, "scale-in after a day")
    assert logged(scaler, "scale-in")[0]["scalings_last_24h"] == 0


def test_an_updating_stream_is_left_alone(kinesd_factory, autoscaler):
    # an UpdateShardCount of someone else's that takes an hour of the server's time
    server, kinesis = clock_server(kinesd_factory, **{"--update-stream-ms": str(3600 * 1000)})
    stream = new_stream(kinesis, "busy")
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    status = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
    assert status == "UPDATING"
    scaler = autoscaler(server.endpoint, stream)
    wait_watching(scaler)
    wanted = "stream is UPDATING"
    # 2,700 records/s: 90 % of three shards, over capacity on two, whichever the stream reports
    run_until(server, kinesis, stream, 2700,
              lambda: any(wanted in d["reason"] for d in decisions(scaler, "hold")), scaler, "a hold while UPDATING")
    assert not decisions(scaler, "scale-out")
