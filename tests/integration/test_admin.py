"""kinesd-admin on data directories that a real kinesd wrote through boto3: stat and dump show what
was written, verify passes a healthy directory and names the record whose bytes were flipped,
backup under concurrent writes restores to a directory that serves every record acknowledged
before the backup began, compact keeps every record, rotate-root-key re-wraps the key material,
and each kind of bad directory or key gets its own exit status.

Every test starts its own kinesd (kinesd_factory) and runs build/kinesd-admin (beside the server's
binary) as a subprocess.
"""

import base64
import json
import os
import signal
import struct
import subprocess
import threading
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
# exit statuses of kinesd-admin
PROBLEMS, USAGE, NO_DIR, IN_USE, ROOT_KEY, NEWER = 1, 2, 3, 4, 5, 6


def admin_binary():
    return conftest.kinesd_binary().parent / "kinesd-admin"


def admin(data_dir, *args, check=None, env=None):
    out = subprocess.run(
        [str(admin_binary()), "--data-dir", str(data_dir), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if check is not None:
        assert out.returncode == check, out
    return out


def stat(data_dir, *flags):
    return json.loads(admin(data_dir, "stat", "--json", *flags, check=0).stdout)


def dump(data_dir, stream, *args):
    out = admin(data_dir, "dump", stream, *args, check=0)
    return [json.loads(line) for line in out.stdout.splitlines()]


def new_stream(kinesis, shards=1):
    name = helpers.unique_name("adm")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    helpers.wait_for_status(kinesis, name)
    return name


def write_key(path, key=None):
    path.write_text((key or os.urandom(32)).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def put_known(kinesis, stream, n, tag):
    """n records with distinct keys and data; returns {sequence number: (shard, key, data)}."""
    recs = [{"PartitionKey": f"{tag}-k{i}", "Data": f"{tag}-d{i}-".encode() + os.urandom(4).hex().encode()} for i in range(n)]
    out = helpers.put_records_all(kinesis, stream, recs)
    return {a["SequenceNumber"]: (a["ShardId"], r["PartitionKey"], r["Data"]) for a, r in zip(out, recs)}


def dumped(data_dir, stream, *args):
    return {r["SequenceNumber"]: (r["ShardId"], r["PartitionKey"], base64.b64decode(r["Data"])) for r in dump(data_dir, stream, *args)}


def read_everything(kinesis, stream):
    got = {}
    for sh in helpers.all_shards(kinesis, stream):
        for r in helpers.read_all(kinesis, stream, sh["ShardId"]):
            got[r["SequenceNumber"]] = (sh["ShardId"], r["PartitionKey"], r["Data"])
    return got


# ========================================================================================= stat, dump


def test_stat_and_dump_show_exactly_the_records_written_while_the_server_runs(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    a, b = new_stream(kinesis, 2), new_stream(kinesis, 1)
    written_a, written_b = put_known(kinesis, a, 40, "a"), put_known(kinesis, b, 7, "b")
    kinesis.split_shard(StreamName=b, ShardToSplit=shard_id(0), NewStartingHashKey=str(2**127))
    helpers.wait_for_status(kinesis, b)
    written_b.update(put_known(kinesis, b, 5, "b2"))

    st = stat(server.data_dir)  # live: the server keeps running
    streams = {s["StreamName"]: s for s in st["Streams"]}
    assert set(streams) == {a, b}
    assert streams[a]["Records"] == 40 and streams[b]["Records"] == 12
    assert (streams[a]["OpenShards"], streams[a]["ClosedShards"]) == (2, 0)
    assert (streams[b]["OpenShards"], streams[b]["ClosedShards"]) == (2, 1)
    for name, written in ((a, written_a), (b, written_b)):
        per_shard = {}
        for shard, _, _ in written.values():
            per_shard[shard] = per_shard.get(shard, 0) + 1
        assert {s["ShardId"]: s["Records"] for s in streams[name]["Shards"] if s["Records"]} == per_shard
    assert [s["ParentShardId"] for s in streams[b]["Shards"][1:]] == [shard_id(0), shard_id(0)]
    assert st["Files"]["DataFileBytes"] > 0 and st["Files"]["PageBytes"] > 0

    assert dumped(server.data_dir, a) == written_a
    assert dumped(server.data_dir, b) == written_b
    # one shard, and from a sequence number on
    in_first = sorted(s for s, v in written_a.items() if v[0] == shard_id(1))
    assert sorted(dumped(server.data_dir, a, shard_id(1))) == in_first
    assert sorted(dumped(server.data_dir, a, "--from", in_first[3])) == in_first[3:]
    rec = dump(server.data_dir, a, shard_id(1))[0]
    assert abs(rec["ArrivalTimeMs"] / 1000 - time.time()) < 600
    raw = admin(server.data_dir, "dump", b, shard_id(0), "--format", "raw", check=0).stdout
    assert raw.splitlines() == [v[2].decode() for s, v in sorted(written_b.items()) if v[0] == shard_id(0)]
    # a stream it does not have
    assert "no stream" in admin(server.data_dir, "dump", "nope", check=USAGE).stderr


# ============================================================================================= verify


def flip_marker(data_file, marker):
    """Flip a byte of every copy of marker in the file (LMDB may keep older copies of a page)."""
    content = bytearray(data_file.read_bytes())
    at, hits = 0, 0
    while (at := content.find(marker, at)) >= 0:
        content[at + len(marker) // 2] ^= 0x20
        at += len(marker)
        hits += 1
    assert hits, "the marker is not in the file"
    data_file.write_bytes(bytes(content))


def test_verify_passes_a_healthy_directory_and_names_the_record_whose_byte_was_flipped(kinesd_factory):
    server = kinesd_factory(flags={"--no-encryption-at-rest": None})  # records as written: the marker is findable
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, 2)
    put_known(kinesis, stream, 30, "before")
    marker = "MRK" + uuid.uuid4().hex
    bad = kinesis.put_record(StreamName=stream, PartitionKey="victim", Data=marker.encode())
    put_known(kinesis, stream, 30, "after")
    ok = admin(server.data_dir, "verify", check=0)
    assert "61 records" in ok.stdout
    assert server.stop() == 0  # the tail is stored in data.mdb

    flip_marker(server.data_dir / "data.mdb", marker.encode())
    out = admin(server.data_dir, "verify", check=PROBLEMS)
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem:")]
    assert problems == [
        f"problem: stream {stream} shard {bad['ShardId']} sequence number {bad['SequenceNumber']}: "
        "corrupt (its layout or checksum does not check out)"
    ], out.stdout
    # a record of a format version this build does not know is named as such
    env = lmdb.open(str(server.data_dir), subdir=True, max_dbs=8)
    log_db = env.open_db(b"log", create=False)
    with env.begin(write=True) as txn:
        k, v = next((k, v) for k, v in txn.cursor(db=log_db) if struct.unpack(">Q", k[8:])[0] != LAST)
        txn.put(k, bytes([9]) + v[1:], db=log_db)
    env.close()
    out = admin(server.data_dir, "verify", check=PROBLEMS)
    assert out.stdout.count("problem:") == 2
    assert "record format version 9 is newer than this build reads" in out.stdout


def test_verify_names_an_encrypted_record_whose_ciphertext_was_altered(kinesd_factory, tmp_path):
    key = write_key(tmp_path / "root.key")
    server = kinesd_factory(flags={"--root-key-file": str(key)})
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis)
    seqs = [kinesis.put_record(StreamName=stream, PartitionKey="k", Data=f"r{i}".encode())["SequenceNumber"] for i in range(5)]
    # the server's flag name, and its short form
    admin(server.data_dir, "verify", "--root-key-file", key, check=0)
    admin(server.data_dir, "verify", "--root-key", key, check=0)
    assert server.stop() == 0
    env = lmdb.open(str(server.data_dir), subdir=True, max_dbs=8)
    log_db = env.open_db(b"log", create=False)
    with env.begin(write=True) as txn:
        recs = [(k, v) for k, v in txn.cursor(db=log_db) if struct.unpack(">Q", k[8:])[0] != LAST]
        k, v = recs[2]
        txn.put(k, v[:-17] + bytes([v[-17] ^ 1]) + v[-16:], db=log_db)  # the ciphertext's last byte
    env.close()
    out = admin(server.data_dir, "verify", "--root-key", key, check=PROBLEMS)
    assert f"shard {shard_id(0)} sequence number {seqs[2]}: its seal does not open" in out.stdout
    assert out.stdout.count("problem:") == 1
    # a data key row removed: every record it sealed is named
    env = lmdb.open(str(server.data_dir), subdir=True, max_dbs=8)
    rows = env.open_db(b"rows", create=False)
    with env.begin(write=True) as txn:
        dks = [k for k, _ in txn.cursor(db=rows) if k.startswith(b"dk/")]
        assert len(dks) == 1
        txn.delete(dks[0], db=rows)
    env.close()
    out = admin(server.data_dir, "verify", "--root-key", key, check=PROBLEMS)
    gone = [line for line in out.stdout.splitlines() if "is gone" in line]
    assert [seq for seq in seqs if any(f"sequence number {seq}: its data key" in line for line in gone)] == seqs
    # without a key it cannot check seals, and says so instead of passing
    os.rename(key, tmp_path / "elsewhere.key")
    assert "--root-key-file" in admin(server.data_dir, "verify", check=ROOT_KEY).stderr


def test_verify_reports_open_shards_that_do_not_cover_the_hash_key_space(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, 2)
    assert server.stop() == 0
    env = lmdb.open(str(server.data_dir), subdir=True, max_dbs=8)
    rows = env.open_db(b"rows", create=False)
    with env.begin(write=True) as txn:
        key = next(k for k, _ in txn.cursor(db=rows) if k.startswith(b"shard/") and k.endswith(b"/00000001"))
        val = txn.get(key, db=rows)
        doc = json.loads(val[8:])
        doc["start"] = str(int(doc["start"]) + 5)  # a gap of five hash keys between the two shards
        txn.put(key, val[:8] + json.dumps(doc).encode(), db=rows)
    env.close()
    out = admin(server.data_dir, "verify", check=PROBLEMS)
    assert f"stream {stream}: the open shards leave out hash key {2**127}" in out.stdout, out.stdout


def test_verify_reports_children_that_do_not_cover_their_parents_hash_range(kinesd_factory):
    server = kinesd_factory(flags={"--update-stream-ms": "0"})
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, 1)
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard_id(0), NewStartingHashKey=str(2**100))
    helpers.wait_for_status(kinesis, stream)
    admin(server.data_dir, "verify", check=0)
    assert server.stop() == 0
    env = lmdb.open(str(server.data_dir), subdir=True, max_dbs=8)
    rows = env.open_db(b"rows", create=False)
    with env.begin(write=True) as txn:
        key = next(k for k, _ in txn.cursor(db=rows) if k.startswith(b"shard/") and k.endswith(b"/00000000"))
        val = txn.get(key, db=rows)
        doc = json.loads(val[8:])
        doc["end"] = str(2**127)  # the closed parent now claims half the key space only
        txn.put(key, val[:8] + json.dumps(doc).encode(), db=rows)
    env.close()
    out = admin(server.data_dir, "verify", check=PROBLEMS)
    assert f"stream {stream} shard {shard_id(2)}: its hash range reaches out of its parent {shard_id(0)}'s" in out.stdout
    assert f"stream {stream} shard {shard_id(0)}: its children do not cover its hash range 0..{2**127} exactly" in out.stdout


def edit_row(data_dir, prefix, edit):
    """Rewrite the one metadata row whose key starts with prefix through edit(doc)."""
    env = lmdb.open(str(data_dir), subdir=True, max_dbs=8)
    rows = env.open_db(b"rows", create=False)
    with env.begin(write=True) as txn:
        (key,) = [k for k, _ in txn.cursor(db=rows) if k.startswith(prefix)]
        val = txn.get(key, db=rows)
        doc = json.loads(val[8:])
        edit(doc)
        txn.put(key, val[:8] + json.dumps(doc).encode(), db=rows)
    env.close()


# each: the row edited, the edit, what verify must say of the stream, and what stat must show of
# it and of its shard (None: the server skips the stream, so stat lists none)
OWNER = "the server needs both, and takes it as a stream of its own --account-id and --region"
ROW_EDITS = {
    "long_name": (b"st/", lambda d: d.update(name="n" * 129), "its stream name is 129 bytes, over 128: the server skips the stream", None),
    "kid_without_key": (b"st/", lambda d: d.update(encKid="0" * 32), "the server takes its encryption as NONE", ({"EncryptionType": "NONE"}, {})),
    "account_without_region": (b"st/", lambda d: d.pop("region"), OWNER, ({"Account": "", "Region": ""}, {})),
    "region_without_account": (b"st/", lambda d: d.pop("account"), OWNER, ({"Account": "", "Region": ""}, {})),
    "unknown_status": (b"st/", lambda d: d.update(status=9), "its status 9 is none the server knows: the server skips the stream", None),
    "no_status": (b"st/", lambda d: d.pop("status"), "its header has no status: the server reads it as CREATING, so ACTIVE", ({"Status": "ACTIVE"}, {})),
    "no_parent": (b"shard/", lambda d: d.pop("parent"), "has no parent: the server takes shard 0 for it", ({}, {"ParentShardId": shard_id(0)})),
}


@pytest.mark.parametrize("case", sorted(ROW_EDITS))
def test_verify_reports_metadata_rows_the_server_skips_or_reads_otherwise_and_stat_shows_what_it_would(kinesd_factory, case):
    prefix, edit, said, shown = ROW_EDITS[case]
    server = kinesd_factory()
    stream = new_stream(helpers.make_client(server.endpoint), 1)
    admin(server.data_dir, "verify", check=0)
    assert server.stop() == 0
    edit_row(server.data_dir, prefix, edit)
    out = admin(server.data_dir, "verify", check=PROBLEMS)
    (line,) = [line for line in out.stdout.splitlines() if said in line]
    assert line.startswith("problem: metadata row st/" if shown is None else f"problem: stream {stream}: "), out.stdout
    streams = stat(server.data_dir)["Streams"]
    if shown is None:
        assert streams == []
        # and the server does skip it
        server.start()
        assert helpers.make_client(server.endpoint).list_streams()["StreamNames"] == []
        return
    ((st,),) = (streams,)
    assert {k: st[k] for k in shown[0]} == shown[0]
    assert {k: st["Shards"][0].get(k) for k in shown[1]} == shown[1]


# ============================================================================================= errors


def test_missing_directories_wrong_root_keys_and_newer_formats_get_their_own_exit_status(kinesd_factory, tmp_path):
    assert "no such directory" in admin(tmp_path / "none", "stat", check=NO_DIR).stderr
    (tmp_path / "empty").mkdir()
    assert "not a kinesd data directory" in admin(tmp_path / "empty", "verify", check=NO_DIR).stderr
    assert admin(tmp_path, "frobnicate", check=USAGE).returncode == USAGE

    right = write_key(tmp_path / "right.key")
    server = kinesd_factory(flags={"--root-key-file": str(right)})
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis)
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"x")
    wrong = write_key(tmp_path / "wrong.key")
    out = admin(server.data_dir, "dump", stream, "--root-key", wrong, check=ROOT_KEY)
    assert "wrong root key" in out.stderr
    # a write needs the directory to itself
    assert "in use" in admin(server.data_dir, "compact", check=IN_USE).stderr
    assert server.stop() == 0
    # a log segment of a newer format version than this build reads
    seg = server.data_dir / "wal.1"
    head = bytearray(seg.read_bytes()[:4096])
    head[4:8] = struct.pack("<I", 2)
    seg.write_bytes(bytes(head))
    assert "newer release" in admin(server.data_dir, "stat", check=NEWER).stderr


