"""kill -9 under load: every record kinesd acknowledged is still there, exactly as acknowledged.

One run (the module fixture crash_run) starts kinesd in its default durable mode (fsync on every
commit), creates a 4-shard stream and lets 8 producer threads call PutRecords (1-50 records) and
PutRecord as fast as they can. At random moments the server is killed with SIGKILL, reaped, and
started again on the same data directory and port; the producers carry on through the outage,
and a request that got no answer is simply not counted as acknowledged. Between kills the
control plane works too: the stream is resharded (a split, then a merge of the split's children,
each UPDATING across later kills), and a second stream is written, deleted, and left to go away.
After the last cycle the producers stop and every shard is read from TRIM_HORIZON to its tip.
The tests below each check one property of what was read against what was sent and what was
acknowledged, the shard lineage, and that the deleted stream stays deleted.

Every payload starts with a header naming its producer and that producer's counter, so each
record read back can be traced to the one request entry that sent it.
"""

import random
import signal
import string
import struct
import threading
import time

import pytest
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

import conftest
import helpers
from helpers import hash_key

pytestmark = pytest.mark.own_server

SHARDS = 4
# lifecycle transitions short enough to complete between kills, long enough to span some
FLAGS = {"--no-limits": None, "--create-stream-ms": "300", "--delete-stream-ms": "300", "--update-stream-ms": "300"}
DOOMED_RECORDS = 200
PRODUCERS = 8
MIN_KILLS = 5
MAX_KILLS = 12
KILL_AFTER = (0.3, 1.5)  # seconds of load before each kill
LOAD_BUDGET = 15.0  # seconds of kill cycles; later cycles are skipped once spent (MIN_KILLS kept)
FINAL_LOAD = 1.0  # seconds of load after the last restart
READ_TIMEOUT = 3  # seconds a producer waits for an answer

MAGIC = b"KCR1"
HEADER = struct.Struct(">4sHI")  # magic, producer id, counter
KEY_ALPHABET = string.ascii_letters + string.digits + "-_.:/ é漢ü"


