"""One port, every transport: HTTP/1.1, h2c (prior knowledge), HTTPS and h2 over TLS.

Real clients over each: boto3 and the AWS CLI over HTTPS with kinesd's self-signed certificate
verified (verify=<path>, --ca-bundle), curl over h2c and h2, nghttp and h2load (nghttp2-client),
the JavaScript SDK v3 over h2 with TLS. Streaming answers (the --test-clock producer behind
POST /_test/stream) over HTTP/2 and HTTP/1.1 chunked transfer.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

import helpers
from conftest import REPO_ROOT, kinesd_binary

pytestmark = pytest.mark.own_server

TLS_FLAGS = {"--tls-self-signed": None, "--test-clock": None}


def cert_path(server):
    return server.data_dir / "tls" / "kinesd-cert.pem"


def https(server, host="127.0.0.1"):
    return f"https://{host}:{server.port}"


def tls_context(server, **kw):
    ctx = ssl.create_default_context(cafile=str(cert_path(server)))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def expected_frames(n, size):
    out = b""
    for i in range(n):
        head = f"frame {i}\n".encode()[: size - 1]
        out += head + b"." * (size - 1 - len(head)) + b"\n"
    return out


def put_and_read(kinesis, name, data):
    kinesis.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(kinesis, name)
    seq = kinesis.put_record(StreamName=name, PartitionKey="k", Data=data)["SequenceNumber"]
    records = helpers.read_all(kinesis, name, helpers.shard_id(0))
    assert [(r["SequenceNumber"], r["Data"]) for r in records] == [(seq, data)]


# ----------------------------------------------------------------------------------------------
# TLS with real clients


def test_boto3_over_https_verifies_the_self_signed_certificate_and_round_trips_a_record(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    import boto3

    kinesis = boto3.client(
        "kinesis", endpoint_url=https(server), region_name=helpers.REGION, verify=str(cert_path(server)),
        aws_access_key_id=helpers.ACCESS_KEY, aws_secret_access_key=helpers.SECRET_KEY)
    put_and_read(kinesis, "tls-boto3", b"\x00secret\xff")


def test_boto3_over_https_by_name_localhost_verifies_too(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    import boto3

    kinesis = boto3.client(
        "kinesis", endpoint_url=https(server, "localhost"), region_name=helpers.REGION,
        verify=str(cert_path(server)), aws_access_key_id=helpers.ACCESS_KEY,
        aws_secret_access_key=helpers.SECRET_KEY)
    assert "StreamNames" in kinesis.list_streams()


def test_boto3_without_the_certificate_refuses_the_connection(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    import boto3
    from botocore.exceptions import SSLError

    kinesis = boto3.client(
        "kinesis", endpoint_url=https(server), region_name=helpers.REGION,
        aws_access_key_id=helpers.ACCESS_KEY, aws_secret_access_key=helpers.SECRET_KEY,
        config=__import__("botocore.config").config.Config(retries={"max_attempts": 0}))
    with pytest.raises(SSLError):
        kinesis.list_streams()


def test_the_aws_cli_over_https_with_ca_bundle_writes_and_reads(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    base = ["aws", "--endpoint-url", https(server), "--ca-bundle", str(cert_path(server)), "--output", "json",
            "kinesis"]
    subprocess.run(base + ["create-stream", "--stream-name", "tls-cli", "--shard-count", "1"], check=True,
                   capture_output=True, timeout=60)
    # the stream is CREATING for the server's creation delay; AWS answers a write to it as not found
    for _ in range(100):
        out = subprocess.run(base + ["describe-stream-summary", "--stream-name", "tls-cli"], check=True,
                             capture_output=True, timeout=60)
        if json.loads(out.stdout)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
    out = subprocess.run(base + ["put-record", "--stream-name", "tls-cli", "--partition-key", "k", "--data",
                                 "aGVsbG8=", "--cli-binary-format", "base64"],
                         check=True, capture_output=True, timeout=60)
    seq = json.loads(out.stdout)["SequenceNumber"]
    out = subprocess.run(base + ["list-streams"], check=True, capture_output=True, timeout=60)
    assert "tls-cli" in json.loads(out.stdout)["StreamNames"]
    assert seq


def test_the_certificate_names_localhost_and_both_loopback_addresses(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert_path(server))],
                         check=True, capture_output=True, text=True).stdout
    assert "DNS:localhost" in out and "IP Address:127.0.0.1" in out and "IP Address:0:0:0:0:0:0:0:1" in out


def test_the_certificate_path_and_sha256_fingerprint_are_printed_and_the_certificate_is_reused(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    der = ssl.PEM_cert_to_DER_cert(cert_path(server).read_text())
    fp = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert f"{cert_path(server)} (SHA-256 {fp})" in server.log()
    server.restart()
    assert ssl.PEM_cert_to_DER_cert(cert_path(server).read_text()) == der


def test_tls_1_2_and_1_3_are_served_and_alpn_prefers_h2(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    for version, alpn, want in [
        (ssl.TLSVersion.TLSv1_2, ["h2", "http/1.1"], "h2"),
        (ssl.TLSVersion.TLSv1_3, ["http/1.1"], "http/1.1"),
    ]:
        ctx = tls_context(server, minimum_version=version, maximum_version=version)
        ctx.set_alpn_protocols(alpn)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
                assert s.selected_alpn_protocol() == want


def s_client_cipher(server, *args):
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-brief", *args],
                         input="", capture_output=True, text=True, timeout=30)
    found = re.search(r"Ciphersuite: (\S+)", out.stdout + out.stderr)
    assert found, out.stdout + out.stderr
    return found.group(1)


def test_aes_gcm_is_chosen_over_chacha20_and_aes_128_over_aes_256(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    # Python's default offer (OpenSSL's client order): AES-256-GCM, ChaCha20, AES-128-GCM
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with tls_context(server).wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version() == "TLSv1.3" and s.cipher()[0] == "TLS_AES_128_GCM_SHA256"
    # a client that lists ChaCha20 first still gets AES-GCM, over TLS 1.3 and 1.2
    assert s_client_cipher(server, "-tls1_3", "-ciphersuites",
                           "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") == "TLS_AES_256_GCM_SHA384"
    assert s_client_cipher(server, "-tls1_2", "-cipher",
                           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256") == \
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert s_client_cipher(server, "-tls1_2", "-cipher",
                           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256") == \
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    # one that offers ChaCha20 only is served
    assert s_client_cipher(server, "-tls1_3", "-ciphersuites",
                           "TLS_CHACHA20_POLY1305_SHA256") == "TLS_CHACHA20_POLY1305_SHA256"


def test_large_bodies_and_answers_over_https_arrive_whole(kinesd_factory):
    # a 1.4 MB request body and answers of 50 KB to 1.4 MB: many TLS records and many batches
    # of them on the way out, over HTTP/1.1 (boto3) and h2 (curl)
    server = kinesd_factory(flags=TLS_FLAGS)
    import boto3

    kinesis = boto3.client(
        "kinesis", endpoint_url=https(server), region_name=helpers.REGION, verify=str(cert_path(server)),
        aws_access_key_id=helpers.ACCESS_KEY, aws_secret_access_key=helpers.SECRET_KEY)
    kinesis.create_stream(StreamName="tls-large", ShardCount=1)
    helpers.wait_for_status(kinesis, "tls-large")
    data = [os.urandom(1000 + i) for i in range(500)]
    out = kinesis.put_records(StreamName="tls-large",
                              Records=[{"PartitionKey": f"k{i}", "Data": d} for i, d in enumerate(data)])
    assert out["FailedRecordCount"] == 0 and len(out["Records"]) == 500
    assert [r["Data"] for r in helpers.read_all(kinesis, "tls-large", helpers.shard_id(0))] == data
    it = kinesis.get_shard_iterator(StreamName="tls-large", ShardId=helpers.shard_id(0),
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    got = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(cert_path(server)), "-w", "\n%{http_version} %{http_code}",
         https(server, "localhost") + "/"]
        + signed_curl_args(https(server, "localhost"), "GetRecords", {"ShardIterator": it, "Limit": 10000}),
        check=True, capture_output=True, text=True, timeout=60).stdout
    body, status = got.rsplit("\n", 1)
    assert status == "2 200"
    assert [base64.b64decode(r["Data"]) for r in json.loads(body)["Records"]] == data


def test_tls_1_1_is_refused(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    assert helpers.http_request(server.endpoint, "GET", "/healthcheck").status == 200


def test_cleartext_http_still_works_on_the_tls_port(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    put_and_read(helpers.make_client(server.endpoint), "tls-cleartext", b"plain")


def run_kinesd(tmp_path, *flags):
    return subprocess.run([str(kinesd_binary()), "--port", "0", "--data-dir", str(tmp_path / "d"), *flags],
                          capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)


def test_a_missing_certificate_file_exits_2_with_a_clear_message(tmp_path):
    out = run_kinesd(tmp_path, "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "nope.key"))
    assert out.returncode == 2
    assert "cannot use the TLS certificate " + str(tmp_path / "nope.pem") in out.stderr


def test_a_certificate_file_that_is_not_pem_exits_2(tmp_path):
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    (tmp_path / "bad.key").write_text("not a key\n")
    out = run_kinesd(tmp_path, "--tls-cert", str(tmp_path / "bad.pem"), "--tls-key", str(tmp_path / "bad.key"))
    assert out.returncode == 2
    assert "TLS certificate" in out.stderr


def test_a_key_that_does_not_match_the_certificate_exits_2(tmp_path, kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    str(other)], check=True, capture_output=True)
    out = run_kinesd(tmp_path, "--tls-cert", str(cert_path(server)), "--tls-key", str(other))
    assert out.returncode == 2
    assert "TLS key " + str(other) in out.stderr and ("mismatch" in out.stderr or "does not match" in out.stderr)


def test_a_given_certificate_and_key_are_served(tmp_path, kinesd_factory):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    server = kinesd_factory(flags={"--tls-cert": str(cert), "--tls-key": str(key)})
    ctx = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    conn.request("GET", "/healthcheck")
    assert conn.getresponse().status == 200


# ----------------------------------------------------------------------------------------------
# HTTP/2 tools


def signed_curl_args(endpoint, operation, payload):
    body = json.dumps(payload).encode()
    headers = helpers.signed_headers(endpoint, f"{helpers.TARGET_PREFIX}.{operation}", body)
    args = []
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    return args + ["--data-binary", body.decode()]


def test_curl_http2_prior_knowledge_puts_a_record_on_h2c(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="curl-h2c", ShardCount=1)
    helpers.wait_for_status(kinesis, "curl-h2c")
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", server.endpoint + "/"]
        + signed_curl_args(server.endpoint, "PutRecord",
                           {"StreamName": "curl-h2c", "PartitionKey": "k", "Data": "aGk="}),
        check=True, capture_output=True, text=True, timeout=30).stdout
    body, status = out.rsplit("\n", 1)
    assert status == "2 200"
    assert json.loads(body)["ShardId"] == helpers.shard_id(0)
    assert [r["Data"] for r in helpers.read_all(kinesis, "curl-h2c", helpers.shard_id(0))] == [b"hi"]


def test_curl_over_https_negotiates_h2_and_http_1_1(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    for flag, want in [("--http2", "2"), ("--http1.1", "1.1")]:
        out = subprocess.run(["curl", "-sS", flag, "--cacert", str(cert_path(server)), "-w", " %{http_version}",
                              https(server, "localhost") + "/healthcheck"],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        assert out == '{"status":"ok"} ' + want


def test_nghttp_gets_the_healthcheck_over_h2c_and_h2(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    for url in (server.endpoint, https(server)):
        out = subprocess.run(["nghttp", "-v", url + "/healthcheck"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert ":status: 200" in out.stdout
        assert '{"status":"ok"}' in out.stdout


def h2load(server_url, n, streams, body_file, headers):
    args = ["h2load", "-n", str(n), "-c", "1", "-m", str(streams), "-d", str(body_file)]
    for k, v in headers.items():
        if k.lower() not in ("content-length", "host"):
            args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [server_url + "/"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("scheme", ["h2c", "h2"])
def test_100_put_record_streams_on_one_http2_connection_all_succeed(kinesd_factory, tmp_path, scheme):
    server = kinesd_factory(flags=TLS_FLAGS)
    kinesis = helpers.make_client(server.endpoint)
    kinesis.create_stream(StreamName="h2load", ShardCount=1)
    helpers.wait_for_status(kinesis, "h2load")
    body = json.dumps({"StreamName": "h2load", "PartitionKey": "k", "Data": "aDI="}).encode()
    (tmp_path / "body").write_bytes(body)
    url = server.endpoint if scheme == "h2c" else https(server)
    headers = helpers.signed_headers(url, f"{helpers.TARGET_PREFIX}.PutRecord", body)
    out = h2load(url, 100, 100, tmp_path / "body", headers)
    assert re.search(r"requests: 100 total, 100 started, 100 done, 100 succeeded", out), out
    assert "status codes: 100 2xx" in out, out
    assert len(helpers.read_all(kinesis, "h2load", helpers.shard_id(0))) == 100


def test_the_javascript_sdk_over_h2_with_tls_writes_and_reads(kinesd_factory):
    if not (REPO_ROOT / "build" / "npm" / "node_modules" / "@aws-sdk" / "client-kinesis").exists():
        pytest.skip("the JavaScript SDK is not installed (tools/install-npm.sh)")
    server = kinesd_factory(flags=TLS_FLAGS)
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(cert_path(server)),
               NODE_PATH=str(REPO_ROOT / "build" / "npm" / "node_modules"))
    script = Path(__file__).with_name("js") / "sdk_roundtrip.mjs"
    for url in (https(server, "localhost"), server.endpoint):
        out = subprocess.run(["node", str(script), url, "js-" + urllib.parse.urlsplit(url).scheme],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"records": ["aGVsbG8gaDI="]}


# ----------------------------------------------------------------------------------------------
# Streaming answers


def test_a_streaming_answer_arrives_whole_over_h2c_and_h2(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    for url, extra in [(server.endpoint, ["--http2-prior-knowledge"]), (https(server, "localhost"),
                                                                         ["--http2", "--cacert", str(cert_path(server))])]:
        out = subprocess.run(["curl", "-sS", "-X", "POST", *extra, url + "/_test/stream?n=300&size=40000"],
                             check=True, capture_output=True, timeout=60).stdout
        assert out == expected_frames(300, 40000)
    assert server.log().count("test stream closed (done) after 300 of 300 frames") == 2


def test_a_streaming_answer_uses_chunked_transfer_over_http_1_1(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    for conn in (http.client.HTTPConnection("127.0.0.1", server.port, timeout=10),
                 http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=tls_context(server))):
        for _ in range(2):  # the connection is kept alive after the stream ends
            conn.request("POST", "/_test/stream?n=50&size=1000", body=b"")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Transfer-Encoding") == "chunked"
            assert resp.getheader("Content-Length") is None
            assert resp.read() == expected_frames(50, 1000)
        conn.close()


def rss_anon_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def test_a_client_that_reads_slowly_holds_back_the_producer_and_memory_stays_bounded(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    before = rss_anon_kib(server.proc.pid)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"POST /_test/stream?n=4000&size=65536 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    time.sleep(3)  # the answer is 250 MiB; nothing is read for a while
    grown = rss_anon_kib(server.proc.pid) - before
    got = 0
    while got < 20 * 1024 * 1024:
        data = s.recv(1 << 20)
        assert data
        got += len(data)
    s.close()
    assert grown < 32 * 1024, f"RssAnon grew by {grown} KiB while the client did not read"
    deadline = time.monotonic() + 10
    while "test stream closed (client gone)" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.search(r"test stream closed \(client gone\) after (\d+) of 4000 frames", server.log())
    pulled = int(re.search(r"client gone\) after (\d+) of", server.log()).group(1))
    assert pulled < 4000


def test_a_client_that_resets_its_http2_stream_releases_the_producer(kinesd_factory):
    server = kinesd_factory(flags=TLS_FLAGS)
    out = Path(server.data_dir.parent / "stream.out")
    proc = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-X", "POST", "-o", str(out),
                             server.endpoint + "/_test/stream?n=100000&size=1000"])
    deadline = time.monotonic() + 20
    while (not out.exists() or out.stat().st_size < 100000) and time.monotonic() < deadline:
        time.sleep(0.05)  # the stream is under way
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while "test stream closed (client gone)" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "test stream closed (client gone)" in server.log()
    assert helpers.http_request(server.endpoint, "GET", "/healthcheck").status == 200


def test_the_stream_endpoint_needs_the_test_clock_flag(kinesd_factory):
    server = kinesd_factory()
    resp = helpers.http_request(server.endpoint, "POST", "/_test/stream?n=1")
    assert resp.status == 400 and b"frame" not in resp.raw


def test_tools_are_installed():
    for tool in ("curl", "nghttp", "h2load", "openssl", "aws"):
        assert shutil.which(tool), tool