# ================================================================================= backup, restore


class Writer(threading.Thread):
    """PutRecords in a loop until stopped; acked holds (sequence number, shard, key, data) of
    every record whose answer came back, in the order the answers came."""

    def __init__(self, endpoint, stream):
        super().__init__(daemon=True)
        self.kinesis = helpers.make_client(endpoint, read_timeout=30)
        self.stream, self.acked, self.stop_now, self.error = stream, [], threading.Event(), None

    def run(self):
        try:
            n = 0
            while not self.stop_now.is_set():
                recs = [{"PartitionKey": f"w{n}-{j}", "Data": f"w{n}-{j}".encode() * 20} for j in range(50)]
                out = self.kinesis.put_records(StreamName=self.stream, Records=recs)
                for r, a in zip(recs, out["Records"]):
                    if "SequenceNumber" in a:
                        self.acked.append((a["SequenceNumber"], a["ShardId"], r["PartitionKey"], r["Data"]))
                n += 1
        except Exception as e:  # surfaced by the test
            self.error = e


def test_a_backup_taken_under_concurrent_writes_restores_every_record_acknowledged_before_it_began(kinesd_factory, tmp_path):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    stream = new_stream(kinesis, 3)
    writers = [Writer(server.endpoint, stream) for _ in range(2)]
    for w in writers:
        w.start()
    while sum(len(w.acked) for w in writers) < 2000:
        time.sleep(0.05)
    before = [r for w in writers for r in list(w.acked)]  # acknowledged before the backup began
    out = admin(server.data_dir, "backup", tmp_path / "backup", check=0)
    for w in writers:
        w.stop_now.set()
        w.join(timeout=60)
        assert w.error is None, w.error
    written = {r[0]: tuple(r[1:]) for w in writers for r in w.acked}
    assert "backed up" in out.stdout
    assert "every one checks out" in admin(tmp_path / "backup", "verify", check=0).stdout
    got = dumped(tmp_path / "backup", stream)
    missing = [r for r in before if got.get(r[0]) != tuple(r[1:])]
    assert not missing, f"{len(missing)} of {len(before)} acknowledged records are not in the backup"
    assert all(written.get(seq) == rec for seq, rec in got.items()), "the backup holds a record never written"
    admin(tmp_path, "restore", tmp_path / "backup", tmp_path / "restored-live", check=0)
    assert "every one checks out" in admin(tmp_path / "restored-live", "verify", check=0).stdout
    from_live = kinesd_factory(data_dir=tmp_path / "restored-live")
    served = read_everything(helpers.make_client(from_live.endpoint), stream)
    assert all(served.get(r[0]) == tuple(r[1:]) for r in before)
    assert served == got

    # a server frozen right after an acknowledgement: that record is in the write-ahead log only
    # (the flusher stores the log's records into data.mdb tens of milliseconds later)
    last = put_known(kinesis, stream, 20, "last")
    written.update(last)
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        admin(server.data_dir, "backup", tmp_path / "frozen", check=0)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    admin(tmp_path, "restore", tmp_path / "frozen", tmp_path / "restored", check=0)
    assert "every one checks out" in admin(tmp_path / "restored", "verify", check=0).stdout
    # restoring over a data directory is refused
    assert "already holds" in admin(tmp_path, "restore", tmp_path / "backup", tmp_path / "restored", check=USAGE).stderr

    restored = kinesd_factory(data_dir=tmp_path / "restored")
    assert read_everything(helpers.make_client(restored.endpoint), stream) == written
    # the restored server takes writes
    helpers.make_client(restored.endpoint).put_record(StreamName=stream, PartitionKey="k", Data=b"after")


