"""SubscribeToShard over HTTP/1.1 chunked transfer with boto3 (its only transport for it): events
pushed on commit, heartbeats, the end of a subscription, takeover, shard end and resuming, the
errors answered before the stream, and many idle subscriptions at a bounded cost."""

import base64
import json
import re
import socket
import struct
import threading
import time

import botocore.exceptions
import pytest

import cbor_codec
import helpers
from helpers import raises_aws

pytestmark = pytest.mark.own_server

ACCOUNT = helpers.ACCOUNT
FLAGS = {"--register-consumer-ms": "0", "--test-clock": None}


def start(kinesd_factory, shards=1, flags=None, consumers=1):
    srv = kinesd_factory(flags=dict(FLAGS, **(flags or {})))
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=shards)
    helpers.wait_for_status(k, "s")
    arns = [k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName=f"c{i}")["Consumer"]
            ["ConsumerARN"] for i in range(consumers)]
    return srv, k, arns


class raises_in_stream:
    """The event stream inside must end with an in-stream exception frame of this type."""

    def __init__(self, code, message=None):
        self.code, self.message = code, message

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError(f"expected an in-stream {self.code}, the stream ended without one")
        if not issubclass(exc_type, botocore.exceptions.EventStreamError):
            return False
        err = exc.response["Error"]
        assert err["Code"] == self.code, exc.response
        helpers.check_message(err.get("Message"), self.message)
        return True


def advance(srv, ms):
    assert helpers.http_request(srv.endpoint, "POST", f"/_test/advance-clock?ms={ms}").status == 200


def subscribe(k, arn, shard=0, **pos):
    pos = pos or {"Type": "TRIM_HORIZON"}
    return k.subscribe_to_shard(ConsumerARN=arn, ShardId=helpers.shard_id(shard), StartingPosition=pos)["EventStream"]


def events(stream):
    for ev in stream:
        yield ev["SubscribeToShardEvent"]


def put(k, data, key="k"):
    return k.put_record(StreamName="s", PartitionKey=key, Data=data)["SequenceNumber"]


def test_records_before_and_after_subscribing_arrive_in_order_and_byte_exact(kinesd_factory):
    _, k, (arn,) = start(kinesd_factory)
    before = [bytes(range(256)), b"", b"\x00" * 1000]
    seqs = [put(k, d) for d in before]
    stream = subscribe(k, arn)
    after = [b"after-%d" % i for i in range(5)]
    got = []
    writer = threading.Thread(target=lambda: seqs.extend(put(k, d) for d in after))
    for ev in events(stream):
        got += ev["Records"]
        assert ev["ContinuationSequenceNumber"] not in (None, "0")
        if len(got) == len(before):
            writer.start()
        if len(got) >= len(before) + len(after):
            break
    writer.join()
    stream.close()
    assert [r["Data"] for r in got] == before + after
    assert [r["SequenceNumber"] for r in got] == seqs
    assert all(r["PartitionKey"] == "k" and r["ApproximateArrivalTimestamp"] for r in got)


def test_an_idle_subscription_gets_empty_events(kinesd_factory):
    _, k, (arn,) = start(kinesd_factory)
    stream = subscribe(k, arn, Type="LATEST")
    empty = 0
    for ev in events(stream):  # boto3 gives up after 10 s of silence
        assert ev["Records"] == [] and ev["MillisBehindLatest"] == 0
        assert ev["ContinuationSequenceNumber"]
        empty += 1
        if empty == 2:
            break
    stream.close()


def test_a_subscription_ends_after_subscription_s(kinesd_factory):
    _, k, (arn,) = start(kinesd_factory, flags={"--subscription-s": "2"})
    put(k, b"one")
    got = [r["Data"] for ev in events(subscribe(k, arn)) for r in ev["Records"]]
    assert got == [b"one"]  # the loop ended: the answer was over


