"""The access log (--access-log FILE|-: one JSON line per request) and --log-level.

Each test starts its own kinesd. Lines are written by a thread of the server's own every 200 ms,
so the tests wait for them (without asserting how long they took).
"""

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime

import pytest

import helpers
from helpers import ACCOUNT

pytestmark = pytest.mark.own_server

FIELDS = {"time", "request_id", "account", "operation", "stream", "status", "error_type", "bytes_in",
          "bytes_out", "latency_ms"}


def wait_for_lines(read, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = read()
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_request_is_one_json_line_with_its_fields(kinesd_factory, tmp_path):
    log = tmp_path / "access.jsonl"
    server = kinesd_factory(flags={"--access-log": str(log), "--create-stream-ms": "0"})
    api = helpers.RawApi(server.endpoint)
    calls = [
        ("CreateStream", {"StreamName": "logged", "ShardCount": 1}),
        ("PutRecord", {"StreamName": "logged", "PartitionKey": "k", "Data": helpers.b64(b"hello")}),
        ("DescribeStreamSummary", {"StreamName": "missing"}),
        ("PutRecord", {"StreamName": "logged", "PartitionKey": "", "Data": ""}),
    ]
    answers = []
    for op, payload in calls:
        body = json.dumps(payload).encode()
        answers.append((op, payload, body, api.call(op, body)))
    lines = wait_for_lines(lambda: log.read_text().splitlines() if log.exists() else [], len(calls))
    assert len(lines) == len(calls)
    entries = [json.loads(line) for line in lines]  # each line is one JSON object
    for entry, (op, payload, body, resp) in zip(entries, answers):
        assert set(entry) == FIELDS
        assert entry["request_id"] == resp.headers["x-amzn-requestid"]
        assert entry["account"] == ACCOUNT
        assert entry["operation"] == op
        assert entry["stream"] == payload["StreamName"]
        assert entry["status"] == resp.status
        assert entry["error_type"] == (resp.error_type if resp.status != 200 else None)
        assert entry["bytes_in"] == len(body)
        assert entry["bytes_out"] == len(resp.raw)
        assert isinstance(entry["latency_ms"], float) and entry["latency_ms"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
        datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert [e["error_type"] for e in entries] == [None, None, "ResourceNotFoundException", "ValidationException"]


def test_requests_that_name_no_operation_are_logged_too(kinesd_factory, tmp_path):
    log = tmp_path / "access.jsonl"
    server = kinesd_factory(flags={"--access-log": str(log)})
    resp = helpers.RawApi(server.endpoint).call("NoSuchThing", {})
    assert resp.status == 400
    lines = wait_for_lines(lambda: log.read_text().splitlines() if log.exists() else [], 1)
    entry = json.loads(lines[0])
    assert entry["operation"] is None and entry["stream"] is None
    assert entry["error_type"] == "UnknownOperationException"
    assert entry["request_id"] == resp.headers["x-amzn-requestid"]


def test_a_dash_writes_the_access_log_to_standard_output(kinesd_factory):
    server = kinesd_factory(flags={"--access-log": "-"})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.list_streams()
    entries = wait_for_lines(lambda: json_lines(server.log()), 1)
    assert [e["operation"] for e in entries] == ["ListStreams"]
    assert entries[0]["status"] == 200


def test_a_stream_name_with_quotes_cannot_break_a_line(kinesd_factory, tmp_path):
    log = tmp_path / "access.jsonl"
    server = kinesd_factory(flags={"--access-log": str(log)})
    name = 'bad"name\\\n\u00e9'
    resp = helpers.RawApi(server.endpoint).call("DescribeStreamSummary", {"StreamName": name})
    assert resp.status == 400
    lines = wait_for_lines(lambda: log.read_text().splitlines() if log.exists() else [], 1)
    assert len(lines) == 1
    assert json.loads(lines[0])["error_type"] == "ValidationException"


def test_an_access_log_that_cannot_be_opened_stops_the_start(tmp_path):
    from conftest import kinesd_binary

    out = subprocess.run(
        [str(kinesd_binary()), "--ephemeral", "--port", "0", "--access-log", str(tmp_path / "no" / "such" / "f")],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode != 0
    assert "--access-log" in out.stderr


# ---- --log-level ----

def start_at(kinesd_factory, level, **flags):
    return kinesd_factory(flags=dict({"--log-level": level}, **flags))


def test_info_messages_show_at_info_and_debug_and_not_at_warn_or_error(kinesd_factory):
    shown = {}
    for level in ("error", "warn", "info", "debug"):
        server = start_at(kinesd_factory, level)
        shown[level] = server.log()
    for level in ("info", "debug"):
        assert "listening on 127.0.0.1" in shown[level]
    for level in ("error", "warn"):
        assert "listening on" not in shown[level]
    assert "event loops" in shown["debug"]
    assert "event loops" not in shown["info"]


def test_the_api_layer_honours_the_level_of_a_reload_message(kinesd_factory, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(f"[u]\naws_access_key_id = {helpers.ACCESS_KEY}\naws_secret_access_key = {helpers.SECRET_KEY}\n")
    logs = {}
    for level in ("warn", "info"):
        server = start_at(kinesd_factory, level, **{"--auth": str(creds)})
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while level == "info" and "reloaded" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        helpers.make_client(server.endpoint).list_streams()  # the SIGHUP was taken by now
        logs[level] = server.log()
    assert f"reloaded {creds}" in logs["info"]
    assert "reloaded" not in logs["warn"]


def test_warnings_still_show_at_warn_and_errors_at_error(kinesd_factory, tmp_path):
    # a data directory in use by another process: an error from the storage layer
    first = kinesd_factory()
    from conftest import kinesd_binary

    out = subprocess.run(
        [str(kinesd_binary()), "--port", "0", "--data-dir", str(first.data_dir), "--log-level", "error"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode != 0
    assert "in use by another process" in out.stderr
    assert os.path.isdir(first.data_dir)


def test_the_storage_layer_honours_the_level_of_its_checkpoint_message(kinesd_factory):
    from test_metrics import scrape, wait_for

    logs = {}
    for level in ("info", "debug"):
        server = start_at(kinesd_factory, level)
        kinesis = helpers.make_client(server.endpoint)
        kinesis.create_stream(StreamName="big", ShardCount=1)
        helpers.wait_for_status(kinesis, "big")
        record = {"PartitionKey": "k", "Data": b"x" * 10000}
        for _ in range(9):  # 45 MB: past a 32 MiB log segment, so one is retired
            assert kinesis.put_records(StreamName="big", Records=[record] * 500)["FailedRecordCount"] == 0
        count = ("kinesd_checkpoint_duration_seconds_count", frozenset())
        m = wait_for(server.endpoint, lambda m: m[count] >= 1, timeout=30)
        assert m[count] >= 1
        logs[level] = server.log()
    assert "storage: checkpoint: log segment" in logs["debug"]
    assert "storage: checkpoint" not in logs["info"]


def test_sighup_reopens_the_access_log_after_a_rotation(kinesd_factory, tmp_path):
    log = tmp_path / "access.jsonl"
    rotated = tmp_path / "access.jsonl.1"
    server = kinesd_factory(flags={"--access-log": str(log)})
    kinesis = helpers.make_client(server.endpoint)
    kinesis.list_streams()
    assert len(wait_for_lines(lambda: log.read_text().splitlines() if log.exists() else [], 1)) == 1
    log.rename(rotated)
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:  # reopened at the writer's next turn
        time.sleep(0.05)
    kinesis.describe_limits()
    lines = wait_for_lines(lambda: log.read_text().splitlines() if log.exists() else [], 1)
    assert [json.loads(line)["operation"] for line in lines] == ["DescribeLimits"]
    assert [json.loads(line)["operation"] for line in rotated.read_text().splitlines()] == ["ListStreams"]