def test_compact_keeps_every_record_and_leaves_no_free_pages(kinesd_factory):
    server = kinesd_factory()
    kinesis = helpers.make_client(server.endpoint)
    keep, gone = new_stream(kinesis, 2), new_stream(kinesis, 2)
    written = put_known(kinesis, keep, 200, "keep")
    for i in range(5):
        put_known(kinesis, gone, 200, f"gone{i}")
    kinesis.delete_stream(StreamName=gone)
    helpers.wait_until_gone(kinesis, gone)
    assert server.stop() == 0
    free_before = stat(server.data_dir)["Files"]["FreePages"]
    size_before = (server.data_dir / "data.mdb").stat().st_size
    assert free_before > 0, "the test needs free pages to compact away"

    out = admin(server.data_dir, "compact", check=0)
    assert "compacted" in out.stdout
    st = stat(server.data_dir)
    assert st["Files"]["FreePages"] == 0
    assert st["Files"]["DataFileBytes"] < size_before
    assert dumped(server.data_dir, keep) == written
    admin(server.data_dir, "verify", check=0)
    server.start()
    assert read_everything(helpers.make_client(server.endpoint), keep) == written


# ==================================================================================== root-key rotation


def kms_client(endpoint):
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=helpers.ACCESS_KEY, aws_secret_access_key=helpers.SECRET_KEY, region_name=helpers.REGION
    ).client("kms", endpoint_url=endpoint, config=Config(retries={"max_attempts": 0}))