def test_a_second_call_within_a_second_is_limit_exceeded(kinesd_factory):
    _, k, (arn,) = start(kinesd_factory)
    first = subscribe(k, arn)
    with raises_aws("LimitExceededException"):
        subscribe(k, arn)
    first.close()


def test_within_5_s_is_resource_in_use_and_later_a_call_takes_over(kinesd_factory):
    srv, k, (arn,) = start(kinesd_factory)
    put(k, b"first")
    old = subscribe(k, arn)
    old_events = events(old)
    assert [r["Data"] for r in next(old_events)["Records"]] == [b"first"]
    advance(srv, 1500)
    with raises_aws("ResourceInUseException",
                    f"Another active subscription exists for this consumer: {ACCOUNT}:s:shardId-000000000000:c0"):
        subscribe(k, arn)
    advance(srv, 5000)
    new = subscribe(k, arn, Type="LATEST")
    with raises_in_stream("ResourceInUseException",
                    f"Another active subscription exists for this consumer: {ACCOUNT}:s:shardId-000000000000:c0"):
        for _ in old_events:
            pass
    put(k, b"to the new one")
    for ev in events(new):
        if ev["Records"]:
            assert [r["Data"] for r in ev["Records"]] == [b"to the new one"]
            break
    new.close()


def test_deregistering_the_consumer_ends_the_subscription_with_not_found(kinesd_factory):
    _, k, (arn,) = start(kinesd_factory)
    put(k, b"x")
    stream = events(subscribe(k, arn))
    next(stream)
    k.deregister_stream_consumer(ConsumerARN=arn)
    with raises_in_stream("ResourceNotFoundException", re.compile(r"Consumer c0 with creation timestamp \d+ under "
                                                                  rf"stream: s, account {ACCOUNT} not found\.")):
        for _ in stream:
            pass


def test_deleting_the_stream_ends_the_subscription_with_not_found(kinesd_factory):
    _, k, (arn,) = start(kinesd_factory)
    put(k, b"x")
    stream = events(subscribe(k, arn))
    next(stream)
    k.delete_stream(StreamName="s", EnforceConsumerDeletion=True)
    with raises_in_stream("ResourceNotFoundException"):
        for _ in stream:
            pass


def read_until(stream, n):
    got, last = [], None
    for ev in events(stream):
        got += ev["Records"]
        last = ev
        if len(got) >= n:
            break
    return got, last


def test_resuming_after_the_last_continuation_sequence_number_loses_nothing(kinesd_factory):
    srv, k, (arn,) = start(kinesd_factory)
    seqs = [put(k, b"r%d" % i) for i in range(6)]
    stream = subscribe(k, arn)
    got, last = read_until(stream, 3)
    stream.close()
    advance(srv, 1100)
    cont = last["ContinuationSequenceNumber"]
    rest, _ = read_until(subscribe(k, arn, Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=cont), 6 - len(got))
    assert [r["SequenceNumber"] for r in got + rest] == seqs


def test_an_empty_events_continuation_number_resumes_after_the_records_before_it(kinesd_factory):
    # subscribed at LATEST past records already there: nothing is sent, and the continuation
    # number of the empty event must still resume exactly where the subscription stood
    srv, k, (arn,) = start(kinesd_factory)
    old = [put(k, b"old%d" % i) for i in range(3)]
    stream = subscribe(k, arn, Type="LATEST")
    first = next(events(stream))
    stream.close()
    assert first["Records"] == []
    cont = first["ContinuationSequenceNumber"]
    assert int(old[-1]) <= int(cont)
    new = [put(k, b"new%d" % i) for i in range(2)]
    advance(srv, 1100)
    rest, _ = read_until(subscribe(k, arn, Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=cont), 2)
    assert [r["SequenceNumber"] for r in rest] == new
    it = k.get_shard_iterator(StreamName="s", ShardId=helpers.shard_id(0), ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                              StartingSequenceNumber=cont)["ShardIterator"]
    assert [r["Data"] for r in helpers.read_from_iterator(k, it)] == [b"new0", b"new1"]


