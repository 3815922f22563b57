#!/usr/bin/env python3
"""Fan-out benchmark: CONSUMERS enhanced fan-out consumers subscribed to each of SHARDS shards
(boto3 SubscribeToShard over HTTP/1.1, one thread per subscription on the client side) while a
producer runs PutRecords for SECONDS. Each record carries the time its PutRecords call was sent;
the put-to-event latency is the time a subscriber decoded it minus that. Prints one line:

  fanout <records/s put> <events records/s delivered> <p50 ms> <p99 ms> <complete: yes|no>

'complete' says whether every consumer received every record of every shard exactly once, in
order. Usage: fanout.py ENDPOINT [SECONDS] [SHARDS] [CONSUMERS]"""

import struct
import sys
import threading
import time

import boto3
from botocore.config import Config


def client(endpoint):
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=Config(retries={"max_attempts": 0}, read_timeout=20, max_pool_connections=64))


def main():
    endpoint = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 8
    shards = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    consumers = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    k = client(endpoint)
    name = f"fanout-{int(time.time())}"
    k.create_stream(StreamName=name, ShardCount=shards)
    while k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        time.sleep(0.05)
    sarn = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    arns = [k.register_stream_consumer(StreamARN=sarn, ConsumerName=f"c{i}")["Consumer"]["ConsumerARN"]
            for i in range(consumers)]
    for arn in arns:
        while k.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"] != "ACTIVE":
            time.sleep(0.05)
    shard_ids = [s["ShardId"] for s in k.list_shards(StreamName=name)["Shards"]]
    lat, received, lock = [], {}, threading.Lock()
    stop = threading.Event()
    ready = threading.Barrier(len(arns) * len(shard_ids) + 1)

    def subscriber(arn, sid):
        c = client(endpoint)
        seqs = []
        stream = c.subscribe_to_shard(ConsumerARN=arn, ShardId=sid,
                                      StartingPosition={"Type": "LATEST"})["EventStream"]
        ready.wait()
        mine = []
        for ev in stream:
            now = time.time()
            for r in ev["SubscribeToShardEvent"]["Records"]:
                mine.append(now - struct.unpack(">d", r["Data"][:8])[0])
                seqs.append(r["SequenceNumber"])
            if stop.is_set() and not ev["SubscribeToShardEvent"]["Records"]:
                break
        stream.close()
        with lock:
            lat.extend(mine)
            received[(arn, sid)] = seqs

    threads = [threading.Thread(target=subscriber, args=(a, s)) for a in arns for s in shard_ids]
    for t in threads:
        t.start()
    ready.wait()
    put = {sid: [] for sid in shard_ids}
    n = 0
    t0 = time.time()
    i = 0
    while time.time() - t0 < seconds:
        recs = [{"PartitionKey": f"p{i}-{j}", "Data": struct.pack(">d", time.time()) + b"x" * 92} for j in range(100)]
        i += 1
        out = k.put_records(StreamName=name, Records=recs)
        for r in out["Records"]:
            if "SequenceNumber" in r:
                put[r["ShardId"]].append(r["SequenceNumber"])
                n += 1
    elapsed = time.time() - t0
    stop.set()
    for t in threads:
        t.join(30)
    lat.sort()
    complete = all(received.get((a, s)) == put[s] for a in arns for s in shard_ids)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    print(f"fanout {n / elapsed:.0f} {len(lat) / elapsed:.0f} {p(0.5):.2f} {p(0.99):.2f} "
          f"{'yes' if complete else 'no'}")
    k.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


if __name__ == "__main__":
    main()
