"""Helpers shared by the integration tests: clients, raw signed requests, waits, hash-key maths.

Everything here talks to a Kinesis endpoint over HTTP only. Nothing knows how the server is
built; the same helpers drive kinesd, the kinesalite npm package, or any other implementation.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import time
import urllib.parse
import uuid

import boto3
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REGION = "us-east-1"
ACCOUNT = "000000000000"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TARGET_PREFIX = "Kinesis_20131202"
AMZ_JSON = "application/x-amz-json-1.1"
AMZ_CBOR = "application/x-amz-cbor-1.1"
POW_128 = 2**128
MIB = 1024 * 1024

# The service model in Debian's python3-botocore predates StreamARN, ListStreams' NextToken and
# StreamSummaries. Debian's awscli package ships the official, newer Kinesis model for its own
# vendored botocore; botocore's documented data_path setting lets boto3 load it unchanged.
try:
    import awscli

    NEWER_MODEL_DIR = os.path.join(os.path.dirname(awscli.__file__), "botocore", "data")
    if not os.path.isfile(os.path.join(NEWER_MODEL_DIR, "kinesis", "2013-12-02", "service-2.json")):
        NEWER_MODEL_DIR = None
except ImportError:  # pragma: no cover - awscli is a declared test dependency
    NEWER_MODEL_DIR = None


# What kinesd and AWS answer when a rate limit turns a call away: the account's control-plane
# rate (LimitExceededException) or a shard's (ProvisionedThroughputExceededException), both
# "Rate exceeded for ...". Every AWS SDK retries these with backoff.
RATE_LIMITED = ("LimitExceededException", "ProvisionedThroughputExceededException")


def rate_limited(code, message):
    return code in RATE_LIMITED and (message or "").startswith("Rate exceeded")


def _retry_rate_limited(response, attempts, **_kwargs):
    """botocore's needs-retry hook: the seconds to wait before retrying a rate-limited call."""
    if response is None or attempts > 40:
        return None
    err = (response[1] or {}).get("Error", {})
    if rate_limited(err.get("Code"), err.get("Message")):
        return min(0.05 * attempts, 0.5)
    return None


def make_client(endpoint, validate=True, read_timeout=10, retry_rate_limited=False):
    """A boto3 Kinesis client for endpoint: dummy credentials, no retries, short timeouts.

    retry_rate_limited: retry calls that a rate limit turned away (as SDKs do by default), and
    only those, so that tests on a server with limits on see every other answer as it is."""
    core = botocore.session.get_session()
    if NEWER_MODEL_DIR:
        core.set_config_variable("data_path", NEWER_MODEL_DIR)
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    config = Config(
        retries={"max_attempts": 0},
        connect_timeout=10,
        read_timeout=read_timeout,
        parameter_validation=validate,
    )
    client = session.client("kinesis", endpoint_url=endpoint, config=config)
    if retry_rate_limited:
        client.meta.events.register("needs-retry.kinesis", _retry_rate_limited)
    return client


def client_supports(client, operation, member):
    """True when the loaded service model has member in operation's input."""
    shape = client.meta.service_model.operation_model(operation).input_shape
    return member in shape.members


def stream_arn(name, account=ACCOUNT, region=REGION):
    return f"arn:aws:kinesis:{region}:{account}:stream/{name}"


def not_found_message(name):
    return f"Stream {name} under account {ACCOUNT} not found."


def unique_name(hint="s"):
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", hint)[:60].strip("-") or "s"
    return f"it-{slug}-{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------------------------------------
# Raw requests


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers  # lower-cased names
        self.raw = raw
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            self.json = None

    @property
    def error_type(self):
        return (self.json or {}).get("__type")

    @property
    def error_message(self):
        body = self.json or {}
        return body.get("message", body.get("Message"))

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.raw[:500]!r}>"


def http_request(endpoint, method, path="/", body=b"", headers=None, timeout=10):
    """One plain HTTP exchange with http.client; returns a Response.

    Headers are sent as given; Content-Length is added unless headers name it (None: leave it out).
    """
    url = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.putrequest(method, path, skip_accept_encoding=True)
        sent = {k.lower() for k in (headers or {})}  # a None value: leave that header out
        for name, value in (headers or {}).items():
            if value is not None:
                conn.putheader(name, value)
        if "content-length" not in sent and (body or method in ("POST", "PUT")):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        raw = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)
    finally:
        conn.close()


def signed_headers(endpoint, target, body, content_type=AMZ_JSON):
    """Headers of a SigV4-signed POST, as an AWS SDK sends them."""
    req = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": content_type, "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "kinesis", REGION).add_auth(req)
    return dict(req.headers.items())


