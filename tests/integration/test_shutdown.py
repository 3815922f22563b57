"""Shutdown: SIGTERM drains (no new requests, in-flight ones finish and commit), HTTP/2 gets
GOAWAY, a request that arrives while draining gets a retryable 503 with Connection: close, the
process exits 0; a second signal exits at once.
"""

import http.client
import json
import signal
import socket
import struct
import threading
import time

import pytest

import helpers
from conftest import KinesdServer

pytestmark = pytest.mark.own_server

TARGET = f"{helpers.TARGET_PREFIX}.PutRecord"
GONE = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, BrokenPipeError, OSError)


def writer(endpoint, stream, tag, acked, stopping, problems):
    """PutRecord in a loop on one keep-alive connection until the server goes away."""
    host, port = endpoint.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    i = 0
    while True:
        data = f"{tag}-{i}".encode()
        body = json.dumps({"StreamName": stream, "PartitionKey": f"{tag}-{i}",
                           "Data": helpers.b64(data)}).encode()
        headers = helpers.signed_headers(endpoint, TARGET, body)
        try:
            conn.request("POST", "/", body, headers)
            resp = conn.getresponse()
            raw = resp.read()
        except socket.timeout:
            problems.append(f"{tag}: no answer and no close within 20 s")
            return
        except GONE:
            if not stopping.is_set():
                problems.append(f"{tag}: connection lost before SIGTERM")
            return
        if resp.status == 200:
            acked[data] = json.loads(raw)["SequenceNumber"]
        elif resp.status == 503:
            if resp.getheader("Connection", "").lower() != "close":
                problems.append(f"{tag}: 503 without Connection: close")
            if not stopping.is_set():
                problems.append(f"{tag}: 503 before SIGTERM: {raw[:200]!r}")
            return
        else:
            problems.append(f"{tag}: {resp.status} {raw[:200]!r}")
            return
        i += 1


def test_sigterm_under_48_keep_alive_put_record_clients_ten_times_in_a_row_loses_nothing(tmp_path):
    data_dir = tmp_path / "data"
    server = KinesdServer(data_dir).start()
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="drain", ShardCount=2)
    helpers.wait_for_status(kinesis, "drain")
    acked, problems = {}, []
    try:
        for rnd in range(10):
            if rnd:
                server.start()
            stopping = threading.Event()
            threads = [threading.Thread(target=writer, args=(server.endpoint, "drain", f"r{rnd}w{t}", acked,
                                                             stopping, problems)) for t in range(48)]
            for t in threads:
                t.start()
            time.sleep(0.4)
            stopping.set()
            code = server.stop(timeout=30)
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads), "a writer hangs after shutdown"
            assert code == 0, f"round {rnd}: kinesd exited with {code}:\n{server.log()}"
        assert not problems, problems[:5]
        server.start()
        kinesis = helpers.make_client(server.endpoint)
        got = {}
        for shard in helpers.all_shards(kinesis, "drain"):
            for r in helpers.read_all(kinesis, "drain", shard["ShardId"]):
                got[r["Data"]] = r["SequenceNumber"]
        missing = [d for d, seq in acked.items() if got.get(d) != seq]
        assert len(acked) > 480, f"only {len(acked)} writes were acknowledged"
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged records are missing, e.g. {missing[:3]}"
    finally:
        assert server.stop() == 0


def frames(sock):
    """Read HTTP/2 frames until EOF: [(type, flags, stream, payload)]."""
    buf, out = b"", []
    sock.settimeout(20)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
    while len(buf) >= 9:
        n = int.from_bytes(buf[:3], "big")
        out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]))
        buf = buf[9 + n:]
    return out


def test_sigterm_sends_goaway_to_an_http2_connection_and_exits_0(kinesd_factory):
    server = kinesd_factory()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + b"\x04\x00\x00\x00\x00\x00")
    time.sleep(0.3)
    proc = server.proc
    proc.send_signal(signal.SIGTERM)
    got = frames(s)
    goaways = [f for f in got if f[0] == 7]
    assert goaways, got
    last_stream, error = struct.unpack(">II", goaways[0][3][:8])
    assert error == 0  # NO_ERROR
    assert proc.wait(timeout=20) == 0


def test_a_request_that_arrives_while_draining_gets_503_with_connection_close(kinesd_factory):
    server = kinesd_factory(flags={"--header-timeout-ms": "60000", "--drain-timeout-ms": "30000"})
    s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.proc.poll() is None  # it waits for the request on its way
    s.sendall(b"Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n"
              b"Content-Length: 2\r\n\r\n{}")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), data[:300]
    assert b"Connection: close" in head
    assert json.loads(body)["__type"] == "ServiceUnavailable"
    assert server.proc.wait(timeout=20) == 0


def test_a_second_signal_exits_at_once_while_draining(kinesd_factory):
    server = kinesd_factory(flags={"--header-timeout-ms": "60000", "--drain-timeout-ms": "60000"})
    s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)
    proc = server.proc
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 1
    assert "second signal" in server.log()
    server.proc = None  # already gone: the factory must not wait for it
    s.close()