class CrashableKinesd(conftest.KinesdServer):
    """A KinesdServer that can be killed with SIGKILL and comes back on the port it first had.

    Clients keep their endpoint across crashes, as they would with a real server restarted in
    place; the listening socket is reusable at once (kinesd sets SO_REUSEADDR).
    """

    def start(self):
        port = self.port
        with pytest.MonkeyPatch.context() as mp:
            if port is not None:
                mp.setattr(conftest, "free_port", lambda: port)
            return super().start()

    def crash(self):
        """SIGKILL the process and wait until it is gone; the next start() uses the same port."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        code = self.stop()  # already reaped: returns its status and closes the log
        assert code == -signal.SIGKILL, f"kinesd exited with {code}, not by SIGKILL:\n{self.log()}"


class Producer(threading.Thread):
    """Sends until stopped; remembers everything it sent and what was acknowledged.

    sent:  (producer, counter) -> (data, partition key), recorded before the request goes out
    acked: (producer, counter) -> (shard id, sequence number) from a successful answer
    """

    def __init__(self, pid, endpoint, seed, stop):
        super().__init__(name=f"producer-{pid}", daemon=True)
        self.pid = pid
        self.rng = random.Random(seed)
        self.client = helpers.make_client(endpoint, read_timeout=READ_TIMEOUT)
        self.stop_event = stop
        self.stream = None
        self.counter = 0
        self.sent = {}
        self.acked = {}
        self.requests = 0
        self.answered = 0
        self.outage_errors = 0
        self.unexpected = []  # error answers and exceptions other than a lost connection

    def entry(self):
        self.counter += 1
        rng = self.rng
        data = HEADER.pack(MAGIC, self.pid, self.counter) + rng.randbytes(rng.randrange(0, 300))
        key = "".join(rng.choice(KEY_ALPHABET) for _ in range(rng.randrange(1, 65)))
        ident = (self.pid, self.counter)
        self.sent[ident] = (data, key)
        return ident, data, key

    def put_record(self):
        ident, data, key = self.entry()
        out = self.client.put_record(StreamName=self.stream, PartitionKey=key, Data=data)
        self.acked[ident] = (out["ShardId"], out["SequenceNumber"])

    def put_records(self):
        batch = [self.entry() for _ in range(self.rng.randrange(1, 51))]
        out = self.client.put_records(
            StreamName=self.stream,
            Records=[{"PartitionKey": key, "Data": data} for _, data, key in batch],
        )
        answers = out["Records"]
        if len(answers) != len(batch):
            self.unexpected.append(f"PutRecords of {len(batch)} answered {len(answers)} records")
            return
        for (ident, _, _), answer in zip(batch, answers):
            if "ErrorCode" in answer:
                self.unexpected.append(f"PutRecords entry failed: {answer}")
            else:
                self.acked[ident] = (answer["ShardId"], answer["SequenceNumber"])

    def run(self):
        while not self.stop_event.is_set():
            self.requests += 1
            try:
                if self.rng.random() < 0.25:
                    self.put_record()
                else:
                    self.put_records()
                self.answered += 1
            except (BotoConnectionError, HTTPClientError):
                # Refused, reset, cut short or timed out around a kill: not acknowledged, go on.
                self.outage_errors += 1
                time.sleep(0.01)
            except ClientError as e:
                self.unexpected.append(f"error answer: {e.response.get('Error')}")
                time.sleep(0.01)
            except Exception as e:  # noqa: BLE001 - reported by a test, not swallowed
                self.unexpected.append(f"{type(e).__name__}: {e}")
                time.sleep(0.01)


class CrashRun:
    def __init__(self, seed):
        self.seed = seed
        self.kills = 0
        self.sent = {}
        self.acked = {}
        self.shards = []
        self.records = {}  # shard id -> records read, in order
        self.requests = self.answered = self.outage_errors = 0
        self.unexpected = []
        self.reshards = []  # the control-plane calls made, in order
        self.doomed = None  # name of the stream deleted during the run
        self.doomed_after = None  # its description once the run is over, or the error
        self.doomed_again = None  # records read from a stream created again under that name

    def __str__(self):
        acked = len(self.acked)
        read = sum(len(r) for r in self.records.values())
        return (
            f"seed {self.seed}: {self.kills} kills, {self.requests} requests "
            f"({self.answered} answered, {self.outage_errors} lost in outages), "
            f"{len(self.sent)} records sent, {acked} acknowledged, {read} read back"
        )


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory):
    if conftest.REMOTE:
        pytest.skip("kills and restarts its own kinesd; KINESD_ENDPOINT is set")
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    run = CrashRun(seed)
    server = CrashableKinesd(tmp_path_factory.mktemp("crash") / "data", FLAGS).start()
    stop = threading.Event()
    producers = []
    try:
        admin = helpers.make_client(server.endpoint)
        stream = "crash-" + format(seed, "08x")
        admin.create_stream(StreamName=stream, ShardCount=SHARDS)
        helpers.wait_for_status(admin, stream)

        producers = [Producer(pid, server.endpoint, rng.randrange(2**32), stop) for pid in range(PRODUCERS)]
        for producer in producers:
            producer.stream = stream
            producer.start()

        run.doomed = stream + "-doomed"
        admin.create_stream(StreamName=run.doomed, ShardCount=2)
        helpers.wait_for_status(admin, run.doomed)
        for i in range(0, DOOMED_RECORDS, 100):
            admin.put_records(
                StreamName=run.doomed,
                Records=[{"PartitionKey": f"d{j}", "Data": b"doomed %d" % j} for j in range(i, i + 100)],
            )

        def control_plane(cycle):
            """One change per cycle, made right after a restart, so that no kill cuts a call short
            (a kill can still land while the change is UPDATING or DELETING)."""
            admin = helpers.make_client(server.endpoint)
            if cycle == 1:
                admin.delete_stream(StreamName=run.doomed)
            elif cycle in (2, 4):
                helpers.wait_for_status(admin, stream)
                if cycle == 2:
                    admin.split_shard(StreamName=stream, ShardToSplit=helpers.shard_id(0), NewStartingHashKey=str(2**125))
                    run.reshards.append("split 0")
                else:
                    admin.merge_shards(
                        StreamName=stream, ShardToMerge=helpers.shard_id(SHARDS), AdjacentShardToMerge=helpers.shard_id(SHARDS + 1)
                    )
                    run.reshards.append(f"merge {SHARDS} {SHARDS + 1}")

        began = time.monotonic()
        while run.kills < MAX_KILLS and (run.kills < MIN_KILLS or time.monotonic() - began < LOAD_BUDGET):
            control_plane(run.kills)
            time.sleep(rng.uniform(*KILL_AFTER))
            server.crash()
            run.kills += 1
            server.start()  # waits for GET /healthcheck
        time.sleep(FINAL_LOAD)
    finally:
        stop.set()
        for producer in producers:
            producer.join(timeout=READ_TIMEOUT + 15)

    try:
        assert not any(p.is_alive() for p in producers), "a producer did not stop"
        for p in producers:
            run.sent.update(p.sent)
            run.acked.update(p.acked)
            run.requests += p.requests
            run.answered += p.answered
            run.outage_errors += p.outage_errors
            run.unexpected += [f"producer {p.pid}: {u}" for u in p.unexpected]

        reader = helpers.make_client(server.endpoint, read_timeout=30)
        helpers.wait_for_status(reader, stream)
        run.shards = helpers.all_shards(reader, stream)
        for shard in run.shards:
            run.records[shard["ShardId"]] = helpers.read_all(reader, stream, shard["ShardId"], limit=10000)
        # the deleted stream: gone after its DELETING period, and once more after a restart
        helpers.wait_until_gone(reader, run.doomed)
        server.crash()
        server.start()
        reader = helpers.make_client(server.endpoint, read_timeout=30)
        try:
            run.doomed_after = reader.describe_stream_summary(StreamName=run.doomed)
        except ClientError as e:
            run.doomed_after = e.response["Error"]["Code"]
        listed = reader.list_streams()["StreamNames"]
        if run.doomed in listed:
            run.doomed_after = f"listed by ListStreams: {listed}"
        # a stream created again under its name starts empty: none of the old records come back
        reader.create_stream(StreamName=run.doomed, ShardCount=2)
        helpers.wait_for_status(reader, run.doomed)
        run.doomed_again = [
            r for s in helpers.all_shards(reader, run.doomed) for r in helpers.read_all(reader, run.doomed, s["ShardId"])
        ]
        print(run)
        yield run
    finally:
        code = server.stop()
        assert code == 0, f"kinesd exited with {code} on SIGTERM after the crash run:\n{server.log()}"


def identify(data):
    """(producer, counter) from a payload's header, or None when it has none."""
    if len(data) < HEADER.size:
        return None
    magic, pid, counter = HEADER.unpack_from(data)
    return (pid, counter) if magic == MAGIC else None