class RawApi:
    """Signed JSON calls with arbitrary bodies: for payloads no SDK would send."""

    def __init__(self, endpoint, retry_rate_limited=False):
        self.endpoint = endpoint
        self.retry_rate_limited = retry_rate_limited

    def call(self, operation, payload, content_type=AMZ_JSON):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        for attempt in range(1, 42):
            headers = signed_headers(self.endpoint, f"{TARGET_PREFIX}.{operation}", body, content_type)
            resp = http_request(self.endpoint, "POST", "/", body, headers)
            if not (self.retry_rate_limited and resp.status == 400 and rate_limited(resp.error_type, resp.error_message)):
                return resp
            time.sleep(min(0.05 * attempt, 0.5))
        return resp

    def ok(self, operation, payload):
        resp = self.call(operation, payload)
        assert resp.status == 200, resp
        return resp.json

    def error(self, operation, payload, error_type, message=None, status=400):
        """Assert the call fails with error_type (and message: str exact, re.Pattern full match)."""
        resp = self.call(operation, payload)
        assert resp.status == status, resp
        assert resp.error_type == error_type, resp
        check_message(resp.error_message, message)
        return resp


def check_message(actual, expected):
    if expected is None:
        return
    if isinstance(expected, re.Pattern):
        assert actual is not None and expected.fullmatch(actual), f"{actual!r} !~ {expected.pattern!r}"
    else:
        assert actual == expected


class raises_aws:
    """Context manager: the boto3 call inside must fail with this AWS error code and message."""

    def __init__(self, code, message=None, status=400):
        self.code, self.message, self.status = code, message, status
        self.error = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError(f"expected {self.code}, the call succeeded")
        if not issubclass(exc_type, ClientError):
            return False
        self.error = exc.response["Error"]
        assert self.error["Code"] == self.code, exc.response
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == self.status, exc.response
        check_message(self.error.get("Message"), self.message)
        return True


def validation_message(*errors):
    """AWS's ValidationException text for the given 'Value ... failed to satisfy ...' pieces."""
    n = len(errors)
    return f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors)


def constraint(value, member, rule):
    shown = "null" if value is None else f"'{value}'"
    return f"Value {shown} at '{member}' failed to satisfy constraint: {rule}"


# ----------------------------------------------------------------------------------------------
# Streams


# Lifecycle transitions take 500 ms by default (as AWS's take seconds); the waits poll
# DescribeStreamSummary every 100 ms, half its account rate (20 calls/s), and wait out a call
# that the rate turned away.
POLL = 0.1


def _summary(client, name):
    while True:
        try:
            return client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        except ClientError as e:
            if not rate_limited(e.response["Error"]["Code"], e.response["Error"].get("Message")):
                raise
            time.sleep(POLL)


def wait_for_status(client, name, wanted="ACTIVE", timeout=10.0):
    """Poll DescribeStreamSummary every 100 ms until the stream has status wanted."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = _summary(client, name)["StreamStatus"]
        if status == wanted:
            return
        time.sleep(POLL)
    raise AssertionError(f"stream {name} still {status}, not {wanted}, after {timeout}s")


def wait_until_gone(client, name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _summary(client, name)
        except ClientError as e:
            if e.response["Error"]["Code"] == "ResourceNotFoundException":
                return
            raise
        time.sleep(POLL)
    raise AssertionError(f"stream {name} still exists after {timeout}s")


def put_records_all(client, name, records, attempts=100):
    """PutRecords that resends the entries a shard's rate turned away, as a producer does, until
    every one is written; returns each record's answer, in request order. Records of one key may
    be written out of order across resends: use it where order does not matter."""
    answers = [None] * len(records)
    pending = list(range(len(records)))
    for _ in range(attempts):
        out = client.put_records(StreamName=name, Records=[records[i] for i in pending])
        retry = []
        for i, entry in zip(pending, out["Records"]):
            if entry.get("ErrorCode") == "ProvisionedThroughputExceededException":
                retry.append(i)
            else:
                answers[i] = entry
        pending = retry
        if not pending:
            return answers
        time.sleep(POLL)
    raise AssertionError(f"{len(pending)} records never written")


def all_shards(client, name):
    shards, kwargs = [], {"StreamName": name}
    while True:
        out = client.list_shards(**kwargs)
        shards += out["Shards"]
        if not out.get("NextToken"):
            return shards
        kwargs = {"NextToken": out["NextToken"]}


def read_all(client, name, shard_id, iterator_type="TRIM_HORIZON", limit=None, **kw):
    """Every record in a shard from the given position, following NextShardIterator to the tip."""
    it = client.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType=iterator_type, **kw
    )["ShardIterator"]
    return read_from_iterator(client, it, limit)


def read_from_iterator(client, iterator, limit=None, max_calls=200):
    records = []
    for _ in range(max_calls):
        args = {"ShardIterator": iterator}
        if limit:
            args["Limit"] = limit
        out = client.get_records(**args)
        records += out["Records"]
        iterator = out.get("NextShardIterator")
        if not out["Records"] or iterator is None:
            return records
    raise AssertionError("shard never reached its tip")


# ----------------------------------------------------------------------------------------------
# Hash keys


def hash_key(partition_key):
    """MD5 of the UTF-8 partition key as an unsigned big-endian 128-bit integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def expected_ranges(shard_count):
    """The hash key ranges AWS gives a new stream: i * floor(2^128 / n), the last ends at 2^128-1."""
    step = POW_128 // shard_count
    return [
        (i * step, (POW_128 if i == shard_count - 1 else (i + 1) * step) - 1)
        for i in range(shard_count)
    ]


