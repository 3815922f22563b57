"""Protocol-level behaviour, driven with raw HTTP (http.client): the request pipeline's order of
checks, error shapes, authentication presence, CORS, CBOR, the health check and the body cap."""

import http.client
import json
import re
import select
import socket
import time
import urllib.parse

import pytest

import cbor_codec
import helpers
from helpers import AMZ_CBOR, AMZ_JSON, TARGET_PREFIX, http_request, signed_headers

# Most of these requests are ListStreams calls, which the account may make 5 times a second
# (the shared server runs with limits on); the tests are paced to stay under that rate.
LIST_STREAMS_INTERVAL = 0.3
_last_start = [0.0]


@pytest.fixture(autouse=True)
def paced():
    wait = _last_start[0] + LIST_STREAMS_INTERVAL - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    _last_start[0] = time.monotonic()


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ACCESS_DENIED_XML = (
    b"<AccessDeniedException>\n"
    b"  <Message>Unable to determine service/operation name to be authorized</Message>\n"
    b"</AccessDeniedException>\n"
)
AUTH_HEADER_PARAMS = (
    "Authorization header requires 'Credential' parameter. "
    "Authorization header requires 'Signature' parameter. "
    "Authorization header requires 'SignedHeaders' parameter. "
)
NO_DATE = "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "


def post(endpoint, body=b"{}", target=f"{TARGET_PREFIX}.ListStreams", content_type=AMZ_JSON, sign=True,
         path="/", extra=None):
    """POST with the given pieces; None leaves a header out. Signed like an SDK when sign is True."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {}
    if sign:
        headers = signed_headers(endpoint, target or "", body, content_type or "")
        if target is None:
            headers.pop("X-Amz-Target", None)
        if content_type is None:
            headers.pop("Content-Type", None)
    else:
        if target is not None:
            headers["X-Amz-Target"] = target
        if content_type is not None:
            headers["Content-Type"] = content_type
    headers.update(extra or {})
    return http_request(endpoint, "POST", path, body, headers)


def assert_json_error(resp, error_type, message=None, status=400):
    assert resp.status == status, resp
    assert resp.headers.get("content-type") == AMZ_JSON, resp
    expected = {"__type": error_type}
    if message is not None:
        expected["message"] = message
    assert resp.json == expected, resp


# ---------------------------------------------------------------------------------- every response


def test_every_response_has_an_x_amzn_request_id(endpoint):
    answers = [
        post(endpoint),                                               # success
        post(endpoint, target=f"{TARGET_PREFIX}.NoSuchOperation"),    # unknown operation
        post(endpoint, body=b"not json"),                             # serialization
        post(endpoint, sign=False),                                   # missing authentication
        post(endpoint, body=b'{"Limit": 0}'),                         # validation
        post(endpoint, content_type="text/plain"),                    # 404 XML
        post(endpoint, content_type=None, target=None),               # 403 XML
    ]
    ids = []
    for resp in answers:
        assert UUID.fullmatch(resp.headers.get("x-amzn-requestid", "")), resp
        ids.append(resp.headers["x-amzn-requestid"])
    assert len(set(ids)) == len(ids)


def test_a_json_answer_has_the_amz_json_content_type_and_an_exact_content_length(endpoint):
    resp = post(endpoint)
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == AMZ_JSON
    assert int(resp.headers["content-length"]) == len(resp.raw)
    assert set(resp.json) >= {"StreamNames", "HasMoreStreams"}


def test_an_empty_successful_answer_has_content_length_zero(endpoint, stream_name, kinesis):
    resp = post(endpoint, body=json.dumps({"StreamName": stream_name, "ShardCount": 1}),
                target=f"{TARGET_PREFIX}.CreateStream")
    assert resp.status == 200, resp
    assert resp.headers.get("content-length") == "0"
    assert resp.raw == b""
    helpers.wait_for_status(kinesis, stream_name)


def test_one_connection_carries_several_requests(endpoint):
    url = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        for _ in range(3):
            body = b"{}"
            conn.request("POST", "/", body, signed_headers(endpoint, f"{TARGET_PREFIX}.ListStreams", body))
            resp = conn.getresponse()
            assert resp.status == 200
            assert "StreamNames" in json.loads(resp.read())
    finally:
        conn.close()


# ---------------------------------------------------------------------------------- target


def test_missing_x_amz_target_answers_unknown_operation(endpoint):
    assert_json_error(post(endpoint, target=None), "UnknownOperationException")


@pytest.mark.parametrize(
    "target",
    [f"{TARGET_PREFIX}.NoSuchOperation", f"{TARGET_PREFIX}.liststreams", "Kinesis_20131203.ListStreams",
     "DynamoDB_20120810.ListTables", "ListStreams", f"{TARGET_PREFIX}."],
)
def test_unknown_x_amz_target_answers_unknown_operation(endpoint, target):
    assert_json_error(post(endpoint, target=target), "UnknownOperationException")


def test_unknown_operation_is_reported_before_missing_authentication(endpoint):
    resp = post(endpoint, target=f"{TARGET_PREFIX}.NoSuchOperation", sign=False)
    assert_json_error(resp, "UnknownOperationException")


def test_header_names_are_case_insensitive(endpoint):
    body = b"{}"
    headers = {k.lower(): v for k, v in signed_headers(endpoint, f"{TARGET_PREFIX}.ListStreams", body).items()}
    resp = http_request(endpoint, "POST", "/", body, headers)
    assert resp.status == 200, resp
    assert "StreamNames" in resp.json


def test_a_chunked_request_body_is_accepted(endpoint):
    body = b'{"Limit": 1}'
    headers = signed_headers(endpoint, f"{TARGET_PREFIX}.ListStreams", body)
    headers["Transfer-Encoding"] = "chunked"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (body[:5], body[5:])) + b"0\r\n\r\n"
    resp = http_request(endpoint, "POST", "/", chunked, dict(headers, **{"Content-Length": None}))
    assert resp.status == 200, resp
    assert len(resp.json["StreamNames"]) <= 1


def test_the_request_path_does_not_matter(endpoint):
    body = b"{}"
    headers = signed_headers(endpoint, f"{TARGET_PREFIX}.ListStreams", body)
    resp = http_request(endpoint, "POST", "/some/other/path", body, headers)
    assert resp.status == 200, resp
    assert "StreamNames" in resp.json


# ---------------------------------------------------------------------------------- content type


def test_content_type_with_a_charset_parameter_is_accepted(endpoint):
    resp = post(endpoint, content_type=AMZ_JSON + "; charset=utf-8")
    assert resp.status == 200, resp
    assert "StreamNames" in resp.json


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-amz-json-1.0", "application/xml"])
def test_unsupported_content_type_with_a_valid_target_answers_404_unknown_operation(endpoint, content_type):
    resp = post(endpoint, content_type=content_type)
    assert resp.status == 404, resp
    assert resp.raw == b"<UnknownOperationException/>\n"


def test_missing_content_type_and_target_answers_403_access_denied(endpoint):
    resp = post(endpoint, content_type=None, target=None)
    assert resp.status == 403, resp
    assert resp.raw == ACCESS_DENIED_XML


def test_a_signed_get_to_the_api_answers_403_access_denied(endpoint):
    headers = signed_headers(endpoint, f"{TARGET_PREFIX}.ListStreams", b"")
    resp = http_request(endpoint, "GET", "/", b"", headers)
    assert resp.status == 403, resp
    assert resp.raw == ACCESS_DENIED_XML


# ---------------------------------------------------------------------------------- body decoding


@pytest.mark.parametrize("body", [b"hello", b"{", b'{"Limit": }', b"null", b"5", b'"text"', b"true"])
def test_a_body_that_is_not_a_json_object_answers_serialization_exception(endpoint, body):
    assert_json_error(post(endpoint, body=body), "SerializationException")


def test_an_empty_body_answers_serialization_exception(endpoint):
    assert_json_error(post(endpoint, body=b""), "SerializationException")


def test_an_empty_body_with_an_unknown_target_answers_unknown_operation(endpoint):
    assert_json_error(post(endpoint, body=b"", target=f"{TARGET_PREFIX}.Nope"), "UnknownOperationException")


def test_a_malformed_body_is_reported_before_missing_authentication(endpoint):
    assert_json_error(post(endpoint, body=b"hello", sign=False), "SerializationException")


def test_unknown_json_members_are_ignored(endpoint):
    resp = post(endpoint, body=b'{"Limit": 1, "NotAMember": [1, 2, {"x": null}]}')
    assert resp.status == 200, resp
    assert len(resp.json["StreamNames"]) <= 1


def test_json_null_members_count_as_absent(endpoint):
    resp = post(endpoint, body=b'{"Limit": null, "ExclusiveStartStreamName": null}')
    assert resp.status == 200, resp
    assert "StreamNames" in resp.json


def test_escaped_unicode_in_json_strings_is_decoded(api, kinesis, make_stream):
    name = make_stream(1)
    body = '{"StreamName": "%s", "PartitionKey": "\\u00fc\\ud83d\\ude00", "Data": ""}' % name
    resp = api.call("PutRecord", body.encode("ascii"))
    assert resp.status == 200, resp
    [record] = helpers.read_all(kinesis, name, helpers.shard_id(0))
    assert record["PartitionKey"] == "ü\U0001f600"


# ---------------------------------------------------------------------------------- authentication


def test_missing_authorization_answers_missing_authentication_token(endpoint):
    assert_json_error(post(endpoint, sign=False), "MissingAuthenticationTokenException", "Missing Authentication Token")


def test_authorization_without_parameters_or_date_answers_incomplete_signature(endpoint):
    resp = post(endpoint, sign=False, extra={"Authorization": "X"})
    assert_json_error(resp, "IncompleteSignatureException", AUTH_HEADER_PARAMS + NO_DATE + "Authorization=X")


def test_authorization_missing_signed_headers_answers_incomplete_signature(endpoint):
    auth = "AWS4-HMAC-SHA256 Credential=a, Signature=b"
    resp = post(endpoint, sign=False, extra={"Authorization": auth, "X-Amz-Date": "20150101T000000Z"})
    assert_json_error(
        resp, "IncompleteSignatureException",
        "Authorization header requires 'SignedHeaders' parameter. Authorization=" + auth,
    )


def test_complete_authorization_with_a_date_header_instead_of_x_amz_date_passes_the_presence_check(endpoint):
    # Emulators do not verify signatures (there is no secret to check against); only presence is checked.
    auth = "AWS4-HMAC-SHA256 Credential=a/20150101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=b"
    resp = post(endpoint, sign=False, extra={"Authorization": auth, "Date": "Thu, 01 Jan 2015 00:00:00 GMT"})
    assert resp.status == 200, resp


def test_authorization_header_and_query_signature_together_answer_invalid_signature(endpoint):
    resp = post(endpoint, path="/?X-Amz-Algorithm=AWS4-HMAC-SHA256")
    assert_json_error(
        resp, "InvalidSignatureException",
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
    )


def test_incomplete_query_string_signature_answers_incomplete_signature(endpoint):
    resp = post(endpoint, sign=False, path="/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host")
    assert_json_error(
        resp, "IncompleteSignatureException",
        "AWS query-string parameters must include 'X-Amz-Credential'. "
        "AWS query-string parameters must include 'X-Amz-Signature'. "
        "AWS query-string parameters must include 'X-Amz-Date'. "
        "Re-examine the query-string parameters.",
    )


def test_complete_query_string_signature_passes_the_presence_check(endpoint):
    query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20150101%2Fus-east-1%2Fkinesis%2Faws4_request"
             "&X-Amz-Signature=b&X-Amz-SignedHeaders=host&X-Amz-Date=20150101T000000Z")
    resp = post(endpoint, sign=False, path="/?" + query)
    assert resp.status == 200, resp
    assert "StreamNames" in resp.json


def test_query_parameters_without_x_amz_algorithm_count_as_missing_authentication(endpoint):
    resp = post(endpoint, sign=False, path="/?X-Amz-Credential=a&X-Amz-Signature=b&X-Amz-SignedHeaders=c&X-Amz-Date=d")
    assert_json_error(resp, "MissingAuthenticationTokenException", "Missing Authentication Token")


def test_authentication_is_checked_before_validation(endpoint):
    resp = post(endpoint, body=b'{"Limit": 0}', sign=False)
    assert_json_error(resp, "MissingAuthenticationTokenException", "Missing Authentication Token")


# ---------------------------------------------------------------------------------- CORS


def test_cors_preflight_answers_200_with_the_requested_headers_and_method(endpoint):
    resp = http_request(endpoint, "OPTIONS", "/", b"", {
        "Origin": "http://example.com",
        "Access-Control-Request-Headers": "content-type, x-amz-target, authorization",
        "Access-Control-Request-Method": "POST",
    })
    assert resp.status == 200, resp
    assert resp.headers["access-control-allow-origin"] == "*"
    assert resp.headers["access-control-allow-headers"] == "content-type, x-amz-target, authorization"
    assert resp.headers["access-control-allow-methods"] == "POST"
    assert resp.headers["access-control-max-age"] == "172800"
    assert resp.raw == b""
    assert UUID.fullmatch(resp.headers.get("x-amzn-requestid", ""))


def test_cors_preflight_without_request_headers_answers_only_origin_and_max_age(endpoint):
    resp = http_request(endpoint, "OPTIONS", "/", b"", {"Origin": "http://example.com"})
    assert resp.status == 200, resp
    assert resp.headers["access-control-allow-origin"] == "*"
    assert resp.headers["access-control-max-age"] == "172800"
    assert "access-control-allow-headers" not in resp.headers
    assert "access-control-allow-methods" not in resp.headers


def test_a_post_with_an_origin_exposes_the_aws_headers(endpoint):
    resp = post(endpoint, extra={"Origin": "http://example.com"})
    assert resp.status == 200, resp
    assert resp.headers["access-control-allow-origin"] == "*"
    exposed = [h.strip().lower() for h in resp.headers["access-control-expose-headers"].split(",")]
    assert "x-amzn-requestid" in exposed


def test_an_error_answer_to_a_post_with_an_origin_also_has_cors_headers(endpoint):
    resp = post(endpoint, sign=False, extra={"Origin": "http://example.com"})
    assert resp.status == 400, resp
    assert resp.headers["access-control-allow-origin"] == "*"


# ---------------------------------------------------------------------------------- CBOR


def cbor_call(endpoint, operation, payload):
    body = cbor_codec.dumps(payload)
    return post(endpoint, body=body, target=f"{TARGET_PREFIX}.{operation}", content_type=AMZ_CBOR)


def test_cbor_request_gets_a_cbor_answer(endpoint):
    resp = cbor_call(endpoint, "ListStreams", {"Limit": 1})
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == AMZ_CBOR
    out = cbor_codec.loads(resp.raw)
    assert isinstance(out["StreamNames"], list) and isinstance(out["HasMoreStreams"], bool)


def test_cbor_error_answer_is_cbor_with_type_and_message(endpoint, stream_name):
    resp = cbor_call(endpoint, "DescribeStreamSummary", {"StreamName": stream_name})
    assert resp.status == 400, resp
    assert resp.headers["content-type"] == AMZ_CBOR
    assert cbor_codec.loads(resp.raw) == {
        "__type": "ResourceNotFoundException",
        "message": helpers.not_found_message(stream_name),
    }


def test_cbor_body_that_does_not_decode_answers_serialization_exception(endpoint):
    resp = post(endpoint, body=b"\xff\xff\xff", content_type=AMZ_CBOR)
    assert resp.status == 400, resp
    assert cbor_codec.loads(resp.raw) == {"__type": "SerializationException"}


def test_an_empty_body_with_a_cbor_content_type_answers_in_cbor(endpoint):
    resp = post(endpoint, body=b"", content_type=AMZ_CBOR)
    assert resp.status == 400, resp
    assert cbor_codec.loads(resp.raw) == {"__type": "SerializationException"}


@pytest.mark.not_kinesalite("stores CBOR byte strings as a JSON-encoded Buffer object")
def test_cbor_byte_string_data_round_trips_through_json_and_cbor(endpoint, kinesis, make_stream):
    name = make_stream(1)
    data = bytes(range(256))
    resp = cbor_call(endpoint, "PutRecord", {"StreamName": name, "PartitionKey": "c", "Data": data})
    assert resp.status == 200, resp
    seq = cbor_codec.loads(resp.raw)["SequenceNumber"]
    # Read through JSON (boto3) ...
    [record] = helpers.read_all(kinesis, name, helpers.shard_id(0))
    assert (record["Data"], record["SequenceNumber"]) == (data, seq)
    # ... and through CBOR, where Data comes back as a byte string.
    it = cbor_codec.loads(cbor_call(endpoint, "GetShardIterator", {
        "StreamName": name, "ShardId": helpers.shard_id(0), "ShardIteratorType": "TRIM_HORIZON"}).raw)["ShardIterator"]
    out = cbor_codec.loads(cbor_call(endpoint, "GetRecords", {"ShardIterator": it}).raw)
    assert [r["Data"] for r in out["Records"]] == [data]


# ---------------------------------------------------------------------------------- our server only


@pytest.mark.own_server
def test_healthcheck_answers_200(endpoint):
    resp = http_request(endpoint, "GET", "/healthcheck")
    assert resp.status == 200, resp


@pytest.mark.own_server
def test_a_body_far_over_the_size_cap_answers_413(endpoint):
    """Announce 16 MiB; send the body only while the server has not answered yet."""
    size = 16 * 1024 * 1024
    url = urllib.parse.urlsplit(endpoint)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    try:
        head = (
            "POST / HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: {}\r\nX-Amz-Target: {}.PutRecords\r\n"
            "Content-Length: {}\r\n\r\n"
        ).format(url.hostname, url.port, AMZ_JSON, TARGET_PREFIX, size)
        sock.sendall(head.encode("ascii"))
        chunk, sent, reply = b"a" * 65536, 0, b""
        while b"\r\n" not in reply:
            readable, _, _ = select.select([sock], [], [], 0 if sent < size else 10)
            if readable:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    break
                if not data:
                    break
                reply += data
            elif sent < size:
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    sent = size
                sent += len(chunk)
            else:
                break
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    finally:
        sock.close()
