"""The Kinesis Producer Library's aggregated record, encoded and decoded by hand.

A KPL record is the 4 magic bytes F3 89 9A C2, then a protobuf (proto2) AggregatedRecord, then
the 16-byte MD5 of the protobuf bytes:

    message AggregatedRecord {
      repeated string partition_key_table     = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records                 = 3;
    }
    message Record {
      required uint64 partition_key_index     = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes  data                    = 3;
      repeated Tag    tags                    = 4;   // Tag { required string key = 1; optional string value = 2; }
    }

Data that lacks the magic, is too short or fails the MD5 is an ordinary record, as the KCL
treats it. The Kinesis record that carries an aggregate uses its first user record's partition
key, so every user record must route to the same shard (the producer groups them so)."""

import hashlib

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_LEN = 16
MAX_AGGREGATE_BYTES = 51200  # the KPL's default AggregationMaxSize


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    key = _varint(num << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    return key + _varint(len(payload)) + payload


class Aggregator:
    """Collects user records (partition key, data) into one KPL record of bounded size."""

    def __init__(self, max_bytes=MAX_AGGREGATE_BYTES):
        self.max_bytes = max_bytes
        self.clear()

    def clear(self):
        self.keys = []
        self._key_index = {}
        self._records = []
        self.size = len(MAGIC) + DIGEST_LEN
        self.count = 0

    def _record_cost(self, key, data):
        cost = 0
        if key not in self._key_index:
            cost += len(_field(1, 2, key.encode()))
        idx = self._key_index.get(key, len(self.keys))
        inner = _field(1, 0, idx) + _field(3, 2, data)
        return cost + len(_field(3, 2, inner))

    def fits(self, key, data):
        """True when the record fits (an empty aggregate takes any record)."""
        return not self.count or self.size + self._record_cost(key, data) <= self.max_bytes

    def add(self, key, data):
        self.size += self._record_cost(key, data)
        if key not in self._key_index:
            self._key_index[key] = len(self.keys)
            self.keys.append(key)
        self._records.append(_field(1, 0, self._key_index[key]) + _field(3, 2, data))
        self.count += 1

    def encode(self):
        """The KPL record: (partition key of the Kinesis record, bytes)."""
        body = b"".join(_field(1, 2, k.encode()) for k in self.keys)
        body += b"".join(_field(3, 2, r) for r in self._records)
        return self.keys[0], MAGIC + body + hashlib.md5(body).digest()


def _read_varint(buf, pos):
    n = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def _fields(buf):
    """(field number, wire type, value) of each field of a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _read_varint(buf, pos)
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos : pos + n], pos + n
        elif wire == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield num, wire, val


def deaggregate(data, partition_key=None):
    """The user records in data: a list of (partition key, bytes). Data that is not a valid
    KPL aggregate is one record with the Kinesis record's own partition key."""
    if len(data) < len(MAGIC) + DIGEST_LEN or not data.startswith(MAGIC):
        return [(partition_key, data)]
    body, digest = data[len(MAGIC) : -DIGEST_LEN], data[-DIGEST_LEN:]
    if hashlib.md5(body).digest() != digest:
        return [(partition_key, data)]
    try:
        keys, out = [], []
        for num, wire, val in _fields(body):
            if num == 1 and wire == 2:
                keys.append(val.decode())
            elif num == 3 and wire == 2:
                idx, payload = None, None
                for n2, w2, v2 in _fields(val):
                    if n2 == 1 and w2 == 0:
                        idx = v2
                    elif n2 == 3 and w2 == 2:
                        payload = bytes(v2)
                if idx is None or payload is None:
                    raise ValueError("record without partition_key_index or data")
                out.append((idx, payload))
        return [(keys[i], p) for i, p in out]
    except (ValueError, IndexError, UnicodeDecodeError):
        return [(partition_key, data)]