def test_shard_end_names_the_children_and_they_continue_without_loss(kinesd_factory):
    srv, k, (arn,) = start(kinesd_factory)
    first = [put(k, b"p%d" % i, key=f"k{i}") for i in range(4)]
    k.update_shard_count(StreamName="s", TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    helpers.wait_for_status(k, "s")
    got, final = [], None
    for ev in events(subscribe(k, arn)):
        got += ev["Records"]
        if ev.get("ContinuationSequenceNumber") is None:
            final = ev
            break
    assert [r["SequenceNumber"] for r in got] == first
    kids = final["ChildShards"]
    assert sorted(c["ShardId"] for c in kids) == [helpers.shard_id(1), helpers.shard_id(2)]
    assert all(c["ParentShards"] == [helpers.shard_id(0)] for c in kids)
    later = {}
    for i in range(6):
        r = k.put_record(StreamName="s", PartitionKey=f"x{i}", Data=b"c%d" % i)
        later.setdefault(r["ShardId"], []).append(r["SequenceNumber"])
    for kid in kids:
        ix = int(kid["ShardId"].split("-")[1])
        want = later.get(kid["ShardId"], [])
        got, _ = read_until(subscribe(k, arn, shard=ix), len(want)) if want else ([], None)
        assert [r["SequenceNumber"] for r in got] == want


def test_errors_before_the_stream_are_plain_400_answers(kinesd_factory):
    srv, k, (arn,) = start(kinesd_factory, shards=2)
    ghost = arn.rsplit(":", 1)[0] + ":1"
    with raises_aws("ResourceNotFoundException"):
        subscribe(k, ghost.replace("/c0:", "/nobody:"))
    with raises_aws("ResourceNotFoundException"):
        subscribe(k, arn, shard=7)
    seq = k.put_record(StreamName="s", PartitionKey="a", Data=b"x", ExplicitHashKey="0")["SequenceNumber"]
    with raises_aws("InvalidArgumentException",
                    "Invalid StartingSequenceNumber. It encodes shardId-000000000000, while it was used in a call "
                    "to a shard with shardId-000000000001"):
        subscribe(k, arn, shard=1, Type="AT_SEQUENCE_NUMBER", SequenceNumber=seq)
    with raises_aws("ValidationException"):
        helpers.make_client(srv.endpoint, validate=False).subscribe_to_shard(
            ConsumerARN=arn, ShardId="shardId-000000000000", StartingPosition={"Type": "SOMETIME"})


def test_a_consumer_not_yet_active_cannot_subscribe(kinesd_factory):
    srv = kinesd_factory(flags={"--register-consumer-ms": "60000"})
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(k, "s")
    c = k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName="slow")["Consumer"]
    epoch = c["ConsumerARN"].rsplit(":", 1)[1]
    with raises_aws("ResourceInUseException",
                    f"Consumer slow with creation timestamp {epoch} under stream: s, account {ACCOUNT} is not in "
                    "ACTIVE status."):
        subscribe(k, c["ConsumerARN"])


# ---- raw subscriptions: a CBOR request, the read rate, many idle subscriptions ----------------------


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return int(out["Threads"]), int(out["RssAnon"].split()[0])


def raw_subscribe(port, arn, shard, position=None, cbor=False):
    """SubscribeToShard on a plain socket (JSON, or CBOR as a CBOR client would send it); returns the
    socket and what was read from it (the 200 head and at least the initial-response)."""
    fields = {"ConsumerARN": arn, "ShardId": helpers.shard_id(shard),
              "StartingPosition": position or {"Type": "LATEST"}}
    body = cbor_codec.dumps(fields) if cbor else json.dumps(fields).encode()
    ctype = b"application/x-amz-cbor-1.1" if cbor else b"application/x-amz-json-1.1"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()).encode()
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\n"
              b"X-Amz-Target: Kinesis_20131202.SubscribeToShard\r\nX-Amz-Date: " + date + b"\r\n"
              b"Authorization: AWS4-HMAC-SHA256 Credential=local/20250101/us-east-1/kinesis/aws4_request, "
              b"SignedHeaders=host, Signature=00\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = b""
    while b"initial-response" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return s, head


