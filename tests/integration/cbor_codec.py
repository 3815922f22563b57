"""A minimal CBOR (RFC 8949) encoder and decoder: enough for Kinesis' application/x-amz-cbor-1.1.

The AWS Java SDK talks CBOR to Kinesis by default; no Debian Python package is needed for this.
"""

import struct


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt, limit in ((24, ">B", 1 << 8), (25, ">H", 1 << 16), (26, ">I", 1 << 32), (27, ">Q", 1 << 64)):
        if n < limit:
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError("integer too large for CBOR")


def dumps(value):
    if value is None:
        return b"\xf6"
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, (bytes, bytearray)):
        return _head(2, len(value)) + bytes(value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _head(3, len(raw)) + raw
    if isinstance(value, (list, tuple)):
        return _head(4, len(value)) + b"".join(dumps(v) for v in value)
    if isinstance(value, dict):
        return _head(5, len(value)) + b"".join(dumps(k) + dumps(v) for k, v in value.items())
    raise TypeError(f"cannot encode {type(value).__name__}")


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated CBOR")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def length(self, info):
        if info < 24:
            return info
        if info == 31:
            return None  # indefinite
        size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
        if size is None:
            raise ValueError(f"bad CBOR additional info {info}")
        return int.from_bytes(self.take(size), "big")

    def item(self):
        first = self.take(1)[0]
        major, info = first >> 5, first & 31
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info in (22, 23):
                return None
            if info == 25:
                return _half(self.take(2))
            if info == 26:
                return struct.unpack(">f", self.take(4))[0]
            if info == 27:
                return struct.unpack(">d", self.take(8))[0]
            if info == 31:
                return _BREAK
            raise ValueError(f"unsupported simple value {info}")
        n = self.length(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major in (2, 3):
            if n is None:
                chunks = []
                while (chunk := self.item()) is not _BREAK:
                    chunks.append(chunk)
                return (b"" if major == 2 else "").join(chunks)
            raw = self.take(n)
            return raw if major == 2 else raw.decode("utf-8")
        if major == 4:
            if n is None:
                out = []
                while (v := self.item()) is not _BREAK:
                    out.append(v)
                return out
            return [self.item() for _ in range(n)]
        if major == 5:
            out = {}
            if n is None:
                while (k := self.item()) is not _BREAK:
                    out[k] = self.item()
                return out
            for _ in range(n):
                k = self.item()
                out[k] = self.item()
            return out
        if major == 6:
            return Tagged(n, self.item())
        raise ValueError(f"bad CBOR major type {major}")


class Tagged:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __repr__(self):
        return f"Tagged({self.tag}, {self.value!r})"


_BREAK = object()


def _half(raw):
    h = int.from_bytes(raw, "big")
    sign = -1.0 if h & 0x8000 else 1.0
    exp, frac = (h >> 10) & 0x1F, h & 0x3FF
    if exp == 0:
        return sign * frac * 2.0**-24
    if exp == 31:
        return sign * (float("inf") if frac == 0 else float("nan"))
    return sign * (1 + frac / 1024.0) * 2.0 ** (exp - 15)


def loads(data):
    reader = _Reader(bytes(data))
    value = reader.item()
    if reader.pos != len(reader.data):
        raise ValueError("trailing bytes after CBOR item")
    return value
