"""Encryption at rest: no plaintext record reaches the disk, tampering fails cleanly, the root key
is checked before anything is touched, and trimmed buckets lose their data keys.

Every test starts its own kinesd. The offline checks open the stopped server's LMDB file with the
lmdb module (python3-lmdb): the "log" database maps log id (8 bytes BE) . position (8 bytes BE)
to a sealed record, and the "rows" database holds metadata rows (version (8 bytes BE) . value),
among them the wrapped data keys "dk/<log>/<key id>".
"""

import base64
import hashlib
import os
import signal
import struct
import subprocess
import time
import uuid
from pathlib import Path

import lmdb
import pytest

import conftest
import helpers
from helpers import shard_id

pytestmark = pytest.mark.own_server

LAST = 0xFFFFFFFFFFFFFFFF
HOUR_MS = 3600 * 1000


def needles(marker):
    """What must not be found: the marker and its base64 (the wire form of the data)."""
    m = marker.encode()
    return [m, base64.b64encode(m), base64.b64encode(b"data:" + m)]


def scan_dir(data_dir, marker):
    """Every file under data_dir that contains the marker or its base64, with what was found."""
    hits = []
    for path in Path(data_dir).rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            hits += [(path.name, n) for n in needles(marker) if n in content]
    return hits


def put_markers(kinesis, stream, marker, n=20):
    for i in range(n):
        kinesis.put_record(StreamName=stream, PartitionKey=f"{marker}-pk-{i}", Data=b"data:" + marker.encode())
    kinesis.put_records(
        StreamName=stream,
        Records=[{"PartitionKey": f"{marker}-pks-{i}", "Data": b"data:" + marker.encode()} for i in range(50)],
    )


def fill(kinesis, stream, mib):
    """Write mib MiB of filler: the write-ahead log switches segments every 32 MiB, so this
    forces a checkpoint (the old segment's records stored in LMDB, the segment retired)."""
    blob = os.urandom(1024 * 1024 - 100)
    for i in range(0, mib, 4):
        out = kinesis.put_records(
            StreamName=stream, Records=[{"PartitionKey": f"fill{i + j}", "Data": blob} for j in range(4)]
        )
        assert out.get("FailedRecordCount", 0) == 0


def new_stream(kinesis, name, shards=1):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    helpers.wait_for_status(kinesis, name)
    return name


def kill9(server):
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.stop()


def run_with_markers(server, marker):
    kinesis = helpers.make_client(server.endpoint, read_timeout=60)  # 4 MiB writes on a busy disk
    stream = new_stream(kinesis, helpers.unique_name("enc"), shards=2)
    put_markers(kinesis, stream, marker + "A")  # checkpointed into LMDB by the filler
    fill(kinesis, stream, 36)
    put_markers(kinesis, stream, marker + "B")  # flushed to LMDB, or still in the tail
    return kinesis, stream


def test_no_plaintext_partition_key_or_data_is_found_in_any_file_after_kill_9(kinesd_factory):
    server = kinesd_factory()
    marker = "MRK" + uuid.uuid4().hex
    kinesis, stream = run_with_markers(server, marker)
    put_markers(kinesis, stream, marker + "C")  # in the write-ahead log when the process dies
    kill9(server)
    assert scan_dir(server.data_dir, marker) == []
    # and every record is still there, readable with the same keys
    server.start()
    kinesis = helpers.make_client(server.endpoint)
    got = [r for i in range(2) for r in helpers.read_all(kinesis, stream, shard_id(i))]
    keys = {r["PartitionKey"] for r in got}
    for part in "ABC":
        assert {f"{marker}{part}-pk-{i}" for i in range(20)} <= keys
        assert {f"{marker}{part}-pks-{i}" for i in range(50)} <= keys
    assert all(r["Data"] == b"data:" + r["PartitionKey"].split("-pk")[0].encode() for r in got if "-pk" in r["PartitionKey"])


def test_the_scan_finds_the_marker_when_records_are_stored_unencrypted(kinesd_factory):
    # the control: without encryption the same run leaves the marker on disk, so the scan above
    # can fail
    server = kinesd_factory(flags={"--no-encryption-at-rest": None})
    marker = "MRK" + uuid.uuid4().hex
    run_with_markers(server, marker)
    kill9(server)
    assert scan_dir(server.data_dir, marker) != []


# ====================================================================================== root key


def write_key(path, key, mode=0o600):
    path.write_text(key.hex() + "\n")
    os.chmod(path, mode)
    return str(path)


def digest_dir(data_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(data_dir).iterdir() if p.is_file()}


def run_kinesd(data_dir, *flags, env=None):
    cmd = [str(conftest.kinesd_binary()), "--port", str(conftest.free_port()), "--data-dir", str(data_dir), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env)


def test_a_wrong_root_key_is_refused_with_exit_status_2_and_nothing_is_changed(kinesd_factory, tmp_path):
    right = write_key(tmp_path / "right.key", os.urandom(32))
    server = kinesd_factory(flags={"--root-key-file": right})
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, helpers.unique_name("rk"))
    kinesis.put_record(StreamName=stream, PartitionKey="a", Data=b"kept")
    kill9(server)  # the write-ahead log holds frames a start would replay
    before = digest_dir(server.data_dir)
    wrong = write_key(tmp_path / "wrong.key", os.urandom(32))
    out = run_kinesd(server.data_dir, "--root-key-file", wrong)
    assert out.returncode == 2
    assert "wrong root key" in out.stderr
    out = run_kinesd(server.data_dir, "--root-key-env", "KINESD_TEST_ROOT", env=dict(os.environ, KINESD_TEST_ROOT="00" * 32))
    assert out.returncode == 2
    assert digest_dir(server.data_dir) == before
    # the right key, from each source, opens it
    server.flags = dict(server.flags)
    del server.flags["--root-key-file"]
    key_hex = Path(right).read_text().strip()
    server.flags["--root-key-command"] = f"echo {key_hex}"
    server.start()
    kinesis = helpers.make_client(server.endpoint)
    assert [r["Data"] for r in helpers.read_all(kinesis, stream, shard_id(0))] == [b"kept"]