def summary(problems, limit=10):
    return f"{len(problems)} problems, first {min(limit, len(problems))}:\n  " + "\n  ".join(
        map(str, problems[:limit])
    )


# ----------------------------------------------------------------------------------------------


def test_the_run_killed_kinesd_at_least_five_times_under_load_and_got_answers_between_kills(crash_run):
    assert crash_run.kills >= MIN_KILLS, crash_run
    assert crash_run.outage_errors > 0, f"no request was in flight or refused during an outage: {crash_run}"
    assert len(crash_run.acked) > 0, crash_run
    assert crash_run.reshards == ["split 0", f"merge {SHARDS} {SHARDS + 1}"], crash_run


def test_the_resharded_lineage_is_intact_after_the_crashes(crash_run):
    shards = {s["ShardId"]: s for s in crash_run.shards}
    sid = helpers.shard_id
    assert sorted(shards) == [sid(i) for i in range(SHARDS + 3)], sorted(shards)

    def key_range(shard_id):
        r = shards[shard_id]["HashKeyRange"]
        return int(r["StartingHashKey"]), int(r["EndingHashKey"])

    def closed(shard_id):
        return "EndingSequenceNumber" in shards[shard_id]["SequenceNumberRange"]

    # the split: shard 0 closed, its two children tile its range
    assert closed(sid(0))
    for child in (sid(SHARDS), sid(SHARDS + 1)):
        assert shards[child].get("ParentShardId") == sid(0), shards[child]
        assert closed(child)
    lo, hi = key_range(sid(0))
    assert key_range(sid(SHARDS)) == (lo, 2**125 - 1)
    assert key_range(sid(SHARDS + 1)) == (2**125, hi)
    # the merge: one child over both
    merged = shards[sid(SHARDS + 2)]
    assert merged.get("ParentShardId") == sid(SHARDS) and merged.get("AdjacentParentShardId") == sid(SHARDS + 1)
    assert key_range(sid(SHARDS + 2)) == (lo, hi) and not closed(sid(SHARDS + 2))
    # the open shards tile the key space
    open_ranges = sorted(key_range(s) for s in shards if not closed(s))
    assert open_ranges[0][0] == 0 and open_ranges[-1][1] == helpers.POW_128 - 1
    assert all(a[1] + 1 == b[0] for a, b in zip(open_ranges, open_ranges[1:])), open_ranges
    # a closed shard's records all lie at or before its ending sequence number
    for shard_id, records in crash_run.records.items():
        if closed(shard_id):
            end = int(shards[shard_id]["SequenceNumberRange"]["EndingSequenceNumber"])
            late = [r["SequenceNumber"] for r in records if int(r["SequenceNumber"]) > end]
            assert not late, f"{shard_id} closed at {end} holds later records {late[:5]}"