class RawEvents:
    """The event-stream messages of a raw subscription, decoded from its chunked body."""

    def __init__(self, subscription):
        self.sock, head = subscription
        self.body = b""
        self.head, _, self.raw = head.partition(b"\r\n\r\n")
        self._dechunk()
        assert b"transfer-encoding: chunked" in self.head.lower(), self.head

    def _dechunk(self):
        while True:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            n = int(line, 16)
            if len(rest) < n + 2:
                return
            self.body += rest[:n]
            self.raw = rest[n + 2:]

    def next(self, timeout):
        """(headers, payload) of the next message, or None when none arrives within timeout."""
        self.sock.settimeout(timeout)
        while len(self.body) < 12 or len(self.body) < struct.unpack(">I", self.body[:4])[0]:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            assert chunk, "the subscription ended"
            self.raw += chunk
            self._dechunk()
        total, hlen = struct.unpack(">II", self.body[:8])
        msg, self.body = self.body[:total], self.body[total:]
        headers, h = {}, msg[12:12 + hlen]
        while h:
            n = h[0]
            name, kind = h[1:1 + n].decode(), h[1 + n]
            assert kind == 7, (name, kind)  # every header of a Kinesis event is a string
            vlen = struct.unpack(">H", h[2 + n:4 + n])[0]
            headers[name], h = h[4 + n:4 + n + vlen].decode(), h[4 + n + vlen:]
        return headers, msg[12 + hlen:total - 4]

    def records(self, timeout):
        """The records of the next SubscribeToShardEvent (None if none within timeout)."""
        while True:
            m = self.next(timeout)
            if m is None:
                return None
            headers, payload = m
            assert headers[":message-type"] == "event", (headers, payload)
            if headers[":event-type"] == "SubscribeToShardEvent":
                assert headers[":content-type"] == "application/json", headers
                return json.loads(payload)["Records"]


def test_a_cbor_request_subscribes_as_a_json_one_does(kinesd_factory):
    srv, k, (arn,) = start(kinesd_factory)
    seq = put(k, b"\x00cbor\xff")
    ev = RawEvents(raw_subscribe(srv.port, arn, 0, {"Type": "TRIM_HORIZON"}, cbor=True))
    got = ev.records(10)
    assert [(r["SequenceNumber"], base64.b64decode(r["Data"])) for r in got] == [(seq, b"\x00cbor\xff")]
    ev.sock.close()


def test_a_subscription_reads_at_most_2_mib_a_second_per_shard(kinesd_factory):
    # five records of 1,000,000 bytes: an event holds at most 2 MiB (two of them), the allowance is
    # 2 MiB with one event's debt, so after four records the subscription owes 4,000,000 - 2 MiB
    # bytes and the fifth cannot come sooner than that debt takes to repay at 2 MiB/s (a lower
    # bound: a slow machine only makes it later). The limits are on (--no-limits lifts this one
    # too), so the writes wait out the shard's 1 MiB/s.
    srv, k, (arn,) = start(kinesd_factory, flags={"--no-limits": False})
    data = [bytes([i]) * 1_000_000 for i in range(5)]
    for d in data:
        while True:
            try:
                put(k, d)
                break
            except k.exceptions.ProvisionedThroughputExceededException:
                time.sleep(0.2)
    t0 = time.monotonic()  # before the call: the measured time holds the server's whole wait
    ev = RawEvents(raw_subscribe(srv.port, arn, 0, {"Type": "TRIM_HORIZON"}))
    got, sizes = [], []
    while len(got) < 5:
        recs = ev.records(10)
        assert recs is not None, len(got)
        got += recs
        sizes.append(sum(len(base64.b64decode(r["Data"])) for r in recs))
    elapsed = time.monotonic() - t0
    assert [base64.b64decode(r["Data"]) for r in got] == data
    assert max(sizes) <= 2 << 20, sizes
    debt = 4_000_000 - (2 << 20)
    assert elapsed >= 0.9 * debt / (2 << 20), elapsed
    ev.sock.close()