def run_kinesd(data_dir, *flags):
    cmd = [str(conftest.kinesd_binary()), "--port", str(conftest.free_port()), "--data-dir", str(data_dir), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


def test_rotate_root_key_leaves_every_record_readable_with_the_new_key_and_none_with_the_old(kinesd_factory, tmp_path):
    old, new = write_key(tmp_path / "old.key"), write_key(tmp_path / "new.key")
    server = kinesd_factory(flags={"--root-key-file": str(old), "--update-stream-ms": "0"})
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    plain, sealed = new_stream(kinesis), new_stream(kinesis)
    key = kms.create_key()["KeyMetadata"]
    blobs = [kms.encrypt(KeyId=key["KeyId"], Plaintext=b"kms blob 1")["CiphertextBlob"]]
    body = json.dumps({"KeyId": key["KeyId"]}).encode()  # (not in Debian's model of KMS)
    headers = helpers.signed_headers(server.endpoint, "TrentService.RotateKeyOnDemand", body)
    assert helpers.http_request(server.endpoint, "POST", "/", body, headers).status == 200
    blobs.append(kms.encrypt(KeyId=key["KeyId"], Plaintext=b"kms blob 2")["CiphertextBlob"])  # version 2
    written_plain = put_known(kinesis, plain, 20, "p")
    kinesis.start_stream_encryption(StreamName=sealed, EncryptionType="KMS", KeyId=key["KeyId"])
    helpers.wait_for_status(kinesis, sealed)
    written_sealed = put_known(kinesis, sealed, 20, "s")
    assert server.stop() == 0

    # the new key from an environment variable, as the server's --root-key-env takes it
    args = ("rotate-root-key", "--root-key", old, "--new-root-key-env", "NEW_ROOT")
    env = dict(os.environ, NEW_ROOT=new.read_text().strip())
    wrong = write_key(tmp_path / "wrong.key")
    assert "wrong root key" in admin(server.data_dir, "rotate-root-key", "--root-key", wrong, "--new-root-key", new, check=ROOT_KEY).stderr
    out = admin(server.data_dir, *args, check=0, env=env)
    assert "2 KMS key material versions" in out.stdout
    # the old key opens nothing any more, for the server and for the tool
    refused = run_kinesd(server.data_dir, "--root-key-file", str(old))
    assert refused.returncode == 2 and "wrong root key" in refused.stderr
    assert admin(server.data_dir, "verify", "--root-key", old, check=ROOT_KEY)
    assert "every one checks out" in admin(server.data_dir, "verify", "--root-key-command", f"cat {new}", check=0).stdout
    assert dumped(server.data_dir, sealed, "--root-key", new) == written_sealed

    server.flags = dict(server.flags, **{"--root-key-file": str(new)})
    server.start()
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    assert read_everything(kinesis, plain) == written_plain
    got = read_everything(kinesis, sealed)
    assert got == written_sealed
    assert all(r.get("EncryptionType") == "KMS" for sh in helpers.all_shards(kinesis, sealed) for r in helpers.read_all(kinesis, sealed, sh["ShardId"]))
    # both material versions were re-wrapped
    assert [kms.decrypt(CiphertextBlob=b)["Plaintext"] for b in blobs] == [b"kms blob 1", b"kms blob 2"]
    kinesis.put_record(StreamName=sealed, PartitionKey="k", Data=b"after the rotation")
    assert server.stop() == 0
    # rotating a directory a server runs on is refused; rotating to the same key is refused
    server.start()
    assert "in use" in admin(server.data_dir, "rotate-root-key", "--root-key", new, "--new-root-key", old, check=IN_USE).stderr
    assert server.stop() == 0
    assert "is the old one" in admin(server.data_dir, "rotate-root-key", "--root-key", new, "--new-root-key", new, check=USAGE).stderr


def test_an_interrupted_rotation_is_finished_by_running_it_again_with_the_same_keys(kinesd_factory, tmp_path):
    old, new = write_key(tmp_path / "old.key"), write_key(tmp_path / "new.key")
    server = kinesd_factory(flags={"--root-key-file": str(old), "--update-stream-ms": "0"})
    kinesis, kms = helpers.make_client(server.endpoint), kms_client(server.endpoint)
    stream = new_stream(kinesis)
    key = kms.create_key()["KeyMetadata"]
    kinesis.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId=key["KeyId"])
    helpers.wait_for_status(kinesis, stream)
    written = put_known(kinesis, stream, 10, "r")
    assert server.stop() == 0
    # node.key cannot be rewritten: the run stops after the KMS key material was re-wrapped
    (server.data_dir / "node.key.tmp").mkdir()
    args = ("rotate-root-key", "--root-key-file", old, "--new-root-key-file", new)
    assert "run it again" in admin(server.data_dir, *args).stderr
    (server.data_dir / "node.key.tmp").rmdir()
    out = admin(server.data_dir, *args, check=0)
    assert "0 KMS key material versions" in out.stdout  # re-wrapped by the first run already
    server.flags = dict(server.flags, **{"--root-key-file": str(new)})
    server.start()
    assert read_everything(helpers.make_client(server.endpoint), stream) == written