def test_a_root_key_file_readable_by_others_is_refused(tmp_path):
    key = write_key(tmp_path / "open.key", os.urandom(32), mode=0o644)
    out = run_kinesd(tmp_path / "data", "--root-key-file", key)
    assert out.returncode == 2
    assert "0600" in out.stderr
    assert not (tmp_path / "data" / "node.key").exists()


def test_the_embedded_default_creates_a_root_key_in_the_data_directory_and_says_so(kinesd_factory):
    server = kinesd_factory()
    assert (server.data_dir / "root.key").stat().st_mode & 0o077 == 0
    assert "root key: created" in server.log()
    server.restart()
    assert "root key: using" in server.log()


# ===================================================================================== tampering


def records_of(env, log_db):
    """(key, value) of every stored record, in (log, position) order."""
    with env.begin() as txn:
        return [(k, v) for k, v in txn.cursor(db=log_db) if struct.unpack(">Q", k[8:])[0] != LAST]


def open_env(data_dir):
    env = lmdb.open(str(data_dir), subdir=True, max_dbs=8, lock=True)
    return env, env.open_db(b"log", create=False)


def seq_of(resp):
    return resp["SequenceNumber"]


def test_a_flipped_byte_or_two_swapped_ciphertexts_fail_the_read_and_nothing_else(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, helpers.unique_name("tamper"))
    seqs = [seq_of(kinesis.put_record(StreamName=stream, PartitionKey="k", Data=f"r{i}".encode())) for i in range(6)]
    server.stop()  # SIGTERM: the tail is stored in LMDB
    env, log_db = open_env(server.data_dir)
    recs = records_of(env, log_db)
    assert len(recs) == 6
    assert all(v[0] in (3, 4) for _, v in recs)  # a sealed version (4: AES-256-GCM, where the CPU has AES)
    with env.begin(write=True) as txn:
        k, v = recs[1]
        flipped = bytearray(v)
        flipped[len(v) - 17] ^= 0x01  # a byte of the ciphertext (the tag's 16 bytes follow it)
        assert v[1] == 1  # flags: the record's index follows the 36-byte header
        flipped[43] ^= 0x40  # and its index, made far larger: no search for another number is misled
        txn.put(k, bytes(flipped), db=log_db)
        (k3, v3), (k4, v4) = recs[3], recs[4]
        txn.put(k3, v4, db=log_db)
        txn.put(k4, v3, db=log_db)
    env.close()
    server.start()
    kinesis = helpers.make_client(server.endpoint)

    def read_at(seq):
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard_id(0), ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq
        )["ShardIterator"]
        return kinesis.get_records(ShardIterator=it, Limit=1)["Records"]

    for bad in (1, 3, 4):
        with helpers.raises_aws("InternalFailure", status=500):
            read_at(seqs[bad])
    for good in (0, 2, 5):
        assert [r["Data"] for r in read_at(seqs[good])] == [f"r{good}".encode()]
    # the stream still takes writes and serves them
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"after")
    assert read_at(seqs[5])[0]["Data"] == b"r5"


# ================================================================================= crypto-shred


def data_key_rows(data_dir):
    # LMDB readers may share the file with the running server (through its lock file)
    env = lmdb.open(str(data_dir), subdir=True, max_dbs=8, readonly=True, lock=True)
    rows = env.open_db(b"rows", create=False)
    with env.begin() as txn:
        got = [k.decode() for k, _ in txn.cursor(db=rows) if k.startswith(b"dk/")]
    env.close()
    return got


def test_retention_trimming_a_bucket_destroys_its_data_key(kinesd_factory):
    server = kinesd_factory(flags={"--test-clock": None})
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, helpers.unique_name("shred"))
    kinesis.put_record(StreamName=stream, PartitionKey="old", Data=b"old")
    server.stop()
    env, log_db = open_env(server.data_dir)
    (old_key, old_val), = records_of(env, log_db)
    env.close()
    old_key_id = struct.unpack("<Q", old_val[4:12])[0]
    log = struct.unpack(">Q", old_key[:8])[0]
    old_row = f"dk/{log:016x}/{old_key_id:016x}"
    assert old_row in data_key_rows(server.data_dir)

    server.start()
    kinesis = helpers.make_client(server.endpoint)
    resp = helpers.http_request(server.endpoint, "POST", f"/_test/advance-clock?ms={25 * HOUR_MS}")
    assert resp.status == 200
    kinesis.put_record(StreamName=stream, PartitionKey="new", Data=b"new")
    # the maintenance pass (every few seconds) trims the 25-hour-old record and its bucket's key
    deadline = time.monotonic() + 20
    while old_row in data_key_rows(server.data_dir):
        assert time.monotonic() < deadline, "the old bucket's data key is still there"
        time.sleep(0.2)
    assert [r["Data"] for r in helpers.read_all(kinesis, stream, shard_id(0))] == [b"new"]
    server.stop()
    rows = data_key_rows(server.data_dir)
    assert old_row not in rows
    assert any(r.startswith(f"dk/{log:016x}/") for r in rows)  # the new bucket's key stays