def test_500_idle_subscriptions_cost_no_thread_each_and_bounded_memory(kinesd_factory):
    srv, k, arns = start(kinesd_factory, shards=25, consumers=20)
    pid = srv.proc.pid
    threads0, rss0 = proc_status(pid)
    socks = [raw_subscribe(srv.port, arn, shard)[0] for arn in arns for shard in range(25)]
    assert len(socks) == 500
    threads1, rss1 = proc_status(pid)
    for s in socks:
        s.close()
    print(f"500 idle subscriptions: threads {threads0} -> {threads1}, RssAnon {rss0} -> {rss1} KiB")
    assert threads1 <= threads0 + 2, (threads0, threads1)
    assert rss1 - rss0 < 500 * 64, (rss0, rss1)  # KiB: under 64 KiB a subscription


def test_records_of_a_kms_stream_carry_their_encryption_type(kinesd_factory):
    _, k, (arn,) = start(kinesd_factory)
    put(k, b"plain")
    k.start_stream_encryption(StreamName="s", EncryptionType="KMS", KeyId="alias/aws/kinesis")
    helpers.wait_for_status(k, "s")
    put(k, b"sealed")
    got, _ = read_until(subscribe(k, arn), 2)
    assert [(r["Data"], r.get("EncryptionType")) for r in got] == [(b"plain", None), (b"sealed", "KMS")]


def test_under_auth_a_subscriber_without_kms_decrypt_on_the_records_key_gets_kms_access_denied(tmp_path_factory):
    from test_auth import client
    from test_kms import KP_USERS, auth_server, kms_as, user_arn

    srv = auth_server(tmp_path_factory, KP_USERS, **FLAGS)
    try:
        admin, bob = client(srv.endpoint, KP_USERS["admin"][:2]), client(srv.endpoint, KP_USERS["bob"][:2])
        alice = client(srv.endpoint, KP_USERS["alice"][:2])
        key = kms_as(srv.endpoint, KP_USERS["admin"]).create_key()["KeyMetadata"]
        admin.create_stream(StreamName="s", ShardCount=1)
        helpers.wait_for_status(admin, "s")
        put(admin, b"plain")
        admin.start_stream_encryption(StreamName="s", EncryptionType="KMS", KeyId=key["KeyId"])
        helpers.wait_for_status(admin, "s")
        put(admin, b"sealed")
        arn = admin.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName="c")["Consumer"]["ConsumerARN"]
        # alice's identity policy allows kms:Decrypt, and the default key policy delegates to it
        stream = subscribe(alice, arn)
        got, _ = read_until(stream, 2)
        stream.close()
        assert [(r["Data"], r.get("EncryptionType")) for r in got] == [(b"plain", None), (b"sealed", "KMS")]
        advance(srv, 6000)  # one subscription call a second per consumer and shard, and past the takeover window
        # bob's allows only kinesis:*: the event with the sealed record ends the stream, as GetRecords refuses
        why = "because no identity-based policy allows the kms:Decrypt action"
        with raises_in_stream("KMSAccessDeniedException", f"User: {user_arn('bob')} is not authorized to perform: "
                              f"kms:Decrypt on resource: {key['Arn']} {why}"):
            for _ in events(subscribe(bob, arn)):
                pass
    finally:
        assert srv.stop() == 0, srv.log()