def shard_for_hash(shards, key):
    for shard in shards:
        r = shard["HashKeyRange"]
        if int(r["StartingHashKey"]) <= key <= int(r["EndingHashKey"]):
            return shard["ShardId"]
    raise AssertionError(f"no shard holds hash key {key}")


def shard_id(index):
    return f"shardId-{index:012d}"


def b64(data):
    return base64.b64encode(data).decode("ascii")


def assert_validation(resp, *errors):
    """resp is a ValidationException listing exactly these errors, in any order.

    AWS prefixes 'N validation error(s) detected: ' and joins the errors with '; '; the order of
    the errors is not something clients can rely on, so only the set is compared.
    """
    assert resp.status == 400, resp
    assert resp.error_type == "ValidationException", resp
    message = resp.error_message
    n = len(errors)
    prefix = f"{n} validation error{'s' if n > 1 else ''} detected: "
    assert message.startswith(prefix), message
    assert sorted(message[len(prefix):].split("; ")) == sorted(errors), message


# What AWS answers when a JSON member has the wrong type: SerializationException with these
# messages (the Java type names leak from the service; "an String" and "dectected" are AWS's).
_NUMBER = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber"
_LIST = "Start of list found where not expected"
_MAP = "Start of structure or map found where not expected."
TYPE_ERRORS = {
    "String": [
        (True, "class java.lang.Boolean can not be converted to an String"),
        (23, f"{_NUMBER} can not be converted to an String"),
        (34.56, f"{_NUMBER} can not be converted to an String"),
        ([], _LIST),
        ({}, _MAP),
    ],
    "Integer": [
        ("23", "class java.lang.String can not be converted to an Integer"),
        (True, "class java.lang.Boolean can not be converted to an Integer"),
        ([], _LIST),
        ({}, _MAP),
    ],
    "Blob": [
        (True, "class java.lang.Boolean can not be converted to a Blob"),
        (23, f"{_NUMBER} can not be converted to a Blob"),
        ([], _LIST),
        ({}, _MAP),
        ("23456", "'23456' can not be converted to a Blob: "
                  "Base64 encoded length is expected a multiple of 4 bytes but found: 5"),
        ("=+/=", "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='"),
        ("+/+=", "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"),
    ],
    "List": [
        ("23", "Expected list or null"),
        (True, "Expected list or null"),
        (23, "Expected list or null"),
        ({}, _MAP),
    ],
    "Map": [
        ("23", "Expected map or null"),
        (True, "Expected map or null"),
        (23, "Expected map or null"),
        ([], _LIST),
    ],
    "Structure": [
        ("23", "Expected null"),
        (True, "Expected null"),
        (23, "Expected null"),
        ([], _LIST),
    ],
    "Timestamp": [
        (True, "class java.lang.Boolean can not be converted to milliseconds since epoch"),
        ("23", "class java.lang.String can not be converted to milliseconds since epoch"),
        ([], _LIST),
        ({}, _MAP),
    ],
}


def payload_at(path, value):
    """{'Records': [{'Data': value}]} for path 'Records.0.Data', and so on."""
    pieces = path.split(".")
    root = {}
    node = root
    for piece, nxt in zip(pieces, pieces[1:]):
        child = [] if nxt == "0" else {}
        if isinstance(node, list):
            node.append(child)
        else:
            node[piece] = child
        node = child
    if isinstance(node, list):
        node.append(value)
    else:
        node[pieces[-1]] = value
    return root