def test_the_deleted_stream_stays_gone_and_none_of_its_records_come_back(crash_run):
    assert crash_run.doomed_after == "ResourceNotFoundException", crash_run.doomed_after
    assert crash_run.doomed_again == [], f"{len(crash_run.doomed_again)} records of the deleted stream came back"


def test_producers_got_no_error_answers_only_lost_connections_while_kinesd_was_down(crash_run):
    assert not crash_run.unexpected, f"{crash_run}\n{summary(crash_run.unexpected)}"


def test_every_acknowledged_record_survives_with_its_shard_sequence_number_data_and_partition_key(crash_run):
    by_position = {
        (shard, record["SequenceNumber"]): record
        for shard, records in crash_run.records.items()
        for record in records
    }
    problems = []
    for ident, (shard, seq) in sorted(crash_run.acked.items()):
        data, key = crash_run.sent[ident]
        record = by_position.get((shard, seq))
        if record is None:
            problems.append(f"{ident} acknowledged as {shard} {seq}: not found there")
        elif record["Data"] != data or record["PartitionKey"] != key:
            problems.append(
                f"{ident} acknowledged as {shard} {seq}: found {identify(record['Data'])} "
                f"with partition key {record['PartitionKey']!r}, sent {key!r}"
            )
        # the shard it was acknowledged in holds its hash key (the layout changed during the run)
        r = next((s["HashKeyRange"] for s in crash_run.shards if s["ShardId"] == shard), None)
        if r is None or not int(r["StartingHashKey"]) <= hash_key(key) <= int(r["EndingHashKey"]):
            problems.append(f"{ident} acknowledged in {shard}, whose range does not hold its hash key")
    assert not problems, f"{crash_run}\n{summary(problems)}"


def test_sequence_numbers_increase_within_each_shard_and_none_is_ever_given_twice(crash_run):
    problems = []
    for shard, records in crash_run.records.items():
        numbers = [int(r["SequenceNumber"]) for r in records]
        for i, (a, b) in enumerate(zip(numbers, numbers[1:])):
            if not a < b:
                problems.append(f"{shard}: record {i + 1} has {b}, after {a}")
    seen = {}
    for shard, records in crash_run.records.items():
        for r in records:
            seq = r["SequenceNumber"]
            if seq in seen:
                problems.append(f"sequence number {seq} read twice: in {seen[seq]} and {shard}")
            seen[seq] = shard
    acked_positions = {}
    for ident, position in crash_run.acked.items():
        if position[1] in acked_positions:
            problems.append(f"{position[1]} acknowledged for both {acked_positions[position[1]]} and {ident}")
        acked_positions[position[1]] = ident
    assert not problems, f"{crash_run}\n{summary(problems)}"


def test_each_shards_sequence_index_steps_by_one_from_record_to_record_across_the_kills(crash_run):
    # what a kill loses is never acknowledged, and what survives of a shard is a prefix of what
    # it was handed: the records read back count on without a gap or a repeat
    problems = []
    for shard, records in crash_run.records.items():
        indexes = [int(format(int(r["SequenceNumber"]), "x")[11:27], 16) for r in records]
        for i, (a, b) in enumerate(zip(indexes, indexes[1:])):
            if b != a + 1:
                problems.append(f"{shard}: record {i + 1} has index {b}, after {a}")
    assert not problems, f"{crash_run}\n{summary(problems)}"


def test_only_records_the_producers_sent_are_read_back_each_at_most_once(crash_run):
    problems = []
    found = {}
    for shard, records in crash_run.records.items():
        for r in records:
            ident = identify(r["Data"])
            where = f"{shard} {r['SequenceNumber']}"
            if ident not in crash_run.sent:
                problems.append(f"{where}: never sent, data {r['Data'][:32]!r}")
                continue
            data, key = crash_run.sent[ident]
            if r["Data"] != data or r["PartitionKey"] != key:
                problems.append(f"{where}: {ident} differs from what was sent")
            if ident in found:
                problems.append(f"{where}: {ident} also read at {found[ident]}")
            found[ident] = where
    assert not problems, f"{crash_run}\n{summary(problems)}"