def assert_type_errors(api, operation, path, type_name):
    """Every wrong JSON type at path gets AWS's SerializationException, body {__type, Message}."""
    for value, message in TYPE_ERRORS[type_name]:
        resp = api.call(operation, payload_at(path, value))
        assert resp.status == 400, (value, resp)
        assert resp.json == {"__type": "SerializationException", "Message": message}, (value, resp)


def list_all_stream_names(client):
    """Every stream name, paging with ExclusiveStartStreamName (which every implementation has)."""
    names, kwargs = [], {}
    while True:
        out = client.list_streams(**kwargs)
        names += out["StreamNames"]
        if not out["HasMoreStreams"]:
            return names
        kwargs = {"ExclusiveStartStreamName": out["StreamNames"][-1]}


# ----------------------------------------------------------------------------------------------
# Resharding


def is_open(shard):
    """A shard is open until resharding gives it an EndingSequenceNumber."""
    return "EndingSequenceNumber" not in shard["SequenceNumberRange"]


def open_shards(client, name):
    """The open shards of a stream, in StartingHashKey order."""
    shards = [s for s in all_shards(client, name) if is_open(s)]
    return sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))


def parents_of(shard):
    """ParentShardId and AdjacentParentShardId, whichever are present."""
    return [shard[k] for k in ("ParentShardId", "AdjacentParentShardId") if shard.get(k)]


def check_shard_end_rule(answer):
    """KCL's rule for a GetRecords answer: no NextShardIterator exactly when ChildShards is non-empty."""
    if answer.get("NextShardIterator") is None:
        assert answer.get("ChildShards"), f"shard end without ChildShards: {answer}"
    else:
        assert not answer.get("ChildShards"), f"ChildShards with a NextShardIterator: {answer}"


def read_to_shard_end(client, iterator, limit=None, max_calls=100, max_empty=5):
    """Follow a closed shard's iterators until GetRecords answers without NextShardIterator.

    Returns (records, child_shards of the final answer). Every answer is checked against KCL's
    shard-end rule; max_empty empty answers in a row that still carry an iterator mean the shard
    end is never reported, which fails.
    """
    records, empty = [], 0
    for _ in range(max_calls):
        args = {"ShardIterator": iterator}
        if limit:
            args["Limit"] = limit
        out = client.get_records(**args)
        check_shard_end_rule(out)
        records += out["Records"]
        iterator = out.get("NextShardIterator")
        if iterator is None:
            return records, out["ChildShards"]
        empty = 0 if out["Records"] else empty + 1
        if empty >= max_empty:
            raise AssertionError(
                f"closed shard never reached its end: {empty} empty answers in a row with a "
                f"NextShardIterator and no ChildShards after {len(records)} records"
            )
    raise AssertionError("closed shard never reached its end")


def read_stream_by_lineage(client, name):
    """Read a whole stream from TRIM_HORIZON in lineage order, as KCL does.

    Starts with the shards whose parents are not listed, reads a closed shard to its end (where
    GetRecords names its ChildShards) and an open one to its tip, and reads a child only once all
    its parents are fully read. Returns (records as (shard id, record) pairs in reading order,
    the shard ids in reading order). Fails if a listed shard is never reached or a ChildShards
    entry disagrees with ListShards.
    """
    shards = {s["ShardId"]: s for s in all_shards(client, name)}
    ready = sorted(sid for sid, s in shards.items() if not any(p in shards for p in parents_of(s)))
    done, order, records = set(), [], []
    while ready:
        sid = ready.pop(0)
        it = client.get_shard_iterator(StreamName=name, ShardId=sid, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        if is_open(shards[sid]):
            recs, children = read_from_iterator(client, it), []
        else:
            recs, children = read_to_shard_end(client, it)
        done.add(sid)
        order.append(sid)
        records += [(sid, r) for r in recs]
        for child in children:
            cid = child["ShardId"]
            assert cid in shards, f"ChildShards names {cid}, which ListShards does not list"
            assert sorted(child["ParentShards"]) == sorted(parents_of(shards[cid])), (child, shards[cid])
            assert child["HashKeyRange"] == shards[cid]["HashKeyRange"], (child, shards[cid])
            if cid not in done and cid not in ready and all(p in done for p in child["ParentShards"]):
                ready.append(cid)
    assert done == set(shards), f"never reached {sorted(set(shards) - done)} following ChildShards"
    return records, order
